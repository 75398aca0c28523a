"""Child side of the CPU plugin tests: what each of SGLang's importers of the align wrapper gets.

    python -m binding_report ORDER [VARIANTS_JSON]

ORDER
  importers-first   import every module that binds the wrapper at import time, then load_plugins()
  plugins-first     load_plugins() first (as SGLang does), then import the importers

For every importer that sglang_compat lists for the sglang in use, the report gives how it binds the
wrapper and what calling that binding runs: "sgl_kernel_ext" (the fake kernel answered) or "sglang: ..."
(SGLang's own function ran; on CPU it raises, which names it). VARIANTS_JSON ({"label": {kwargs}})
repeats the calls with extra keyword arguments. Prints one RESULT line (sglang_subprocess).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import torch

from sglang_subprocess import emit

# Bound at import only under `if _is_cuda:`, so not on this machine; importer_bindings runs its statement.
CUDA_ONLY_BINDINGS = {"sglang.srt.lora.lora_moe_runner_marlin.moe_align_block_size"}


def importer_bindings(wrapper):
    """({"module.name": function as each importer of ``wrapper`` gets it now}, [at-import bindings this
    machine does not make]). Imports the importers."""
    bound, not_bound_here = {}, []
    for imp in wrapper.importers:
        module = importlib.import_module(imp.module)
        if imp.at_import and hasattr(module, imp.bound_name):
            fn = getattr(module, imp.bound_name)
        else:
            # Inside a function, or at import but under `if _is_cuda:` (lora_moe_runner_marlin) so not
            # bound on this CPU machine: run the importer's statement here.
            if imp.at_import:
                not_bound_here.append(f"{imp.module}.{imp.bound_name}")
            namespace: dict = {}
            exec(f"from {imp.source} import moe_align_block_size as bound", namespace)
            fn = namespace["bound"]
        bound[f"{imp.module}.{imp.bound_name}"] = fn
    return bound, not_bound_here


def what_runs(fn, **kwargs) -> str:
    """Call ``fn`` like fused MoE does, on CPU, and say whose code produced the answer."""
    from sitecustomize import FAKE_RESULT_TAG

    topk_ids = torch.tensor([[0, 3], [1, 3]], dtype=torch.int32)
    try:
        result = fn(topk_ids, 16, 4, **kwargs)
    except Exception as err:  # SGLang's function cannot run on CPU (no sgl_kernel): that names it
        return f"sglang: {type(err).__name__}: {str(err)[:120]}"
    return "sgl_kernel_ext" if isinstance(result, tuple) and result[:1] == (FAKE_RESULT_TAG,) else f"sglang: {result!r}"


def report(wrapper, variants: dict) -> dict:
    from sgl_kernel_ext import plugin

    bound, not_bound_here = importer_bindings(wrapper)
    wrapper_module = importlib.import_module(wrapper.module)
    installed = getattr(wrapper_module, "moe_align_block_size")
    runs = {name: what_runs(fn) for name, fn in bound.items()}
    runs_default = what_runs(installed)
    status = plugin.status()
    variant_runs = {}
    for label, kwargs in variants.items():
        before = plugin.status()
        variant_runs[label] = {"runs": {name: what_runs(fn, **kwargs) for name, fn in bound.items()}}
        after = plugin.status()
        variant_runs[label].update({key: after[key] - before[key] for key in ("calls", "fallback_calls")})
    return {
        "sglang_version": wrapper.sglang_version,
        "not_bound_here": not_bound_here,
        "same_object_as_wrapper_module": {name: fn is installed for name, fn in bound.items()},
        "runs": runs,
        "wrapper_module_is_sglangs_own": not hasattr(installed, "__wrapped__")
                                         and installed.__module__ == wrapper.module,
        "wrapper_module_runs": runs_default,
        "status": status,  # after the calls above, before the variants
        "variant_runs": variant_runs,
    }


def main(argv: list[str]) -> None:
    from sgl_kernel_ext import plugin, sglang_compat

    order = argv[0]
    variants = json.loads(argv[1]) if len(argv) > 1 else {}
    wrapper = sglang_compat.align_wrapper()
    if order not in ("importers-first", "plugins-first"):
        raise SystemExit(f"unknown ORDER {order!r}")
    if order == "importers-first":
        for imp in wrapper.importers:
            if imp.at_import:
                importlib.import_module(imp.module)
    from sglang.srt.plugins import load_plugins

    load_plugins()
    status_after_load = plugin.status()
    emit({"status_after_load": status_after_load, "status_file_after_load": read_status_file(),
          **report(wrapper, variants)})


def read_status_file() -> dict | None:
    from sgl_kernel_ext import plugin

    directory = os.environ.get(plugin.STATUS_DIR_ENV)
    if not directory:
        return None
    path = Path(directory, f"{os.getpid()}.json")
    return json.loads(path.read_text()) if path.exists() else None


if __name__ == "__main__":
    main(sys.argv[1:])
