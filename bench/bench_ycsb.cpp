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
// Name: ycsb/<B|D>/<map>/real_time/threads:<n>; items/s = operations per second (all threads).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <leftright/shared_map.hpp>

#include "adapters.hpp"
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
  value_t get(const std::uint64_t& k) const { return m.get(k).value_or(miss_value); }
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

template <class Map, char Workload>
void bm_ycsb(benchmark::State& state) {
  Map& m = fixture<Map, std::uint64_t, large_n>();
  const std::vector<op>& ops = stream(state.thread_index());
  auto& inserted = inserted_count<Map>::n;
  std::size_t at = (ops.size() / 2) * static_cast<std::size_t>(state.thread_index());
  const auto run = [&](auto&& get, auto&& put) {
    for (auto _ : state) {
      for (std::size_t j = 0; j < 1024; ++j) {
        const op& o = ops[at];
        at = at + 1 == ops.size() ? 0 : at + 1;
        if constexpr (Workload == 'B') {
          const std::uint64_t key = make_key<std::uint64_t>(splitmix64(o.rank) % large_n);
          if (o.write) put(key, value_t{o.rank}); else benchmark::DoNotOptimize(get(key));
        } else {
          const std::uint64_t latest = large_n + inserted.load(std::memory_order_relaxed);
          if (o.write) {
            put(make_key<std::uint64_t>(large_n + inserted.fetch_add(1, std::memory_order_relaxed)), value_t{o.rank});
          } else {
            benchmark::DoNotOptimize(get(make_key<std::uint64_t>(latest - 1 - o.rank % latest)));
          }
        }
      }
    }
  };
  if constexpr (Map::handle_free) {
    run([&m](std::uint64_t k) { return m.get(k); }, [&m](std::uint64_t k, value_t v) { m.put(k, v); });
  } else {
    typename decltype(m.m)::reader r(m.m);
    run([&r](std::uint64_t k) { return r.get(k); },
        [&m](std::uint64_t k, value_t v) { m.m.write_batch([&](const auto& put) { put(k, v); }); });
  }
  state.SetItemsProcessed(state.iterations() * 1024);
}

template <class Map>
void add() {
  for (char w : {'B', 'D'}) {
    const std::string name = "ycsb/" + std::string(1, w) + "/" + std::string(Map::name);
    benchmark::RegisterBenchmark(name.c_str(), w == 'B' ? &bm_ycsb<Map, 'B'> : &bm_ycsb<Map, 'D'>)
        ->ThreadRange(1, 2)
        ->UseRealTime();
  }
}

[[maybe_unused]] const bool registered = [] {
  add<shared_ycsb<leftright::default_traits, shared_name>>();
  add<shared_ycsb<seq_cst_traits, shared_seq_name>>();
  add<peer_ycsb<shared_mutex_map<std::uint64_t>>>();
  add<peer_ycsb<absl_mutex_map<std::uint64_t>>>();
#if LEFTRIGHT_BENCH_WITH_TBB
  add<peer_ycsb<tbb_map<std::uint64_t>>>();
#endif
#if LEFTRIGHT_BENCH_WITH_CUCKOO
  add<peer_ycsb<cuckoo_map<std::uint64_t>>>();
#endif
  return true;
}();

}  // namespace
}  // namespace lrbench
