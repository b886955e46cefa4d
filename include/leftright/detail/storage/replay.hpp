// SPDX-License-Identifier: Apache-2.0
// leftright: the steps of recovery that know the map's types, each callable on its own (a
// follower of a replicated map bootstraps from a snapshot and replays records with them):
//   load_snapshot         a snapshot's entries into a table
//   load_newest_snapshot  the newest snapshot of a directory (the version the log goes on from)
//   apply_records         consecutive log records into a table (sized first for all of them:
//                         reserve_for_replay)
//   replay_log            a directory's log segments after the snapshot, each checked against
//                         the next (replay_segment), up to the first record not completely
//                         written or a hole a crash explains
//   recover_directory     all of it: inventory, snapshot, log, marker checks
// The table is a plain, single-threaded absl map (recovery_table); to_table() puts it in the
// map's layout. A large recovery builds the map's two copies side by side, each step applied to
// both on two threads (recovery_tables), rather than one table copied at the end. Beside each
// table, the metadata (Traits::meta_type; no_meta: the map has none) of the snapshot or the last
// batch that set one. The steps that do not depend on types are in recovery.hpp.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "../../codec.hpp"
#include "../../durable_options.hpp"
#include "../../storage_error.hpp"
#include "../allocator.hpp"
#include "../barrier.hpp"
#include "../distinct_count.hpp"
#include "../left_right.hpp"
#include "../map_ops.hpp"
#include "../slot_order.hpp"
#include "batch.hpp"
#include "fs.hpp"
#include "recovery.hpp"
#include "snapshot.hpp"
#include "wal.hpp"

namespace leftright::detail::storage {

/// When recovery builds the map's two copies side by side: once a snapshot holds from_snapshot
/// entries or more, or once replaying the log is expected to leave from_log entries or more
/// (SIZE_MAX: never). See two_tables_for.
struct two_tables {
  std::size_t from_snapshot = SIZE_MAX;
  std::size_t from_log = SIZE_MAX;
};

/// What recovery reads and how: the directory, its file system, the codec names its files must
/// carry, and whether it may write (a writable open) or only note what it would change.
struct recovery_source {
  file_system& fsys;
  const std::filesystem::path& dir;
  bool writable;
  const std::string& key_codec;
  const std::string& value_codec;
  /// When to build the map's two copies side by side (recovery_tables::split) rather than one
  /// table, which the caller copies.
  two_tables split = {};
  /// Where the copies may be built on two threads (split), once a log segment of this many
  /// bytes or more is read, the log's next segments are read ahead on a second thread: in its
  /// size estimate (segments_ahead) and in its replay (segment_prescan). Segments grow to 64 MiB
  /// by default, so only a long log has any this large: each takes tens of milliseconds to check.
  std::size_t read_ahead_from = std::size_t{16} << 20;

  /// Whether the segments after one of segment_bytes are read ahead (see read_ahead_from).
  bool reads_ahead_after(std::size_t segment_bytes) const noexcept {
    return split.from_log != SIZE_MAX && segment_bytes >= read_ahead_from;
  }
};

/// The tables recovery builds and their metadata: the caller's table and, once split(), a second
/// one built beside it. Each step is applied to both at once (each(): the second on a thread of
/// its own), so that the map's two copies take about the time of one to build, where they took
/// one build and a copy. A table_set (slot_order.hpp).
template <class Table, class Meta>
class recovery_tables {
 public:
  recovery_tables(Table& t, Meta& meta) noexcept : first_(t), meta_(meta) {}
  recovery_tables(const recovery_tables&) = delete;
  recovery_tables& operator=(const recovery_tables&) = delete;

  std::size_t count() const noexcept { return second_ ? 2 : 1; }
  Table& table(std::size_t i) noexcept { return i == 0 ? first_ : second_->table; }
  Meta& meta(std::size_t i) noexcept { return i == 0 ? meta_ : second_->meta; }

  /// From now on builds a second table too, starting as a copy of the first (nothing to copy
  /// when it comes before the first step).
  void split() {
    if (!second_) second_.emplace(copy{Table(first_), meta_});
  }

  /// Calls f(i) for each table: with two, f(1) on a new thread while f(0) runs on this one
  /// (where no thread can be started, f(1) after f(0)). Returns once both have; rethrows what f
  /// threw (f(0)'s exception first).
  template <class F>
  void each(F&& f) {
    if (!second_) return f(std::size_t{0});
    std::exception_ptr second_error;
    const auto second = [&f, &second_error]() noexcept {
      try {
        f(std::size_t{1});
      } catch (...) {
        second_error = std::current_exception();
      }
    };
    {
      std::jthread helper;
      try {
        helper = std::jthread(second);
      } catch (const std::system_error&) {
        // No thread to be had (a process or memory limit): the same work, one table after the other.
      }
      f(std::size_t{0});  // a throw joins the helper (its destructor) and propagates
      if (!helper.joinable()) second();
    }
    if (second_error) std::rethrow_exception(second_error);
  }

