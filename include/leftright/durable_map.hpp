// SPDX-License-Identifier: Apache-2.0
// leftright: the durable map. The in-memory left-right map, plus a memory-mapped write-ahead log
// of published batches and snapshots, recovered on open. One published batch is one log record:
// one unit of atomicity at run time and after a crash.
//
// What survives what:
//   - kill -9 of the process, in every mode: every batch whose publish() returned (the log is
//     written through a shared mapping; the page cache outlives the process).
//   - power loss or a kernel crash: with durability::sync every batch whose publish() returned
//     (it was msync'ed before readers could see it); with async, batches older than about
//     sync_interval; with none, batches up to the last checkpoint() or flush().
//   - in every case the map reopens as the state after some prefix of published batches: never
//     a partial batch, never a hole. Unpublished operations are never written.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "codec.hpp"
#include "detail/storage/batch.hpp"
#include "detail/storage/format.hpp"
#include "detail/storage/fs.hpp"
#include "detail/storage/recovery.hpp"
#include "detail/storage/snapshot.hpp"
#include "detail/slot_order.hpp"
#include "detail/storage/wal.hpp"
#include "map.hpp"
#include "storage_error.hpp"

namespace leftright {

/// When a published batch reaches stable storage.
enum class durability {
  none,   ///< at checkpoint(), flush() and close only (still survives kill -9)
  async,  ///< a background msync every sync_interval
  sync,   ///< before publish() returns, and before any reader can see the batch
};

struct durable_options {
  /// A directory the map owns (created if absent).
  std::filesystem::path path;
  leftright::durability durability = leftright::durability::sync;
  /// For durability::async: how often the background thread syncs the log.
  std::chrono::milliseconds sync_interval{1000};
  /// The largest size of a log segment file (each is preallocated). Segments grow with the map:
  /// the first after an open or a checkpoint is 64 KiB (or this, if smaller), each next one
  /// twice the last, up to this. A batch larger than this gets a segment of its own size. A
  /// file-size limit (RLIMIT_FSIZE) below it makes a segment's creation fail, with SIGXFSZ
  /// (which kills the process unless ignored; ignored: EFBIG, and the writer stops).
  std::size_t segment_size = std::size_t{64} << 20;
  /// Checkpoint automatically after a publish once this many log bytes were written since the
  /// last checkpoint; 0: only when checkpoint() is called.
  std::uint64_t checkpoint_bytes = std::uint64_t{256} << 20;
  /// How far ahead of the writer a thread of the map's own keeps the log faulted in, so that
  /// publish() does not stop on page faults in a fresh segment; 0: no thread, publish() faults
  /// the pages in itself.
  std::size_t prefault_bytes = std::size_t{4} << 20;
  /// The file system underneath; null: the real one. (Tests put a simulated one here.)
  std::shared_ptr<detail::storage::file_system> file_system;
};

/// What open_map() found and did.
struct recovery_report {
  std::uint64_t version = 0;           ///< the version the map reopened at
  std::uint64_t snapshot_version = 0;  ///< the snapshot it started from (0: none)
  std::uint64_t snapshot_entries = 0;
  std::uint64_t records_replayed = 0;  ///< log records (batches) applied after the snapshot
  std::uint64_t segments_read = 0;
  bool tail_truncated = false;         ///< an incompletely written record ended the log
  std::string note;                    ///< where the log was cut, files removed, ...
  std::chrono::nanoseconds duration{};
};

template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class durable_writer;

template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
std::pair<durable_writer<Key, Value, Hash, Eq, Traits>, map_reader<Key, Value, Hash, Eq, Traits>>
open_map(const durable_options& options);

template <class Key, class Value, class Hash = absl::Hash<Key>, class Eq = std::equal_to<Key>,
          class Traits = default_traits>
class read_only_map;

template <class Key, class Value, class Hash = absl::Hash<Key>, class Eq = std::equal_to<Key>,
          class Traits = default_traits>
read_only_map<Key, Value, Hash, Eq, Traits> open_map_read_only(const durable_options& options);

namespace detail {

/// Decodes a checked snapshot's entries into a recovering table (a plain, single-threaded absl
/// map). Throws storage_error naming path if they do not decode. Built-in integer keys and
/// values whose bytes are exactly `entries` entries are read in place (no bounds check per field)
/// and inserted in the table's slot order (apply_in_slot_order).
template <class Key, class Value, class Table>
void load_snapshot(Table& t, const storage::snapshot_view& view, const std::filesystem::path& path) {
  detail::reserve_room(t, static_cast<std::size_t>(view.entries));  // see map_ops.hpp
  if constexpr (storage::builtin_batch<Key, Value>) {
    constexpr std::size_t es = sizeof(Key) + sizeof(Value);
    // entries <= data bytes + 1 (parse_snapshot), so the product cannot overflow.
    if (view.data.size() == view.entries * es) {
      const std::byte* const p = view.data.data();
      const std::size_t n = static_cast<std::size_t>(view.entries);
      apply_in_slot_order(t, [p, n](auto&& f) {
        for (std::size_t i = 0; i < n; ++i) {
          f(keyed_op::insert_or_assign, storage::load_builtin<Key>(p + i * es), storage::load_builtin<Value>(p + i * es + sizeof(Key)));
        }
      });
      return;
    }
  }
  byte_reader r(view.data);
  try {
    for (std::uint64_t i = 0; i < view.entries; ++i) {
      Key k = leftright::decode<Key>(r);
      t.insert_or_assign(std::move(k), leftright::decode<Value>(r));
    }
    if (!r.empty()) throw storage_error({}, "decode", 0, "bytes after the last entry");
  } catch (const storage_error& e) {
    throw storage_error(path, "read snapshot", 0, e.what());
  }
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
      node_ref<typename table::node::key_type, typename table::node::value_type> n(
          new typename table::node(k, std::move(v)));
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

/// Loads the newest snapshot into t (a committed snapshot was synced before its rename: if it
/// does not check out, that is damage, not a crash, and recovery refuses rather than silently
/// go back in time). Returns the first version the log must supply.
template <class Key, class Value, class Table>
std::uint64_t load_newest_snapshot(Table& t, storage::file_system& fsys, const std::filesystem::path& dir,
                                   const storage::inventory& inv, const std::string& key_codec,
                                   const std::string& value_codec, recovery_report& rep) {
  if (inv.snapshots.empty()) return 1;
  const auto& [seq, name] = *inv.snapshots.rbegin();
  const auto path = dir / name;
  auto view = storage::read_snapshot(fsys, path, key_codec, value_codec);
  if (view.seq != seq) throw storage_error(path, "read snapshot", 0, "file name and header disagree");
  load_snapshot<Key, Value>(t, view, path);
  rep.snapshot_version = seq;
  rep.snapshot_entries = view.entries;
  return seq + 1;
}

/// Applies consecutive log records of segment `path` to a recovering table.
template <class Key, class Value, class Table>
void apply_records(Table& t, std::span<const storage::wal_record> recs, const std::filesystem::path& path) {
  constexpr std::size_t replay_reserve_cap = std::size_t{1} << 22;
  constexpr std::size_t min_op = storage::builtin_batch<Key, Value>
                                     ? 1 + sizeof(Key) + sizeof(Value)
                                     : 2;  // a tag and (for all keys but one) a byte
  // Reserved once rather than grown step by step while replaying: room for as many entries
  // more as the records have operations (each counted as an insert), at most the table's
  // size or 4M more (a long log of overwrites or erases must not size a huge table).
  const std::size_t more = logged_operations(recs, min_op);
  detail::reserve_room(t, t.size() + std::min(more, std::max(t.size(), replay_reserve_cap)));
  const auto apply_general = [&](const storage::wal_record& rec) {
    try {
      storage::apply_batch<Key, Value>(t, rec.payload);
    } catch (const storage_error& e) {
      throw storage_error(path, "recover", 0,
                          "record " + std::to_string(rec.seq) + " at offset " + std::to_string(rec.offset) +
                              " has a valid checksum but does not decode: " + e.what());
    }
  };
  if constexpr (storage::builtin_batch<Key, Value>) {
    // Each run of records that check and hold no clear is applied in the table's slot order
    // (apply_in_slot_order); any other record on its own, in its place.
    for (std::size_t from = 0; from < recs.size();) {
      std::size_t to = from;
      while (to < recs.size() && storage::check_builtin_batch<Key, Value>(recs[to].payload) == storage::batch_check::keyed) ++to;
      if (to > from) {
        apply_in_slot_order(t, [&recs, from, to](auto&& op) {
          for (std::size_t k = from; k < to; ++k) storage::for_each_keyed_op<Key, Value>(recs[k].payload, op);
        });
      }
      if (to < recs.size()) apply_general(recs[to++]);
      from = to;
    }
  } else {
    for (const auto& rec : recs) apply_general(rec);
  }
  // The estimate counted every operation as an insert; give back what overwrites and erases
  // left unused (a table never shrinks by itself).
  if (t.size() < t.bucket_count() / 4) detail::rebuild_for(t, t.size());
}

/// Replays the log segments after the snapshot (expect: the first version they must supply) up
/// to the first record that was not completely written, checking each segment against the
/// next (storage::check_scan). A writable open syncs what it recovered from and cuts the log
/// at a hole a crash explains; a read-only one only notes it. Sets rep.version.
template <class Key, class Value, class Table>
storage::log_state replay_log(Table& t, storage::file_system& fsys, const std::filesystem::path& dir,
                              const storage::inventory& inv, std::uint64_t expect, bool writable,
                              const std::string& key_codec, const std::string& value_codec, recovery_report& rep) {
  namespace st = storage;
  st::log_state out;
  const std::vector<std::pair<std::uint64_t, std::string>> segs(inv.segments.begin(), inv.segments.end());
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const auto& [first, name] = segs[i];
    const bool last = i + 1 == segs.size();
    const std::uint64_t limit = last ? UINT64_MAX : segs[i + 1].first;  // the newer segment wins
    const auto path = dir / name;
    if (!last && limit <= expect) continue;  // every record it could hold is covered already
    if (first > expect) {
      throw storage_error(path, "recover", 0,
                          "log hole: the segment starts at version " + std::to_string(first) +
                              ", the state before it ends at " + std::to_string(expect - 1));
    }
    auto seg = st::open_for_scan(fsys, path, writable, key_codec, value_codec);
    const auto scan = st::scan_open_segment(seg);
    ++rep.segments_read;
    st::check_scan(scan, path, seg.map->size(), last ? std::nullopt : std::optional<std::uint64_t>(limit));
    out.holds_data = out.holds_data || !scan.records.empty() || scan.successor || scan.torn;
    // The records to apply: consecutive, so a range of them.
    std::size_t lo = 0;
    while (lo < scan.records.size() && scan.records[lo].seq < expect) ++lo;
    std::size_t hi = lo;
    while (hi < scan.records.size() && scan.records[hi].seq < limit) ++hi;
    if (hi > lo) {
      apply_records<Key, Value>(t, std::span<const st::wal_record>(scan.records.data() + lo, hi - lo), path);
      rep.records_replayed += hi - lo;
      expect = scan.records[hi - 1].seq + 1;
    }
    const std::uint64_t ended = scan.first_seq + scan.records.size();  // first seq not read
    if (scan.successor) {
      out.open_end.reset();
    } else if (!scan.records.empty()) {
      out.open_end = st::log_state::end{path, seg.header.salt, scan.end_offset, ended};
    }
    if (!last && ended < limit && expect < limit) {
      st::end_log_at_hole(fsys, dir, segs, i, scan, writable, key_codec, value_codec, rep.note);
      rep.tail_truncated = true;
      if (writable) seg.file->sync();
      break;
    }
    if (last && scan.torn) {
      rep.tail_truncated = true;
      rep.note += std::string(writable ? "cut the log at " : "the log ends at ") + name + " offset " +
                  std::to_string(scan.end_offset) + " (version " + std::to_string(ended) + " incompletely written" +
                  (writable ? "" : "; a writable open starts a new segment after it") + "); ";
    }
    if (writable) seg.file->sync();  // what we recovered from must be durable before new records claim it was
    if (last && scan.records.empty() && !scan.torn && !scan.successor && first == expect) {
      // Nothing but zeros after a valid header (so no stale bytes can share its salt), and now
      // synced: as good as a segment roll() would create.
      out.reuse = st::log_state::reusable{name, seg.header.salt, seg.map->size(), std::move(seg.file)};
    }
  }
  rep.version = expect - 1;
  return out;
}

/// Recovers the state in dir into t: the inventory (see storage::take_inventory), the newest
/// snapshot, the log after it, and the marker's checks. writable: as open_map() (removes what a
/// crash left unfinished, cuts the log where it must); otherwise nothing is written, and
/// rep.note says what a writable open would change.
template <class Key, class Value, class Table>
std::pair<storage::inventory, storage::log_state> recover_directory(Table& t, storage::file_system& fsys,
                                                                    const std::filesystem::path& dir, bool writable,
                                                                    const std::string& key_codec,
                                                                    const std::string& value_codec,
                                                                    recovery_report& rep) {
  auto inv = storage::take_inventory(fsys, dir, writable, key_codec, value_codec, rep.note);
  const std::uint64_t expect = load_newest_snapshot<Key, Value>(t, fsys, dir, inv, key_codec, value_codec, rep);
  auto log = replay_log<Key, Value>(t, fsys, dir, inv, expect, writable, key_codec, value_codec, rep);
  storage::check_marker(inv, log, dir);
  return {std::move(inv), std::move(log)};
}

}  // namespace detail

/// The single writer of a durable map: a map_writer (every member, with the same meaning) whose
/// publish() also logs the batch as one record, plus checkpoint(), flush() and recovery().
/// publish() is the commit point; queueing costs nothing on disk. Move-only.
/// Failure: after any failed write or sync the writer is fail-stop: failed() is true and every
/// later publish(), try_publish(), checkpoint() and flush() throws storage_error. Readers keep
/// the last published state.
/// (Private inheritance: a durable_writer cannot be used as a map_writer, whose publish() would
/// not log.)
template <class Key, class Value, class Hash, class Eq, class Traits>
class durable_writer : private map_writer<Key, Value, Hash, Eq, Traits> {
  using base = map_writer<Key, Value, Hash, Eq, Traits>;
  using ops = typename base::ops_type;
  using op = typename base::op_type;

