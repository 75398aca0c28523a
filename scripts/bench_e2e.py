"""End-to-end prefill throughput, plugin on vs off, with SGLang's bench_one_batch.

Every run is its own process: ``scripts/one_batch_with_plugins.py`` (= ``python -m
sglang.bench_one_batch`` with SGLang's plugins loaded first, which bench_one_batch
itself does not do) with ``SGL_KERNEL_EXT_MOE_ALIGN=1`` or ``0``, dummy weights, the
Triton attention / MoE backends, no CUDA graphs, batch size 1, output length 1.
Runs are interleaved A/B: for each repetition and model, "on" then "off".

Inside one process bench_one_batch first warms up at the first input length, then
measures each input length ``--inner`` times (interleaved: 4K, 16K, 4K, 16K, ...);
the first measurement of each length is dropped (it pays one-time costs: allocator
growth, kernel loads) and the median of the rest is that run's value. Each run's
status file (``SGL_KERNEL_EXT_STATUS_DIR``) must show our kernel ran when on and did
not when off, or the run is excluded and reported.

Printed and written to ``<out>/e2e-<gpu>-<date>.json`` (+ a PNG next to it): median
and min/max prefill tokens/s on and off, the measured gain, and the gain that the
kernel benchmark predicts (``bench/results/kernel-*.json``: upstream minus ours,
graph time, at the run's token count and the fused MoE's block size, times the
number of MoE layers), with what separates the two. Results are written after
every run, so a run cut short still leaves its numbers; ``--plot-only FILE``
redraws the PNG from a JSON. A JSON of the same GPU and date is merged: runs of
other (model, input length) pairs in it are kept.

    python scripts/bench_e2e.py --out "$OUT"                      # both models, 4K and 16K, 5 reps
    python scripts/bench_e2e.py --models deepseek-v3 --reps 7
    python scripts/bench_e2e.py --dry-run                        # print the plan and the commands
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "tests" / "e2e" / "models"
WRAPPER = Path(__file__).resolve().parent / "one_batch_with_plugins.py"

MODELS = {
    # key: model folder, routing name in the kernel benchmark, default layer count (None: the config's)
    "deepseek-v3": {"dir": "deepseek-v3-3l", "routing": "DeepSeek-V3", "layers": None, "label": "DeepSeek-V3"},
    "qwen3-moe": {"dir": "qwen3-moe-a3b-like", "routing": "Qwen3-MoE", "layers": 24, "label": "Qwen3-30B-A3B-like"},
}
BACKEND_ARGS = ["--load-format", "dummy", "--attention-backend", "triton", "--moe-runner-backend", "triton",
                "--sampling-backend", "pytorch", "--disable-cuda-graph"]
KERNEL_BOUND_FACTOR = 5  # a measured gain above this multiple of the prediction is not the kernel's
PREFILL_RE = re.compile(r"Prefill\. latency: *([0-9.eE+-]+) s, throughput: *([0-9.eE+-]+) token/s")


# ----------------------------------------------------------------------------- model folders

def load_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def moe_layer_count(cfg: dict) -> int:
    """MoE layers as sglang 0.5.17 builds them (deepseek_v2.py / qwen3_moe.py)."""
    n = int(cfg["num_hidden_layers"])
    if cfg.get("model_type", "").startswith("deepseek"):
        first, freq = int(cfg.get("first_k_dense_replace", 0)), int(cfg.get("moe_layer_freq", 1))
        return sum(1 for i in range(n) if cfg.get("n_routed_experts") and i >= first and i % freq == 0)
    if cfg.get("model_type") == "qwen3_moe":
        step, dense = int(cfg.get("decoder_sparse_step", 1)), set(cfg.get("mlp_only_layers") or [])
        return sum(1 for i in range(n) if i not in dense and cfg.get("num_experts", 0) > 0 and (i + 1) % step == 0)
    raise ValueError(f"unknown model_type {cfg.get('model_type')!r}")


def routed_shape(cfg: dict) -> tuple[int, int, int]:
    """(experts E as the fused MoE sees them, top-k, intermediate N) at TP 1 on a CUDA GPU.

    DeepSeek-V3 at TP 1 on sm80+ fuses its shared expert into the routed ones
    (sglang's determine_num_fused_shared_experts): 257 experts, top-9.
    """
    if cfg.get("model_type", "").startswith("deepseek"):
        shared = int(cfg.get("n_shared_experts") or 0)
        fused = shared if (cfg.get("n_routed_experts") in (256,) and shared == 1) else 0
        return int(cfg["n_routed_experts"]) + fused, int(cfg["num_experts_per_tok"]) + fused, \
            int(cfg["moe_intermediate_size"])
    return int(cfg["num_experts"]), int(cfg["num_experts_per_tok"]), int(cfg["moe_intermediate_size"])


def model_folder(key: str, layers: int | None, work: Path) -> tuple[Path, dict]:
    """The shipped folder, or a copy in ``work`` whose config has ``layers`` layers."""
    dst = folder_with_layers(MODELS_DIR / MODELS[key]["dir"], layers, work)
    return dst, load_config(dst)


def folder_with_layers(src: Path, layers: int | None, work: Path) -> Path:
    """``src`` where its config already has ``layers`` layers (or ``layers`` is None), else a copy
    in ``work`` whose config has them (made once)."""
    if layers is None or layers == load_config(src).get("num_hidden_layers"):
        return src
    dst = work / f"{src.name}-{layers}l"
    if not dst.exists():
        dst.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file() and f.name != "config.json":
                shutil.copy2(f, dst / f.name)
        cfg = dict(load_config(src), num_hidden_layers=layers)
        if "max_window_layers" in cfg:
            cfg["max_window_layers"] = layers
        (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dst


# ----------------------------------------------------------------------------- environment facts

def _quiet(cmd: list[str], timeout: float = 15) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def gpu_name(fallback: str | None = None) -> str:
    name = _quiet(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    if name:
        return name.splitlines()[0].strip()
    return fallback or "unknown-gpu"


def dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def sglang_moe_config_dir() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("sglang")  # finds the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "srt/layers/moe/moe_runner/triton_utils/configs"
    return d if d.is_dir() else None


def fused_moe_block_size(E: int, N: int, M: int, device: str) -> tuple[int, str]:
    """BLOCK_SIZE_M the Triton fused MoE uses for M tokens (bf16), as sglang 0.5.17's
    try_get_optimal_moe_config picks it: the tuned JSON for (E, N, device) under the running
    triton's version folder, else any other version's (newest first), else the default config."""
    cfg_dir = sglang_moe_config_dir()
    fname = f"E={E},N={N},device_name={device.replace(' ', '_')}.json"
    if cfg_dir is not None:
        tv = dist_version("triton") or ""
        versions = sorted((d.name for d in cfg_dir.iterdir() if d.name.startswith("triton_")),
                          key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)), reverse=True)
        own = f"triton_{tv.replace('.', '_')}"
        for vdir in ([own] if own in versions else []) + [v for v in versions if v != own]:
            path = cfg_dir / vdir / fname
            if path.exists():
                table = {int(k): v for k, v in json.loads(path.read_text()).items()}
                key = min(table, key=lambda x: abs(x - M))
                return int(table[key]["BLOCK_SIZE_M"]), f"{vdir}/{fname} (row {key})"
    return (64 if M > E else 16), f"default config ({fname} not found)"


# ----------------------------------------------------------------------------- kernel benchmark

def newest_kernel_json(explicit: str | None, folders: list[Path]) -> Path | None:
    if explicit:
        return Path(explicit)
    found = []
    for d in folders:
        if d.is_dir():
            found += list(d.glob("kernel-*.json"))
    if not found:
        return None

    def key(p: Path):
        try:
            date = json.loads(p.read_text()).get("date", "")
        except (OSError, ValueError):
            date = ""
        return (date, p.stat().st_mtime)

    return max(found, key=key)


def kernel_delta(rows: list[dict], routing: str, tokens: int, block: int) -> dict | None:
    """upstream - ours (graph and eager µs per call) from the kernel benchmark row nearest in tokens."""
    cands = [r for r in rows if r.get("routing") == routing and r.get("dist") == "uniform"
             and r.get("block_size") == block and r.get("upstream_graph_us") is not None]
    if not cands:
        return None
    row = min(cands, key=lambda r: abs(math.log2(max(r["tokens"], 1)) - math.log2(max(tokens, 1))))
    return {
        "tokens_row": row["tokens"],
        "block_size": block,
        "ours_graph_us": row["ours_graph_us"],
        "upstream_graph_us": row["upstream_graph_us"],
        "delta_graph_us": row["upstream_graph_us"] - row["ours_graph_us"],
        "delta_eager_us": (row["upstream_eager_us"] - row["ours_eager_us"])
        if row.get("upstream_eager_us") is not None and row.get("ours_eager_us") is not None else None,
    }


def gain_from_saving(saved_us: float, off_latency_us: float) -> float:
    """Throughput gain (%) when a forward of off_latency_us gets saved_us shorter."""
    return 100.0 * saved_us / max(off_latency_us - saved_us, 1e-9)


# ----------------------------------------------------------------------------- one run

class Terminated(Exception):
    """SIGTERM/SIGHUP arrived: unwind so the finally blocks kill the child process group."""


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def parse_results(jsonl: Path, log: Path) -> list[tuple[int, float]]:
    """[(input_len, prefill latency s)] of the measured (not warm-up) runs, in order."""
    out = []
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            line = line.strip()
            if line:
                rec = json.loads(line)
                out.append((int(rec["input_len"]), float(rec["prefill_latency"])))
    if out:
        return out
    # Fallback (the process died before writing the JSON lines): the printed "Prefill." lines
    # after "Benchmark ..." (the warm-up prints one before it); lengths by position, marked -1.
    text = log.read_text(errors="replace") if log.exists() else ""
    if "Benchmark ..." not in text:
        return []
    text = text.split("Benchmark ...", 1)[1]
    return [(-1, float(m.group(1))) for m in PREFILL_RE.finditer(text)]


def per_length(values: list[tuple[int, float]], seq: list[int]) -> dict[int, dict]:
    """Per input length: raw latencies, and the run's tok/s (median after dropping the first)."""
    if values and values[0][0] == -1:  # parsed from the log: lengths by position
        values = [(seq[i], v) for i, (_, v) in enumerate(values[: len(seq)])]
    res = {}
    for L in dict.fromkeys(seq):
        lat = [v for (l, v) in values if l == L]
        if not lat:
            continue
        used = lat[1:] if len(lat) >= 2 else lat
        res[L] = {"latency_s": lat, "tok_s": L / statistics.median(used)}
    return res


def plugin_state(status_dir: Path) -> tuple[str, list[dict]]:
    from sgl_kernel_ext.plugin import read_status_files  # the runs need the package; --plot-only does not

    entries = read_status_files(status_dir)
    if any(e.get("implementation") == "sgl_kernel_ext" and int(e.get("calls") or 0) >= 1 for e in entries):
        return "ours", entries
    if any(e.get("implementation") == "sgl_kernel_ext" for e in entries):
        return "ours-not-called", entries
    if entries:
        return "sglang", entries
    return "no-status", entries


def run_once(run_id: str, arm: str, folder: Path, seq: list[int], args, work: Path, logs: Path) -> dict:
    status = work / "status" / run_id
    status.mkdir(parents=True, exist_ok=True)
    jsonl = work / f"{run_id}.jsonl"
    log = logs / f"{run_id}.log"
    env = dict(os.environ)
    env.update({"SGL_KERNEL_EXT_MOE_ALIGN": "1" if arm == "on" else "0",
                "SGL_KERNEL_EXT_STATUS_DIR": str(status), "PYTHONUNBUFFERED": "1"})
    cmd = [sys.executable, str(WRAPPER), "--model-path", str(folder), *BACKEND_ARGS,
           "--mem-fraction-static", str(args.mem_fraction_static), "--batch-size", "1",
           "--input-len", *map(str, seq), "--output-len", str(args.output_len),
           "--result-filename", str(jsonl), "--run-name", run_id, *args.extra]
    from sgl_kernel_ext.process_group import run_in_own_group

    header = "$ SGL_KERNEL_EXT_MOE_ALIGN=%s %s\n" % (env["SGL_KERNEL_EXT_MOE_ALIGN"], " ".join(cmd))
    rc, secs = run_in_own_group(cmd, env, log, args.timeout_s, work, header=header, term_grace_s=3.0)
    res = {"run_id": run_id, "arm": arm, "exit": rc, "seconds": round(secs, 1), "log": str(log)}
    try:
        res["per_len"] = per_length(parse_results(jsonl, log), seq)
    except (ValueError, KeyError) as err:
        res["per_len"], res["parse_error"] = {}, str(err)
    res["plugin"], res["status"] = plugin_state(status)
    want = "ours" if arm == "on" else "sglang"
    res["valid"] = bool(res["per_len"]) and rc == 0 and (
        res["plugin"] == want or (arm == "off" and res["plugin"] == "no-status" and args.allow_no_status))
    return res


# ----------------------------------------------------------------------------- summary

def summarize(key: str, L: int, layers: int, cfg: dict, results: list[dict], identical, kernel_rows,
              kernel_src, device: str) -> dict:
    on = [r["per_len"][L]["tok_s"] for r in results if r["arm"] == "on" and r["valid"] and L in r["per_len"]]
    off = [r["per_len"][L]["tok_s"] for r in results if r["arm"] == "off" and r["valid"] and L in r["per_len"]]
    E, topk, N = routed_shape(cfg)
    block, block_src = fused_moe_block_size(E, N, L, device)
    moe_layers = moe_layer_count(cfg)
    row = {
        "model": MODELS[key]["dir"], "label": MODELS[key]["label"], "routing": MODELS[key]["routing"],
        "input_len": L, "layers": layers, "moe_layers": moe_layers,
        "fused_moe": {"experts": E, "topk": topk, "intermediate": N, "block_size": block, "block_size_from": block_src},
        "identical_outputs": identical,
        "on_tok_s": on, "off_tok_s": off,
        "on_median": statistics.median(on) if on else None,
        "off_median": statistics.median(off) if off else None,
        "on_min": min(on) if on else None, "on_max": max(on) if on else None,
        "off_min": min(off) if off else None, "off_max": max(off) if off else None,
        "excluded_runs": [r["run_id"] for r in results if not r["valid"]],
    }
    row["gain_pct"] = (100.0 * (row["on_median"] / row["off_median"] - 1.0)) if on and off else None
    row["off_spread_pct"] = (100.0 * (max(off) - min(off)) / row["off_median"]) if len(off) >= 2 else None
    row["on_spread_pct"] = (100.0 * (max(on) - min(on)) / row["on_median"]) if len(on) >= 2 else None
    pred = kernel_delta(kernel_rows, MODELS[key]["routing"], L, block) if kernel_rows else None
    row["predicted_gain_pct"] = None
    if pred is not None:
        pred["kernel_json"] = kernel_src
        pred["saved_us_per_forward"] = pred["delta_graph_us"] * moe_layers
        if row["off_median"]:
            off_us = L / row["off_median"] * 1e6
            pred["off_prefill_ms"] = off_us / 1000
            row["predicted_gain_pct"] = gain_from_saving(pred["saved_us_per_forward"], off_us)
            if pred["delta_eager_us"] is not None:
                pred["predicted_gain_pct_eager"] = gain_from_saving(pred["delta_eager_us"] * moe_layers, off_us)
    row["predicted"] = pred
    return classify(row)


def classify(row: dict) -> dict:
    """Set ``resolvable`` and ``beyond_kernel`` from a run's numbers (also refreshes older JSON)."""
    on, off = row["on_tok_s"], row["off_tok_s"]
    # Resolved only when the two arms' ranges do not overlap: every "on" run beat every "off" run, or the reverse.
    row["resolvable"] = (min(on) > max(off) or max(on) < min(off)) if len(on) >= 2 and len(off) >= 2 else None
    # A resolved difference far beyond what the kernel can save per forward is not the kernel's doing.
    pred = row.get("predicted") or {}
    bound = max([abs(x) for x in (row.get("predicted_gain_pct"), pred.get("predicted_gain_pct_eager"))
                 if x is not None], default=None)
    row["beyond_kernel"] = (abs(row["gain_pct"]) > KERNEL_BOUND_FACTOR * bound) \
        if row["resolvable"] and bound is not None else None
    return row


def pct(x, spec="+.2f") -> str:
    return "n/a" if x is None else format(x, spec) + "%"


def report(runs: list[dict]) -> str:
    lines = []
    head = (f"{'model':20s} {'tokens':>6s} {'MoE':>3s} | {'on tok/s (min..max)':>28s} | {'off tok/s (min..max)':>28s} "
            f"| {'gain':>7s} {'pred.':>7s} {'spread':>6s} | n on/off")
    lines += [head, "-" * len(head)]
    for r in runs:
        def col(m, lo, hi):
            return "n/a" if m is None else f"{m:9.0f} ({lo:.0f}..{hi:.0f})"
        lines.append(
            f"{r['label'][:20]:20s} {r['input_len']:6d} {r['moe_layers']:3d} | "
            f"{col(r['on_median'], r['on_min'], r['on_max']):>28s} | {col(r['off_median'], r['off_min'], r['off_max']):>28s} | "
            f"{pct(r['gain_pct']):>7s} {pct(r['predicted_gain_pct'], '+.3f'):>7s} "
            f"{pct(r['off_spread_pct'], '.2f'):>6s} | {len(r['on_tok_s'])}/{len(r['off_tok_s'])}")
    lines.append("")
    lines.append("What the prediction is, and why the measurement can differ:")
    for r in runs:
        p = r["predicted"]
        fm = r["fused_moe"]
        if p is None:
            lines.append(f"  {r['label']} {r['input_len']}: no prediction (no kernel-*.json row with upstream "
                         f"timings for {r['routing']}, block {fm['block_size']}, uniform routing)")
            continue
        eager = p.get("predicted_gain_pct_eager")
        lines.append(
            f"  {r['label']} {r['input_len']}: kernel bench ({p['tokens_row']} tokens, block {fm['block_size']}, "
            f"uniform): upstream {p['upstream_graph_us']:.1f} µs - ours {p['ours_graph_us']:.1f} µs = "
            f"{p['delta_graph_us']:.1f} µs per call x {r['moe_layers']} MoE layers = "
            f"{p['saved_us_per_forward']:.0f} µs per forward, against a {p.get('off_prefill_ms', float('nan')):.1f} ms "
            f"prefill: {pct(r['predicted_gain_pct'], '+.3f')} (eager timings: {pct(eager, '+.3f')}); "
            f"measured {pct(r['gain_pct'])} with a run-to-run spread (max-min) of {pct(r['off_spread_pct'], '.2f')} off, "
            f"{pct(r['on_spread_pct'], '.2f')} on: "
            + {True: "the on and off ranges do not overlap", False: "the on and off ranges overlap: not resolved.",
               None: "too few runs to tell."}[r.get("resolvable")]
            + {True: f", but the difference is over {KERNEL_BOUND_FACTOR}x what the kernel can save: a "
                     "process-to-process difference, not the kernel.",
               False: ".", None: ""}[r.get("beyond_kernel")])
    lines += [
        "  - Resolution: a gain is told apart from noise only when the arms' ranges do not overlap; the align",
        "    op is a few µs to tens of µs in a prefill of tens to hundreds of ms, so each process's own state",
        "    (GPU clocks, memory placement, warm-up) can move throughput more than the kernel does.",
        "  - The prediction uses device time per call measured inside a CUDA graph. Prefill here runs eagerly:",
        "    the host-side launch and the output allocations overlap with GPU work still queued, so mostly",
        "    the device-time difference shows; if the GPU waits for the host it is closer to the eager figure.",
        "  - Routing differs from the kernel bench's uniform rows: at TP 1 SGLang fuses DeepSeek-V3's shared",
        "    expert (257 experts, top-9), and with dummy weights its router is dominated by the constant",
        "    e_score_correction_bias, so nearly every token picks the same 8 experts (very skewed);",
        "    Qwen3's softmax router on dummy weights spreads tokens about uniformly.",
        "  - The block size is the fused MoE's BLOCK_SIZE_M for that token count (tuned JSON or default).",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if r["on_tok_s"] or r["off_tok_s"]]
    if not runs:
        return
    fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.6), squeeze=False)
    for ax, r in zip(axes[0], runs):
        for arm, marker, color in (("on", "o", "tab:blue"), ("off", "s", "tab:orange")):
            vals = r[f"{arm}_tok_s"]
            ax.plot(range(1, len(vals) + 1), [v / 1000 for v in vals], marker, color=color,
                    label=f"plugin {arm}" + (" (sgl-kernel-ext)" if arm == "on" else " (sglang)"))
            if r[f"{arm}_median"]:
                ax.axhline(r[f"{arm}_median"] / 1000, color=color, ls="--", lw=1)
        ax.set_title(f"{r['label']}, {r['layers']}L ({r['moe_layers']} MoE)\n{r['input_len']} tokens: "
                     f"{pct(r['gain_pct'])} (pred. {pct(r['predicted_gain_pct'], '+.3f')})", fontsize=8)
        ax.set_xlabel("repetition")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("prefill k tokens/s (bench_one_batch)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{result['device']}, sglang {result['sglang']}, torch {result['torch']}, {result['date']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_result(result: dict, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()


def run_plan(plan, folders, seq, args, work, logs, done, result, kept, identical, kernel_rows, kpath, device,
             path, t_start) -> None:
    """Run the interleaved plan; after every run, rewrite the result JSON."""
    failures_in_a_row = 0
    for i, (rep, key, arm) in enumerate(plan):
        elapsed = time.monotonic() - t_start
        if arm == "on" and args.budget_s > 0 and done:
            est = statistics.median(r["seconds"] for r in done[-4:])  # robust to one cold (JIT) start
            if elapsed + 2 * est > args.budget_s:
                print(f"budget: {elapsed:.0f} s spent, an on/off pair takes ~{2 * est:.0f} s: "
                      f"stopping before repetition {rep} of {key} (use --budget-s / --reps)")
                result["stopped_by_budget"] = True
                return
        folder, _ = folders[key]
        r = run_once(f"{key}-{arm}-{rep}", arm, folder, seq, args, work, logs)
        r.update(model_key=key, rep=rep)
        done.append(r)
        shown = ", ".join(f"{L}: {v['tok_s']:.0f} tok/s" for L, v in r["per_len"].items())
        print(f"[{i + 1}/{len(plan)} {time.monotonic() - t_start:5.0f} s] {r['run_id']}: exit {r['exit']}, "
              f"{r['seconds']:.0f} s, plugin {r['plugin']}, {shown or 'no result'}"
              + ("" if r["valid"] else "  <-- EXCLUDED"), flush=True)
        if not r["valid"]:
            print(f"    log {r['log']} ends with:\n"
                  + "\n".join("    | " + ln for ln in tail(Path(r["log"])).splitlines()), flush=True)
        failures_in_a_row = 0 if r["per_len"] else failures_in_a_row + 1
        result["processes"] = done
        result["runs"] = kept + [
            summarize(k, L, folders[k][1]["num_hidden_layers"], folders[k][1],
                      [x for x in done if x["model_key"] == k], identical.get(MODELS[k]["dir"]),
                      kernel_rows, str(kpath) if kpath else None, device)
            for k in args.models for L in args.input_lens]
        write_result(result, path)
        if failures_in_a_row >= 2 and not any(x["per_len"] for x in done):
            print("two runs in a row gave no result and none has so far: stopping (see the logs above)")
            return


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--input-lens", nargs="+", type=int, default=[4096, 16384])
    ap.add_argument("--reps", type=int, default=5, help="processes per arm and model (interleaved on, off, ...)")
    ap.add_argument("--inner", type=int, default=5,
                    help="measurements per input length inside one process (the first is dropped when >= 2)")
    ap.add_argument("--dsv3-layers", type=int, default=None, help="DeepSeek-V3 layers (default: the config's, 3)")
    ap.add_argument("--qwen-layers", type=int, default=MODELS["qwen3-moe"]["layers"],
                    help="Qwen3-MoE layers (all MoE); the real model has 48")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for the JSON, PNG and logs")
    ap.add_argument("--identical-from", default=None,
                    help="e2e-identical.json of tests/e2e (fills identical_outputs of the same model)")
    ap.add_argument("--kernel-json", default=None,
                    help="kernel benchmark JSON (default: the newest kernel-*.json in --out and bench/results)")
    ap.add_argument("--budget-s", type=float, default=480,
                    help="start no new on/off pair past this many seconds (0: no limit)")
    ap.add_argument("--timeout-s", type=float, default=300, help="limit per bench_one_batch process")
    ap.add_argument("--mem-fraction-static", type=float, default=0.8)
    ap.add_argument("--output-len", type=int, default=1)
    ap.add_argument("--allow-no-status", action="store_true",
                    help="accept 'off' runs that wrote no status file (plugin not loaded at all)")
    ap.add_argument("--no-merge", action="store_true", help="overwrite a same-day JSON instead of merging")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and commands; run nothing")
    ap.add_argument("--plot-only", default=None, metavar="JSON",
                    help="redraw the PNG of an existing result JSON (with --identical-from: fill that field first)")
    ap.add_argument("extra", nargs=argparse.REMAINDER,
                    help="after '--': more bench_one_batch arguments for every run")
    args = ap.parse_args(argv)
    args.extra = [a for a in args.extra if a != "--"] if args.extra else []
    if args.reps < 1 or args.inner < 1:
        ap.error("--reps and --inner must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)
    if args.plot_only:  # no GPU needed: redraw, and fill identical_outputs afterwards if asked
        path = Path(args.plot_only)
        result = json.loads(path.read_text())
        if args.identical_from:
            ident = json.loads(Path(args.identical_from).read_text())
            n = 0
            for r in result["runs"]:
                if r["model"] == ident.get("model"):
                    r["identical_outputs"], n = ident.get("identical_outputs"), n + 1
            print(f"identical_outputs={ident.get('identical_outputs')} set on {n} run(s) of {ident.get('model')}")
        result["runs"] = [classify(r) if r["on_tok_s"] and r["off_tok_s"] else r for r in result["runs"]]
        write_result(result, path)
        print(report([r for r in result["runs"] if r["on_tok_s"]]))
        plot(result, path.with_suffix(".png"))
        print(f"wrote {path.with_suffix('.png')}")
        return 0
    out = Path(args.out).resolve()
    seq = [L for _ in range(args.inner) for L in args.input_lens]
    work = Path(tempfile.mkdtemp(prefix="sgl_kernel_ext_bench_e2e_"))
    try:
        folders = {}
        for key in args.models:
            layers = args.dsv3_layers if key == "deepseek-v3" else args.qwen_layers
            folders[key] = model_folder(key, layers, work)
        plan = [(rep, key, arm) for rep in range(args.reps) for key in args.models for arm in ("on", "off")]
        print(f"plan: {len(plan)} bench_one_batch processes ({args.reps} reps x {len(args.models)} models x on/off), "
              f"input lengths per process {seq}, budget {args.budget_s:.0f} s")
        for key, (folder, cfg) in folders.items():
            E, topk, N = routed_shape(cfg)
            print(f"  {key}: {folder} ({cfg['num_hidden_layers']} layers, {moe_layer_count(cfg)} MoE; "
                  f"fused MoE E={E}, top-{topk}, N={N})")
        if args.dry_run:
            for rep, key, arm in plan[:2]:
                r_id = f"{key}-{arm}-{rep}"
                print(f"  SGL_KERNEL_EXT_MOE_ALIGN={'1' if arm == 'on' else '0'} {sys.executable} {WRAPPER} "
                      f"--model-path {folders[key][0]} {' '.join(BACKEND_ARGS)} --mem-fraction-static "
                      f"{args.mem_fraction_static} --batch-size 1 --input-len {' '.join(map(str, seq))} --output-len "
                      f"{args.output_len} --result-filename {work}/{r_id}.jsonl --run-name {r_id} {' '.join(args.extra)}")
            print("  ...")
            return 0

        out.mkdir(parents=True, exist_ok=True)
        logs = out / "e2e-logs"
        logs.mkdir(exist_ok=True)
        identical = {}
        if args.identical_from:
            try:
                ident = json.loads(Path(args.identical_from).read_text())
                identical[ident.get("model")] = ident.get("identical_outputs")
            except (OSError, ValueError) as err:
                print(f"--identical-from {args.identical_from}: unreadable ({err}); identical_outputs stays null")
        kpath = newest_kernel_json(args.kernel_json, [out, REPO / "bench" / "results"])
        kernel_rows, kernel_device = [], None
        if kpath is not None:
            kdata = json.loads(kpath.read_text())
            kernel_rows, kernel_device = kdata.get("rows", []), kdata.get("device")
            print(f"kernel benchmark: {kpath} ({kernel_device}, {kdata.get('date')})")
        else:
            print("kernel benchmark: no kernel-*.json found (run `python -m sgl_kernel_ext bench`); no prediction")
        device = gpu_name(kernel_device)
        today = datetime.date.today().isoformat()
        path = out / f"e2e-{slug(device)}-{today}.json"
        kept = []
        if path.exists() and not args.no_merge:
            mine = {(MODELS[k]["dir"], L) for k in args.models for L in args.input_lens}
            kept = [classify(r) if r["on_tok_s"] and r["off_tok_s"] else r for r in json.loads(path.read_text()).get(
                "runs", []) if (r["model"], r["input_len"]) not in mine]
            if kept:
                print(f"merging: keeping {len(kept)} run(s) of other models/lengths from {path}")
        result = {"device": device, "date": today, "torch": dist_version("torch"), "sglang": dist_version("sglang"),
                  "triton": dist_version("triton"), "sgl_kernel_ext": dist_version("sgl-kernel-ext"),
                  "kernel_json": str(kpath) if kpath else None,
                  "settings": {k: v for k, v in vars(args).items() if k not in ("plot_only", "dry_run")},
                  "runs": kept, "processes": []}

        t_start = time.monotonic()
        done: list[dict] = []
        try:
            run_plan(plan, folders, seq, args, work, logs, done, result, kept, identical, kernel_rows, kpath,
                     device, path, t_start)
        except (Terminated, KeyboardInterrupt) as err:
            result["interrupted"] = str(err) or type(err).__name__
            print(f"interrupted ({result['interrupted']}): reporting the {len(done)} run(s) done so far")

        if device == "unknown-gpu":
            try:
                import torch

                if torch.cuda.is_available():
                    result["device"] = torch.cuda.get_device_name()
            except Exception:
                pass
        if not done:
            print("nothing ran")
            return 1
        write_result(result, path)
        print()
        print(report([r for r in result["runs"] if r["model"] in {MODELS[k]["dir"] for k in args.models}]))
        try:
            plot(result, path.with_suffix(".png"))
            print(f"\nwrote {path} and {path.with_suffix('.png')} (logs in {logs})")
        except ImportError:
            print(f"\nwrote {path} (matplotlib missing: no plot; logs in {logs})")
        bad = [x["run_id"] for x in done if not x["valid"]]
        if bad:
            print(f"EXCLUDED runs (failed, or the plugin state was not what the switch asked for): {bad}")
        return 1 if bad or not any(x["valid"] for x in done) else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
