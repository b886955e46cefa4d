// SPDX-License-Identifier: Apache-2.0
// Scenario: how long publish() takes, ours only (the peers have no publish). Each iteration
// queues one overwrite in the 1K map and publishes it; every publish() call is timed on its
// own, and the p50/p99/p99.9 of those samples are reported as counters (nanoseconds). Run with
// no reader and with one reader thread doing back-to-back lookups, one guard per lookup (it is
// the reader the writer has to wait for, and, in asymmetric mode, the CPU membarrier has to
// interrupt).
//
// Name: publish/<lr_seq_cst|lr_asym>/<key>/1K/readers:<0|1>/real_time
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

template <class Map, class Key, std::size_t N>
void bm_publish(benchmark::State& state, int readers) {
  Map& m = fixture<Map, Key, N>();
  auto& w = m.writer();
  const std::vector<Key>& wkeys = write_keys<Key, N>();

  std::atomic<bool> stop{false};
  std::uint64_t reader_lookups = 0;
  double reader_seconds = 0;
  std::thread reader_thread;
  if (readers > 0) {
    reader_thread = std::thread([&] {
      typename Map::reader r(m);
      const std::vector<Key>& keys = lookup_keys<Key, N, 0>();
      std::size_t i = 0;
      std::uint64_t n = 0;
      const auto t0 = std::chrono::steady_clock::now();
      // [B2] relaxed: stop flag, no data published through it (join() orders the counts).
      while (!stop.load(std::memory_order_relaxed)) {
        for (std::size_t j = 0; j < block; ++j) benchmark::DoNotOptimize(r.get(keys[i + j]));
        i += block;
        if (i == keys.size()) i = 0;
        n += block;
      }
      reader_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      reader_lookups = n;
    });
  }

  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(std::min<benchmark::IterationCount>(state.max_iterations, 1 << 22)));
  std::size_t i = 0;
  value_t v = 0;
  for (auto _ : state) {
    w.insert_or_assign(wkeys[i], ++v);
    if (++i == wkeys.size()) i = 0;
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(w.publish());
    const auto t1 = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  // [B2] relaxed: stop flag, no data published through it (join() orders the counts).
  stop.store(true, std::memory_order_relaxed);
  if (reader_thread.joinable()) reader_thread.join();

  std::sort(samples.begin(), samples.end());
  state.counters["p50_ns"] = quantile(samples, 0.50);
  state.counters["p99_ns"] = quantile(samples, 0.99);
  state.counters["p999_ns"] = quantile(samples, 0.999);
  if (readers > 0 && reader_seconds > 0) {
    state.counters["reader_lookups_per_s"] = static_cast<double>(reader_lookups) / reader_seconds;
  }
  state.SetItemsProcessed(state.iterations());
  set_label(state, m);
}

template <class Key>
void register_key() {
  for_each_map<Key>([]<class Map>() {
    if constexpr (requires(Map& m) { m.writer().publish(); }) {
      for (int readers : {0, 1}) {
        const std::string name = "publish/" + std::string(Map::name) + "/" +
                                 std::string(key_name<Key>) + "/" + size_name(small_n) +
                                 "/readers:" + std::to_string(readers);
        benchmark::RegisterBenchmark(name.c_str(), &bm_publish<Map, Key, small_n>, readers)
            ->UseRealTime();
      }
    }
  });
}

[[maybe_unused]] const bool registered = [] {
  register_key<std::uint64_t>();
  register_key<std::string>();
  return true;
}();

}  // namespace
}  // namespace lrbench