 public:
  using typename base::factory_type;
  using typename base::reader;
  using base::shares_values;

  durable_writer(durable_writer&&) noexcept = default;
  durable_writer& operator=(durable_writer&& other) noexcept {
    if (this != &other) {
      close();
      base::operator=(std::move(other));
      st_ = std::move(other.st_);
    }
    return *this;
  }
  ~durable_writer() { close(); }

  // ---- As map_writer. erase_if's log record holds the keys it erased (see log_hook). ----
  using base::clear;
  using base::contains;
  using base::discard;
  using base::erase;
  using base::erase_if;
  using base::factory;
  using base::find;
  using base::insert;
  using base::insert_or_assign;
  using base::make_reader;
  using base::pending;
  using base::poisoned;
  using base::reader_slots;
  using base::reserve;
  using base::set_stall_report;
  using base::sync_mode;
  using base::version;

  /// Makes the queued batch visible to readers, atomically, and logs it as one record; returns
  /// the new version. With durability::sync the record is on stable storage before readers can
  /// see the batch and before this returns.
  /// Progress: blocking (the reader wait of map_writer::publish, plus the log write and, in
  ///           sync mode, an msync).
  /// Exceptions: storage_error if the log cannot be written (the writer is then failed(): the
  ///             batch is not published, and nothing more will be); as map_writer::publish for
  ///             a throwing copy (the batch stays queued, nothing left in the log: in sync mode
  ///             the record written before applying is zeroed and the zeros synced; if that
  ///             fails, the writer is failed() too). An automatic
  ///             checkpoint that fails after the batch was published does not throw here: the
  ///             writer becomes failed() and the next call throws, saying why.
  std::uint64_t publish() {
    check_usable();
    const std::uint64_t v = base::publish_with(log_hook{*this});
    after_publish();
    return v;
  }
  /// publish() if no reader has to be waited for; false and nothing changed otherwise.
  bool try_publish() {
    check_usable();
    if (!base::try_publish_with(log_hook{*this})) return false;
    after_publish();
    return true;
  }

