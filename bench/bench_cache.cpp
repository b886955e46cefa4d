// SPDX-License-Identifier: Apache-2.0
// Scenario: leftright::cache measured (issue 17, "Measured throughput").
//
// cache_pair: hits. A cache of N entries (1K, 1M) at capacity (max_entries = N, all N keys
// present), read with Zipfian keys (theta 0.99, workload.hpp's zipf_keys: all hits), 1 and 2
// threads, paired with shared_map::get on the same keys and the same entries (workload.hpp's
// run_pairs: alternating phases, every thread in the same phase). The subjects:
//   lr_cache      leftright::cache::get (a shared_map read, plus the access recorded in the
//                 thread's ring and the hit counted in its counter)
//   lr_cache_peek the same cache through peek() (no recording, no counting): what get()'s
//                 bookkeeping costs, beside the lookup itself
//   mutex_lru     the usual hand-made cache: a std::mutex around a std::list (most recent
//                 first) and an absl::flat_hash_map of list iterators; a hit moves its node to
//                 the front
//   shared_mutex  std::shared_mutex + absl::flat_hash_map, no eviction (adapters.hpp's)
//   tbb_lru       oneTBB's concurrent_lru_cache (a preview feature; if found): operator[]
//                 returns a handle that pins the entry, whose release is a second operation
// Name: cache_pair/<subject>/u64/<1K|1M>/zipf/real_time/threads:<n>
// Counters: ratio = median over pairs of (shared_map phase time / subject phase time): the
// subject's rate as a fraction of shared_map's (target for lr_cache >= 0.8, and >= 5x
// mutex_lru's ratio at 2 threads); thread_lookups_per_s and shared_map_thread_lookups_per_s:
// the two sides' rates per thread over their phases, averaged over the threads (not summed: on
// a loaded machine the threads of one phase need not have run at the same time).
//
// cache_herd: 64 threads, released together by a std::latch, miss on one key whose loader
// sleeps 10 ms. Each herd a fresh key, 64 fresh threads (made before the release, not timed).
//   lr_cache          cache::get_or_load (coalesced: one load, the others wait for it)
//   lr_cache_get_put  cache::get, and on a miss the loader and put (no coalescing)
//   mutex_lru         the same on the mutex LRU
//   tbb_lru           concurrent_lru_cache::operator[] (loads through its value function, once)
// Name: cache_herd/<subject>/callers:64/iterations:<n>/manual_time (the time: release to the
// last caller served). Counters: loads_per_herd (mean; lr_cache must make 1), served_ms and
// load_ms (medians over herds: release to the last caller served; one loader call),
// served_over_load (median of the herds' served / one load; target for lr_cache <= 1.5: one
// load plus the cost of waking 64 threads on this machine).
//
// cache_bulk: many keys in one call, paired with the same keys one call each (run_pairs).
//   get_all  the lr_cache fixture of N entries (all hits), Zipfian keys, B keys a call through
//            get_all(span of B keys) (a new vector a call), paired with B get() calls on the
//            same keys; 1 and 2 threads
//   get_many the same through get_many(keys, out) (the caller's buffer, reused)
//   put_all  a cache of N entries at capacity, B fresh keys a call through put_all(B entries),
//            paired with B put() calls (fresh keys too); each new key is a policy decision and
//            an eviction; one thread (writes take the cache's writer lock)
// Name: cache_bulk/<get_all|get_many|put_all>/u64/<1K|1M>/batch:<B>/real_time[/threads:<n>]. Counters:
// ratio = median over pairs of (one-call-a-key phase time / bulk phase time): how many times
// the one-call-a-key rate the bulk call gives; keys_per_s and single_keys_per_s per thread.
#define TBB_PREVIEW_CONCURRENT_LRU_CACHE 1

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <list>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <leftright/cache.hpp>
#include <leftright/shared_map.hpp>

#include "absl/container/flat_hash_map.h"
#include "adapters.hpp"
#include "measure.hpp"
#include "workload.hpp"

#if LEFTRIGHT_BENCH_WITH_TBB && __has_include(<oneapi/tbb/concurrent_lru_cache.h>)
#include <oneapi/tbb/concurrent_lru_cache.h>
#define LEFTRIGHT_BENCH_WITH_TBB_LRU 1
#else
#define LEFTRIGHT_BENCH_WITH_TBB_LRU 0
#endif

