"""Kernel benchmark: ours vs sgl_kernel 0.4.5, same process, same GPU.

Two timings per side, both ``triton.testing.do_bench`` medians:
  * graph: device time per call, from replaying a CUDA graph of CALLS_PER_GRAPH calls;
  * eager: one plain call as sglang's fused MoE makes it, output allocation included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import sys
from pathlib import Path

import torch

from sgl_kernel_ext.reference import fused_moe_sizes
from sgl_kernel_ext.sglang_compat import dist_version

MODELS = {  # routing: (experts, top-k)
    "DeepSeek-V3": (256, 8),
    "Qwen3-MoE": (128, 8),
    "Mixtral": (8, 2),
    "Kimi-K2": (384, 8),
    "Qwen3-Next": (512, 10),
}
TOKENS = (1, 16, 128, 512, 2048, 4096, 8192, 16384, 32768, 65536)
BLOCK_SIZES = (16, 64, 128)
BENCH_DISTS = ("uniform", "skewed")
CALLS_PER_GRAPH = 20


def _upstream():
    try:
        import sgl_kernel
    except Exception:  # not installed, or its library does not load on this GPU
        return None
    return sgl_kernel.moe_align_block_size


def upstream_fused_moe_align(upstream_op, topk_ids, block_size, num_experts):
    """sglang 0.5.17's wrapper around sgl_kernel (allocations + call), for the eager timing."""
    max_padded, max_blocks = fused_moe_sizes(topk_ids.numel(), num_experts, block_size)
    dev = topk_ids.device
    sorted_ids = torch.empty((max_padded,), dtype=torch.int32, device=dev)
    expert_ids = torch.empty((max_blocks,), dtype=torch.int32, device=dev)
    post = torch.empty((1,), dtype=torch.int32, device=dev)
    cumsum = torch.empty((num_experts + 2,), dtype=torch.int32, device=dev)
    upstream_op(topk_ids, num_experts + 1, block_size, sorted_ids, expert_ids, post, cumsum, True)
    return sorted_ids, expert_ids, post


def eager_time_us(fn, do_bench) -> float:
    """One plain call, as the eager column times it (do_bench empties L2 before each call)."""
    return do_bench(fn, warmup=10, rep=40, return_mode="median") * 1000.0


