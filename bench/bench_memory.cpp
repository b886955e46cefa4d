// SPDX-License-Identifier: Apache-2.0
// Scenario: heap bytes per entry, ours against one absl::flat_hash_map holding the same entries.
// Both are filled through their public API with no reserve; ours then publishes, and publishes
// again so that both copies hold every entry (the steady state). Measured as the change in
// glibc's in-use heap (mallinfo2: uordblks + hblkhd, so malloc's chunk headers count too)
// around building the map; the benchmark's time is the build time and is not the point.
// Ours is built two ways: as one batch (the op log's vector keeps the capacity of its largest
// batch) and in batches of 1024 ops.
//
// Values: 8 bytes (std::uint64_t, 1M entries), and 1 KiB two ways (64K entries):
// std::array<char, 1024> ("1KiB"), an entry larger than default_traits::max_inline_entry, which
// ours stores once in a node both copies share; and std::string of 1024 chars ("1KiB_str"), a
// small entry pointing at a heap block, which each copy holds its own copy of; and that string
// again in a map whose traits set max_inline_entry = 0 ("1KiB_str_shared"): every entry in a node
// both copies share, the remedy for values that own heap memory (the absl map is the same).
// Name: memory/<absl|lr_one_batch|lr_batches_1024>/<key>/<value>/<entries>/iterations:1
// Counter bytes_per_entry.
#include <malloc.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

std::size_t heap_in_use() {
  const struct mallinfo2 mi = ::mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

template <class Value>
Value make_value(std::size_t i);
template <>
std::uint64_t make_value<std::uint64_t>(std::size_t i) {
  return i;
}
template <>
std::string make_value<std::string>(std::size_t i) {
  return std::string(1024, static_cast<char>('a' + i % 26));
}
using kib = std::array<char, 1024>;
template <>
kib make_value<kib>(std::size_t i) {
  kib v;
  v.fill(static_cast<char>('a' + i % 26));
  return v;
}

/// The shared layout for every entry, whatever its size.
struct shared_traits : seq_cst_traits {
  static constexpr std::size_t max_inline_entry = 0;
};

enum class layout { absl, lr_one_batch, lr_batches_1024 };

constexpr const char* layout_name(layout l) {
  switch (l) {
    case layout::absl: return "absl";
    case layout::lr_one_batch: return "lr_one_batch";
    case layout::lr_batches_1024: return "lr_batches_1024";
  }
  return "?";
}

template <class Key, class Value, layout L, std::size_t N, class Traits = seq_cst_traits>
void bm_memory(benchmark::State& state) {
  const std::vector<Key>& keys = present_keys<Key, N>();
  double bytes = 0;
  for (auto _ : state) {
    const std::size_t before = heap_in_use();
    if constexpr (L == layout::absl) {
      absl::flat_hash_map<Key, Value, hash_t<Key>, std::equal_to<Key>> m;
      for (std::size_t i = 0; i < N; ++i) m.insert_or_assign(keys[i], make_value<Value>(i));
      bytes = static_cast<double>(heap_in_use() - before);
      benchmark::DoNotOptimize(m.size());
    } else {
      auto [w, r] = leftright::make_map<Key, Value, hash_t<Key>, std::equal_to<Key>, Traits>();
      for (std::size_t i = 0; i < N; ++i) {
        w.insert_or_assign(keys[i], make_value<Value>(i));
        if (L == layout::lr_batches_1024 && i % 1024 == 1023) w.publish();
      }
      w.publish();
      w.publish();
      bytes = static_cast<double>(heap_in_use() - before);
      benchmark::DoNotOptimize(r.size());
    }
  }
  state.counters["bytes_per_entry"] = bytes / static_cast<double>(N);
}

template <class Key, class Value, std::size_t N, class Traits = seq_cst_traits>
void add_all(const char* value_name) {
  for (layout l : {layout::absl, layout::lr_one_batch, layout::lr_batches_1024}) {
    const std::string name = std::string("memory/") + layout_name(l) + "/" +
                             std::string(key_name<Key>) + "/" + value_name + "/" + size_name(N);
    benchmark::internal::Benchmark* b = nullptr;
    switch (l) {
      case layout::absl:
        b = benchmark::RegisterBenchmark(name.c_str(), &bm_memory<Key, Value, layout::absl, N, Traits>);
        break;
      case layout::lr_one_batch:
        b = benchmark::RegisterBenchmark(name.c_str(), &bm_memory<Key, Value, layout::lr_one_batch, N, Traits>);
        break;
      case layout::lr_batches_1024:
        b = benchmark::RegisterBenchmark(name.c_str(), &bm_memory<Key, Value, layout::lr_batches_1024, N, Traits>);
        break;
    }
    // Deterministic up to malloc noise, and the slowest to set up: one repetition is enough.
    b->Iterations(1)->Repetitions(1)->Unit(benchmark::kMillisecond);
  }
}

[[maybe_unused]] const bool registered = [] {
  add_all<std::uint64_t, std::uint64_t, large_n>("8B");
  add_all<std::uint64_t, std::uint64_t, dram_n>("8B");
  add_all<std::string, std::uint64_t, large_n>("8B");
  add_all<std::uint64_t, kib, std::size_t{1} << 16>("1KiB");
  add_all<std::string, kib, std::size_t{1} << 16>("1KiB");
  add_all<std::uint64_t, std::string, std::size_t{1} << 16>("1KiB_str");
  add_all<std::string, std::string, std::size_t{1} << 16>("1KiB_str");
  add_all<std::uint64_t, std::string, std::size_t{1} << 16, shared_traits>("1KiB_str_shared");
  add_all<std::string, std::string, std::size_t{1} << 16, shared_traits>("1KiB_str_shared");
  return true;
}();

}  // namespace
}  // namespace lrbench