  /// The buffer the steps sort runs of operations into (apply_in_place_in_slot_order), kept from
  /// one to the next, and release_sort_buffer() to give it back once the last is done.
  detail::sort_buffer& sort_buffer() noexcept { return sort_buffer_; }
  void release_sort_buffer() noexcept { detail::sort_buffer().swap(sort_buffer_); }

  /// The second table, moved out (nullopt if never split).
  std::optional<Table> take_second() {
    if (!second_) return std::nullopt;
    std::optional<Table> t(std::move(second_->table));
    second_.reset();
    return t;
  }

 private:
  struct copy {
    Table table;
    Meta meta;
  };
  Table& first_;
  Meta& meta_;
  std::optional<copy> second_;
  detail::sort_buffer sort_buffer_;
};

/// The value codec name a map's files carry: the value's codec, and the metadata's for a map
/// that has metadata (see format.hpp). Needs leftright::codec<Meta> (codec.hpp).
template <class Value, class Meta>
std::string value_codec_name() {
  if constexpr (std::is_same_v<Meta, no_meta>) {
    return codec_name<Value>();
  } else {
    static_assert(encodable<Meta>,
                  "leftright: a durable map's Traits::meta_type needs a codec (specialize leftright::codec)");
    return codec_name<Value>() + "+meta:" + codec_name<Meta>();
  }
}

/// Applies a logged batch to a recovering table and its metadata (apply_batch, with no
/// metadata to take where the map has none).
template <class Key, class Value, class Table, class Meta>
void apply_batch_with_meta(Table& t, std::span<const std::byte> payload, Meta& meta) {
  if constexpr (std::is_same_v<Meta, no_meta>) {
    apply_batch<Key, Value>(t, payload);
  } else {
    apply_batch<Key, Value>(t, payload, &meta);
  }
}

/// A reader over a snapshot's data from its current start (view.data) whose byte offsets, in
/// what it throws, are file offsets where the view maps the file (read_snapshot), and offsets
/// from the start of view.data otherwise (parse_snapshot's view of bytes checked alone); and
/// which of the two they are, for messages ("file offset", or "byte offset <n> of the <part>").
struct snapshot_data_reader {
  byte_reader r;
  bool file_offsets;
};

inline snapshot_data_reader read_snapshot_data(const snapshot_view& view) {
  const std::byte* const begin = view.data.data();
  const std::byte* const end = begin + view.data.size();
  const std::byte* const file = view.map != nullptr ? view.map->data() : nullptr;
  if (file != nullptr && file <= begin && end <= file + view.map->size()) {  // so always (read_snapshot)
    snapshot_data_reader d{byte_reader(file, static_cast<std::size_t>(end - file)), true};
    d.r.get_bytes(static_cast<std::size_t>(begin - file), "snapshot header");  // cannot fail
    return d;
  }
  return {byte_reader(view.data), false};
}

/// "file offset 72", or "byte offset 13 of the entries": where offset lies (see snapshot_data_reader).
inline std::string snapshot_offset(const snapshot_data_reader& d, std::size_t offset, const char* part) {
  return d.file_offsets ? "file offset " + std::to_string(offset)
                        : "byte offset " + std::to_string(offset) + " of the " + part;
}

/// Takes a snapshot's metadata (u32 length, its encoding) off the front of its entries, for a
/// map with metadata; nothing otherwise. Throws storage_error naming path if it does not decode.
template <class Meta>
void take_snapshot_meta(snapshot_view& view, Meta& meta, const std::filesystem::path& path) {
  if constexpr (!std::is_same_v<Meta, no_meta>) {
    snapshot_data_reader d = read_snapshot_data(view);
    const std::size_t at = d.r.position();
    try {
      meta = decode_meta<Meta>(d.r.get_bytes(d.r.get_u32("metadata length"), "metadata"));
      view.data = view.data.subspan(d.r.position() - at);
    } catch (const storage_error& e) {
      // e.detail(), not e.what(): one "leftright: " prefix. A fault inside the encoding gives an
      // offset from the encoding's start, 4 bytes after the length.
      throw storage_error(path, "read snapshot", 0,
                          "the metadata (its u32 length at " + snapshot_offset(d, at, "snapshot data") +
                              ") does not decode: " + e.detail());
    }
  }
}

/// Decodes a checked snapshot's entries into each recovering table of ts (a table_set, or one
/// plain, single-threaded absl map). Throws storage_error naming path if they do not decode.
/// Built-in integer keys and values whose bytes are exactly `entries` entries are read in place
/// (no bounds check per field) and inserted in the table's slot order where they lie
/// (apply_in_place_in_slot_order).
template <class Key, class Value, class Tables>
void load_snapshot(Tables& ts, const snapshot_view& view, const std::filesystem::path& path) {
  each_table(ts, [&view](auto& t) { reserve_room(t, static_cast<std::size_t>(view.entries)); });  // see map_ops.hpp
  if constexpr (builtin_batch<Key, Value>) {
    constexpr std::size_t es = sizeof(Key) + sizeof(Value);
    // entries <= data bytes + 1 (parse_snapshot), so the product cannot overflow.
    if (view.data.size() == view.entries * es) {
      const std::byte* const base = view.data.data();
      apply_in_place_in_slot_order(
          ts, base, view.data.size(),
          [base, end = base + view.data.size()](auto&& f) {
            for (const std::byte* e = base; e != end; e += es) f(e);
          },
          [](const std::byte* e) {
            return placed_op<Key, Value>{keyed_op::insert_or_assign, load_builtin<Key>(e),
                                         load_builtin<Value>(e + sizeof(Key))};
          });
      return;
    }
  }
  each_table(ts, [&view, &path](auto& t) {
    snapshot_data_reader d = read_snapshot_data(view);
    byte_reader& r = d.r;
    std::uint64_t i = 0;
    std::size_t at = r.position();
    try {
      for (; i < view.entries; ++i, at = r.position()) {
        Key k = leftright::decode<Key>(r);
        t.insert_or_assign(std::move(k), leftright::decode<Value>(r));
      }
      if (!r.empty()) {
        throw storage_error({}, "decode", 0,
                            std::to_string(r.remaining()) + " bytes after the last entry, from " +
                                snapshot_offset(d, r.position(), "entries"));
      }
    } catch (const storage_error& e) {
      // e.detail(), not e.what(): one "leftright: " prefix; the detail's offsets are d's too.
      throw storage_error(path, "read snapshot", 0,
                          i == view.entries ? e.detail()
                                            : "entry " + std::to_string(i + 1) + " of " + std::to_string(view.entries) +
                                                  " (from " + snapshot_offset(d, at, "entries") +
                                                  ") does not decode: " + e.detail());
    }
  });
}

/// An upper estimate of the entries a run of logged batches can add (to reserve before they are
/// replayed): each record's operation count, capped by what its payload can hold (an insert
/// takes at least min_op bytes; a damaged but checksummed count must not size the table).
template <class Records>
std::size_t logged_operations(const Records& records, std::size_t min_op) {
  std::uint64_t n = 0;
  for (const auto& rec : records) {
    if (rec.payload.size() < 4) continue;
    const std::uint64_t count = load_le<std::uint32_t>(rec.payload.data());
    n += std::min<std::uint64_t>(count, (rec.payload.size() - 4) / min_op);
  }
  return static_cast<std::size_t>(n);
}

/// The recovered state in the map's layout.
template <class Ops, class Plain>
typename Ops::table to_table(Plain&& plain) {
  using table = typename Ops::table;
  if constexpr (std::is_same_v<table, std::decay_t<Plain>>) {
    return std::move(plain);
  } else {
    table t(table::buckets_for(plain.size()), plain.hash_function(), plain.key_eq());
    for (auto& [k, v] : plain) {
      node_ref<typename table::node::key_type, typename table::node::value_type> n(t.make_node(k, std::move(v)));
      t.put(n.get());
    }
    return t;
  }
}

/// The table recovery builds: a plain, single-threaded absl map (the map's layout may differ,
/// see to_table) with the map's allocator, so that for the inline layout it moves in as it is.
template <class Key, class Value, class Hash, class Eq, class Traits>
using recovery_table = absl::flat_hash_map<Key, Value, Hash, Eq,
                                           table_allocator_t<std::pair<const Key, Value>, Traits::huge_pages>>;

/// The shared state of a map holding the recovered table at version, labelled meta: both copies
/// in the map's layout. The second is `second` where recovery built one beside the first (the
/// inline layout, where to_table moves the table in as it is), else made with Ops::copy, not the
/// table's copy constructor: see map_ops.hpp.
template <class Ops, class Traits, class Plain>
std::shared_ptr<lr_core<typename Ops::table, typename meta_of<Traits>::type>> recovered_core(
    Plain&& plain, std::uint64_t version, const typename meta_of<Traits>::type& meta = {},
    std::optional<std::decay_t<Plain>> second = std::nullopt) {
  using table = typename Ops::table;
  table first = to_table<Ops>(std::forward<Plain>(plain));
  table other = [&] {
    if constexpr (std::is_same_v<table, std::decay_t<Plain>>) {
      if (second) return std::move(*second);
    }
    return Ops::copy(first);
  }();
  return std::make_shared<lr_core<table, typename meta_of<Traits>::type>>(Traits::sync, version,
                                                                          std::move(first), std::move(other), meta);
}

/// recovery_source::split for a map of layout Ops recovered into Plain tables, from
/// options.recovery_threads (see durable_options). Throws storage_error (EINVAL) above 2.
///
/// Chosen by size (0), on two cores or more: a snapshot of 64K entries or more is loaded into
/// two tables at once (its entries come in slot order, and two threads stream them into the two
/// tables in about the time of one: 16M entries, 13.5 M/s against 11.7 on one thread and a
/// copy), and so is a log replay expected to leave 4M entries or more. There, each table takes
/// every operation, and two of them at once compete for the memory bus, against a copy of one
/// table afterwards; which wins depends on the tables' size against the caches (a 2-vCPU AMD
/// EPYC guest, alternating opens, medians: 16M entries 2.1 s and 2.3 s on two threads against
/// 2.5 s and 2.8 s on one, though one benchmark run went the other way, 2.5 s against 2.1 s; 4M
/// 0.65 s against 0.75 s; 1M 0.149 s against 0.132 s). A log after a snapshot that was split
/// goes into both.
template <class Ops, class Plain>
two_tables two_tables_for(const durable_options& options) {
  if (options.recovery_threads > 2) {
    throw storage_error(options.path, "open", EINVAL,
                        "recovery_threads must be 0 (chosen by size), 1 or 2; it is " +
                            std::to_string(options.recovery_threads));
  }
  constexpr std::size_t auto_from_snapshot = std::size_t{1} << 16;
  constexpr std::size_t auto_from_log = std::size_t{1} << 22;
  if (!std::is_same_v<typename Ops::table, Plain> || options.recovery_threads == 1) return {};
  if (options.recovery_threads == 2) return {0, 0};
  if (std::thread::hardware_concurrency() < 2) return {};
  return {auto_from_snapshot, auto_from_log};
}

/// Loads the newest snapshot into the tables of ts and their metadata (a committed snapshot was
/// synced before its rename: if it does not check out, that is damage, not a crash, and recovery
/// refuses rather than silently go back in time); splits ts first if the snapshot holds
/// src.split.from_snapshot entries or more. Returns the first version the log must supply.
template <class Key, class Value, class Tables>
std::uint64_t load_newest_snapshot(Tables& ts, const recovery_source& src, const inventory& inv,
                                   recovery_report& rep) {
  if (inv.snapshots.empty()) return 1;
  const auto& [seq, name] = *inv.snapshots.rbegin();
  const auto path = src.dir / name;
  auto view = read_snapshot(src.fsys, path, src.key_codec, src.value_codec);
  if (view.seq != seq) throw storage_error(path, "read snapshot", 0, "file name and header disagree");
  take_snapshot_meta(view, ts.meta(0), path);
  for (std::size_t i = 1; i < ts.count(); ++i) ts.meta(i) = ts.meta(0);
  if (view.entries >= src.split.from_snapshot) ts.split();
  load_snapshot<Key, Value>(ts, view, path);
  rep.snapshot_version = seq;
  rep.snapshot_entries = view.entries;
  return seq + 1;
}

/// The fewest bytes a logged insert takes: a tag, a key and a value for built-in integers (the
/// in-place format); a tag and (for all keys but one) a byte otherwise.
template <class Key, class Value>
inline constexpr std::size_t min_logged_op = builtin_batch<Key, Value> ? 1 + sizeof(Key) + sizeof(Value) : 2;

/// What a log's replay may add to a table: its operations (an upper bound), and, where the log
/// is made of built-in-integer batches, an upper estimate of the distinct keys it inserts.
struct log_estimate {
  std::size_t operations = 0;
  std::optional<std::size_t> distinct_keys;
  std::size_t read_ahead = 0;  ///< segments read on the second thread (segments_ahead)
};

/// Gives a recovering table room for what a replay adds before it runs, so that it is sized
/// once rather than grown step by step (each growth moves every entry, and a growth in the
/// middle of a run applied in slot order spoils its order): the distinct keys the log inserts
/// where they are known, otherwise at most the table's size or 4M more (a long log of
/// overwrites or erases must not size a huge table).
template <class Table>
void reserve_for_replay(Table& t, const log_estimate& more) {
  constexpr std::size_t replay_reserve_cap = std::size_t{1} << 22;
  const std::size_t add = more.distinct_keys ? std::min(more.operations, *more.distinct_keys)
                                             : std::min(more.operations, std::max(t.size(), replay_reserve_cap));
  reserve_room(t, t.size() + add);
}

/// Adds to keys every key a built-in-integer payload inserts or assigns. False if the payload
/// does not check (nothing added; its replay will say what is wrong).
template <class Key, class Value>
bool count_inserted_keys(std::span<const std::byte> payload, distinct_count& keys) {
  if (check_builtin_batch<Key, Value>(payload) == batch_check::bad) return false;
  struct adder {
    distinct_count& keys;
    void assign(Key k, Value) noexcept { keys.add(static_cast<std::uint64_t>(k)); }
    void insert(Key k, Value) noexcept { keys.add(static_cast<std::uint64_t>(k)); }
    void erase(Key) noexcept {}
    void clear() noexcept {}
    void meta(std::span<const std::byte>) noexcept {}
  } v{keys};
  raw_fields<Key, Value> in(payload);
  walk_ops(in, v);
  return true;
}

/// Gives back the room a replay reserved and did not use (reserve_for_replay counted every
/// operation as an insert; overwrites and erases use none, and a table never shrinks by itself).
template <class Table>
void trim_after_replay(Table& t) {
  if (t.size() < t.bucket_count() / 4) rebuild_for(t, t.size());
}

/// Applies one logged record of segment `path` to a recovering table and its metadata, through
/// the codec path. Throws storage_error naming the record if it does not decode.
template <class Key, class Value, class Table, class Meta>
void apply_record(Table& t, Meta& meta, const wal_record& rec, const std::filesystem::path& path) {
  try {
    apply_batch_with_meta<Key, Value>(t, rec.payload, meta);
  } catch (const storage_error& e) {
    throw storage_error(path, "recover", 0,
                        "record " + std::to_string(rec.seq) + " at offset " + std::to_string(rec.offset) +
                            " has a valid checksum but does not decode: " + e.detail());
  }
}

/// Applies consecutive log records of segment `path` to each recovering table of ts (a
/// recovery_tables) and its metadata. The caller reserves room first (reserve_for_replay), for
/// the whole log at once.
///
/// For built-in integers, each run of records that check and hold no clear or metadata, with
/// slot_regions' min_ops operations or more, is applied in the table's slot order where its
/// operations lie in the mapped segment (apply_in_place_in_slot_order: sorted once, applied to
/// both tables at once); the records between such runs are applied in order, each table on its
/// own. So each step that runs on two threads has thousands of operations to do, whatever the
/// mix of records: a thread is never started for one record.
template <class Key, class Value, class Tables>
void apply_records(Tables& ts, std::span<const wal_record> recs, const std::filesystem::path& path) {
  const auto in_order = [&ts, &path](std::span<const wal_record> run) {
    if (run.empty()) return;
    ts.each([&ts, &path, run](std::size_t i) {
      for (const auto& rec : run) apply_record<Key, Value>(ts.table(i), ts.meta(i), rec, path);
    });
  };
  if constexpr (builtin_batch<Key, Value>) {
    using table = std::remove_reference_t<decltype(ts.table(0))>;
    std::size_t done = 0;  // recs[0, done) are applied
    for (std::size_t from = 0; from < recs.size();) {
      // A run of keyed records: [from, to), holding ops operations.
      std::size_t to = from, ops = 0;
      while (to < recs.size() && check_builtin_batch<Key, Value>(recs[to].payload) == batch_check::keyed) {
        ops += logged_operations(recs.subspan(to, 1), min_logged_op<Key, Value>);
        ++to;
      }
      if (ops >= slot_regions<table>::min_ops) {
        in_order(recs.subspan(done, from - done));
        const auto run = recs.subspan(from, to - from);
        const std::byte* const base = run.front().payload.data();  // a segment's records lie in order
        const std::byte* const end = run.back().payload.data() + run.back().payload.size();
        apply_in_place_in_slot_order(
            ts, base, static_cast<std::size_t>(end - base),
            [run](auto&& f) {
              for (const auto& rec : run) for_each_keyed_op_place<Key, Value>(rec.payload, f);
            },
            [](const std::byte* p) { return decode_keyed_op<Key, Value>(p); }, ts.sort_buffer());
        done = to;
      }
      from = to == from ? to + 1 : to;  // past the run, or past the unkeyed record that ends none
    }
    in_order(recs.subspan(done));
  } else {
    in_order(recs);
  }
}

/// The records of a scanned segment from version expect up to (not including) limit: consecutive,
/// so a range of them.
inline std::span<const wal_record> records_between(const segment_scan& scan, std::uint64_t expect,
                                                   std::uint64_t limit) {
  std::size_t lo = 0;
  while (lo < scan.records.size() && scan.records[lo].seq < expect) ++lo;
  std::size_t hi = lo;
  while (hi < scan.records.size() && scan.records[hi].seq < limit) ++hi;
  return {scan.records.data() + lo, hi - lo};
}

/// Applies the records of a scanned segment from version expect up to (not including) limit to
/// each table of ts; returns the version the log must supply next.
template <class Key, class Value, class Tables>
std::uint64_t apply_scanned(Tables& ts, const segment_scan& scan, std::uint64_t expect, std::uint64_t limit,
                            const std::filesystem::path& path, recovery_report& rep) {
  const auto recs = records_between(scan, expect, limit);
  if (recs.empty()) return expect;
  apply_records<Key, Value>(ts, recs, path);
  rep.records_replayed += recs.size();
  return recs.back().seq + 1;
}

/// Notes where a scanned segment leaves the log: whether it held anything, and the segment a
/// writer must give a successor record (none once one has it).
inline void note_log_end(log_state& out, const segment_scan& scan, const std::filesystem::path& path,
                         std::uint64_t salt) {
  out.holds_data = out.holds_data || !scan.records.empty() || scan.successor || scan.torn;
  if (scan.successor) {
    out.open_end.reset();
  } else if (!scan.records.empty()) {
    out.open_end = log_state::end{path, salt, scan.end_offset, scan.first_seq + scan.records.size()};
  }
}

/// Notes in rep a newest segment whose last record was not completely written.
inline void note_torn_tail(recovery_report& rep, const std::string& name, const segment_scan& scan, bool writable) {
  const std::uint64_t ended = scan.first_seq + scan.records.size();  // first seq not read
  rep.tail_truncated = true;
  rep.note += std::string(writable ? "cut the log at " : "the log ends at ") + name + " offset " +
              std::to_string(scan.end_offset) + " (version " + std::to_string(ended) + " incompletely written" +
              (writable ? "" : "; a writable open starts a new segment after it") + "); ";
}

/// The log's segments by first version, oldest first.
using segment_list = std::vector<std::pair<std::uint64_t, std::string>>;

/// Whether segment segs[i] holds nothing the log needs from version expect on: the next segment
/// starts there or earlier (the newer segment wins).
inline bool covered(const segment_list& segs, std::size_t i, std::uint64_t expect) {
  return i + 1 < segs.size() && segs[i + 1].first <= expect;
}

/// What estimate_log reads in one segment: its records from version `from` up to `limit`
/// (records_between). read: the segment opened and scanned cleanly (otherwise the rest is empty).
struct segment_estimate {
  std::uint64_t from = 0;
  bool read = false;
  std::size_t bytes = 0;  ///< the segment file's size
  std::size_t operations = 0;
  distinct_count keys;                 ///< the keys its records insert (built-in integers)
  bool counted = false;                ///< every one of its records' keys went into keys
  std::optional<std::uint64_t> next;   ///< the version after its last record read, if it read one
  std::uint64_t ended = 0;             ///< the first version the segment does not hold
};

/// Reads segment `name` for estimate_log, from version `from` up to `limit`.
template <class Key, class Value>
segment_estimate estimate_segment(const recovery_source& src, const std::string& name, std::uint64_t from,
                                  std::uint64_t limit) {
  segment_estimate e;
  e.from = from;
  try {
    auto seg = open_for_scan(src.fsys, src.dir / name, false, src.key_codec, src.value_codec);
    const auto scan = scan_open_segment(seg);
    const auto recs = records_between(scan, from, limit);
    e.bytes = seg.map->size();
    e.operations = logged_operations(recs, min_logged_op<Key, Value>);
    e.counted = builtin_batch<Key, Value>;
    if constexpr (builtin_batch<Key, Value>) {
      for (const auto& rec : recs) e.counted = e.counted && count_inserted_keys<Key, Value>(rec.payload, e.keys);
    }
    if (!recs.empty()) e.next = recs.back().seq + 1;
    e.ended = scan.first_seq + scan.records.size();
    e.read = true;
  } catch (const storage_error&) {
    // not read: estimate_log stops here, as the replay will (which then says why)
  }
  return e;
}

/// A long log's segments read for estimate_log on a second thread while it reads them itself:
/// it from the oldest on, the helper from the newest back, until they meet. The helper reads
/// each from the version it starts at, which is where the log goes on in it unless a crash
/// left a hole or an overlap (estimate_log then reads it again itself).
class segments_ahead {
 public:
  segments_ahead() = default;
  segments_ahead(const segments_ahead&) = delete;
  segments_ahead& operator=(const segments_ahead&) = delete;

