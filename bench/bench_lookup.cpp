// SPDX-License-Identifier: Apache-2.0
// Scenario: lookups with no writer. Every map, both key types, a 1K and a 1M map, all hits or
// 10% misses, 1 and 2 reader threads (real time, so items/s is the total rate of all threads),
// one guard per lookup ("guard1") or, where a guard can span lookups, one per 16 ("guard16").
// Beside the maps, the epoch floor (adapters.hpp): the limit's table read through the barest
// per-read epoch protocol, how close any left-right reader can come to the limit here.
//
// Name: lookup/<map>/<key>/<size>/<hit|miss10>/<guard1|guard16>/real_time/threads:<n>
// One iteration = 16 lookups; items/s = lookups per second.
#include <cstddef>
#include <string>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

template <class Map, class Key, std::size_t N, unsigned MissPercent, bool Guard16>
void bm_lookup(benchmark::State& state) {
  Map& m = fixture<Map, Key, N>();
  const std::vector<Key>& keys = lookup_keys<Key, N, MissPercent>();
  typename Map::reader r(m);
  const std::size_t len = keys.size();
  std::size_t i = thread_start(state, len);
  for (auto _ : state) {
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
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(block));
  if (state.thread_index() == 0) set_label(state, m);
}

template <class Map, class Key, std::size_t N, unsigned MissPercent, bool Guard16>
void add() {
  const std::string name = "lookup/" + std::string(Map::name) + "/" + std::string(key_name<Key>) +
                           "/" + size_name(N) + "/" + (MissPercent == 0 ? "hit" : "miss10") + "/" +
                           (Guard16 ? "guard16" : "guard1");
  benchmark::RegisterBenchmark(name.c_str(), &bm_lookup<Map, Key, N, MissPercent, Guard16>)
      ->ThreadRange(1, 2)
      ->UseRealTime();
}

template <class Key, std::size_t N, unsigned MissPercent, bool Guard16>
void add_all_maps() {
  for_each_map<Key>([]<class Map>() {
    if constexpr (!Guard16 || Map::has_guard) add<Map, Key, N, MissPercent, Guard16>();
    if constexpr (is_limit<Map>) add<epoch_floor_map<Key>, Key, N, MissPercent, Guard16>();  // after the limit
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
