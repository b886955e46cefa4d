// SPDX-License-Identifier: Apache-2.0
// Scenario: mixed reads and writes in the cache shapes of YCSB, every operation from any thread
// through each map's thread-safe API (ours: the handle-free shared_map; a write call returns
// once published). u64 keys, 1M entries, Zipfian popularity (YCSB's generator in workload.hpp,
// theta 0.99):
//   B: 95% reads, 5% updates (insert_or_assign of a present key), keys scrambled Zipfian
//   D: 95% reads of the latest keys (the newest inserted is the most popular), 5% inserts of new
//      keys
// Each thread runs its own pre-generated stream of operations; 1 and 2 threads.
//
// ycsb_pair: ours and one peer on the same operations, paired as lookup_pair pairs a map with
// the limit: each iteration runs a phase of pair_phase_ops operations on each map, one after the
// other (the order alternating), every thread in the same phase at once (a barrier between
// phases); the figure is the median over pairs of (peer's phase time / ours). This scenario's
// rates move by 2x between runs on a shared host, every map together, so "ahead of every peer"
// is read from these ratios (above 1: ours is ahead), not from two separate benchmarks.
//
// Name: ycsb/<B|D>/<map>/real_time/threads:<n>; items/s = operations per second (all threads).
//       ycsb_pair/<B|D>/<peer>/real_time/threads:<n>; ratio = ours against the peer (see above).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <leftright/shared_map.hpp>

#include "adapters.hpp"
#include "measure.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

struct op {
  bool write;
  std::uint64_t rank;
};

/// A thread's stream: 64K operations, 5% writes, Zipfian ranks.
const std::vector<op>& stream(int thread) {
  static const zipfian z(large_n);
  static std::vector<std::vector<op>> streams = [] {
    std::vector<std::vector<op>> s(2);
    for (std::size_t t = 0; t < s.size(); ++t) {
      std::mt19937_64 rng(1234 + t);
      for (int i = 0; i < (1 << 16); ++i) s[t].push_back(op{rng() % 100 < 5, z(rng)});
    }
    return s;
  }();
  return streams[static_cast<std::size_t>(thread) % streams.size()];
}

constexpr char shared_name[] = "lr_shared";
constexpr char shared_seq_name[] = "lr_shared_seq";

/// The handle-free map, behind the operations this scenario needs: with the default reader
/// barrier (lr_shared: asymmetric where the kernel allows, so each publish costs the writer a
/// membarrier), and with seq_cst (lr_shared_seq: a fence in every read, none in a publish).
template <class Traits, const char* Name>
struct shared_ycsb {
  static constexpr std::string_view name = Name;
  static constexpr bool handle_free = true;
  using map_t = leftright::shared_map<std::uint64_t, value_t, hash_t<std::uint64_t>, std::equal_to<std::uint64_t>, Traits>;
  explicit shared_ycsb(const std::vector<std::uint64_t>& keys) { fill_shared(m, keys); }
  [[gnu::always_inline]] value_t get(const std::uint64_t& k) const { return m.get(k).value_or(miss_value); }
  void put(const std::uint64_t& k, value_t v) { m.insert_or_assign(k, v); }
  map_t m;
};

/// A peer, through its adapter: a reader per thread, one write_batch per write.
template <class Peer>
struct peer_ycsb {
  static constexpr std::string_view name = Peer::name;
  static constexpr bool handle_free = false;
  explicit peer_ycsb(const std::vector<std::uint64_t>& keys) : m(keys) {}
  Peer m;
};

template <class Map>
struct inserted_count {
  static inline std::atomic<std::uint64_t> n{0};  // keys inserted by D so far (relaxed: a count)
};

/// Runs n operations of ops from at (moved on, wrapping) through get and put, in workload W's
/// shape; inserted counts the keys D has inserted into this map so far.
template <char W, class Get, class Put>
void run_ops(const std::vector<op>& ops, std::size_t& at, std::size_t n, std::atomic<std::uint64_t>& inserted,
             Get&& get, Put&& put) {
  for (std::size_t j = 0; j < n; ++j) {
    const op& o = ops[at];
    at = at + 1 == ops.size() ? 0 : at + 1;
    if constexpr (W == 'B') {
      const std::uint64_t key = make_key<std::uint64_t>(splitmix64(o.rank) % large_n);
      if (o.write) put(key, value_t{o.rank}); else benchmark::DoNotOptimize(get(key));
    } else {
      // relaxed: a count of keys inserted; the map orders the inserts themselves.
      const std::uint64_t latest = large_n + inserted.load(std::memory_order_relaxed);
      if (o.write) {
        // relaxed: as above; each insert takes a fresh number.
        put(make_key<std::uint64_t>(large_n + inserted.fetch_add(1, std::memory_order_relaxed)), value_t{o.rank});
      } else {
        benchmark::DoNotOptimize(get(make_key<std::uint64_t>(latest - 1 - o.rank % latest)));
      }
    }
  }
}

/// Calls f(get, put) with m's read and write calls for this thread (a peer's reader made here).
template <class Map, class F>
void with_calls(Map& m, F&& f) {
  if constexpr (Map::handle_free) {
    f([&m](std::uint64_t k) { return m.get(k); }, [&m](std::uint64_t k, value_t v) { m.put(k, v); });
  } else {
    typename decltype(m.m)::reader r(m.m);
    f([&r](std::uint64_t k) { return r.get(k); },
      [&m](std::uint64_t k, value_t v) { m.m.write_batch([&](const auto& put) { put(k, v); }); });
  }
}

