"""A few calls covering every path of the kernel (tiny, staged with 256 and 512 threads and
with 16-byte or single-slot writes, ranged, exchange with 256- and 512-thread blocks, with 32- or
16-bit published counts, placing directly or through shared memory, in thread-block clusters
or not, a grid of one cluster); run under compute-sanitizer by sanitize.sh, with and without clusters."""

import torch

from sgl_kernel_ext import moe_align_block_size
from sgl_kernel_ext.testing import make_topk_ids, mismatch, run_both

cases = [  # tokens, topk, experts, block, dist, dtype, pad, ignore
    (1, 8, 256, 64, "distinct", torch.int32, True, False),
    (4, 8, 128, 16, "ep_mix", torch.int64, True, True),
    (100, 2, 8, 16, "uniform", torch.int64, False, False),
    (130, 8, 256, 64, "distinct", torch.int32, True, False),
    (400, 8, 256, 48, "skewed", torch.int64, True, True),
    (3000, 8, 256, 64, "ep_mix", torch.int32, True, True),
    (20000, 8, 256, 128, "skewed", torch.int32, True, False),
    (20000, 10, 1024, 16, "uniform", torch.int64, True, False),
    (4096, 8, 128, 64, "uniform", torch.int32, True, False),
    (65536, 8, 256, 64, "uniform", torch.int32, True, False),
    (65536, 8, 384, 64, "one_expert", torch.int32, False, False),
    (32768, 8, 256, 64, "uniform", torch.int32, True, False),  # sorted placement, 32-bit counts
    (16384, 2, 8, 64, "skewed", torch.int32, True, False),  # direct placement, 32-bit counts, few buckets
    (1000, 8, 256, 16, "skewed", torch.int32, True, False),  # a grid of one cluster (without: an exchange)
    (3000, 2, 8, 64, "ep_mix", torch.int64, True, True),  # one cluster over few buckets
    (512, 10, 512, 16, "skewed", torch.int32, True, False),  # ranged, 512 threads
    (400, 8, 256, 3, "one_expert", torch.int64, False, True),  # ranged, shares inside one bucket, single slots
]
for tokens, topk, experts, block, dist, dtype, pad, ignore in cases:
    ids = make_topk_ids(tokens, topk, experts, dist, dtype)
    ours, ref = run_both(moe_align_block_size, ids, experts + 1, block, pad, ignore)
    err = mismatch(ours, ref, experts + 1)
    assert err is None, err
torch.cuda.synchronize()
print(f"{len(cases)} sanitizer cases ran and matched the reference")
