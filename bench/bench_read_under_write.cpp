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
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
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
