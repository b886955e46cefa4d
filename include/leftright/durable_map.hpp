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
//
// Atomics in this file:
//   [D1] syncer_failed: relaxed both ways: a flag for failed() alone; the error it stands for is
//        read under the mutex that guards it (check_usable), never through the flag
#pragma once

#include <algorithm>
#include <atomic>
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
#include "detail/storage/replay.hpp"
#include "detail/storage/snapshot.hpp"
#include "detail/slot_order.hpp"
#include "detail/storage/wal.hpp"
#include "durable_options.hpp"
#include "map.hpp"
#include "storage_error.hpp"

namespace leftright {

template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class durable_writer;

template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
std::pair<durable_writer<Key, Value, Hash, Eq, Traits>, map_reader<Key, Value, Hash, Eq, Traits>>
open_map(const durable_options& options);

template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class read_only_map;

template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
read_only_map<Key, Value, Hash, Eq, Traits> open_map_read_only(const durable_options& options);

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
  using meta_type = typename detail::meta_of<Traits>::type;
  static constexpr bool has_meta = !std::is_same_v<meta_type, no_meta>;

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
  using base::make_thread_reader;
  using base::meta;  // with the metadata the log and snapshots carry (Traits::meta_type's codec)
  using base::pending;
  using base::poisoned;
  using base::reader_slots;
  using base::reserve;
  using base::set_meta;
  using base::set_stall_report;
  using base::sync_mode;
  using base::readers_fence;
  using base::solo_swaps;
  using base::force_reader_fencing;
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
  /// publish(), waiting at most max_wait for readers still inside the copy it must write (as
  /// map_writer::publish_within: past that, they keep that copy and the writer goes on with a
  /// fresh one). The batch is logged as publish() logs it. Exceptions: as publish().
  std::uint64_t publish_within(std::chrono::nanoseconds max_wait) {
    check_usable();
    const std::uint64_t v = base::publish_within_with(log_hook{*this}, max_wait);
    after_publish();
    return v;
  }
  /// map_writer::try_settle(): logs nothing, as it publishes no new version.
  using base::try_settle;
  using base::held_copies;
  using base::release_held_copies;
  using base::set_held_copy_limit;

  // ---- Durability. ----

  /// Writes a snapshot of the published state (temp file, sync, rename, directory sync), then
  /// removes the log segments and older snapshots it covers. A crash at any point loses nothing.
  /// Progress: blocking; O(size of the map). Queued operations stay queued.
  void checkpoint() {
    check_usable("checkpoint");
    try {
      auto& s = *st_;
      const std::uint64_t v = base::version();
      s.wal.restart_growth();  // the log after a checkpoint starts small again
      s.wal.roll_if_needed(v + 1, s.opts.durability != durability::none);
      detail::storage::write_snapshot(s.fs, s.opts.path, v, base::published(), base::published_meta(),
                                      s.key_codec, s.value_codec);
      s.wal.forget_unsynced_through(v);
      detail::storage::remove_covered(*s.fs, s.opts.path, v);
      s.wal.reset_checkpoint_bytes();
      ++s.checkpoints;
    } catch (...) {
      fail_with("checkpoint failed");
      throw;
    }
  }

  /// Copies the published state to a new map directory, `to` (a hot backup, as LMDB's
  /// mdb_env_copy or SQLite's backup API): open_map() on it recovers this version, with its
  /// entries and metadata, and may write on from there; this map is not changed. The copy is
  /// written as `<to>.partial` (a snapshot, then an empty log segment after it, the lock file,
  /// then the marker, each synced) and renamed to `to` once complete, so `to` appears whole or not at all, even
  /// across a crash. storage_error, before anything is written: `to` is empty, this map's
  /// directory or inside it (EINVAL), or exists and is not an empty directory (EEXIST);
  /// `<to>.partial` exists (a backup that crashed left it: remove it). storage_error from a
  /// write that failed: the partial copy is removed. A failed backup leaves this writer usable:
  /// only a failure of its own log makes it failed().
  /// Returns the version copied.
  /// Thread-safety: the writer's thread. Progress: blocking, O(size): publishes wait for it.
  /// Cost: what checkpoint() writes, in another directory, plus a few syncs there.
  std::uint64_t backup(const std::filesystem::path& to_as_given) {
    check_usable("backup");
    auto& s = *st_;
    const std::uint64_t v = base::version();
    const std::filesystem::path to = backup_target(to_as_given);
    const std::filesystem::path partial = to.string() + ".partial";
    make_new_directory(*s.fs, partial);
    try {
      write_backup(partial, v);
      s.fs->rename(partial, to);
    } catch (...) {
      remove_partial(partial);
      throw;
    }
    s.fs->sync_directory(to.has_parent_path() ? to.parent_path() : std::filesystem::path("."));
    return v;
  }

