"""patches/sglang-<version>.patch against the released wheels, and scripts/apply_patches.sh.

The wheels come from .cache/sglang-wheels/ (scripts/ci/install_sglang_cpu.sh) or are downloaded here;
without network the tests skip and say so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import sglang_wheels
from sglang_subprocess import REPO, require_sglang, run

pytestmark = pytest.mark.sglang

WRAPPER_FILE = "sglang/srt/layers/moe/moe_runner/triton_utils/moe_align_block_size.py"
APPLY = REPO / "scripts" / "apply_patches.sh"

if shutil.which("patch") is None:
    pytest.skip("GNU patch is not installed (apt-get install patch)", allow_module_level=True)


def patch_file(version: str) -> Path:
    return REPO / "patches" / f"sglang-{version}.patch"


def site_root_with_wrapper(version: str, tmp_path: Path) -> Path:
    """A site-packages-like folder with the wheel's wrapper module, sglang/__init__.py, its METADATA."""
    members = [WRAPPER_FILE, "sglang/__init__.py", f"sglang-{version}.dist-info/METADATA"]
    return sglang_wheels.extract(version, members, tmp_path / "site")


def apply_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(APPLY), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("version", sglang_wheels.PINNED_VERSIONS)
def test_patch_applies_to_wheel(version, tmp_path):
    root = site_root_with_wrapper(version, tmp_path)
    done = subprocess.run(["patch", "-p1", "--dry-run", "--fuzz=0", "--batch", "-d", str(root), "-i",
                           str(patch_file(version))], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "moe_align_block_size.py" in done.stdout


@pytest.mark.parametrize("version", sglang_wheels.PINNED_VERSIONS)
def test_apply_script_round_trip(version, tmp_path):
    root = site_root_with_wrapper(version, tmp_path)
    wrapper = root / WRAPPER_FILE
    pristine = wrapper.read_bytes()

    checked = apply_script("--dry-run", str(root))
    assert checked.returncode == 0 and "dry run" in checked.stdout, checked.stderr
    assert wrapper.read_bytes() == pristine

    applied = apply_script(str(root / "sglang"))  # the package folder works too
    assert applied.returncode == 0, applied.stderr
    patched = wrapper.read_text()
    assert "_sgl_kernel_ext_ops.moe_align_for_fused_moe" in patched
    compile(patched, str(wrapper), "exec")

    again = apply_script(str(root))
    assert again.returncode == 1 and "done already" in again.stderr
    assert wrapper.read_text() == patched

    reverted = apply_script("--reverse", str(root))
    assert reverted.returncode == 0, reverted.stderr
    assert wrapper.read_bytes() == pristine
    assert sorted(p.name for p in wrapper.parent.iterdir()) == ["moe_align_block_size.py"]  # no .orig/.rej


def test_apply_script_refuses_other_versions(tmp_path):
    root = site_root_with_wrapper("0.5.23", tmp_path)
    wrong = apply_script("--version", "0.5.17", str(root))  # a patch for another sglang must not fit
    assert wrong.returncode == 1 and "does not apply" in wrong.stderr
    unknown = apply_script("--version", "0.4.0", str(root))
    assert unknown.returncode == 1 and "no patch for sglang 0.4.0" in unknown.stderr


# What the patched wrapper runs. In a fresh interpreter with that sglang on the path, the patched file is
# loaded as a module; its `_sgl_kernel_ext_align` (None on CPU: no GPU) is set to a recorder.
ROUTING_PROBE = r"""
import importlib.util, json, sys, torch
from sglang_subprocess import emit
spec = importlib.util.spec_from_file_location("patched_wrapper", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
loaded_on_cpu = mod._sgl_kernel_ext_align is not None
calls = []
mod._sgl_kernel_ext_align = lambda *args: calls.append(args[1:]) or "sgl_kernel_ext"
def run(**kwargs):
    try:
        return mod.moe_align_block_size(torch.zeros((2, 2), dtype=torch.int32), 16, 4, **kwargs)
    except Exception as err:  # SGLang's own code cannot run on CPU: that names it
        return f"sglang: {type(err).__name__}"
out = {"loaded_on_cpu": loaded_on_cpu, "default": run(), "ignore_invalid_expert": run(ignore_invalid_expert=True)}
for flag in json.loads(sys.argv[2]):
    out[flag] = run(**{flag: True})
mod._SGLANG_EXPERIMENTAL_LORA_OPTI = True
out["lora"] = run()
emit({"runs": out, "calls": calls})
"""


@pytest.mark.parametrize("version", sglang_wheels.PINNED_VERSIONS)
def test_patched_wrapper_calls_ours_for_what_we_implement(version, tmp_path):
    from sgl_kernel_ext import sglang_compat

    require_sglang()

    root = site_root_with_wrapper(version, tmp_path)
    assert apply_script(str(root)).returncode == 0
    sglang_root = sglang_wheels.sglang_root(version)
    flags = list(sglang_compat.PINNED[version].flags)
    ran = run(["-c", ROUTING_PROBE, str(root / WRAPPER_FILE), json.dumps(flags)], fake_extension=None,
              sglang_root=sglang_root)
    assert ran.returncode == 0 and ran.result, ran.describe()
    runs = ran.result["runs"]
    assert runs["loaded_on_cpu"] is False  # the import-time switch: CUDA or ROCm only
    assert runs["default"] == runs["ignore_invalid_expert"] == "sgl_kernel_ext"
    assert ran.result["calls"] == [[16, 4, False], [16, 4, True]]
    assert all(runs[flag].startswith("sglang") for flag in flags) and runs["lora"].startswith("sglang"), runs
