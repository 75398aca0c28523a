"""The launch planner (host code of sgl_kernel_ext/csrc/moe_align.cuh), checked without a GPU:
tests/compile/plan_check.cu is built with nvcc and run over device limits like an H200's, an
A100's and an MI300X's (every plan launchable; the ranged path exactly where README.md says)."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _resource_report():  # scripts/ci/resource_report.py: finds nvcc as the compile report does
    spec = importlib.util.spec_from_file_location("resource_report", ROOT / "scripts/ci/resource_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


NVCC = _resource_report().find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="needs nvcc (host code only, no GPU)")


def test_every_plan_is_launchable_and_ranged_where_documented(tmp_path):
    exe = tmp_path / "plan_check"
    subprocess.run([NVCC, "-std=c++17", "-O1", str(ROOT / "tests/compile/plan_check.cu"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " 0 failed" in run.stdout and " 0 ranged" not in run.stdout, run.stdout
