"""The launch planner (host code of sgl_kernel_ext/csrc/moe_align.cuh), checked without a GPU:
tests/compile/plan_check.cu is built with nvcc and run over device limits like an H200's, an
A100's and an MI300X's (every plan launchable; the ranged path exactly where README.md says)."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _nvcc():  # where scripts/ci/compile_report.sh finds it too
    for cand in (shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"),
                 "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand):
            return cand
    return None


NVCC = _nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="needs nvcc (host code only, no GPU)")


def test_every_plan_is_launchable_and_ranged_where_documented(tmp_path):
    exe = tmp_path / "plan_check"
    subprocess.run([NVCC, "-std=c++17", "-O1", str(ROOT / "tests/compile/plan_check.cu"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " 0 failed" in run.stdout and " 0 ranged" not in run.stdout, run.stdout