  /// Whether start() was called.
  bool tried() const noexcept { return tried_; }
  /// Starts the helper on segs[from, segs.size()); nothing where fewer than two segments are
  /// left or no thread can be had. Once only.
  template <class Key, class Value>
  void start(const recovery_source& src, const segment_list& segs, std::size_t from) {
    tried_ = true;
    if (segs.size() < from + 2) return;
    done_.assign(segs.size() - from, std::nullopt);
    first_ = from;
    front_ = from;
    back_ = segs.size() - 1;  // the newest is the helper's from the start, however late it starts
    try {
      // Stops early once estimate_log is done without it (a hole, a damaged segment).
      helper_ = std::jthread([this, &src, &segs](std::stop_token stop) {
        for (std::size_t j = segs.size() - 1; !stop.stop_requested();) {
          const std::uint64_t limit = j + 1 == segs.size() ? UINT64_MAX : segs[j + 1].first;
          try {
            done_[j - first_] = estimate_segment<Key, Value>(src, segs[j].second, segs[j].first, limit);
          } catch (...) {
            // (no memory, say) left to estimate_log, which reads it again itself
          }
          std::lock_guard lock(mu_);
          if (back_ <= front_) return;
          j = --back_;
        }
      });
    } catch (const std::system_error&) {
      first_ = SIZE_MAX;  // no thread to be had: estimate_log reads them all itself
    }
  }
  /// Segment i's estimate from version `from` if the helper read it so; nullopt where the
  /// caller must read it itself (the helper had not come to it: it no longer will).
  std::optional<segment_estimate> take(std::size_t i, std::uint64_t from) {
    if (first_ == SIZE_MAX || i < first_) return std::nullopt;
    {
      std::lock_guard lock(mu_);
      if (i < back_) {
        front_ = std::max(front_, i + 1);
        return std::nullopt;
      }
    }
    // The helper took i, and every later segment, and nothing is left for it to take: once
    // joined, its stores to done_ happen-before the reads below.
    if (helper_.joinable()) helper_.join();
    std::optional<segment_estimate>& e = done_[i - first_];
    if (!e || e->from != from) return std::nullopt;
    return std::exchange(e, std::nullopt);
  }

