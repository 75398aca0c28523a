// One-launch, multi-block MoE align & sort (framework-free; CUDA and HIP).
//
// Contract: sgl_kernel.moe_align_block_size (0.4.5) as sglang calls it, with a
// stable order: inside each bucket the pair indices ascend. An id x goes to
// bucket x + 1 (EP's -1 -> bucket 0); an id outside [-1, num_buckets - 2] goes
// to bucket 0 too, so no input reads or writes out of bounds.
//
// Five shapes of the same work, one launch each, chosen by the host plan:
//   - tiny (moe_align_tiny_kernel; up to blockDim.x pairs): each thread holds
//     one pair and ranks it against all pairs in shared memory. No histogram
//     over all buckets: for small inputs the cost is the chain of dependent
//     steps, not the work. Each block writes a share of the padded output.
//   - staged (moe_align_staged_kernel; a few thousand pairs, a few blocks that
//     each sort all pairs in shared memory and write a share of the output in
//     order); described at the kernel.
//   - ranged (moe_align_ranged_kernel; a few thousand pairs over many buckets):
//     as staged, but each of many blocks sorts only the pairs of its share of
//     the output slots; described at the kernel.
//   - one block: moe_align_kernel without the exchange (steps 1, 3, 4 below),
//     where the staged path does not fit and there is no cooperative launch.
//   - exchange (moe_align_kernel, cooperative launch, one grid barrier; or one
//     thread-block cluster):
//     1. The pair index space is cut into one slice per block and one chunk
//        per warp. Each warp counts its chunk into its own row of a
//        shared-memory histogram; the rows are scanned over the warps (stable:
//        lower warps first) and each block publishes its pairs per bucket.
//     2. One grid barrier; each block sums, per bucket, the counts of the
//        blocks below it and of all blocks (16-bit counts, two per load, where
//        32-bit ones would take several rounds of loads: kPackedCounts). With
//        kCluster (sm_90 and later) in two levels: before the barrier over the
//        blocks of its thread-block cluster, reading their shared memory, and
//        after it over one row per cluster. A grid of one cluster (mid-sized
//        inputs) is a plain launch: the cluster barrier is its only one.
//     3. Every block computes the padded exclusive cumsum over buckets itself.
//     4. expert_ids grid-stride; each warp re-reads its chunk (registers or L2)
//        and places every pair at start[bucket] + lower blocks + lower warps +
//        lower lanes; with kStage (large slices over many buckets) through a
//        sorted copy of the slice in shared memory, so that stores are adjacent.
//   Code size is time here: each launch runs most instructions once, every
//   multiprocessor fetching them cold, so loops that run a few times per thread
//   stay rolled (#pragma unroll 1) and index math is 32-bit where it fits.
//   With pad_sorted_token_ids a single block fills the whole sorted buffer with
//   numel first (its barriers order that before the placement); an exchange
//   fills only the slots no pair lands in, since nothing orders another block's
//   placement after its fill.
#pragma once

#include <algorithm>
#include <array>
#include <type_traits>

#include "portability.cuh"

