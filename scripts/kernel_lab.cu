// Kernel lab: the framework-free kernel alone, no torch. Checks every plan shape
// against a CPU model bit for bit, and times plans by CUDA-graph replay, so that
// a plan or kernel change is tried in seconds on the GPU machine.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -I sgl_kernel_ext/csrc scripts/kernel_lab.cu -o /tmp/kernel_lab
//   /tmp/kernel_lab check    # random cases, every path forced (tiny, staged, ranged, one block, exchange 256/512)
//   /tmp/kernel_lab time     # every path and grid on the benchmark's routings (LAB_ROUTINGS=..., LAB_TOKENS=1,16)
//   /tmp/kernel_lab small    # the default plan against staged and ranged 256/512 threads and grids of one cluster, 128-8,192 tokens (LAB_TOKENS=..., LAB_ROUTINGS=...)
//   /tmp/kernel_lab floor    # launch, grid-barrier and post-barrier load costs
//   /tmp/kernel_lab cold     # default plans in a graph, alone between events, and alone after L2 is emptied (eager)
//   /tmp/kernel_lab cluster  # cluster barrier and distributed-shared-memory read costs (sm_90)
//   /tmp/kernel_lab ifetch   # cycles to run straight-line code once (instruction fetch), cold and warm
//   with -DSKE_PHASE_CLOCKS: /tmp/kernel_lab phases   # cycles per phase of moe_align_kernel
//   with -DSKE_BASELINE: /tmp/kernel_lab ab   # the default plans against an older kernel, interleaved (LAB_AB_TOKENS=...)
//     scripts/lab_ab.sh --baseline REV FILE writes REV's kernel into namespace ske_base, with the
//     renames that keep the two namespaces' int-argument functions apart (REV: a2492a4 or later,
//     the API this mode calls), and scripts/lab_ab.sh FILE builds and runs this mode.
//     The baseline includes the current portability.cuh: when a change is in that header, copy REV's
//     version of the changed functions into namespace ske_base (they hide ::ske's), or both sides
//     run the new code (a 1.000 that measured nothing: bench/NOTES.md, seventeenth session).
//   /tmp/kernel_lab one EXPERTS TOPK TOKENS   # the default plan, launched 5 times (for ncu; the device's ncu
//     runs a cooperative launch in clusters as clusters of one block, so that it profiles another
//     exchange than the one timed: bench/NOTES.md, thirteenth session)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cooperative_groups.h>

#include "moe_align.cuh"
#if defined(SKE_BASELINE)
#include SKE_BASELINE
#endif

#define CK(...)                                                                                      \
  do {                                                                                               \
    cudaError_t e_ = (__VA_ARGS__);                                                                  \
    if (e_ != cudaSuccess) {                                                                         \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(e_)); \
      std::exit(2);                                                                                  \
    }                                                                                                \
  } while (0)

constexpr int32_t kPoison = 0x5EED5EED;

struct Outputs {
  std::vector<int32_t> sorted, experts, cumsum;
  int32_t total;
};

// The contract, written as plainly as possible.
Outputs model(const std::vector<int64_t>& ids, int N, int bs, size_t sorted_len, size_t experts_len, bool pad,
              bool ignore) {
  const int64_t numel = ids.size();
  std::vector<int> bucket(numel);
  std::vector<int64_t> count(N, 0);
  for (int64_t i = 0; i < numel; ++i) {
    const int64_t b = ids[i] + 1;
    int k = (b >= 0 && b < N) ? int(b) : 0;
    if (k == 0 && ignore) k = -1;
    bucket[i] = k;
    if (k >= 0) count[k]++;
  }
  std::vector<int64_t> start(N + 1, 0);
  for (int e = 0; e < N; ++e) start[e + 1] = start[e] + (count[e] + bs - 1) / bs * bs;
  Outputs o;
  o.total = int32_t(start[N]);
  o.sorted.assign(sorted_len, pad ? int32_t(numel) : kPoison);
  o.experts.assign(experts_len, kPoison);
  o.cumsum.assign(N + 1, kPoison);
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < numel; ++i)
    if (bucket[i] >= 0) o.sorted[next[bucket[i]]++] = int32_t(i);
  for (int e = 0; e < N; ++e)
    for (int64_t m = start[e] / bs; m < start[e + 1] / bs; ++m) o.experts[m] = e - 1;
  for (int e = 0; e < N; ++e) o.cumsum[e] = int32_t(start[e] + count[e]);
  o.cumsum[N] = o.total;
  return o;
}

struct Case {
  int tokens, topk, N, bs;
  bool pad, ignore, i64;
  std::string dist;
};

std::vector<int64_t> make_ids(const Case& c, std::mt19937_64& rng) {
  const int64_t numel = int64_t(c.tokens) * c.topk;
  std::vector<int64_t> ids(numel);
  const int experts = c.N - 1;  // bucket e holds expert e - 1
  std::uniform_int_distribution<int> ue(0, std::max(0, experts - 1));
  std::uniform_real_distribution<double> u01(0, 1);
  const int hot = ue(rng);
  for (int64_t i = 0; i < numel; ++i) {
    if (c.dist == "uniform") {
      ids[i] = ue(rng);
    } else if (c.dist == "skewed") {
      ids[i] = std::min<int64_t>(experts - 1, int64_t(experts * std::pow(u01(rng), 4.0)));
    } else if (c.dist == "one_expert") {
      ids[i] = hot;
    } else if (c.dist == "ep_mix") {
      ids[i] = u01(rng) < 0.5 ? -1 : ue(rng);
    } else {  // "invalid": out-of-range ids too
      const double r = u01(rng);
      ids[i] = r < 0.1 ? -5 - int64_t(rng() % 100) : r < 0.2 ? experts + int64_t(rng() % 100) : ue(rng);
    }
    if (experts == 0) ids[i] = -1;
  }
  return ids;
}

struct Device {
  ske::DeviceLimits dev;
  int coresident(int block, size_t smem, const void* kernel, int cluster = 0) const {
    int blocks = 0;
    CK(ske::max_coresident_blocks(&blocks, kernel, block, smem, cluster, dev.sm_count));
    return blocks;
  }
};

template <typename IdT>
struct Run {
  IdT* ids = nullptr;
  int32_t *sorted = nullptr, *experts = nullptr, *total = nullptr, *cumsum = nullptr, *counts = nullptr;
  size_t sorted_len = 0, experts_len = 0;
  int numel = 0;
  template <typename Params = ske::MoeAlignParams<IdT>>
  Params params(int N, int bs, bool pad, bool ignore) const {
    Params p{};
    p.topk_ids = ids;
    p.sorted_token_ids = sorted;
    p.expert_ids = experts;
    p.num_tokens_post_pad = total;
    p.cumsum = cumsum;
    p.block_counts = counts;
    p.numel = numel;
    p.num_buckets = N;
    p.block_size = bs;
    p.sorted_len = int32_t(sorted_len);
    p.pad_sorted_token_ids = pad;
    p.ignore_invalid_expert = ignore;
    return p;
  }
};

// sorted_token_ids slots that every input of numel pairs fits (sglang sizes it at least so).
int sorted_len_for(int numel, int N, int bs) { return int(numel + std::min(numel, N) * int64_t(bs - 1)); }