 private:
  bool tried_ = false;
  std::size_t first_ = SIZE_MAX;  ///< the first segment of the helper's range (SIZE_MAX: none)
  std::vector<std::optional<segment_estimate>> done_;  ///< by segment from first_
  std::mutex mu_;
  std::size_t front_ = 0;  ///< guarded by mu_: segments before it are the caller's
  std::size_t back_ = 0;   ///< guarded by mu_: segments from it on are the helper's
  std::jthread helper_;    ///< last: joined (its destructor) before the rest goes
};

/// What replaying the log from version expect on can add: the operations of the records
/// replay_log applies (logged_operations), and for built-in integers the distinct keys they
/// insert (a distinct_count over every insert's key), so that the table is sized once for the
/// whole log rather than grown segment by segment. Reads the segments as replay_segment does,
/// one at a time on each thread (a long log must not hold a file open per segment), and stops
/// where the replay stops: after a segment that ends before the next begins (a hole), or at one
/// that does not open and scan cleanly (replay_segment then says why). Its cost: one more
/// checksum pass over the log, whose pages the first pass leaves in memory for the second, and
/// for built-in integers a walk of its operations (a 16M-entry log, 320 MiB: 0.28-0.43 s on one thread,
/// 0.19-0.25 s on two). Once a segment is read after which src reads ahead
/// (recovery_source::reads_ahead_after), the segments left are read from both ends on two
/// threads (segments_ahead). The estimate is the same either way (distinct_count::merge).
template <class Key, class Value>
log_estimate estimate_log(const recovery_source& src, const segment_list& segs, std::uint64_t expect) {
  log_estimate est;
  distinct_count keys;
  bool counted = builtin_batch<Key, Value>;  // every record's keys went into keys
  segments_ahead ahead;
  for (std::size_t i = 0; i < segs.size() && segs[i].first <= expect; ++i) {
    if (covered(segs, i, expect)) continue;
    const std::uint64_t limit = i + 1 == segs.size() ? UINT64_MAX : segs[i + 1].first;
    std::optional<segment_estimate> e = ahead.take(i, expect);
    if (e) {
      ++est.read_ahead;
    } else {
      e = estimate_segment<Key, Value>(src, segs[i].second, expect, limit);
    }
    if (!e->read) break;
    est.operations += e->operations;
    keys.merge(e->keys);
    counted = counted && e->counted;
    if (e->next) expect = *e->next;
    if (expect < limit && e->ended < limit) break;  // a hole, or the end
    if (src.reads_ahead_after(e->bytes) && !ahead.tried()) ahead.start<Key, Value>(src, segs, i + 1);
  }
  if (counted) est.distinct_keys = keys.upper();
  return est;
}

/// A segment opened and scanned for its replay.
struct scanned_segment {
  open_segment seg;
  segment_scan scan;  ///< its records' payloads lie in seg's mapping
};

/// Opens the segment at path as the replay reads it (writable where src is) and scans it.
/// Throws storage_error as open_for_scan and scan_open_segment do.
inline scanned_segment open_and_scan(const recovery_source& src, const std::filesystem::path& path) {
  auto seg = open_for_scan(src.fsys, path, src.writable, src.key_codec, src.value_codec);
  auto scan = scan_open_segment(seg);
  return {std::move(seg), std::move(scan)};
}

/// The next segment of a long log opened and scanned (open_for_scan, scan_open_segment) on a
/// thread of its own while replay_log applies the one before it: the checksums of a 64 MiB
/// segment take 40-90 ms, which the replay otherwise spends on one thread while the second
/// waits. Read only; a scan that fails is dropped, and the replay opens and scans that segment
/// itself, failing as it would have.
class segment_prescan {
 public:
  segment_prescan() = default;
  segment_prescan(const segment_prescan&) = delete;
  segment_prescan& operator=(const segment_prescan&) = delete;

