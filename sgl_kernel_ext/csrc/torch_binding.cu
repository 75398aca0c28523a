// Thin torch binding: argument checks, grid planning cache, scratch allocation.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "moe_align.cuh"

namespace {

const ske::DeviceLimits& device_limits(int device) {
  static std::array<ske::DeviceLimits, 64> limits;
  static std::array<std::once_flag, 64> once;
  TORCH_CHECK(device >= 0 && device < 64, "sgl_kernel_ext: device index ", device, " out of range");
  std::call_once(once[device], [&] {
    const ske::gpuError_t err = ske::query_device(device, &limits[device]);
    TORCH_CHECK(err == ske::kGpuSuccess, "sgl_kernel_ext: device query failed: ", ske::error_string(err));
    // SGL_KERNEL_EXT_CLUSTERS=0: exchanges without thread-block clusters (a way around a driver
    // that refuses cluster launches, and how scripts/sanitize.sh reaches the other instances).
    const char* clusters = std::getenv("SGL_KERNEL_EXT_CLUSTERS");
    if (clusters && std::string(clusters) == "0") limits[device].clusters = false;
  });
  return limits[device];
}

// Blocks of the given shape that are co-resident on the whole device, launched in
// clusters of `cluster` blocks where it is > 1. Cached: the occupancy query is not
// free and the same few shapes recur.
template <typename Kernel>
int coresident_blocks(Kernel kernel, int device, int block, size_t smem, int cluster) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, int, int, size_t, int>, int> cache;
  const auto key = std::make_tuple(reinterpret_cast<const void*>(kernel), device, block, smem, cluster);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int blocks = 0;
  const ske::gpuError_t err =
      ske::max_coresident_blocks(&blocks, kernel, block, smem, cluster, device_limits(device).sm_count);
  TORCH_CHECK(err == ske::kGpuSuccess, "sgl_kernel_ext: occupancy query failed: ", ske::error_string(err));
  cache.emplace(key, blocks);
  return blocks;
}

// Raises the dynamic shared memory limit of the kernels that size it at launch,
// once per instance and device (not on every call).
template <typename IdT, int kWarpSize>
void allow_smem_once(int device, int bytes) {
  static std::array<std::once_flag, 64> once;
  std::call_once(once[device], [&] {
    for (const auto kernel : ske::moe_align_launch_sized_kernels<IdT, kWarpSize>()) {
      const ske::gpuError_t err = ske::allow_dynamic_smem(kernel, bytes);
      TORCH_CHECK(err == ske::kGpuSuccess, "sgl_kernel_ext: cannot raise shared memory: ", ske::error_string(err));
    }
  });
}

template <typename IdT, int kWarpSize>
void run(const at::Tensor& topk_ids, int num_buckets, int block_size, const at::Tensor& sorted_token_ids,
         const at::Tensor& expert_ids, const at::Tensor& num_tokens_post_pad, const at::Tensor& cumsum_buffer,
         bool pad_sorted_token_ids, bool ignore_invalid_expert) {
  const int device = topk_ids.get_device();
  const ske::DeviceLimits& dev = device_limits(device);
  allow_smem_once<IdT, kWarpSize>(device, dev.smem_per_block_optin);
  const int numel = static_cast<int>(topk_ids.numel());
  const ske::MoeAlignPlan plan = ske::plan_moe_align(
      numel, num_buckets, static_cast<int>(sorted_token_ids.numel()), dev, kWarpSize,
      [&](const ske::MoeAlignPlan& shape) {
        return coresident_blocks(ske::moe_align_kernel_for<IdT, kWarpSize>(shape), device, shape.block, shape.smem,
                                 shape.cluster);
      });
  at::Tensor block_counts;
  if (const int64_t ints = ske::moe_align_block_counts_ints(plan, num_buckets))
    block_counts = at::empty({ints}, topk_ids.options().dtype(at::kInt));
  ske::MoeAlignParams<IdT> p{};
  p.topk_ids = topk_ids.data_ptr<IdT>();
  p.sorted_token_ids = sorted_token_ids.data_ptr<int32_t>();
  p.expert_ids = expert_ids.data_ptr<int32_t>();
  p.num_tokens_post_pad = num_tokens_post_pad.data_ptr<int32_t>();
  p.cumsum = cumsum_buffer.data_ptr<int32_t>();
  p.block_counts = block_counts.defined() ? block_counts.data_ptr<int32_t>() : nullptr;
  p.numel = numel;
  p.num_buckets = num_buckets;
  p.block_size = block_size;
  p.sorted_len = static_cast<int32_t>(sorted_token_ids.numel());
  p.pad_sorted_token_ids = pad_sorted_token_ids;
  p.ignore_invalid_expert = ignore_invalid_expert;
  const ske::gpuError_t err =
      ske::launch_moe_align<IdT, kWarpSize>(p, plan, at::cuda::getCurrentCUDAStream(device).stream());
  TORCH_CHECK(err == ske::kGpuSuccess, "sgl_kernel_ext: moe_align launch failed (grid ", plan.grid, ", block ",
              plan.block, ", smem ", plan.smem, "): ", ske::error_string(err));
}

void check_int32_out(const at::Tensor& t, const char* name, int64_t min_numel, const at::Device& device) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, name, " must be int32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == device, name, " is on ", t.device(), ", topk_ids on ", device);
  TORCH_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK_VALUE(t.numel() >= min_numel, name, " holds ", t.numel(), " elements, needs ", min_numel);
}