  // ---- Durability. ----

  /// Writes a snapshot of the published state (temp file, sync, rename, directory sync), then
  /// removes the log segments and older snapshots it covers. A crash at any point loses nothing.
  /// Progress: blocking; O(size of the map). Queued operations stay queued.
  void checkpoint() {
    check_usable();
    try {
      auto& s = *st_;
      const std::uint64_t v = base::version();
      s.wal.restart_growth();  // the log after a checkpoint starts small again
      s.wal.roll_if_needed(v + 1, s.opts.durability != durability::none);
      detail::storage::snapshot_writer snap(s.fs, s.opts.path, v, base::published().size(),
                                            s.key_codec, s.value_codec);
      byte_writer w(snap.buffer());
      for (const auto& [k, val] : base::published()) {
        leftright::encode(k, w);
        leftright::encode(val, w);
        snap.maybe_flush();
      }
      snap.commit();
      s.wal.forget_unsynced_through(v);
      remove_covered(v);
      s.wal.reset_checkpoint_bytes();
      ++s.checkpoints;
    } catch (...) {
      fail_with("checkpoint failed");
      throw;
    }
  }

  /// Makes every published batch durable now (msync of the log). Useful with none and async.
  void flush() {
    check_usable();
    try {
      st_->wal.sync();
    } catch (...) {
      fail_with("flush failed");
      throw;
    }
  }

