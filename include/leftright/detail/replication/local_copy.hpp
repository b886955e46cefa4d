// SPDX-License-Identifier: Apache-2.0
// leftright replication machinery: a leader's or follower's local durable copy
// (replication_options::local_path), written and read with the durable map's own steps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "../../durable_map.hpp"
#include "../../replication_error.hpp"
#include "../storage/fs.hpp"
#include "../storage/recovery.hpp"
#include "../storage/snapshot.hpp"
#include "nats.hpp"

namespace leftright::detail::replication {

/// A follower's local durable copy (replication_options::local_path): its directory, locked for
/// this follower alone, and the codec names its snapshots carry (the durable map's: a
/// directory of another map's types is refused when its snapshot is read).
struct local_store {
  std::shared_ptr<storage::file_system> fs;
  std::filesystem::path dir;
  std::unique_ptr<storage::lock_handle> lock;
  std::string key_codec, value_codec;
};

/// The longest witness file read back (an id is the map's name, a version, a nonce and a
/// checksum: far less).
inline constexpr std::uint64_t max_witness_bytes = 1024;

/// Runs f(); a storage_error from it becomes replication_error (protocol) naming what failed
/// (what() of a storage_error names the file).
template <class F>
auto local_step(const char* what, F&& f) {
  try {
    return f();
  } catch (const storage_error& e) {
    throw replication_error(replication_errc::protocol, what,
                            std::string("the local copy: ") + e.what() +
                                " (delete the directory to start from the engine)");
  }
}

/// Creates (if missing, durably) and locks the local copy's directory, as open_map() does.
template <class Key, class Value, class Meta>
local_store open_local_store(const std::filesystem::path& dir, const char* what) {
  local_store s{storage::default_file_system(), dir, nullptr, codec_name<Key>(),
                storage::value_codec_name<Value, Meta>()};
  s.lock = local_step(what, [&] { return storage::open_directory(*s.fs, dir); });
  return s;
}

/// Loads the newest local snapshot into t and meta with the durable map's recovery steps
/// (take_inventory removes what an interrupted checkpoint left; load_newest_snapshot checks it
/// and its types); returns its version (0: none). Throws replication_error (protocol) if it is
/// damaged or of other types, or if the directory holds a durable map (its log is not ours).
template <class Key, class Value, class Table, class Meta>
std::uint64_t load_local(local_store& s, Table& t, Meta& meta, const char* what) {
  return local_step(what, [&]() -> std::uint64_t {
    std::string note;
    const auto inv = storage::take_inventory(*s.fs, s.dir, /*writable=*/true, s.key_codec, s.value_codec, note);
    if (inv.marker || !inv.segments.empty()) {
      throw storage_error(s.dir, "open", 0, "the directory holds a durable map (a log), not a follower's copy");
    }
    const storage::recovery_source src{*s.fs, s.dir, /*writable=*/true, s.key_codec, s.value_codec};
    recovery_report rep;
    storage::recovery_tables<Table, Meta> ts(t, meta);
    return storage::load_newest_snapshot<Key, Value>(ts, src, inv, rep) - 1;
  });
}

/// The log a local copy's state belongs to (log_range::created of the log it followed), as
/// the copy records it in a file named log-<16 hex digits>; a copy that names none (a new one)
/// is recorded as following `engine_log`, the engine's log now (the file made durably). A
/// follower whose state belongs to another log than the engine's applies none of it
/// (follower::log_replaced()). Throws replication_error (protocol) if the file cannot be made.
inline std::int64_t local_log(local_store& s, std::int64_t engine_log, const char* what) {
  return local_step(what, [&]() -> std::int64_t {
    for (const std::string& name : s.fs->list(s.dir)) {
      if (const auto recorded = storage::parse_hex_name(name, "log-", "")) return static_cast<std::int64_t>(*recorded);
    }
    const auto id = static_cast<std::uint64_t>(engine_log);
    s.fs->open(s.dir / storage::hex_name("log-", id, ""), storage::open_mode::create_new)->sync();
    s.fs->sync_directory(s.dir);
    return engine_log;
  });
}

/// Records `engine_log` as the log of a local copy that holds no state yet (in place of the one
/// recorded, a log since made anew): the old record goes first, durably, so that a crash between
/// the two leaves no record (the next open records the engine's log then), never two.
inline void rerecord_local_log(local_store& s, std::int64_t engine_log, const char* what) {
  local_step(what, [&] {
    for (const std::string& name : s.fs->list(s.dir)) {
      if (storage::parse_hex_name(name, "log-", "")) s.fs->remove(s.dir / name);
    }
    s.fs->sync_directory(s.dir);
    local_log(s, engine_log, what);
  });
}

/// Writes the state a read guard shows as a local snapshot with the durable map's own steps
/// (storage::write_snapshot, then remove_covered drops the older ones). Throws storage_error; a
/// failure leaves the older snapshot.
template <class Guard>
void write_local_snapshot(local_store& s, const Guard& g) {
  storage::write_snapshot(s.fs, s.dir, g.version(), g, g.meta(), s.key_codec, s.value_codec);
  storage::remove_covered(*s.fs, s.dir, g.version());
}

/// A follower's witness in its local copy: the message id of the log's batch at the version of
/// the local snapshot (the run that published that state ended with it), in a file named
/// witness-<16 hex digits: that version>, so that a warm restart reads the log's batch there
/// back as a running follower does (follower::state::holds_shown(), continues_witness()).
/// Written after the snapshot it goes with (a crash between leaves none for it: the restart
/// then goes without one), through a temporary file renamed into place (never a torn id); the
/// older ones are removed. Other files' readers (take_inventory, local_log) pass over it.
/// Throws storage_error.
inline void write_local_witness(local_store& s, std::uint64_t version, const std::string& id) {
  const std::string name = storage::hex_name("witness-", version, "");
  const std::string tmp = name + ".tmp";
  for (const std::string& n : s.fs->list(s.dir)) {
    if (n == tmp) s.fs->remove(s.dir / n);  // a failed attempt's
  }
  {
    auto f = s.fs->open(s.dir / tmp, storage::open_mode::create_new);
    f->write_at(id.data(), id.size(), 0);
    f->sync();
  }
  s.fs->rename(s.dir / tmp, s.dir / name);
  s.fs->sync_directory(s.dir);
  for (const std::string& n : s.fs->list(s.dir)) {
    const auto v = storage::parse_hex_name(n, "witness-", "");
    if (v && *v < version) s.fs->remove(s.dir / n);
  }
}

/// The witness a local copy holds for its snapshot at `version` (write_local_witness); empty if
/// none (a copy written without one, or by an older version of this library). Throws
/// replication_error (protocol) if the file cannot be read.
inline std::string read_local_witness(local_store& s, std::uint64_t version, const char* what) {
  return local_step(what, [&]() -> std::string {
    const std::string name = storage::hex_name("witness-", version, "");
    for (const std::string& n : s.fs->list(s.dir)) {
      if (n != name) continue;
      auto f = s.fs->open(s.dir / n, storage::open_mode::read_only);
      const std::uint64_t size = f->size();
      if (size == 0 || size > max_witness_bytes) return {};  // not an id this library wrote
      std::string id(static_cast<std::size_t>(size), '\0');
      if (f->read_at(id.data(), id.size(), 0) != id.size()) return {};
      return id;
    }
    return {};
  });
}

/// A local copy kept up to date (replication_options::local_path, local_checkpoint_every): the
/// store, and a reader of the map whose published state it saves. save() writes that state as
/// the local snapshot, through a guard of its own reader (readers do not wait for it; the next
/// publish waits for the guard, which ends with the write). Destroying it saves once more if the
/// map moved on since the last attempt (a clean stop: the newest state for the restart); a
/// failure there is dropped (call save() first to see one). Thread-safety: one thread at a time.
template <class Reader>
class local_copy {
 public:
  local_copy(local_store store, Reader r, std::uint64_t loaded, std::uint64_t every)
      : store_(std::move(store)), reader_(std::move(r)), tried_(loaded), every_(every) {}
  local_copy(const local_copy&) = delete;
  local_copy& operator=(const local_copy&) = delete;
  ~local_copy() {
    try {
      if (reader_.version() > tried_) save();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor has no one to tell
    }
  }

