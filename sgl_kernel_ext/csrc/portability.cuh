// The few vendor differences the MoE align kernel touches, in one place, so that
// moe_align.cuh builds unchanged with nvcc and with hipcc (HIP_PLATFORM=amd).
#pragma once

#include <cstdint>

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__) || defined(USE_ROCM)
#define SKE_HIP 1
#include <hip/hip_runtime.h>  // before the cooperative-groups header, which needs it (ROCm 5.2)
#include <hip/hip_cooperative_groups.h>
#else
#include <cooperative_groups.h>
#include <cuda_runtime.h>
#endif

namespace ske {

#if defined(SKE_HIP)
using gpuStream_t = hipStream_t;
using gpuError_t = hipError_t;
constexpr gpuError_t kGpuSuccess = hipSuccess;
#else
using gpuStream_t = cudaStream_t;
using gpuError_t = cudaError_t;
constexpr gpuError_t kGpuSuccess = cudaSuccess;
#endif

// Warp size of the device code being compiled; host code picks a template
// instance from the runtime's warpSize instead.
#if defined(SKE_HIP)
#if defined(__GFX10__) || defined(__GFX11__) || defined(__GFX12__)
constexpr int kDeviceWarpSize = 32;
#else
constexpr int kDeviceWarpSize = 64;
#endif
#else
constexpr int kDeviceWarpSize = 32;
#endif

template <int kWarpSize>
struct LaneMaskOf;
template <>
struct LaneMaskOf<32> {
  using type = uint32_t;
};
template <>
struct LaneMaskOf<64> {
  using type = uint64_t;
};
template <int kWarpSize>
using LaneMask = typename LaneMaskOf<kWarpSize>::type;

__device__ __forceinline__ int popcount(uint32_t x) { return __popc(x); }
__device__ __forceinline__ int popcount(uint64_t x) { return __popcll(x); }

template <int kWarpSize>
__device__ __forceinline__ LaneMask<kWarpSize> ballot(bool pred) {
#if defined(SKE_HIP)
  return static_cast<LaneMask<kWarpSize>>(__ballot(pred));
#else
  return __ballot_sync(0xffffffffu, pred);
#endif
}

// Lanes whose key equals this lane's, from one ballot per key bit (any vendor, any
// warp size). Every lane of the warp must call it; 0 <= key < 2**key_bits.
template <int kWarpSize>
__device__ __forceinline__ LaneMask<kWarpSize> match_bits(int key, int key_bits) {
  LaneMask<kWarpSize> peers = ~LaneMask<kWarpSize>(0);
  for (int bit = 0; bit < key_bits; ++bit) {
    const bool set = (key >> bit) & 1;
    const LaneMask<kWarpSize> b = ballot<kWarpSize>(set);
    peers &= set ? b : ~b;
  }
  return peers;
}

#if !defined(SKE_HIP) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700)
#define SKE_MATCH 1
// Lanes whose key equals this lane's, from one MATCH instruction (any key).
__device__ __forceinline__ uint32_t match_any(int key) { return __match_any_sync(0xffffffffu, key); }
#endif

// The same on NVIDIA (sm_70 and later) from one MATCH over the key's high bits and a ballot
// for each of its 3 low bits, else by match_bits. MATCH's cost grows with the distinct values
// among the lanes (H200, 16 warps per multiprocessor: ~1,000 cycles a step over ~30 of them,
// ~250 over 8), the ballots' does not (~65 each): 674 cycles a step over 257 buckets, and in
// the lab exchanges 0.990-0.991 in five runs (Mixtral 0.995). A constant count: one taken
// from key_bits at run time (a ballot loop, or a branch to constant splits) measured 1.003
// (bench/NOTES.md, sixteenth and seventeenth sessions).
template <int kWarpSize>
__device__ __forceinline__ LaneMask<kWarpSize> match_key(int key, int key_bits) {
#if defined(SKE_MATCH)
  (void)key_bits;
  constexpr int kLowBits = 3;
  return match_any(key >> kLowBits) & match_bits<kWarpSize>(key, kLowBits);
#else
  return match_bits<kWarpSize>(key, key_bits);
#endif
}

template <int kWarpSize>
__device__ __forceinline__ int shfl_up(int v, int delta) {
#if defined(SKE_HIP)
  return __shfl_up(v, delta, kWarpSize);
#else
  return __shfl_up_sync(0xffffffffu, v, delta, kWarpSize);
#endif
}

template <int kWarpSize>
__device__ __forceinline__ int shfl(int v, int src_lane) {
#if defined(SKE_HIP)
  return __shfl(v, src_lane, kWarpSize);
#else
  return __shfl_sync(0xffffffffu, v, src_lane, kWarpSize);
#endif
}

// width: lanes per independent group (a power of two <= kWarpSize).
template <int kWarpSize>
__device__ __forceinline__ int shfl_xor(int v, int lane_mask, int width = kWarpSize) {
#if defined(SKE_HIP)
  return __shfl_xor(v, lane_mask, width);
#else
  return __shfl_xor_sync(0xffffffffu, v, lane_mask, width);
#endif
}

// *addr |= bits on shared memory, for a lane mask of either width.
__device__ __forceinline__ void atomic_or(uint32_t* addr, uint32_t bits) { atomicOr(addr, bits); }
__device__ __forceinline__ void atomic_or(uint64_t* addr, uint64_t bits) {
  atomicOr(reinterpret_cast<unsigned long long*>(addr), static_cast<unsigned long long>(bits));
}

__device__ __forceinline__ void sync_warp() {
#if defined(SKE_HIP)
  __builtin_amdgcn_wave_barrier();
#else
  __syncwarp();
#endif
}

__device__ __forceinline__ void grid_sync() { cooperative_groups::this_grid().sync(); }

// Thread-block clusters (CUDA, sm_90 and later): a barrier over the cluster's blocks
// and another block's shared memory. Elsewhere they are never launched (the host
// plan asks DeviceLimits::clusters); the device code there traps.
#if !defined(SKE_HIP) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
#define SKE_CLUSTERS 1
#endif

// Where clusters are never launched: reaching cluster code is a planning bug.
__device__ __forceinline__ void no_clusters_here() {
#if defined(SKE_HIP)
  __builtin_trap();
#else
  __trap();
#endif
}

// The two halves of a cluster barrier: arrive (release) without waiting, and wait (acquire).
__device__ __forceinline__ void cluster_arrive() {
#if defined(SKE_CLUSTERS)
  asm volatile("barrier.cluster.arrive.aligned;\n" ::: "memory");
#else
  no_clusters_here();
#endif
}

// An arrive that orders nothing: for a block that only says it is done reading the
// others' shared memory (every value it read was used before the arrive, so no read is
// still in flight), where the plain arrive's release costs a MEMBAR.ALL.GPU.
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(SKE_CLUSTERS)
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
#else
  no_clusters_here();
#endif
}

