"""Calls to profile under ncu: `ncu -k regex:moe_align python3 scripts/profile_kernel.py [tokens ...]`."""

import sys

import torch

from sgl_kernel_ext import load
from sgl_kernel_ext.testing import make_topk_ids, poisoned_outputs

load()
experts, topk, block = 256, 8, 64
for tokens in [int(t) for t in sys.argv[1:]] or [1, 512, 16384, 65536]:
    ids = make_topk_ids(tokens, topk, experts, "uniform")
    outs = poisoned_outputs(ids.numel(), experts + 1, block)
    for _ in range(2):
        torch.ops.sgl_kernel_ext.moe_align_block_size(ids, experts + 1, block, *outs, True, False)
torch.cuda.synchronize()