  /// What open_map() found and did.
  const recovery_report& recovery() const noexcept { return st_->report; }
  /// True once a write or sync failed; the writer then refuses to go on.
  bool failed() const noexcept { return st_ && st_->failed; }
  const durable_options& options() const noexcept { return st_->opts; }
  /// Checkpoints taken by this writer (explicit and automatic).
  std::uint64_t checkpoints() const noexcept { return st_->checkpoints; }

 private:
  template <class K, class V, class H, class E, class T>
  friend std::pair<durable_writer<K, V, H, E, T>, map_reader<K, V, H, E, T>> open_map(
      const durable_options&);

  /// Everything that must not move when the writer does (the async thread points at it).
  struct state {
    durable_options opts;
    std::shared_ptr<detail::storage::file_system> fs;
    std::unique_ptr<detail::storage::lock_handle> lock;
    std::string key_codec, value_codec;
    detail::storage::wal_writer wal;
    recovery_report report;
    std::string payload;  // reused encoding buffer
    bool failed = false;
    std::string failure;  // why, when known
    std::uint64_t checkpoints = 0;
    // durability::async
    std::thread syncer;
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;                  // guarded by mu
    std::exception_ptr syncer_error;    // guarded by mu

    state(durable_options o, std::shared_ptr<detail::storage::file_system> f, std::string k, std::string v)
        : opts(std::move(o)),
          fs(std::move(f)),
          key_codec(std::move(k)),
          value_codec(std::move(v)),
          wal(fs, opts.path, key_codec, value_codec, opts.segment_size, opts.prefault_bytes) {}
  };

