"""Load the compiled op (AOT build if installed, else JIT build) and expose it.

The kernel is registered as torch custom ops ``torch.ops.sgl_kernel_ext.*`` with
fake implementations, so they are CUDA-graph capturable and torch.compile
traceable.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

import torch

from sgl_kernel_ext.reference import fused_moe_sizes, required_sizes

logger = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
_CHECK_IDS = os.environ.get("SGL_KERNEL_EXT_CHECK", "0") not in ("", "0")
# A sane upper bound for CPU-side validation; the device-specific bound (shared
# memory) is checked when the op runs.
MAX_NUM_EXPERTS = 1 << 16


class ExtensionUnavailable(RuntimeError):
    """The compiled op cannot be loaded or built on this machine."""


def _aot_library() -> Path | None:
    here = Path(__file__).resolve().parent
    found = sorted(here.glob("_C*.so")) + sorted(here.glob("_C*.pyd"))
    return found[0] if found else None


def _jit_build() -> None:
    if not torch.cuda.is_available():
        raise ExtensionUnavailable(
            "sgl_kernel_ext needs an NVIDIA (CUDA) or AMD (ROCm) GPU; torch sees none "
            f"(torch {torch.__version__}, cuda={torch.version.cuda}, hip={torch.version.hip})"
        )
    from torch.utils import cpp_extension

    is_hip = torch.version.hip is not None
    compiler = "hipcc" if is_hip else "nvcc"
    home = cpp_extension.ROCM_HOME if is_hip else cpp_extension.CUDA_HOME
    if shutil.which(compiler) is None and home is None:
        raise ExtensionUnavailable(
            f"sgl_kernel_ext has no prebuilt kernel and cannot JIT-build it: {compiler} not found "
            f"(set {'ROCM_HOME' if is_hip else 'CUDA_HOME'} or `python -m pip install --no-build-isolation .`)"
        )
    flags = ["-O3", "-std=c++17"]
    if not is_hip:
        flags += ["--expt-relaxed-constexpr", "-lineinfo"]
    cpp_extension.load(
        name="sgl_kernel_ext_jit",
        sources=[str(CSRC / "torch_binding.cu")],
        extra_include_paths=[str(CSRC)],
        extra_cuda_cflags=flags,
        is_python_module=False,
        verbose=os.environ.get("SGL_KERNEL_EXT_VERBOSE_BUILD", "0") == "1",
    )


@functools.cache
def load() -> str:
    """Make ``torch.ops.sgl_kernel_ext`` available; return how ("aot" or "jit")."""
    lib = _aot_library()
    how = "jit"
    if lib is not None:
        try:
            torch.ops.load_library(str(lib))
            how = "aot"
        except OSError as err:
            logger.warning("sgl_kernel_ext: prebuilt %s does not load (%s); trying a JIT build", lib.name, err)
    if how == "jit":
        try:
            _jit_build()
        except ExtensionUnavailable:
            raise
        except Exception as err:  # compiler errors, missing headers, ...
            raise ExtensionUnavailable(f"sgl_kernel_ext: JIT build failed: {err}") from err
    _register_fakes()
    return how


def _register_fakes() -> None:
    @torch.library.register_fake("sgl_kernel_ext::moe_align_block_size")
    def _(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids, num_tokens_post_pad, cumsum_buffer,
          pad_sorted_token_ids=False, ignore_invalid_expert=False):
        return None

    @torch.library.register_fake("sgl_kernel_ext::moe_align_for_fused_moe")
    def _(topk_ids, block_size, num_experts, ignore_invalid_expert=False):
        max_padded, max_blocks = fused_moe_sizes(topk_ids.numel(), num_experts, block_size)
        new = functools.partial(topk_ids.new_empty, dtype=torch.int32)
        return new((max_padded,)), new((max_blocks,)), new((1,))


def _check_out(t, name: str, need: int, device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.int32:
        raise TypeError(f"{name} must be int32, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, topk_ids on {device}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    if t.numel() < need:
        raise ValueError(f"{name} holds {t.numel()} elements, needs at least {need}")


def check_args(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids, num_tokens_post_pad,
               cumsum_buffer) -> None:
    """Raise TypeError/ValueError naming the first bad argument."""
    if not isinstance(topk_ids, torch.Tensor):
        raise TypeError(f"topk_ids must be a torch.Tensor, got {type(topk_ids).__name__}")
    if topk_ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"topk_ids must be int32 or int64, got {topk_ids.dtype}")
    if topk_ids.device.type != "cuda":
        raise ValueError(f"topk_ids must be on a GPU (cuda/hip device), got {topk_ids.device}")
    if not topk_ids.is_contiguous():
        raise ValueError("topk_ids must be contiguous")
    for name, v in (("num_experts", num_experts), ("block_size", block_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if not 1 <= num_experts <= MAX_NUM_EXPERTS:
        raise ValueError(f"num_experts = {num_experts} must be in [1, {MAX_NUM_EXPERTS}]")
    if block_size < 1:
        raise ValueError(f"block_size = {block_size} must be >= 1")
    numel = topk_ids.numel()
    if numel >= 2**31:
        raise ValueError(f"topk_ids.numel() = {numel} must be < 2**31")
    max_padded, max_blocks = required_sizes(numel, num_experts, block_size)
    if max_padded >= 2**31:
        raise ValueError(f"padded size {max_padded} must be < 2**31")
    dev = topk_ids.device
    _check_out(sorted_token_ids, "sorted_token_ids", max_padded, dev)
    _check_out(experts_ids, "experts_ids", max_blocks, dev)
    _check_out(num_tokens_post_pad, "num_tokens_post_pad", 1, dev)
    _check_out(cumsum_buffer, "cumsum_buffer", num_experts + 1, dev)


def check_ids(topk_ids: torch.Tensor, num_experts: int) -> None:
    """SGL_KERNEL_EXT_CHECK=1: ids must lie in [-1, num_experts - 2] (synchronizes)."""
    bad = (topk_ids < -1) | (topk_ids > num_experts - 2)
    if bool(bad.any()):
        first = topk_ids.reshape(-1)[bad.reshape(-1)][0].item()
        raise ValueError(
            f"topk_ids holds {int(bad.sum())} ids outside [-1, {num_experts - 2}] (first: {first}); "
            "they would be routed to the invalid-expert bucket"
        )


def moe_align_block_size(
    topk_ids: torch.Tensor,
    num_experts: int,
    block_size: int,
    sorted_token_ids: torch.Tensor,
    experts_ids: torch.Tensor,
    num_tokens_post_pad: torch.Tensor,
    cumsum_buffer: torch.Tensor,
    pad_sorted_token_ids: bool = False,
    ignore_invalid_expert: bool = False,
) -> None:
    """Drop-in for ``sgl_kernel.moe_align_block_size`` (sgl_kernel 0.4.5 signature).

    ``num_experts`` counts buckets: an id ``x`` goes to bucket ``x + 1``. Inside
    each bucket the pair indices come out ascending (deterministic).
    """
    check_args(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids, num_tokens_post_pad,
               cumsum_buffer)
    if _CHECK_IDS:
        check_ids(topk_ids, num_experts)
    load()
    torch.ops.sgl_kernel_ext.moe_align_block_size(
        topk_ids, num_experts, block_size, sorted_token_ids, experts_ids, num_tokens_post_pad, cumsum_buffer,
        pad_sorted_token_ids, ignore_invalid_expert,
    )


def moe_align_for_fused_moe(
    topk_ids: torch.Tensor, block_size: int, num_experts: int, ignore_invalid_expert: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same call and result as sglang 0.5.17's ``moe_align_block_size`` wrapper
    (sglang/srt/layers/moe/moe_runner/triton_utils/moe_align_block_size.py):
    allocates the padded buffers and returns (sorted_ids, expert_ids, num_tokens_post_pad).
    """
    if _CHECK_IDS:
        check_ids(topk_ids, num_experts + 1)
    if not torch.compiler.is_compiling():
        load()
    return torch.ops.sgl_kernel_ext.moe_align_for_fused_moe(topk_ids, block_size, num_experts,
                                                            ignore_invalid_expert)