  /// Makes every published batch durable now (msync of the log). Useful with none and async.
  void flush() {
    check_usable("flush");
    try {
      st_->wal.sync();
    } catch (...) {
      fail_with("flush failed");
      throw;
    }
  }

  /// What open_map() found and did.
  const recovery_report& recovery() const noexcept { return st_->report; }
  /// True once a write or sync failed (durability::async: the background sync too, as soon as it
  /// failed); the writer then refuses to go on.
  bool failed() const noexcept {
    // [D1] relaxed: a flag read alone
    return st_ && (st_->failed || st_->syncer_failed.load(std::memory_order_relaxed));
  }
  const durable_options& options() const noexcept { return st_->opts; }
  /// Checkpoints taken by this writer (explicit and automatic).
  std::uint64_t checkpoints() const noexcept { return st_->checkpoints; }

 private:
  /// backup()'s target as a directory's name ("dir/" names dir, so that the partial copy is
  /// dir.partial beside it), or storage_error if it cannot be one (see backup()).
  std::filesystem::path backup_target(const std::filesystem::path& as_given) const {
    auto& s = *st_;
    const std::filesystem::path to = as_given.has_filename() ? as_given : as_given.parent_path();
    if (to.empty()) throw storage_error(as_given, "backup", EINVAL, "the target is empty");
    const std::filesystem::path target = std::filesystem::absolute(to).lexically_normal();
    const std::filesystem::path own = std::filesystem::absolute(s.opts.path).lexically_normal();
    const std::filesystem::path inside = target.lexically_relative(own);
    if (!inside.empty() && *inside.begin() != "..") {
      throw storage_error(to, "backup", EINVAL,
                          "the target is this map's directory or inside it: " + s.opts.path.string());
    }
    std::vector<std::string> there;
    try {
      there = s.fs->list(to);
    } catch (const storage_error& e) {
      if (e.code().value() == ENOENT) return to;  // to be made by the rename
      if (e.code().value() == ENOTDIR) throw storage_error(to, "backup", EEXIST, "exists and is not a directory");
      throw;
    }
    if (!there.empty()) {
      throw storage_error(to, "backup", EEXIST,
                          "exists and is not empty (" + std::to_string(there.size()) +
                              " files): remove it, or back up to another name");
    }
    return to;
  }
  /// The copy's files in partial, each synced: a snapshot at version v, an empty log segment
  /// after it, the lock file, then the marker.
  void write_backup(const std::filesystem::path& partial, std::uint64_t v) {
    namespace st = detail::storage;
    auto& s = *st_;
    st::write_snapshot(s.fs, partial, v, base::published(), base::published_meta(), s.key_codec, s.value_codec);
    const std::uint64_t size = std::min<std::uint64_t>(std::max<std::uint64_t>(s.opts.segment_size, st::segment_header_size * 2),
                                                       st::wal_writer::first_segment_size);  // as wal_writer sizes it
    st::create_segment_file(*s.fs, partial, partial / st::segment_name(v + 1),
                            st::segment_header(st::fresh_salt(), v + 1, size, s.key_codec, s.value_codec), size);
    // The lock file a writable open makes (file_system::lock_directory): without it a read-only
    // open of the copy, which writes nothing, could lock nothing, and would not exclude a writer.
    s.fs->open(partial / "LOCK", st::open_mode::create_new);
    st::write_marker(*s.fs, partial, s.key_codec, s.value_codec);
  }
  /// Removes a failed backup's partial copy, as far as it can (the backup's own error is the
  /// one to report; what stays is named by the next backup's EEXIST).
  void remove_partial(const std::filesystem::path& partial) noexcept {
    try {
      auto& fsys = *st_->fs;
      for (const std::string& name : fsys.list(partial)) fsys.remove(partial / name);
      fsys.remove(partial);
    } catch (...) {  // NOLINT(bugprone-empty-catch): see above
    }
  }
  template <class K, class V, class H, class E, class T>
  friend std::pair<durable_writer<K, V, H, E, T>, map_reader<K, V, H, E, T>> open_map(
      const durable_options&);

