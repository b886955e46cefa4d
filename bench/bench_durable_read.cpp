// SPDX-License-Identifier: Apache-2.0
// Scenario: reads of a durable map against reads of an in-memory one. Both maps are built the
// same way (N entries inserted in one batch, published twice so that both copies hold them);
// one from make_map(), one from open_map() (durability::sync, the default; the read path does
// not depend on the mode). The benchmark then looks up the same shuffled present keys through
// the map_reader each returned, one guard per lookup, no writer running. The ratio of the two
// rates is the claim "readers are as fast as for an in-memory map".
//
// Name: durable_read/leftright/<memory|sync>/u64/<1K|1M>/hit/guard1/real_time
// One iteration = 16 lookups; items/s = lookups per second.
//
// The two run a few seconds apart on a shared machine, so the ratio also runs as a pair: both
// maps built, then one loop that times 256 lookups (16 guards' worth of 16) on one reader, then
// the same keys on the other (which goes first alternates). Counters: lookups_per_s and
// base_lookups_per_s (the in-memory map's), rate_ratio = lookups_per_s / base_lookups_per_s.
// The control runs the same pair with a second make_map() map in place of the durable one: two
// maps that differ in nothing but where their memory landed, so its distance from 1.00 is what
// placement and noise alone give on this machine.
// Name: durable_pair/<read_vs_memory|read_control>/u64/<1K|1M>/real_time
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "durable_adapters.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

using reader_t = leftright::map_reader<std::uint64_t, std::uint64_t>;

template <class Writer>
void fill(Writer& w, const std::vector<std::uint64_t>& keys) {
  for (std::size_t i = 0; i < keys.size(); ++i) w.insert_or_assign(keys[i], i);
  w.publish();
  w.publish();
}

template <std::size_t N>
void bm_read(benchmark::State& state, bool durable) {
  const std::vector<std::uint64_t>& present = present_keys<std::uint64_t, N>();
  const std::vector<std::uint64_t>& keys = lookup_keys<std::uint64_t, N, 0>();
  try {
    scratch_dir dir("read");
    std::optional<leftright::map_writer<std::uint64_t, std::uint64_t>> mem;
    std::optional<leftright::durable_writer<std::uint64_t, std::uint64_t>> dur;
    std::optional<reader_t> r;
    if (durable) {
      leftright::durable_options o;
      o.path = dir.path() / "map";
      auto [w, rd] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
      dur.emplace(std::move(w));
      r.emplace(std::move(rd));
      fill(*dur, present);
    } else {
      auto [w, rd] = leftright::make_map<std::uint64_t, std::uint64_t>();
      mem.emplace(std::move(w));
      r.emplace(std::move(rd));
      fill(*mem, present);
    }
    const std::size_t len = keys.size();
    std::size_t i = 0;
    for (auto _ : state) {
      const std::uint64_t* k = &keys[i];
      for (std::size_t j = 0; j < block; ++j) {
        auto g = r->read();
        const std::uint64_t* v = g.find(k[j]);
        benchmark::DoNotOptimize(v == nullptr ? miss_value : *v);
      }
      i += block;
      if (i == len) i = 0;
    }
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(block));
    if (durable) state.SetLabel("fs=" + fs_type(dir.path()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

template <std::size_t N>
void bm_read_pair(benchmark::State& state, bool durable) {
  const std::vector<std::uint64_t>& present = present_keys<std::uint64_t, N>();
  const std::vector<std::uint64_t>& keys = lookup_keys<std::uint64_t, N, 0>();
  constexpr std::size_t span = 16 * block;  // lookups per timed stretch
  try {
    scratch_dir dir("read-pair");
    auto [mw, mr] = leftright::make_map<std::uint64_t, std::uint64_t>();
    fill(mw, present);
    std::optional<leftright::map_writer<std::uint64_t, std::uint64_t>> mem2;
    std::optional<leftright::durable_writer<std::uint64_t, std::uint64_t>> dur;
    std::optional<reader_t> other;
    if (durable) {
      leftright::durable_options o;
      o.path = dir.path() / "map";
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
      dur.emplace(std::move(w));
      other.emplace(std::move(r));
      fill(*dur, present);
    } else {
      auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t>();
      mem2.emplace(std::move(w));
      other.emplace(std::move(r));
      fill(*mem2, present);
    }
    const reader_t& dr = *other;
    const auto stretch = [&](const reader_t& r, std::size_t at) {
      const auto t0 = std::chrono::steady_clock::now();
      for (std::size_t j = 0; j < span; ++j) {
        auto g = r.read();
        const std::uint64_t* v = g.find(keys[at + j]);
        benchmark::DoNotOptimize(v == nullptr ? miss_value : *v);
      }
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    double mem_s = 0, dur_s = 0;
    bool durable_first = false;
    std::size_t i = 0;
    for (auto _ : state) {
      if (durable_first) {
        dur_s += stretch(dr, i);
        mem_s += stretch(mr, i);
      } else {
        mem_s += stretch(mr, i);
        dur_s += stretch(dr, i);
      }
      durable_first = !durable_first;
      i += span;
      if (i + span > keys.size()) i = 0;
    }
    const double n = static_cast<double>(state.iterations()) * span;
    state.counters["lookups_per_s"] = dur_s > 0 ? n / dur_s : 0;
    state.counters["base_lookups_per_s"] = mem_s > 0 ? n / mem_s : 0;
    state.counters["rate_ratio"] = (dur_s > 0 && mem_s > 0) ? mem_s / dur_s : 0;
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(2 * span));
    state.SetLabel("fs=" + fs_type(dir.path()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

template <std::size_t N>
void add() {
  for (bool durable : {false, true}) {
    const std::string name = std::string("durable_read/leftright/") + (durable ? "sync" : "memory") +
                             "/u64/" + size_name(N) + "/hit/guard1";
    benchmark::RegisterBenchmark(name.c_str(), &bm_read<N>, durable)->UseRealTime();
  }
  for (bool durable : {true, false}) {
    const std::string name = std::string("durable_pair/") + (durable ? "read_vs_memory" : "read_control") +
                             "/u64/" + size_name(N);
    benchmark::RegisterBenchmark(name.c_str(), &bm_read_pair<N>, durable)->UseRealTime()->MinTime(0.5);
  }
}

[[maybe_unused]] const bool registered = [] {
  add<small_n>();
  add<large_n>();
  return true;
}();

}  // namespace
}  // namespace lrbench