  durable_writer(std::shared_ptr<detail::lr_core<typename ops::table>> core, std::unique_ptr<state> st)
      : base(std::move(core)), st_(std::move(st)) {
    if (st_->opts.durability == durability::async) {
      state* s = st_.get();
      s->syncer = std::thread([s] {
        std::unique_lock<std::mutex> lock(s->mu);
        while (!s->stop) {
          s->cv.wait_for(lock, s->opts.sync_interval);
          if (s->stop || s->syncer_error) continue;
          lock.unlock();
          try {
            s->wal.sync();
          } catch (...) {
            lock.lock();
            s->syncer_error = std::current_exception();
            continue;
          }
          lock.lock();
        }
      });
    }
  }

  /// Writes the log around the application of a batch (see lr_writer::publish_with).
  /// durability::sync logs a batch before applying it and starts the record's write-back, so
  /// that the disk works while the writer applies (on 1024-operation batches this hides most of
  /// the in-memory work: the publish then costs little more than the sync). If applying then
  /// fails, the record is taken back (zeroed, and the zeros synced) before the publish throws.
  /// A batch with erase_if is logged after it is applied, as in the other modes: the keys it
  /// erased are known only then (before_apply asks its first application to note them; the
  /// record holds them as erases).
  struct log_hook {
    durable_writer& w;
    bool logged = false;  // by before_apply

