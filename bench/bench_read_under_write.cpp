// SPDX-License-Identifier: Apache-2.0
// Scenario: one reader thread (the benchmark's) looks up hits in the 1M map while one writer
// thread streams overwrites of existing keys as fast as it can. Ours publishes every 1, 64 or
// 1024 operations; the lock-based maps hold their exclusive lock for as many operations (the
// same amortisation); TBB, libcuckoo and liburcu have no batches and run once, per operation.
// One reader only: with the writer that fills this machine's 2 cores.
//
// Name: read_under_write/<map>/<key>/1M/publish_every:<n>/real_time/threads:1
// One iteration = 0.5 ms of lookups (a time slice: a starved reader cannot stretch the run);
// items/s = the reader's lookups per second; counters writer_ops_per_s and writer_batches_per_s
// are the writer's rates over its own lifetime (started before the timed loop, stopped after).
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
#include "measure.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

/// The reader's iteration: look up for this long (checking the clock every 4 x 16 lookups).
constexpr std::chrono::microseconds slice{500};
constexpr std::size_t blocks_per_check = 4;

struct writer_result {
  std::uint64_t ops = 0;
  std::uint64_t batches = 0;
  double seconds = 0;
};

/// The writer thread's body: overwrite existing keys, batch ops per write_batch, until stopped.
template <class Map, class Key, std::size_t N>
writer_result stream_writes(Map& m, std::size_t batch, const std::atomic<bool>& stop) {
  Map::register_thread();
  const std::vector<Key>& keys = write_keys<Key, N>();
  writer_result res;
  std::size_t i = 0;
  value_t v = 0;
  const auto t0 = std::chrono::steady_clock::now();
  // [B1] relaxed: stop flag, no data published through it (join() orders the result).
  while (!stop.load(std::memory_order_relaxed)) {
    m.write_batch([&](const auto& put) {
      for (std::size_t b = 0; b < batch; ++b) {
        put(keys[i], ++v);
        if (++i == keys.size()) i = 0;
      }
    });
    res.ops += batch;
    ++res.batches;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.settle();  // RCU callbacks run before the next benchmark measures anything
  return res;
}

template <class Map, class Key, std::size_t N>
void bm_read_under_write(benchmark::State& state, std::size_t batch) {
  Map& m = fixture<Map, Key, N>();
  const std::vector<Key>& keys = lookup_keys<Key, N, 0>();
  typename Map::reader r(m);

  std::atomic<bool> stop{false};
  writer_result wres;
  std::thread writer([&] { wres = stream_writes<Map, Key, N>(m, batch, stop); });

  const std::size_t len = keys.size();
  std::size_t i = thread_start(state, len);
  std::int64_t lookups = 0;
  for (auto _ : state) {
    // One iteration is a time slice, not a count of lookups: a lock-based map can starve its
    // reader for long stretches, and a count picked while the reader was lucky would then run
    // for minutes. items/s stays lookups per second.
    const auto until = std::chrono::steady_clock::now() + slice;
    do {
      for (std::size_t b = 0; b < blocks_per_check; ++b) {
        const Key* k = &keys[i];
        for (std::size_t j = 0; j < block; ++j) benchmark::DoNotOptimize(r.get(k[j]));
        i += block;
        if (i == len) i = 0;
      }
      lookups += static_cast<std::int64_t>(blocks_per_check * block);
    } while (std::chrono::steady_clock::now() < until);
  }
  // [B1] relaxed: stop flag, no data published through it (join() orders the result).
  stop.store(true, std::memory_order_relaxed);
  writer.join();

  state.SetItemsProcessed(lookups);
  const double secs = wres.seconds > 0 ? wres.seconds : 1;
  state.counters["writer_ops_per_s"] = benchmark::Counter(static_cast<double>(wres.ops) / secs);
  state.counters["writer_batches_per_s"] =
      benchmark::Counter(static_cast<double>(wres.batches) / secs);
  set_label(state, m);
}

// ------------------------------------------------------------------------------------------
// Paired: read_under_write_pair/<map>/<key>/1M/publish_every:<n>/real_time/threads:1, ours
// only. The target ("readers under a writer keep >= 0.5x the 1-thread limit") compares two rates
// the scenario above measures at different moments. Here every iteration runs the same
// pair_lookups lookups twice: on the limit with the writer paused, then on our map while the
// writer streams overwrites (the order alternating). The writer parks on an atomic between
// phases and says so, and the reader starts a phase's clock only once the writer is parked or
// running, so no writing spills into a limit phase. Counter ratio: median over the pairs of
// (limit's phase time / map's phase time).
// ------------------------------------------------------------------------------------------

/// Lookups per phase: about 1-2 ms on the 1M map, long beside a writer's batch of 1024.
constexpr std::size_t pair_lookups = 32768;

/// The writer between phases: runs while `run` is true, parks (blocked in atomic::wait) while it
/// is false, and reports which it is doing in `running`.
struct writer_gate {
  std::atomic<bool> run{false};
  std::atomic<bool> running{false};
  std::atomic<bool> stop{false};

  /// Reader side: start or park the writer, and wait until it has.
  void set(bool on) {
    // [B2] seq_cst: the writer's wait and our wait below must see each other's stores.
    run.store(on, std::memory_order_seq_cst);
    run.notify_one();
    // [B2] seq_cst: see above; the writer's acknowledgement.
    while (running.load(std::memory_order_seq_cst) != on) std::this_thread::yield();
  }
  void shut() {
    // [B2] seq_cst: as in set(); the writer leaves its loop at its next look.
    stop.store(true, std::memory_order_seq_cst);
    run.store(true, std::memory_order_seq_cst);
    run.notify_one();
  }
  /// Writer side: true to write one more batch, false to leave. Parks while run is false.
  bool proceed() {
    // [B2] seq_cst: pairs with set() and shut().
    if (!run.load(std::memory_order_seq_cst)) {
      running.store(false, std::memory_order_seq_cst);  // [B2]
      run.wait(false, std::memory_order_seq_cst);       // [B2]
    }
    // [B2] seq_cst: pairs with shut().
    if (stop.load(std::memory_order_seq_cst)) return false;
    running.store(true, std::memory_order_seq_cst);  // [B2]
    return true;
  }
};

template <class Map, class Key, std::size_t N>
void bm_read_under_write_pair(benchmark::State& state, std::size_t batch) {
  using limit = limit_map<Key>;
  const limit& base = fixture<limit, Key, N>();
  Map& m = fixture<Map, Key, N>();
  const std::vector<Key>& keys = lookup_keys<Key, N, 0>();
  typename limit::reader rb(base);
  typename Map::reader rm(m);

  writer_gate gate;
  std::thread writer([&] {
    Map::register_thread();
    const std::vector<Key>& wkeys = write_keys<Key, N>();
    std::size_t i = 0;
    value_t v = 0;
    while (gate.proceed()) {
      m.write_batch([&](const auto& put) {
        for (std::size_t b = 0; b < batch; ++b) {
          put(wkeys[i], ++v);
          if (++i == wkeys.size()) i = 0;
        }
      });
    }
    m.settle();
  });

  const std::size_t len = keys.size();
  std::size_t at = 0;
  const auto run_phase = [&](const auto& r, bool with_writer) {
    gate.set(with_writer);
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t i = at;
    for (std::size_t done = 0; done < pair_lookups; done += block) {
      const Key* k = &keys[i];
      for (std::size_t j = 0; j < block; ++j) benchmark::DoNotOptimize(r.get(k[j]));
      i += block;
      if (i == len) i = 0;
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  lrbench::alternating_pairs pairs;
  for (auto _ : state) {
    pairs.run([&] { return run_phase(rb, false); }, [&] { return run_phase(rm, true); });
    at = (at + pair_lookups) % len;  // len is a multiple of block, and so is pair_lookups
  }
  gate.shut();
  writer.join();

  lrbench::set_pair_counters(state, pairs);
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(2 * pair_lookups));
  set_label(state, m);
}

template <class Key>
void register_key() {
  for_each_map<Key>([]<class Map>() {
    if constexpr (!is_limit<Map>) {
      for (std::size_t batch : {std::size_t{1}, std::size_t{64}, std::size_t{1024}}) {
        if (batch > 1 && !Map::batches_writes) continue;
        const std::string name = "read_under_write/" + std::string(Map::name) + "/" +
                                 std::string(key_name<Key>) + "/" + size_name(large_n) +
                                 "/publish_every:" + std::to_string(batch);
        benchmark::RegisterBenchmark(name.c_str(), &bm_read_under_write<Map, Key, large_n>, batch)
            ->Threads(1)
            ->UseRealTime();
        if constexpr (is_ours<Map>) {
          const std::string pair = "read_under_write_pair/" + std::string(Map::name) + "/" +
                                   std::string(key_name<Key>) + "/" + size_name(large_n) +
                                   "/publish_every:" + std::to_string(batch);
          benchmark::RegisterBenchmark(pair.c_str(), &bm_read_under_write_pair<Map, Key, large_n>, batch)
              ->Threads(1)
              ->UseRealTime();
        }
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
