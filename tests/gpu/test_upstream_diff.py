"""Differential tests against the real sgl_kernel 0.4.5 (skipped where it is not installed).

Upstream orders pairs inside an expert's run by atomics, so its runs are sorted
before comparing; everything else must match bit for bit, including what lands
in padding and past num_tokens_post_pad.
"""

import itertools
import random

import pytest
import torch

from sgl_kernel_ext.testing import make_topk_ids, run_with_upstream, sort_within_segments, upstream_cumsum_entries

sgl_kernel = pytest.importorskip("sgl_kernel")


def _compare(ours, theirs, block, numel, buckets):
    total = int(theirs[2])
    n = upstream_cumsum_entries(numel, buckets)  # ours always writes all of it
    assert torch.equal(ours[3][:n], theirs[3][:n]), "cumsum_buffer"
    assert int(ours[2]) == total, "num_tokens_post_pad"
    assert torch.equal(ours[1], theirs[1]), "expert_ids (whole buffer)"
    upstream_sorted = sort_within_segments(theirs[0], theirs[1], total, block)
    assert torch.equal(ours[0], upstream_sorted), "sorted_token_ids (whole buffer, runs sorted)"


CASES = list(itertools.product(
    [1, 3, 100, 127, 1000, 4096, 16384, 65536],  # tokens
    # sgl_kernel 0.4.5's one-block count gives each bucket a thread of 1024: at most 1023 experts
    [(256, 8), (8, 2), (60, 4), (128, 8), (512, 10), (1023, 8)],  # experts, topk
    [16, 64, 128],  # block
    [torch.int32, torch.int64],
))


@pytest.mark.parametrize("pad,ignore", [(True, False), (False, False), (True, True), (False, True)])
@pytest.mark.parametrize("dist", ["distinct", "skewed", "ep_mix", "one_expert"])
def test_matches_sgl_kernel(pad, ignore, dist):
    rng = random.Random()
    for tokens, (experts, topk), block, dtype in rng.sample(CASES, 60):
        ids = make_topk_ids(tokens, topk, experts, dist, dtype)
        ours, theirs = run_with_upstream(sgl_kernel.moe_align_block_size, ids, experts + 1, block, pad, ignore)
        try:
            _compare(ours, theirs, block, ids.numel(), experts + 1)
        except AssertionError as err:
            raise AssertionError(f"tokens={tokens} experts={experts} topk={topk} block={block} {dtype}: {err}")