    void before_apply(std::uint64_t seq, const std::vector<op>& batch) {
      bool erases_if = false;
      for (const op& o : batch) {
        if (const auto* x = std::get_if<typename ops::erase_if_op>(&o)) x->s->record = erases_if = true;
      }
      auto& s = *w.st_;
      if (s.opts.durability != durability::sync || erases_if) return;
      w.log(seq, batch);
      s.wal.start_writeback();
      logged = true;
    }
    void before_swap(std::uint64_t seq, const std::vector<op>& batch) {
      auto& s = *w.st_;
      if (!logged) w.log(seq, batch);
      if (s.opts.durability == durability::sync) {
        try {
          s.wal.sync();
        } catch (...) {
          w.fail_with("syncing the log failed");
          throw;
        }
      }
    }
    void abort() noexcept {
      if (!logged) return;
      logged = false;
      try {
        w.st_->wal.retract_last();
      } catch (...) {
        w.fail_with("a failed publish could not take back its log record");
      }
    }
  };

  /// Appends one batch's record (in the page cache when this returns). A failure to encode the
  /// batch (a codec, or no memory for the payload) writes nothing: the publish fails and the
  /// writer goes on. A failure of the log write itself stops the writer (fail-stop).
  void log(std::uint64_t seq, const std::vector<op>& batch) {
    auto& s = *st_;
    if constexpr (detail::storage::builtin_batch<Key, Value>) {
      // Encoded straight into the log's mapping: no payload buffer, no copy.
      // Named variables, not a structured binding: clang 14 cannot capture those.
      const auto sized = detail::storage::builtin_batch_size<ops>(batch);
      const std::size_t bytes = sized.first;
      const std::uint64_t count = sized.second;
      append_or_fail([&] {
        s.wal.append_with(seq, bytes, [&batch, count](std::byte* dst) noexcept {
          detail::storage::write_builtin_batch<ops>(batch, count, dst);
        });
      });
    } else {
      detail::storage::encode_batch<ops>(batch, s.payload);  // throws: nothing written
      append_or_fail([&] { s.wal.append(seq, std::as_bytes(std::span(s.payload.data(), s.payload.size()))); });
    }
  }
  template <class F>
  void append_or_fail(F&& append) {
    try {
      append();
    } catch (...) {
      fail_with("writing the log failed");
      throw;
    }
  }

  /// The automatic checkpoint. The batch is already published and logged, so a failure here
  /// must not make publish() look failed: the writer stops (fail-stop) and the next call
  /// reports why.
  void after_publish() noexcept {
    auto& s = *st_;
    if (s.opts.checkpoint_bytes == 0 || s.wal.bytes_since_checkpoint() < s.opts.checkpoint_bytes) return;
    try {
      checkpoint();
    } catch (...) {
      fail_with("automatic checkpoint failed");
    }
  }

  void check_usable() {
    if (!st_) throw std::logic_error("leftright: use of a moved-from durable_writer");
    if (st_->opts.durability == durability::async) {
      std::lock_guard<std::mutex> lock(st_->mu);
      if (st_->syncer_error && !st_->failed) {
        st_->failed = true;
        try {
          std::rethrow_exception(st_->syncer_error);
        } catch (const storage_error& e) {
          st_->failure = std::string("background sync failed: ") + e.what();
          throw storage_error(e.path(), e.operation(), e.code().value(),
                              "background sync failed; the writer is stopped: " + e.detail());
        }
      }
    }
    if (st_->failed) {
      throw storage_error(st_->opts.path, "publish", 0,
                          "an earlier write or sync failed; this writer acknowledges nothing more "
                          "(reopen the map to recover what was durable): " +
                              (st_->failure.empty() ? std::string("the reason could not be recorded (no memory)")
                                                    : st_->failure));
    }
  }
  /// Stops the writer (fail-stop), remembering why for the next call to report: `why`, and the
  /// exception being handled if it says more. Call from a catch block.
  void fail_with(const char* why) noexcept {
    st_->failed = true;
    try {
      throw;
    } catch (const std::exception& e) {
      try {
        st_->failure = std::string(why) + ": " + e.what();
      } catch (...) {
        // No memory for the message: failed() still stops the writer.
      }
    } catch (...) {
      try {
        st_->failure = why;
      } catch (...) {
      }
    }
  }

