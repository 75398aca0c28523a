"""Inputs and comparisons shared by the GPU tests and the benchmark."""

from __future__ import annotations

import torch

from sgl_kernel_ext.reference import moe_align_block_size_ref, required_sizes

POISON = 0x5EED5EED  # large positive: sorts after every real index
DISTS = ("uniform", "skewed", "one_expert", "ep_mix", "distinct", "same_topk")


def make_topk_ids(tokens: int, topk: int, num_experts: int, dist: str, dtype=torch.int32, device="cuda",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Router output ``[tokens, topk]`` with expert ids in [0, num_experts) (-1 for ep_mix)."""
    g = generator
    shape = (tokens, topk)
    if dist == "uniform":
        ids = torch.randint(0, num_experts, shape, generator=g, device=device)
    elif dist == "distinct":  # what a real top-k router emits: no repeats within a token
        k = min(topk, num_experts)
        ids = torch.rand(tokens, num_experts, generator=g, device=device).argsort(dim=1)[:, :k]
    elif dist == "skewed":  # power law: a few hot experts take most pairs
        w = torch.arange(1, num_experts + 1, device=device, dtype=torch.float64) ** -1.2
        ids = torch.multinomial(w, tokens * topk, replacement=True, generator=g).view(shape) if tokens else \
            torch.empty(shape, dtype=torch.int64, device=device)
        perm = torch.randperm(num_experts, generator=g, device=device)
        ids = perm[ids]
    elif dist == "same_topk":  # every token picks the same k experts (a router dominated by its bias)
        k = min(topk, num_experts)
        ids = torch.randperm(num_experts, generator=g, device=device)[:k].expand(tokens, k)
    elif dist == "one_expert":
        e = int(torch.randint(0, num_experts, (1,), generator=g, device=device))
        ids = torch.full(shape, e, device=device)
    elif dist == "ep_mix":  # expert parallelism: experts of other ranks are -1
        ids = torch.randint(0, num_experts, shape, generator=g, device=device)
        off_rank = torch.rand(shape, generator=g, device=device) < 0.5
        ids = torch.where(off_rank, torch.full_like(ids, -1), ids)
    else:
        raise ValueError(f"unknown routing distribution {dist!r}")
    return ids.to(dtype).contiguous()


def poisoned_outputs(numel: int, num_buckets: int, block_size: int, device="cuda", slack: int = 0):
    """Output buffers of the required size (plus ``slack``), filled with POISON."""
    max_padded, max_blocks = required_sizes(numel, num_buckets, block_size)
    new = lambda n: torch.full((n,), POISON, dtype=torch.int32, device=device)  # noqa: E731
    return new(max_padded + slack), new(max_blocks + slack), new(1), new(num_buckets + 1 + slack)


def upstream_safe_outputs(numel: int, num_buckets: int, block_size: int, device="cuda"):
    """poisoned_outputs whose lengths are multiples of 4: sgl_kernel fills sorted_token_ids with
    16-byte stores rounded up past the end."""
    need = required_sizes(numel, num_buckets, block_size)[0]
    return poisoned_outputs(numel, num_buckets, block_size, device, slack=-need % 4)


def upstream_cumsum_entries(numel: int, num_buckets: int) -> int:
    """How much of cumsum_buffer sgl_kernel 0.4.5 writes. It is upstream's scratch (sglang never
    reads it): its small-input path leaves it alone; its main path writes one entry per thread of a
    1024-thread block, so with 1024 buckets the last entry (the total) stays unwritten."""
    return 0 if numel < 1024 and num_buckets <= 64 else min(num_buckets + 1, 1024)


def run_both(fn, topk_ids, num_buckets, block_size, pad, ignore, slack=0):
    """Run ``fn`` and the reference on identical poisoned buffers; return both output tuples."""
    outs = poisoned_outputs(topk_ids.numel(), num_buckets, block_size, topk_ids.device, slack)
    ref = tuple(t.clone() for t in outs)
    fn(topk_ids, num_buckets, block_size, *outs, pad, ignore)
    moe_align_block_size_ref(topk_ids, num_buckets, block_size, *ref, pad, ignore)
    return outs, ref


def run_with_upstream(upstream_op, topk_ids, num_buckets, block_size, pad, ignore):
    """Ours and sgl_kernel's ``moe_align_block_size`` on identical poisoned buffers
    (upstream_safe_outputs); both output tuples."""
    from sgl_kernel_ext.ops import moe_align_block_size

    ours = upstream_safe_outputs(topk_ids.numel(), num_buckets, block_size, topk_ids.device)
    theirs = tuple(t.clone() for t in ours)
    moe_align_block_size(topk_ids, num_buckets, block_size, *ours, pad, ignore)
    upstream_op(topk_ids, num_buckets, block_size, *theirs, pad, ignore)
    torch.cuda.synchronize()
    return ours, theirs


def mismatch(ours, ref, num_buckets: int) -> str | None:
    """None when bit-identical (cumsum compared over its num_buckets + 1 entries)."""
    names = ("sorted_token_ids", "expert_ids", "num_tokens_post_pad", "cumsum_buffer")
    for name, a, b in zip(names, ours, ref):
        if name == "cumsum_buffer":
            a, b = a[: num_buckets + 1], b[: num_buckets + 1]
        if not torch.equal(a, b):
            bad = (a != b).nonzero()
            i = int(bad[0])
            return f"{name}: {bad.numel()} differ, first at {i}: got {int(a[i])}, want {int(b[i])}"
    return None


def sort_within_segments(sorted_ids: torch.Tensor, expert_ids: torch.Tensor, total: int, block_size: int):
    """Sort each expert's run of ``sorted_ids[:total]`` (upstream's order inside a run is arbitrary)."""
    out = sorted_ids.clone()
    nblk = total // block_size
    if nblk == 0:
        return out
    seg = expert_ids[:nblk].to(torch.int64)
    # key: (segment id, value); segments are runs of equal expert ids
    run_id = torch.cumsum(torch.cat([seg.new_zeros(1), (seg[1:] != seg[:-1]).long()]), 0)
    run_of_pos = run_id.repeat_interleave(block_size)
    body = out[:total].to(torch.int64)
    key = run_of_pos * (1 << 33) + body
    out[:total] = body[key.argsort()].to(torch.int32)
    return out
