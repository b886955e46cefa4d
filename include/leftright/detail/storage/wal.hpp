// SPDX-License-Identifier: Apache-2.0
// leftright: the write-ahead log. Segments are preallocated files written through a shared
// mapping; one record per published batch, and a successor record at the end of each segment
// the log has moved on from. See format.hpp for the bytes.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <thread>
#include <utility>
#include <vector>

#include "../../storage_error.hpp"
#include "crc32c.hpp"
#include "format.hpp"
#include "fs.hpp"

namespace leftright::detail::storage {

/// A fresh random salt: segments written after a crash never share one with the bytes before.
inline std::uint64_t fresh_salt() {
  std::random_device rd;
  std::uint64_t s = 0;
  while ((s & 0xffffffffu) == 0) s = (std::uint64_t{rd()} << 32) ^ rd();  // low half nonzero
  return s;
}

/// Builds a segment's header page, for a segment file of file_size bytes (as preallocated).
inline std::vector<std::byte> segment_header(std::uint64_t salt, std::uint64_t first_seq, std::uint64_t file_size,
                                             const std::string& key_codec,
                                             const std::string& value_codec) {
  std::vector<std::byte> h(segment_header_size);
  if (40 + key_codec.size() + value_codec.size() > segment_size_offset) {
    throw storage_error({}, "create segment", 0, "codec names too long");
  }
  put_file_start(h.data(), segment_magic);
  store_le<std::uint64_t>(h.data() + 16, salt);
  store_le<std::uint64_t>(h.data() + 24, first_seq);
  put_codec_names(h.data() + 32, key_codec, value_codec);
  store_le<std::uint64_t>(h.data() + segment_size_offset, file_size);
  store_le<std::uint32_t>(h.data() + segment_header_size - 4, crc32c(h.data(), segment_header_size - 4));
  return h;
}

struct segment_header_info {
  std::uint64_t salt;
  std::uint64_t first_seq;
  std::uint64_t size = 0;  ///< the file's size as preallocated: a shorter file was cut short
};

/// Checks a segment's header page. Returns nullopt if it is not a complete header at all (a
/// segment whose creation a crash interrupted); throws if it is one for other types or formats.
inline std::optional<segment_header_info> read_segment_header(std::span<const std::byte> h,
                                                              const fs::path& path,
                                                              const std::string& key_codec,
                                                              const std::string& value_codec) {
  if (h.size() < segment_header_size) return std::nullopt;
  if (std::memcmp(h.data(), segment_magic, 8) != 0) return std::nullopt;
  if (load_le<std::uint32_t>(h.data() + segment_header_size - 4) != crc32c(h.data(), segment_header_size - 4)) {
    return std::nullopt;
  }
  if (load_le<std::uint32_t>(h.data() + 8) != format_version) {
    throw storage_error(path, "open", 0, "unsupported log format version " +
                                             std::to_string(load_le<std::uint32_t>(h.data() + 8)));
  }
  if (load_le<std::uint32_t>(h.data() + 12) != endian_mark) {
    throw storage_error(path, "open", 0, "log written with another byte order");
  }
  const std::uint32_t klen = load_le<std::uint32_t>(h.data() + 32);
  const std::uint32_t vlen = load_le<std::uint32_t>(h.data() + 36);
  if (40 + std::uint64_t{klen} + vlen > segment_size_offset) {
    throw storage_error(path, "open", 0, "corrupt segment header");
  }
  check_codec_names(h.data() + 40, klen, vlen, path, "the log", key_codec, value_codec);
  return segment_header_info{load_le<std::uint64_t>(h.data() + 16), load_le<std::uint64_t>(h.data() + 24),
                             load_le<std::uint64_t>(h.data() + segment_size_offset)};
}

/// The successor record: the log goes on in the segment whose first seq is next (see format.hpp).
inline std::array<std::byte, record_header_size> successor_record(std::uint64_t salt, std::uint64_t next,
                                                                  std::uint64_t synced) noexcept {
  std::array<std::byte, record_header_size> rec{};
  store_le<std::uint32_t>(rec.data() + 4, 0);
  store_le<std::uint32_t>(rec.data() + 8, record_type_successor);
  store_le<std::uint32_t>(rec.data() + 12, static_cast<std::uint32_t>(salt));
  store_le<std::uint64_t>(rec.data() + 16, next);
  store_le<std::uint64_t>(rec.data() + 24, synced);
  store_le<std::uint32_t>(rec.data(), crc32c(rec.data() + 4, record_header_size - 4));
  return rec;
}

/// Creates a segment file at path, durably and atomically: written as path.tmp (preallocated to
/// size, header written and synced), renamed into place (replacing a file of that name), the
/// directory synced. A crash leaves the old name's file, or this one complete; never a part.
/// Returns the file, open for writing. Cost: a file sync and a directory sync.
inline std::unique_ptr<file> create_segment_file(file_system& fsys, const fs::path& dir, const fs::path& path,
                                                 std::span<const std::byte> header, std::uint64_t size) {
  const fs::path tmp = path.string() + ".tmp";
  fsys.remove(tmp);  // a leftover of an earlier failed attempt
  auto f = fsys.open(tmp, open_mode::create_new);
  f->allocate(size);
  f->write_at(header.data(), header.size(), 0);
  f->sync();
  fsys.rename(tmp, path);
  fsys.sync_directory(dir);
  return f;
}

/// Keeps the bytes just ahead of the log's write offset faulted in, from a thread of its own, so
/// that the writer's stores into a fresh segment do not fault: a first store to a page of a
/// file mapping allocates and zeroes a page-cache page and asks the file system to make a
/// preallocated extent writable, which is most of what a large commit costs when nothing is
/// synced. The thread starts at the first request; ahead == 0: never.
class prefaulter {
 public:
  explicit prefaulter(std::size_t ahead) : ahead_(ahead) {}
  prefaulter(const prefaulter&) = delete;
  prefaulter& operator=(const prefaulter&) = delete;
  ~prefaulter() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  /// The writer wrote up to `at` in segment `gen` (mapped by m). Costs nothing until the writer
  /// is half way through what was asked for last, and nothing more in a segment once its end was
  /// asked for (a segment smaller than `ahead` is asked for whole at its first write: a wake of
  /// the thread per publish, with nothing left to do, made small commits a third slower);
  /// otherwise a lock and a notify. Writer only.
  void wrote(std::uint64_t gen, const std::shared_ptr<mapping>& m, std::size_t at) {
    if (ahead_ == 0) return;
    if (gen == asked_gen_ && (asked_to_ >= m->size() || at + ahead_ / 2 <= asked_to_)) return;
    const std::size_t want = std::min(m->size(), at + ahead_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (gen != gen_) {
        gen_ = gen;
        map_ = m;
        done_ = at;
      }
      want_ = std::max(want_, want);
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    }
    cv_.notify_one();
    asked_gen_ = gen;
    asked_to_ = want;
    ++requests_;
  }
  /// How many requests wrote() handed to the thread. Writer only.
  std::uint64_t requests() const noexcept { return requests_; }

