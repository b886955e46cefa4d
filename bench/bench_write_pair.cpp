// SPDX-License-Identifier: Apache-2.0
// Scenario: the writer's cost paired with the limit's. The write scenario's ratio to the limit
// comes from two benchmarks run at different moments, and on a shared machine the noise between
// them moves it by more than the differences worth measuring. Here each iteration overwrites the
// same phase_ops keys (shuffled order, as the write scenario) on the limit (absl's
// insert_or_assign into one unsynchronized map) and on the map, in batches of `batch` that the
// map publishes, one phase after the other, the order alternating; the figure is the median over
// the iterations of the limit's phase time over the map's. Ours only (both reader modes): the
// writer target is about ours; the write scenario has every peer.
//
// Batches of 1 and 16 (each applied with every operation prefetched up front in both copies on
// the larger maps), 64 and 1024 (prefetched ahead as they are applied).
// Name: write_pair/<map>/<u64|str16>/<1K|1M|16M>/batch:<n>/real_time (16M: u64 only)
// Counters: ratio = median over pairs of (limit's phase time / map's phase time): the map's
// write rate as a fraction of the limit's. items/s: overwrites of both phases.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "measure.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

/// Overwrites per phase: a whole number of batches, long beside the clock reads.
constexpr std::size_t phase_ops(std::size_t batch) { return std::max<std::size_t>(batch, 16384); }

template <class Map, class Key, std::size_t N>
void bm_write_pair(benchmark::State& state, std::size_t batch) {
  using limit = limit_map<Key>;
  limit& base = fixture<limit, Key, N>();
  Map& m = fixture<Map, Key, N>();
  const std::vector<Key>& keys = write_keys<Key, N>();
  const std::size_t ops = phase_ops(batch);
  std::size_t at = 0;
  value_t v = 0;
  // One phase: `ops` overwrites from keys[from], in batches; returns its time in seconds.
  const auto run_phase = [&](auto& map, std::size_t from) {
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t i = from;
    for (std::size_t done = 0; done < ops; done += batch) {
      map.write_batch([&](const auto& put) {
        for (std::size_t b = 0; b < batch; ++b) {
          put(keys[i], ++v);
          if (++i == keys.size()) i = 0;
        }
      });
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  lrbench::alternating_pairs pairs;
  for (auto _ : state) {
    pairs.run([&] { return run_phase(base, at); }, [&] { return run_phase(m, at); });
    at = (at + ops) % keys.size();
  }
  lrbench::set_pair_counters(state, pairs);
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(2 * ops));
  set_label(state, m);
}

template <class Key, std::size_t N>
void register_size() {
  for_each_map<Key>([]<class Map>() {
    if constexpr (is_ours<Map>) {
      for (std::size_t batch : {std::size_t{1}, std::size_t{16}, std::size_t{64}, std::size_t{1024}}) {
        const std::string name = "write_pair/" + std::string(Map::name) + "/" + std::string(key_name<Key>) +
                                 "/" + size_name(N) + "/batch:" + std::to_string(batch);
        benchmark::RegisterBenchmark(name.c_str(), &bm_write_pair<Map, Key, N>, batch)->UseRealTime();
      }
    }
  });
}

[[maybe_unused]] const bool registered = [] {
  register_size<std::uint64_t, small_n>();
  register_size<std::uint64_t, large_n>();
  register_size<std::uint64_t, dram_n>();
  register_size<std::string, small_n>();
  register_size<std::string, large_n>();
  return true;
}();

}  // namespace
}  // namespace lrbench