  /// Creates dir and its missing parents, durably; storage_error (EEXIST) if dir exists.
  static void make_new_directory(detail::storage::file_system& fsys, const std::filesystem::path& dir) {
    const auto made = fsys.create_directories(dir);  // dir itself is made whenever a parent is
    if (made.empty()) {
      throw storage_error(dir, "backup", EEXIST,
                          "exists already: a backup that failed or crashed left it (remove it, then back up again)");
    }
    for (const auto& d : made) fsys.sync_directory(d.has_parent_path() ? d.parent_path() : std::filesystem::path("."));
  }

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
    std::atomic<bool> syncer_failed{false};  // syncer_error is set, for failed() (no lock there)

    state(durable_options o, std::shared_ptr<detail::storage::file_system> f, std::string k, std::string v)
        : opts(std::move(o)),
          fs(std::move(f)),
          key_codec(std::move(k)),
          value_codec(std::move(v)),
          wal(fs, opts.path, key_codec, value_codec, opts.segment_size, opts.prefault_bytes) {}
  };

  durable_writer(std::shared_ptr<detail::map_core<Key, Value, Hash, Eq, Traits>> core, std::unique_ptr<state> st)
      : base(std::move(core)), st_(std::move(st)) {
    if (st_->opts.durability == durability::async) {
      state* s = st_.get();
      s->syncer = std::thread([s] {
        std::unique_lock<std::mutex> lock(s->mu);
        while (!s->stop) {
          // Saturated: wait_for's own now + interval overflowed past about 292 years, and each
          // wait then ended at once.
          s->cv.wait_until(lock, detail::saturating_after(std::chrono::steady_clock::now(), s->opts.sync_interval));
          if (s->stop || s->syncer_error) continue;
          lock.unlock();
          try {
            s->wal.sync();
          } catch (...) {
            lock.lock();
            s->syncer_error = std::current_exception();
            s->syncer_failed.store(true, std::memory_order_relaxed);  // [D1] a flag read alone
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
      if (!logged) {  // a batch with an erase_if: logged now, with what it erased
        w.log(seq, batch);
        // As in before_apply: if the sync below fails, abort() takes the record back, so that a
        // publish that threw leaves no record a reopen would replay.
        logged = s.opts.durability == durability::sync;
      }
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

  /// Appends one batch's record (in the page cache when this returns), with the metadata the
  /// batch sets. A failure to encode the batch (a codec, or no memory for the payload) or a
  /// batch too large for one record (storage_error, EFBIG) writes nothing: the publish fails and
  /// the writer goes on. A failure of the log write itself stops the writer (fail-stop).
  void log(std::uint64_t seq, const std::vector<op>& batch) {
    auto& s = *st_;
    std::conditional_t<has_meta, const meta_type*, const void*> label = nullptr;  // void: none to log
    if constexpr (has_meta) label = base::queued_meta();
    if constexpr (detail::storage::builtin_batch<Key, Value>) {
      if (label == nullptr) {
        // Encoded straight into the log's mapping: no payload buffer, no copy.
        // Named variables, not a structured binding: clang 14 cannot capture those.
        const auto sized = detail::storage::builtin_batch_size<ops>(batch);
        const std::size_t bytes = sized.first;
        const std::uint64_t count = sized.second;
        s.wal.check_payload_size(bytes);
        append_or_fail([&] {
          s.wal.append_with(seq, bytes, [&batch, count](std::byte* dst) noexcept {
            detail::storage::write_builtin_batch<ops>(batch, count, dst);
          });
        });
        return;
      }
    }
    detail::storage::encode_batch<ops>(batch, s.payload, label);  // throws: nothing written
    s.wal.check_payload_size(s.payload.size());
    append_or_fail([&] { s.wal.append(seq, std::as_bytes(std::span(s.payload.data(), s.payload.size()))); });
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

  /// Throws if the writer may not go on: storage_error, naming `operation` (the refused call)
  /// once it failed.
  void check_usable(const char* operation = "publish") {
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
      throw storage_error(st_->opts.path, operation, 0,
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
  using writer_t = durable_writer<Key, Value, Hash, Eq, Traits>;
  namespace st = detail::storage;
  const auto started = std::chrono::steady_clock::now();
  if (options.path.empty()) throw storage_error({}, "open", EINVAL, "durable_options.path is empty");
  if (options.durability != durability::none && options.durability != durability::async &&
      options.durability != durability::sync) {
    throw storage_error(options.path, "open", EINVAL,
                        "durability is " + std::to_string(static_cast<int>(options.durability)) +
                            ": none, async or sync");
  }
  if (options.durability == durability::async && options.sync_interval.count() <= 0) {
    throw storage_error(options.path, "open", EINVAL, "sync_interval must be positive");
  }
  using table_t = st::recovery_table<Key, Value, Hash, Eq, Traits>;
  const st::two_tables split = st::two_tables_for<typename writer_t::ops, table_t>(options);
  auto fsys = options.file_system ? options.file_system : st::default_file_system();
  using meta_type = typename detail::meta_of<Traits>::type;
  auto s = std::make_unique<typename writer_t::state>(options, fsys, codec_name<Key>(),
                                                      st::value_codec_name<Value, meta_type>());
  s->lock = st::open_directory(*fsys, options.path);
  // The newest snapshot, then the log after it, up to the first record not completely written.
  table_t t;
  meta_type meta{};
  st::recovery_tables<table_t, meta_type> ts(t, meta);
  const st::recovery_source src{*fsys, options.path, /*writable=*/true, s->key_codec, s->value_codec, split};
  auto [inv, log] = st::recover_directory<Key, Value>(ts, src, s->report);
  s->report.threads = static_cast<unsigned>(ts.count());
  // The log goes on after the recovered version, in a segment no stale record can share.
  const std::uint64_t version = s->report.version;
  s->wal.mark_synced(version);
  s->wal.set_sync_on_roll(options.durability != durability::none);
  st::start_log(s->wal, *fsys, options.path, log, version, inv.marker, s->key_codec, s->value_codec);
  // The log since the last checkpoint counts towards checkpoint_bytes, whichever open wrote it.
  s->wal.add_checkpoint_bytes(log.bytes);
  s->report.duration = std::chrono::steady_clock::now() - started;
  writer_t w(st::recovered_core<typename writer_t::ops, Traits>(std::move(t), version, meta, ts.take_second()),
             std::move(s));
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
/// read_only_map). Of options, only path, recovery_threads and file_system are used.
/// Thread-safety: any thread. Progress: blocking; O(snapshot + log).
/// Throws storage_error: the directory does not exist or cannot be read, a writable map holds
/// it, or its files are damaged, of another format or other types (as open_map()).
template <class Key, class Value, class Hash, class Eq, class Traits>
read_only_map<Key, Value, Hash, Eq, Traits> open_map_read_only(const durable_options& options) {
  namespace st = detail::storage;
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  const auto started = std::chrono::steady_clock::now();
  if (options.path.empty()) throw storage_error({}, "open", EINVAL, "durable_options.path is empty");
  using table_t = st::recovery_table<Key, Value, Hash, Eq, Traits>;
  using meta_type = typename detail::meta_of<Traits>::type;
  const st::two_tables split = st::two_tables_for<ops, table_t>(options);
  auto fsys = options.file_system ? options.file_system : st::default_file_system();
  auto lock = fsys->lock_directory_shared(options.path);
  recovery_report rep;
  table_t t;
  meta_type meta{};
  st::recovery_tables<table_t, meta_type> ts(t, meta);
  const std::string key_codec = codec_name<Key>();
  const std::string value_codec = st::value_codec_name<Value, meta_type>();
  st::recover_directory<Key, Value>(
      ts, st::recovery_source{*fsys, options.path, /*writable=*/false, key_codec, value_codec, split}, rep);
  rep.threads = static_cast<unsigned>(ts.count());
  rep.duration = std::chrono::steady_clock::now() - started;
  auto core = st::recovered_core<ops, Traits>(std::move(t), rep.version, meta, ts.take_second());
  return read_only_map<Key, Value, Hash, Eq, Traits>(map_writer<Key, Value, Hash, Eq, Traits>(std::move(core)),
                                                     std::move(lock), std::move(rep));
}

}  // namespace leftright
