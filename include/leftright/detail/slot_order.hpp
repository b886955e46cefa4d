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

#include "allocator.hpp"

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

/// A set of one table: apply_in_slot_order's view of a single table. A table set (recovery's
/// recovery_tables is the other) has count() tables, table(i), and each(f), which calls f(i) for
/// every i, possibly at the same time on several threads.
template <class Table>
class one_table {
 public:
  explicit one_table(Table& t) noexcept : t_(t) {}
  static constexpr std::size_t count() noexcept { return 1; }
  Table& table(std::size_t) const noexcept { return t_; }
  template <class F>
  void each(F&& f) const {
    f(std::size_t{0});
  }

 private:
  Table& t_;
};

template <class T>
concept table_set = requires(T& s) {
  s.count();
  s.table(std::size_t{0});
};

/// One operation in apply_in_slot_order's buffer.
template <class Key, class Value>
struct slot_order_entry {
  Key key;
  Value value;
  keyed_op op;
};

/// One keyed operation read where it lies (apply_in_place_in_slot_order's decode gives these).
template <class Key, class Value>
struct placed_op {
  keyed_op op;
  Key key;
  Value value;
};

/// Calls f(table) for each table of ts (a table_set: through ts.each, so possibly at the same
/// time on several threads; or one table).
template <class Tables, class F>
void each_table(Tables& ts, F&& f) {
  if constexpr (table_set<Tables>) {
    ts.each([&ts, &f](std::size_t i) { f(ts.table(i)); });
  } else {
    f(ts);
  }
}

/// How a table's slots are grouped: regions of about 32 KiB of slots, so that a region's lines
/// stay in L1/L2 while its operations run; region(key) is the region where key's probe starts.
template <class Table>
class slot_regions {
 public:
  /// Below this many operations, grouping does not pay for its passes.
  static constexpr std::size_t min_ops = 4096;

  explicit slot_regions(const Table& t)
      : cap_(t.bucket_count()), count_((cap_ + 1) >> shift), hash_(t.hash_function()) {}
  std::size_t count() const noexcept { return count_; }
  /// Whether the table has regions enough to group by (a small table is applied in order).
  bool groups() const noexcept { return count_ >= 4; }
  /// Whether n operations are worth grouping: enough of them, and a table of enough regions.
  bool pays(std::size_t n) const noexcept { return groups() && n >= min_ops; }
  template <class K>
  std::size_t region(const K& key) const {
    return ((hash_(key) >> 7) & cap_) >> shift;
  }

 private:
  static constexpr std::size_t region_slots =
      std::bit_floor(std::max<std::size_t>(64, std::size_t{32768} / sizeof(typename Table::value_type)));
  static constexpr int shift = std::countr_zero(region_slots);
  std::size_t cap_;  // 2^k - 1, or 0
  std::size_t count_;
  typename Table::hasher hash_;
};

/// The buffer apply_in_place_in_slot_order sorts operations' offsets into (see buffer_allocator).
using sort_buffer = std::vector<std::uint32_t, buffer_allocator<std::uint32_t>>;

/// A stable counting sort by region, in two passes over the same items in the same order:
/// count(region) for each, then, into a buffer, place(region, value) for each.
template <class T, class Buffer = std::vector<T>>
class region_sort {
 public:
  explicit region_sort(std::size_t regions) : start_(regions + 1, 0) {}
  void count(std::size_t region) noexcept {
    ++start_[region + 1];
    ++n_;
  }
  std::size_t counted() const noexcept { return n_; }
  /// Ends the counting: place() then fills out (resized to counted()).
  void place_into(Buffer& out) {
    for (std::size_t r = 0; r + 1 < start_.size(); ++r) start_[r + 1] += start_[r];
    out.resize(n_);  // every element is written by place()
    out_ = &out;
  }
  void place(std::size_t region, T value) noexcept(std::is_nothrow_move_assignable_v<T>) {
    (*out_)[start_[region]++] = std::move(value);
  }

 private:
  std::vector<std::size_t> start_;  // counts, then where each region's next item goes
  std::size_t n_ = 0;
  Buffer* out_ = nullptr;
};

