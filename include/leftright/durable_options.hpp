// SPDX-License-Identifier: Apache-2.0
// leftright: what a durable map is opened with (durable_options, durability) and what its open
// found (recovery_report). The map itself is in durable_map.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace leftright {

namespace detail::storage {
class file_system;  // detail/storage/fs.hpp
}  // namespace detail::storage

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
  /// The largest size of a log segment file (each is preallocated; at least 8 KiB, the size a
  /// smaller value, 0 included, stands for). Segments grow with the map:
  /// the first after an open or a checkpoint is 64 KiB (or this, if smaller), each next one
  /// twice the last, up to this. A batch larger than this gets a segment of its own size (one
  /// record holds at most 4 GiB - 33 bytes: a larger batch fails its publish with storage_error,
  /// EFBIG, and stays queued; the writer goes on). A
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
  /// Threads that build the map's two copies when it is opened: 2 builds them side by side, each
  /// from the files (about the time of one copy, on two cores); 1 builds one and copies it.
  /// 0: 2 where the machine has two hardware threads or more and the snapshot holds 64K entries
  /// or more (the log after it then goes into both copies too), or the log replayed without a
  /// snapshot is expected to leave 4M entries or more (below that, one table and a copy were
  /// faster); otherwise 1. Two threads cost memory: the second copy exists while the first is
  /// built (16M u64 entries: a peak of about 1,250 MiB against 1,096 on one thread). Maps whose
  /// entries both copies share (map_writer::shares_values) always build one. Anything above 2:
  /// storage_error (EINVAL).
  unsigned recovery_threads = 0;
  /// The file system underneath; null: the real one. (Tests put a simulated one here.)
  std::shared_ptr<detail::storage::file_system> file_system{};
};

/// What open_map() found and did.
struct recovery_report {
  std::uint64_t version = 0;           ///< the version the map reopened at
  std::uint64_t snapshot_version = 0;  ///< the snapshot it started from (0: none)
  std::uint64_t snapshot_entries = 0;
  std::uint64_t records_replayed = 0;  ///< log records (batches) applied after the snapshot
  std::uint64_t segments_read = 0;
  std::uint64_t segments_read_ahead = 0;  ///< of those, opened and checked on a second thread
  unsigned threads = 1;                ///< that built the two copies (2: side by side)
  bool tail_truncated = false;         ///< an incompletely written record ended the log
  std::string note;                    ///< where the log was cut, files removed, ...
  std::chrono::nanoseconds duration{};
};

}  // namespace leftright
