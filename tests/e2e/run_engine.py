"""Run one SGLang engine (``sglang.Engine``: tokenizer manager here, scheduler and
detokenizer in their own processes) on a model folder with dummy weights, send a
fixed set of prompts one at a time, and write what came back as JSON.

Started by tests/e2e/test_engine_identical.py in a fresh process per run, with
``SGL_KERNEL_EXT_MOE_ALIGN`` (plugin on/off) and ``SGL_KERNEL_EXT_STATUS_DIR``
already in the environment, so every process the engine starts inherits them.

Prompts are deterministic token ids (``random.Random(seed + length)``), sent one
request at a time so every prefill batch holds exactly one prompt (the MoE sees
exactly ``length`` tokens: no batching that depends on arrival timing, no radix
cache reuse, no chunking up to ``--chunked-prefill-size``). Greedy decoding
(temperature 0, ignore_eos) for ``--new-tokens`` tokens, ``return_logprob`` with
``logprob_start_len=0`` (every input position too). Logprobs are stored as
``float.hex()`` strings, so the comparison is bit for bit (None stays None).

    python tests/e2e/run_engine.py --model-dir tests/e2e/models/deepseek-v3-3l --out r.json

Exit status 0 when the engine ran and every request came back, 1 otherwise (the
JSON then holds ``"ok": false`` and the traceback).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path

DEFAULT_LENS = (512, 2048, 16384)
# Token ids of the prompts: inside every shipped model's vocabulary (129280 and 151936).
ID_LOW, ID_HIGH = 100, 100_000


def make_prompt(length: int, seed: int) -> list[int]:
    rng = random.Random(seed * 1_000_003 + length)
    return [rng.randrange(ID_LOW, ID_HIGH) for _ in range(length)]


def ids_digest(ids) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


def hexf(x):
    return None if x is None else float(x).hex()


def _logprob_summary(vals) -> dict:
    finite = [v for v in vals if v is not None and math.isfinite(v)]
    nonfinite = sum(1 for v in vals if v is not None and not math.isfinite(v))
    return {
        "n": len(vals),
        "none": sum(1 for v in vals if v is None),
        "nonfinite": nonfinite,
        "min": min(finite) if finite else None,
        "max": max(finite) if finite else None,
        "distinct": len(set(finite)),
    }


def write_result(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result) + "\n")
    os.replace(tmp, path)


def engine_kwargs(args) -> dict:
    kw = dict(
        model_path=str(Path(args.model_dir).resolve()),
        load_format="dummy",
        attention_backend="triton",
        moe_runner_backend="triton",
        sampling_backend="pytorch",
        disable_cuda_graph=True,
        mem_fraction_static=args.mem_fraction_static,
        chunked_prefill_size=args.chunked_prefill_size,
        disable_radix_cache=True,
        random_seed=args.seed,
        log_level=args.log_level,
    )
    overrides = json.loads(args.override_json) if args.override_json else {}
    if args.moe_gain != 1.0:
        # The dummy weights are all U(-1e-3, 1e-3), norm weights included, so a routed
        # expert adds ~1e-12 to a residual of ~6e-4: far below one bf16 step, i.e. the
        # MoE output would not reach the logits at all. Scaling routed_scaling_factor
        # (a plain multiplier on the routed experts' sum) makes it visible.
        cfg = json.loads((Path(args.model_dir) / "config.json").read_text())
        if "routed_scaling_factor" in cfg and "routed_scaling_factor" not in overrides:
            overrides["routed_scaling_factor"] = float(cfg["routed_scaling_factor"]) * args.moe_gain
    if overrides:
        kw["json_model_override_args"] = json.dumps(overrides, sort_keys=True)
    return kw


def run(args, result: dict) -> None:
    import sglang

    result["versions"] = {"sglang": getattr(sglang, "__version__", None), "python": sys.version.split()[0]}
    kw = engine_kwargs(args)
    result["engine_kwargs"] = kw
    t0 = time.monotonic()
    engine = sglang.Engine(**kw)
    result["engine_start_s"] = round(time.monotonic() - t0, 2)
    print(f"[run_engine] engine up in {result['engine_start_s']} s", flush=True)
    sampling = {"temperature": 0.0, "max_new_tokens": args.new_tokens, "ignore_eos": True}
    result["sampling_params"] = sampling
    try:
        for length in args.lens:
            ids = make_prompt(length, args.seed)
            t1 = time.monotonic()
            out = engine.generate(input_ids=ids, sampling_params=sampling, return_logprob=True,
                                  logprob_start_len=0)
            secs = time.monotonic() - t1
            meta = out.get("meta_info", {})
            in_lp = meta.get("input_token_logprobs") or []
            out_lp = meta.get("output_token_logprobs") or []
            in_vals = [t[0] for t in in_lp]
            out_vals = [t[0] for t in out_lp]
            rec = {
                "input_len": length,
                "prompt_digest": ids_digest(ids),
                "seconds": round(secs, 3),
                "output_ids": list(out.get("output_ids") or []),
                "output_logprob_ids": [int(t[1]) for t in out_lp],
                "input_logprob_ids_match_prompt": [int(t[1]) for t in in_lp] == ids,
                "n_input_logprobs": len(in_lp),
                "input_logprobs": [hexf(v) for v in in_vals],
                "output_logprobs": [hexf(v) for v in out_vals],
                "input_logprob_summary": _logprob_summary(in_vals),
                "output_logprob_summary": _logprob_summary(out_vals),
                "prompt_tokens": meta.get("prompt_tokens"),
                "completion_tokens": meta.get("completion_tokens"),
                "finish_reason": meta.get("finish_reason"),
            }
            result["requests"].append(rec)
            print(f"[run_engine] {length:6d} tokens: {secs:7.2f} s, output_ids={rec['output_ids']}, "
                  f"{len(in_lp)} input logprobs", flush=True)
    finally:
        # Write what we have before shutting down; should shutdown hang, leave after a grace period
        # (the caller kills the process group) instead of waiting for the caller's timeout.
        result["ok"] = len(result["requests"]) == len(args.lens)
        write_result(result, args.out)
        watchdog = threading.Timer(120, lambda: os._exit(0 if result["ok"] else 1))
        watchdog.daemon = True
        watchdog.start()
        t2 = time.monotonic()
        engine.shutdown()
        watchdog.cancel()
        result["engine_shutdown_s"] = round(time.monotonic() - t2, 2)
    try:
        import torch

        result["versions"]["torch"] = torch.__version__
        result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception as err:  # informative only
        result["device"] = f"unknown ({err})"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="result JSON path")
    ap.add_argument("--lens", type=int, nargs="+", default=list(DEFAULT_LENS), help="prompt lengths (tokens)")
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="prompt ids and the engine's random_seed")
    ap.add_argument("--moe-gain", type=float, default=1.0,
                    help="multiply the config's routed_scaling_factor by this (1 = the real model)")
    ap.add_argument("--override-json", default="", help="extra json_model_override_args (a JSON object)")
    ap.add_argument("--chunked-prefill-size", type=int, default=16384,
                    help="the longest prompt must fit, so its prefill is one forward (-1: no chunking)")
    ap.add_argument("--mem-fraction-static", type=float, default=0.8)
    ap.add_argument("--log-level", default="warning")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = {
        "ok": False,
        "pid": os.getpid(),
        "model_dir": str(args.model_dir),
        "switch": os.environ.get("SGL_KERNEL_EXT_MOE_ALIGN"),
        "status_dir": os.environ.get("SGL_KERNEL_EXT_STATUS_DIR"),
        "lens": args.lens,
        "new_tokens": args.new_tokens,
        "seed": args.seed,
        "moe_gain": args.moe_gain,
        "requests": [],
    }
    t0 = time.monotonic()
    rc = 1
    try:
        run(args, result)
        result["ok"] = len(result["requests"]) == len(args.lens)
        rc = 0 if result["ok"] else 1
    except BaseException:  # noqa: BLE001 - everything goes into the JSON
        result["ok"] = False
        result["error"] = traceback.format_exc()
        print(result["error"], file=sys.stderr, flush=True)
    result["total_s"] = round(time.monotonic() - t0, 2)
    write_result(result, args.out)
    print(f"[run_engine] wrote {args.out} (ok={result['ok']}, {result['total_s']} s)", flush=True)
    return rc


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The JSON is written: leave at once, so no lingering engine thread can stall the exit.
    os._exit(code)
