"""SGLang plugin: SGLang's Triton fused MoE calls sgl_kernel_ext's align & sort kernel.

How it hooks in (SGLang 0.5.16 and later)
    pyproject.toml registers ``register`` under the entry-point group ``sglang.srt.plugins``. SGLang calls
    ``sglang.srt.plugins.load_plugins()`` early in its processes (0.5.17: the launch_server/serve/Engine
    process and every scheduler, i.e. TP/PP worker, where fused MoE runs; 0.5.23 also the detokenizer
    and the DP controller); that runs
    ``register()`` (unless ``SGLANG_PLUGINS`` leaves us out) and then ``HookRegistry.apply_hooks()``. ``register()`` picks the implementation and registers one
    ``HookType.AROUND`` hook, ``align_hook``, on SGLang's ``moe_align_block_size`` wrapper (sglang_compat
    says where it lives). ``apply_hooks()`` imports the wrapper module, replaces the attribute there and in
    every loaded module that copied it with ``from ... import`` (HookRegistry's ``_propagate_patch``);
    modules imported later copy the replaced attribute, and imports inside functions read it per call.

    SGLang without the plugin framework: ``python -m sgl_kernel_ext.launch_server`` (see there) calls
    ``activate_for_launcher()``, which applies the same hook directly.

What runs
    ``align_hook`` runs ``sgl_kernel_ext.ops.moe_align_for_fused_moe`` (same result as SGLang's wrapper,
    deterministic order inside each expert) unless the call needs SGLang's own function: a flag we do not
    implement is set (sglang_compat.UNIMPLEMENTED_FLAGS), an argument we do not know is passed, SGLang's
    experimental LoRA align path is on (SGLANG_EXPERIMENTAL_LORA_OPTI), or our kernel raised.

Switches
    ``SGL_KERNEL_EXT_MOE_ALIGN=0`` leaves SGLang untouched (A/B runs). If the extension cannot load or
    build, the plugin logs a warning and leaves SGLang's path in place. Nothing here raises into SGLang.

Observability
    Each process logs once which implementation it uses. ``status()`` describes this process; with
    ``SGL_KERNEL_EXT_STATUS_DIR`` set it is also written to ``<dir>/<pid>.json`` when the plugin runs and
    again on the first call of our kernel in the process. In the first file of a plugin process
    ``applied`` is false and ``patched`` empty: SGLang applies the hook right after ``register()``
    returns; the file written at the first call lists every ``module.attr`` that was replaced.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sgl_kernel_ext import ops, sglang_compat

logger = logging.getLogger(__name__)

SWITCH_ENV = "SGL_KERNEL_EXT_MOE_ALIGN"
STATUS_DIR_ENV = "SGL_KERNEL_EXT_STATUS_DIR"
OURS = "sgl_kernel_ext"
SGLANG = "sglang"
ENTRY_POINT_GROUP = "sglang.srt.plugins"


def installed_entry_point():
    """Our entry point in ENTRY_POINT_GROUP, through which SGLang's load_plugins() finds us; None when
    the package is not installed as a distribution."""
    from importlib.metadata import entry_points

    return next((ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == OURS), None)


@dataclass
class _ProcessState:
    """What the plugin decided and did in this process.

    SGLang's original function is kept here, on an object, and never as a module global of this module:
    HookRegistry rebinds every module global that is the original, which would make ``original`` our own
    wrapper.
    """

    mode: str | None = None  # "plugin" or "launcher" once activated
    implementation: str = SGLANG
    reason: str | None = "the sgl_kernel_ext plugin has not run in this process"
    build: str | None = None  # how the extension loaded: "aot" or "jit"
    wrapper: sglang_compat.AlignWrapper | None = None
    original: Callable | None = None
    wrapper_globals: dict = field(default_factory=dict)  # the wrapper module's globals (LoRA switch)
    calls: int = 0  # calls that ran our kernel
    fallback_calls: int = 0  # calls handed to SGLang's function
    kernel_errors: int = 0

    def reset_counters(self) -> None:
        self.calls = self.fallback_calls = self.kernel_errors = 0


_state = _ProcessState()
# A forked child is a new process: count (and report the first call) afresh.
os.register_at_fork(after_in_child=_state.reset_counters)


# ----------------------------------------------------------------------------------------------------
# Entry points


def register() -> None:
    """Entry point of the ``sglang.srt.plugins`` group, called by SGLang's load_plugins(). Never raises."""
    _activate_safely("plugin")


def activate_for_launcher() -> None:
    """Apply the hook now, without HookRegistry (launch_server.py, SGLang without plugins). Never raises."""
    _activate_safely("launcher")


def _activate_safely(mode: str) -> None:
    if _state.mode is not None:  # once per process: launcher and plugin can both run in one process
        return
    _state.mode = mode
    try:
        _activate(mode)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # the plugin must never stop the server
        logger.debug("sgl_kernel_ext activation failed", exc_info=True)
        _use_sglang(f"sgl_kernel_ext plugin error: {type(err).__name__}: {err}", warn=True)
    _write_status_file()


