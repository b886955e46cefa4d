// SPDX-License-Identifier: Apache-2.0
// Scenario: publish latency while one reader keeps a guard for 100 ms at a time (a long read),
// publish() against publish_within(1 ms), on maps of 1K and 1M u64 entries. The writer makes one
// overwrite and one publish per millisecond (a steady feed); every publish call is timed on its
// own, and the p50/p99/max of those samples are reported as counters (nanoseconds), with the most
// copies held at once and the resident memory the run added at its peak (MiB, from
// /proc/self/statm, against the same map before the run).
// The reader: take a guard, sleep 100 ms inside it, leave, sleep 1 ms outside, again.
//
// Name: long_read/<publish|publish_within_1ms>/u64/<1K|1M>/real_time
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <leftright/map.hpp>

namespace lrbench {
namespace {

using namespace std::chrono_literals;

/// Resident memory of this process in bytes (0 if /proc is not there).
double resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long pages = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &pages, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<double>(resident) * 4096.0 : 0;
}

/// Nearest-rank q-quantile of sorted samples.
double nearest_rank(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

void bm_long_read(benchmark::State& state, bool within, std::size_t n) {
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t>(n);
  w.set_stall_report(0ns);  // the waits are the point here: no report
  w.set_held_copy_limit(1024);
  for (std::uint64_t k = 0; k < n; ++k) w.insert_or_assign(k, k);
  w.publish();
  w.publish();  // both copies filled
  const double rss_before = resident_bytes();

  std::atomic<bool> stop{false};
  std::thread reader([&stop, reader = w.make_reader()] {
    // [B1] relaxed: stop flag, no data published through it (join() orders the rest).
    while (!stop.load(std::memory_order_relaxed)) {
      {
        const auto g = reader.read();
        benchmark::DoNotOptimize(g.find(std::uint64_t{1}));
        std::this_thread::sleep_for(100ms);
      }
      std::this_thread::sleep_for(1ms);
    }
  });

  std::vector<double> samples;
  std::size_t most_held = 0;
  double rss_peak = rss_before;
  std::uint64_t k = 0;
  auto next = std::chrono::steady_clock::now();
  for (auto _ : state) {
    w.insert_or_assign(k, k + 1);
    k = (k + 7919) % n;
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(within ? w.publish_within(1ms) : w.publish());
    const auto t1 = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    most_held = std::max(most_held, w.held_copies());
    if (w.held_copies() > 0) rss_peak = std::max(rss_peak, resident_bytes());
    next = std::max(next + 1ms, t1);
    std::this_thread::sleep_until(next);
  }
  stop.store(true, std::memory_order_relaxed);  // [B1]
  reader.join();

  std::sort(samples.begin(), samples.end());
  state.counters["p50_ns"] = nearest_rank(samples, 0.50);
  state.counters["p99_ns"] = nearest_rank(samples, 0.99);
  state.counters["max_ns"] = samples.empty() ? 0 : samples.back();
  state.counters["most_held"] = static_cast<double>(most_held);
  state.counters["extra_rss_MiB"] = (rss_peak - rss_before) / (1024.0 * 1024.0);
  state.SetItemsProcessed(state.iterations());
}

[[maybe_unused]] const bool registered = [] {
  for (const std::size_t n : {std::size_t{1} << 10, std::size_t{1} << 20}) {
    for (const bool within : {false, true}) {
      const std::string name = std::string("long_read/") + (within ? "publish_within_1ms" : "publish") +
                               "/u64/" + (n == 1024 ? "1K" : "1M");
      benchmark::RegisterBenchmark(name.c_str(), &bm_long_read, within, n)->UseRealTime()->MinTime(2.0);
    }
  }
  return true;
}();

}  // namespace
}  // namespace lrbench
