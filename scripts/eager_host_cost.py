"""Eager timing vs host cost, ours and sgl_kernel 0.4.5 (needs both, and a GPU).

For a few shapes: five `do_bench` eager medians per side (as the bench's eager column); the same
call replayed from a CUDA graph under `do_bench` (L2 emptied before each replay as well, but the
host only launches a graph), which is the eager call's device time without its host work; then
the host time per call over 2,000 back-to-back calls. Where the host takes longer to issue a call
than the L2 flush that do_bench queues before it keeps the GPU busy, host time leaks into the eager
column (bench/NOTES.md, fourteenth session).
"""

import os
import time

import sgl_kernel
import torch
from triton.testing import do_bench

from sgl_kernel_ext.bench import MODELS, eager_time_us, graph_time_us, upstream_fused_moe_align
from sgl_kernel_ext.ops import moe_align_for_fused_moe
from sgl_kernel_ext.testing import make_topk_ids

# (routing, tokens, dist, block size); Mixtral 16 skewed block 16 is the row where ours was slower
# in eager time (fifteenth and seventeenth sessions).
SHAPES = (("Qwen3-Next", 1, "uniform", 64), ("Mixtral", 1, "uniform", 64), ("Mixtral", 16, "skewed", 16),
          ("Mixtral", 16, "uniform", 16), ("DeepSeek-V3", 16, "uniform", 64), ("DeepSeek-V3", 16384, "uniform", 64))
HOST_CALLS = 2000


def host_us_per_call(fn):
    """Host time to issue one call, and the same until the GPU has drained them all."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(HOST_CALLS):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return 1e6 * (t1 - t0) / HOST_CALLS, 1e6 * (t2 - t0) / HOST_CALLS


def main():
    print(torch.cuda.get_device_name(), torch.__version__, "cpus", os.cpu_count())
    upstream_op = sgl_kernel.moe_align_block_size
    for model, tokens, dist, block in SHAPES:
        experts, topk = MODELS[model]
        ids = make_topk_ids(tokens, topk, experts, dist, torch.int32)
        sides = (("upstream", lambda: upstream_fused_moe_align(upstream_op, ids, block, experts)),
                 ("ours", lambda: moe_align_for_fused_moe(ids, block, experts)))
        for name, fn in sides:
            fn()
            eager = [eager_time_us(fn, do_bench) for _ in range(5)]
            cold = [graph_time_us(fn, do_bench, calls=1) for _ in range(3)]
            issue, drain = host_us_per_call(fn)
            print(f"{model:11s} {tokens:6d} {dist:7s} {block:3d} {name:8s} do_bench eager us x5: "
                  + " ".join(f"{x:.2f}" for x in eager) + " | one-call graph x3: " + " ".join(f"{x:.2f}" for x in cold)
                  + f" | host us/call {issue:.1f} (to drain {drain:.1f})")


if __name__ == "__main__":
    main()
