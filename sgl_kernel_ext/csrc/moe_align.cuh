// One-launch, multi-block MoE align & sort (framework-free; CUDA and HIP).
//
// Contract: sgl_kernel.moe_align_block_size (0.4.5) as sglang calls it, with a
// stable order: inside each bucket the pair indices ascend. An id x goes to
// bucket x + 1 (EP's -1 -> bucket 0); an id outside [-1, num_buckets - 2] goes
// to bucket 0 too, so no input reads or writes out of bounds.
//
// Shape of the work (distributed count, cumsum, parallel placement):
//   1. Pair index space is cut into one contiguous chunk per warp of the grid,
//      ordered by (block, warp). Each warp counts its chunk into its own row of
//      a shared-memory histogram (match_any groups equal buckets; no atomics).
//   2. Rows are scanned over the warps of the block: each warp's offset inside
//      the block, and the block's total per bucket, published to global memory.
//   3. One grid barrier. Every block reads all blocks' totals: its own offset
//      (sum over lower blocks) and the grand totals; then the padded exclusive
//      cumsum over buckets, redundantly in each block (cheaper than a second
//      barrier).
//   4. expert_ids, padding slots and the tail are written grid-stride; each warp
//      re-reads its chunk (from L2) and places every pair at
//      start[bucket] + lower blocks + lower warps + lower lanes.
// A grid of one block skips the barrier: that is the small-input path.
#pragma once

#include "portability.cuh"

namespace ske {

template <typename IdT>
struct MoeAlignParams {
  const IdT* topk_ids;
  int32_t* sorted_token_ids;
  int32_t* expert_ids;
  int32_t* num_tokens_post_pad;
  int32_t* cumsum;      // num_buckets + 1 entries: end of each bucket's real pairs, then the total
  int32_t* block_hist;  // [gridDim.x][num_buckets]: block totals, then each block's offset from lower blocks
  int32_t* totals;      // [num_buckets]: totals over the grid (block_hist and totals unused with one block)
  int32_t numel;
  int32_t num_buckets;
  int32_t block_size;
  int32_t sorted_len;
  int32_t per_warp;  // pairs per warp chunk
  int32_t key_bits;  // bit width of num_buckets (a key of num_buckets means "no pair")
  bool pad_sorted_token_ids;
  bool ignore_invalid_expert;
};

// Shared memory: warp_hist[warps][N] | prefix[N] | count[N] | start[N + 1] | scan[32]
inline size_t moe_align_smem_bytes(int warps, int num_buckets) {
  return sizeof(int32_t) * (static_cast<size_t>(warps + 2) * num_buckets + num_buckets + 1 + 32);
}

template <typename IdT>
__device__ __forceinline__ int bucket_key(const MoeAlignParams<IdT>& p, int64_t i, int64_t end) {
  if (i >= end) return p.num_buckets;
  const int64_t b = static_cast<int64_t>(p.topk_ids[i]) + 1;
  const int key = (b >= 0 && b < p.num_buckets) ? static_cast<int>(b) : 0;
  return (key == 0 && p.ignore_invalid_expert) ? p.num_buckets : key;
}

// Pairs per lane loaded together: their loads are all in flight at once.
constexpr int kSteps = 16;
// Threads per block: short per-bucket chains over the warp rows, many blocks.
constexpr int kBlockThreads = 256;

// sorted_token_ids[:] = numel, grid-stride, 16-byte stores for the aligned body.
template <typename IdT>
__device__ __forceinline__ void fill_sorted(const MoeAlignParams<IdT>& p, int64_t gtid, int64_t gthreads) {
  int32_t* out = p.sorted_token_ids;
  const int64_t n = p.sorted_len;
  const int64_t head = min(n, static_cast<int64_t>(((16 - (reinterpret_cast<uintptr_t>(out) & 15)) & 15) / 4));
  const int64_t vecs = (n - head) / 4;
  for (int64_t i = gtid; i < head; i += gthreads) out[i] = p.numel;
  int4* body = reinterpret_cast<int4*>(out + head);
  const int4 v = make_int4(p.numel, p.numel, p.numel, p.numel);
  for (int64_t i = gtid; i < vecs; i += gthreads) body[i] = v;
  for (int64_t i = head + vecs * 4 + gtid; i < n; i += gthreads) out[i] = p.numel;
}

template <int kSteps, int kWarpSize, typename IdT>
__device__ __forceinline__ void load_keys(const MoeAlignParams<IdT>& p, int64_t r0, int64_t end, int lane,
                                          int (&keys)[kSteps]) {
#pragma unroll
  for (int s = 0; s < kSteps; ++s) keys[s] = bucket_key(p, r0 + s * kWarpSize + lane, end);
}

// Inclusive scan over groups of `width` lanes (a power of two <= kWarpSize).
template <int kWarpSize>
__device__ __forceinline__ int warp_inclusive_scan(int v, int lane_in_group, int width = kWarpSize) {
#pragma unroll
  for (int d = 1; d < kWarpSize; d <<= 1) {
    if (d >= width) break;
    const int n = shfl_up<kWarpSize>(v, d, width);
    if (lane_in_group >= d) v += n;
  }
  return v;
}

// count[e] <- start[e] (the bucket's pair count); start <- exclusive scan of the
// padded counts, start[n] = total. Returns the total.
template <int kWarpSize>
__device__ int padded_exclusive_scan(int32_t* start, int32_t* count, int n, int block_size, int32_t* scan) {
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  const int per_thread = (n + blockDim.x - 1) / blockDim.x;
  const int lo = min(n, tid * per_thread), hi = min(n, lo + per_thread);
  int sum = 0;
  for (int e = lo; e < hi; ++e) {
    const int c = start[e];
    count[e] = c;
    sum += (c + block_size - 1) / block_size * block_size;
  }
  const int incl = warp_inclusive_scan<kWarpSize>(sum, lane);
  if (lane == kWarpSize - 1) scan[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int v = lane < warps ? scan[lane] : 0;
    const int x = warp_inclusive_scan<kWarpSize>(v, lane);
    if (lane < warps) scan[lane] = x - v;
  }
  __syncthreads();
  int run = scan[warp] + incl - sum;
  for (int e = lo; e < hi; ++e) {
    start[e] = run;
    run += (count[e] + block_size - 1) / block_size * block_size;
  }
  if (tid == blockDim.x - 1) start[n] = run;
  __syncthreads();
  return start[n];
}

template <typename IdT, int kWarpSize>
__global__ void __launch_bounds__(kBlockThreads) moe_align_kernel(const MoeAlignParams<IdT> p) {
  using Mask = LaneMask<kWarpSize>;
  extern __shared__ int32_t smem[];
  const int N = p.num_buckets;
  const int tid = threadIdx.x, bdim = blockDim.x;
  const int lane = tid % kWarpSize, warp = tid / kWarpSize, warps = bdim / kWarpSize;
  int32_t* warp_hist = smem;
  int32_t* prefix = warp_hist + warps * N;
  int32_t* count = prefix + N;
  int32_t* start = count + N;
  int32_t* scan = start + N + 1;
  int32_t* my_hist = warp_hist + warp * N;
  const Mask lanes_below = (Mask(1) << lane) - 1;
  const int64_t gtid = static_cast<int64_t>(blockIdx.x) * bdim + tid;
  const int64_t gthreads = static_cast<int64_t>(gridDim.x) * bdim;

  if (p.pad_sorted_token_ids) fill_sorted(p, gtid, gthreads);
  for (int i = tid; i < warps * N; i += bdim) warp_hist[i] = 0;
  __syncthreads();

  const int64_t chunk = static_cast<int64_t>(blockIdx.x) * warps + warp;
  const int64_t begin = min(chunk * p.per_warp, static_cast<int64_t>(p.numel));
  const int64_t end = min(begin + p.per_warp, static_cast<int64_t>(p.numel));

  // 1. Count this warp's chunk, kSteps pairs per lane per round.
  const int64_t round_len = int64_t(kSteps) * kWarpSize;
  const bool keys_stay = end - begin <= round_len;  // one round: keep keys for step 4
  int keys[kSteps];
  for (int64_t r0 = begin; r0 < end; r0 += round_len) {
    load_keys<kSteps, kWarpSize>(p, r0, end, lane, keys);
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      if (keys[s] != N) atomicAdd(&my_hist[keys[s]], 1);  // counts need no order
    }
  }
  __syncthreads();