namespace ske {

// n / block_size for 0 <= n < 2^31, without a divide and without a branch on the block size
// (a branch made the compiler keep two copies of every loop that divides). Granlund-Montgomery:
// with l = ceil(log2 d) and mul = floor(2^32 (2^l - d) / d) + 1, n / d = (umulhi(n, mul) + n) >> l,
// and the sum stays below 2^32 for n < 2^31 (block_divisor).
struct BlockDivisor {
  uint32_t mul;
  int32_t shift;
};

template <typename IdT>
struct MoeAlignParams {
  const IdT* topk_ids;
  int32_t* sorted_token_ids;
  int32_t* expert_ids;
  int32_t* num_tokens_post_pad;
  int32_t* cumsum;        // num_buckets + 1 entries: end of each bucket's real pairs, then the total
  int32_t* block_counts;  // exchange only: [gridDim.x][num_buckets], each block's pairs per bucket
  int32_t numel;
  int32_t num_buckets;
  int32_t block_size;
  BlockDivisor block_div;  // of block_size (div_block)
  int32_t sorted_len;
  int32_t per_warp;  // pairs per warp chunk; a block's slice is per_warp * warps pairs
  int32_t stage_pairs;  // moe_align_kernel<kStage>: room for a slice's pairs in shared memory (else 0)
  int32_t block_slots;  // slots of sorted_token_ids per block (tiny) or room for them (ranged), a multiple of 4
  int32_t key_bits;  // bit width of num_buckets (a key of num_buckets means "no pair")
  bool pad_sorted_token_ids;
  bool ignore_invalid_expert;
};

// Shared memory for block_exclusive_scan2.
constexpr int kScanInts = 2 * 32 + 2;

// Shared memory: rows[warps][N] | before[N] | count[N] | start[N + 1] | scan[kScanInts], and with
// stage_pairs (kStage) local[N] before scan and staged[stage_pairs] | peers[warps][N] (lane masks,
// 8-byte aligned) after it.
__host__ __device__ inline size_t moe_align_ints_before_peers(int warps, int num_buckets, int64_t stage_pairs) {
  const size_t per_bucket = warps + 3 + (stage_pairs > 0 ? 1 : 0);
  const size_t ints = per_bucket * num_buckets + 1 + kScanInts + stage_pairs;
  return ints + (ints & 1);
}
inline size_t moe_align_smem_bytes(int warps, int num_buckets, int warp_size, int64_t stage_pairs = 0) {
  const size_t peers = stage_pairs > 0 ? static_cast<size_t>(warps) * num_buckets * (warp_size / 32) : 0;
  return sizeof(int32_t) * (moe_align_ints_before_peers(warps, num_buckets, stage_pairs) + peers);
}

// The bucket of pair i, or num_buckets past end. An id in [0, num_buckets - 2] is an
// expert (bucket id + 1); any other id (EP's -1 included) takes invalid_key: 0, or
// num_buckets with ignore_invalid_expert. Unsigned 32-bit index math (numel < 2^31,
// checked on the host): the 64-bit math and the two versions of every load that
// the compiler made for the flag were most of the count phase's code.
template <typename IdT>
__device__ __forceinline__ int bucket_key(const MoeAlignParams<IdT>& p, uint32_t i, uint32_t end, int invalid_key) {
  if (i >= end) return p.num_buckets;
  using Unsigned = std::conditional_t<sizeof(IdT) == 8, uint64_t, uint32_t>;
  const IdT id = p.topk_ids[i];
  return static_cast<Unsigned>(id) < static_cast<Unsigned>(p.num_buckets - 1) ? static_cast<int>(id) + 1 : invalid_key;
}

template <typename IdT>
__device__ __forceinline__ int invalid_bucket_key(const MoeAlignParams<IdT>& p) {
  return p.ignore_invalid_expert ? p.num_buckets : 0;
}

// Pairs per lane loaded together: their loads are all in flight at once.
constexpr int kSteps = 16;
// The same for the cluster exchange that places directly. Its plans (below
// cluster_stage_min_pairs) give a lane at most 4 pairs in 512-thread blocks on an H200, and up to 8,
// two rounds, in 256-thread ones (65-256 buckets from ~131K pairs); every warp issues every
// predicated load, so a round of 16 cost each block ~1,000 cycles for nothing. With 4, 1K-16K
// tokens 0.93-0.97, two-round shapes too (bench/NOTES.md, thirteenth session).
constexpr int kClusterDirectSteps = 4;
// Threads per block: 256 (short per-bucket chains over the warp rows), or 512 for
// large exchanges over many buckets (fewer blocks to sum, one bucket per thread).
constexpr int kBlockThreads = 256;
constexpr int kMaxBlockThreads = 512;

inline BlockDivisor block_divisor(int d) {
  int l = 0;
  while ((int64_t(1) << l) < d) ++l;
  const uint64_t mul = (uint64_t(1) << 32) * ((uint64_t(1) << l) - uint64_t(d)) / uint64_t(d) + 1;
  return {static_cast<uint32_t>(mul), l};
}

template <typename IdT>
__device__ __forceinline__ int div_block(const MoeAlignParams<IdT>& p, int n) {
  const uint32_t u = static_cast<uint32_t>(n);
  return static_cast<int>((__umulhi(u, p.block_div.mul) + u) >> p.block_div.shift);
}

template <typename IdT>
__device__ __forceinline__ int round_up_to_block(const MoeAlignParams<IdT>& p, int c) {
  return div_block(p, c + p.block_size - 1) * p.block_size;
}

// The bucket that owns slot: the last of [lo, hi] whose padded start is at or before it.
// Empty buckets share their start with the next one, so the last such is the non-empty owner.
__device__ __forceinline__ int bucket_of_slot(const int32_t* start, int lo, int hi, int slot) {
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (start[mid] <= slot)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// words[0, n) = 0 in shared memory by the block, 16-byte stores for the aligned body. In the
// exchange kernel: 16K tokens count phase 1,530 -> 1,320 cycles, exchanges 0.976; in the staged
// and ranged kernels 1.01-1.02 slower (bench/NOTES.md, fifteenth session). fill_range below does
// the same over a grid, but with its 64-bit indices and head/tail loops in this place the
// exchanges ran 1.035 slower than with this 32-bit, loop-free form.
template <typename T>
__device__ __forceinline__ void zero_shared(T* words, int n, int tid, int bdim) {
  int32_t* w = reinterpret_cast<int32_t*>(words);
  n = n * static_cast<int>(sizeof(T) / sizeof(int32_t));
  const int head = min(n, static_cast<int>(((16 - (reinterpret_cast<uintptr_t>(w) & 15)) & 15) / 4));
  const int vecs = (n - head) / 4;
  if (tid < head) w[tid] = 0;
  int4* body = reinterpret_cast<int4*>(w + head);
#pragma unroll 1
  for (int i = tid; i < vecs; i += bdim) body[i] = make_int4(0, 0, 0, 0);
  const int tail = head + vecs * 4;
  if (tail + tid < n) w[tail + tid] = 0;
}

// out[lo, hi) = value, grid-stride, 16-byte stores for the aligned body.
__device__ __forceinline__ void fill_range(int32_t* out, int64_t lo, int64_t hi, int32_t value, int64_t gtid,
                                           int64_t gthreads) {
  if (lo >= hi) return;
  const int64_t to_aligned = ((16 - (reinterpret_cast<uintptr_t>(out + lo) & 15)) & 15) / 4;
  const int64_t head_end = min(hi, lo + to_aligned);
  const int64_t vecs = (hi - head_end) / 4;
#pragma unroll 1
  for (int64_t i = lo + gtid; i < head_end; i += gthreads) out[i] = value;
  int4* body = reinterpret_cast<int4*>(out + head_end);
  const int4 v = make_int4(value, value, value, value);
#pragma unroll 1
  for (int64_t i = gtid; i < vecs; i += gthreads) body[i] = v;
#pragma unroll 1
  for (int64_t i = head_end + vecs * 4 + gtid; i < hi; i += gthreads) out[i] = value;
}

template <int kSteps, int kWarpSize, typename IdT>
__device__ __forceinline__ void load_keys(const MoeAlignParams<IdT>& p, uint32_t r0, uint32_t end, int lane,
                                          int (&keys)[kSteps]) {
  const int invalid_key = invalid_bucket_key(p);
#pragma unroll
  for (int s = 0; s < kSteps; ++s) keys[s] = bucket_key(p, r0 + s * kWarpSize + lane, end, invalid_key);
}

template <int kWarpSize>
__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
#pragma unroll
  for (int d = 1; d < kWarpSize; d <<= 1) {
    const int n = shfl_up<kWarpSize>(v, d);
    if (lane >= d) v += n;
  }
  return v;
}

// Exclusive scan of (a, b) over the block's threads, in place; returns the totals.
template <int kWarpSize>
__device__ int2 block_exclusive_scan2(int& a, int& b, int32_t* scan) {
  const int tid = threadIdx.x, lane = tid % kWarpSize, warp = tid / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  const int ia = warp_inclusive_scan<kWarpSize>(a, lane), ib = warp_inclusive_scan<kWarpSize>(b, lane);
  if (lane == kWarpSize - 1) {
    scan[warp] = ia;
    scan[32 + warp] = ib;
  }
  __syncthreads();
  if (warp == 0) {
    const int va = lane < warps ? scan[lane] : 0, vb = lane < warps ? scan[32 + lane] : 0;
    const int xa = warp_inclusive_scan<kWarpSize>(va, lane), xb = warp_inclusive_scan<kWarpSize>(vb, lane);
    if (lane < warps) {
      scan[lane] = xa - va;
      scan[32 + lane] = xb - vb;
    }
    if (lane == warps - 1) {
      scan[64] = xa;
      scan[65] = xb;
    }
  }
  __syncthreads();
  a = scan[warp] + ia - a;
  b = scan[32 + warp] + ib - b;
  return make_int2(scan[64], scan[65]);
}

// This thread's run [x, y) of n buckets when each of the block's threads owns an equal run.
// Threads: int or blockDim.x's unsigned, whose division each caller was tuned with.
template <typename Threads>
__device__ __forceinline__ int2 thread_bucket_run(int n, Threads threads) {
  const int per_thread = (n + threads - 1) / threads;
  const int lo = min(n, static_cast<int>(threadIdx.x) * per_thread);
  return make_int2(lo, min(n, lo + per_thread));
}

// start <- exclusive scan of the padded counts, start[n] = total; with kLocal,
// local <- its exclusive scan, in place. Returns both totals.
template <int kWarpSize, bool kLocal, typename IdT>
__device__ int2 padded_exclusive_scan(const MoeAlignParams<IdT>& p, const int32_t* count, int32_t* start,
                                      int32_t* local, int n, int32_t* scan) {
  const int tid = threadIdx.x;
  const int2 owned = thread_bucket_run(n, blockDim.x);
  const int lo = owned.x, hi = owned.y;
  int run = 0, local_run = 0;
#pragma unroll 1
  for (int e = lo; e < hi; ++e) {
    run += round_up_to_block(p, count[e]);
    if constexpr (kLocal) local_run += local[e];
  }
  const int2 totals = block_exclusive_scan2<kWarpSize>(run, local_run, scan);
#pragma unroll 1
  for (int e = lo; e < hi; ++e) {
    start[e] = run;
    run += round_up_to_block(p, count[e]);
    if constexpr (kLocal) {
      const int c = local[e];
      local[e] = local_run;
      local_run += c;
    }
  }
  if (tid == 0) start[n] = totals.x;
  __syncthreads();
  return totals;
}

// Lanes that share a column of G blocks' counts in sum_block_counts.
__host__ __device__ inline int sum_lanes(int cols, int G, int T, int warp_size) {
  int lanes = 1;
  while (lanes < warp_size && lanes < G && 2 * lanes * cols <= T) lanes <<= 1;
  return lanes;
}

// Loads in flight per thread in sum_block_counts: as many as the grid has blocks
// (up to 64) on NVIDIA; 8 on 64-wide AMD waves, where more spill registers
// (compile report).
__host__ __device__ constexpr int sum_batch(int warp_size, int threads) {
  return warp_size == 32 ? (threads > kBlockThreads ? 64 : 32) : 8;
}

// Dependent rounds of loads per thread in sum_block_counts.
inline int sum_passes(int cols, int G, int T, int warp_size) {
  const int lanes = sum_lanes(cols, G, T, warp_size), batch = sum_batch(warp_size, T);
  return (cols * lanes + T - 1) / T * ((G + batch * lanes - 1) / (batch * lanes));
}

// Dependent rounds of loads per thread in sum_block_counts with the count width a plan
// picks: 16-bit counts (two per load) where 32-bit ones take more than one round and
// packing is allowed (plan_for).
inline int exchange_sum_passes(int num_buckets, int G, int T, int warp_size, bool packable) {
  const int passes = sum_passes(num_buckets, G, T, warp_size);
  return packable && passes > 1 ? sum_passes((num_buckets + 1) / 2, G, T, warp_size) : passes;
}

// Exchange: before[e] = pairs of the blocks below this one, count[e] = all pairs.
// Each block published its counts as a row of `cols` ints: with kPacked two
// 16-bit counts per int (buckets 2j, 2j + 1), else one. `lanes` lanes share a
// column (each sums every lanes-th block) so that few buckets still keep the
// threads busy; kBatch loads are in flight per thread.
template <int kWarpSize, int kBatch, bool kPacked>
__device__ void sum_block_counts(const int32_t* block_counts, int N, int32_t* before, int32_t* count) {
  constexpr int kPer = kPacked ? 2 : 1;
  const int cols = (N + kPer - 1) / kPer;
  const int G = gridDim.x, me = blockIdx.x;
  const int tid = threadIdx.x, T = blockDim.x;
  const int lanes = sum_lanes(cols, G, T, kWarpSize);
  const int sub = tid % lanes;
  // Every thread runs the same number of rounds, so the shuffles see whole groups.
  const int rounds = (cols * lanes + T - 1) / T;
  for (int r = 0; r < rounds; ++r) {
    const int col = (r * T + tid) / lanes;
    int below[kPer] = {}, all[kPer] = {};
    if (col < cols) {
      // Plain loads: the grid barrier makes the other blocks' stores visible.
      const int32_t* column = block_counts + col;
      for (int b0 = sub; b0 < G; b0 += kBatch * lanes) {
        uint32_t c[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int b = b0 + u * lanes;
          c[u] = b < G ? static_cast<uint32_t>(column[b * cols]) : 0u;
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
#pragma unroll
          for (int k = 0; k < kPer; ++k) {
            const int v = kPacked ? static_cast<int>((c[u] >> (16 * k)) & 0xffffu) : static_cast<int>(c[u]);
            all[k] += v;
            if (b0 + u * lanes < me) below[k] += v;
          }
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      for (int d = 1; d < lanes; d <<= 1) {
        below[k] += shfl_xor<kWarpSize>(below[k], d, lanes);
        all[k] += shfl_xor<kWarpSize>(all[k], d, lanes);
      }
      const int e = col * kPer + k;
      if (col < cols && e < N && sub == 0) {
        before[e] = below[k];
        count[e] = all[k];
      }
    }
  }
}

// Exchange in clusters, first level (before the grid barrier): each block's counts
// are in its own shared memory (mine); before[e] and count[e] become the pairs of
// the cluster's lower blocks and of the whole cluster, and the cluster's first block
// publishes the cluster's counts as its row (cluster_index()) of cluster_counts (none:
// a grid of one cluster). The cluster's shape comes from the launch (special registers),
// not from a parameter.
constexpr int kMaxClusterBlocks = 8;

__device__ inline void sum_cluster_counts(int32_t* mine, int N, int32_t* before, int32_t* count,
                                          int32_t* cluster_counts) {
  const int rank = cluster_rank(), cluster = cluster_blocks();
  int32_t* row = rank == 0 && cluster_counts ? cluster_counts + cluster_index() * N : nullptr;
#pragma unroll 1
  for (int e = threadIdx.x; e < N; e += blockDim.x) {
    int v[kMaxClusterBlocks];  // loads from every block of the cluster in flight at once
#pragma unroll
    for (int r = 0; r < kMaxClusterBlocks; ++r) v[r] = r < cluster ? cluster_peer(mine, r)[e] : 0;
    int below = 0, all = 0;
#pragma unroll
    for (int r = 0; r < kMaxClusterBlocks; ++r) {
      all += v[r];
      if (r < rank) below += v[r];
    }
    before[e] = below;
    count[e] = all;
    if (row) row[e] = all;
  }
}

// Second level (after the grid barrier): adds the lower clusters' pairs to before[e]
// and makes count[e] the pairs of all clusters.
template <int kBatch>
__device__ void add_cluster_rows(const int32_t* cluster_counts, int N, int32_t* before, int32_t* count) {
  const int clusters = cluster_count(), mine = cluster_index();
#pragma unroll 1
  for (int e = threadIdx.x; e < N; e += blockDim.x) {
    int below = before[e], all = 0;
    for (int c0 = 0; c0 < clusters; c0 += kBatch) {
      int v[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) v[u] = c0 + u < clusters ? cluster_counts[(c0 + u) * N + e] : 0;
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        all += v[u];
        if (c0 + u < mine) below += v[u];
      }
    }
    before[e] = below;
    count[e] = all;
  }
}

// Tiny inputs (numel <= blockDim.x): thread i holds pair i. Its rank in its
// bucket and its bucket's size come from one pass over all keys; where its
// bucket starts, from a second pass over the padded sizes that each bucket's
// first pair publishes. The buckets present, in key order, then give every
// bucket's cumsum entry by binary search. The passes read 4 keys per shared
// load, 8 per iteration, so that loads overlap. Every block of the grid does
// this (it is cheap) and writes one share of the outputs: of sorted_token_ids
// (up to buckets * block_size slots for a handful of pairs) and of the cumsum
// entries, one per thread (a second round of binary searches cost more than a
// second block).
struct TinyBucket {
  int key, start, real_end;
};

// Shared memory: keys[T] | padded[T] | present[T] | totals[2]
inline size_t moe_align_tiny_smem_bytes(int threads) {
  return (2 * sizeof(int32_t) + sizeof(TinyBucket)) * threads + 2 * sizeof(int32_t);
}

template <typename IdT>
__global__ void __launch_bounds__(kBlockThreads) moe_align_tiny_kernel(const MoeAlignParams<IdT> p) {
  extern __shared__ int32_t smem[];
  const int N = p.num_buckets, n = p.numel, tid = threadIdx.x, T = blockDim.x;
  int32_t* keys = smem;        // [T]: each thread's bucket, N for no pair
  int32_t* padded = keys + T;  // [T]: the padded size of the bucket of its first pair, else 0
  TinyBucket* present = reinterpret_cast<TinyBucket*>(padded + T);
  const int n8 = (n + 7) / 8 * 8;  // <= T: entries past n hold key N and size 0
  const int own_lo = min(p.sorted_len, static_cast<int>(blockIdx.x) * p.block_slots);  // this block's slots
  const int own_hi = min(p.sorted_len, own_lo + p.block_slots);
  // In flight during the fill (measured 2.5% faster than after it).
  const int key = bucket_key(p, tid, n, invalid_bucket_key(p));
  if (p.pad_sorted_token_ids) fill_range(p.sorted_token_ids, own_lo, own_hi, p.numel, tid, T);
  keys[tid] = key;
  __syncthreads();
  int rank = 0, size = 0;
  for (int j0 = 0; tid < n && j0 < n8; j0 += 8) {
    const int4 a = *reinterpret_cast<const int4*>(keys + j0);
    const int4 b = *reinterpret_cast<const int4*>(keys + j0 + 4);
    const int k[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const bool same = k[u] == key;
      size += same;
      rank += same && j0 + u < tid;
    }
  }
  const bool first = key != N && rank == 0;
  const int my_padded = first ? round_up_to_block(p, size) : 0;
  padded[tid] = my_padded;
  __syncthreads();

  // Threads without a pair skip the passes; thread 0 publishes the totals for them.
  int total = 0, buckets = 0, start = 0, buckets_below = 0;
  for (int j0 = 0; (tid < n || tid == 0) && j0 < n8; j0 += 4) {
    const int4 a = *reinterpret_cast<const int4*>(keys + j0);
    const int4 c = *reinterpret_cast<const int4*>(padded + j0);
    const int k[4] = {a.x, a.y, a.z, a.w}, ps[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      total += ps[u];
      buckets += ps[u] > 0;
      if (k[u] < key) {
        start += ps[u];
        buckets_below += ps[u] > 0;
      }
    }
  }
  if (first) present[buckets_below] = {key, start, start + size};
  int32_t* totals = reinterpret_cast<int32_t*>(present + T);
  if (tid == 0) {
    totals[0] = total;
    totals[1] = buckets;
  }
  if (key != N && start + rank >= own_lo && start + rank < own_hi) p.sorted_token_ids[start + rank] = tid;
  if (first) {
    const int m_end = div_block(p, start + my_padded);
    for (int m = div_block(p, start) + blockIdx.x; m < m_end; m += gridDim.x) p.expert_ids[m] = key - 1;
  }
  __syncthreads();
  total = totals[0];
  buckets = totals[1];

  for (int e = blockIdx.x * T + tid; e < N; e += gridDim.x * T) {
    int lo = 0, hi = buckets;  // first present bucket >= e
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (present[mid].key < e)
        lo = mid + 1;
      else
        hi = mid;
    }
    p.cumsum[e] = lo == buckets ? total : present[lo].key == e ? present[lo].real_end : present[lo].start;
  }
  if (blockIdx.x == 0 && tid == 0) {
    p.cumsum[N] = total;
    *p.num_tokens_post_pad = total;
  }
}

#if defined(SKE_PHASE_CLOCKS)
// Lab builds only: clock64() of thread 0 at each phase boundary, per block, and the GPU's
// global timer (ns, comparable across multiprocessors) at the same points; and the
// multiprocessor each block ran on (whether the blocks of a grid share multiprocessors).
__device__ long long ske_phase_clocks[4096 * 16];
__device__ unsigned long long ske_phase_ns[4096 * 16];
__device__ int ske_phase_smid[4096];
__device__ __forceinline__ unsigned long long ske_global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ int ske_smid() {
  int id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
}
#define SKE_PHASE(k)                                                  \
  if (threadIdx.x == 0 && blockIdx.x < 4096) {                        \
    ske_phase_clocks[blockIdx.x * 16 + (k)] = clock64();              \
    ske_phase_ns[blockIdx.x * 16 + (k)] = ske_global_ns();            \
    if ((k) == 0) ske_phase_smid[blockIdx.x] = ske_smid();            \
  }
#else
#define SKE_PHASE(k)
#endif

// The lanes of a warp whose key equals this lane's (none where !has), through
// peers_of[key]: each lane ORs its bit into its key's lane mask in shared memory
// and reads it back after a warp sync. The masks must be zero on entry; the
// caller's lowest lane of each key clears its mask after a second warp sync.
// One shared atomic where a ballot per key bit took 9-10 ballots and their chain
// (measured, bench/NOTES.md sixth session).
template <int kWarpSize>
__device__ __forceinline__ LaneMask<kWarpSize> peers_by_mask(LaneMask<kWarpSize>* peers_of, int key, bool has,
                                                             LaneMask<kWarpSize> me) {
  if (has) atomic_or(&peers_of[key], me);
  sync_warp();
  return has ? peers_of[key] : LaneMask<kWarpSize>(0);
}

// A bucket and a value in one int, read back as k & kKeyMask and uint32(k) >> kKeyBits:
// rank_in_warp's ranks, and moe_align_kernel<kStage>'s staged pairs (the pair's index in the
// block's slice, so that placing it is one shared store and the bucket's slot offset is read
// once, when it is written out).
constexpr int kKeyBits = 15;
constexpr int kKeyMask = (1 << kKeyBits) - 1;
__device__ __forceinline__ int32_t pack_key(int key, uint32_t value) {
  return key | static_cast<int32_t>(value << kKeyBits);
}
// Whether pack_key holds every pair index of a kStage slice over num_buckets buckets.
__host__ __device__ constexpr bool slice_packs(int64_t slice, int num_buckets) {
  return slice < (int64_t(1) << (32 - kKeyBits)) && num_buckets <= kKeyMask + 1;
}

// Ranks a warp's pairs in place: keys[s * kWarpSize + lane] (shared memory, s <
// steps) holds a bucket (none_key: no pair) and becomes pack_key(bucket, rank),
// the rank counting the warp's earlier pairs of that bucket (stable). row[] counts
// the warp's pairs per bucket; peers_of[] is the warp's row of lane masks (peers_by_mask).

// kLane0Ballot: the lanes that share lane 0's key find each other by a ballot instead, for
// queues that one hot bucket fills (skewed routing), whose atomics on one address would run
// one after another (ranged kernel, skewed routing: rank phase 1,900-2,100 -> 1,250-1,650
// cycles; the staged kernel on uniform routing 4-5% slower with it, twelfth session).
template <int kWarpSize, bool kLane0Ballot = false>
__device__ void rank_in_warp(int32_t* keys, int steps, int none_key, int32_t* row, LaneMask<kWarpSize>* peers_of) {
  using Mask = LaneMask<kWarpSize>;
  const int lane = threadIdx.x % kWarpSize;
  const Mask me = Mask(1) << lane;
#pragma unroll 1
  for (int s = 0; s < steps; ++s) {
    int32_t& k = keys[s * kWarpSize + lane];
    const int key = k;
    const bool has = key != none_key;
    Mask peers;
    if constexpr (kLane0Ballot) {
      const int lane0_key = shfl<kWarpSize>(key, 0);  // every lane: not behind the && below
      const bool as_lane0 = has && key == lane0_key;
      const Mask lane0_peers = ballot<kWarpSize>(as_lane0);
      const Mask others = peers_by_mask<kWarpSize>(peers_of, key, has && !as_lane0, me);  // every lane: a warp sync
      peers = as_lane0 ? lane0_peers : others;
    } else {
      peers = peers_by_mask<kWarpSize>(peers_of, key, has, me);
    }
    const int before = has ? row[key] : 0, below = popcount(peers & (me - 1));
    sync_warp();
    if (has && below == 0) {
      row[key] = before + popcount(peers);
      peers_of[key] = 0;
    }
    sync_warp();
    k = pack_key(key, before + below);
  }
}

// col[w * stride] for w < warps (one bucket's counts in the warp rows) <- run plus the
// counts of the rows above; returns run plus all of them.
__device__ __forceinline__ int scan_warp_rows(int32_t* col, int stride, int warps, int run) {
  int w = 0;
#pragma unroll 1
  for (; w + 4 <= warps; w += 4) {  // four loads in flight
    const int c0 = col[w * stride], c1 = col[(w + 1) * stride], c2 = col[(w + 2) * stride], c3 = col[(w + 3) * stride];
    col[w * stride] = run;
    col[(w + 1) * stride] = run + c0;
    col[(w + 2) * stride] = run + c0 + c1;
    col[(w + 3) * stride] = run + c0 + c1 + c2;
    run += c0 + c1 + c2 + c3;
  }
#pragma unroll 1
  for (; w < warps; ++w) {
    const int c = col[w * stride];
    col[w * stride] = run;
    run += c;
  }
  return run;
}

// Small inputs (each block loads every pair, kSteps per lane: numel <= blockDim.x * kSteps),
// sorted in shared memory, then every output written front to back: whole lines
// (each group of 4 slots one 16-byte store), padding included, instead of a fill
// pass plus a scattered 4-byte store per pair. Every block of the grid sorts all
// pairs (no block waits for another) and writes its share of sorted_token_ids,
// so that the padded buffer (up to numel + buckets * (block_size - 1) slots) is
// not written by one SM alone.
//   1. Each warp ranks its chunk's pairs (rank_in_warp) and counts them.
//   2. Per bucket: the pairs of the lower warps, the bucket's size, and its
//      padded size; scanned over buckets (compact starts and padded starts).
//      Each bucket's owner thread writes its cumsum, expert_ids and, for each of
//      its blocks of block_size slots, where the block's pairs are staged.
//   3. staged[compact start + lower warps + rank] = pair index.
//   4. sorted_token_ids[s], s ascending: the staged pair, or numel as padding.

// Shared memory: rows[warps][N] | cstart[N] | scan | m_info[numel] (int2) | staged[numel] | keys[warps][per_warp]
// (per_warp a multiple of the warp size: rank_in_warp reads whole steps). While the warps rank,
// before m_info and staged are in use, their room holds peers[warps][N] (lane masks).
__host__ __device__ inline size_t staged_middle_ints(int warps, int num_buckets, int numel, int warp_size) {
  const size_t sorted = 3 * static_cast<size_t>(numel), masks = static_cast<size_t>(warps) * num_buckets * (warp_size / 32);
  return sorted > masks ? sorted : masks;
}
inline size_t moe_align_staged_smem_bytes(int warps, int num_buckets, int numel, int per_warp, int warp_size) {
  return sizeof(int32_t) * (static_cast<size_t>(warps + 1) * num_buckets + kScanInts + 1 +
                            staged_middle_ints(warps, num_buckets, numel, warp_size) +
                            static_cast<size_t>(warps) * per_warp);
}

template <typename IdT, int kWarpSize>
__global__ void __launch_bounds__(kMaxBlockThreads) moe_align_staged_kernel(const MoeAlignParams<IdT> p) {
  extern __shared__ int32_t smem[];
  const int N = p.num_buckets, numel = p.numel, T = blockDim.x, tid = threadIdx.x;
  const int lane = tid % kWarpSize, warp = tid / kWarpSize, warps = T / kWarpSize;
  int32_t* rows = smem;                // [warps][N]: a warp's pairs per bucket, then the pairs of the lower warps
  int32_t* cstart = rows + warps * N;  // [N]: where each bucket's pairs start in staged[]
  int32_t* scan = cstart + N;
  // Per block of block_size slots (<= numel of them): staged index - slot, and where its bucket's pairs end.
  const int ints_before_m_info = (warps + 1) * N + kScanInts;
  int2* m_info = reinterpret_cast<int2*>(smem + ints_before_m_info + (ints_before_m_info & 1));  // 8-byte aligned
  int32_t* staged = reinterpret_cast<int32_t*>(m_info + numel);  // [numel]: pair indices in output order
  using Mask = LaneMask<kWarpSize>;
  Mask* peers = reinterpret_cast<Mask*>(m_info);  // [warps][N], during the ranking only
  int32_t* my_keys = reinterpret_cast<int32_t*>(m_info) + staged_middle_ints(warps, N, numel, kWarpSize) +
                     warp * p.per_warp;  // this warp's buckets, then bucket | rank
  int32_t* my_row = rows + warp * N;

  SKE_PHASE(0);
#pragma unroll 1
  for (int i = tid; i < warps * N; i += T) {
    rows[i] = 0;
    peers[i] = 0;
  }
  const int begin = min(warp * p.per_warp, numel), end = min(begin + p.per_warp, numel);
  const int steps = (end - begin + kWarpSize - 1) / kWarpSize;
  {
    int keys[kSteps];
    load_keys<kSteps, kWarpSize>(p, begin, end, lane, keys);
#pragma unroll
    for (int s = 0; s < kSteps; ++s)
      if (s < steps) my_keys[s * kWarpSize + lane] = keys[s];
  }
  __syncthreads();
  SKE_PHASE(1);

  // 1. Rank and count.
  rank_in_warp<kWarpSize>(my_keys, steps, N, my_row, peers + warp * N);
  __syncthreads();
  SKE_PHASE(2);

  // 2. Each thread owns a run of buckets; cstart holds their sizes until the scan.
  // The owner then writes its buckets' cumsum, expert_ids and m_info.
  const int2 owned = thread_bucket_run(N, T);
  const int lo = owned.x, hi = owned.y;
  int pairs = 0, padded = 0;
#pragma unroll 1
  for (int e = lo; e < hi; ++e) {
    const int run = scan_warp_rows(rows + e, N, warps, 0);
    cstart[e] = run;
    pairs += run;
    padded += round_up_to_block(p, run);
  }
  const int2 totals = block_exclusive_scan2<kWarpSize>(pairs, padded, scan);
  const int total = totals.y;
#pragma unroll 1
  for (int e = lo; e < hi; ++e) {
    const int c = cstart[e], size = round_up_to_block(p, c);
    cstart[e] = pairs;
    if (blockIdx.x == 0) p.cumsum[e] = padded + c;
    const int2 info = make_int2(pairs - padded, padded + c);
    const int m_end = div_block(p, padded + size);
    // Unrolled: a hot bucket's owner writes one entry per block of slots (skewed routing,
    // block 16: up to ~150), and a rolled loop took ~35 cycles an entry.
#pragma unroll 4
    for (int m = div_block(p, padded); m < m_end; ++m) {
      m_info[m] = info;
      if (blockIdx.x == 0) p.expert_ids[m] = e - 1;
    }
    pairs += c;
    padded += size;
  }
  if (blockIdx.x == 0 && tid == 0) {
    p.cumsum[N] = total;
    *p.num_tokens_post_pad = total;
  }
  __syncthreads();
  SKE_PHASE(3);

  // 3. Stage the pairs (unrolled by 4: 128-512 tokens 1% faster than by 2, eleventh session).
#pragma unroll 4
  for (int s = 0; s < steps; ++s) {
    const int k = my_keys[s * kWarpSize + lane], key = k & kKeyMask;
    if (key != N) staged[cstart[key] + my_row[key] + (k >> kKeyBits)] = begin + s * kWarpSize + lane;
  }
  __syncthreads();
  SKE_PHASE(4);

  // 4. The sorted buffer, front to back, grid-stride: 16-byte stores when every
  // group of 4 slots lies in one block of slots, else one slot at a time.
  int32_t* out = p.sorted_token_ids;
  const int gtid = blockIdx.x * T + tid, gthreads = gridDim.x * T;
  const auto slot_value = [&](int s, int2 info) { return s < info.y ? staged[s + info.x] : numel; };
  const auto info_of = [&](int s) { return m_info[div_block(p, s)]; };
  if (p.pad_sorted_token_ids && p.block_size % 4 == 0 && (reinterpret_cast<uintptr_t>(out) & 15) == 0) {
    int4* out4 = reinterpret_cast<int4*>(out);
#pragma unroll 1
    for (int g = gtid; g < total / 4; g += gthreads) {
      const int s = 4 * g;
      const int2 info = info_of(s);
      out4[g] = make_int4(slot_value(s, info), slot_value(s + 1, info), slot_value(s + 2, info),
                          slot_value(s + 3, info));
    }
  } else {
#pragma unroll 1
    for (int s = gtid; s < total; s += gthreads) {
      const int2 info = info_of(s);
      if (s < info.y)
        out[s] = staged[s + info.x];
      else if (p.pad_sorted_token_ids)
        out[s] = numel;
    }
  }
  if (p.pad_sorted_token_ids) fill_range(out, total, p.sorted_len, numel, gtid, gthreads);
  SKE_PHASE(5);
}

// Mid-sized inputs over many buckets (a few thousand pairs): like the staged kernel,
// no block waits for another, but a block sorts only the pairs that land in its own
// share of the slots, where the staged kernel's blocks each sort every pair (measured
// there: half the shared-memory wavefronts were bank-conflict replays of accesses by
// bucket, eleventh session). Shares are cut from the padded total, so that skewed
// routing still spreads the writes over every block.
//   1. Count every pair into count[] (shared atomics: counts need no order); scan
//      the padded counts into pstart[]; the buckets whose slots meet this block's
//      share, [e_lo, e_hi), are its range.
//   2. The range's pairs, in pair order, into a queue (a ballot per step and a
//      scan over the warps); each warp ranks a chunk of the queue (rank_in_warp).
//      A share inside one bucket skips the queue: there queue order is rank order.
//   3. Per bucket of the range, the slot of each warp's first pair (pstart plus
//      the lower warps'); each queued pair whose slot is in the share goes to
//      local[slot - share start], which was filled with padding first.
//   4. local[] out as whole lines; expert_ids of the share's blocks of slots
//      (a binary search over the range); the tail past the total.
// A block's share of `slots` slots over grid blocks, rounded up to a multiple of 4: the tiny
// kernel's share and the ranged kernel's room (MoeAlignParams::block_slots, of sorted_len), and
// the ranged kernel's share of the padded total.
__host__ __device__ inline int block_slots_for(int slots, int grid) {
  return (slots + 4 * grid - 1) / (4 * grid) * 4;
}

// Shared memory: local[room] | count[N] | pstart[N + 1] | scan | range[2] | rows[warps][N] |
//                peers[warps][N] (lane masks) | qkey[numel + warp] | qpair[numel]
// (room = p.block_slots: at least a block's share of sorted_len, a multiple of 4).
__host__ __device__ inline size_t ranged_ints_before_peers(int warps, int num_buckets, int room) {
  const size_t ints = static_cast<size_t>(room) + static_cast<size_t>(warps + 2) * num_buckets + 1 + kScanInts + 2;
  return ints + (ints & 1);
}
inline size_t moe_align_ranged_smem_bytes(int warps, int num_buckets, int numel, int room, int warp_size) {
  const size_t masks = static_cast<size_t>(warps) * num_buckets * (warp_size / 32);
  return sizeof(int32_t) * (ranged_ints_before_peers(warps, num_buckets, room) + masks +
                            2 * static_cast<size_t>(numel) + warp_size);
}

template <typename IdT, int kWarpSize>
__global__ void __launch_bounds__(kMaxBlockThreads) moe_align_ranged_kernel(const MoeAlignParams<IdT> p) {
  using Mask = LaneMask<kWarpSize>;
  extern __shared__ int32_t smem[];
  const int N = p.num_buckets, numel = p.numel, T = blockDim.x, tid = threadIdx.x, G = gridDim.x;
  const int lane = tid % kWarpSize, warp = tid / kWarpSize, warps = T / kWarpSize;
  const int room = p.block_slots;
  int32_t* local = smem;  // [room]: this block's slots (16-byte aligned: room is a multiple of 4)
  int32_t* count = local + room;
  int32_t* pstart = count + N;
  int32_t* scan = pstart + N + 1;
  int32_t* range = scan + kScanInts;
  int32_t* rows = range + 2;  // [warps][R]: a warp's queued pairs per bucket of the range, then its first slots
  Mask* peers = reinterpret_cast<Mask*>(smem + ranged_ints_before_peers(warps, N, room));  // [warps][R]
  int32_t* qkey = reinterpret_cast<int32_t*>(peers + warps * N);  // [numel + warp]: bucket - e_lo, then | rank
  int32_t* qpair = qkey + numel + kWarpSize;                       // [numel]: pair index

  SKE_PHASE(0);
  {
    const int fill = p.pad_sorted_token_ids ? numel : -1;  // -1: a padding slot left as it is
    int4* local4 = reinterpret_cast<int4*>(local);
#pragma unroll 1
    for (int i = tid; i < room / 4; i += T) local4[i] = make_int4(fill, fill, fill, fill);
  }
#pragma unroll 1
  for (int e = tid; e < N; e += T) count[e] = 0;
  if (tid == 0) {
    range[0] = N;
    range[1] = 0;
  }
  const int begin = min(warp * p.per_warp, numel), end = min(begin + p.per_warp, numel);
  int keys[kSteps];
  load_keys<kSteps, kWarpSize>(p, begin, end, lane, keys);
  __syncthreads();
#pragma unroll
  for (int s = 0; s < kSteps; ++s)
    if (keys[s] != N) atomicAdd(&count[keys[s]], 1);  // keys past the chunk are N too
  __syncthreads();
  SKE_PHASE(1);

  // 1. Padded starts; this block's share of [0, total) and the buckets that meet it.
  const int2 owned = thread_bucket_run(N, T);
  const int lo = owned.x, hi = owned.y;
  int padded = 0, unused = 0;
#pragma unroll 1
  for (int e = lo; e < hi; ++e) padded += round_up_to_block(p, count[e]);
  const int total = block_exclusive_scan2<kWarpSize>(padded, unused, scan).x;
  const int share = block_slots_for(total, G);
  const int s_lo = min(total, static_cast<int>(blockIdx.x) * share), s_hi = min(total, s_lo + share);
  int first = N, last = -1;
#pragma unroll 1
  for (int e = lo; e < hi; ++e) {
    const int c = count[e], size = round_up_to_block(p, c);
    pstart[e] = padded;
    if (blockIdx.x == 0) p.cumsum[e] = padded + c;
    if (padded < s_hi && padded + size > s_lo) {
      first = min(first, e);
      last = e;
    }
    padded += size;
  }
  if (last >= 0) {
    atomicMin(&range[0], first);
    atomicMax(&range[1], last + 1);
  }
  if (tid == 0) {
    pstart[N] = total;
    if (blockIdx.x == 0) {
      p.cumsum[N] = total;
      *p.num_tokens_post_pad = total;
    }
  }
  __syncthreads();
  const int e_lo = range[0], R = max(0, range[1] - e_lo);
  SKE_PHASE(2);

  // 2. Queue the range's pairs in pair order; clear the warp rows of the range.
  const auto in_range = [&](int key) { return static_cast<unsigned>(key - e_lo) < static_cast<unsigned>(R); };
  Mask in_lanes[kSteps];
  int mine = 0;
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    in_lanes[s] = ballot<kWarpSize>(in_range(keys[s]));
    mine += popcount(in_lanes[s]);
  }
  if (lane == 0) scan[warp] = mine;
  __syncthreads();
  // One barrier: each warp sums the lower warps' counts itself (warps <= kWarpSize).
  const int warp_count = lane < warps ? scan[lane] : 0, up_to = warp_inclusive_scan<kWarpSize>(warp_count, lane);
  int queued = shfl<kWarpSize>(up_to, warp) - mine;  // the pairs of the lower warps
  const int queue_total = shfl<kWarpSize>(up_to, warps - 1);
  const Mask me = Mask(1) << lane;
  // A share inside one bucket (a hot one, skewed routing): a pair's place in the queue is its rank.
  const bool one_bucket = R == 1;
  const int one_bucket_slot = one_bucket ? pstart[e_lo] - s_lo : 0;
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    if (in_lanes[s] & me) {
      const int q = queued + popcount(in_lanes[s] & (me - 1)), pair = begin + s * kWarpSize + lane;
      if (one_bucket) {
        const int at = one_bucket_slot + q;
        if (static_cast<unsigned>(at) < static_cast<unsigned>(s_hi - s_lo)) local[at] = pair;
      } else {
        qkey[q] = keys[s] - e_lo;
        qpair[q] = pair;
      }
    }
    queued += popcount(in_lanes[s]);
  }
  const int queue_len = one_bucket ? 0 : queue_total;
  if (tid < kWarpSize) qkey[queue_len + tid] = R;  // the last chunk's last step
