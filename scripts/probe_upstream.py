"""Print what sgl_kernel.moe_align_block_size writes for small crafted inputs,
every flag combination, into poisoned buffers: the record behind our contract."""

import itertools

import torch
import sgl_kernel

P = -7  # poison

def show(ids, buckets, block, pad, ignore, sorted_len=None):
    ids = torch.tensor(ids, dtype=torch.int32, device="cuda")
    numel = ids.numel()
    max_padded = sorted_len or numel + min(numel, buckets) * (block - 1)
    outs = [torch.full((n,), P, dtype=torch.int32, device="cuda")
            for n in (max_padded, -(-max_padded // block), 1, buckets + 1)]
    sgl_kernel.moe_align_block_size(ids, buckets, block, *outs, pad, ignore)
    torch.cuda.synchronize()
    print(f"ids={ids.tolist()} buckets={buckets} block={block} pad={pad} ignore={ignore}")
    for name, t in zip(("sorted", "expert_ids", "post_pad", "cumsum"), outs):
        print(f"   {name:10s} {t.tolist()}")

for pad, ignore in itertools.product((False, True), repeat=2):
    show([[1, 2], [2, 0], [-1, 1]], 4, 2, pad, ignore)           # small-batch path (numel < 1024, buckets <= 64)
    show([[1, 2], [2, 0], [-1, 1]], 100, 2, pad, ignore, 40)      # main path (buckets > 64)
    show([[0, 3], [9, -5]], 4, 2, pad, ignore)                      # out-of-range ids (3, 9, -5) on the small path
print("dtype int64 ok:", end=" ")
ids = torch.tensor([[1, 2], [2, -1]], dtype=torch.int64, device="cuda")
outs = [torch.full((n,), P, dtype=torch.int32, device="cuda") for n in (16, 8, 1, 5)]
sgl_kernel.moe_align_block_size(ids, 4, 2, *outs, True, False)
print([t.tolist() for t in outs])