 private:
  void run() {
    static constexpr std::size_t chunk = std::size_t{256} << 10;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || (map_ && done_ < want_); });
      if (stop_) return;
      std::shared_ptr<mapping> m = map_;  // keeps the segment mapped while it is populated
      const std::uint64_t gen = gen_;
      const std::size_t from = done_, to = std::min(want_, from + chunk);
      lock.unlock();
      m->populate(from, to - from);  // changes no byte: the writer may store anywhere meanwhile
      lock.lock();
      if (gen == gen_) done_ = std::max(done_, to);
    }
  }

  const std::size_t ahead_;
  std::uint64_t asked_gen_ = 0;  // writer-private: what it asked for last
  std::size_t asked_to_ = 0;
  std::uint64_t requests_ = 0;  // writer-private

  std::mutex mu_;  // hands each request from the writer to the thread
  std::condition_variable cv_;
  std::shared_ptr<mapping> map_;  // guarded by mu_: the segment being written
  std::uint64_t gen_ = 0;         // guarded by mu_
  std::size_t done_ = 0;          // guarded by mu_: populated up to here
  std::size_t want_ = 0;          // guarded by mu_
  bool stop_ = false;             // guarded by mu_
  std::thread thread_;
};

/// Appends records to the newest segment. append() and roll() are the writer's; sync() may also
/// be called from a background thread (async durability): the mutex orders it with them.
class wal_writer {
 public:
  /// prefault_bytes: how far ahead of the writer to keep the segment faulted in (0: not at all).
  wal_writer(std::shared_ptr<file_system> fsys, fs::path dir, std::string key_codec,
             std::string value_codec, std::size_t segment_size, std::size_t prefault_bytes = 0)
      : fs_(std::move(fsys)),
        dir_(std::move(dir)),
        key_codec_(std::move(key_codec)),
        value_codec_(std::move(value_codec)),
        segment_size_(std::max(segment_size, segment_header_size * 2)),
        first_size_(std::min(segment_size_, first_segment_size)),
        next_size_(first_size_),
        prefault_(prefault_bytes) {}