#pragma unroll 1
  for (int i = tid; i < warps * R; i += T) {
    rows[i] = 0;
    peers[i] = 0;
  }
  __syncthreads();
  SKE_PHASE(3);

  // Chunks of whole steps, so that only the last one reads past queue_len.
  const int q_per_warp = ((queue_len + warps - 1) / warps + kWarpSize - 1) / kWarpSize * kWarpSize;
  const int q_begin = min(warp * q_per_warp, queue_len), q_end = min(q_begin + q_per_warp, queue_len);
  const int q_steps = (q_end - q_begin + kWarpSize - 1) / kWarpSize;
  int32_t* my_row = rows + warp * R;
  rank_in_warp<kWarpSize, true>(qkey + q_begin, q_steps, R, my_row, peers + warp * R);
  __syncthreads();
  SKE_PHASE(4);

  // 3. Each warp's first slot per bucket of the range; expert_ids of the share.
#pragma unroll 1
  for (int j = tid; j < R; j += T) scan_warp_rows(rows + j, R, warps, pstart[e_lo + j]);
  const int m_end = div_block(p, s_hi + p.block_size - 1);
#pragma unroll 1
  for (int m = div_block(p, s_lo + p.block_size - 1) + tid; m < m_end; m += T)
    p.expert_ids[m] = bucket_of_slot(pstart, e_lo, e_lo + R - 1, m * p.block_size) - 1;
  __syncthreads();