  /// Opens and scans segment i (at path) on a thread of its own (nothing if none can be had).
  void start(const recovery_source& src, std::size_t i, std::filesystem::path path) {
    finish();
    try {
      thread_ = std::jthread([this, &src, path = std::move(path)] {
        try {
          done_.emplace(open_and_scan(src, path));
        } catch (...) {
          // dropped: the replay reads the segment itself, and says what is wrong with it
        }
      });
      index_ = i;
    } catch (const std::system_error&) {
      // no thread to be had: the replay reads the segment itself
    }
  }
  /// Segment i, if it is the one started and its scan succeeded (waits for it).
  std::optional<scanned_segment> take(std::size_t i) {
    const bool mine = index_ == i;
    join();
    std::optional<scanned_segment> r;
    if (mine) r.swap(done_);
    finish();
    return r;
  }
  /// Waits for a scan in progress and drops it: before anything changes the log's files.
  void finish() noexcept {
    join();
    done_.reset();
    index_ = SIZE_MAX;
  }

 private:
  void join() noexcept {
    if (thread_.joinable()) thread_.join();  // its store to done_ happens-before what follows
  }
  std::size_t index_ = SIZE_MAX;
  std::optional<scanned_segment> done_;
  std::jthread thread_;  ///< last: joined (its destructor) before done_ goes
};

/// Replays segment segs[i] (expect: the first version it must supply; advanced past what it
/// applied). Checks it against the next (check_scan), notes in out how the log ends, syncs what
/// a writable open recovered from. Returns false if the log ends here, at a hole a crash
/// explains (end_log_at_hole); throws storage_error for damage. next: segment i as scanned
/// ahead, if it was; a segment after which src reads ahead (recovery_source::reads_ahead_after)
/// has its successor scanned there while it is applied.
template <class Key, class Value, class Tables>
bool replay_segment(Tables& ts, const recovery_source& src, const segment_list& segs, std::size_t i,
                    std::uint64_t& expect, log_state& out, recovery_report& rep, segment_prescan& next) {
  const auto& [first, name] = segs[i];
  const bool last = i + 1 == segs.size();
  const std::uint64_t limit = last ? UINT64_MAX : segs[i + 1].first;  // the newer segment wins
  const auto path = src.dir / name;
  if (first > expect) {
    throw storage_error(path, "recover", 0,
                        "log hole: the segment starts at version " + std::to_string(first) +
                            ", the state before it ends at " + std::to_string(expect - 1));
  }
  std::optional<scanned_segment> pre = next.take(i);
  if (pre) {
    ++rep.segments_read_ahead;
  } else {
    pre.emplace(open_and_scan(src, path));
  }
  auto& [seg, scan] = *pre;
  ++rep.segments_read;
  check_scan(scan, path, seg.map->size(), last ? std::nullopt : std::optional<std::uint64_t>(limit));
  if (!last && src.reads_ahead_after(seg.map->size())) {
    next.start(src, i + 1, src.dir / segs[i + 1].second);  // read while this one is applied
  }
  expect = apply_scanned<Key, Value>(ts, scan, expect, limit, path, rep);
  note_log_end(out, scan, path, seg.header.salt);
  out.bytes += scan.end_offset;
  const std::uint64_t ended = scan.first_seq + scan.records.size();  // first seq not read
  const bool hole = !last && ended < limit && expect < limit;
  if (hole) {
    next.finish();  // end_log_at_hole may cut or remove the segments after this one
    end_log_at_hole(src.fsys, src.dir, segs, i, scan, src.writable, src.key_codec, src.value_codec, rep.note);
    rep.tail_truncated = true;
  } else if (last && scan.torn) {
    note_torn_tail(rep, name, scan, src.writable);
  }
  if (src.writable) seg.file->sync();  // what we recovered from must be durable before new records claim it was
  if (!hole && last && scan.records.empty() && !scan.torn && !scan.successor && first == expect) {
    // Nothing but zeros after a valid header (so no stale bytes can share its salt), and now
    // synced: as good as a segment roll() would create.
    out.reuse = log_state::reusable{name, seg.header.salt, seg.map->size(), std::move(seg.file)};
  }
  return !hole;
}

/// Replays the log segments after the snapshot into the tables of ts (expect: the first version
/// they must supply) up to the first record that was not completely written, or a hole a crash
/// explains; splits ts first if it then expects src.split.from_log entries or more. A writable
/// open syncs what it recovered from and cuts the log at such a hole; a read-only one only notes
/// it. Sets rep.version.
template <class Key, class Value, class Tables>
log_state replay_log(Tables& ts, const recovery_source& src, const inventory& inv, std::uint64_t expect,
                     recovery_report& rep) {
  log_state out;
  const segment_list segs(inv.segments.begin(), inv.segments.end());
  segment_prescan next;  // after segs: joined before they go
  const log_estimate more = estimate_log<Key, Value>(src, segs, expect);
  // The entries the replay is expected to leave: the distinct keys it inserts where known (a
  // long log of overwrites of a few keys must not take two threads), else every operation.
  const std::size_t expected = ts.table(0).size() + std::min(more.operations, more.distinct_keys.value_or(SIZE_MAX));
  if (expected >= src.split.from_log && more.operations > 0) ts.split();
  each_table(ts, [more](auto& t) { reserve_for_replay(t, more); });
  for (std::size_t i = 0; i < segs.size(); ++i) {
    if (covered(segs, i, expect)) continue;  // every record it could hold is covered already
    if (!replay_segment<Key, Value>(ts, src, segs, i, expect, out, rep, next)) break;
  }
  next.finish();
  each_table(ts, [](auto& t) { trim_after_replay(t); });
  rep.version = expect - 1;
  return out;
}

/// Recovers the state in src.dir into the tables of ts and their metadata: the inventory (see
/// take_inventory), the newest snapshot, the log after it, and the marker's checks. A writable
/// source: as open_map() (removes what a crash left unfinished, cuts the log where it must);
/// otherwise nothing is written, and rep.note says what a writable open would change.
template <class Key, class Value, class Tables>
std::pair<inventory, log_state> recover_directory(Tables& ts, const recovery_source& src, recovery_report& rep) {
  auto inv = take_inventory(src.fsys, src.dir, src.writable, src.key_codec, src.value_codec, rep.note);
  const std::uint64_t expect = load_newest_snapshot<Key, Value>(ts, src, inv, rep);
  auto log = replay_log<Key, Value>(ts, src, inv, expect, rep);
  ts.release_sort_buffer();  // before the caller copies a table or builds the map
  check_marker(inv, log, src.dir);
  if (rep.note.ends_with("; ")) rep.note.resize(rep.note.size() - 2);  // each finding ends with one
  return {std::move(inv), std::move(log)};
}

}  // namespace leftright::detail::storage
