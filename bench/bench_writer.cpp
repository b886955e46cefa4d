// SPDX-License-Identifier: Apache-2.0
// Scenario: the writer's cost per operation, no readers running. Each iteration overwrites
// `batch` existing keys (shuffled order) and makes them visible: ours publishes, the lock-based
// maps take their exclusive lock once per batch; TBB, libcuckoo and liburcu make every operation
// visible on its own and run with batch 1 only. The limit is absl's insert_or_assign of the same
// keys into one unsynchronized map, run at every batch size (the same loop, nothing to publish).
//
// Name: write/<map>/<key>/<1K|1M>/batch:<n>/real_time
// items/s = overwrites per second.
#include <cstddef>
#include <string>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

template <class Map, class Key, std::size_t N>
void bm_write(benchmark::State& state, std::size_t batch) {
  Map& m = fixture<Map, Key, N>();
  Map::register_thread();
  const std::vector<Key>& keys = write_keys<Key, N>();
  std::size_t i = 0;
  value_t v = 0;
  for (auto _ : state) {
    m.write_batch([&](const auto& put) {
      for (std::size_t b = 0; b < batch; ++b) {
        put(keys[i], ++v);
        if (++i == keys.size()) i = 0;
      }
    });
  }
  m.settle();  // after the timed loop: RCU callbacks run before the next benchmark
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(batch));
  set_label(state, m);
}

template <class Key, std::size_t N>
void register_size() {
  for_each_map<Key>([]<class Map>() {
    for (std::size_t batch : {std::size_t{1}, std::size_t{16}, std::size_t{64}, std::size_t{1024}}) {
      // The limit runs at every batch size too, so each row compares the same loop.
      if (batch > 1 && !Map::batches_writes && !is_limit<Map>) continue;
      const std::string name = "write/" + std::string(Map::name) + "/" +
                               std::string(key_name<Key>) + "/" + size_name(N) +
                               "/batch:" + std::to_string(batch);
      benchmark::RegisterBenchmark(name.c_str(), &bm_write<Map, Key, N>, batch)->UseRealTime();
    }
  });
}

[[maybe_unused]] const bool registered = [] {
  register_size<std::uint64_t, small_n>();
  register_size<std::uint64_t, large_n>();
  register_size<std::string, small_n>();
  register_size<std::string, large_n>();
  return true;
}();

}  // namespace
}  // namespace lrbench