#pragma unroll 4
  for (int s = 0; s < q_steps; ++s) {
    const int q = q_begin + s * kWarpSize + lane, k = qkey[q], key = k & kKeyMask;
    if (key == R) continue;
    const int slot = my_row[key] + (k >> kKeyBits);
    if (slot >= s_lo && slot < s_hi) local[slot - s_lo] = qpair[q];
  }
  __syncthreads();
  SKE_PHASE(5);

  // 4. The share, front to back; then the tail past the total.
  int32_t* out = p.sorted_token_ids;
  if (p.pad_sorted_token_ids && (reinterpret_cast<uintptr_t>(out) & 15) == 0 && total % 4 == 0) {
    const int4* local4 = reinterpret_cast<const int4*>(local);
    int4* out4 = reinterpret_cast<int4*>(out + s_lo);
#pragma unroll 1
    for (int g = tid; g < (s_hi - s_lo) / 4; g += T) out4[g] = local4[g];
  } else {
#pragma unroll 1
    for (int s = s_lo + tid; s < s_hi; s += T) {
      const int v = local[s - s_lo];
      if (v >= 0) out[s] = v;
    }
  }
  if (p.pad_sorted_token_ids) fill_range(out, total, p.sorted_len, numel, blockIdx.x * T + tid, G * T);
  SKE_PHASE(6);
}

