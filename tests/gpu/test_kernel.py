"""Bit-exact checks of the kernel against the pure-torch reference, on fresh random inputs."""

import math
import os
import random

import pytest
import torch

from sgl_kernel_ext import moe_align_block_size, moe_align_for_fused_moe
from sgl_kernel_ext.reference import moe_align_block_size_ref
from sgl_kernel_ext.testing import DISTS, POISON, make_topk_ids, mismatch, poisoned_outputs, run_both

RANDOM_CASES = int(os.environ.get("SGL_KERNEL_EXT_RANDOM_CASES", "2000"))
BLOCK_SIZES = (16, 32, 64, 128, 256)


def _random_case(rng: random.Random):
    tokens = rng.choice([0, 1, 2, 3, 7, rng.randint(1, 64), rng.randint(1, 4096), int(math.exp(rng.uniform(0, math.log(65536))))])
    if rng.random() < 0.05:
        tokens = rng.choice([65536, 65535, 32768 + 1])
    topk = rng.randint(1, 10)
    experts = rng.choice([1, 2, 7, 8, 60, 64, 127, 128, 255, 256, 384, 512, 1000, 1024, rng.randint(1, 1024)])
    block = rng.choice(BLOCK_SIZES + (1, 3, 48))
    dist = rng.choice(DISTS)
    dtype = rng.choice([torch.int32, torch.int64])
    pad = rng.random() < 0.7
    ignore = rng.random() < 0.3
    return tokens, topk, experts, block, dist, dtype, pad, ignore


def test_random_cases_match_reference():
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    g = torch.Generator(device="cuda").manual_seed(seed)
    failures = []
    for case in range(RANDOM_CASES):
        tokens, topk, experts, block, dist, dtype, pad, ignore = params = _random_case(rng)
        ids = make_topk_ids(tokens, topk, experts, dist, dtype, generator=g)
        ours, ref = run_both(moe_align_block_size, ids, experts + 1, block, pad, ignore)
        err = mismatch(ours, ref, experts + 1)
        if err:
            failures.append(f"case {case} {params}: {err}")
    assert not failures, f"seed {seed}: {len(failures)} of {RANDOM_CASES} cases differ:\n" + "\n".join(failures[:20])


@pytest.mark.parametrize("tokens", [1, 16, 4096, 16384, 65536])
@pytest.mark.parametrize("experts,topk", [(256, 8), (128, 8), (8, 2), (384, 8), (512, 10)])
def test_model_shapes_match_reference(tokens, experts, topk):
    for dist in DISTS:
        ids = make_topk_ids(tokens, topk, experts, dist)
        ours, ref = run_both(moe_align_block_size, ids, experts + 1, 64, True, False)
        assert mismatch(ours, ref, experts + 1) is None, dist


@pytest.mark.parametrize("experts", [1, 2, 1023, 1024, 2047, 4096])
def test_expert_counts(experts):
    for tokens in (1, 300, 20000):
        ids = make_topk_ids(tokens, 8, experts, "uniform")
        ours, ref = run_both(moe_align_block_size, ids, experts + 1, 16, True, False)
        assert mismatch(ours, ref, experts + 1) is None, tokens


def test_out_of_range_ids_go_to_invalid_bucket_without_oob():
    experts = 64
    ids = torch.randint(-1000, 1000, (5000, 8), device="cuda", dtype=torch.int32)
    ids[0, 0] = torch.iinfo(torch.int32).max
    ids[0, 1] = torch.iinfo(torch.int32).min
    ours, ref = run_both(moe_align_block_size, ids, experts + 1, 64, True, False)
    assert mismatch(ours, ref, experts + 1) is None
    ids64 = ids.to(torch.int64)
    ids64[1, 0] = 2**40
    ours, ref = run_both(moe_align_block_size, ids64, experts + 1, 64, True, False)
    assert mismatch(ours, ref, experts + 1) is None


def test_larger_buffers_keep_their_tail():
    ids = make_topk_ids(3000, 8, 256, "uniform")
    for pad in (True, False):
        ours, ref = run_both(moe_align_block_size, ids, 257, 64, pad, False, slack=1000)
        assert mismatch(ours, ref, 257) is None
        assert int(ours[1][-1]) == POISON  # expert_ids past the used blocks are left alone


