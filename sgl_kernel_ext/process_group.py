"""Child processes that leave nothing behind: the tests and scripts that start SGLang engines use these.

A child runs in its own session (process group), gets SIGKILL if its parent dies, and at the end the
whole group (SGLang's scheduler and detokenizer too) is terminated, then killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def die_with_parent() -> None:
    """``preexec_fn``: SIGKILL the child if this process dies (even by SIGKILL), so no engine is left
    holding the GPU. SGLang's own subprocesses do the same with their parent."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def kill_group(pgid: int, term_grace_s: float = 2.0) -> None:
    """SIGTERM the group, wait ``term_grace_s``, then SIGKILL what is left."""
    for sig, pause in ((signal.SIGTERM, term_grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(pause)


def run_in_own_group(cmd: list[str], env: dict, log_path: Path, timeout_s: float, cwd: Path,
                     header: str = "", term_grace_s: float = 2.0) -> tuple[int | None, float]:
    """Run ``cmd`` with stdout and stderr to ``log_path`` (after ``header``); kill its group at the end,
    also on a timeout or an exception such as KeyboardInterrupt. Returns (exit status, None on a
    timeout; seconds)."""
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        if header:
            log.write(header.encode())
            log.flush()
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            kill_group(proc.pid, term_grace_s)
            if proc.poll() is None:
                proc.wait(timeout=30)
    return rc, time.monotonic() - t0