template <typename IdT>
Run<IdT> alloc(const std::vector<int64_t>& ids64, int N, int bs, int max_grid) {
  Run<IdT> r;
  r.numel = int(ids64.size());
  r.sorted_len = size_t(sorted_len_for(r.numel, N, bs));
  r.experts_len = (r.sorted_len + bs - 1) / bs;
  std::vector<IdT> h(ids64.begin(), ids64.end());
  CK(cudaMalloc(&r.ids, std::max<size_t>(1, h.size()) * sizeof(IdT)));
  if (!h.empty()) CK(cudaMemcpy(r.ids, h.data(), h.size() * sizeof(IdT), cudaMemcpyHostToDevice));
  CK(cudaMalloc(&r.sorted, (r.sorted_len + 1) * 4));
  CK(cudaMalloc(&r.experts, (r.experts_len + 1) * 4));
  CK(cudaMalloc(&r.total, 4));
  CK(cudaMalloc(&r.cumsum, (N + 1) * 4));
  CK(cudaMalloc(&r.counts, size_t(max_grid) * N * 4));
  return r;
}

template <typename IdT>
void release(Run<IdT>& r) {
  cudaFree(r.ids);
  cudaFree(r.sorted);
  cudaFree(r.experts);
  cudaFree(r.total);
  cudaFree(r.cumsum);
  cudaFree(r.counts);
}

void poison(int32_t* p, size_t n) {
  std::vector<int32_t> h(n, kPoison);
  CK(cudaMemcpy(p, h.data(), n * 4, cudaMemcpyHostToDevice));
}

std::vector<int32_t> fetch(const int32_t* p, size_t n) {
  std::vector<int32_t> h(n);
  if (n) CK(cudaMemcpy(h.data(), p, n * 4, cudaMemcpyDeviceToHost));
  return h;
}

template <typename IdT>
std::string check_plan(const Case& c, const std::vector<int64_t>& ids, const ske::MoeAlignPlan& plan) {
  Run<IdT> r = alloc<IdT>(ids, c.N, c.bs, plan.grid);
  // One extra poisoned slot after each output: nothing may land past the end.
  poison(r.sorted, r.sorted_len + 1);
  poison(r.experts, r.experts_len + 1);
  poison(r.total, 1);
  poison(r.cumsum, c.N + 1);
  poison(r.counts, size_t(plan.grid) * c.N);  // the workspace holds whatever an earlier call left
  CK(ske::launch_moe_align<IdT, 32>(r.params(c.N, c.bs, c.pad, c.ignore), plan, 0));
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  const Outputs want = model(ids, c.N, c.bs, r.sorted_len, r.experts_len, c.pad, c.ignore);
  std::string err;
  auto cmp = [&](const char* name, const std::vector<int32_t>& got, const std::vector<int32_t>& exp) {
    for (size_t i = 0; i < exp.size() && err.empty(); ++i)
      if (got[i] != exp[i])
        err = std::string(name) + "[" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
              std::to_string(exp[i]);
    if (err.empty() && got.size() > exp.size() && got[exp.size()] != kPoison) err = std::string(name) + " overrun";
  };
  cmp("sorted", fetch(r.sorted, r.sorted_len + 1), want.sorted);
  cmp("experts", fetch(r.experts, r.experts_len + 1), want.experts);
  cmp("cumsum", fetch(r.cumsum, c.N + 1), want.cumsum);
  if (err.empty() && fetch(r.total, 1)[0] != want.total) err = "total";
  release(r);
  return err;
}

template <typename IdT>
const void* kernel_of(const ske::MoeAlignPlan& plan) {
  return reinterpret_cast<const void*>(ske::moe_align_kernel_for<IdT, 32>(plan));
}

// Blocks of a plan's kernel instance that the device holds at once.
template <typename IdT = int32_t>
int coresident_blocks(const Device& d, const ske::MoeAlignPlan& plan) {
  return d.coresident(plan.block, plan.smem, kernel_of<IdT>(plan), plan.cluster);
}

// The plan the binding makes for numel pairs over N buckets (sorted_token_ids of sorted_len_for slots).
template <typename IdT = int32_t>
ske::MoeAlignPlan default_plan(const Device& d, int numel, int N, int bs) {
  return ske::plan_moe_align(numel, N, sorted_len_for(numel, N, bs), d.dev, 32,
                             [&](const ske::MoeAlignPlan& shape) { return coresident_blocks<IdT>(d, shape); });
}

int check(const Device& d) {
  std::mt19937_64 rng(std::random_device{}());
  const int tokens_set[] = {0, 1, 3, 16, 127, 128, 513, 1000, 2048, 4097, 8192, 16384, 65536};
  const int n_set[] = {2, 9, 65, 129, 257, 385, 513, 1025};
  const int bs_set[] = {1, 3, 16, 64, 128};
  const char* dists[] = {"uniform", "skewed", "one_expert", "ep_mix", "invalid"};
  int cases = 0, failures = 0;
  for (int iter = 0; iter < 400; ++iter) {
    Case c;
    c.tokens = tokens_set[rng() % std::size(tokens_set)];
    if (rng() % 2) c.tokens += int(rng() % 97);  // ragged
    c.topk = 1 + int(rng() % 10);
    c.N = n_set[rng() % std::size(n_set)];
    c.bs = bs_set[rng() % std::size(bs_set)];
    c.pad = rng() % 4 != 0;
    c.ignore = rng() % 4 == 0;
    c.i64 = rng() % 3 == 0;
    c.dist = dists[rng() % std::size(dists)];
    const auto ids = make_ids(c, rng);
    const int numel = int(ids.size());
    using ske::MoeAlignPath;
    std::vector<ske::MoeAlignPlan> plans;
    plans.push_back(c.i64 ? default_plan<int64_t>(d, numel, c.N, c.bs) : default_plan(d, numel, c.N, c.bs));
    if (numel <= ske::kBlockThreads)
      plans.push_back(ske::plan_for(MoeAlignPath::kTiny, numel, c.N, d.dev, 32, 1 + int(rng() % 9)));
    for (int threads : {32, ske::kBlockThreads, ske::kMaxBlockThreads}) {
      const int grid = rng() % 2 ? 1 : 2 + int(rng() % 8);
      const auto staged = ske::plan_for(MoeAlignPath::kStaged, numel, c.N, d.dev, 32, grid, threads);
      if (ske::staged_fits(staged, numel, d.dev)) plans.push_back(staged);
      const int ranged_grid = rng() % 4 ? grid : 2 + int(rng() % 131);
      const auto ranged =
          ske::plan_ranged(numel, c.N, sorted_len_for(numel, c.N, c.bs), d.dev, 32, ranged_grid, threads);
      if (ske::staged_fits(ranged, numel, d.dev)) plans.push_back(ranged);
    }
    for (bool stage : {true, false}) {
      plans.push_back(ske::plan_for(MoeAlignPath::kOneBlock, numel, c.N, d.dev, 32, 1, ske::kBlockThreads, stage));
      for (int threads : {ske::kBlockThreads, ske::kMaxBlockThreads}) {
        plans.push_back(
            ske::plan_for(MoeAlignPath::kExchange, numel, c.N, d.dev, 32, 2 + int(rng() % 40), threads, stage));
        if (d.dev.clusters) {
          const auto clustered = ske::plan_for(MoeAlignPath::kExchange, numel, c.N, d.dev, 32,
                                               8 * (2 + int(rng() % 11)), threads, stage, false, 8);
          if (clustered.grid <= coresident_blocks(d, clustered)) plans.push_back(clustered);
          const int blocks = 2 + int(rng() % 7);  // a grid of one cluster
          plans.push_back(
              ske::plan_for(MoeAlignPath::kExchange, numel, c.N, d.dev, 32, blocks, threads, stage, false, blocks));
        }
      }
    }
    for (const auto& plan : plans) {
      if (std::getenv("LAB_VERBOSE"))
        std::printf("run tokens=%d topk=%d N=%d bs=%d %s path=%d grid=%d block=%d\n", c.tokens, c.topk, c.N, c.bs,
                    c.dist.c_str(), int(plan.path), plan.grid, plan.block);
      const std::string err = c.i64 ? check_plan<int64_t>(c, ids, plan) : check_plan<int32_t>(c, ids, plan);
      ++cases;
      if (!err.empty()) {
        ++failures;
        if (failures <= 20)
          std::printf("FAIL tokens=%d topk=%d N=%d bs=%d pad=%d ignore=%d i64=%d %s grid=%d path=%d stage=%d "
                      "cluster=%d: %s\n",
                      c.tokens, c.topk, c.N, c.bs, c.pad, c.ignore, c.i64, c.dist.c_str(), plan.grid,
                      int(plan.path), plan.stage_pairs, plan.cluster, err.c_str());
      }
    }
  }
  std::printf("check: %d plan runs, %d failed\n", cases, failures);
  return failures == 0 ? 0 : 1;
}

