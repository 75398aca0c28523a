"""Run Python in a fresh interpreter for the CPU plugin tests.

load_plugins(), the launcher and the patch they apply act once per process and cannot be undone, so
each scenario gets its own interpreter. The child sees this repository, tests/cpu (helpers) and, unless
asked otherwise, the fake extension (fake_extension/sitecustomize.py) on PYTHONPATH, and none of the
switches of the parent's environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sgl_kernel_ext import plugin

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FAKE_EXTENSION = HERE / "fake_extension"
RESULT_MARK = "@@sgl_kernel_ext-test-result@@ "
ISOLATED_ENV = (plugin.SWITCH_ENV, plugin.STATUS_DIR_ENV, "SGL_KERNEL_EXT_TEST_FAKE_EXTENSION",
                "SGLANG_PLUGINS", "SGLANG_PLATFORM", "SGLANG_EXPERIMENTAL_LORA_OPTI", "PYTHONPATH")


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    result: dict | None  # what the child printed after RESULT_MARK
    env: dict  # the variables the caller set for the child

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-6000:]}"


def installed_sglang_root() -> Path | None:
    """The site-packages folder holding sglang, found without importing sglang into the test process
    (importing it patches transformers and more, which other tests in the session would see)."""
    spec = importlib.util.find_spec("sglang")
    return Path(spec.origin).resolve().parents[1] if spec and spec.origin else None


def require_sglang() -> Path:
    """Skip unless sglang with its plugin framework is installed; return its site-packages folder."""
    root = installed_sglang_root()
    if root is None:
        pytest.skip("sglang is not installed (bash scripts/ci/install_sglang_cpu.sh)", allow_module_level=True)
    if not (root / "sglang" / "srt" / "plugins" / "hook_registry.py").exists():
        pytest.skip("the installed sglang has no plugin framework (sglang.srt.plugins, 0.5.16 and later)",
                    allow_module_level=True)
    return root


def emit(result: dict) -> None:
    """Called in the child: hand ``result`` back to the test."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def run(args: list[str], *, env: dict[str, str] | None = None, fake_extension: str | None = "working",
        sglang_root: Path | None = None, timeout: float = 300) -> Ran:
    """``python <args>`` in a fresh interpreter. ``sglang_root``: a folder holding another sglang (an
    unpacked wheel) that shadows the installed one."""
    child_env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV}
    path = [str(sglang_root)] if sglang_root else []
    path += [str(FAKE_EXTENSION)] if fake_extension else []
    child_env["PYTHONPATH"] = os.pathsep.join(path + [str(HERE), str(REPO)])
    if fake_extension:
        child_env["SGL_KERNEL_EXT_TEST_FAKE_EXTENSION"] = fake_extension
    child_env["PYTHONWARNINGS"] = "ignore"  # SGLang warns about a missing GPU at every import
    child_env.update(env or {})
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=child_env, capture_output=True, text=True,
                          timeout=timeout)
    result = None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    return Ran(done.returncode, done.stdout, done.stderr, result, dict(env or {}))