void moe_align_block_size(const at::Tensor& topk_ids, int64_t num_experts, int64_t block_size,
                          const at::Tensor& sorted_token_ids, const at::Tensor& expert_ids,
                          const at::Tensor& num_tokens_post_pad, const at::Tensor& cumsum_buffer,
                          bool pad_sorted_token_ids, bool ignore_invalid_expert) {
  TORCH_CHECK_VALUE(topk_ids.is_cuda(), "topk_ids must be on a GPU, got ", topk_ids.device());
  TORCH_CHECK_TYPE(topk_ids.scalar_type() == at::kInt || topk_ids.scalar_type() == at::kLong,
                   "topk_ids must be int32 or int64, got ", topk_ids.scalar_type());
  TORCH_CHECK_VALUE(topk_ids.is_contiguous(), "topk_ids must be contiguous");
  TORCH_CHECK_VALUE(topk_ids.numel() < (int64_t(1) << 31), "topk_ids.numel() = ", topk_ids.numel(),
                    " must be < 2**31");
  TORCH_CHECK_VALUE(block_size >= 1, "block_size must be >= 1, got ", block_size);
  const at::cuda::OptionalCUDAGuard guard(topk_ids.device());
  const int max_buckets = ske::max_supported_buckets(device_limits(topk_ids.get_device()));
  TORCH_CHECK_VALUE(num_experts >= 1 && num_experts <= max_buckets, "num_experts = ", num_experts,
                    " must be in [1, ", max_buckets, "] on this device");
  const int64_t numel = topk_ids.numel();
  const int64_t max_padded = numel + std::min(numel, num_experts) * (block_size - 1);
  TORCH_CHECK_VALUE(max_padded < (int64_t(1) << 31), "padded size ", max_padded, " must be < 2**31");
  const at::Device device = topk_ids.device();
  check_int32_out(sorted_token_ids, "sorted_token_ids", max_padded, device);
  check_int32_out(expert_ids, "expert_ids", (max_padded + block_size - 1) / block_size, device);
  check_int32_out(num_tokens_post_pad, "num_tokens_post_pad", 1, device);
  check_int32_out(cumsum_buffer, "cumsum_buffer", num_experts + 1, device);
  TORCH_CHECK_VALUE(sorted_token_ids.numel() < (int64_t(1) << 31), "sorted_token_ids is too long");

  const int warp_size = device_limits(topk_ids.get_device()).warp_size;
  const int nb = static_cast<int>(num_experts), bs = static_cast<int>(block_size);
#define SKE_RUN(IdT, W)                                                                                         \
  run<IdT, W>(topk_ids, nb, bs, sorted_token_ids, expert_ids, num_tokens_post_pad, cumsum_buffer,             \
              pad_sorted_token_ids, ignore_invalid_expert)
#if defined(USE_ROCM)
  if (warp_size == 64) {
    if (topk_ids.scalar_type() == at::kInt) SKE_RUN(int32_t, 64); else SKE_RUN(int64_t, 64);
    return;
  }
#endif
  TORCH_CHECK(warp_size == 32, "sgl_kernel_ext: unsupported warp size ", warp_size);
  if (topk_ids.scalar_type() == at::kInt) SKE_RUN(int32_t, 32); else SKE_RUN(int64_t, 32);
#undef SKE_RUN
}

// sglang's fused-MoE wrapper in one call: num_experts + 1 buckets (EP's -1 is
// bucket 0), padded outputs allocated here, where allocation is cheapest.
std::tuple<at::Tensor, at::Tensor, at::Tensor> moe_align_for_fused_moe(const at::Tensor& topk_ids,
                                                                       int64_t block_size, int64_t num_experts,
                                                                       bool ignore_invalid_expert) {
  TORCH_CHECK_VALUE(block_size >= 1, "block_size must be >= 1, got ", block_size);
  const int64_t numel = topk_ids.numel();
  const int64_t max_padded =
      numel < num_experts + 1 ? numel * block_size : numel + (num_experts + 1) * (block_size - 1);
  const auto opts = topk_ids.options().dtype(at::kInt);
  at::Tensor sorted_ids = at::empty({max_padded}, opts);
  at::Tensor expert_ids = at::empty({(max_padded + block_size - 1) / block_size}, opts);
  at::Tensor num_tokens_post_pad = at::empty({1}, opts);
  at::Tensor cumsum = at::empty({num_experts + 2}, opts);
  moe_align_block_size(topk_ids, num_experts + 1, block_size, sorted_ids, expert_ids, num_tokens_post_pad, cumsum,
                       true, ignore_invalid_expert);
  return {sorted_ids, expert_ids, num_tokens_post_pad};
}

}  // namespace

TORCH_LIBRARY(sgl_kernel_ext, m) {
  m.def(
      "moe_align_block_size(Tensor topk_ids, int num_experts, int block_size, Tensor(a!) sorted_token_ids, "
      "Tensor(b!) expert_ids, Tensor(c!) num_tokens_post_pad, Tensor(d!) cumsum_buffer, "
      "bool pad_sorted_token_ids=False, bool ignore_invalid_expert=False) -> ()");
  m.def(
      "moe_align_for_fused_moe(Tensor topk_ids, int block_size, int num_experts, "
      "bool ignore_invalid_expert=False) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sgl_kernel_ext, CUDA, m) {
  m.impl("moe_align_block_size", &moe_align_block_size);
  m.impl("moe_align_for_fused_moe", &moe_align_for_fused_moe);
}