// Device time per launch: a graph of kCalls launches, replayed; median over replays.
template <typename Launch>
double graph_us(Launch launch) {
  constexpr int kCalls = 20, kReps = 60;
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  launch(s);
  CK(cudaStreamSynchronize(s));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kCalls; ++i) launch(s);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 5; ++i) CK(cudaGraphLaunch(ge, s));
  std::vector<float> t;
  for (int i = 0; i < kReps; ++i) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaStreamDestroy(s));
  return t[t.size() / 2] * 1000.0 / kCalls;
}

struct Routing {
  const char* name;
  int experts, topk;
};

// The benchmark's routings (sgl_kernel_ext/bench.py MODELS).
const Routing kBenchRoutings[] = {{"DeepSeek-V3", 256, 8}, {"Qwen3-MoE", 128, 8}, {"Mixtral", 8, 2},
                                  {"Kimi-K2", 384, 8},     {"Qwen3-Next", 512, 10}};

// The numbers of a comma-separated list ("2500,3000").
std::vector<int> numbers(const char* list) {
  std::vector<int> out;
  for (const char* q = list; *q; ++q)
    if (q == list || q[-1] == ',') out.push_back(std::atoi(q));
  return out;
}

// Whether a comma-separated list holds n.
bool has_number(const char* list, int n) {
  const std::vector<int> all = numbers(list);
  return std::find(all.begin(), all.end(), n) != all.end();
}

