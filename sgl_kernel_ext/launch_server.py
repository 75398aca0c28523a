"""Launch SGLang with sgl_kernel_ext's align kernel, for SGLang without the plugin framework.

    python -m sgl_kernel_ext.launch_server <sglang.launch_server arguments>
    python -m sgl_kernel_ext.launch_server --run-module sglang.bench_one_batch <its arguments>

Applies the same hook as the plugin (``plugin.activate_for_launcher``: same switch, same fallback, same
status files) in this process and in every process SGLang spawns, then runs ``sglang.launch_server`` (or
the ``--run-module`` module) as ``__main__``. With SGLang 0.5.16 and later the installed plugin already
does this in every process; the launcher is then redundant but harmless (each process activates once).

How spawned children are reached
    SGLang starts its scheduler, detokenizer and DP-controller processes with multiprocessing's *spawn*
    start method. Before a spawned child unpickles its target it re-imports the parent's ``__main__``
    module under the name ``__mp_main__`` (``multiprocessing.spawn.prepare`` -> ``_fixup_main_from_name``),
    so that objects defined in the main script can be unpickled. Run with ``-m``, this module is the
    parent's ``__main__``; the ``__mp_main__`` branch at the bottom therefore runs first thing in every
    spawned child, before any SGLang module the target needs is imported, and activates the hook there.
    Grandchildren are reached too: in a child ``sys.modules["__main__"]`` is this module again.
    SGLang's entry module runs through ``runpy`` with ``alter_sys=False`` so that ``__main__`` stays this
    module. Forked children inherit the patched modules.

    Why not a ``sitecustomize`` on PYTHONPATH: it would shadow a site's own ``sitecustomize``, run in every
    Python process started with that environment (compilers, tools), and it needs an environment variable
    that leaks into everything. Why not patch ``multiprocessing.spawn.get_preparation_data``: the data
    has no field for code to run, the main module import is the hook point that exists.

    Not reached: processes that start a fresh interpreter with ``subprocess`` rather than
    multiprocessing; SGLang's serving processes are all multiprocessing children.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys

from sgl_kernel_ext import plugin

DEFAULT_MODULE = "sglang.launch_server"
RUN_MODULE_FLAG = "--run-module"
USAGE = (f"usage: python -m sgl_kernel_ext.launch_server [{RUN_MODULE_FLAG} MODULE] ARGS...\n"
         f"runs MODULE (default {DEFAULT_MODULE}) as __main__ with ARGS, with sgl_kernel_ext's align kernel "
         "in this process and every process it spawns")


def split_argv(argv: list[str]) -> tuple[str, list[str]]:
    """(module to run, its arguments). ``--run-module`` is only recognised as the first argument, so
    SGLang's own arguments are passed through untouched."""
    if argv[:1] == [RUN_MODULE_FLAG]:
        if len(argv) < 2:
            raise SystemExit(USAGE)
        return argv[1], argv[2:]
    return DEFAULT_MODULE, argv


def main(argv: list[str] | None = None) -> None:
    module_name, module_args = split_argv(sys.argv[1:] if argv is None else argv)
    if module_args[:1] in (["-h"], ["--help"]) and module_name == DEFAULT_MODULE:
        print(USAGE, file=sys.stderr)
    spec = importlib.util.find_spec(module_name)
    if spec is None:
        raise SystemExit(f"sgl_kernel_ext.launch_server: cannot find module {module_name!r} (is sglang installed?)")
    plugin.activate_for_launcher()
    sys.argv = [spec.origin or module_name, *module_args]
    # alter_sys=False keeps this module as sys.modules["__main__"], which is what spawned children import.
    runpy.run_module(module_name, run_name="__main__", alter_sys=False)


if __name__ == "__main__":
    main()
elif __name__ == "__mp_main__":
    # A process spawned by multiprocessing from a launcher process: see the module docstring.
    plugin.activate_for_launcher()