template <class Map, char Workload>
void bm_ycsb(benchmark::State& state) {
  Map& m = fixture<Map, std::uint64_t, large_n>();
  const std::vector<op>& ops = stream(state.thread_index());
  std::size_t at = (ops.size() / 2) * static_cast<std::size_t>(state.thread_index());
  with_calls(m, [&](auto&& get, auto&& put) {
    for (auto _ : state) run_ops<Workload>(ops, at, 1024, inserted_count<Map>::n, get, put);
  });
  state.SetItemsProcessed(state.iterations() * 1024);
}

/// Operations per phase and thread: one pass over the thread's stream (65,536: 3-15 ms here),
/// timed after an untimed pass over the same operations. A phase starts with the other map's
/// lines in the caches; the warming pass brings its own back, so that the timed pass meets the
/// steady state ycsb measures (which cycles over the same stream), whatever each map's size.
/// Without it, phases of 16,384 operations put libcuckoo, the smallest table, at 1.7x the
/// ratio of the unpaired runs, and phases of 262,144 still at 1.5x.
constexpr std::size_t pair_phase_ops = std::size_t{1} << 16;

using ours_ycsb = shared_ycsb<leftright::default_traits, shared_name>;

/// A map of one peer's pair benchmarks (ours or the peer's), apart from every other benchmark's:
/// D inserts into both maps of a pair alike, so that neither grows by another benchmark's
/// inserts (with one map of ours for every peer, ours grew about four times as fast).
template <class Map, class Peer>
struct pair_map : Map {
  using Map::Map;
};

template <class Peer, char Workload>
void bm_ycsb_pair(benchmark::State& state) {
  using ours_t = pair_map<ours_ycsb, Peer>;
  using peer_t = pair_map<Peer, Peer>;
  ours_t& ours = fixture<ours_t, std::uint64_t, large_n>();
  peer_t& peer = fixture<peer_t, std::uint64_t, large_n>();
  const std::vector<op>& ops = stream(state.thread_index());
  const std::size_t start = (ops.size() / 2) * static_cast<std::size_t>(state.thread_index());
  alternating_pairs pairs;  // the peer is the baseline: above 1, ours is ahead
  with_calls(ours, [&](auto&& our_get, auto&& our_put) {
    with_calls(peer, [&](auto&& peer_get, auto&& peer_put) {
      // One phase: the thread's operations on one map, once to warm it up, then again, timed;
      // every thread starts each pass together (workload.hpp's pair_barrier). run_pairs has no
      // untimed part in a phase, hence this loop.
      const auto phase = [&](auto&& inserted, auto&& get, auto&& put) {
        std::size_t at = start;
        pair_barrier->arrive_and_wait();
        run_ops<Workload>(ops, at, pair_phase_ops, inserted, get, put);
        at = start;
        pair_barrier->arrive_and_wait();
        const auto t0 = std::chrono::steady_clock::now();
        run_ops<Workload>(ops, at, pair_phase_ops, inserted, get, put);
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      };
      for (auto _ : state) {
        pairs.run([&] { return phase(inserted_count<peer_t>::n, peer_get, peer_put); },
                  [&] { return phase(inserted_count<ours_t>::n, our_get, our_put); });
      }
    });
  });
  set_pair_counters(state, pairs);
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(4 * pair_phase_ops));
}

/// Registers <scenario>/<B|D>/<map> (w: the workload) at 1 and 2 threads, in real time.
benchmark::internal::Benchmark* register_mix(const char* scenario, char w, std::string_view map,
                                             void (*fn)(benchmark::State&)) {
  const std::string name = std::string(scenario) + "/" + std::string(1, w) + "/" + std::string(map);
  return benchmark::RegisterBenchmark(name.c_str(), fn)->ThreadRange(1, 2)->UseRealTime();
}

template <class Map>
void add() {
  for (char w : {'B', 'D'}) register_mix("ycsb", w, Map::name, w == 'B' ? &bm_ycsb<Map, 'B'> : &bm_ycsb<Map, 'D'>);
}

template <class Peer>
void add_pair() {
  for (char w : {'B', 'D'}) {
    register_mix("ycsb_pair", w, Peer::name, w == 'B' ? &bm_ycsb_pair<Peer, 'B'> : &bm_ycsb_pair<Peer, 'D'>)
        ->Setup(setup_pair_barrier)
        ->Teardown(teardown_pair_barrier);
  }
}

/// Calls f.template operator()<Peer>() for each peer of this build.
template <class F>
void for_each_peer(F&& f) {
  f.template operator()<peer_ycsb<shared_mutex_map<std::uint64_t>>>();
  f.template operator()<peer_ycsb<absl_mutex_map<std::uint64_t>>>();
#if LEFTRIGHT_BENCH_WITH_TBB
  f.template operator()<peer_ycsb<tbb_map<std::uint64_t>>>();
#endif
#if LEFTRIGHT_BENCH_WITH_CUCKOO
  f.template operator()<peer_ycsb<cuckoo_map<std::uint64_t>>>();
#endif
}

[[maybe_unused]] const bool registered = [] {
  add<shared_ycsb<leftright::default_traits, shared_name>>();
  add<shared_ycsb<seq_cst_traits, shared_seq_name>>();
  for_each_peer([]<class Peer>() { add<Peer>(); });
  for_each_peer([]<class Peer>() { add_pair<Peer>(); });
  return true;
}();

}  // namespace
}  // namespace lrbench
