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

/// The buffer apply_in_slot_order sorts a run's operations into. A caller that sorts many runs
/// (a log, segment by segment) keeps one and passes it to each call: the memory of a large
/// buffer made anew comes fresh from the kernel each time, which zeroes it page by page.
template <class Table>
using slot_order_buffer = std::vector<slot_order_entry<typename Table::key_type, typename Table::mapped_type>>;

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
/// scratch: the buffer to sort into (a slot_order_buffer of the tables' type); null: one of its own.
template <class Tables, class Source, class Buffer = std::nullptr_t>
void apply_in_slot_order(Tables& ts, Source&& source, Buffer* scratch = nullptr) {
  if constexpr (!table_set<Tables>) {
    one_table<Tables> one(ts);
    apply_in_slot_order(one, std::forward<Source>(source), scratch);
  } else {
    using Table = std::remove_reference_t<decltype(ts.table(0))>;
    using key_type = typename Table::key_type;
    using mapped_type = typename Table::mapped_type;
    // About 32 KiB of slots per region: a region's lines stay in L1/L2 while its operations run.
    constexpr std::size_t region_slots =
        std::bit_floor(std::max<std::size_t>(64, std::size_t{32768} / sizeof(typename Table::value_type)));
    constexpr int shift = std::countr_zero(region_slots);
    constexpr std::size_t min_ops = 4096;  // below this, grouping does not pay for its passes

    const Table& first = ts.table(0);
    const std::size_t cap = first.bucket_count();  // 2^k - 1, or 0
    const std::size_t regions = (cap + 1) >> shift;
    const auto hash = first.hash_function();
    const auto region = [&](const key_type& k) { return ((hash(k) >> 7) & cap) >> shift; };
    const auto in_order = [&ts, &source](std::size_t i) {
      Table& t = ts.table(i);
      source([&t](keyed_op op, auto&& key, auto&& value) {
        apply_keyed(t, op, std::forward<decltype(key)>(key), std::forward<decltype(value)>(value));
      });
    };
    if (regions < 4) return ts.each(in_order);

    // Counting sort: count, prefix sums (start[r] = the first place of region r), scatter.
    std::vector<std::size_t> start(regions + 1, 0);
    std::size_t n = 0;
    source([&](keyed_op, const auto& key, const auto&) {
      ++start[region(key) + 1];
      ++n;
    });
    if (n < min_ops) return ts.each(in_order);
    for (std::size_t r = 0; r < regions; ++r) start[r + 1] += start[r];
    using entry = slot_order_entry<key_type, mapped_type>;
    static_assert(std::is_same_v<Buffer, std::nullptr_t> || std::is_same_v<Buffer, slot_order_buffer<Table>>,
                  "apply_in_slot_order: scratch is a slot_order_buffer of the tables' type");
    slot_order_buffer<Table> own;
    slot_order_buffer<Table>& sorted = [&]() -> slot_order_buffer<Table>& {
      if constexpr (std::is_same_v<Buffer, slot_order_buffer<Table>>) {
        if (scratch) return *scratch;
      }
      return own;
    }();
    sorted.resize(n);  // every entry is written below
    source([&](keyed_op op, auto&& key, auto&& value) {
      entry& e = sorted[start[region(key)]++];
      e.key = std::forward<decltype(key)>(key);
      e.value = std::forward<decltype(value)>(value);
      e.op = op;
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

/// Inserts (insert_or_assign) into every table of ts, in slot-region order, the n entries laid
/// out from base every `stride` bytes, which decode(const std::byte*) reads as a (key, value)
/// pair: apply_in_slot_order for entries that can be read again where they lie (a snapshot's,
/// in place). The buffer holds each entry's 4-byte index, not the entry (a sixth of the memory
/// for 8-byte keys and values, the most recovery holds beside its tables); each entry is read
/// again as it is inserted, prefetched some entries ahead. The same rules as apply_in_slot_order
/// (tables of the same capacity and hash, reserved first); entries are inserted in their order
/// where grouping does not pay, or above 2^32 of them (then through apply_in_slot_order).
template <class Tables, class Decode>
void insert_in_slot_order(Tables& ts, const std::byte* base, std::size_t n, std::size_t stride, Decode decode) {
  if constexpr (!table_set<Tables>) {
    one_table<Tables> one(ts);
    insert_in_slot_order(one, base, n, stride, std::move(decode));
  } else {
    using Table = std::remove_reference_t<decltype(ts.table(0))>;
    constexpr std::size_t region_slots =
        std::bit_floor(std::max<std::size_t>(64, std::size_t{32768} / sizeof(typename Table::value_type)));
    constexpr int shift = std::countr_zero(region_slots);
    constexpr std::size_t min_ops = 4096;
    constexpr std::size_t ahead = 16;  // entries prefetched ahead of the one inserted

    const Table& first = ts.table(0);
    const std::size_t cap = first.bucket_count();
    const std::size_t regions = (cap + 1) >> shift;
    if (regions < 4 || n < min_ops || n > UINT32_MAX) {
      return apply_in_slot_order(ts, [&](auto&& f) {
        for (std::size_t i = 0; i < n; ++i) {
          auto [key, value] = decode(base + i * stride);
          f(keyed_op::insert_or_assign, std::move(key), std::move(value));
        }
      });
    }
    const auto hash = first.hash_function();
    const auto region_at = [&](std::size_t i) { return ((hash(decode(base + i * stride).first) >> 7) & cap) >> shift; };
    std::vector<std::size_t> start(regions + 1, 0);
    for (std::size_t i = 0; i < n; ++i) ++start[region_at(i) + 1];
    for (std::size_t r = 0; r < regions; ++r) start[r + 1] += start[r];
    std::vector<std::uint32_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[start[region_at(i)]++] = static_cast<std::uint32_t>(i);
    ts.each([&](std::size_t t_index) {
      Table& t = ts.table(t_index);
      for (std::size_t j = 0; j < n; ++j) {
        if (j + ahead < n) __builtin_prefetch(base + std::size_t{order[j + ahead]} * stride);
        auto [key, value] = decode(base + std::size_t{order[j]} * stride);
        t.insert_or_assign(std::move(key), std::move(value));
      }
    });
  }
}

}  // namespace leftright::detail
