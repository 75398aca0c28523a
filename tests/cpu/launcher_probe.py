"""Stand-in for SGLang's entry module in the launcher tests: start one child with the spawn start method,
as SGLang starts its scheduler, and report which align function the child and this process use.

    python -m sgl_kernel_ext.launch_server --run-module launcher_probe     (through the launcher)
    python -m launcher_probe                                              (control: no launcher)
"""

from __future__ import annotations

import multiprocessing
import sys


def child_report() -> dict:
    """Runs in the spawned child."""
    import binding_report
    from sgl_kernel_ext import plugin, sglang_compat

    status_before_calls = plugin.status()
    bound, not_bound_here = binding_report.importer_bindings(sglang_compat.align_wrapper())
    return {
        "status_before_calls": status_before_calls,
        "main_module": getattr(sys.modules["__main__"].__spec__, "name", None),
        "runs": {name: binding_report.what_runs(fn) for name, fn in bound.items()},
        "not_bound_here": not_bound_here,
        "status": plugin.status(),
    }


def main() -> None:
    # Through the launcher this file runs as "__main__" in a runpy namespace; the child must find
    # child_report in an importable module, so take it from this module imported under its own name.
    import launcher_probe
    from sglang_subprocess import emit

    from sgl_kernel_ext import plugin

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.apply(launcher_probe.child_report)
    emit({"parent": plugin.status(), "child": child})


if __name__ == "__main__":
    main()