  /// The size of the first segment after open_map() or a checkpoint; each later one is twice
  /// the one before, up to segment_size: a small map keeps a small log.
  static constexpr std::size_t first_segment_size = std::size_t{64} << 10;

  /// Starts a new segment whose first record will be first_seq, able to hold at least one
  /// record of min_record bytes, sized by the growth rule (first_segment_size, doubling up to
  /// segment_size). Creation is create_segment_file(): a crash leaves it whole or absent. Then the
  /// segment left behind gets its successor record (the log goes on in the new one) and is
  /// synced, unless !sync_previous (durability::none: the next sync() covers it). If the current
  /// segment starts at first_seq and holds nothing (it is too small for this record), the new one
  /// replaces it under its name instead, atomically.
  void roll(std::uint64_t first_seq, std::size_t min_record = 0, bool sync_previous = true) {
    const bool replace = map_ && first_seq_ == first_seq && write_off_ == segment_header_size;
    const std::size_t size = next_segment_size(min_record);
    const fs::path path = dir_ / segment_name(first_seq);
    const std::uint64_t salt = fresh_salt();
    const auto header = segment_header(salt, first_seq, size, key_codec_, value_codec_);
    auto f = create_segment_file(*fs_, dir_, path, header, size);
    if (replace) {
      std::lock_guard<std::mutex> lock(mu_);
      map_.reset();  // its name is the new segment's now
    } else if (map_) {
      leave_current(first_seq, sync_previous);
    }
    reuse(path, first_seq, salt, f->map(size, true));
  }

  /// The next segment is first_segment_size again (after a checkpoint: the log starts over).
  void restart_growth() noexcept { next_size_ = first_size_; }

  /// Continues in an existing segment instead of creating one (recovery, after a clean close:
  /// the newest segment is the empty one the last open created; and the end of roll()). Preconditions, which the
  /// caller checked: its header is valid, durable (file synced) and names first_seq and salt;
  /// every byte after the header is zero, so no stale record can carry this salt; its name is
  /// durable (directory synced); m maps all of it, writable. No other segment is current.
  void reuse(const fs::path& path, std::uint64_t first_seq, std::uint64_t salt, std::shared_ptr<mapping> m) {
    if (m->size() >= next_size_) next_size_ = std::min(segment_size_, m->size() * 2);
    std::lock_guard<std::mutex> lock(mu_);
    map_ = std::move(m);
    salt_ = salt;
    first_seq_ = first_seq;
    write_off_ = segment_header_size;
    synced_off_ = segment_header_size;
    next_seq_ = first_seq;
    path_ = path;
    bytes_since_checkpoint_ += segment_header_size;  // as roll() counts a new segment
    prefault_.wrote(++gen_, map_, write_off_);
  }