def graph_time_us(fn, do_bench, calls: int = CALLS_PER_GRAPH) -> float:
    """Device time per call: `calls` calls captured in one CUDA graph, replayed under do_bench."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    ms = do_bench(g.replay, warmup=10, rep=40, return_mode="median")
    return ms * 1000.0 / calls


def bench_row(model, tokens, block, dist, upstream_op, do_bench) -> dict:
    from sgl_kernel_ext.ops import moe_align_block_size, moe_align_for_fused_moe
    from sgl_kernel_ext.testing import (make_topk_ids, mismatch, poisoned_outputs, run_both, run_with_upstream,
                                        sort_within_segments)

    experts, topk = MODELS[model]
    ids = make_topk_ids(tokens, topk, experts, dist, torch.int32)
    buckets = experts + 1
    ours_out, ref_out = run_both(moe_align_block_size, ids, buckets, block, True, False)
    correct = mismatch(ours_out, ref_out, buckets) is None
    row = {"routing": model, "num_experts": experts, "topk": topk, "tokens": tokens, "block_size": block,
           "dist": dist}
    ours_buf = poisoned_outputs(ids.numel(), buckets, block)
    row["ours_graph_us"] = graph_time_us(
        lambda: torch.ops.sgl_kernel_ext.moe_align_block_size(ids, buckets, block, *ours_buf, True, False), do_bench)
    row["ours_eager_us"] = eager_time_us(lambda: moe_align_for_fused_moe(ids, block, experts), do_bench)
    if upstream_op is not None:
        ours_4, theirs = run_with_upstream(upstream_op, ids, buckets, block, True, False)  # 4-aligned buffers
        total = int(theirs[2])
        correct = correct and total == int(ours_4[2]) and torch.equal(
            sort_within_segments(theirs[0], theirs[1], total, block), ours_4[0]) and torch.equal(
            theirs[1][: total // block], ours_4[1][: total // block])
        row["upstream_graph_us"] = graph_time_us(
            lambda: upstream_op(ids, buckets, block, *theirs, True), do_bench)
        row["upstream_eager_us"] = eager_time_us(lambda: upstream_fused_moe_align(upstream_op, ids, block, experts),
                                                 do_bench)
    else:
        row["upstream_graph_us"] = row["upstream_eager_us"] = None
    row["correct"] = bool(correct)
    return row


def _progress(items, desc):
    try:
        from tqdm import tqdm

        return tqdm(items, desc=desc, file=sys.stdout, mininterval=5)
    except ImportError:
        return items


def format_table(rows, block=64, dist="uniform") -> str:
    head = f"{'routing':12s} {'tokens':>6s} | {'ours graph':>10s} {'upstream':>9s} {'speedup':>7s} | " \
           f"{'ours eager':>10s} {'upstream':>9s} {'speedup':>7s} | ok"
    lines = [f"block {block}, {dist} routing, times in µs", head, "-" * len(head)]
    for r in rows:
        if r["block_size"] != block or r["dist"] != dist:
            continue
        ug, ue = r["upstream_graph_us"], r["upstream_eager_us"]
        sg = f"{ug / r['ours_graph_us']:6.1f}x" if ug else "   n/a"
        se = f"{ue / r['ours_eager_us']:6.1f}x" if ue else "   n/a"
        lines.append(f"{r['routing']:12s} {r['tokens']:6d} | {r['ours_graph_us']:10.2f} {ug or float('nan'):9.2f} "
                     f"{sg:>7s} | {r['ours_eager_us']:10.2f} {ue or float('nan'):9.2f} {se:>7s} | "
                     f"{'yes' if r['correct'] else 'NO'}")
    return "\n".join(lines)


def plot(rows, path: Path) -> None:
    """Time against tokens, a panel per model run: block 64 and uniform routing where the run has
    them, else its smallest block size and first routing."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if any(r["routing"] == m for r in rows)]
    blocks = sorted({r["block_size"] for r in rows})
    block = 64 if 64 in blocks else blocks[0]
    dists = [d for d in BENCH_DISTS if any(r["dist"] == d for r in rows)]
    dist = dists[0] if dists else rows[0]["dist"]
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, model in zip(axes, models):
        sel = [r for r in rows if r["routing"] == model and r["block_size"] == block and r["dist"] == dist]
        t = [r["tokens"] for r in sel]
        ax.plot(t, [r["ours_graph_us"] for r in sel], "o-", label="sgl-kernel-ext (graph)")
        if sel and sel[0]["upstream_graph_us"] is not None:
            ax.plot(t, [r["upstream_graph_us"] for r in sel], "s--", label="sgl_kernel 0.4.5 (graph)")
        ax.plot(t, [r["ours_eager_us"] for r in sel], "o:", alpha=0.6, label="sgl-kernel-ext (eager)")
        if sel and sel[0]["upstream_eager_us"] is not None:
            ax.plot(t, [r["upstream_eager_us"] for r in sel], "s:", alpha=0.6, label="sgl_kernel 0.4.5 (eager)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{model} ({MODELS[model][0]}e, top-{MODELS[model][1]})")
        ax.set_xlabel("tokens")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"µs per call (block {block}, {dist})")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sgl_kernel_ext bench", description=__doc__)
    ap.add_argument("--out", default="bench/results", help="folder for the JSON and the PNG")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--tokens", nargs="*", type=int, default=list(TOKENS))
    ap.add_argument("--block-sizes", nargs="*", type=int, default=list(BLOCK_SIZES))
    ap.add_argument("--dists", nargs="*", default=list(BENCH_DISTS))
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench needs a CUDA or ROCm GPU; torch sees none", file=sys.stderr)
        return 2
    from triton.testing import do_bench

    from sgl_kernel_ext.ops import load

    load()
    upstream_op = _upstream()
    if upstream_op is None:
        print("sgl_kernel is not importable here: timing ours only", file=sys.stderr)
    grid = [(m, t, b, d) for m in args.models for t in args.tokens for b in args.block_sizes for d in args.dists]
    rows = [bench_row(*case, upstream_op, do_bench) for case in _progress(grid, "bench")]
    device = torch.cuda.get_device_name()
    today = datetime.date.today().isoformat()
    result = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "hip": torch.version.hip,
        "sgl_kernel": dist_version("sglang-kernel") or dist_version("sgl-kernel"),
        "python": platform.python_version(),
        "date": today,
        "calls_per_graph": CALLS_PER_GRAPH,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"kernel-{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-').lower()}-{today}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    try:
        plot(rows, out / f"{stem}.png")
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
    for block in args.block_sizes:
        print(format_table(rows, block=block))
    bad = [r for r in rows if not r["correct"]]
    print(f"wrote {out / stem}.json; {len(rows) - len(bad)} of {len(rows)} rows correct")
    return 1 if bad else 0