// kStage: the slice's pairs are sorted by bucket in shared memory (p.stage_pairs
// of room) before they are stored, so that each bucket's run leaves as whole lines.
// kPackedCounts: an exchange's blocks publish 16-bit counts (sum_block_counts).
// kCluster: an exchange launched in thread-block clusters (sum_cluster_counts).
// Separate instances: each kernel carries only the code it runs (instruction cache).
// Launch bounds: at least one 512-thread block per multiprocessor (256-thread
// blocks still fit two). Without the explicit 1, ptxas for sm_80 chose 64
// registers and spilled the rolled placement's register queue; with it, most
// exchanges on the H200 ran 1.5-4% faster (bench/NOTES.md, sixth session).
template <typename IdT, int kWarpSize, bool kStage, bool kPackedCounts, bool kCluster = false>
__global__ void __launch_bounds__(kMaxBlockThreads, 1) moe_align_kernel(const MoeAlignParams<IdT> p) {
  using Mask = LaneMask<kWarpSize>;
  extern __shared__ int32_t smem[];
  const int N = p.num_buckets;
  const int tid = threadIdx.x, bdim = blockDim.x;
  const int lane = tid % kWarpSize, warp = tid / kWarpSize, warps = bdim / kWarpSize;
  int32_t* rows = smem;             // per warp: its pairs per bucket, then where its next pair goes
  int32_t* before = rows + warps * N;  // pairs of lower blocks per bucket
  int32_t* count = before + N;      // pairs per bucket
  int32_t* start = count + N;       // padded start per bucket; start[N] = total
  int32_t* local = start + N + 1;   // kStage: this block's pairs per bucket, then where they start in staged
  int32_t* scan = kStage ? local + N : local;
  int32_t* staged = scan + kScanInts;  // kStage: this block's pairs in output order (pack_key)
  // kStage: each warp's lane mask per bucket, zero between placement steps (as in rank_in_warp)
  Mask* peers_of = reinterpret_cast<Mask*>(smem + moe_align_ints_before_peers(warps, N, p.stage_pairs));
  Mask* my_peers = peers_of + warp * N;
  int32_t* my_row = rows + warp * N;
  const Mask me = Mask(1) << lane;
  const int64_t gtid = static_cast<int64_t>(blockIdx.x) * bdim + tid;
  const int64_t gthreads = static_cast<int64_t>(gridDim.x) * bdim;
  // Pair indices in unsigned 32 bits: numel < 2^31 (host check), and a slice's rounding adds
  // less than warps * gridDim.x.
  const uint32_t numel = static_cast<uint32_t>(p.numel);
  // Only exchange plans launch several blocks. The cluster instance that places directly is one
  // always; saying so drops the copy of each loop that the compiler kept for one block (-240
  // instructions). Not in the staged one: there ptxas then re-reads the shared window's base
  // (S2UR) in the unrolled placement, and 32K-64K tokens ran 1.06-1.16x slower.
  constexpr bool kClusterDirect = kCluster && !kStage;
  const bool exchange = kClusterDirect || gridDim.x > 1;
  constexpr int kLaneSteps = kClusterDirect ? kClusterDirectSteps : kSteps;

  SKE_PHASE(0);
  // One block: fill the whole buffer now, the block barriers order it before the placement.
  if (p.pad_sorted_token_ids && !exchange) fill_range(p.sorted_token_ids, 0, p.sorted_len, p.numel, gtid, gthreads);
  zero_shared(smem, (warps + 2) * N, tid, bdim);
  if constexpr (kStage) zero_shared(peers_of, warps * N, tid, bdim);
  __syncthreads();

  const uint32_t per_warp = static_cast<uint32_t>(p.per_warp);
  const uint32_t slice_begin = min(blockIdx.x * warps * per_warp, numel);
  const uint32_t slice_end = min(slice_begin + warps * per_warp, numel);
  const uint32_t begin = min(slice_begin + warp * per_warp, slice_end);
  const uint32_t end = min(begin + per_warp, slice_end);

  // 1. Count this warp's chunk, kLaneSteps pairs per lane per round.
  constexpr uint32_t round_len = kLaneSteps * kWarpSize;
  const bool keys_stay = end - begin <= round_len;  // one round: keep keys for placement
  int keys[kLaneSteps];
  for (uint32_t r0 = begin; r0 < end; r0 += round_len) {
    load_keys<kLaneSteps, kWarpSize>(p, r0, end, lane, keys);
#pragma unroll
    for (int s = 0; s < kLaneSteps; ++s) {
      if (r0 + s * kWarpSize >= end) break;
      if (keys[s] != N) atomicAdd(&my_row[keys[s]], 1);  // counts need no order
    }
  }
  SKE_PHASE(1);
  __syncthreads();

  // Offsets of the warps inside the block; the block's pairs per bucket.
  constexpr int kMaxWarps = kMaxBlockThreads / kWarpSize;
#pragma unroll 1
  for (int e = tid; e < N; e += bdim) {
    int c[kMaxWarps];
#pragma unroll
    for (int w = 0; w < kMaxWarps; ++w) c[w] = w < warps ? rows[w * N + e] : 0;
    int run = 0;
#pragma unroll
    for (int w = 0; w < kMaxWarps; ++w) {
      if (w < warps) rows[w * N + e] = run;
      run += c[w];
    }
    if constexpr (kStage) local[e] = run;
    if (!exchange) {
      count[e] = run;
    } else if constexpr (kCluster) {
      start[e] = run;  // free until the scan, after the grid barrier, when no block reads it any more
    } else if constexpr (kPackedCounts) {  // a row of N rounded up to even 16-bit counts (sum_block_counts)
      uint16_t* row = reinterpret_cast<uint16_t*>(p.block_counts) + static_cast<int64_t>(blockIdx.x) * (N + (N & 1));
      row[e] = static_cast<uint16_t>(run);
      if (e == N - 1 && (N & 1)) row[N] = 0;
    } else {
      p.block_counts[static_cast<int64_t>(blockIdx.x) * N + e] = run;
    }
  }
  SKE_PHASE(2);

  // 2. Exchange: one grid barrier (it orders the stores above before the loads below).
  if constexpr (kCluster) {  // launched as an exchange only
    // A grid of one cluster (a plain launch) needs no grid barrier and no second level.
    const bool one_cluster = cluster_count() == 1;
    cluster_sync_shared();
    sum_cluster_counts(start, N, before, count, one_cluster ? nullptr : p.block_counts);
    cluster_arrive_relaxed();  // done with the cluster's shared memory (cluster_wait below)
    if (!one_cluster) {
      grid_sync();
      SKE_PHASE(3);
      add_cluster_rows<16>(p.block_counts, N, before, count);
    }
  } else if (exchange) {
    grid_sync();
    SKE_PHASE(3);
    constexpr int kWideBatch = sum_batch(kWarpSize, kMaxBlockThreads), kBatch = sum_batch(kWarpSize, kBlockThreads);
    if (kWideBatch != kBatch && bdim > kBlockThreads)
      sum_block_counts<kWarpSize, kWideBatch, kPackedCounts>(p.block_counts, N, before, count);
    else
      sum_block_counts<kWarpSize, kBatch, kPackedCounts>(p.block_counts, N, before, count);
  }
  __syncthreads();
  SKE_PHASE(4);

  // 3. Padded cumsum over buckets.
  const int2 totals = padded_exclusive_scan<kWarpSize, kStage>(p, count, start, local, N, scan);
  const int total = totals.x, staged_pairs = totals.y;
  SKE_PHASE(5);
#pragma unroll 1
  for (int e = tid; e < N; e += bdim) {
    before[e] += start[e];  // where this block's pairs of bucket e begin
    if constexpr (kStage) before[e] -= local[e];  // ... less where they are staged: the slot of staged[i]
    // What upstream's atomics leave there: where each bucket's real pairs end.
    if (blockIdx.x == 0) p.cumsum[e] = start[e] + count[e];
  }
  if (blockIdx.x == 0 && tid == 0) {
    p.cumsum[N] = total;
    *p.num_tokens_post_pad = total;
  }

  // 4. expert_ids, grid-stride.
  const int num_m_blocks = div_block(p, total);
#pragma unroll 1
  for (int64_t m = gtid; m < num_m_blocks; m += gthreads)
    p.expert_ids[m] = bucket_of_slot(start, 0, N - 1, static_cast<int>(m) * p.block_size) - 1;
  // Exchange: no barrier orders other blocks' placement, so fill only the slots no pair
  // lands in: each bucket's padding (a warp per bucket, over the grid), then the tail.
  if (p.pad_sorted_token_ids && exchange) {
#pragma unroll 1
    for (int e = blockIdx.x * warps + warp; e < N; e += gridDim.x * warps) {
#pragma unroll 1
      for (int s = start[e] + count[e] + lane; s < start[e + 1]; s += kWarpSize) p.sorted_token_ids[s] = p.numel;
    }
    fill_range(p.sorted_token_ids, total, p.sorted_len, p.numel, gtid, gthreads);
  }
  __syncthreads();
  SKE_PHASE(6);

  // Stable placement of one step's pairs (one per lane). The lanes of a bucket find
  // each other by lane masks where the slices are large (kStage: many steps; 4-5% faster
  // than MATCH alone, 3% than match_key), else by match_key (one MATCH over the key's high
  // bits and a ballot per low bit), which needs no per-warp masks in shared memory (clearing
  // them cost what they saved over 4 steps); against a ballot per key bit, 8K tokens 0.98 in
  // clusters, Mixtral 16K-64K 0.95-0.97 without. Over many buckets this search is most of
  // the placement (16K: ~1.3 µs of the call with MATCH alone, the stores ~0.35); lane masks,
  // a sorting network and ranking before the grid barrier's wait all cost more here
  // (bench/NOTES.md, fifteenth to seventeenth sessions).
  const auto place = [&](int key, int32_t id) {
    const bool has = key != N;
    Mask peers;
    if constexpr (kStage)
      peers = peers_by_mask<kWarpSize>(my_peers, key, has, me);
    else
      peers = match_key<kWarpSize>(key, p.key_bits);
    const int below = popcount(peers & (me - 1)), row = has ? my_row[key] + below : 0;
    sync_warp();
    if (has) {
      if constexpr (kStage) {
        staged[local[key] + row] = pack_key(key, id - slice_begin);
      } else {
        p.sorted_token_ids[before[key] + row] = id;
      }
      if (below == 0) {
        my_row[key] += popcount(peers);
        if constexpr (kStage) my_peers[key] = 0;
      }
    }
    sync_warp();
  };
  for (uint32_t r0 = begin; r0 < end; r0 += round_len) {
    if (!keys_stay) load_keys<kLaneSteps, kWarpSize>(p, r0, end, lane, keys);
    if constexpr (kStage) {
      // Many steps (large slices): unrolled, the steps' independent work overlaps.
#pragma unroll
      for (int s = 0; s < kLaneSteps; ++s) {
        if (r0 + s * kWarpSize >= end) break;
        place(keys[s], static_cast<int32_t>(r0 + s * kWarpSize + lane));
      }
    } else {
      // Few steps: rolled, keys shifting down a register queue, so that the step's
      // code is fetched once (measured: 256-thread exchanges 2-6% faster than with
      // 16 unrolled copies, each first run an instruction-cache miss; with the
      // many steps of sorted-placement slices 2-5% slower).
      const int steps = static_cast<int>(min(round_len, end - r0 + kWarpSize - 1) / kWarpSize);
#pragma unroll 1
      for (int s = 0; s < steps; ++s) {
        const int key = keys[0];
#pragma unroll
        for (int j = 0; j + 1 < kLaneSteps; ++j) keys[j] = keys[j + 1];
        place(key, static_cast<int32_t>(r0 + s * kWarpSize + lane));
      }
    }
  }
  if constexpr (kStage) {
    __syncthreads();
#pragma unroll 4
    for (int i = tid; i < staged_pairs; i += bdim) {
      const uint32_t v = static_cast<uint32_t>(staged[i]);
      p.sorted_token_ids[before[v & kKeyMask] + i] = static_cast<int32_t>(slice_begin + (v >> kKeyBits));
    }
  }
  SKE_PHASE(7);
  // No block leaves while another may read its shared memory. The grid barrier already
  // orders that; compute-sanitizer's racecheck counts only the cluster barrier.
  if constexpr (kCluster) cluster_wait();
}