  /// Makes sure the current segment starts at first_seq (a checkpoint's cut): rolls unless the
  /// current segment already starts there and holds nothing yet.
  void roll_if_needed(std::uint64_t first_seq, bool sync_previous) {
    if (map_ && first_seq_ == first_seq && write_off_ == segment_header_size) return;
    roll(first_seq, 0, sync_previous);
  }

  /// Appends one batch record. It is in the page cache when this returns (it survives a crash
  /// of the process), durable only after sync(). Rolls to a new segment when this one is full.
  /// The largest payload one record holds (its length is a 32-bit field).
  static constexpr std::size_t max_payload = 0xffffffffu - record_header_size;
  /// Throws storage_error (EFBIG) if a payload of size bytes does not fit in one record; writes
  /// nothing, so the caller may go on.
  void check_payload_size(std::size_t size) const {
    if (size > max_payload) {
      throw storage_error(dir_, "append", EFBIG, "a batch of " + std::to_string(size) +
                                                     " bytes does not fit in one log record");
    }
  }
  void append(std::uint64_t seq, std::span<const std::byte> payload) {
    append_with(seq, payload.size(), [payload](std::byte* dst) noexcept {
      if (!payload.empty()) std::memcpy(dst, payload.data(), payload.size());
    });
  }

  /// append(), the payload written in place by fill(dst), which must write exactly size bytes
  /// at dst and not throw (a record half written would leave non-zero bytes past the log's
  /// end): no copy of the payload on the way.
  template <class Fill>
  void append_with(std::uint64_t seq, std::size_t size, Fill&& fill) {
    static_assert(std::is_nothrow_invocable_v<Fill&, std::byte*>, "leftright: append_with's fill must be noexcept");
    check_payload_size(size);
    const std::size_t need = align8(record_header_size + size);
    // Room for the record and, after it, the successor record the segment ends with.
    if (!map_ || seq != next_seq_ || write_off_ + need + record_header_size > map_->size()) {
      roll(seq, need, /*sync_previous=*/sync_on_roll_);
    }
    std::uint64_t synced;
    {
      std::lock_guard<std::mutex> lock(mu_);
      synced = synced_seq_;  // the async syncer updates it
    }
    std::byte* rec = map_->data() + write_off_;
    store_le<std::uint32_t>(rec + 4, static_cast<std::uint32_t>(size));
    store_le<std::uint32_t>(rec + 8, record_type_batch);
    store_le<std::uint32_t>(rec + 12, static_cast<std::uint32_t>(salt_));
    store_le<std::uint64_t>(rec + 16, seq);
    store_le<std::uint64_t>(rec + 24, synced);
    fill(rec + record_header_size);
    std::memset(rec + record_header_size + size, 0, need - record_header_size - size);
    // The crc last: a record is valid only once all of it is in place.
    store_le<std::uint32_t>(rec, crc32c(rec + 4, record_header_size - 4 + size));
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_append_ = appended{gen_, write_off_, need, last_seq_};
      write_off_ += need;
      last_seq_ = seq;
      next_seq_ = seq + 1;
      bytes_since_checkpoint_ += need;
    }
    prefault_.wrote(gen_, map_, write_off_);
  }

  /// Starts writing the appended, unsynced records back without waiting (see
  /// mapping::start_writeback), so that the sync() after the caller's other work waits less.
  /// Writer only.
  void start_writeback() noexcept {
    std::shared_ptr<mapping> m;
    std::size_t from, to;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!map_ || synced_off_ >= write_off_) return;
      m = map_;
      from = synced_off_;
      to = write_off_;
    }
    m->start_writeback(from, to - from);
  }

  /// Takes back the record of the last append(), which must be the last thing written and not
  /// yet synced: zeroes it, syncs the zeros (the record may have reached the disk already,
  /// through start_writeback() or the kernel's own write-back), and appends the next record
  /// where it stood, with the same seq. For a batch logged before it was applied whose
  /// application then failed. Throws storage_error if the zeros cannot be synced: the record
  /// may then survive a crash, and the caller must stop writing (fail-stop). Writer only.
  void retract_last() {
    appended a{};
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!last_append_ || last_append_->gen != gen_ || last_append_->off + last_append_->len != write_off_ ||
          synced_off_ > last_append_->off) {
        throw std::logic_error("leftright: retract_last() without an unsynced last record");
      }
      a = *last_append_;
      last_append_.reset();
      write_off_ = a.off;
      next_seq_ = last_seq_;
      last_seq_ = a.prev_last_seq;
      bytes_since_checkpoint_ -= a.len;
    }
    // Zeros, as a segment holds past its last record: whatever part of them reaches the disk
    // leaves no record there, and the next append finds the bytes as roll() made them.
    std::memset(map_->data() + a.off, 0, a.len);
    map_->sync(a.off, a.len);
  }

  /// Makes every appended record durable (msync of the unsynced range). Thread-safe. After one
  /// sync failed, every later one throws too: the kernel reports a failed write-back once and
  /// may mark the pages clean, so a retry could succeed with the records never written, and
  /// records after it would claim they were (durability::async's syncer fails while the writer
  /// rolls a segment, which syncs the one it leaves). Two syncs run one after the other
  /// (sync_mu_): one that overlapped a failing one could succeed, the pages marked clean by the
  /// other's failure, and claim its range durable before that failure was noted (the async
  /// syncer's failure and a flush() at once: the flush returned, its records lost).
  void sync() {
    std::lock_guard<std::mutex> one_at_a_time(sync_mu_);
    std::shared_ptr<mapping> m;
    std::size_t from, to;
    std::uint64_t seq;
    const auto failing = [this](auto&& sync_some) {
      try {
        sync_some();
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        sync_failed_ = true;
        throw;
      }
    };
    {
      // Segments left unsynced by roll(), oldest first: fdatasync through a fresh descriptor
      // writes back the file's dirty pages, whoever dirtied them.
      std::unique_lock<std::mutex> lock(mu_);
      if (sync_failed_) {
        throw storage_error(path_, "sync", 0,
                            "an earlier sync of the log failed; the records after it cannot be made durable");
      }
      while (!unsynced_.empty()) {
        const unsynced_segment u = unsynced_.front();
        lock.unlock();
        failing([&] { fs_->open(u.path, open_mode::read_write)->sync(); });
        lock.lock();
        if (!unsynced_.empty() && unsynced_.front().path == u.path) unsynced_.erase(unsynced_.begin());
        synced_seq_ = std::max(synced_seq_, u.last_seq);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!map_ || synced_off_ == write_off_) {
        synced_seq_ = std::max(synced_seq_, last_seq_);
        return;
      }
      m = map_;
      from = synced_off_;
      to = write_off_;
      seq = last_seq_;
    }
    failing([&] { m->sync(from, to - from); });
    std::lock_guard<std::mutex> lock(mu_);
    if (m == map_) synced_off_ = std::max(synced_off_, to);
    synced_seq_ = std::max(synced_seq_, seq);
  }

  /// Whether roll() syncs the segment it leaves (not in durability::none).
  void set_sync_on_roll(bool on) { sync_on_roll_ = on; }
  /// Log bytes written since reset_checkpoint_bytes().
  std::uint64_t bytes_since_checkpoint() const { return bytes_since_checkpoint_; }
  void reset_checkpoint_bytes() { bytes_since_checkpoint_ = 0; }
  /// Counts n more (the log a reopen found after the last checkpoint).
  void add_checkpoint_bytes(std::uint64_t n) { bytes_since_checkpoint_ += n; }
  /// Forgets the unsynced segments whose records are all <= seq (a checkpoint covers them and
  /// is about to remove them).
  void forget_unsynced_through(std::uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(unsynced_, [seq](const unsynced_segment& u) { return u.last_seq <= seq; });
  }
  /// Declares every seq <= seq durable by other means (a recovered or checkpointed state).
  void mark_synced(std::uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    synced_seq_ = std::max(synced_seq_, seq);
    last_seq_ = std::max(last_seq_, seq);
  }

 private:
  /// The size of the next segment, one that can hold a record of min_record bytes and the
  /// successor record after it; advances the growth rule.
  std::size_t next_segment_size(std::size_t min_record) noexcept {
    constexpr std::size_t page = 4096;
    const std::size_t need = (segment_header_size + min_record + record_header_size + page - 1) / page * page;
    const std::size_t size = std::max(next_size_, need);
    next_size_ = std::min(segment_size_, next_size_ * 2);
    return size;
  }

  /// Ends the current segment: its successor record (the log goes on at next_first), then a
  /// sync of it, or (!sync) a note that the next sync() must cover it. Writer only.
  void leave_current(std::uint64_t next_first, bool sync) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto rec = successor_record(salt_, next_first, synced_seq_);
      std::memcpy(map_->data() + write_off_, rec.data(), rec.size());  // append() kept room for it
      write_off_ += rec.size();
    }
    if (sync) {
      this->sync();
      return;
    }
    // Left unsynced (durability::none): the next sync() must still cover it, before any record
    // the new segment holds can claim everything up to it is durable.
    std::lock_guard<std::mutex> lock(mu_);
    if (synced_off_ < write_off_) unsynced_.push_back({path_, last_seq_});
  }

  std::shared_ptr<file_system> fs_;
  fs::path dir_;
  std::string key_codec_;
  std::string value_codec_;
  std::size_t segment_size_;
  std::size_t first_size_;  ///< the first segment's size (after open or a checkpoint)
  std::size_t next_size_;   ///< the next segment's, doubling up to segment_size_
  bool sync_on_roll_ = true;
  fs::path path_;  ///< the current segment
  std::uint64_t bytes_since_checkpoint_ = 0;

  std::uint64_t gen_ = 0;  ///< counts segments made current (roll, reuse): the writer's
  prefaulter prefault_;    ///< holds its own reference to the segment it is populating
  std::mutex mu_;  // orders sync() (any thread) with append()/roll() (the writer)
  std::mutex sync_mu_;  // held through a sync(): syncs never overlap (see sync); taken before mu_
  bool sync_failed_ = false;  ///< a sync() threw: every later one throws (see sync); guarded by mu_
  std::shared_ptr<mapping> map_;
  /// Earlier segments whose records roll() did not sync (durability::none), oldest first.
  struct unsynced_segment {
    fs::path path;
    std::uint64_t last_seq;
  };
  std::vector<unsynced_segment> unsynced_;  // guarded by mu_
  std::uint64_t salt_ = 0;
  std::uint64_t first_seq_ = 0;
  std::size_t write_off_ = 0;   // guarded by mu_ (written by the writer, read by sync())
  std::size_t synced_off_ = 0;  // guarded by mu_
  std::uint64_t next_seq_ = 0;
  std::uint64_t last_seq_ = 0;    // guarded by mu_
  std::uint64_t synced_seq_ = 0;  // guarded by mu_
  /// Where the last append() wrote, for retract_last().
  struct appended {
    std::uint64_t gen;
    std::size_t off, len;
    std::uint64_t prev_last_seq;
  };
  std::optional<appended> last_append_;  // guarded by mu_ where written
};