int time_plans(const Device& d) {
  std::mt19937_64 rng(1234);
  const Routing routings[] = {
      {"DeepSeek-V3", 256, 8}, {"Qwen3-MoE", 128, 8}, {"Mixtral", 8, 2}, {"Qwen3-Next", 512, 10}};
  const int tokens_set[] = {1, 4, 16, 32, 64, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
  const char* env = std::getenv("LAB_ROUTINGS");
  std::printf("routing,tokens,bs,plan,grid,us\n");
  for (const auto& rt : routings) {
    if (env && !std::strstr(env, rt.name)) continue;
    for (int tokens : tokens_set) {
      if (const char* only = std::getenv("LAB_TOKENS"); only && !has_number(only, tokens)) continue;
      const int bs = 64;
      Case c{tokens, rt.topk, rt.experts + 1, bs, true, false, false, "uniform"};
      const auto ids = make_ids(c, rng);
      const int numel = int(ids.size());
      using ske::MoeAlignPath;
      std::vector<std::pair<std::string, ske::MoeAlignPlan>> plans;
      const auto chosen = default_plan(d, numel, c.N, bs);
      plans.push_back({"default", chosen});
      if (chosen.path == MoeAlignPath::kExchange) {  // the same grid placing the other way
        const auto other = ske::plan_for(chosen.path, numel, c.N, d.dev, 32, chosen.grid, chosen.block,
                                         !chosen.stage_pairs, chosen.packed_counts, chosen.cluster);
        if (other.stage_pairs != chosen.stage_pairs && other.grid <= coresident_blocks(d, other))
          plans.push_back({other.stage_pairs ? "default_staged" : "default_direct", other});
      }
      if (numel <= ske::kBlockThreads)
        for (int grid : {1, 2, 4, 8, 16, 32})
          plans.push_back({"tiny", ske::plan_for(MoeAlignPath::kTiny, numel, c.N, d.dev, 32, grid)});
      if (numel <= 32768) plans.push_back({"one_block", ske::plan_for(MoeAlignPath::kOneBlock, numel, c.N, d.dev, 32)});
      for (int threads : {256, 512})
        for (int grid : {1, 2, 4, 8, 16}) {
          const auto staged = ske::plan_for(MoeAlignPath::kStaged, numel, c.N, d.dev, 32, grid, threads);
          if (ske::staged_fits(staged, numel, d.dev)) plans.push_back({"staged" + std::to_string(threads), staged});
        }
      for (int threads : {ske::kBlockThreads, ske::kMaxBlockThreads})
        for (bool stage : {true, false})
          for (int g : {4, 8, 16, 32, 48, 64, 96, 128, 132, 192, 256}) {
            const auto plan = ske::plan_for(MoeAlignPath::kExchange, numel, c.N, d.dev, 32, g, threads, stage);
            const std::string name = "exchange" + std::to_string(plan.block) + (plan.stage_pairs ? "staged" : "direct");
            if (stage && !plan.stage_pairs) continue;
            if (g <= coresident_blocks(d, plan) && int64_t(g) * 512 <= numel) plans.push_back({name, plan});
            if (d.dev.clusters && g % 8 == 0 && g >= 16 && int64_t(g) * 512 <= numel) {
              const auto clustered =
                  ske::plan_for(MoeAlignPath::kExchange, numel, c.N, d.dev, 32, g, threads, stage, false, 8);
              if (g <= coresident_blocks(d, clustered)) plans.push_back({name + "cluster", clustered});
            }
          }
      int max_grid = 1;
      for (auto& pl : plans) max_grid = std::max(max_grid, pl.second.grid);
      Run<int32_t> r = alloc<int32_t>(ids, c.N, bs, max_grid);
      for (const auto& named : plans) {
        const std::string& name = named.first;
        const ske::MoeAlignPlan& plan = named.second;
        if (!check_plan<int32_t>(c, ids, plan).empty()) {
          std::printf("%s,%d,%d,%s,%d,WRONG\n", rt.name, tokens, bs, name.c_str(), plan.grid);
          continue;
        }
        const auto p = r.params(c.N, bs, true, false);
        const double us = graph_us([&](cudaStream_t s) { CK(ske::launch_moe_align<int32_t, 32>(p, plan, s)); });
        std::printf("%s,%d,%d,%s,%d,%.2f\n", rt.name, tokens, bs, name.c_str(), plan.grid, us);
      }
      release(r);
      std::fflush(stdout);
    }
  }
  return 0;
}

// Small exchanges: the default plan against grids of one cluster (2-8 blocks, no grid
// barrier), on the benchmark's routings, block sizes 16 and 64, uniform and skewed routing.
int one_cluster_sweep(const Device& d) {
  std::mt19937_64 rng(4321);
  const char* only = std::getenv("LAB_TOKENS");
  const std::vector<int> tokens_set = only ? numbers(only) : std::vector<int>{128, 256, 512, 1024, 2048, 4096, 8192};
  const char* only_routings = std::getenv("LAB_ROUTINGS");
  std::printf("routing,tokens,bs,dist,plan,grid,threads,stage,us\n");
  for (const auto& rt : kBenchRoutings)
    for (int tokens : tokens_set) {
      if (only_routings && !std::strstr(only_routings, rt.name)) continue;
      for (int bs : {16, 64})
        for (const char* dist : {"uniform", "skewed"}) {
          Case c{tokens, rt.topk, rt.experts + 1, bs, true, false, false, dist};
          const auto ids = make_ids(c, rng);
          const int numel = int(ids.size());
          std::vector<std::pair<std::string, ske::MoeAlignPlan>> plans;
          plans.push_back({"default", default_plan(d, numel, c.N, bs)});
          const auto& chosen = plans[0].second;
          for (int threads : {ske::kBlockThreads, ske::kMaxBlockThreads}) {
            const int grid = chosen.path == ske::MoeAlignPath::kStaged
                                 ? chosen.grid
                                 : ske::moe_align_write_grid(sorted_len_for(numel, c.N, bs), d.dev);
            const auto staged = ske::plan_for(ske::MoeAlignPath::kStaged, numel, c.N, d.dev, 32, grid, threads);
            if (ske::staged_fits(staged, numel, d.dev)) plans.push_back({"staged", staged});
            std::vector<int> grids = {grid, numel / 256, numel / 128, numel / 64};
            std::sort(grids.begin(), grids.end());
            grids.erase(std::unique(grids.begin(), grids.end()), grids.end());
            for (int g : grids) {
              if (g < 1 || g > d.dev.sm_count) continue;
              const auto ranged = ske::plan_ranged(numel, c.N, sorted_len_for(numel, c.N, bs), d.dev, 32, g, threads);
              if (ske::staged_fits(ranged, numel, d.dev)) plans.push_back({"ranged", ranged});
            }
          }
          for (int g : {2, 4, 8})
            for (int threads : {ske::kBlockThreads, ske::kMaxBlockThreads})
              for (bool stage : {false, true}) {
                const auto plan =
                    ske::plan_for(ske::MoeAlignPath::kExchange, numel, c.N, d.dev, 32, g, threads, stage, false, g);
                if (stage && !plan.stage_pairs) continue;
                if (g <= coresident_blocks(d, plan)) plans.push_back({"one_cluster", plan});
              }
          Run<int32_t> r = alloc<int32_t>(ids, c.N, bs, 132);
          for (const auto& named : plans) {
            const std::string& name = named.first;
            const ske::MoeAlignPlan& plan = named.second;
            const std::string err = check_plan<int32_t>(c, ids, plan);
            const auto p = r.params(c.N, bs, true, false);
            const double us =
                err.empty() ? graph_us([&](cudaStream_t s) { CK(ske::launch_moe_align<int32_t, 32>(p, plan, s)); }) : -1;
            std::printf("%s,%d,%d,%s,%s,%d,%d,%d,%.2f%s\n", rt.name, tokens, bs, dist, name.c_str(), plan.grid,
                        plan.block, plan.stage_pairs > 0, us, err.empty() ? "" : ",WRONG");
          }
          release(r);
          std::fflush(stdout);
        }
    }
  return 0;
}

__global__ void empty_kernel() {}

__global__ void barrier_kernel(int syncs, int* out) {
  for (int i = 0; i < syncs; ++i) cooperative_groups::this_grid().sync();
  if (threadIdx.x == 0 && out) out[blockIdx.x] = syncs;
}

// Latency of loads that read other blocks' stores, right after a grid barrier.
__global__ void exchange_probe(int* rows, int n, long long* clk, int* sink) {
  const int b = blockIdx.x, t = threadIdx.x;
  for (int i = t; i < n; i += blockDim.x) rows[b * n + i] = b + i;
  cooperative_groups::this_grid().sync();
  const long long c0 = clock64();
  int v = rows[((b + 1) % gridDim.x) * n + t % n];
  if (v == -1) sink[0] = v;  // keeps the load
  const long long c1 = clock64();
  int w = 0;
#pragma unroll
  for (int u = 0; u < 16; ++u) w += rows[((b + 2 + u) % gridDim.x) * n + t % n];
  if (w == -1) sink[0] = w;
  const long long c2 = clock64();
  int x = 0;
#pragma unroll
  for (int u = 0; u < 16; ++u) x += rows[((b + 3 + u) % gridDim.x) * n + (t + 7) % n];
  if (x == -1) sink[0] = x;
  const long long c3 = clock64();
  __syncthreads();
  const long long c4 = clock64();
  if (t == 0) {
    clk[b * 8 + 0] = c1 - c0;
    clk[b * 8 + 1] = c2 - c1;
    clk[b * 8 + 2] = c3 - c2;
    clk[b * 8 + 3] = c4 - c3;
  }
}

// Thread-block clusters (sm_90): what a cluster barrier and reading the cluster's
// shared-memory histograms cost, and whether a cooperative launch takes clusters.
__global__ void cluster_probe(int n, int syncs, int grid_syncs, long long* clk, int* sink) {
#if defined(SKE_CLUSTERS)
  extern __shared__ int hist[];
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  const int t = threadIdx.x;
  for (int i = t; i < n; i += blockDim.x) hist[i] = blockIdx.x + i;
  const long long c0 = clock64();
  for (int i = 0; i < syncs; ++i) cluster.sync();
  const long long c1 = clock64();
  int below = 0, all = 0;
  if (syncs > 0) {
    const int rank = int(cluster.block_rank());
    for (int e = t; e < n; e += blockDim.x) {
      int v[16];
#pragma unroll
      for (int r = 0; r < 16; ++r) v[r] = r < int(cluster.num_blocks()) ? cluster.map_shared_rank(hist, r)[e] : 0;
#pragma unroll
      for (int r = 0; r < 16; ++r) {
        all += v[r];
        if (r < rank) below += v[r];
      }
    }
  }
  const long long c2 = clock64();
  __syncthreads();
  const long long c3 = clock64();
  for (int i = 0; i < grid_syncs; ++i) cg::this_grid().sync();
  const long long c4 = clock64();
  if (syncs > 0) cluster.sync();  // no block leaves while another reads its shared memory
  if (below + all == -1) sink[0] = 1;
  if (t == 0) {
    clk[blockIdx.x * 8 + 0] = c1 - c0;
    clk[blockIdx.x * 8 + 1] = c2 - c1;
    clk[blockIdx.x * 8 + 2] = c3 - c2;
    clk[blockIdx.x * 8 + 3] = c4 - c3;
  }
#endif
}

int cluster_costs(const Device& d) {
  long long* clk;
  int* sink;
  CK(cudaMalloc(&clk, 4096 * 8 * 8));
  CK(cudaMalloc(&sink, 4));
  CK(cudaFuncSetAttribute(cluster_probe, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  CK(cudaFuncSetAttribute(cluster_probe, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
  std::printf("what,grid,threads,cluster,coop,syncs,grid_syncs,max_clusters,us,cyc_cluster_sync,cyc_dsmem,cyc_bar,cyc_grid_sync\n");
  for (int threads : {256, 512})
    for (int csize : {1, 8, 16})
      for (int grid : {64, 128})
        for (int coop : {0, 1})
          for (int syncs : {0, 1})
            for (int gs : {0, 1}) {
              if (gs && !coop) continue;
              if (syncs && csize == 1) continue;
              int n = 257;
              const size_t smem = 16 * 1024;
              cudaLaunchAttribute attrs[2];
              const cudaLaunchConfig_t cfg = ske::cluster_config(grid, threads, csize, smem, 0, coop, attrs);
              int max_clusters = -1;
              cudaOccupancyMaxActiveClusters(&max_clusters, cluster_probe, &cfg);
              cudaGetLastError();
              cudaError_t e = cudaLaunchKernelEx(&cfg, cluster_probe, n, syncs, gs, clk, sink);
              if (e == cudaSuccess) e = cudaDeviceSynchronize();
              if (e != cudaSuccess) {
                std::printf("cluster_probe,%d,%d,%d,%d,%d,%d,%d,ERROR %s\n", grid, threads, csize, coop, syncs, gs,
                            max_clusters, cudaGetErrorString(e));
                cudaGetLastError();
                continue;
              }
              const double us = graph_us([&](cudaStream_t s) {
                cudaLaunchConfig_t c2 = cfg;
                c2.stream = s;
                CK(cudaLaunchKernelEx(&c2, cluster_probe, n, syncs, gs, clk, sink));
              });
              CK(cudaLaunchKernelEx(&cfg, cluster_probe, n, syncs, gs, clk, sink));
              CK(cudaDeviceSynchronize());
              std::vector<long long> h(grid * 8);
              CK(cudaMemcpy(h.data(), clk, h.size() * 8, cudaMemcpyDeviceToHost));
              long long mx[4] = {0, 0, 0, 0};
              for (int b = 0; b < grid; ++b)
                for (int k = 0; k < 4; ++k) mx[k] = std::max(mx[k], h[b * 8 + k]);
              std::printf("cluster_probe,%d,%d,%d,%d,%d,%d,%d,%.2f,%lld,%lld,%lld,%lld\n", grid, threads, csize, coop,
                          syncs, gs, max_clusters, us, mx[0], mx[1], mx[2], mx[3]);
              std::fflush(stdout);
            }
  return 0;
}

// Straight-line code run `passes` times in one launch: cycles per pass, the first
// pass with the code cold in the multiprocessor's instruction caches, the later
// ones warm. kInstr multiply-adds in 8 independent chains (16 bytes each).
template <int kInstr>
__global__ void ifetch_probe(long long* clk, int passes, uint32_t seed, int* sink) {
  uint32_t x[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) x[j] = seed + threadIdx.x * (j + 1);
  const uint32_t k = seed | 1;
  long long t = clock64();
#pragma unroll 1
  for (int pass = 0; pass < passes; ++pass) {
#pragma unroll
    for (int i = 0; i < kInstr / 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) asm volatile("mad.lo.u32 %0, %0, %1, %2;" : "+r"(x[j]) : "r"(k), "r"(i + j));
    __syncthreads();
    const long long t1 = clock64();
    if (threadIdx.x == 0 && pass < 4) clk[blockIdx.x * 4 + pass] = t1 - t;
    t = t1;
  }
  uint32_t all = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) all ^= x[j];
  if (all == 0x12345678u) sink[0] = 1;
}

// Is a kernel that runs once per launch bound by fetching its instructions? Cycles
// per pass of kInstr instructions, first (cold) and second (warm) pass, over grids
// and block sizes: the code's bytes over the cold pass's cycles is the fetch rate.
template <int kInstr>
void ifetch_rows(const Device& d, long long* clk, int* sink) {
  for (int threads : {32, 256, 512})
    for (int grid : {1, 8, 66, 132, 264}) {
      if (grid > 132 && threads > 256) continue;
      std::vector<long long> h(grid * 4);
      ifetch_probe<kInstr><<<grid, threads>>>(clk, 2, 7u, sink);
      ifetch_probe<kInstr><<<grid, threads>>>(clk, 2, 8u, sink);  // right after the first: its clocks are kept
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(h.data(), clk, h.size() * 8, cudaMemcpyDeviceToHost));
      long long cold = 0, warm = 0;
      for (int b = 0; b < grid; ++b) {
        cold = std::max(cold, h[b * 4]);
        warm = std::max(warm, h[b * 4 + 1]);
      }
      const double us = graph_us([&](cudaStream_t s) { ifetch_probe<kInstr><<<grid, threads, 0, s>>>(clk, 1, 9u, sink); });
      std::printf("ifetch,%d,%d,%d,%d,%lld,%lld,%.1f,%.2f\n", kInstr, kInstr * 16, grid, threads, cold, warm,
                  double(cold - warm) / (kInstr * 16 / 128), us);
      std::fflush(stdout);
    }
}

int ifetch_costs(const Device& d) {
  long long* clk;
  int* sink;
  CK(cudaMalloc(&clk, 4096 * 4 * 8));
  CK(cudaMalloc(&sink, 4));
  std::printf("what,instr,bytes,grid,threads,cold_cycles,warm_cycles,extra_cycles_per_128B_line,graph_us_one_pass\n");
  ifetch_rows<512>(d, clk, sink);
  ifetch_rows<2048>(d, clk, sink);
  ifetch_rows<4096>(d, clk, sink);
  return 0;
}

// What finding a step's lanes of a bucket costs, alone: each warp runs `steps` dependent
// steps of kMode over keys spread over nkeys buckets (0: every lane its own, 1: MATCH,
// 2: a ballot per key bit, 3: one ballot, 4: lane masks in shared memory, 5: match_key, MATCH
// over the high bits and a ballot per low bit), cycles per step.
template <int kMode>
__global__ void peers_probe(int steps, int nkeys, int key_bits, long long* clk, int* sink) {
  using Mask = uint32_t;
  __shared__ Mask masks[16][264];  // nkeys <= 257
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const Mask me = 1u << lane;
  for (int i = threadIdx.x; i < 16 * 264; i += blockDim.x) masks[i / 264][i % 264] = 0;
  __syncthreads();
  uint32_t h = (blockIdx.x * 977u + threadIdx.x * 131u) | 1u;
  int acc = 0;
  const long long t0 = clock64();
#pragma unroll 1
  for (int s = 0; s < steps; ++s) {
    h = h * 1664525u + 1013904223u;
    const int key = static_cast<int>((h >> 8) % static_cast<uint32_t>(nkeys)) + (acc & 0x40000000);
    Mask peers = me;
    if constexpr (kMode == 1) peers = ske::match_any(key);
    if constexpr (kMode == 5) peers = ske::match_key<32>(key, key_bits);
    if constexpr (kMode == 2) peers = ske::match_bits<32>(key, key_bits);
    if constexpr (kMode == 3) peers = ske::match_bits<32>(key, 1);  // key & 1 only
    if constexpr (kMode == 4) {
      peers = ske::peers_by_mask<32>(masks[warp], key, true, me);
      ske::sync_warp();
      if ((peers & (me - 1)) == 0) masks[warp][key] = 0;
      ske::sync_warp();
    }
    acc += __popc(peers & (me - 1));
  }
  const long long t1 = clock64();
  if (lane == 0) clk[blockIdx.x * 16 + warp] = t1 - t0;
  if (acc == 0x7fffffff) sink[0] = acc;
}

int peers_costs(const Device& d) {
  long long* clk;
  int* sink;
  CK(cudaMalloc(&clk, 4096 * 16 * 8));
  CK(cudaMalloc(&sink, 4));
  std::printf("mode,blocks,warps_per_block,nkeys,steps,cycles_per_step_mean,cycles_per_step_max\n");
  const char* names[] = {"own_lane", "match", "ballots9", "ballot1", "shared_masks", "match_key"};
  void (*const probes[])(int, int, int, long long*, int*) = {peers_probe<0>, peers_probe<1>, peers_probe<2>,
                                                            peers_probe<3>, peers_probe<4>, peers_probe<5>};
  for (int mode = 0; mode < 6; ++mode)
    for (int warps : {1, 4, 16})
      for (int nkeys : {1, 8, 257})
        for (int steps : {3, 64}) {
          const int blocks = d.dev.sm_count;
          for (int rep = 0; rep < 2; ++rep) probes[mode]<<<blocks, warps * 32>>>(steps, nkeys, 9, clk, sink);
          CK(cudaDeviceSynchronize());
          std::vector<long long> h(blocks * 16);
          CK(cudaMemcpy(h.data(), clk, h.size() * 8, cudaMemcpyDeviceToHost));
          double sum = 0;
          long long mx = 0;
          for (int b = 0; b < blocks; ++b)
            for (int w = 0; w < warps; ++w) {
              sum += h[b * 16 + w];
              mx = std::max(mx, h[b * 16 + w]);
            }
          std::printf("%s,%d,%d,%d,%d,%.1f,%.1f\n", names[mode], blocks, warps, nkeys, steps,
                      sum / (blocks * warps) / steps, double(mx) / steps);
        }
  return 0;
}

int floor_costs(const Device& d) {
  std::printf("what,grid,us\n");
  std::printf("empty_kernel,1,%.2f\n", graph_us([](cudaStream_t s) { empty_kernel<<<1, 32, 0, s>>>(); }));
  std::printf("empty_kernel_256thr,1,%.2f\n", graph_us([](cudaStream_t s) { empty_kernel<<<1, 256, 0, s>>>(); }));
  int* out;
  CK(cudaMalloc(&out, 4096 * 4));
  for (int grid : {1, 16, 64, 132, 264}) {
    for (int syncs : {0, 1, 2, 4}) {
      const double us = graph_us([&](cudaStream_t s) {
        void* args[] = {&syncs, &out};
        CK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(barrier_kernel), grid, 256, args, 0, s));
      });
      std::printf("cooperative_%d_syncs,%d,%.2f\n", syncs, grid, us);
    }
    const double plain = graph_us([&](cudaStream_t s) { barrier_kernel<<<grid, 256, 0, s>>>(0, out); });
    std::printf("plain_0_syncs,%d,%.2f\n", grid, plain);
  }
  // Launched as the 16K-64K exchanges are: 512 threads, 20 kB of shared memory, clusters of 8
  // (cooperative where blocks meet at grid barriers).
  const size_t smem = 20 * 1024;
  CK(ske::allow_dynamic_smem(barrier_kernel, smem));
  for (int grid : {8, 120}) {
    for (int syncs : {0, 1}) {
      const bool cooperative = syncs > 0;
      for (int cluster : {1, 8}) {
        const double us = graph_us([&](cudaStream_t s) {
          void* args[] = {&syncs, &out};
          if (cluster > 1)
            CK(ske::launch_clusters(barrier_kernel, grid, 512, cluster, cooperative, args, smem, s));
          else if (cooperative)
            CK(ske::launch_cooperative(barrier_kernel, grid, 512, args, smem, s));
          else
            CK(ske::launch_plain(barrier_kernel, grid, 512, args, smem, s));
        });
        std::printf("512_threads_20kB_%s_cluster%d_%d_syncs,%d,%.2f\n", cooperative ? "cooperative" : "plain", cluster,
                    syncs, grid, us);
      }
    }
  }
  long long* clk;
  int *rows, *sink;
  CK(cudaMalloc(&clk, 4096 * 8 * 8));
  CK(cudaMalloc(&rows, 4096 * 1024 * 4));
  CK(cudaMalloc(&sink, 4));
  std::printf("probe,grid,threads,first_load,batch16,batch16_again,syncthreads\n");
  for (int grid : {32, 64}) {
    for (int threads : {256, 512}) {
      int n = 257;
      for (int rep = 0; rep < 3; ++rep) {
        void* args[] = {&rows, &n, &clk, &sink};
        CK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(exchange_probe), grid, threads, args, 0, 0));
        CK(cudaDeviceSynchronize());
      }
      std::vector<long long> h(grid * 8);
      CK(cudaMemcpy(h.data(), clk, h.size() * 8, cudaMemcpyDeviceToHost));
      std::printf("exchange_probe,%d,%d,%lld,%lld,%lld,%lld\n", grid, threads, h[0], h[1], h[2], h[3]);
    }
  }
  cudaFree(out);
  return 0;
}