namespace lrbench {
namespace {

using cache_key = std::uint64_t;

// ------------------------------------------------------------------------------------------
// The caches, each with get(key) (an optional value, or the value) and get_or_load(key, load)
// for load(key) -> value_t, built holding keys[i] -> i with capacity keys.size().
// ------------------------------------------------------------------------------------------

/// leftright::cache bounded by count.
struct lr_cache {
  static constexpr std::string_view name = "lr_cache";
  using cache_t = leftright::cache<cache_key, value_t, hash_t<cache_key>>;
  static leftright::cache_options options(std::size_t capacity) {
    leftright::cache_options o;
    o.max_entries = capacity;
    return o;
  }
  explicit lr_cache(const std::vector<cache_key>& keys) : lr_cache(keys.size()) {
    for (std::size_t i = 0; i < keys.size(); ++i) c.put(keys[i], value_t{i});
    c.run_pending();
    if (c.size() != keys.size()) throw std::runtime_error("cache_pair: the cache did not keep every key");
  }
  explicit lr_cache(std::size_t capacity) : c(options(capacity)) {}
  std::optional<value_t> get(const cache_key& k) const { return c.get(k); }
  template <class Load>
  value_t get_or_load(const cache_key& k, Load&& load) { return c.get_or_load(k, load); }
  /// A thread's first read registers it with the cache (and its shared_map).
  void register_thread() const { benchmark::DoNotOptimize(c.peek(cache_key{0})); }
  cache_t c;
};

/// The same cache (lr_cache's fixture of N entries) read with peek(): get() without recording
/// the access or counting the hit. Not a cache anyone would use so: it shows what get()'s
/// bookkeeping costs beside the lookup.
template <std::size_t N>
struct lr_cache_peek {
  static constexpr std::string_view name = "lr_cache_peek";
  explicit lr_cache_peek(const std::vector<cache_key>&) : c(fixture<lr_cache, cache_key, N>().c) {}
  std::optional<value_t> get(const cache_key& k) const { return c.peek(k); }
  const lr_cache::cache_t& c;
};

/// leftright::cache read with get(), and on a miss loaded and put by the caller: no coalescing.
struct lr_cache_get_put : lr_cache {
  static constexpr std::string_view name = "lr_cache_get_put";
  using lr_cache::lr_cache;
  template <class Load>
  value_t get_or_load(const cache_key& k, Load&& load) {
    if (std::optional<value_t> v = c.get(k)) return *v;
    const value_t v = load(k);
    c.put(k, v);
    return v;
  }
};

/// The usual hand-made LRU cache: a std::mutex around a list (most recent first) and a map of
/// its nodes; a hit moves its node to the front; a miss's load runs without the lock.
class mutex_lru {
 public:
  static constexpr std::string_view name = "mutex_lru";
  explicit mutex_lru(const std::vector<cache_key>& keys) : mutex_lru(keys.size()) {
    for (std::size_t i = 0; i < keys.size(); ++i) put(keys[i], value_t{i});
  }
  explicit mutex_lru(std::size_t capacity) : capacity_(capacity) { index_.reserve(capacity + 1); }