// ----------------------------------------------------------------------------------------------
// Reading segments back.

struct wal_record {
  std::uint64_t seq;
  std::uint64_t offset;
  std::uint64_t synced;  ///< every version up to this one was durable when it was written
  std::span<const std::byte> payload;
};

/// What a scan of one segment found.
struct segment_scan {
  std::uint64_t first_seq = 0;
  std::vector<wal_record> records;  ///< consecutive, from first_seq
  std::uint64_t end_offset = 0;     ///< where the valid records end
  /// The segment ends with a successor record at end_offset: the log goes on in the segment
  /// whose first seq is this (the next seq after the records). Nothing after it is looked at.
  std::optional<std::uint64_t> successor;
  bool torn = false;                ///< something other than zeros or the end follows them
  /// A later record that says it was written after the record at end_offset was durable:
  /// damage a crash cannot explain.
  std::optional<std::uint64_t> contradicting_offset;
  /// A header in the tail that claims what a contradicting record claims, but that the tail
  /// check's checksum budget (tail_check_budget) no longer covered: the tail holds more
  /// record-like bytes than a crash leaves behind. Damage too; set only if no contradicting
  /// record was found first.
  std::optional<std::uint64_t> unchecked_offset;
};

/// Validates the record header at off; returns its seq and payload length if it is one of this
/// segment's complete records.
inline std::optional<std::pair<std::uint64_t, std::uint32_t>> read_record(std::span<const std::byte> seg,
                                                                          std::size_t off,
                                                                          std::uint32_t salt_lo) {
  if (off + record_header_size > seg.size()) return std::nullopt;
  const std::byte* rec = seg.data() + off;
  const auto len = load_le<std::uint32_t>(rec + 4);
  if (load_le<std::uint32_t>(rec + 8) != record_type_batch) return std::nullopt;
  if (load_le<std::uint32_t>(rec + 12) != salt_lo) return std::nullopt;
  if (len > seg.size() - off - record_header_size) return std::nullopt;
  if (load_le<std::uint32_t>(rec) != crc32c(rec + 4, record_header_size - 4 + len)) return std::nullopt;
  return std::pair{load_le<std::uint64_t>(rec + 16), len};
}