// ---------------------------------------------------------------------------
// Host side: choose the grid, then launch.

// kOneBlock is moe_align_kernel on one block: for inputs too large for kStaged
// where a cooperative launch is not available.
enum class MoeAlignPath { kTiny, kStaged, kOneBlock, kExchange, kRanged };

struct MoeAlignPlan {
  MoeAlignPath path;
  int grid;
  int block;
  size_t smem;
  int per_warp;
  int stage_pairs = 0;        // kOneBlock and kExchange: see MoeAlignParams
  bool packed_counts = false;  // kExchange: moe_align_kernel<kPackedCounts>
  int cluster = 0;             // kExchange: blocks per thread-block cluster (moe_align_kernel<kCluster>), else 0
};

// Plan constants, from sweeps of every path and grid on an H200 (bench/NOTES.md, third to seventh sessions).
struct MoeAlignTuning {
  int tiny_max_pairs = 64;         // the tiny path up to here (its passes grow with numel)
  int staged_max_pairs = 6144;     // the staged path up to here (each block ranks every pair) ...
  int staged_pairs_per_thread = 6;  // ... with 256 threads while they hold this many pairs each, else 512
                                    // (ninth session: 2,048 pairs 0.92-0.97 with 512; 1,280 pairs 1.06);
  int slots_per_block = 2048;  // tiny and staged: a block per this many slots of sorted_token_ids
  int exchange_min_pairs = 4096;   // without kStaged: one block below this
  int many_buckets = 64;           // above this, the sum over blocks dominates the exchange:
  int max_grid_many_buckets = 64;  // at most this many blocks (each sums grid x buckets), and
  int most_buckets = 256;          // above this, the grid cap below applies to wide blocks only where they stage;
  int wide_early_buckets = 512;    // above this, 512-thread blocks (one bucket per thread) ...
  int wide_block_min_pairs = 32768;  // ... from here; over many buckets but not that many
  int wide_block_min_pairs_fewer_buckets = 262144;  // from here (sixth session: 256 threads won below);
  int stage_min_pairs_per_bucket = 12;  // wide blocks stage their slice from this many pairs per bucket;
  int max_grid_wide = 96;  // wide blocks over fewer than most buckets, or that stage: at most this many blocks
  int pairs_per_thread = 2;        // exchange grid = pairs / (pairs_per_thread * threads)
  // Exchanges in thread-block clusters (sm_90 and later; seventh session): over many buckets,
  int cluster_size = 8;               // clusters of this many blocks,
  int cluster_pairs_per_block = 512;  // a block per this many pairs, up to max_grid_clusters blocks
  int max_grid_clusters = 128;        // (16 clusters; 96 before the twelfth session: 32K-64K tokens
                                      // 0.92-0.99 with 128, 16K 0.95-1.02),
  int cluster_min_grid = 64;          // from this many blocks (eighteenth session, 4K tokens over many
                                      // buckets 0.87-0.93 of without; at 32 Kimi-K2 and Qwen3-Next slower);
  int cluster_stage_min_pairs = 262144;  // 512-thread blocks that stage their slice from here, else
                                         // 512 threads over more than most_buckets, 256 below.
  // A grid of one cluster of cluster_size blocks (ninth session): no grid barrier, the blocks sum
  // their counts through distributed shared memory alone. Measured against the plans around it,
  // over many buckets: 5,120 pairs 0.98-1.14 of staged (uniform routing), 10,240 pairs 0.96-1.04 of
  // the exchange; over few: 1,024 pairs 0.90-1.11 of staged, 32,768 pairs 1.2 of the exchange.
  int one_cluster_min_pairs = 5121;               // over many buckets from here
  int one_cluster_max_pairs = 9216;               // up to here;
  int one_cluster_min_pairs_few_buckets = 2048;   // over few buckets from here
  int one_cluster_max_pairs_few_buckets = 16384;  // up to here,
  int one_cluster_narrow_max_pairs = 2048;        // with 256-thread blocks up to here, 512 beyond.
  // The ranged kernel over many buckets (twelfth session). Against the plans it replaces, uniform
  // routing: 3,072 pairs 0.92-0.98, 4,096 0.79-0.92, 6,144-8,192 0.70-0.84; skewed: 4,096 pairs
  // 0.77-0.99, but 3,072 up to 1.06 and 8,192 over 257 buckets 1.08, and over 129 buckets above
  // 4,096 pairs 1.15-1.20 (a hot bucket with 30% of the pairs is ranked by every block it spans).
  int ranged_min_pairs = 3072;                // from here,
  int ranged_max_pairs_fewer_buckets = 4096;  // up to here over at most most_buckets buckets, else as many
                                              // as its registers hold;
  int ranged_pairs_per_block = 64;            // a block per this many pairs (grids of 2,048 slots per
                                              // block, as staged: 1.1-1.3 of this).
};