/// Applies to every table of ts (a table_set, or one table), in slot-region order, the operations
/// source produces: source(f) calls f(keyed_op, key, value) for each, in their order, and must
/// produce the same ones each time it is called (it is called twice: once to count, once to copy
/// them into a buffer that is then applied to each table; the tables share the buffer). Small
/// runs, and tables of a few regions, are applied in order: source is then called once per
/// table, at the same time on ts's threads. The tables must have the same capacity and hash
/// (the grouping is computed for the first). Reserve them first: growth while applying would
/// spoil the grouping (never the result).
/// Keys and values must be default-constructible (the buffer is made of empty operations); the
/// grouping hashes each key twice more, which suits the keys it is used with (integers).
template <class Tables, class Source>
void apply_in_slot_order(Tables& ts, Source&& source) {
  if constexpr (!table_set<Tables>) {
    one_table<Tables> one(ts);
    apply_in_slot_order(one, std::forward<Source>(source));
  } else {
    using Table = std::remove_reference_t<decltype(ts.table(0))>;
    using entry = slot_order_entry<typename Table::key_type, typename Table::mapped_type>;
    const auto in_order = [&ts, &source](std::size_t i) {
      Table& t = ts.table(i);
      source([&t](keyed_op op, auto&& key, auto&& value) {
        apply_keyed(t, op, std::forward<decltype(key)>(key), std::forward<decltype(value)>(value));
      });
    };
    const slot_regions<Table> regions(ts.table(0));
    if (!regions.groups()) return ts.each(in_order);
    region_sort<entry> sort(regions.count());
    source([&](keyed_op, const auto& key, const auto&) { sort.count(regions.region(key)); });
    if (!regions.pays(sort.counted())) return ts.each(in_order);
    std::vector<entry> sorted;
    sort.place_into(sorted);
    source([&](keyed_op op, auto&& key, auto&& value) {
      const std::size_t r = regions.region(key);
      sort.place(r, entry{std::forward<decltype(key)>(key), std::forward<decltype(value)>(value), op});
    });
    ts.each([&ts, &sorted](std::size_t i) {
      Table& t = ts.table(i);
      if (ts.count() == 1) {
        for (entry& e : sorted) apply_keyed(t, e.op, std::move(e.key), std::move(e.value));
      } else {
        for (const entry& e : sorted) apply_keyed(t, e.op, e.key, e.value);  // shared: copied
      }
    });
  }
}

/// apply_in_slot_order for operations that lie in memory and can be read again where they lie
/// (a snapshot's entries, a log's operations, in place in their mapped files): places(f) calls
/// f(const std::byte* p) with the place of each operation, in their order, the same places each
/// time it is called; decode(p) reads the one at p as a placed_op. The sort keeps each
/// operation's 4-byte offset from base, not the operation (a sixth of the memory for 8-byte keys
/// and values, the most recovery holds beside its tables); each operation is read again as it is
/// applied, prefetched some operations ahead. Every place must lie in [base, base + bytes).
/// order: the buffer to sort into, kept by a caller that sorts many runs (the memory of a large
/// buffer made anew comes fresh from the kernel, which zeroes it page by page).
/// The same rules as apply_in_slot_order (tables of the same capacity and hash, reserved first);
/// operations are applied in their order where grouping does not pay, and through
/// apply_in_slot_order where bytes exceeds 4 GiB - 1.
template <class Tables, class Places, class Decode>
void apply_in_place_in_slot_order(Tables& ts, const std::byte* base, std::size_t bytes, Places&& places,
                                  Decode&& decode, sort_buffer& order) {
  if constexpr (!table_set<Tables>) {
    one_table<Tables> one(ts);
    apply_in_place_in_slot_order(one, base, bytes, places, decode, order);
  } else {
    using Table = std::remove_reference_t<decltype(ts.table(0))>;
    constexpr std::size_t ahead = 16;  // operations prefetched ahead of the one applied
    const auto as_source = [&places, &decode](auto&& f) {
      places([&](const std::byte* p) {
        auto o = decode(p);
        f(o.op, std::move(o.key), std::move(o.value));
      });
    };
    const slot_regions<Table> regions(ts.table(0));
    const auto in_order = [&ts, &as_source](std::size_t i) {
      Table& t = ts.table(i);
      as_source([&t](keyed_op op, auto&& key, auto&& value) { apply_keyed(t, op, std::move(key), std::move(value)); });
    };
    if (!regions.groups()) return ts.each(in_order);
    if (bytes > UINT32_MAX) return apply_in_slot_order(ts, as_source);
    const auto region_at = [&](const std::byte* p) { return regions.region(decode(p).key); };
    region_sort<std::uint32_t, sort_buffer> sort(regions.count());
    places([&](const std::byte* p) { sort.count(region_at(p)); });
    const std::size_t n = sort.counted();
    if (!regions.pays(n)) return ts.each(in_order);
    sort.place_into(order);
    places([&](const std::byte* p) { sort.place(region_at(p), static_cast<std::uint32_t>(p - base)); });
    ts.each([&](std::size_t i) {
      Table& t = ts.table(i);
      for (std::size_t j = 0; j < n; ++j) {
        if (j + ahead < n) __builtin_prefetch(base + order[j + ahead]);
        auto o = decode(base + order[j]);
        apply_keyed(t, o.op, std::move(o.key), std::move(o.value));
      }
    });
  }
}

/// apply_in_place_in_slot_order with a buffer of its own (a caller that sorts once).
template <class Tables, class Places, class Decode>
void apply_in_place_in_slot_order(Tables& ts, const std::byte* base, std::size_t bytes, Places&& places,
                                  Decode&& decode) {
  sort_buffer order;
  apply_in_place_in_slot_order(ts, base, bytes, places, decode, order);
}

}  // namespace leftright::detail
