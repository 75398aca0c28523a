"""Shared set-up of the end-to-end tests: skips, output folder, engine runs.

The engine tests are marked ``e2e`` and skipped (not failed) without a GPU or without
sglang; ``test_model_folders.py`` runs anywhere (CPU checks of the model folders). With
both present, the plugin must be installed as a distribution (its entry point in
group ``sglang.srt.plugins``), or the tests fail saying how to install it.

Environment knobs (all optional):
  SGL_KERNEL_EXT_E2E_OUT       keep results, logs and status files in this folder
                               (default: a pytest temporary folder, printed)
  SGL_KERNEL_EXT_E2E_LENS      prompt lengths, comma separated (default 512,2048,16384)
  SGL_KERNEL_EXT_E2E_NEW_TOKENS  greedy tokens per prompt (default 4)
  SGL_KERNEL_EXT_E2E_MOE_GAIN  factor on routed_scaling_factor (default 1e9; 1 = the real model)
  SGL_KERNEL_EXT_E2E_TIMEOUT   seconds per engine run (default 600)
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from sgl_kernel_ext.plugin import (ENTRY_POINT_GROUP, OURS, STATUS_DIR_ENV, SWITCH_ENV, installed_entry_point,
                                   read_status_files)
from sgl_kernel_ext.process_group import run_in_own_group

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
RUN_ENGINE = HERE / "run_engine.py"


def _skip_reason() -> str | None:
    if importlib.util.find_spec("sglang") is None:
        return "sglang is not installed (tests/e2e runs a real SGLang engine)"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no GPU: tests/e2e runs a real SGLang engine on a CUDA or ROCm device"
    return None


# Modules here that need neither a GPU nor sglang (checks of the model folders and helpers).
CPU_MODULES = {"test_model_folders.py"}


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        path = Path(str(getattr(item, "path", item.fspath))).resolve()
        if HERE not in path.parents or path.name in CPU_MODULES:
            continue
        item.add_marker(pytest.mark.e2e)
        if not checked:
            reason, checked = _skip_reason(), True
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


@pytest.fixture(scope="session")
def e2e_settings() -> dict:
    lens = os.environ.get("SGL_KERNEL_EXT_E2E_LENS", "").strip()
    return {
        "model_dir": MODELS / "deepseek-v3-3l",
        "lens": [int(x) for x in lens.split(",")] if lens else [512, 2048, 16384],
        "new_tokens": int(_env_float("SGL_KERNEL_EXT_E2E_NEW_TOKENS", 4)),
        "moe_gain": _env_float("SGL_KERNEL_EXT_E2E_MOE_GAIN", 1e9),
        "timeout_s": _env_float("SGL_KERNEL_EXT_E2E_TIMEOUT", 600),
    }


@pytest.fixture(scope="session")
def e2e_out(tmp_path_factory) -> Path:
    env = os.environ.get("SGL_KERNEL_EXT_E2E_OUT", "").strip()
    out = Path(env).resolve() if env else tmp_path_factory.mktemp("sgl_kernel_ext_e2e")
    out.mkdir(parents=True, exist_ok=True)
    print(f"\n[e2e] results, logs and status files go to {out}", flush=True)
    return out


@pytest.fixture(scope="session")
def plugin_installed() -> str:
    """Where the plugin's entry point lives; fails (not skips) when it is missing."""
    ep = installed_entry_point()
    if ep is None:
        pytest.fail(
            f"no entry point {OURS!r} in group {ENTRY_POINT_GROUP!r}: SGLang's processes cannot load "
            "the plugin. Install the package (`python -m pip install --no-build-isolation .`, or with "
            "`--no-deps --target DIR` and DIR on PYTHONPATH) so its *.dist-info/entry_points.txt exists.",
            pytrace=False,
        )
    where = getattr(getattr(ep, "dist", None), "_path", None)
    return f"{ep.value} ({where})" if where else ep.value


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_isolated(cmd, env: dict, log_path: Path, timeout_s: float, cwd: Path) -> tuple[int | None, float]:
    """Run ``cmd`` in its own session (process group); kill the whole group at the end,
    also on a timeout, Ctrl-C or SIGTERM.

    Returns (exit status or None on timeout, seconds).
    """
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run_in_own_group(cmd, env, log_path, timeout_s, cwd)
    finally:
        signal.signal(signal.SIGTERM, old)


def log_tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


@pytest.fixture(scope="session")
def engine_run(e2e_settings, e2e_out, plugin_installed):
    """``engine_run(tag, switch, moe_gain=None)`` -> the run's dict (helper JSON + status files + log path)."""

    def _run(tag: str, switch: str, moe_gain: float | None = None) -> dict:
        s = e2e_settings
        status_dir = e2e_out / f"status-{tag}"
        status_dir.mkdir(parents=True, exist_ok=True)
        for old in status_dir.glob("*.json"):
            old.unlink()
        result_path = e2e_out / f"engine-{tag}.json"
        if result_path.exists():
            result_path.unlink()
        log_path = e2e_out / f"engine-{tag}.log"
        env = dict(os.environ)
        env.update({
            SWITCH_ENV: switch,
            STATUS_DIR_ENV: str(status_dir),
            "PYTHONUNBUFFERED": "1",
        })
        gain = s["moe_gain"] if moe_gain is None else moe_gain
        cmd = [sys.executable, str(RUN_ENGINE), "--model-dir", str(s["model_dir"]), "--out", str(result_path),
               "--lens", *map(str, s["lens"]), "--new-tokens", str(s["new_tokens"]), "--moe-gain", repr(gain)]
        print(f"[e2e] {tag}: {SWITCH_ENV}={switch} {' '.join(cmd)}", flush=True)
        rc, secs = run_isolated(cmd, env, log_path, s["timeout_s"], cwd=e2e_out)
        print(f"[e2e] {tag}: exit {rc} after {secs:.0f} s (log {log_path})", flush=True)
        data = {}
        if result_path.exists():
            data = json.loads(result_path.read_text())
        data.update({"tag": tag, "exit": rc, "wall_s": round(secs, 1), "log": str(log_path),
                     "status": read_status_files(status_dir)})
        if rc is None:
            data["error"] = f"timed out after {s['timeout_s']:.0f} s"
        if rc != 0 or not data.get("ok"):
            pytest.fail(
                f"engine run {tag!r} failed (exit {rc}): {data.get('error', 'no result JSON')}\n"
                f"--- last lines of {log_path} ---\n{log_tail(log_path)}",
                pytrace=False,
            )
        return data

    return _run