// One launch between two events, median of 100, as triton's do_bench times the eager call:
// after writing a 256 MB buffer (what do_bench does to empty L2: kernel code and data then come
// from HBM) or right after the previous launch (warm).
// warm_data: after the flush, the kernel's buffers are written once more (in L2 again; its code is not).
template <typename Launch, typename WarmData>
double event_us(Launch launch, bool flush, WarmData warm_data) {
  static char* junk = nullptr;
  constexpr size_t kJunk = size_t(256) << 20;
  if (!junk) CK(cudaMalloc(&junk, kJunk));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int i = 0; i < 105; ++i) {
    if (flush) CK(cudaMemsetAsync(junk, i & 0xff, kJunk, 0));
    warm_data();
    CK(cudaEventRecord(a, 0));
    launch(cudaStream_t(0));
    CK(cudaEventRecord(b, 0));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    if (i >= 5) t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return t[t.size() / 2] * 1000.0;
}

// Where the eager call's time over the graph time goes: each default plan timed in a graph,
// alone between events, and alone between events after L2 is emptied.
int cold_costs(const Device& d) {
  std::mt19937_64 rng(11);
  std::printf("what,tokens,path,grid,graph_us,warm_us,cold_us,cold_code_us\n");
  const auto empty = [](cudaStream_t s) { empty_kernel<<<1, 32, 0, s>>>(); };
  const auto nothing = [] {};
  std::printf("empty_kernel,0,-,1,%.2f,%.2f,%.2f,-\n", graph_us(empty), event_us(empty, false, nothing),
              event_us(empty, true, nothing));
  const Routing shapes[] = {{"DeepSeek-V3", 256, 8}, {"Mixtral", 8, 2}};
  for (const auto& rt : shapes)
    for (int tokens : {1, 128, 512, 2048, 16384, 65536}) {
      Case c{tokens, rt.topk, rt.experts + 1, 64, true, false, false, "uniform"};
      const auto ids = make_ids(c, rng);
      const int numel = int(ids.size());
      const auto plan = default_plan(d, numel, c.N, 64);
      Run<int32_t> r = alloc<int32_t>(ids, c.N, 64, plan.grid);
      const auto p = r.params(c.N, 64, true, false);
      const auto launch = [&](cudaStream_t s) { CK(ske::launch_moe_align<int32_t, 32>(p, plan, s)); };
      int32_t* ids_copy;
      CK(cudaMalloc(&ids_copy, std::max(1, numel) * 4));
      const auto rewrite = [&] {
        CK(cudaMemsetAsync(r.sorted, 0, r.sorted_len * 4, 0));
        CK(cudaMemsetAsync(r.experts, 0, r.experts_len * 4, 0));
        CK(cudaMemcpyAsync(ids_copy, r.ids, size_t(numel) * 4, cudaMemcpyDeviceToDevice, 0));  // the ids into L2
      };
      std::printf("%s,%d,%d,%d,%.2f,%.2f,%.2f,%.2f\n", rt.name, tokens, int(plan.path), plan.grid, graph_us(launch),
                  event_us(launch, false, nothing), event_us(launch, true, nothing), event_us(launch, true, rewrite));
      cudaFree(ids_copy);
      release(r);
    }
  return 0;
}