  // 2. Offsets of the warps inside the block; the block's totals.
  for (int e = tid; e < N; e += bdim) {
    int run = 0;
    for (int w = 0; w < warps; ++w) {
      const int c = warp_hist[w * N + e];
      warp_hist[w * N + e] = run;
      run += c;
    }
    start[e] = run;
    prefix[e] = 0;
    if (gridDim.x > 1) p.block_hist[static_cast<int64_t>(blockIdx.x) * N + e] = run;
  }

  // 3. Column scan over the blocks: a group of `lanes` lanes per bucket, so
  //    a small grid scans many buckets per warp at once.
  if (gridDim.x > 1) {
    __threadfence();
    grid_sync();
    const int nblocks = gridDim.x;
    int lanes = 1;
    while (lanes < nblocks && lanes < kWarpSize) lanes <<= 1;
    const int sub = lane % lanes, buckets_per_warp = kWarpSize / lanes;
    for (int e0 = (blockIdx.x * warps + warp) * buckets_per_warp; e0 < N; e0 += nblocks * warps * buckets_per_warp) {
      const int e = e0 + lane / lanes;
      int carry = 0;
      for (int b0 = 0; b0 < nblocks; b0 += lanes) {
        const int b = b0 + sub;
        const bool valid = b < nblocks && e < N;
        int32_t* cell = p.block_hist + static_cast<int64_t>(b) * N + e;
        const int c = valid ? load_from_other_block(cell) : 0;
        const int incl = warp_inclusive_scan<kWarpSize>(c, sub, lanes);
        if (valid) *cell = carry + incl - c;
        carry += shfl<kWarpSize>(incl, lanes - 1, lanes);
      }
      if (sub == 0 && e < N) p.totals[e] = carry;
    }
    __threadfence();
    grid_sync();
    for (int e = tid; e < N; e += bdim) {
      start[e] = load_from_other_block(p.totals + e);
      prefix[e] = load_from_other_block(p.block_hist + static_cast<int64_t>(blockIdx.x) * N + e);
    }
  }
  __syncthreads();
  const int total = padded_exclusive_scan<kWarpSize>(start, count, N, p.block_size, scan);

