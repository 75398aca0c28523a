"""The torch reference against a brute-force pure-Python model of the contract."""

import random

import pytest
import torch

from sgl_kernel_ext.reference import moe_align_block_size_ref, required_sizes

POISON = -12345


def brute_force(ids, num_buckets, block_size, sorted_len, blocks_len, pad, ignore):
    numel = len(ids)
    runs = [[] for _ in range(num_buckets)]
    for i, x in enumerate(ids):
        b = x + 1 if 0 <= x + 1 < num_buckets else 0
        if ignore and b == 0:
            continue
        runs[b].append(i)
    sorted_ids = [numel if pad else POISON] * sorted_len
    expert_ids = [POISON] * blocks_len
    cumsum = [POISON] * (num_buckets + 1)
    pos = 0
    for b, run in enumerate(runs):
        padded = -(-len(run) // block_size) * block_size
        for j, i in enumerate(run):
            sorted_ids[pos + j] = i
        for m in range(pos // block_size, (pos + padded) // block_size):
            expert_ids[m] = b - 1
        cumsum[b] = pos + len(run)
        pos += padded
    cumsum[num_buckets] = pos
    return sorted_ids, expert_ids, [pos], cumsum


@pytest.mark.parametrize("seed", range(300))
def test_reference_matches_brute_force(seed):
    rng = random.Random(seed)
    experts = rng.choice([1, 2, 3, 8, 16, 64, 257])
    tokens = rng.choice([0, 1, 2, 5, rng.randint(1, 200)])
    topk = rng.randint(1, 8)
    block = rng.choice([1, 2, 3, 4, 16, 64])
    pad, ignore = rng.random() < 0.5, rng.random() < 0.3
    dist = rng.choice(["uniform", "invalid", "one", "ep"])
    if dist == "uniform":
        ids = [rng.randrange(experts) for _ in range(tokens * topk)]
    elif dist == "invalid":  # anything, including ids far outside the range
        ids = [rng.randint(-50, experts + 50) for _ in range(tokens * topk)]
    elif dist == "one":
        ids = [rng.randrange(experts)] * (tokens * topk)
    else:
        ids = [rng.choice([-1, rng.randrange(experts)]) for _ in range(tokens * topk)]
    buckets = experts + 1
    sorted_len, blocks_len = required_sizes(len(ids), buckets, block)
    slack = rng.choice([0, 0, 5])
    dtype = rng.choice([torch.int32, torch.int64])
    topk_ids = torch.tensor(ids, dtype=dtype).view(tokens, topk)
    outs = [torch.full((n,), POISON, dtype=torch.int32)
            for n in (sorted_len + slack, blocks_len + slack, 1, buckets + 1)]
    moe_align_block_size_ref(topk_ids, buckets, block, *outs, pad, ignore)
    want = brute_force(ids, buckets, block, sorted_len + slack, blocks_len + slack, pad, ignore)
    for name, got, exp in zip(("sorted", "expert_ids", "post_pad", "cumsum"), outs, want):
        assert got.tolist() == exp, name


def test_required_sizes_match_sglang_wrapper():
    # sglang 0.5.17 sizes the buffer numel*block if numel < E+1 else numel + (E+1)*(block-1)
    for numel, experts, block in [(8, 256, 64), (4096, 256, 64), (257, 256, 16), (0, 8, 16)]:
        buckets = experts + 1
        sglang = numel * block if numel < buckets else numel + buckets * (block - 1)
        assert required_sizes(numel, buckets, block)[0] == sglang