def _activate(mode: str) -> None:
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        _use_sglang(f"{SWITCH_ENV}={os.environ[SWITCH_ENV]}")
        return
    wrapper = sglang_compat.align_wrapper()
    if wrapper is None:
        _use_sglang(f"no moe_align_block_size wrapper known for sglang {sglang_compat.installed_sglang_version()}",
                    warn=True)
        return
    try:
        build = ops.load()  # through the module attribute: tests replace ops.load
    except Exception as err:  # ExtensionUnavailable, or anything a broken build raises
        _use_sglang(f"sgl_kernel_ext extension unavailable: {err}", warn=True)
        return

    module = importlib.import_module(wrapper.module)
    _state.wrapper = wrapper
    _state.original = getattr(module, sglang_compat.WRAPPER_ATTR)
    _state.wrapper_globals = vars(module)
    if mode == "plugin":
        from sglang.srt.plugins.hook_registry import HookRegistry, HookType

        HookRegistry.register(wrapper.target, align_hook, HookType.AROUND)
    else:
        _replace_everywhere(_state.original, _wrap(_state.original))
    _state.implementation, _state.reason, _state.build = OURS, None, build
    _announce(logging.INFO, f"moe_align_block_size -> sgl_kernel_ext ({build} build; {mode}, "
                            f"sglang {wrapper.sglang_version}, {wrapper.target})")


def _use_sglang(reason: str, warn: bool = False) -> None:
    _state.implementation, _state.reason = SGLANG, reason
    _announce(logging.WARNING if warn else logging.INFO, f"moe_align_block_size -> SGLang's own ({reason})")


def _announce(level: int, message: str) -> None:
    """Log once per process. SGLang configures logging only after load_plugins(), so if nothing is
    configured yet the line goes straight to stderr instead of being dropped."""
    message = f"[pid {os.getpid()}] {message}"
    if logger.hasHandlers():
        logger.log(level, message)
    else:
        print(f"{logging.getLevelName(level)} sgl_kernel_ext: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# The hook


def align_hook(original_fn: Callable, *args: Any, **kwargs: Any):
    """AROUND hook on SGLang's ``moe_align_block_size(topk_ids, block_size, num_experts, ...)``."""
    try:
        ours = _our_call(*args, **kwargs)
    except TypeError:  # not a call we understand: let SGLang's function accept or reject it
        ours = None
    if ours is None or _state.wrapper_globals.get(sglang_compat.LORA_OPTI_GLOBAL):
        _state.fallback_calls += 1
        return original_fn(*args, **kwargs)
    try:
        result = ops.moe_align_for_fused_moe(*ours)
    except Exception as err:
        _state.kernel_errors += 1
        if _state.kernel_errors == 1:
            logger.warning("sgl_kernel_ext: our align kernel raised (%s); this call and later failing ones "
                           "use SGLang's function", err, exc_info=True)
        _state.fallback_calls += 1
        return original_fn(*args, **kwargs)
    _state.calls += 1
    if _state.calls == 1:
        _write_status_file()
    return result


def _our_call(topk_ids, block_size, num_experts, ignore_invalid_expert=False, **flags):
    """Arguments for ops.moe_align_for_fused_moe, or None when the call needs SGLang's function."""
    for name, value in flags.items():
        if name not in sglang_compat.UNIMPLEMENTED_FLAGS or value:
            return None
    return topk_ids, block_size, num_experts, bool(ignore_invalid_expert)


def _wrap(original: Callable) -> Callable:
    """What HookRegistry builds for an AROUND hook: the original's name and doc, calling align_hook."""

    @functools.wraps(original)
    def moe_align_block_size(*args, **kwargs):
        return align_hook(original, *args, **kwargs)

    return moe_align_block_size


def _bindings_of(obj) -> list[tuple[str, Any, str]]:
    """(module name, module, global name) of every module global that is ``obj``."""
    found = []
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            found += [(module_name, module, name) for name, value in list(namespace.items()) if value is obj]
    return found


def _replace_everywhere(original: Callable, replacement: Callable) -> None:
    """Rebind every module global that is ``original`` (the defining module's attribute and each
    ``from ... import`` copy), as HookRegistry does; modules imported later copy the new attribute."""
    for _, module, name in _bindings_of(original):
        setattr(module, name, replacement)


# ----------------------------------------------------------------------------------------------------
# Status


def _installed() -> Callable | None:
    """The function SGLang's wrapper module now exposes, if it is no longer SGLang's original."""
    if _state.wrapper is None:
        return None
    module = sys.modules.get(_state.wrapper.module)
    current = getattr(module, sglang_compat.WRAPPER_ATTR, None)
    return current if current is not None and current is not _state.original else None


def _patched_names() -> list[str]:
    installed = _installed()
    if installed is None:
        return []
    return sorted(f"{module_name}.{name}" for module_name, _, name in _bindings_of(installed))


def status() -> dict:
    """What this process uses for SGLang's moe_align_block_size, and how often our kernel ran."""
    wrapper = _state.wrapper
    patched = _patched_names()
    return {
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "implementation": _state.implementation,
        "reason": _state.reason,
        "patched": patched,
        "applied": bool(patched),  # False between register() and SGLang's apply_hooks()
        "calls": _state.calls,
        "fallback_calls": _state.fallback_calls,
        "kernel_errors": _state.kernel_errors,
        "mode": _state.mode,
        "build": _state.build,
        "target": wrapper.target if wrapper else None,
        "sglang_version": wrapper.sglang_version if wrapper else sglang_compat.installed_sglang_version(),
    }


def read_status_files(directory) -> list[dict]:
    """The status files of every process that wrote one into ``directory`` (``<pid>.json``)."""
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            out.append({"file": path.name, "unreadable": True})
    return out


def _write_status_file() -> None:
    directory = os.environ.get(STATUS_DIR_ENV)
    if not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(status(), f, indent=1)
        os.replace(path + ".tmp", path)  # readers never see half a file
    except OSError as err:
        logger.warning("sgl_kernel_ext: cannot write status file in %s: %s", directory, err)
