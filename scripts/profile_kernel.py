"""Calls to profile under ncu, ours and (if installed) sgl_kernel 0.4.5 on the same inputs:

    ncu --metrics gpu__time_duration.sum python3 scripts/profile_kernel.py [tokens ...]
"""

import sys

import torch

from sgl_kernel_ext import load
from sgl_kernel_ext.testing import make_topk_ids, poisoned_outputs, upstream_safe_outputs

try:
    import sgl_kernel
except ImportError:
    sgl_kernel = None

load()
experts, topk, block = 256, 8, 64
for tokens in [int(t) for t in sys.argv[1:]] or [1, 512, 16384, 65536]:
    ids = make_topk_ids(tokens, topk, experts, "uniform")
    ours = poisoned_outputs(ids.numel(), experts + 1, block)
    theirs = upstream_safe_outputs(ids.numel(), experts + 1, block)
    torch.cuda.synchronize()
    for _ in range(2):
        torch.ops.sgl_kernel_ext.moe_align_block_size(ids, experts + 1, block, *ours, True, False)
        if sgl_kernel is not None:
            sgl_kernel.moe_align_block_size(ids, experts + 1, block, *theirs, True, False)
torch.cuda.synchronize()