// The default plan of one uniform shape (block 64), launched a few times: a target for ncu.
int one_shape(const Device& d, int experts, int topk, int tokens) {
  std::mt19937_64 rng(5);
  Case c{tokens, topk, experts + 1, 64, true, false, false, "uniform"};
  const auto ids = make_ids(c, rng);
  const int numel = int(ids.size());
  const auto plan = default_plan(d, numel, c.N, 64);
  const std::string err = check_plan<int32_t>(c, ids, plan);
  std::printf("one: path %d grid %d block %d stage_pairs %d packed %d: %s\n", int(plan.path), plan.grid, plan.block,
              plan.stage_pairs, int(plan.packed_counts), err.empty() ? "correct" : err.c_str());
  Run<int32_t> r = alloc<int32_t>(ids, c.N, 64, plan.grid);
  for (int i = 0; i < 5; ++i) CK(ske::launch_moe_align<int32_t, 32>(r.params(c.N, 64, true, false), plan, 0));
  CK(cudaDeviceSynchronize());
  release(r);
  return err.empty() ? 0 : 1;
}

#if defined(SKE_BASELINE)
// The benchmark's token counts, or LAB_AB_TOKENS=2500,3000.
std::vector<int> ab_tokens() {
  const char* list = std::getenv("LAB_AB_TOKENS");
  std::vector<int> tokens = list ? numbers(list) : std::vector<int>{};
  if (tokens.empty()) tokens = {1, 16, 128, 512, 2048, 4096, 16384, 32768, 65536};
  return tokens;
}