__device__ __forceinline__ void cluster_wait() {
#if defined(SKE_CLUSTERS)
  asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
#else
  no_clusters_here();
#endif
}

// A cluster barrier after which the cluster's blocks may read what this block wrote to
// its shared memory. A plain arrive releases every prior access at cluster scope, which
// ptxas emits as MEMBAR.ALL.GPU (the block's global stores included); a release fence
// restricted to the block's shared memory is a MEMBAR.ALL.CTA, paired with a relaxed
// arrive (PTX ISA 8.6, CUDA 12.8; older compilers keep the plain arrive).
__device__ __forceinline__ void cluster_sync_shared() {
#if defined(SKE_CLUSTERS) && (__CUDACC_VER_MAJOR__ * 100 + __CUDACC_VER_MINOR__ >= 1208)
  asm volatile(
      "fence.release.sync_restrict::shared::cta.cluster;\n"
      "barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
#else
  cluster_arrive();
#endif
  cluster_wait();
}

// The launch's cluster shape, from special registers (clusters along x): this block's
// rank in its cluster, the cluster's blocks, the cluster's index in the grid, and the
// grid's clusters.
__device__ __forceinline__ int cluster_special_register(int which) {
#if defined(SKE_CLUSTERS)
  uint32_t v = 0;
  switch (which) {
    case 0: asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(v)); break;
    case 1: asm("mov.u32 %0, %%cluster_nctarank;" : "=r"(v)); break;
    case 2: asm("mov.u32 %0, %%clusterid.x;" : "=r"(v)); break;
    default: asm("mov.u32 %0, %%nclusterid.x;" : "=r"(v)); break;
  }
  return static_cast<int>(v);
#else
  no_clusters_here();
  return which;
#endif
}
__device__ __forceinline__ int cluster_rank() { return cluster_special_register(0); }
__device__ __forceinline__ int cluster_blocks() { return cluster_special_register(1); }
__device__ __forceinline__ int cluster_index() { return cluster_special_register(2); }
__device__ __forceinline__ int cluster_count() { return cluster_special_register(3); }

template <typename T>
__device__ __forceinline__ T* cluster_peer(T* shared, int rank) {
#if defined(SKE_CLUSTERS)
  return cooperative_groups::this_cluster().map_shared_rank(shared, rank);
#else
  no_clusters_here();
  return shared;
#endif
}