/// Whether the bytes at off are this segment's successor record naming next.
inline bool is_successor_record(std::span<const std::byte> seg, std::size_t off, std::uint32_t salt_lo,
                                std::uint64_t next) {
  if (off + record_header_size > seg.size()) return false;
  const std::byte* rec = seg.data() + off;
  return load_le<std::uint32_t>(rec + 4) == 0 && load_le<std::uint32_t>(rec + 8) == record_type_successor &&
         load_le<std::uint32_t>(rec + 12) == salt_lo && load_le<std::uint64_t>(rec + 16) == next &&
         load_le<std::uint32_t>(rec) == crc32c(rec + 4, record_header_size - 4);
}

/// How many bytes the tail check of a segment of `size` bytes may checksum: twice the segment.
/// The records a crash can leave after a torn one are disjoint, so checking each of them costs
/// at most the segment once; only crafted bytes (overlapping record-like headers, each claiming
/// most of the segment) need more, and would otherwise make the check quadratic.
inline constexpr std::uint64_t tail_check_budget(std::uint64_t size) noexcept { return 2 * size; }

/// The whole rest of the segment may hold data (no hint from the file system).
struct no_data_hint {
  std::pair<std::uint64_t, std::uint64_t> operator()(std::uint64_t off, std::uint64_t size) const noexcept {
    return {std::min(off, size), size};
  }
};

