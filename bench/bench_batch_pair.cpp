// SPDX-License-Identifier: Apache-2.0
// Scenario: lookups of many keys at once, paired with the limit's scalar loop. A multi-get pays
// for the read protocol once per call, not per key, so its rate can reach the limit itself.
//
// Each iteration runs the same lookups twice, one phase after the other (the order alternating,
// every thread in the same phase at once, as in lookup_pair): once as the limit's scalar loop
// (one absl find per key, unsynchronized) and once as the variant under test, in calls of B keys:
//   limit_batched  the best batched loop over the unsynchronized absl map found on this machine:
//                  each key's lines prefetched (absl's prefetch) 16 keys before its find, on a
//                  table of 16K entries or more (a smaller one: the scalar loop)
//   limit_find_many  limit_batched's loop with find_many's contract: each key's pointer (or
//                  nullptr) stored in an array, the values read from it after the loop; what
//                  the array form costs without any read protocol
//   find_many      lr_asym: read_guard::find_many, one guard per call, then each value read
//   find_each      lr_asym: read_guard::find_each, one guard per call, each value read in the
//                  callback as its key is looked up (no array of pointers)
//   get_many       lr_asym: map_reader::get_many, one guard per call, values copied out
//   each_store     lr_asym: find_many's contract written with read_guard::find_each, whose
//                  callback stores each pointer into the array (then the values read from it):
//                  the array form inlined at its call site, where find_many is a call
// The figure is the median over pairs of (limit scalar phase time / variant phase time): the
// variant's lookup rate as a fraction of the limit's scalar rate. find_many against
// limit_batched is the quotient of their two ratios (both to the same limit).
//
// Sizes: 1K (in L1/L2), 1M (16 MiB: in a 32 MiB L3) and 16M (DRAM); the context records the
// L3 size so the report can say which sizes fit in it.
//
// Name: batch_pair/<variant>/<u64|str16>/<size>/<hit|miss10>/b<B>/real_time/threads:<n>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "measure.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

std::unique_ptr<std::barrier<>> batch_barrier;
void setup_batch(const benchmark::State& state) {
  batch_barrier = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(state.threads()));
}
void teardown_batch(const benchmark::State&) { batch_barrier.reset(); }

enum class variant { limit_batched, limit_find_many, find_many, find_each, get_many, each_store };
constexpr const char* variant_name(variant v) {
  switch (v) {
    case variant::limit_batched: return "limit_batched";
    case variant::limit_find_many: return "limit_find_many";
    case variant::find_many: return "find_many";
    case variant::find_each: return "find_each";
    case variant::get_many: return "get_many";
    case variant::each_store: return "each_store";
  }
  return "?";
}

/// Lookups per phase (a multiple of every batch size): about 0.2-1 ms.
constexpr std::size_t batch_phase_lookups(std::size_t n) { return n > 65536 ? 16384 : 65536; }
constexpr std::size_t max_batch = 256;

/// One call of the variant under test on keys k[0..B): the sum of the values found (the limit's
/// scalar phase sums them too), so no lookup's result is dead.
template <variant V, class Key, std::size_t B>
struct batch_call {
  const plain_table<Key>* table;
  const typename limit_map<Key>::reader* scalar;
  typename lr_asym_map<Key>::reader_type* reader;
  const value_t* found[max_batch];
  std::optional<value_t> copied[max_batch];

  /// The limit's batched loop: look(j) for each key, keys `ahead` positions on prefetched
  /// while each one is looked up (software pipelining): the fastest of the batched loops tried
  /// here (prefetch-all-then-find is slower past 16 keys, its early lines leave L1 before their
  /// keys come). A table in L1/L2 (below leftright's prefetch_min_entries) is not prefetched:
  /// there the prefetch's hash and call are pure cost (0.69-0.71x the scalar loop on the 1K map,
  /// 2026-12-04).
  template <class Look>
  void limit_loop(const Key* k, Look&& look) const {
    const std::size_t ahead = B < 4 || table->size() < leftright::detail::prefetch_min_entries ? 0 : (B < 16 ? B : 16);
    for (std::size_t j = 0; j < ahead; ++j) scalar->prefetch(k[j]);
    for (std::size_t j = 0; j < B; ++j) {
      if (ahead != 0 && j + ahead < B) scalar->prefetch(k[j + ahead]);
      look(j);
    }
  }

  value_t operator()(const Key* k) {
    value_t sum = 0;
    if constexpr (V == variant::limit_batched) {
      // absl's lookup, inlined as in the limit's scalar loop
      limit_loop(k, [&](std::size_t j) { sum += scalar->get(k[j]); });
    } else if constexpr (V == variant::limit_find_many) {
      limit_loop(k, [&](std::size_t j) { found[j] = absl_find(*table, k[j]); });
      for (std::size_t j = 0; j < B; ++j) sum += found[j] == nullptr ? miss_value : *found[j];
    } else if constexpr (V == variant::find_many) {
      const auto g = reader->read();
      g.find_many(std::span<const Key>(k, B), std::span<const value_t*>(found, B));
      for (std::size_t j = 0; j < B; ++j) sum += found[j] == nullptr ? miss_value : *found[j];
    } else if constexpr (V == variant::find_each) {
      const auto g = reader->read();
      g.find_each(std::span<const Key>(k, B),
                  [&sum](std::size_t, const value_t* v) { sum += v == nullptr ? miss_value : *v; });
    } else if constexpr (V == variant::each_store) {
      const auto g = reader->read();
      g.find_each(std::span<const Key>(k, B), [this](std::size_t j, const value_t* v) { found[j] = v; });
      for (std::size_t j = 0; j < B; ++j) sum += found[j] == nullptr ? miss_value : *found[j];
    } else {
      reader->get_many(std::span<const Key>(k, B), std::span<std::optional<value_t>>(copied, B));
      for (std::size_t j = 0; j < B; ++j) sum += copied[j].value_or(miss_value);
    }
    return sum;
  }
};