// Device time of the default plans, this kernel against the baseline, on the
// benchmark's shapes; the two alternate, three times each, so that drift in the
// GPU's clock shows as spread rather than as a difference.
int ab(const Device& d) {
  std::mt19937_64 rng(99);
  for (const auto kernel : ske_base::moe_align_launch_sized_kernels<int32_t, 32>())
    CK(ske_base::allow_dynamic_smem(kernel, d.dev.smem_per_block_optin));
  std::printf("routing,tokens,bs,dist,base_path,new_path,new_stage,base_us,new_us,base_spread,new_spread,new/base\n");
  for (const auto& rt : kBenchRoutings)
    for (int tokens : ab_tokens())
      for (int bs : {16, 64})
        for (const char* dist : {"uniform", "skewed"}) {
          Case c{tokens, rt.topk, rt.experts + 1, bs, true, false, false, dist};
          const auto ids = make_ids(c, rng);
          const int numel = int(ids.size()), len = sorted_len_for(numel, c.N, bs);
          const auto plan = default_plan(d, numel, c.N, bs);
          const auto base = ske_base::plan_moe_align(numel, c.N, len, d.dev, 32, [&](const ske_base::MoeAlignPlan& shape) {
            return d.coresident(shape.block, shape.smem,
                                reinterpret_cast<const void*>(ske_base::moe_align_kernel_for<int32_t, 32>(shape)),
                                shape.cluster);
          });
          const std::string err = check_plan<int32_t>(c, ids, plan);
          if (!err.empty()) {
            std::printf("%s,%d,%d,%s,WRONG %s\n", rt.name, tokens, bs, dist, err.c_str());
            continue;
          }
          Run<int32_t> r = alloc<int32_t>(ids, c.N, bs, std::max(plan.grid, base.grid));
          const auto pn = r.params(c.N, bs, true, false);
          const auto pb = r.params<ske_base::MoeAlignParams<int32_t>>(c.N, bs, true, false);
          std::vector<double> tb, tn;
          for (int rep = 0; rep < 3; ++rep) {
            tb.push_back(graph_us([&](cudaStream_t s) { CK(ske_base::launch_moe_align<int32_t, 32>(pb, base, s)); }));
            tn.push_back(graph_us([&](cudaStream_t s) { CK(ske::launch_moe_align<int32_t, 32>(pn, plan, s)); }));
          }
          std::sort(tb.begin(), tb.end());
          std::sort(tn.begin(), tn.end());
          std::printf("%s,%d,%d,%s,%d,%d,%d,%.2f,%.2f,%.2f,%.2f,%.3f\n", rt.name, tokens, bs, dist, int(base.path),
                      int(plan.path), plan.stage_pairs, tb[1], tn[1], tb[2] - tb[0], tn[2] - tn[0], tn[1] / tb[1]);
          std::fflush(stdout);
          release(r);
        }
  return 0;
}
#endif

#if defined(SKE_PHASE_CLOCKS)
__global__ void global_timer_steps(unsigned long long* out) {
  unsigned long long last = ske::ske_global_ns(), smallest = ~0ull, changes = 0;
  const unsigned long long first = last;
  for (int i = 0; i < 100000; ++i) {
    const unsigned long long t = ske::ske_global_ns();
    if (t != last) {
      smallest = t - last < smallest ? t - last : smallest;
      ++changes;
      last = t;
    }
  }
  out[0] = smallest;
  out[1] = changes;
  out[2] = last - first;
}

// The last launch's phase marks on the global timer, over all blocks: for each mark the
// earliest, median and latest block (and which block that was), in ns after the first block started.
void timeline(int grid, const char* name, int tokens, int stage_pairs) {
  std::vector<unsigned long long> ns(4096 * 16);
  CK(cudaMemcpyFromSymbol(ns.data(), ske::ske_phase_ns, ns.size() * sizeof(unsigned long long)));
  unsigned long long t0 = ~0ull;
  for (int b = 0; b < grid; ++b) t0 = std::min(t0, ns[b * 16]);
  std::vector<int> smid(grid);
  CK(cudaMemcpyFromSymbol(smid.data(), ske::ske_phase_smid, grid * sizeof(int)));
  std::vector<int> per_sm(*std::max_element(smid.begin(), smid.end()) + 1, 0);
  for (int id : smid) ++per_sm[id];
  const int sms = int(per_sm.size() - std::count(per_sm.begin(), per_sm.end(), 0));
  std::printf("timeline %s %d tokens stage_pairs %d, %d blocks on %d multiprocessors (up to %d on one)"
              " (ns after the first block's start: min/median/max over the blocks):",
              name, tokens, stage_pairs, grid, sms, *std::max_element(per_sm.begin(), per_sm.end()));
  for (int k = 0; k < 8; ++k) {
    std::vector<long long> v;
    for (int b = 0; b < grid; ++b)
      if (ns[b * 16 + k] >= t0) v.push_back(static_cast<long long>(ns[b * 16 + k] - t0));
    if (v.size() != size_t(grid)) continue;
    int last = 0;
    for (int b = 1; b < grid; ++b)
      if (ns[b * 16 + k] > ns[last * 16 + k]) last = b;
    std::sort(v.begin(), v.end());
    std::printf(" p%d %lld/%lld/%lld(b%d)", k, v.front(), v[v.size() / 2], v.back(), last);
  }
  std::printf("\n");
}

