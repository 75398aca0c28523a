"""Pure-torch oracle for moe_align_block_size (runs on CPU and GPU).

Contract (sgl_kernel 0.4.5 call convention, as sglang 0.5.17 uses it):
  * ``num_experts`` counts buckets; an id ``x`` lands in bucket ``x + 1`` so that
    expert parallelism's ``-1`` ("not on this rank") is bucket 0.  Ids outside
    ``[-1, num_experts - 2]`` also land in bucket 0 (upstream reads out of bounds).
  * Each bucket's run of pair indices (``i`` into ``topk_ids.flatten()``) is padded
    to a multiple of ``block_size``; ``num_tokens_post_pad[0]`` is the padded total.
  * ``expert_ids[m]`` for block ``m < total // block_size`` is ``bucket - 1``.
  * Inside a bucket the pair indices are ascending (upstream: any order).
  * Padding slots and ``sorted_token_ids[total:]`` hold ``numel`` when
    ``pad_sorted_token_ids``; otherwise they are left as they were.
  * ``ignore_invalid_expert``: bucket 0 (-1 and other invalid ids) is dropped:
    those pairs are neither counted nor placed.
  * ``cumsum_buffer[:num_experts]`` receives where each bucket's real pairs end
    (padded start + count) and ``cumsum_buffer[num_experts]`` the total: what
    upstream's multi-block path leaves there (its small-input path leaves the
    buffer untouched; sglang never reads it).
"""

from __future__ import annotations

import torch


def bucket_of(topk_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Bucket index of every pair, int64, invalid ids folded into bucket 0."""
    b = topk_ids.reshape(-1).to(torch.int64) + 1
    return torch.where((b >= 0) & (b < num_experts), b, torch.zeros_like(b))


def required_sizes(numel: int, num_experts: int, block_size: int) -> tuple[int, int]:
    """Smallest (sorted_token_ids, expert_ids) lengths that hold any routing."""
    max_padded = numel + min(numel, num_experts) * (block_size - 1)
    return max_padded, (max_padded + block_size - 1) // block_size


def fused_moe_sizes(numel: int, num_experts: int, block_size: int) -> tuple[int, int]:
    """The (sorted_token_ids, expert_ids) lengths sglang 0.5.17's fused-MoE wrapper allocates for
    ``num_experts`` experts (num_experts + 1 buckets); at least required_sizes()."""
    buckets = num_experts + 1
    max_padded = numel * block_size if numel < buckets else numel + buckets * (block_size - 1)
    return max_padded, (max_padded + block_size - 1) // block_size


def moe_align_block_size_ref(
    topk_ids: torch.Tensor,
    num_experts: int,
    block_size: int,
    sorted_token_ids: torch.Tensor,
    expert_ids: torch.Tensor,
    num_tokens_post_pad: torch.Tensor,
    cumsum_buffer: torch.Tensor,
    pad_sorted_token_ids: bool = False,
    ignore_invalid_expert: bool = False,
) -> None:
    """Fill the output buffers in place, exactly as the kernel must."""
    numel = topk_ids.numel()
    bucket = bucket_of(topk_ids, num_experts)
    keep = bucket != 0 if ignore_invalid_expert else torch.ones_like(bucket, dtype=torch.bool)
    counts = torch.bincount(bucket[keep], minlength=num_experts)
    padded = (counts + block_size - 1) // block_size * block_size
    starts = torch.zeros(num_experts + 1, dtype=torch.int64, device=bucket.device)
    starts[1:] = torch.cumsum(padded, 0)
    total = int(starts[-1])

    pair = torch.arange(numel, dtype=torch.int64, device=bucket.device)[keep]
    kept_bucket = bucket[keep]
    order = torch.argsort(kept_bucket, stable=True)
    kept_bucket, pair = kept_bucket[order], pair[order]
    first_of_bucket = torch.zeros(num_experts + 1, dtype=torch.int64, device=bucket.device)
    first_of_bucket[1:] = torch.cumsum(counts, 0)
    rank = torch.arange(pair.numel(), device=bucket.device) - first_of_bucket[kept_bucket]
    dest = starts[kept_bucket] + rank

    if pad_sorted_token_ids:
        sorted_token_ids.fill_(numel)
    sorted_token_ids[dest.to(sorted_token_ids.device)] = pair.to(sorted_token_ids)

    num_blocks = total // block_size
    block_bucket = torch.repeat_interleave(
        torch.arange(num_experts, device=bucket.device), padded // block_size
    )
    expert_ids[:num_blocks] = (block_bucket - 1).to(expert_ids)
    num_tokens_post_pad[0] = total
    cumsum_buffer[:num_experts] = (starts[:-1] + counts).to(cumsum_buffer)
    cumsum_buffer[num_experts] = total
