"""Start SGLang's HTTP server with the plugin installed, send a few requests, check that the
scheduler process ran our kernel, shut the server down.

    python scripts/serve_check.py                        # DeepSeek-V3 3-layer model, dummy weights
    python scripts/serve_check.py --model qwen3-moe --layers 12 --out "$OUT"
    python scripts/serve_check.py --plugin off           # the switch: no process may run our kernel

Runs ``python -m sglang.launch_server`` (dummy weights, Triton attention and MoE backends,
no CUDA graphs) with ``SGL_KERNEL_EXT_STATUS_DIR`` set, waits until ``/health`` answers
200 (the server's own warm-up request has run by then), sends one ``/generate`` request
per ``--lens`` entry (token ids, greedy, ``--new-tokens`` tokens, ignore_eos) with
urllib only, checks every answer, then reads the plugin's status files: with
``--plugin on`` some process other than the server's main process (the scheduler) must
report ``implementation == "sgl_kernel_ext"`` with ``calls >= 1``; with ``--plugin off``
none may report ``sgl_kernel_ext``. The whole server process group is killed at the end
in every case (also on errors, timeouts, Ctrl-C and SIGTERM).

Exit status: 0 all checks passed, 1 a check failed, 2 the server exited during start-up
(an import error such as a missing ``zstandard`` in an offline bundle is named), 3 the
server did not become healthy in time. Arguments after ``--`` go to launch_server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_e2e import BACKEND_ARGS, MODELS, MODELS_DIR, Terminated, _raise_terminated, folder_with_layers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_folder(model: str, layers: int | None, work: Path) -> Path:
    src = MODELS_DIR / MODELS[model]["dir"] if model in MODELS else Path(model)
    return folder_with_layers(src, layers, work).resolve()


def http(url: str, payload: dict | None = None, timeout: float = 30) -> tuple[int, str]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        return -1, str(err)


def startup_failure(log: Path) -> str:
    """The most telling line of a server that exited during start-up."""
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.findall(r"(ModuleNotFoundError: No module named '[^']+'|ImportError: [^\n]+)", text)
    if m:
        hint = m[-1]
        mod = re.search(r"No module named '([^'.]+)", hint)
        if mod and mod.group(1) == "zstandard":
            hint += (" -- sglang's HTTP layer (entrypoints/http_request_decompression.py) imports zstandard; "
                     "the Engine API and bench_one_batch do not need it. Add zstandard to the environment.")
        return "the server failed to import: " + hint
    errs = [ln for ln in text.splitlines() if re.search(r"(Error|Exception)\b", ln)]
    return errs[-1].strip() if errs else "no error line in the log"


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies do not count)."""
    proc_dir = Path("/proc")
    if proc_dir.is_dir():
        for d in proc_dir.iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the server's process group (launch_server then tears its tree down), SIGKILL what is left."""
    pgid = proc.pid
    for sig, pause in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, so it does not linger as a zombie
            if not group_alive(pgid):
                return
            time.sleep(0.25)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deepseek-v3", help=f"{' or '.join(MODELS)} or a model folder")
    ap.add_argument("--layers", type=int, default=None, help="override num_hidden_layers (a temporary copy)")
    ap.add_argument("--plugin", choices=("on", "off"), default="on", help="SGL_KERNEL_EXT_MOE_ALIGN=1 or 0")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--lens", type=int, nargs="+", default=[512, 2048], help="prompt lengths, one request each")
    ap.add_argument("--new-tokens", type=int, default=4)
    ap.add_argument("--startup-timeout-s", type=float, default=420)
    ap.add_argument("--request-timeout-s", type=float, default=120)
    ap.add_argument("--mem-fraction-static", type=float, default=0.8)
    ap.add_argument("--out", default=None, help="folder for serve-check.json, the server log and status files")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after '--': more launch_server arguments")
    args = ap.parse_args(argv)
    args.extra = [a for a in args.extra if a != "--"] if args.extra else []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from sgl_kernel_ext.plugin import read_status_files  # the server needs the package installed anyway
    from sgl_kernel_ext.process_group import die_with_parent
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_terminated)
    work = Path(tempfile.mkdtemp(prefix="sgl_kernel_ext_serve_"))
    out = Path(args.out).resolve() if args.out else work  # absolute: the server runs elsewhere
    out.mkdir(parents=True, exist_ok=True)
    status_dir = out / "serve-status"
    status_dir.mkdir(exist_ok=True)
    for old in status_dir.glob("*.json"):
        old.unlink()
    log = out / "serve.log"
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    summary: dict = {"ok": False, "plugin": args.plugin, "port": port, "log": str(log), "requests": []}
    proc = None
    rc = 1
    t0 = time.monotonic()
    try:
        folder = model_folder(args.model, args.layers, work)
        cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", str(folder), *BACKEND_ARGS,
               "--mem-fraction-static", str(args.mem_fraction_static), "--host", "127.0.0.1", "--port", str(port),
               "--random-seed", "0", *args.extra]
        env = dict(os.environ)
        env.update({"SGL_KERNEL_EXT_MOE_ALIGN": "1" if args.plugin == "on" else "0",
                    "SGL_KERNEL_EXT_STATUS_DIR": str(status_dir), "PYTHONUNBUFFERED": "1"})
        summary["cmd"] = cmd
        print(f"starting: SGL_KERNEL_EXT_MOE_ALIGN={env['SGL_KERNEL_EXT_MOE_ALIGN']} {' '.join(cmd)}\n"
              f"  log: {log}", flush=True)
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, env=env, cwd=str(work), stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        summary["server_pid"] = proc.pid

        # 1. wait for /health
        deadline = time.monotonic() + args.startup_timeout_s
        last_note = time.monotonic()
        healthy = False
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                summary["error"] = f"server exited with status {proc.returncode} during start-up: {startup_failure(log)}"
                print(summary["error"])
                rc = 2
                return rc
            code, _ = http(base + "/health", timeout=30)
            if code == 200:
                healthy = True
                break
            if time.monotonic() - last_note > 30:
                print(f"  waiting for {base}/health ({time.monotonic() - t0:.0f} s, last answer {code})", flush=True)
                last_note = time.monotonic()
            time.sleep(2)
        summary["startup_s"] = round(time.monotonic() - t0, 1)
        if not healthy:
            summary["error"] = f"no 200 from /health within {args.startup_timeout_s:.0f} s"
            print(summary["error"] + f"; log tail:\n{log.read_text(errors='replace')[-3000:] if log.exists() else ''}")
            rc = 3
            return rc
        print(f"server healthy after {summary['startup_s']} s", flush=True)

        # 2. requests
        failures = []
        for length in args.lens:
            rng = random.Random(length)
            ids = [rng.randrange(100, 100_000) for _ in range(length)]
            payload = {"input_ids": ids, "return_logprob": True,
                       "sampling_params": {"temperature": 0.0, "max_new_tokens": args.new_tokens, "ignore_eos": True}}
            t1 = time.monotonic()
            code, body = http(base + "/generate", payload, timeout=args.request_timeout_s)
            rec = {"input_len": length, "http_status": code, "seconds": round(time.monotonic() - t1, 3)}
            try:
                ans = json.loads(body)
            except ValueError:
                ans = None
            if code != 200 or not isinstance(ans, dict):
                rec["error"] = body[:500]
            else:
                meta = ans.get("meta_info", {})
                out_ids = ans.get("output_ids")
                lps = meta.get("output_token_logprobs") or []
                rec.update(output_ids=out_ids, prompt_tokens=meta.get("prompt_tokens"),
                           completion_tokens=meta.get("completion_tokens"),
                           output_logprobs=[lp[0] for lp in lps])
                problems = []
                if meta.get("prompt_tokens") != length:
                    problems.append(f"prompt_tokens {meta.get('prompt_tokens')} != {length}")
                if meta.get("completion_tokens") != args.new_tokens:
                    problems.append(f"completion_tokens {meta.get('completion_tokens')} != {args.new_tokens}")
                if out_ids is not None and len(out_ids) != args.new_tokens:
                    problems.append(f"{len(out_ids)} output ids")
                if len(lps) != args.new_tokens or any(lp[0] is None or lp[0] != lp[0] for lp in lps):
                    problems.append(f"output logprobs {rec['output_logprobs']}")
                if problems:
                    rec["error"] = "; ".join(problems)
            summary["requests"].append(rec)
            print(f"  /generate {length:6d} tokens: HTTP {code}, {rec['seconds']:.2f} s, "
                  f"{rec.get('error') or 'output_ids ' + str(rec.get('output_ids'))}", flush=True)
            if "error" in rec:
                failures.append(f"request of {length} tokens: {rec['error']}")

        # 3. status files
        status = read_status_files(status_dir)
        summary["status"] = status
        ours = [s for s in status if s.get("implementation") == "sgl_kernel_ext"]
        ran = [s for s in ours if int(s.get("calls") or 0) >= 1 and s.get("pid") != proc.pid]
        if args.plugin == "on":
            summary["scheduler_ran_ours"] = bool(ran)
            if not ran:
                failures.append("no process other than the server's main process reports implementation "
                                f"'sgl_kernel_ext' with calls >= 1 (status files: {json.dumps(status)})")
        else:
            if ours:
                failures.append(f"plugin off, but these processes used our kernel: {json.dumps(ours)}")
            if not status:
                failures.append("plugin off and no status file at all: the plugin was not loaded")
        for s in status:
            print(f"  status pid {s.get('pid')}: {s.get('implementation')}, calls {s.get('calls')}, "
                  f"{s.get('reason', '')}".rstrip(", "))
        summary["failures"] = failures
        summary["ok"] = not failures
        rc = 0 if summary["ok"] else 1
        print(("PASS" if summary["ok"] else "FAIL: " + "; ".join(failures)), flush=True)
        return rc
    except (Terminated, KeyboardInterrupt) as err:
        summary["error"] = f"interrupted ({err or type(err).__name__})"
        print(summary["error"])
        return 1
    finally:
        if proc is not None:
            t2 = time.monotonic()
            kill_group(proc)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            summary["shutdown_s"] = round(time.monotonic() - t2, 1)
            print(f"server process group {proc.pid} stopped ({summary['shutdown_s']} s)")
        summary["exit"] = rc
        summary["total_s"] = round(time.monotonic() - t0, 1)
        if rc != 0 and log.exists():
            lines = log.read_text(errors="replace").splitlines()
            print(f"--- last lines of the server log ({log}) ---\n" + "\n".join(lines[-40:]))
        if args.out:
            (out / "serve-check.json").write_text(json.dumps(summary, indent=1) + "\n")
            print(f"wrote {out / 'serve-check.json'}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
