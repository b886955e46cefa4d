// SPDX-License-Identifier: Apache-2.0
// Scenario: handle-free reads. shared_map::get (any thread, no handle: the thread's reader is
// found through a one-entry thread-local cache) against map_reader::get (a reader handle the
// thread holds), on the same keys, paired as lookup_pair pairs a map with the limit: each
// iteration runs the same lookups through both, one phase after the other (the order
// alternating), every thread in the same phase at once, and records the ratio of the phases'
// times; the figure is the median of those ratios.
//
// Both maps hold the same entries (uint64_t keys -> uint64_t values, default traits), both
// copies full and the log empty. The lookups are lookup_pair's: the shuffled present keys (all
// hits), 1K and 1M maps, 1 and 2 threads, one read per lookup, the value copied out
// (std::optional<value_t>, as both get()s return).
//
// Name: shared_pair/<u64>/<1K|1M>/hit/real_time/threads:<n>
// Counters: ratio = median over pairs of (handle phase time / shared_map phase time): the
// handle-free rate as a fraction of the handle path's (target >= 0.95).
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <leftright/shared_map.hpp>

#include "adapters.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

/// The two maps of one size, filled alike.
template <class Key>
struct both_maps {
  using shared_t = leftright::shared_map<Key, value_t, hash_t<Key>>;
  using writer_t = leftright::map_writer<Key, value_t, hash_t<Key>>;

  explicit both_maps(const std::vector<Key>& keys)
      : writer(leftright::make_map<Key, value_t, hash_t<Key>>().first), factory(writer.factory()) {
    for (std::size_t i = 0; i < keys.size(); ++i) writer.insert_or_assign(keys[i], value_t{i});
    writer.publish();
    writer.publish();
    fill_shared(shared, keys);
  }

  writer_t writer;
  typename writer_t::factory_type factory;
  shared_t shared;
};

/// The handle path the handle-free reads are paired with.
enum class baseline {
  own,    ///< a map_reader of the shared_map's own map (shared_map::factory()): the same table
  other,  ///< a map_reader of a second map filled alike: another table, as measured until 2026-12-05
  control ///< not shared_map at all: the second map's handle against a handle of the shared_map's
          ///< own map, on the same keys as `other`: what two tables differ by with one path
};
constexpr const char* baseline_name(baseline b) {
  switch (b) {
    case baseline::own: return "own";
    case baseline::other: return "other";
    case baseline::control: return "control";
  }
  return "?";
}

/// One phase, out of line: both phases are compiled alike. Left to GCC 12, the handle's loop was
/// inlined into bm_shared_pair and shared_map's was not, and the two loops differed by more than
/// their reads (2026-12-05, 1K: the out-of-line one kept the hash's 128-bit product on the
/// stack, three memory operations per lookup that the handle's loop did not have).
template <class Key, class Get>
[[gnu::noinline]] void read_phase(const std::vector<Key>& keys, std::size_t from, std::size_t count, const Get& get) {
  lookup_phase(keys, from, count, get);
}

template <class Key, std::size_t N, baseline B>
void bm_shared_pair(benchmark::State& state) {
  auto& maps = fixture<both_maps<Key>, Key, N>();
  const std::vector<Key>& keys = lookup_keys<Key, N, 0>();
  const auto own_handle = maps.shared.factory().make_reader();
  const auto other_handle = maps.factory.make_reader();
  const auto& handle = B == baseline::own ? own_handle : other_handle;
  const auto& shared = maps.shared;
  constexpr std::size_t phase = N > 65536 ? 16384 : 65536;
  std::size_t at = thread_start(state, keys.size());
  // On one table (own) the phase run second would find the first one's lines in the cache (on
  // the 1M map), so the two phases read windows of the key sequence as far apart as the
  // threads' windows allow. On two tables each phase reads its own lines: the same keys.
  const std::size_t apart =
      B == baseline::own ? keys.size() / (2 * static_cast<std::size_t>(state.threads())) / block * block : 0;
  const alternating_pairs r = run_pairs(
      state, [&] { read_phase(keys, at, phase, [&handle](const Key& k) { return handle.get(k); }); },
      [&] {
        const std::size_t from = (at + apart) % keys.size();
        if constexpr (B == baseline::control) {
          read_phase(keys, from, phase, [&own_handle](const Key& k) { return own_handle.get(k); });
        } else {
          read_phase(keys, from, phase, [&shared](const Key& k) { return shared.get(k); });
        }
      },
      [&] { at = (at + phase) % keys.size(); });
  set_pair_counters(state, r);
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(2 * phase));
}

template <class Key, std::size_t N, baseline B>
void add() {
  const std::string name = "shared_pair/" + std::string(key_name<Key>) + "/" + size_name(N) + "/hit/" + baseline_name(B);
  benchmark::RegisterBenchmark(name.c_str(), &bm_shared_pair<Key, N, B>)
      ->ThreadRange(1, 2)
      ->UseRealTime()
      ->Setup(setup_pair_barrier)
      ->Teardown(teardown_pair_barrier);
}

[[maybe_unused]] const bool registered = [] {
  add<std::uint64_t, small_n, baseline::own>();
  add<std::uint64_t, large_n, baseline::own>();
  add<std::uint64_t, small_n, baseline::other>();
  add<std::uint64_t, large_n, baseline::other>();
  add<std::uint64_t, small_n, baseline::control>();
  add<std::uint64_t, large_n, baseline::control>();
  return true;
}();

}  // namespace
}  // namespace lrbench
