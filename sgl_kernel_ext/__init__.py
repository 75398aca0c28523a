"""sgl-kernel-ext: a one-launch, multi-block MoE align & sort kernel for SGLang."""

from sgl_kernel_ext.ops import ExtensionUnavailable, load, moe_align_block_size, moe_align_for_fused_moe
from sgl_kernel_ext.reference import moe_align_block_size_ref

__version__ = "0.1.0"
__all__ = [
    "ExtensionUnavailable",
    "load",
    "moe_align_block_size",
    "moe_align_for_fused_moe",
    "moe_align_block_size_ref",
]