inline int max_supported_buckets(const DeviceLimits& dev) {
  // One warp's row plus the per-bucket arrays must fit one block's shared memory.
  return static_cast<int>((dev.smem_per_block_optin / sizeof(int32_t) - 1 - kScanInts) / 4);
}

// A plan for a given path, grid and block; an exchange grid must fit co-resident (the caller checks).
// stage: moe_align_kernel<kStage> where the slice fits shared memory. pack: 16-bit counts where
// the sum over blocks would take several rounds of loads and a slice's counts fit; measured,
// packing where one round suffices is slower (bench/NOTES.md, fifth session). Not on 64-wide
// waves: there the packed sum spills SGPRs (gfx90a, compile report). cluster: an exchange in
// thread-block clusters of that many blocks (moe_align_kernel<kCluster>, which has no packed counts).
inline MoeAlignPlan plan_for(MoeAlignPath path, int numel, int num_buckets, const DeviceLimits& dev, int warp_size,
                             int grid = 1, int threads = kBlockThreads, bool stage = false, bool pack = true,
                             int cluster = 0) {
  MoeAlignPlan plan;
  plan.path = path;
  plan.grid = path == MoeAlignPath::kExchange && grid > 1 ? grid : 1;
  if (path == MoeAlignPath::kExchange && plan.grid == 1) plan.path = MoeAlignPath::kOneBlock;
  if (plan.path == MoeAlignPath::kExchange && cluster > 1) plan.cluster = cluster;
  if (path == MoeAlignPath::kTiny) {
    plan.grid = std::max(1, grid);
    plan.block = kBlockThreads;
    plan.smem = moe_align_tiny_smem_bytes(plan.block);
    plan.per_warp = 0;
    return plan;
  }
  if (path == MoeAlignPath::kStaged) {
    plan.grid = std::max(1, grid);
    const int warps = std::max(1, std::min(threads, kMaxBlockThreads) / warp_size);
    plan.block = warps * warp_size;
    const int chunk = std::max(1, (numel + warps - 1) / warps);
    plan.per_warp = (chunk + warp_size - 1) / warp_size * warp_size;
    plan.smem = moe_align_staged_smem_bytes(warps, num_buckets, numel, plan.per_warp, warp_size);
    return plan;
  }
  int warps = std::min(threads, kMaxBlockThreads) / warp_size;
  while (warps > 1 && moe_align_smem_bytes(warps, num_buckets, warp_size) > size_t(dev.smem_per_block_optin)) --warps;
  plan.block = warps * warp_size;
  const int64_t warps_total = int64_t(plan.grid) * warps;
  plan.per_warp = static_cast<int>((int64_t(numel) + warps_total - 1) / warps_total);
  if (plan.per_warp < 1) plan.per_warp = 1;
  const int64_t slice = int64_t(warps) * plan.per_warp;
  if (stage && slice_packs(slice, num_buckets) &&
      moe_align_smem_bytes(warps, num_buckets, warp_size, slice) <= size_t(dev.smem_per_block_optin))
    plan.stage_pairs = static_cast<int>(slice);
  const bool packable = pack && plan.path == MoeAlignPath::kExchange && plan.cluster == 0 && warp_size == 32 &&
                        slice <= 0xffff;
  plan.packed_counts = packable && sum_passes(num_buckets, plan.grid, plan.block, warp_size) > 1;
  plan.smem = moe_align_smem_bytes(warps, num_buckets, warp_size, plan.stage_pairs);
  return plan;
}

// Whether a staged or ranged plan holds every pair in registers and fits shared memory.
inline bool staged_fits(const MoeAlignPlan& plan, int numel, const DeviceLimits& dev) {
  return int64_t(plan.block) * kSteps >= numel && plan.smem <= size_t(dev.smem_per_block_optin);
}

// A kRanged plan: the staged plan's grid, block and chunks, with shared memory for the ranged kernel.
inline MoeAlignPlan plan_ranged(int numel, int num_buckets, int sorted_len, const DeviceLimits& dev, int warp_size,
                                int grid, int threads) {
  MoeAlignPlan plan = plan_for(MoeAlignPath::kStaged, numel, num_buckets, dev, warp_size, grid, threads);
  plan.path = MoeAlignPath::kRanged;
  const int room = block_slots_for(sorted_len, plan.grid);
  plan.smem = moe_align_ranged_smem_bytes(plan.block / warp_size, num_buckets, numel, room, warp_size);
  return plan;
}

// The tiny and staged paths: a block per tuning.slots_per_block slots of sorted_token_ids.
inline int moe_align_write_grid(int sorted_len, const DeviceLimits& dev, const MoeAlignTuning& tuning = MoeAlignTuning()) {
  return std::min(dev.sm_count, 1 + std::max(0, sorted_len - 1) / tuning.slots_per_block);
}

