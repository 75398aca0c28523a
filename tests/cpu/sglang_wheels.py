"""The sglang 0.5.17 and 0.5.23 wheels the patch and importer tests read.

scripts/ci/install_sglang_cpu.sh downloads them into .cache/sglang-wheels/; when they are missing the
tests try to download them and skip, naming the reason, when that fails (offline).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sgl_kernel_ext.sglang_compat import PINNED, installed_sglang_version
from sglang_subprocess import REPO

WHEEL_DIR = REPO / ".cache" / "sglang-wheels"
PINNED_VERSIONS = tuple(PINNED)


def wheel(version: str) -> Path:
    """Path of the sglang ``version`` wheel, downloading it if needed; skips the test when impossible."""
    found = sorted(WHEEL_DIR.glob(f"sglang-{version}-*.whl"))
    if not found:
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "-d", str(WHEEL_DIR), f"sglang=={version}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip(f"sglang {version} wheel not in {WHEEL_DIR} and `pip download` timed out (offline?)")
        found = sorted(WHEEL_DIR.glob(f"sglang-{version}-*.whl"))
        if not found:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"sglang {version} wheel not in {WHEEL_DIR} and `pip download` failed (offline?): {tail[0]}")
    return found[-1]


def unpacked(version: str) -> Path:
    """The wheel unpacked into a site-packages-like folder (``<root>/sglang/...``), done once."""
    root = WHEEL_DIR / "unpacked" / version
    done_marker = root / ".unpacked"
    if not done_marker.exists():
        with zipfile.ZipFile(wheel(version)) as zf:
            zf.extractall(root)
        done_marker.touch()
    return root


def sglang_root(version: str) -> Path | None:
    """None: the installed sglang; else the unpacked wheel that shadows it (skips if unavailable)."""
    return None if version == installed_sglang_version() else unpacked(version)


def extract(version: str, members: list[str], dest: Path) -> Path:
    """Only ``members`` (paths inside the wheel) into ``dest``; returns ``dest``."""
    with zipfile.ZipFile(wheel(version)) as zf:
        for name in members:
            zf.extract(name, dest)
    return dest