@pytest.mark.parametrize("tokens", [1, 100, 400, 5000])
def test_output_buffers_not_16_byte_aligned(tokens):
    # The small paths write 16 bytes at a time where the buffer allows it; a view one
    # element in must take the slot-at-a-time path and give the same result.
    ids = make_topk_ids(tokens, 8, 256, "skewed")
    outs = poisoned_outputs(ids.numel(), 257, 64, slack=1)
    shifted = (outs[0][1:], outs[1][1:], outs[2], outs[3][1:])
    assert shifted[0].data_ptr() % 16 != 0
    ref = tuple(torch.full_like(t, POISON) for t in shifted)
    moe_align_block_size(ids, 257, 64, *shifted, True, False)
    moe_align_block_size_ref(ids, 257, 64, *ref, True, False)
    assert mismatch(shifted, ref, 257) is None


def test_check_mode_raises_on_invalid_ids(monkeypatch):
    from sgl_kernel_ext import ops

    monkeypatch.setattr(ops, "_CHECK_IDS", True)
    ids = torch.tensor([[0, 5]], device="cuda", dtype=torch.int32)
    outs = poisoned_outputs(2, 5, 16)
    with pytest.raises(ValueError, match="outside"):
        moe_align_block_size(ids, 5, 16, *outs)


def test_fused_moe_wrapper_matches_reference():
    for tokens, experts, block in [(1, 256, 64), (7, 8, 16), (5000, 256, 64), (40000, 384, 128)]:
        ids = make_topk_ids(tokens, 8, experts, "ep_mix")
        sorted_ids, expert_ids, post = moe_align_for_fused_moe(ids, block, experts)
        numel = ids.numel()
        max_padded = numel * block if numel < experts + 1 else numel + (experts + 1) * (block - 1)
        assert sorted_ids.numel() == max_padded and expert_ids.numel() == -(-max_padded // block)
        ref = (torch.empty_like(sorted_ids), expert_ids.clone(), torch.empty_like(post),
               torch.empty(experts + 2, dtype=torch.int32, device="cuda"))
        moe_align_block_size_ref(ids, experts + 1, block, *ref, True, False)
        total = int(post)
        assert total == int(ref[2])
        assert torch.equal(sorted_ids, ref[0])
        assert torch.equal(expert_ids[: total // block], ref[1][: total // block])


def test_deterministic_across_runs():
    ids = make_topk_ids(65536, 8, 256, "skewed")
    first = poisoned_outputs(ids.numel(), 257, 64)
    moe_align_block_size(ids, 257, 64, *first, True)
    for _ in range(20):
        again = poisoned_outputs(ids.numel(), 257, 64)
        moe_align_block_size(ids, 257, 64, *again, True)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_cuda_graph_capture_and_replay():
    block, experts = 64, 256
    ids = make_topk_ids(16384, 8, experts, "uniform")
    outs = poisoned_outputs(ids.numel(), experts + 1, block)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        moe_align_block_size(ids, experts + 1, block, *outs, True)  # warm up outside capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        moe_align_block_size(ids, experts + 1, block, *outs, True)
        wrapped = moe_align_for_fused_moe(ids, block, experts)
    for dist in ("uniform", "skewed", "ep_mix", "one_expert"):
        ids.copy_(make_topk_ids(16384, 8, experts, dist))
        for t in outs:
            t.fill_(POISON)
        graph.replay()
        ref = tuple(torch.full_like(t, POISON) for t in outs)
        moe_align_block_size_ref(ids, experts + 1, block, *ref, True, False)
        assert mismatch(outs, ref, experts + 1) is None, dist
        assert torch.equal(wrapped[0], ref[0]), dist


def test_two_streams_at_once():
    experts, block = 256, 64
    streams = [torch.cuda.Stream() for _ in range(2)]
    cases = [make_topk_ids(t, 8, experts, "skewed") for t in (30000, 50000)]
    outs = [poisoned_outputs(c.numel(), experts + 1, block) for c in cases]
    torch.cuda.synchronize()
    for _ in range(50):
        for s, ids, o in zip(streams, cases, outs):
            with torch.cuda.stream(s):
                moe_align_block_size(ids, experts + 1, block, *o, True)
    torch.cuda.synchronize()
    for ids, o in zip(cases, outs):
        ref = tuple(torch.full_like(t, POISON) for t in o)
        moe_align_block_size_ref(ids, experts + 1, block, *ref, True, False)
        assert mismatch(o, ref, experts + 1) is None


def test_torch_compile_traces_the_op():
    experts, block = 128, 16

    @torch.compile(fullgraph=True)
    def f(ids):
        return moe_align_for_fused_moe(ids, block, experts)

    ids = make_topk_ids(1000, 8, experts, "uniform")
    got = f(ids)
    want = moe_align_for_fused_moe(ids, block, experts)
    used_blocks = int(want[2]) // block  # expert_ids past them is uninitialized memory
    assert torch.equal(got[0], want[0]) and torch.equal(got[2], want[2])
    assert torch.equal(got[1][:used_blocks], want[1][:used_blocks])