template <variant V, class Key, std::size_t N, unsigned MissPercent, std::size_t B>
void bm_batch(benchmark::State& state) {
  const limit_map<Key>& base = fixture<limit_map<Key>, Key, N>();
  auto& ours = fixture<lr_asym_map<Key>, Key, N>();
  const std::vector<Key>& keys = lookup_keys<Key, N, MissPercent>();
  typename limit_map<Key>::reader scalar(base);
  auto reader = ours.make_reader();
  auto call = std::make_unique<batch_call<V, Key, B>>();
  call->table = &base.table();
  call->scalar = &scalar;
  call->reader = &reader;
  const std::size_t len = keys.size();
  constexpr std::size_t phase = batch_phase_lookups(N);
  static_assert(phase % B == 0 && phase % block == 0);
  std::size_t at = thread_start(state, len) / max_batch * max_batch;
  const auto timed = [&](auto&& body) {
    batch_barrier->arrive_and_wait();
    const auto t0 = std::chrono::steady_clock::now();
    body();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const auto limit_phase = [&] {  // in blocks of 16, as lookup_pair's limit: a tight loop
    value_t sum = 0;
    for (std::size_t done = 0, i = at; done < phase; done += block) {
      const Key* k = &keys[i];
      for (std::size_t j = 0; j < block; ++j) sum += scalar.get(k[j]);
      i += block;
      if (i == len) i = 0;
    }
    benchmark::DoNotOptimize(sum);
  };
  // The variant's keys are another window of the same sequence, as far from the limit's as the
  // threads' windows allow. The limit variants read the limit's own table, and on the same keys
  // the phase run second found their lines in the cache the first one had just filled (some
  // 2 MiB at 16K lookups, in a 32 MiB L3): until 2026-12-04, limit_batched on the 1M and 16M
  // maps was measured partly warm, our variants always cold.
  const std::size_t apart = len / (2 * static_cast<std::size_t>(state.threads())) / max_batch * max_batch;
  const auto variant_phase = [&] {
    value_t sum = 0;
    for (std::size_t done = 0, i = (at + apart) % len; done < phase; done += B) {
      sum += (*call)(&keys[i]);
      i += B;
      if (i == len) i = 0;
    }
    benchmark::DoNotOptimize(sum);
  };
  lrbench::alternating_pairs pairs;
  for (auto _ : state) {
    pairs.run([&] { return timed(limit_phase); }, [&] { return timed(variant_phase); });
    at = (at + phase) % len;  // len and phase are multiples of max_batch
  }
  lrbench::set_pair_counters(state, pairs);
  state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(2 * phase));
  if (state.thread_index() == 0) set_label(state, ours);
}

template <variant V, class Key, std::size_t N, unsigned MissPercent, std::size_t B>
void add() {
  const std::string name = "batch_pair/" + std::string(variant_name(V)) + "/" + std::string(key_name<Key>) +
                           "/" + size_name(N) + "/" + (MissPercent == 0 ? "hit" : "miss10") + "/b" +
                           std::to_string(B);
  benchmark::RegisterBenchmark(name.c_str(), &bm_batch<V, Key, N, MissPercent, B>)
      ->ThreadRange(1, 2)
      ->UseRealTime()
      ->Setup(setup_batch)
      ->Teardown(teardown_batch);
}

/// Every batch size against both limits; get_many (u64 values) and the 10%-miss workload at the
/// sizes the targets name (16 and 64).
template <class Key, std::size_t N>
void add_size() {
  [&]<std::size_t... B>(std::index_sequence<B...>) {
    (add<variant::limit_batched, Key, N, 0, B>(), ...);
    (add<variant::find_many, Key, N, 0, B>(), ...);
  }(std::index_sequence<1, 4, 16, 64, 256>{});
  add<variant::limit_find_many, Key, N, 0, 16>();
  add<variant::limit_find_many, Key, N, 0, 64>();
  add<variant::find_each, Key, N, 0, 16>();
  add<variant::find_each, Key, N, 0, 64>();
  add<variant::each_store, Key, N, 0, 16>();
  add<variant::each_store, Key, N, 0, 64>();
  add<variant::get_many, Key, N, 0, 16>();
  add<variant::get_many, Key, N, 0, 64>();
  add<variant::limit_batched, Key, N, 10, 64>();
  add<variant::find_many, Key, N, 10, 64>();
}

[[maybe_unused]] const bool registered = [] {
  benchmark::AddCustomContext("l3_cache_bytes", std::to_string(::sysconf(_SC_LEVEL3_CACHE_SIZE)));
  add_size<std::uint64_t, small_n>();
  add_size<std::uint64_t, large_n>();
  add_size<std::uint64_t, dram_n>();
  add_size<std::string, small_n>();
  add_size<std::string, large_n>();
  add_size<std::string, dram_n>();
  return true;
}();

}  // namespace
}  // namespace lrbench