/// Checks a non-zero word at offset p after a segment's valid records (expect: the first
/// version missing) and notes in out that the tail is torn. Returns true if a record-like header
/// there settles it: it claims the missing version was durable (out.contradicting_offset), or
/// checking it would exceed the budget (out.unchecked_offset). Charges what it checksums to budget.
/// A claim is a later batch record's durable seq, or the successor record's (written when the log
/// moved on, after the segment's records were synced as far as it says: a restart that writes
/// nothing ends the newest segment with one naming every recovered version durable).
inline bool tail_word_settles(std::span<const std::byte> seg, std::size_t p, std::uint32_t salt_lo,
                              std::uint64_t expect, std::uint64_t& budget, segment_scan& out) {
  const std::size_t size = seg.size();
  out.torn = true;
  if (p + record_header_size > size) return false;
  const std::byte* rec = seg.data() + p;
  const auto len = load_le<std::uint32_t>(rec + 4);
  const auto type = load_le<std::uint32_t>(rec + 8);
  const bool claims = type == record_type_batch || (type == record_type_successor && len == 0);
  if (!claims || load_le<std::uint32_t>(rec + 12) != salt_lo ||
      load_le<std::uint64_t>(rec + 16) <= expect || load_le<std::uint64_t>(rec + 24) < expect ||
      len > size - p - record_header_size) {
    return false;
  }
  const std::uint64_t cost = record_header_size - 4 + std::uint64_t{len};
  if (cost > budget) {
    out.unchecked_offset = p;
    return true;
  }
  budget -= cost;
  if (load_le<std::uint32_t>(rec) != crc32c(rec + 4, static_cast<std::size_t>(cost))) return false;
  out.contradicting_offset = p;
  return true;
}