// Cycles between the kernel's phase marks, for a few shapes (lab builds with -DSKE_PHASE_CLOCKS).
int phases(const Device& d) {
  std::mt19937_64 rng(7);
  {
    unsigned long long* dev_out;
    unsigned long long out[3];
    CK(cudaMalloc(&dev_out, sizeof(out)));
    global_timer_steps<<<1, 1>>>(dev_out);
    CK(cudaMemcpy(out, dev_out, sizeof(out), cudaMemcpyDeviceToHost));
    CK(cudaFree(dev_out));
    std::printf("global timer: smallest step %llu ns, %llu steps in %llu ns\n", out[0], out[1], out[2]);
  }
  struct Shape {
    const char* name;
    int experts, topk, tokens, grid;
    bool exchange;
  };
  const Shape shapes[] = {{"Mixtral", 8, 2, 1, 1, false},          {"DeepSeek-V3", 256, 8, 1, 1, false},
                          {"Qwen3-Next", 512, 10, 1, 1, false},    {"DeepSeek-V3", 256, 8, 128, 1, false},
                          {"DeepSeek-V3", 256, 8, 512, 1, false},  {"Mixtral", 8, 2, 16384, 0, true},
                          {"DeepSeek-V3", 256, 8, 16384, 0, true}, {"DeepSeek-V3", 256, 8, 65536, 0, true},
                          {"Qwen3-Next", 512, 10, 65536, 0, true}};
  std::printf(
      "shape,tokens,grid,threads,cluster,stage_pairs,block,p0-1 count,p1-2 rows,p2-3 barrier,p3-4 sum,p4-5 scan,p5-6 ends,"
      "p6-7 place,total\n");
  for (const auto& sh : shapes) {
    Case c{sh.tokens, sh.topk, sh.experts + 1, 64, true, false, false, "uniform"};
    const auto ids = make_ids(c, rng);
    const int numel = int(ids.size());
    const auto chosen = sh.exchange ? default_plan(d, numel, c.N, 64)
                                    : ske::plan_for(ske::MoeAlignPath::kOneBlock, numel, c.N, d.dev, 32, sh.grid);
    Run<int32_t> r = alloc<int32_t>(ids, c.N, 64, chosen.grid);
    for (bool stage : {true, false}) {
      const auto plan =
          ske::plan_for(chosen.path, numel, c.N, d.dev, 32, chosen.grid, chosen.block, stage, true, chosen.cluster);
      if (stage && !plan.stage_pairs) continue;
      std::vector<long long> clk(4096 * 16);
      for (int rep = 0; rep < 3; ++rep) {
        CK(ske::launch_moe_align<int32_t, 32>(r.params(c.N, 64, true, false), plan, 0));
        CK(cudaDeviceSynchronize());
      }
      CK(cudaMemcpyFromSymbol(clk.data(), ske::ske_phase_clocks, clk.size() * sizeof(long long)));
      if (sh.exchange) timeline(plan.grid, sh.name, sh.tokens, plan.stage_pairs);
      for (int b : {0, plan.grid / 2, plan.grid - 1}) {
        const long long* t = &clk[b * 16];
        std::printf("%s,%d,%d,%d,%d,%d,%d,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld\n", sh.name, sh.tokens, plan.grid,
                    plan.block, plan.cluster, plan.stage_pairs, b, t[1] - t[0], t[2] - t[1], sh.exchange ? t[3] - t[2] : 0,
                    sh.exchange ? t[4] - t[3] : t[4] - t[2], t[5] - t[4], t[6] - t[5], t[7] - t[6], t[7] - t[0]);
        if (plan.grid == 1) break;
      }
    }
    release(r);
  }
  std::printf("staged,tokens,dist,bs,threads,p0-1 load,p1-2 rank,p2-3 scan,p3-4 stage,p4-5 write,total\n");
  const Shape staged_shapes[] = {{"DeepSeek-V3", 256, 8, 16, 1, false},  {"DeepSeek-V3", 256, 8, 128, 1, false},
                                 {"DeepSeek-V3", 256, 8, 512, 1, false}, {"Qwen3-MoE", 128, 8, 512, 1, false},
                                 {"Mixtral", 8, 2, 2048, 1, false},      {"Qwen3-Next", 512, 10, 128, 1, false},
                                 {"Qwen3-Next", 512, 10, 512, 1, false}};
  for (const auto& sh : staged_shapes)
    for (const char* dist : {"uniform", "skewed"})
      for (int bs : {16, 64}) {
        Case c{sh.tokens, sh.topk, sh.experts + 1, bs, true, false, false, dist};
        const auto ids = make_ids(c, rng);
        const int numel = int(ids.size());
        const auto plan = ske::plan_moe_align(numel, c.N, sorted_len_for(numel, c.N, bs), d.dev, 32,
                                              [](const ske::MoeAlignPlan&) { return 1; });
        if (plan.path != ske::MoeAlignPath::kStaged) continue;
        Run<int32_t> r = alloc<int32_t>(ids, c.N, bs, 1);
        std::vector<long long> clk(16);
        for (int rep = 0; rep < 3; ++rep) {
          CK(ske::launch_moe_align<int32_t, 32>(r.params(c.N, bs, true, false), plan, 0));
          CK(cudaDeviceSynchronize());
        }
        CK(cudaMemcpyFromSymbol(clk.data(), ske::ske_phase_clocks, clk.size() * sizeof(long long)));
        const long long* t = clk.data();
        std::printf("%s,%d,%s,%d,%d,%lld,%lld,%lld,%lld,%lld,%lld\n", sh.name, sh.tokens, dist, bs, plan.block,
                    t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3], t[5] - t[4], t[5] - t[0]);
        release(r);
      }
  // The ranged kernel on the default plan's grid (a staged plan's below the ranged path's sizes):
  // block 0 and the block that took longest.
  std::printf("ranged,tokens,dist,bs,grid,threads,block,p0-1 count,p1-2 scan,p2-3 queue,p3-4 rank,p4-5 place,p5-6 write,total\n");
  for (const auto& sh : staged_shapes)
    for (const char* dist : {"uniform", "skewed"})
      for (int bs : {16, 64}) {
        Case c{sh.tokens, sh.topk, sh.experts + 1, bs, true, false, false, dist};
        const auto ids = make_ids(c, rng);
        const int numel = int(ids.size()), len = sorted_len_for(numel, c.N, bs);
        const auto chosen = ske::plan_moe_align(numel, c.N, len, d.dev, 32, [](const ske::MoeAlignPlan&) { return 1; });
        if (chosen.path != ske::MoeAlignPath::kStaged && chosen.path != ske::MoeAlignPath::kRanged) continue;
        const auto plan = ske::plan_ranged(numel, c.N, len, d.dev, 32, chosen.grid, chosen.block);
        Run<int32_t> r = alloc<int32_t>(ids, c.N, bs, 1);
        std::vector<long long> clk(4096 * 16);
        for (int rep = 0; rep < 3; ++rep) {
          CK(ske::launch_moe_align<int32_t, 32>(r.params(c.N, bs, true, false), plan, 0));
          CK(cudaDeviceSynchronize());
        }
        CK(cudaMemcpyFromSymbol(clk.data(), ske::ske_phase_clocks, clk.size() * sizeof(long long)));
        int slowest = 0;
        for (int b = 0; b < plan.grid; ++b)
          if (clk[b * 16 + 6] - clk[b * 16] > clk[slowest * 16 + 6] - clk[slowest * 16]) slowest = b;
        for (int b : {0, slowest}) {
          const long long* t = &clk[b * 16];
          std::printf("%s,%d,%s,%d,%d,%d,%d,%lld,%lld,%lld,%lld,%lld,%lld,%lld\n", sh.name, sh.tokens, dist, bs,
                      plan.grid, plan.block, b, t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3], t[5] - t[4],
                      t[6] - t[5], t[6] - t[0]);
        }
        release(r);
      }
  return 0;
}
#endif

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a run killed by a timeout keeps what it printed
  Device d;
  CK(cudaSetDevice(0));
  CK(ske::query_device(0, &d.dev));
  if (std::getenv("LAB_NO_CLUSTERS")) d.dev.clusters = false;  // the plain exchange where clusters would be planned
  for (const auto kernel : ske::moe_align_launch_sized_kernels<int32_t, 32>())
    CK(ske::allow_dynamic_smem(kernel, d.dev.smem_per_block_optin));
  for (const auto kernel : ske::moe_align_launch_sized_kernels<int64_t, 32>())
    CK(ske::allow_dynamic_smem(kernel, d.dev.smem_per_block_optin));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("# %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  const std::string what = argc > 1 ? argv[1] : "check";
  if (what == "check") return check(d);
  if (what == "time") return time_plans(d);
  if (what == "small") return one_cluster_sweep(d);
  if (what == "floor") return floor_costs(d);
  if (what == "cold") return cold_costs(d);
  if (what == "cluster") return cluster_costs(d);
  if (what == "ifetch") return ifetch_costs(d);
  if (what == "peers") return peers_costs(d);
  if (what == "one" && argc == 5) return one_shape(d, std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]));
#if defined(SKE_PHASE_CLOCKS)
  if (what == "phases") return phases(d);
#endif
#if defined(SKE_BASELINE)
  if (what == "ab") return ab(d);
#endif
  std::fprintf(stderr, "usage: kernel_lab check|time|small|floor|cold|cluster|ifetch|peers|phases|ab|one E K T\n");
  return 2;
}