  std::optional<value_t> get(const cache_key& k) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = index_.find(k);
    if (it == index_.end()) return std::nullopt;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }
  void put(const cache_key& k, value_t v) {
    std::lock_guard<std::mutex> lock(mu_);
    if (const auto it = index_.find(k); it != index_.end()) {
      it->second->second = v;
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    order_.emplace_front(k, v);
    index_.emplace(k, order_.begin());
    if (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }
  template <class Load>
  value_t get_or_load(const cache_key& k, Load&& load) {
    if (std::optional<value_t> v = get(k)) return *v;
    const value_t v = load(k);
    put(k, v);
    return v;
  }
  void register_thread() const {}

 private:
  using list_t = std::list<std::pair<cache_key, value_t>>;
  const std::size_t capacity_;
  alignas(64) std::mutex mu_;
  list_t order_;
  absl::flat_hash_map<cache_key, list_t::iterator, hash_t<cache_key>> index_;
};

/// std::shared_mutex + absl::flat_hash_map (adapters.hpp's shared_mutex peer), no eviction.
struct rw_map {
  static constexpr std::string_view name = "shared_mutex";
  explicit rw_map(const std::vector<cache_key>& keys) : m(keys) {}
  shared_mutex_map<cache_key> m;
  shared_mutex_map<cache_key>::reader r{m};
  value_t get(const cache_key& k) const { return r.get(k); }
};

#if LEFTRIGHT_BENCH_WITH_TBB_LRU
value_t key_as_value(cache_key k) { return k; }  // the get scenario's value function (never called: all hits)

/// oneTBB's concurrent_lru_cache: operator[] loads a missing key through the value function
/// given at construction, once (concurrent callers of that key wait for it).
struct tbb_lru {
  static constexpr std::string_view name = "tbb_lru";
  using cache_t = tbb::concurrent_lru_cache<cache_key, value_t, value_t (*)(cache_key)>;
  explicit tbb_lru(const std::vector<cache_key>& keys) : c(&key_as_value, keys.size()) {
    for (const cache_key& k : keys) c[k];  // loaded, then released into the LRU history
  }
  tbb_lru(std::size_t capacity, value_t (*load)(cache_key)) : c(load, capacity) {}
  value_t get(const cache_key& k) { return c[k].value(); }
  void register_thread() const {}
  cache_t c;
};
#endif

/// The baseline: shared_map::get on the same entries.
struct shared_base {
  explicit shared_base(const std::vector<cache_key>& keys) { fill_shared(m, keys); }
  leftright::shared_map<cache_key, value_t, hash_t<cache_key>> m;
};

/// A paired scenario's counters: the ratio and pairs, and each side's rate (items a second over
/// its own phases, per thread, averaged over the threads, not summed: on a loaded machine the
/// threads of one phase need not have run at the same time).
void set_rate_counters(benchmark::State& state, const alternating_pairs& r, std::size_t items_per_phase,
                       const char* subject_rate, const char* base_rate) {
  set_pair_counters(state, r);
  const double items = static_cast<double>(r.pairs() * items_per_phase);
  const auto per_thread = [&](double seconds) {
    return benchmark::Counter(seconds > 0 ? items / seconds : 0, benchmark::Counter::kAvgThreads);
  };
  state.counters[subject_rate] = per_thread(r.variant_seconds());
  state.counters[base_rate] = per_thread(r.baseline_seconds());
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(2 * items_per_phase));
}

// ------------------------------------------------------------------------------------------
// cache_pair
// ------------------------------------------------------------------------------------------

template <class Cache, std::size_t N>
void bm_cache_pair(benchmark::State& state) {
  const auto& base = fixture<shared_base, cache_key, N>().m;
  Cache& cache = fixture<Cache, cache_key, N>();
  const std::vector<cache_key>& keys = zipf_keys<cache_key, N>();
  constexpr std::size_t phase = 16384;
  std::size_t at = thread_start(state, keys.size());
  const alternating_pairs r = run_pairs(
      state, [&] { lookup_phase(keys, at, phase, [&base](const cache_key& k) { return base.get(k); }); },
      [&] { lookup_phase(keys, at, phase, [&cache](const cache_key& k) { return cache.get(k); }); },
      [&] { at = (at + phase) % keys.size(); });
  set_rate_counters(state, r, phase, "thread_lookups_per_s", "shared_map_thread_lookups_per_s");
}

template <class Cache, std::size_t N>
void add_pair() {
  const std::string name = "cache_pair/" + std::string(Cache::name) + "/u64/" + size_name(N) + "/zipf";
  benchmark::RegisterBenchmark(name.c_str(), &bm_cache_pair<Cache, N>)
      ->ThreadRange(1, 2)
      ->UseRealTime()
      ->Setup(setup_pair_barrier)
      ->Teardown(teardown_pair_barrier);
}

// ------------------------------------------------------------------------------------------
// cache_herd
// ------------------------------------------------------------------------------------------

constexpr int herd_size = 64;
constexpr auto load_time = std::chrono::milliseconds(10);
using herd_clock = std::chrono::steady_clock;

/// What one caller of a herd saw. Written only by its own thread; read after the join.
struct herd_slot {
  int loads = 0;
  double load_seconds = 0;  ///< time in the loader
  herd_clock::time_point served;
  value_t value = 0;
};
thread_local herd_slot* this_slot = nullptr;

value_t value_of(cache_key k) { return k ^ 0x5555; }

/// The backing store: sleeps load_time, counts the load in the calling thread's slot.
value_t slow_load(cache_key k) {
  const auto t0 = herd_clock::now();
  std::this_thread::sleep_for(load_time);
  this_slot->loads += 1;
  this_slot->load_seconds += std::chrono::duration<double>(herd_clock::now() - t0).count();
  return value_of(k);
}

/// One herd on key k: herd_size threads made (each registered with the cache: a leftright
/// cache registers a thread on its first read), then released together, each loading k through
/// cache.get_or_load. Returns the slots and the release time.
template <class Cache>
std::pair<std::vector<herd_slot>, herd_clock::time_point> run_herd(Cache& cache, cache_key k) {
  std::vector<herd_slot> slots(herd_size);
  std::latch ready(herd_size), go(1);
  std::vector<std::thread> threads;
  for (int t = 0; t < herd_size; ++t) {
    threads.emplace_back([&, t] {
      herd_slot& s = slots[static_cast<std::size_t>(t)];
      this_slot = &s;
      cache.register_thread();
      ready.count_down();
      go.wait();
      s.value = cache.get_or_load(k, &slow_load);
      s.served = herd_clock::now();
    });
  }
  ready.wait();
  const auto released = herd_clock::now();
  go.count_down();
  for (auto& th : threads) th.join();
  return {std::move(slots), released};
}

template <class Cache>
void bm_cache_herd(benchmark::State& state) {
  Cache cache(std::size_t{1024});
  std::vector<double> served, loaded, over;
  double loads = 0;
  int wrong = 0;
  cache_key next = 1'000'000'000;
  for (auto _ : state) {
    const cache_key k = make_key<cache_key>(next++);
    const auto [slots, released] = run_herd(cache, k);
    herd_clock::time_point last = released;
    double load_seconds = 0;
    int herd_loads = 0;
    for (const herd_slot& s : slots) {
      wrong += s.value != value_of(k);
      last = std::max(last, s.served);
      herd_loads += s.loads;
      load_seconds += s.load_seconds;
    }
    const double t = std::chrono::duration<double>(last - released).count();
    state.SetIterationTime(t);
    served.push_back(t);
    loads += herd_loads;
    const double one_load = herd_loads > 0 ? load_seconds / herd_loads : 0;
    loaded.push_back(one_load);
    over.push_back(one_load > 0 ? t / one_load : 0);
  }
  if (wrong != 0) state.SkipWithError("cache_herd: a caller got another value");
  state.counters["loads_per_herd"] = loads / static_cast<double>(served.size());
  state.counters["served_ms"] = median_of(served) * 1e3;
  state.counters["load_ms"] = median_of(loaded) * 1e3;
  state.counters["served_over_load"] = median_of(over);
}

#if LEFTRIGHT_BENCH_WITH_TBB_LRU
/// tbb_lru for the herd: its loader is fixed at construction.
struct tbb_lru_herd : tbb_lru {
  explicit tbb_lru_herd(std::size_t capacity) : tbb_lru(capacity, &slow_load) {}
  template <class Load>
  value_t get_or_load(const cache_key& k, Load&&) { return get(k); }
};
#endif

template <class Cache>
void add_herd(std::string_view name) {
  const std::string full = "cache_herd/" + std::string(name) + "/callers:" + std::to_string(herd_size);
  benchmark::RegisterBenchmark(full.c_str(), &bm_cache_herd<Cache>)->Iterations(10)->UseManualTime()->Unit(
      benchmark::kMillisecond);
}

// ------------------------------------------------------------------------------------------
// cache_bulk
// ------------------------------------------------------------------------------------------

/// The counters of a bulk pair: keys per second through the bulk call and through one call a key.
void set_bulk_counters(benchmark::State& state, const alternating_pairs& r, std::size_t keys_per_phase) {
  set_rate_counters(state, r, keys_per_phase, "keys_per_s", "single_keys_per_s");
}

template <std::size_t N, bool Many>
void bm_get_all(benchmark::State& state) {
  const lr_cache::cache_t& c = fixture<lr_cache, cache_key, N>().c;
  const std::vector<cache_key>& keys = zipf_keys<cache_key, N>();
  const auto b = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t phase = 16384;  // a multiple of every batch size and of block
  std::size_t at = thread_start(state, keys.size());
  // Both phases read one cache: with the same keys, the phase run second would find the first
  // one's lines in the caches (on the 1M cache, 3-6x faster), so the bulk phase reads a window of
  // the key sequence as far from the single calls' as the threads' windows allow.
  const std::size_t apart = keys.size() / (2 * static_cast<std::size_t>(state.threads())) / phase * phase;
  std::vector<std::optional<value_t>> out(b);
  const alternating_pairs r = run_pairs(
      state, [&] { lookup_phase(keys, at, phase, [&c](const cache_key& k) { return c.get(k); }); },
      [&] {
        for (std::size_t i = 0; i < phase; i += b) {
          const std::size_t from = (at + apart + i) % keys.size();  // keys.size() is a multiple of b
          const std::span<const cache_key> some(keys.data() + from, b);
          if constexpr (Many) {
            benchmark::DoNotOptimize(c.get_many(some, std::span<std::optional<value_t>>(out)));
            benchmark::ClobberMemory();
          } else {
            benchmark::DoNotOptimize(c.get_all(some));
          }
        }
      },
      [&] { at = (at + phase) % keys.size(); });
  set_bulk_counters(state, r, phase);
}

/// A cache of N entries at capacity that the put_all scenario writes (its own fixture: the
/// writes evict, and cache_pair's fixture must keep every key).
struct lr_cache_written : lr_cache {
  using lr_cache::lr_cache;
  cache_key next = cache_key{1} << 40;  ///< the next fresh key (beyond every fixture's keys)
};

template <std::size_t N>
void bm_put_all(benchmark::State& state) {
  lr_cache_written& w = fixture<lr_cache_written, cache_key, N>();
  const auto b = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t phase = 4096;
  std::vector<std::pair<cache_key, value_t>> batch(b);
  const alternating_pairs r = run_pairs(
      state,
      [&] {
        for (std::size_t i = 0; i < phase; ++i, ++w.next) w.c.put(w.next, value_t{w.next});
      },
      [&] {
        for (std::size_t i = 0; i < phase; i += b) {
          for (auto& e : batch) e = {w.next, value_t{w.next}}, ++w.next;
          w.c.put_all(batch);
        }
      },
      [&w] { w.c.run_pending(); });  // each pair starts with the maintenance done
  set_bulk_counters(state, r, phase);
}

template <std::size_t N>
void add_bulk() {
  const std::string base = "/u64/" + size_name(N);
  for (const auto& [name, run] : {std::pair{"get_all", &bm_get_all<N, false>}, std::pair{"get_many", &bm_get_all<N, true>}}) {
    benchmark::RegisterBenchmark(("cache_bulk/" + std::string(name) + base).c_str(), run)
        ->ArgName("batch")
        ->Arg(16)
        ->Arg(256)
        ->ThreadRange(1, 2)
        ->UseRealTime()
        ->Setup(setup_pair_barrier)
        ->Teardown(teardown_pair_barrier);
  }
  benchmark::RegisterBenchmark(("cache_bulk/put_all" + base).c_str(), &bm_put_all<N>)
      ->ArgName("batch")
      ->Arg(16)
      ->Arg(256)
      ->UseRealTime()
      ->Setup(setup_pair_barrier)
      ->Teardown(teardown_pair_barrier);
}

[[maybe_unused]] const bool registered = [] {
  add_pair<lr_cache, small_n>();
  add_pair<lr_cache_peek<small_n>, small_n>();
  add_pair<mutex_lru, small_n>();
  add_pair<rw_map, small_n>();
  add_pair<lr_cache, large_n>();
  add_pair<lr_cache_peek<large_n>, large_n>();
  add_pair<mutex_lru, large_n>();
  add_pair<rw_map, large_n>();
#if LEFTRIGHT_BENCH_WITH_TBB_LRU
  add_pair<tbb_lru, small_n>();
  add_pair<tbb_lru, large_n>();
#endif
  add_bulk<small_n>();
  add_bulk<large_n>();
  add_herd<lr_cache>(lr_cache::name);
  add_herd<lr_cache_get_put>(lr_cache_get_put::name);
  add_herd<mutex_lru>(mutex_lru::name);
#if LEFTRIGHT_BENCH_WITH_TBB_LRU
  add_herd<tbb_lru_herd>(tbb_lru::name);
#endif
  return true;
}();

}  // namespace
}  // namespace lrbench
