// Host-only check of the launch planner (plan_moe_align), built with nvcc and run on a
// machine without a GPU by tests/cpu/test_planner.py. For device limits like an H200's, an
// A100's and an MI300X's, and shapes from 0 to 600,000 pairs over 2 to 1,025 buckets, every
// plan must be launchable (shared memory, registers, grid, co-residency) and the ranged path
// must be taken exactly where README.md says. Prints "FAIL ..." lines and exits 1 on any.
#include <cstdio>
#include <string>

#include "../../sgl_kernel_ext/csrc/moe_align.cuh"

namespace {

int failures = 0;

void fail(const char* device, int numel, int buckets, int block_size, const ske::MoeAlignPlan& plan,
          const std::string& why) {
  if (++failures <= 20)
    std::printf("FAIL %s numel=%d buckets=%d block_size=%d path=%d grid=%d block=%d smem=%zu: %s\n", device, numel,
                buckets, block_size, int(plan.path), plan.grid, plan.block, plan.smem, why.c_str());
}

// Blocks co-resident on the whole device: at most 2,048 threads and the shared memory per multiprocessor.
int coresident(const ske::DeviceLimits& dev, const ske::MoeAlignPlan& plan) {
  const int by_threads = 2048 / plan.block;
  const int by_smem = plan.smem == 0 ? by_threads : static_cast<int>(size_t(dev.smem_per_block_optin) / plan.smem);
  return std::min(by_threads, by_smem) * dev.sm_count;
}

}  // namespace

int main() {
  struct Device {
    const char* name;
    ske::DeviceLimits limits;
  };
  const Device devices[] = {{"H200", {132, 32, 232448, true, true}},
                            {"A100", {108, 32, 166912, true, false}},
                            {"MI300X", {304, 64, 65536, true, false}}};
  const int buckets_set[] = {2, 9, 65, 129, 257, 258, 385, 513, 1025};
  const int block_sizes[] = {1, 16, 64, 128, 256};
  int plans = 0, ranged = 0;
  for (const Device& d : devices) {
    const ske::DeviceLimits& dev = d.limits;
    const bool h200 = std::string(d.name) == "H200";
    for (int buckets : buckets_set)
      for (int block_size : block_sizes)
        for (int numel = 0; numel <= 600000; numel += numel < 10000 ? 97 : numel < 70000 ? 997 : 9973) {
          const int sorted_len = numel + std::min(numel, buckets) * (block_size - 1);
          const ske::MoeAlignPlan plan = ske::plan_moe_align(
              numel, buckets, sorted_len, dev, dev.warp_size,
              [&](const ske::MoeAlignPlan& shape) { return coresident(dev, shape); });
          ++plans;
          const auto check = [&](bool ok, const char* why) {
            if (!ok) fail(d.name, numel, buckets, block_size, plan, why);
          };
          check(plan.smem <= size_t(dev.smem_per_block_optin), "shared memory over the device's limit");
          check(plan.grid >= 1 && plan.block >= dev.warp_size && plan.block <= ske::kMaxBlockThreads &&
                    plan.block % dev.warp_size == 0,
                "grid or block out of range");
          const bool in_registers = plan.path == ske::MoeAlignPath::kStaged || plan.path == ske::MoeAlignPath::kRanged;
          if (in_registers) {
            check(int64_t(plan.block) * ske::kSteps >= numel, "pairs do not fit the block's registers");
            check(plan.grid <= dev.sm_count, "more blocks than multiprocessors");
          }
          if (ske::has_grid_barrier(plan)) check(plan.grid <= coresident(dev, plan), "grid not co-resident");
          if (plan.stage_pairs > 0)
            check(ske::slice_packs(plan.stage_pairs, buckets), "a staged slice that pack_key cannot hold");
          // moe_align.cuh, kClusterDirectSteps: the cluster exchange that places directly takes one
          // round of keys per lane in 512-thread blocks on an H200, at most two in 256-thread ones.
          if (plan.cluster > 1 && plan.stage_pairs == 0 && h200)
            check(plan.per_warp <= (plan.block == ske::kMaxBlockThreads ? 1 : 2) * ske::kClusterDirectSteps * dev.warp_size,
                  "cluster direct plan takes more rounds than documented");
          if (plan.path == ske::MoeAlignPath::kRanged) {
            ++ranged;
            check(int64_t(ske::block_slots_for(sorted_len, plan.grid)) * plan.grid >= sorted_len,
                  "room for a share smaller than sorted_len / grid");
          }
          // README.md, How it works: over more than 64 buckets from 3,072 pairs, up to 4,096 over at
          // most 256 buckets, else up to 8,192 (where the plan fits shared memory).
          const bool documented = buckets > 64 && numel >= 3072 && numel <= (buckets > 256 ? 8192 : 4096);
          if (plan.path == ske::MoeAlignPath::kRanged) check(documented, "ranged outside its documented sizes");
          const bool fits = ske::plan_ranged(numel, buckets, sorted_len, dev, dev.warp_size, 1, ske::kMaxBlockThreads)
                                .smem <= size_t(dev.smem_per_block_optin);
          if (documented && h200 && buckets <= 1025 && fits)
            check(plan.path == ske::MoeAlignPath::kRanged, "not ranged where documented");
        }
  }
  std::printf("%d plans checked, %d ranged, %d failed\n", plans, ranged, failures);
  return failures == 0 && ranged > 0 ? 0 : 1;
}