/// Looks at what follows a segment's valid records (from out.end_offset; expect: the first
/// version missing). Zeros (never written) are a clean end. Anything else is a torn tail, unless
/// a later valid record of this segment claims the missing one was already durable. Each 8-byte
/// word is looked at (zeros 64 bytes at a time); a non-zero one is checksummed only if its cheap
/// fields make the claim (type, salt, seq > expect, synced >= expect, length), and only within
/// the budget, so a crafted tail cannot make recovery quadratic. data_range: as scan_segment's.
template <class DataRange>
void check_tail(std::span<const std::byte> seg, std::uint32_t salt_lo, std::uint64_t expect, DataRange& data_range,
                segment_scan& out) {
  const std::size_t size = seg.size();
  const std::byte* base = seg.data();
  std::uint64_t budget = tail_check_budget(size);
  const auto settles = [&](std::size_t p) { return tail_word_settles(seg, p, salt_lo, expect, budget, out); };
  // Records start at the 4096-byte header and are padded to 8: every offset here is 8-aligned.
  bool done = false;
  for (std::size_t p = out.end_offset; p < size && !done;) {
    const auto [first, second] = data_range(std::uint64_t{p}, std::uint64_t{size});
    if (first >= size) break;  // zeros to the end
    // [p, first) reads as zeros; read [first, second) in whole words. A range that does not
    // reach past p is no hint: then the rest is read.
    const std::size_t from = std::max(p, static_cast<std::size_t>(first) & ~std::size_t{7});
    const std::size_t to = second > from ? std::min<std::size_t>(align8(static_cast<std::size_t>(second)), size) : size;
    for (std::size_t q = from; q < to && !done;) {
      if ((q & 63) == 0 && q + 64 <= to) {
        std::uint64_t w[8];
        std::memcpy(w, base + q, 64);
        if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) {
          for (std::size_t i = 0; i < 8 && !done; ++i) {
            if (w[i] != 0) done = settles(q + 8 * i);
          }
        }
        q += 64;
      } else {
        // The 8-byte word at q (the last one of a segment whose size is not a multiple of 8 is short).
        std::uint64_t w = 0;
        std::memcpy(&w, base + q, std::min<std::size_t>(8, size - q));
        if (w != 0) done = settles(q);
        q += 8;
      }
    }
    p = to;
  }
}

/// Reads a segment's records in order until the first that does not validate, then checks the
/// tail after them (check_tail). data_range(off, size) -> [first, second): as file::data_range,
/// the first range at or after off that may hold non-zero bytes (the tail check reads only those).
/// Cost: O(segment bytes that may hold data); the tail check checksums at most
/// tail_check_budget(segment size) bytes.
template <class DataRange = no_data_hint>
segment_scan scan_segment(std::span<const std::byte> seg, const segment_header_info& h,
                          DataRange&& data_range = DataRange{}) {
  segment_scan out;
  out.first_seq = h.first_seq;
  const auto salt_lo = static_cast<std::uint32_t>(h.salt);
  std::size_t off = segment_header_size;
  std::uint64_t expect = h.first_seq;
  while (true) {
    auto r = read_record(seg, off, salt_lo);
    if (!r || r->first != expect) break;
    out.records.push_back({expect, off, load_le<std::uint64_t>(seg.data() + off + 24),
                           seg.subspan(off + record_header_size, r->second)});
    off += align8(record_header_size + r->second);
    ++expect;
  }
  out.end_offset = off;
  if (is_successor_record(seg, off, salt_lo, expect)) {
    out.successor = expect;
    return out;
  }
  check_tail(seg, salt_lo, expect, data_range, out);
  return out;
}

}  // namespace leftright::detail::storage
