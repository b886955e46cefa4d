// SPDX-License-Identifier: Apache-2.0
// Scenario: lookups paired with the limit. The ratio to the limit that the lookup scenario gives
// comes from two benchmarks run at different moments; on a shared machine the noise between
// them (another tenant's burst, a neighbour filling the L3) moves that ratio by ±0.15. Here each
// iteration runs the same lookups on the limit and on the map, one phase after the other (the
// order alternating), every thread in the same phase at once (a barrier between phases), and
// records the ratio of the two phases' times; the figure is the median of those ratios. A burst
// then spoils a few pairs, not the ratio, and two maps compare through their ratios to the same
// limit (the report's "ahead of every peer" verdict).
//
// Workloads: the lookup scenario's read-only ones: uint64_t and ~16-byte std::string keys, 1K
// and 1M maps, all hits or 10% misses, one guard per lookup ("guard1") or, for maps whose guard
// can span lookups, one per 16 ("guard16"; the limit's phase is the same lookups unguarded).
// Each phase: phase_lookups(N) lookups of the shuffled key sequence, the same keys in both
// phases of a pair.
//
// Name: lookup_pair/<map>/<u64|str16>/<size>/<hit|miss10>/<guard1|guard16>/real_time/threads:<n>
// Counters: ratio = median over pairs of (limit's phase time / map's phase time), averaged over
// the threads: the map's lookup rate as a fraction of the limit's. items/s: all lookups, both
// phases.
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "measure.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

/// The threads of the running pair benchmark meet here between phases (made in its Setup).
std::unique_ptr<std::barrier<>> phase_barrier;

void setup_pair(const benchmark::State& state) {
  phase_barrier = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(state.threads()));
}
void teardown_pair(const benchmark::State&) { phase_barrier.reset(); }

/// Lookups per phase: about 0.2-0.5 ms on this machine, long beside the barrier, short beside
/// a burst of noise.
constexpr std::size_t phase_lookups(std::size_t n) { return n > 65536 ? 16384 : 65536; }

template <class Map, class Key, std::size_t N, unsigned MissPercent, bool Guard16>
void bm_pair(benchmark::State& state) {
  using limit = limit_map<Key>;
  const limit& base = fixture<limit, Key, N>();
  Map& m = fixture<Map, Key, N>();
  const std::vector<Key>& keys = lookup_keys<Key, N, MissPercent>();
  typename limit::reader rb(base);
  typename Map::reader rm(m);
  const std::size_t len = keys.size();
  constexpr std::size_t phase = phase_lookups(N);
  std::size_t at = thread_start(state, len);
  // One phase: the same `phase` lookups from `from`, timed after every thread has arrived.
  const auto run_phase = [&](const auto& r, std::size_t from) {
    phase_barrier->arrive_and_wait();
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t i = from;
    for (std::size_t done = 0; done < phase; done += block) {
      const Key* k = &keys[i];
      if constexpr (Guard16) {
        r.batch([k](const auto& get) {
          for (std::size_t j = 0; j < block; ++j) benchmark::DoNotOptimize(get(k[j]));
        });
      } else {
        for (std::size_t j = 0; j < block; ++j) benchmark::DoNotOptimize(r.get(k[j]));
      }
      i += block;
      if (i == len) i = 0;
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  lrbench::alternating_pairs pairs;
  for (auto _ : state) {
    pairs.run([&] { return run_phase(rb, at); }, [&] { return run_phase(rm, at); });
    at = (at + phase) % len;  // len is a multiple of block, and so is phase
  }
  lrbench::set_pair_counters(state, pairs);
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(2 * phase));
  if (state.thread_index() == 0) set_label(state, m);
}

template <class Map, class Key, std::size_t N, unsigned MissPercent, bool Guard16>
void add() {
  const std::string name = "lookup_pair/" + std::string(Map::name) + "/" + std::string(key_name<Key>) + "/" +
                           size_name(N) + "/" + (MissPercent == 0 ? "hit" : "miss10") + "/" +
                           (Guard16 ? "guard16" : "guard1");
  benchmark::RegisterBenchmark(name.c_str(), &bm_pair<Map, Key, N, MissPercent, Guard16>)
      ->ThreadRange(1, 2)
      ->UseRealTime()
      ->Setup(setup_pair)
      ->Teardown(teardown_pair);
}

template <class Key, std::size_t N, unsigned MissPercent, bool Guard16>
void add_all_maps() {
  for_each_map<Key>([]<class Map>() {
    if constexpr (is_limit<Map>) {
      add<epoch_floor_map<Key>, Key, N, MissPercent, Guard16>();
    } else if constexpr (!Guard16 || Map::has_guard) {
      add<Map, Key, N, MissPercent, Guard16>();
    }
  });
}

template <class Key>
void register_key() {
  for_each_read_workload([]<std::size_t N, unsigned MissPercent, bool Guard16>() {
    add_all_maps<Key, N, MissPercent, Guard16>();
  });
}

[[maybe_unused]] const bool registered = [] {
  register_key<std::uint64_t>();
  register_key<std::string>();
  return true;
}();

}  // namespace
}  // namespace lrbench
