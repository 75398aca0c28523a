"""Differential sweep against sgl_kernel 0.4.5: every flag combination, every
routing, every field compared separately; prints each mismatch with where it is."""

import collections
import itertools
import sys

import torch
import sgl_kernel

from sgl_kernel_ext.testing import make_topk_ids, run_with_upstream, sort_within_segments, upstream_cumsum_entries


def first_diff(a, b):
    bad = (a != b).nonzero().flatten()
    if bad.numel() == 0:
        return None
    i = int(bad[0])
    return f"{bad.numel()} differ of {a.numel()}, first at {i}: ours {int(a[i])} theirs {int(b[i])}" + (
        f"; last at {int(bad[-1])}" if bad.numel() > 1 else "")


def main():
    tokens_list = [1, 3, 100, 127, 1000, 4096, 16384]
    shapes = [(256, 8), (8, 2), (60, 4), (128, 8), (512, 10), (1023, 8)]
    fails = 0
    kinds = collections.Counter()
    n = 0
    for tokens, (experts, topk), block, dtype, (pad, ignore), dist in itertools.product(
            tokens_list, shapes, [16, 64, 128], [torch.int32, torch.int64],
            [(True, False), (False, False), (True, True), (False, True)],
            ["distinct", "skewed", "ep_mix", "one_expert"]):
        if dtype == torch.int64 and dist != "ep_mix":
            continue
        ids = make_topk_ids(tokens, topk, experts, dist, dtype)
        buckets = experts + 1
        ours, theirs = run_with_upstream(sgl_kernel.moe_align_block_size, ids, buckets, block, pad, ignore)
        n += 1
        total = int(theirs[2])
        msgs = []
        if int(ours[2]) != total:
            msgs.append(f"post_pad ours {int(ours[2])} theirs {total}")
        entries = upstream_cumsum_entries(ids.numel(), buckets)
        d = first_diff(ours[3][:entries], theirs[3][:entries])
        if d:
            msgs.append(f"cumsum: {d}")
        d = first_diff(ours[1], theirs[1])
        if d:
            msgs.append(f"expert_ids (nblk {total // block}): {d}")
        try:
            srt = sort_within_segments(theirs[0], theirs[1], total, block)
            d = first_diff(ours[0], srt)
        except Exception as e:  # noqa
            d = f"sort_within_segments raised {e!r}"
        if d:
            msgs.append(f"sorted (total {total}): {d}")
        if msgs:
            fails += 1
            kinds[(experts, " | ".join(m.split(":")[0] for m in msgs))] += 1
            if fails <= 20:
                print(f"FAIL tokens={tokens} E={experts} k={topk} bs={block} {dtype} pad={pad} ignore={ignore} "
                      f"{dist}: " + " | ".join(msgs), flush=True)
    for (experts, fields), count in sorted(kinds.items()):
        print(f"{count:5d} cases with {experts} experts differ in: {fields}")
    print(f"{fails} of {n} cases differ")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
