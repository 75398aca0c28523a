"""Where each sglang version keeps the fused-MoE align wrapper, and who imports it.

Version facts only (read from the released wheels); plugin.py and launch_server.py act on them.

The function we replace is SGLang's Python wrapper ``moe_align_block_size(topk_ids, block_size,
num_experts, ...)`` that Triton fused MoE calls: it allocates the padded buffers and runs the align &
sort kernel with ``num_experts + 1`` buckets. ``sgl_kernel_ext.ops.moe_align_for_fused_moe`` has the
same call and result (0.5.17 signature).

Importers were found by scanning each wheel's AST for ``from <m> import moe_align_block_size`` where
``<m>`` is the wrapper module or a module that re-exports it at import time (tests/cpu/importer_scan.py
does the same scan, and the tests check these tables against the wheels):

* ``at_import=True``: the name is bound when the importer module is imported, so a module imported
  before the patch holds a stale copy that must be rebound (SGLang's HookRegistry does that for every
  module in ``sys.modules``; the launcher does the same).
* ``at_import=False``: the import sits inside a function and reads the (patched) attribute at call time.

Not listed because they are a different function: ``from sgl_kernel import moe_align_block_size`` (the
raw kernel, gguf.py in 0.5.17) and ``_align_block_size_jit as moe_align_block_size`` (LoRA runners).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

WRAPPER_ATTR = "moe_align_block_size"

# Here in 0.5.16, 0.5.17 and 0.5.23 (checked); the layouts of 0.5.11-0.5.15 are found by lookup.
CURRENT_WRAPPER_MODULE = "sglang.srt.layers.moe.moe_runner.triton_utils.moe_align_block_size"
# Here in 0.5.5 and 0.5.10 (checked): signature (topk_ids, block_size, num_experts), no plugin framework.
LEGACY_WRAPPER_MODULE = "sglang.srt.layers.moe.fused_moe_triton.moe_align_block_size"

# Keyword-only flags some wrapper versions have and sgl_kernel_ext does not implement. False is the
# default (same result as without the flag); True means "run SGLang's own function".
UNIMPLEMENTED_FLAGS = frozenset({"return_inactive_prefix_count", "pad_expert_ids"})

# Module global of the wrapper module (0.5.16 and later): SGLANG_EXPERIMENTAL_LORA_OPTI read at import.
# When true the wrapper may take an experimental LoRA align path, so we leave the call to SGLang.
LORA_OPTI_GLOBAL = "_SGLANG_EXPERIMENTAL_LORA_OPTI"


@dataclass(frozen=True)
class Importer:
    module: str  # the module that imports the wrapper
    bound_name: str  # the name it binds
    source: str  # the module it imports from
    at_import: bool  # bound at module import (True) or inside a function at call time (False)


@dataclass(frozen=True)
class AlignWrapper:
    sglang_version: str | None
    module: str
    flags: tuple[str, ...]  # keyword-only flags this version's wrapper has (all in UNIMPLEMENTED_FLAGS)
    importers: tuple[Importer, ...]  # empty: not catalogued for this version

    @property
    def target(self) -> str:
        """Dotted path as HookRegistry.register() takes it."""
        return f"{self.module}.{WRAPPER_ATTR}"


_TRITON_UTILS = "sglang.srt.layers.moe.moe_runner.triton_utils"
_FUSED_MOE = f"{_TRITON_UTILS}.fused_moe"
_FUSED_MOE_TRITON = "sglang.srt.layers.moe.fused_moe_triton"
_NAME = WRAPPER_ATTR
# Importers both pinned versions have.
_IMPORTERS_SINCE_0_5_17 = (
        Importer(_TRITON_UTILS, _NAME, CURRENT_WRAPPER_MODULE, True),
        Importer(_FUSED_MOE, _NAME, CURRENT_WRAPPER_MODULE, True),
        Importer(_FUSED_MOE_TRITON, _NAME, _TRITON_UTILS, True),
        Importer("sglang.srt.lora.lora_moe_runner_marlin", _NAME, _FUSED_MOE, True),
        Importer("sglang.kernels.ops.moe.mxfp8_moe_amd_gfx95", _NAME, CURRENT_WRAPPER_MODULE, True),
)

# (topk_ids, block_size, num_experts, ignore_invalid_expert=False)
SGLANG_0_5_17 = AlignWrapper(
    sglang_version="0.5.17",
    module=CURRENT_WRAPPER_MODULE,
    flags=(),
    importers=_IMPORTERS_SINCE_0_5_17 + (
        Importer(f"{_FUSED_MOE_TRITON}.fused_marlin_moe", _NAME, _FUSED_MOE_TRITON, False),
        Importer("sglang.srt.layers.moe.moe_runner.humming", _NAME, _FUSED_MOE_TRITON, False),
        Importer("sglang.kernels.ops.moe.virtual_experts", "native_moe_align_block_size",
                 CURRENT_WRAPPER_MODULE, False),
        Importer("sglang.kernels.ops.moe.trtllm_lora_temp.virtual_experts", "native_moe_align_block_size",
                 CURRENT_WRAPPER_MODULE, False),
    ),
)

# (topk_ids, block_size, num_experts, ignore_invalid_expert=False, *,
#  return_inactive_prefix_count=False, pad_expert_ids=False)
SGLANG_0_5_23 = AlignWrapper(
    sglang_version="0.5.23",
    module=CURRENT_WRAPPER_MODULE,
    flags=("return_inactive_prefix_count", "pad_expert_ids"),
    importers=_IMPORTERS_SINCE_0_5_17 + (
        Importer("sglang.srt.layers.quantization.gguf", _NAME, CURRENT_WRAPPER_MODULE, True),
        Importer(f"{_FUSED_MOE_TRITON}.fused_marlin_moe", _NAME, _FUSED_MOE_TRITON, False),
        Importer("sglang.srt.layers.moe.moe_runner.humming", _NAME, _FUSED_MOE_TRITON, False),
        Importer("sglang.srt.layers.mova", _NAME, _FUSED_MOE_TRITON, False),
        Importer("sglang.srt.layers.muse_spark.muse_spark_fp4_moe", _NAME, _FUSED_MOE_TRITON, False),
        Importer("sglang.srt.lora.moe.base_gemm_provider.input_alignment", _NAME, CURRENT_WRAPPER_MODULE,
                 False),
        Importer("sglang.kernels.ops.lora.moe.virtual_experts", "native_moe_align_block_size",
                 CURRENT_WRAPPER_MODULE, False),
        Importer("sglang.kernels.ops.lora.moe.trtllm_lora_temp.virtual_experts", "native_moe_align_block_size",
                 CURRENT_WRAPPER_MODULE, False),
    ),
)

PINNED = {w.sglang_version: w for w in (SGLANG_0_5_17, SGLANG_0_5_23)}


def dist_version(name: str) -> str | None:
    """An installed distribution's version, read from its metadata (imports nothing)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_sglang_version() -> str | None:
    """The sglang distribution's version (does not import sglang)."""
    return dist_version("sglang")


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None  # imports the parent packages
    except ImportError:
        return False


def align_wrapper(version: str | None = None) -> AlignWrapper | None:
    """The wrapper facts for ``version`` (default: the installed sglang), or None if there is none.

    Versions between and after the pinned ones are recognised by where the wrapper module lives; their
    importers are not catalogued (HookRegistry and the launcher rebind every importer anyway).
    """
    version = version if version is not None else installed_sglang_version()
    if version in PINNED:
        return PINNED[version]
    if _module_exists(CURRENT_WRAPPER_MODULE):
        return AlignWrapper(version, CURRENT_WRAPPER_MODULE, tuple(sorted(UNIMPLEMENTED_FLAGS)), ())
    if _module_exists(LEGACY_WRAPPER_MODULE):
        return AlignWrapper(version, LEGACY_WRAPPER_MODULE, (), ())
    return None