  /// Whether the map is every_ versions past the last attempt (never, with every_ 0).
  bool due(std::uint64_t version) const noexcept { return every_ != 0 && version >= tried_ + every_; }
  /// Writes the published state as the local snapshot (one pass over the map). Throws
  /// replication_error (protocol) naming the file; the older snapshot stays then, and the next
  /// attempt is as many versions on.
  void save() {
    auto g = reader_.read();
    tried_ = g.version();
    local_step("local snapshot", [&] { write_local_snapshot(store_, g); });
  }
  /// The version of the last attempt (or of the snapshot loaded at the open).
  std::uint64_t tried() const noexcept { return tried_; }
  /// Records a follower's witness for the local snapshot at `version` (write_local_witness).
  /// Throws replication_error (protocol) naming the file.
  void record_witness(std::uint64_t version, const std::string& id) {
    local_step("local snapshot", [&] { write_local_witness(store_, version, id); });
  }

 private:
  local_store store_;
  Reader reader_;
  std::uint64_t tried_;
  std::uint64_t every_;
};

/// Where a leader's local copy at version `local` (0: it holds no snapshot) leaves it, against
/// the engine's log now: ok to go on from the log after `local` (a copy with no snapshot is
/// recorded as the engine's log's, whatever it recorded before); or refused
/// (replication_error, protocol): the copy is ahead of the log (the engine lost data a leader
/// must not write over) or belongs to another log (deleted and made anew since: its versions are
/// another history's).
inline void check_leader_copy(local_store& s, std::uint64_t local, const log_range& range) {
  const std::int64_t recorded = local_log(s, range.created, "open leader");
  if (local == 0) {
    // Nothing of the old log's history is in the copy: it follows the engine's log from now on.
    if (recorded != range.created) rerecord_local_log(s, range.created, "open leader");
    return;
  }
  const char* const fix = " (delete the directory to start from the engine)";
  if (range.last < local) {
    throw replication_error(replication_errc::protocol, "open leader",
                            "the local copy is at version " + std::to_string(local) + ", the engine's log ends at " +
                                std::to_string(range.last) + " (the engine lost data)" + fix);
  }
  if (recorded != range.created) {
    throw replication_error(replication_errc::protocol, "open leader",
                            "the local copy at version " + std::to_string(local) +
                                " belongs to a log since deleted and made anew" + fix);
  }
}

}  // namespace leftright::detail::replication