  if (blockIdx.x == 0) {
    // What upstream's atomics leave there: where each bucket's real pairs end.
    for (int e = tid; e < N; e += bdim) p.cumsum[e] = start[e] + count[e];
    if (tid == 0) p.cumsum[N] = total;
    if (tid == 0) *p.num_tokens_post_pad = total;
  }
  for (int e = tid; e < N; e += bdim) {
    const int base = start[e] + prefix[e];
    for (int w = 0; w < warps; ++w) warp_hist[w * N + e] += base;
  }

  // 4a. expert_ids, grid-stride.
  const int num_m_blocks = total / p.block_size;
  for (int64_t m = gtid; m < num_m_blocks; m += gthreads) {
    const int pos = static_cast<int>(m) * p.block_size;
    int lo = 0, hi = N;  // first bucket whose end is past pos
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (start[mid + 1] <= pos)
        lo = mid + 1;
      else
        hi = mid;
    }
    p.expert_ids[m] = lo - 1;
  }
  __syncthreads();

  // 4b. Stable placement.
  for (int64_t r0 = begin; r0 < end; r0 += round_len) {
    if (!keys_stay) load_keys<kSteps, kWarpSize>(p, r0, end, lane, keys);
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      if (r0 + s * kWarpSize >= end) break;
      const int key = keys[s];
      const Mask peers = match_bits<kWarpSize>(key, p.key_bits);
      const int slot = key != N ? my_hist[key] + popcount(peers & lanes_below) : 0;
      sync_warp();
      if (key != N) {
        p.sorted_token_ids[slot] = static_cast<int32_t>(r0 + s * kWarpSize + lane);
        if (lane == lowest_lane(peers)) my_hist[key] += popcount(peers);
      }
      sync_warp();
    }
  }
}

// ---------------------------------------------------------------------------
// Host side: choose the grid, then launch.

struct MoeAlignPlan {
  int grid;
  int block;
  size_t smem;
  int per_warp;
};

// Pairs per lane the plan aims for before adding blocks.
constexpr int kTargetPairsPerLane = 8;

inline int max_supported_buckets(const DeviceLimits& dev) {
  // One warp's row plus the per-bucket arrays must fit one block's shared memory.
  return static_cast<int>((dev.smem_per_block_optin / sizeof(int32_t) - 1 - 32) / 4);
}

// max_coresident(block, smem) -> blocks of that shape the device holds at once.
template <typename CoresidentFn>
MoeAlignPlan plan_moe_align(int numel, int num_buckets, const DeviceLimits& dev, int warp_size,
                            CoresidentFn max_coresident, int pairs_per_lane = kTargetPairsPerLane) {
  int warps = kBlockThreads / warp_size;
  while (warps > 1 && moe_align_smem_bytes(warps, num_buckets) > size_t(dev.smem_per_block_optin)) --warps;
  MoeAlignPlan plan;
  plan.block = warps * warp_size;
  plan.smem = moe_align_smem_bytes(warps, num_buckets);
  const int64_t per_block = int64_t(plan.block) * pairs_per_lane;
  int64_t grid = (int64_t(numel) + per_block - 1) / per_block;
  if (grid > 1 && dev.cooperative) {
    const int fits = max_coresident(plan.block, plan.smem);
    grid = grid < fits ? grid : fits;
  }
  if (grid < 1 || !dev.cooperative) grid = 1;
  plan.grid = static_cast<int>(grid);
  const int64_t warps_total = grid * warps;
  plan.per_warp = static_cast<int>((int64_t(numel) + warps_total - 1) / warps_total);
  if (plan.per_warp < 1) plan.per_warp = 1;
  return plan;
}

inline int bit_width(int x) {
  int bits = 0;
  while ((1 << bits) <= x) ++bits;
  return bits;
}

// Launch with a given plan; with plan.grid > 1, block_hist must hold
// plan.grid * num_buckets ints and totals num_buckets.
template <typename IdT, int kWarpSize>
gpuError_t launch_moe_align(MoeAlignParams<IdT> p, const MoeAlignPlan& plan, gpuStream_t stream) {
  p.per_warp = plan.per_warp;
  p.key_bits = bit_width(p.num_buckets);
  auto kernel = moe_align_kernel<IdT, kWarpSize>;
  void* args[] = {&p};
  if (plan.grid > 1) return launch_cooperative(kernel, plan.grid, plan.block, args, plan.smem, stream);
  return launch_plain(kernel, 1, plan.block, args, plan.smem, stream);
}

}  // namespace ske