  /// Removes log segments whose records are all <= v, and snapshots older than v; segments
  /// oldest first, so that a crash part way leaves no segment whose successor is gone.
  void remove_covered(std::uint64_t v) {
    auto& s = *st_;
    namespace st = detail::storage;
    bool removed = false;
    std::vector<std::string> names = s.fs->list(s.opts.path);
    std::sort(names.begin(), names.end());  // wal-<16 hex digits>: name order is version order
    for (const std::string& name : names) {
      if (auto first = st::parse_hex_name(name, "wal-", ".log"); first && *first <= v) {
        s.fs->remove(s.opts.path / name);
        removed = true;
      } else if (auto seq = st::parse_hex_name(name, "snap-", ".dat"); seq && *seq < v) {
        s.fs->remove(s.opts.path / name);
        removed = true;
      }
    }
    if (removed) s.fs->sync_directory(s.opts.path);
  }

  void close() noexcept {
    if (!st_) return;
    if (st_->syncer.joinable()) {
      {
        std::lock_guard<std::mutex> lock(st_->mu);
        st_->stop = true;
      }
      st_->cv.notify_all();
      st_->syncer.join();
    }
    if (!st_->failed) {
      try {
        st_->wal.sync();  // none and async: the sync at close
      } catch (...) {
        // Nothing to report to from a destructor; what was published is in the page cache and
        // survives the process. Call flush() first to see such errors.
      }
    }
    st_.reset();
  }

  std::unique_ptr<state> st_;
};

/// Opens (creating if needed) the durable map in options.path and recovers it: the newest
/// snapshot, then the log records after it, up to the first record that was not completely
/// written. Returns the writer and a first reader, at the recovered version.
/// Throws storage_error: the path is a file or cannot be created, the directory is in use by
/// another open map (in this or another process), the files hold other key or value types, or
/// they are damaged in a way a crash cannot explain (named by file and offset).
template <class Key, class Value, class Hash, class Eq, class Traits>
std::pair<durable_writer<Key, Value, Hash, Eq, Traits>, map_reader<Key, Value, Hash, Eq, Traits>>
open_map(const durable_options& options) {
  namespace st = detail::storage;
  using writer_t = durable_writer<Key, Value, Hash, Eq, Traits>;
  using state = typename writer_t::state;
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  using table = typename ops::table;
  const auto started = std::chrono::steady_clock::now();

  if (options.path.empty()) throw storage_error({}, "open", EINVAL, "durable_options.path is empty");
  if (options.durability == durability::async && options.sync_interval.count() <= 0) {
    throw storage_error(options.path, "open", EINVAL, "sync_interval must be positive");
  }
  auto fsys = options.file_system ? options.file_system : st::default_file_system();
  auto s = std::make_unique<state>(options, fsys, codec_name<Key>(), codec_name<Value>());
  // A directory this open creates must itself be durable before anything in it can be: sync
  // the parent of each one made.
  for (const auto& made : fsys->create_directories(options.path)) {
    fsys->sync_directory(made.has_parent_path() ? made.parent_path() : std::filesystem::path("."));
  }
  s->lock = fsys->lock_directory(options.path);
  recovery_report& rep = s->report;

  detail::recovery_table<Key, Value, Hash, Eq, Traits> t;
  auto [inv, log] = detail::recover_directory<Key, Value>(t, *fsys, options.path, /*writable=*/true,
                                                          s->key_codec, s->value_codec, rep);
  const std::uint64_t version = rep.version;
  s->wal.mark_synced(version);
  s->wal.set_sync_on_roll(options.durability != durability::none);
  st::start_log(s->wal, *fsys, options.path, log, version, inv.marker, s->key_codec, s->value_codec);
  rep.duration = std::chrono::steady_clock::now() - started;

  table first = detail::to_table<ops>(std::move(t));
  table second = ops::copy(first);  // not table's copy constructor: see detail/map_ops.hpp
  auto core = std::make_shared<detail::lr_core<table>>(detail::resolve(Traits::sync), version,
                                                       std::move(first), std::move(second));
  writer_t w(std::move(core), std::move(s));
  auto r = w.make_reader();
  return {std::move(w), std::move(r)};
}

/// A durable map opened read-only (open_map_read_only()): the state recovered from its directory,
/// for readers, with no writer. It holds a shared lock on the directory while it lives, so no
/// writable open_map() can change the files under it (other read-only opens can). Its readers,
/// factories and guards stay valid after it is destroyed (they keep the recovered state), but the
/// lock goes with it. Move-only.
template <class Key, class Value, class Hash, class Eq, class Traits>
class read_only_map {
 public:
  using reader = map_reader<Key, Value, Hash, Eq, Traits>;
  using factory_type = reader_factory<Key, Value, Hash, Eq, Traits>;

