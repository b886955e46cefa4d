// SPDX-License-Identifier: Apache-2.0
// leftright: applies many keyed operations to an absl hash map in the order of the table's slots
// instead of the order they came in. Recovery's bulk loads use it (a snapshot, a long log).
//
// Why: a table of a million entries is far larger than the cache, and in arrival order each
// insert touches a random place in it: a miss for the control bytes and one for the slot, with
// the dirty lines written back later. Grouped by the region of the table where each key's probe
// starts, the operations of one group stay within a few KiB, so each line is fetched once for
// many of them. The grouping is a stable counting sort by region: the operations on one key keep
// their order (they share a region), so the table ends up with the same entries as if they had
// been applied as they came.
//
// Where the probe starts is absl's business: H1(hash) = (hash >> 7) ^ salt, masked by the
// capacity, a power of two minus one (absl/container/internal/raw_hash_set.h). The per-table salt
// is a constant XOR, which maps aligned blocks of slots onto aligned blocks; so grouping by the
// top bits of (hash >> 7) & capacity groups by block whatever the salt. If absl computed it
// otherwise, only the speed would change: any order of the groups gives the same entries.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace leftright::detail {

/// The operations apply_in_slot_order() takes: each on one key.
enum class keyed_op : std::uint8_t { insert_or_assign, insert, erase };

/// Applies one keyed operation to t (value unused for erase).
template <class Table, class K, class V>
void apply_keyed(Table& t, keyed_op op, K&& key, V&& value) {
  switch (op) {
    case keyed_op::insert_or_assign:
      t.insert_or_assign(std::forward<K>(key), std::forward<V>(value));
      break;
    case keyed_op::insert:
      t.try_emplace(std::forward<K>(key), std::forward<V>(value));
      break;
    case keyed_op::erase:
      t.erase(key);
      break;
  }
}

/// Applies to t, in slot-region order, the operations source produces: source(f) calls
/// f(keyed_op, key, value) for each, in their order, and must produce the same ones each time it
/// is called (it is called twice: once to count, once to copy them into a buffer that is then
/// applied). Small runs, and tables of a few regions, are applied in order in the second call.
/// Reserve t first: growth while applying would spoil the grouping (never the result).
/// Keys and values must be default-constructible (the buffer is made of empty operations); the
/// grouping hashes each key twice more, which suits the keys it is used with (integers).
template <class Table, class Source>
void apply_in_slot_order(Table& t, Source&& source) {
  using key_type = typename Table::key_type;
  using mapped_type = typename Table::mapped_type;
  // About 32 KiB of slots per region: a region's lines stay in L1/L2 while its operations run.
  constexpr std::size_t region_slots =
      std::bit_floor(std::max<std::size_t>(64, std::size_t{32768} / sizeof(typename Table::value_type)));
  constexpr int shift = std::countr_zero(region_slots);
  constexpr std::size_t min_ops = 4096;  // below this, grouping does not pay for its passes

  const std::size_t cap = t.bucket_count();  // 2^k - 1, or 0
  const std::size_t regions = (cap + 1) >> shift;
  const auto hash = t.hash_function();
  const auto region = [&](const key_type& k) { return ((hash(k) >> 7) & cap) >> shift; };
  const auto in_order = [&t](keyed_op op, auto&& key, auto&& value) {
    apply_keyed(t, op, std::forward<decltype(key)>(key), std::forward<decltype(value)>(value));
  };
  if (regions < 4) return source(in_order);

  // Counting sort: count, prefix sums (start[r] = the first place of region r), scatter.
  std::vector<std::size_t> start(regions + 1, 0);
  std::size_t n = 0;
  source([&](keyed_op, const auto& key, const auto&) {
    ++start[region(key) + 1];
    ++n;
  });
  if (n < min_ops) return source(in_order);
  for (std::size_t r = 0; r < regions; ++r) start[r + 1] += start[r];
  struct entry {
    key_type key;
    mapped_type value;
    keyed_op op;
  };
  std::vector<entry> sorted(n);
  source([&](keyed_op op, auto&& key, auto&& value) {
    entry& e = sorted[start[region(key)]++];
    e.key = std::forward<decltype(key)>(key);
    e.value = std::forward<decltype(value)>(value);
    e.op = op;
  });
  for (entry& e : sorted) apply_keyed(t, e.op, std::move(e.key), std::move(e.value));
}

}  // namespace leftright::detail