template <typename Kernel>
inline gpuError_t launch_cooperative(Kernel kernel, int grid, int block, void** args, size_t smem,
                                     gpuStream_t stream) {
#if defined(SKE_HIP)
  return hipLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), args,
                                    static_cast<unsigned int>(smem), stream);
#else
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), args, smem,
                                     stream);
#endif
}

#if !defined(SKE_HIP)
// A launch configuration in clusters of `cluster` blocks along x, cooperative where asked;
// attrs (the caller's storage, 2 entries) holds its attributes.
inline cudaLaunchConfig_t cluster_config(int grid, int block, int cluster, size_t smem, gpuStream_t stream,
                                         bool cooperative, cudaLaunchAttribute* attrs) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(block);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  attrs[0].id = cudaLaunchAttributeClusterDimension;
  attrs[0].val.clusterDim.x = cluster;
  attrs[0].val.clusterDim.y = 1;
  attrs[0].val.clusterDim.z = 1;
  config.attrs = attrs;
  config.numAttrs = 1;
  if (cooperative) {
    attrs[1].id = cudaLaunchAttributeCooperative;
    attrs[1].val.cooperative = 1;
    config.numAttrs = 2;
  }
  return config;
}
#endif

// A launch in clusters of `cluster` blocks along x; cooperative where the grid has a grid barrier.
template <typename Kernel>
inline gpuError_t launch_clusters(Kernel kernel, int grid, int block, int cluster, bool cooperative, void** args,
                                  size_t smem, gpuStream_t stream) {
#if defined(SKE_HIP)
  return hipErrorNotSupported;
#else
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t config = cluster_config(grid, block, cluster, smem, stream, cooperative, attrs);
  return cudaLaunchKernelExC(&config, reinterpret_cast<const void*>(kernel), args);
#endif
}

template <typename Kernel>
inline gpuError_t launch_plain(Kernel kernel, int grid, int block, void** args, size_t smem, gpuStream_t stream) {
#if defined(SKE_HIP)
  return hipLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), args, smem, stream);
#else
  return cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), args, smem, stream);
#endif
}

// Blocks of `block` threads and `smem` bytes that the whole device (sm_count multiprocessors)
// holds at once, launched in clusters of `cluster` blocks where it is > 1 (none on HIP).
template <typename Kernel>
inline gpuError_t max_coresident_blocks(int* out, Kernel kernel, int block, size_t smem, int cluster, int sm_count) {
  *out = 0;
#if defined(SKE_HIP)
  if (cluster > 1) return hipSuccess;
  int per_sm = 0;
  const gpuError_t err = hipOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block, smem);
  *out = per_sm * sm_count;
#else
  gpuError_t err;
  if (cluster > 1) {
    cudaLaunchAttribute attrs[2];
    const cudaLaunchConfig_t config = cluster_config(cluster, block, cluster, smem, nullptr, false, attrs);
    int clusters = 0;
    err = cudaOccupancyMaxActiveClusters(&clusters, kernel, &config);
    *out = clusters * cluster;
  } else {
    int per_sm = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, block, smem);
    *out = per_sm * sm_count;
  }
#endif
  return err;
}

template <typename Kernel>
inline gpuError_t allow_dynamic_smem(Kernel kernel, int bytes) {
#if defined(SKE_HIP)
  return hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                             bytes);
#else
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
#endif
}

inline const char* error_string(gpuError_t err) {
#if defined(SKE_HIP)
  return hipGetErrorString(err);
#else
  return cudaGetErrorString(err);
#endif
}

struct DeviceLimits {
  int sm_count;
  int warp_size;
  int smem_per_block_optin;
  bool cooperative;
  bool clusters;  // thread-block clusters (CUDA, compute capability 9.0 and later)
};

inline gpuError_t query_device(int device, DeviceLimits* out) {
#if defined(SKE_HIP)
  hipDeviceProp_t prop;
  gpuError_t err = hipGetDeviceProperties(&prop, device);
  if (err != kGpuSuccess) return err;
  out->smem_per_block_optin = static_cast<int>(prop.sharedMemPerBlock);
#else
  cudaDeviceProp prop;
  gpuError_t err = cudaGetDeviceProperties(&prop, device);
  if (err != kGpuSuccess) return err;
  out->smem_per_block_optin = static_cast<int>(prop.sharedMemPerBlockOptin);
#endif
  out->sm_count = prop.multiProcessorCount;
  out->warp_size = prop.warpSize;
  out->cooperative = prop.cooperativeLaunch != 0;
#if defined(SKE_HIP)
  out->clusters = false;
#else
  out->clusters = prop.major >= 9;
#endif
  return kGpuSuccess;
}

}  // namespace ske