  read_only_map(read_only_map&&) noexcept = default;
  read_only_map& operator=(read_only_map&&) noexcept = default;

  /// A new registered reader. Thread-safety: any thread holding the map; see reader_factory.
  /// Progress: a mutex; an allocation at a new high of live readers.
  reader make_reader() const { return inner_.make_reader(); }
  /// A factory to hand to other threads. Thread-safety: any thread holding the map.
  factory_type factory() const { return inner_.factory(); }
  /// The recovered version. Thread-safety: any thread. Progress: wait-free.
  std::uint64_t version() const noexcept { return inner_.version(); }
  /// What recovery found; note also says what a writable open would change (a cut tail, files
  /// it would remove) and did not. Thread-safety: any thread.
  const recovery_report& recovery() const noexcept { return report_; }

 private:
  template <class K, class V, class H, class E, class T>
  friend read_only_map<K, V, H, E, T> open_map_read_only(const durable_options&);

  read_only_map(map_writer<Key, Value, Hash, Eq, Traits> inner, std::unique_ptr<detail::storage::lock_handle> lock,
                recovery_report report)
      : inner_(std::move(inner)), lock_(std::move(lock)), report_(std::move(report)) {}

  map_writer<Key, Value, Hash, Eq, Traits> inner_;  // never publishes: it owns the state readers see
  std::unique_ptr<detail::storage::lock_handle> lock_;
  recovery_report report_;
};

/// Opens the durable map in options.path for reading only, and recovers it as open_map() would,
/// but writes nothing: no directory or segment is created, no tail cut, no file removed or
/// synced (recovery().note says what a writable open would do instead). So it works on a
/// read-only directory or file system and on a full disk. Takes a shared lock (see
/// read_only_map). Of options, only path and file_system are used.
/// Thread-safety: any thread. Progress: blocking; O(snapshot + log).
/// Throws storage_error: the directory does not exist or cannot be read, a writable map holds
/// it, or its files are damaged, of another format or other types (as open_map()).
template <class Key, class Value, class Hash, class Eq, class Traits>
read_only_map<Key, Value, Hash, Eq, Traits> open_map_read_only(const durable_options& options) {
  namespace st = detail::storage;
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  using table = typename ops::table;
  const auto started = std::chrono::steady_clock::now();
  if (options.path.empty()) throw storage_error({}, "open", EINVAL, "durable_options.path is empty");
  auto fsys = options.file_system ? options.file_system : st::default_file_system();
  auto lock = fsys->lock_directory_shared(options.path);
  recovery_report rep;
  detail::recovery_table<Key, Value, Hash, Eq, Traits> t;
  detail::recover_directory<Key, Value>(t, *fsys, options.path, /*writable=*/false, codec_name<Key>(),
                                        codec_name<Value>(), rep);
  rep.duration = std::chrono::steady_clock::now() - started;
  table first = detail::to_table<ops>(std::move(t));
  table second = ops::copy(first);  // not table's copy constructor: see detail/map_ops.hpp
  auto core = std::make_shared<detail::lr_core<table>>(detail::resolve(Traits::sync), rep.version,
                                                       std::move(first), std::move(second));
  return read_only_map<Key, Value, Hash, Eq, Traits>(map_writer<Key, Value, Hash, Eq, Traits>(std::move(core)),
                                                     std::move(lock), std::move(rep));
}

}  // namespace leftright
