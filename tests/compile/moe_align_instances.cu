// Explicit instances of the kernel header, built on machines without a GPU
// (CI) to catch compile errors and read register / shared-memory / spill reports.
#include "../../sgl_kernel_ext/csrc/moe_align.cuh"

template __global__ void ske::moe_align_kernel<int32_t, ske::kDeviceWarpSize, false, false>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_kernel<int64_t, ske::kDeviceWarpSize, false, false>(ske::MoeAlignParams<int64_t>);
template __global__ void ske::moe_align_kernel<int32_t, ske::kDeviceWarpSize, true, false>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_kernel<int64_t, ske::kDeviceWarpSize, true, false>(ske::MoeAlignParams<int64_t>);
#if !defined(SKE_HIP)  // 16-bit counts: 32-wide warps only (moe_align_kernel_for); gfx9 waves are 64 wide
template __global__ void ske::moe_align_kernel<int32_t, ske::kDeviceWarpSize, false, true>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_kernel<int64_t, ske::kDeviceWarpSize, false, true>(ske::MoeAlignParams<int64_t>);
template __global__ void ske::moe_align_kernel<int32_t, ske::kDeviceWarpSize, true, true>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_kernel<int64_t, ske::kDeviceWarpSize, true, true>(ske::MoeAlignParams<int64_t>);
// Thread-block clusters (CUDA only; launched on sm_90 and later)
template __global__ void ske::moe_align_kernel<int32_t, ske::kDeviceWarpSize, false, false, true>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_kernel<int64_t, ske::kDeviceWarpSize, false, false, true>(ske::MoeAlignParams<int64_t>);
template __global__ void ske::moe_align_kernel<int32_t, ske::kDeviceWarpSize, true, false, true>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_kernel<int64_t, ske::kDeviceWarpSize, true, false, true>(ske::MoeAlignParams<int64_t>);
#endif

template __global__ void ske::moe_align_tiny_kernel<int32_t>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_tiny_kernel<int64_t>(ske::MoeAlignParams<int64_t>);
template __global__ void ske::moe_align_staged_kernel<int32_t, ske::kDeviceWarpSize>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_staged_kernel<int64_t, ske::kDeviceWarpSize>(ske::MoeAlignParams<int64_t>);
template __global__ void ske::moe_align_ranged_kernel<int32_t, ske::kDeviceWarpSize>(ske::MoeAlignParams<int32_t>);
template __global__ void ske::moe_align_ranged_kernel<int64_t, ske::kDeviceWarpSize>(ske::MoeAlignParams<int64_t>);