// max_coresident(plan) -> blocks of plan.block threads and plan.smem bytes of the plan's
// moe_align_kernel instance that the device holds at once (in clusters of plan.cluster blocks
// where it is > 1). sorted_len: the length of sorted_token_ids.
template <typename CoresidentFn>
MoeAlignPlan plan_moe_align(int numel, int num_buckets, int sorted_len, const DeviceLimits& dev, int warp_size,
                            CoresidentFn max_coresident, const MoeAlignTuning& tuning = MoeAlignTuning()) {
  // The tiny path also a block per kBlockThreads buckets (each thread writes one cumsum entry).
  const int write_grid = moe_align_write_grid(sorted_len, dev, tuning);
  if (numel <= tuning.tiny_max_pairs) {
    const int grid = std::min(dev.sm_count, std::max(write_grid, (num_buckets + kBlockThreads - 1) / kBlockThreads));
    return plan_for(MoeAlignPath::kTiny, numel, num_buckets, dev, warp_size, grid);
  }
  const bool many_buckets = num_buckets > tuning.many_buckets, most = num_buckets > tuning.most_buckets;
  const bool clusters = dev.clusters && tuning.cluster_size > 1 && tuning.cluster_size <= kMaxClusterBlocks;
  const auto cluster_exchange = [&](int64_t grid, int threads, bool stage) {
    return plan_for(MoeAlignPath::kExchange, numel, num_buckets, dev, warp_size, static_cast<int>(grid), threads,
                    stage, false, tuning.cluster_size);
  };
  if (many_buckets && numel >= tuning.ranged_min_pairs && (most || numel <= tuning.ranged_max_pairs_fewer_buckets)) {
    const int threads = numel <= kBlockThreads * kSteps ? kBlockThreads : kMaxBlockThreads;
    const int grid = std::min(dev.sm_count, std::max(1, numel / tuning.ranged_pairs_per_block));
    const MoeAlignPlan ranged = plan_ranged(numel, num_buckets, sorted_len, dev, warp_size, grid, threads);
    if (staged_fits(ranged, numel, dev)) return ranged;
  }
  const bool one_cluster =
      many_buckets ? numel >= tuning.one_cluster_min_pairs && numel <= tuning.one_cluster_max_pairs
                   : numel >= tuning.one_cluster_min_pairs_few_buckets && numel <= tuning.one_cluster_max_pairs_few_buckets;
  if (clusters && one_cluster) {
    const int threads = numel <= tuning.one_cluster_narrow_max_pairs ? kBlockThreads : kMaxBlockThreads;
    const MoeAlignPlan plan = cluster_exchange(tuning.cluster_size, threads, false);
    if (max_coresident(plan) >= plan.grid) return plan;
  }
  if (numel <= tuning.staged_max_pairs) {
    int threads = kBlockThreads;
    while (threads < kMaxBlockThreads && int64_t(threads) * tuning.staged_pairs_per_thread < numel) threads *= 2;
    const int grid = write_grid;
    const MoeAlignPlan staged = plan_for(MoeAlignPath::kStaged, numel, num_buckets, dev, warp_size, grid, threads);
    if (staged_fits(staged, numel, dev)) return staged;
  }
  if (!dev.cooperative || numel < tuning.exchange_min_pairs)
    return plan_for(MoeAlignPath::kOneBlock, numel, num_buckets, dev, warp_size);
  if (clusters) {
    // The sum over blocks in two levels: within each cluster through shared memory, then over
    // the clusters' rows (bench against the exchange without clusters: DeepSeek-V3 16K-64K
    // tokens 0.89-0.93, Kimi-K2 and Qwen3-Next 32K-64K 0.86-0.90; Kimi-K2 8K 1.025; over few
    // buckets, Mixtral 16K-64K 0.87-0.93, eighteenth session).
    const bool stage = numel >= tuning.cluster_stage_min_pairs;
    const int threads = most || stage ? kMaxBlockThreads : kBlockThreads;
    // One cluster's worth of blocks: the block and shared memory of any grid (unstaged).
    const MoeAlignPlan shape = cluster_exchange(tuning.cluster_size, threads, false);
    int64_t grid = std::min<int64_t>(tuning.max_grid_clusters, numel / tuning.cluster_pairs_per_block);
    grid = std::min<int64_t>(grid, max_coresident(shape)) / tuning.cluster_size * tuning.cluster_size;
    if (grid >= tuning.cluster_min_grid) {
      for (bool staged : {stage, false}) {
        const MoeAlignPlan plan = cluster_exchange(grid, threads, staged);
        if (max_coresident(plan) >= plan.grid) return plan;
      }
    }
  }
  const bool wide = many_buckets && numel >= (num_buckets > tuning.wide_early_buckets
                                                  ? tuning.wide_block_min_pairs
                                                  : tuning.wide_block_min_pairs_fewer_buckets);
  // Staging pays where each block's pairs of a bucket make runs of several stores.
  const auto stages = [&](int64_t grid) {
    return wide && numel >= grid * num_buckets * tuning.stage_min_pairs_per_bucket;
  };
  const MoeAlignPlan shape =
      plan_for(MoeAlignPath::kOneBlock, numel, num_buckets, dev, warp_size, 1, wide ? kMaxBlockThreads : kBlockThreads);
  int64_t grid = numel / (int64_t(tuning.pairs_per_thread) * shape.block);
  if (many_buckets) {
    const bool wide_cap = wide && (!most || stages(tuning.max_grid_wide));
    grid = std::min<int64_t>(grid, wide_cap ? tuning.max_grid_wide : tuning.max_grid_many_buckets);
  }
  if (many_buckets && !wide && grid > 1) {
    // A partly used last batch of the sum's loads costs a whole round: below the grid, the
    // largest one that needs fewer rounds, if it keeps more than half the blocks (measured:
    // Qwen3-Next 2K tokens, 40 -> 32 blocks, 10.4 -> 9.3 µs; DeepSeek-V3 and Kimi-K2 at 2.2K-4K
    // tokens 4-10% faster). The rounds are those of the counts the plan publishes: comparing
    // 32-bit rounds where 16-bit counts need one round either way cost Qwen3-MoE 4K tokens 2-4%.
    const auto passes = [&](int64_t g) {
      return exchange_sum_passes(num_buckets, int(g), shape.block, warp_size, warp_size == 32);
    };
    const int grid_passes = passes(grid);
    int64_t fewer = grid - 1;
    while (fewer > grid / 2 && passes(fewer) == grid_passes) --fewer;
    if (fewer > grid / 2) grid = fewer;
  }
  grid = std::min<int64_t>(grid, max_coresident(shape));
  const MoeAlignPlan plan = plan_for(MoeAlignPath::kExchange, numel, num_buckets, dev, warp_size,
                                     static_cast<int>(grid), shape.block, stages(grid));
  if (max_coresident(plan) >= plan.grid) return plan;
  // The plain instance with the shape's shared memory: co-resident by the check above.
  return plan_for(MoeAlignPath::kExchange, numel, num_buckets, dev, warp_size, plan.grid, plan.block, false, false);
}

inline int bit_width(int x) {
  int bits = 0;
  while ((1 << bits) <= x) ++bits;
  return bits;
}

template <typename IdT>
using MoeAlignKernel = void (*)(MoeAlignParams<IdT>);

// The moe_align_kernel instance for sorted placement (stage), 16-bit counts (packed;
// 32-wide warps only) and clusters (CUDA only).
template <typename IdT, int kWarpSize>
MoeAlignKernel<IdT> moe_align_kernel_for(bool stage, bool packed, bool cluster = false) {
#if !defined(SKE_HIP)
  if (cluster)
    return stage ? moe_align_kernel<IdT, kWarpSize, true, false, true> : moe_align_kernel<IdT, kWarpSize, false, false, true>;
#endif
  if constexpr (kWarpSize == 32) {
    if (packed)
      return stage ? moe_align_kernel<IdT, kWarpSize, true, true> : moe_align_kernel<IdT, kWarpSize, false, true>;
  }
  return stage ? moe_align_kernel<IdT, kWarpSize, true, false> : moe_align_kernel<IdT, kWarpSize, false, false>;
}

// The moe_align_kernel instance of a kOneBlock or kExchange plan.
template <typename IdT, int kWarpSize>
MoeAlignKernel<IdT> moe_align_kernel_for(const MoeAlignPlan& plan) {
  return moe_align_kernel_for<IdT, kWarpSize>(plan.stage_pairs > 0, plan.packed_counts, plan.cluster > 1);
}

// Every kernel that sizes its shared memory at launch (each needs its limit raised once).
template <typename IdT, int kWarpSize>
std::array<MoeAlignKernel<IdT>, 8> moe_align_launch_sized_kernels() {
  return {moe_align_staged_kernel<IdT, kWarpSize>,           moe_align_ranged_kernel<IdT, kWarpSize>,
          moe_align_kernel_for<IdT, kWarpSize>(false, false), moe_align_kernel_for<IdT, kWarpSize>(false, true),
          moe_align_kernel_for<IdT, kWarpSize>(true, false),  moe_align_kernel_for<IdT, kWarpSize>(true, true),
          moe_align_kernel_for<IdT, kWarpSize>(false, false, true),
          moe_align_kernel_for<IdT, kWarpSize>(true, false, true)};
}

// Whether a plan's launch meets at a grid barrier (a cooperative launch): an exchange over more
// than one block, or more than one cluster.
inline bool has_grid_barrier(const MoeAlignPlan& plan) {
  return plan.path == MoeAlignPath::kExchange && plan.grid > std::max(1, plan.cluster);
}

// Ints of block_counts that a plan's launch needs: a row per block where blocks meet at a grid barrier.
inline int64_t moe_align_block_counts_ints(const MoeAlignPlan& plan, int num_buckets) {
  return has_grid_barrier(plan) ? int64_t(plan.grid) * num_buckets : 0;
}

// Launch with a given plan and block_counts of moe_align_block_counts_ints(plan, num_buckets).
template <typename IdT, int kWarpSize>
gpuError_t launch_moe_align(MoeAlignParams<IdT> p, const MoeAlignPlan& plan, gpuStream_t stream) {
  p.per_warp = plan.per_warp;
  p.stage_pairs = plan.stage_pairs;
  p.key_bits = bit_width(p.num_buckets);
  p.block_div = block_divisor(p.block_size);
  p.block_slots = block_slots_for(p.sorted_len, plan.grid);
  void* args[] = {&p};
  if (plan.path == MoeAlignPath::kTiny)
    return launch_plain(moe_align_tiny_kernel<IdT>, plan.grid, plan.block, args, plan.smem, stream);
  if (plan.path == MoeAlignPath::kStaged)
    return launch_plain(moe_align_staged_kernel<IdT, kWarpSize>, plan.grid, plan.block, args, plan.smem, stream);
  if (plan.path == MoeAlignPath::kRanged)
    return launch_plain(moe_align_ranged_kernel<IdT, kWarpSize>, plan.grid, plan.block, args, plan.smem, stream);
  const auto kernel = moe_align_kernel_for<IdT, kWarpSize>(plan);
  if (plan.cluster > 1)  // exchange plans only (plan_for)
    return launch_clusters(kernel, plan.grid, plan.block, plan.cluster, has_grid_barrier(plan), args, plan.smem,
                           stream);
  if (has_grid_barrier(plan)) return launch_cooperative(kernel, plan.grid, plan.block, args, plan.smem, stream);
  return launch_plain(kernel, plan.grid, plan.block, args, plan.smem, stream);
}

}  // namespace ske
