// SPDX-License-Identifier: Apache-2.0
// leftright benchmarks: the durable stores, each behind the same small commit interface, and the
// scratch directories they write to. Used by bench_durable_*.cpp only (the in-memory maps are in
// adapters.hpp).
//
// The store interface (keys and values are std::uint64_t):
//   static constexpr std::string_view name;  // the system's name in benchmark names and tables
//   static std::vector<std::string_view> modes();
//   Store(const std::filesystem::path& dir, std::string_view mode, std::span<const std::uint64_t> keys);
//        // an empty store in dir, then keys[i] -> i committed as one batch (not timed)
//   void commit(const std::uint64_t* keys, std::size_t n, std::uint64_t value);
//        // overwrites keys[0..n) with value, value + 1, ... as one batch (one transaction, one
//        // published batch, one log record), committed as the mode promises when it returns
//   std::string label() const;               // a note for the benchmark's label
// Errors throw std::runtime_error; the benchmarks turn them into SkipWithError.
//
// Every store writes the same logical records: u64 key, u64 value. What "committed" means:
//   leftright/memory   make_map(): visible to readers, nothing on disk (the in-memory baseline)
//   leftright/none     open_map(), durability::none: in the page cache (survives kill -9)
//   leftright/async    durability::async: as none, plus a background msync every 1 s
//   leftright/sync     durability::sync: msync(MS_SYNC) of the record before publish() returns
//   lmdb/sync          LMDB defaults: the write transaction's pages and meta page fdatasync'ed
//   lmdb/nosync        MDB_NOSYNC: written to the page cache only
//   sqlite_wal/full    journal_mode=WAL, synchronous=FULL: the WAL fsync'ed at every commit
//   sqlite_wal/normal  journal_mode=WAL, synchronous=NORMAL: WAL synced only at checkpoints
//   pwrite_fdatasync/* the floor: pwrite of exactly the bytes our log record for the batch takes
//                      (align8(32-byte header + 4 + 17 per record)), then fdatasync, into a file
//                      that grows (append), is preallocated with posix_fallocate like our log
//                      segments (fallocate), or was written and synced beforehand (overwrite)
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <leftright/durable_map.hpp>
#include <leftright/map.hpp>

#if LEFTRIGHT_BENCH_WITH_LMDB
#include <lmdb.h>
#endif
#if LEFTRIGHT_BENCH_WITH_SQLITE
#include <sqlite3.h>
#endif

#include "scratch.hpp"

namespace lrbench {

namespace fs = std::filesystem;

[[noreturn]] inline void fail_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// ------------------------------------------------------------------------------------------
// Ours: leftright::make_map (mode "memory") and leftright::open_map (none, async, sync).
// ------------------------------------------------------------------------------------------

class lr_store {
 public:
  static constexpr std::string_view name = "leftright";
  static std::vector<std::string_view> modes() { return {"memory", "none", "async", "sync"}; }

  using memory_writer = leftright::map_writer<std::uint64_t, std::uint64_t>;
  using durable_writer = leftright::durable_writer<std::uint64_t, std::uint64_t>;

  lr_store(const fs::path& dir, std::string_view mode, std::span<const std::uint64_t> keys) {
    if (mode == "memory") {
      mem_.emplace(leftright::make_map<std::uint64_t, std::uint64_t>().first);
    } else {
      leftright::durable_options o;
      o.path = dir / "map";
      o.durability = mode == "none"    ? leftright::durability::none
                     : mode == "async" ? leftright::durability::async
                                       : leftright::durability::sync;
      // LEFTRIGHT_BENCH_PREFAULT=<bytes> overrides durable_options::prefault_bytes (0: off), to
      // measure what prefaulting the log is worth.
      if (const char* pf = std::getenv("LEFTRIGHT_BENCH_PREFAULT")) o.prefault_bytes = std::strtoull(pf, nullptr, 10);
      dur_.emplace(leftright::open_map<std::uint64_t, std::uint64_t>(o).first);
    }
    visit([&](auto& w) {
      for (std::size_t i = 0; i < keys.size(); ++i) w.insert_or_assign(keys[i], i);
      // Twice, as lr_map does: both copies hold every entry and the op log is empty.
      w.publish();
      w.publish();
    });
  }

  void commit(const std::uint64_t* keys, std::size_t n, std::uint64_t value) {
    visit([&](auto& w) {
      for (std::size_t i = 0; i < n; ++i) w.insert_or_assign(keys[i], value + i);
      w.publish();
    });
  }
  std::string label() const { return {}; }
  std::uint64_t checkpoints() const { return dur_ ? dur_->checkpoints() : 0; }

 private:
  template <class F>
  void visit(F&& f) {
    if (mem_) {
      f(*mem_);
    } else {
      f(*dur_);
    }
  }
  std::optional<memory_writer> mem_;
  std::optional<durable_writer> dur_;
};

// ------------------------------------------------------------------------------------------
// The floor: pwrite + fdatasync of exactly the bytes our log record takes.
// ------------------------------------------------------------------------------------------

/// The bytes of the log record leftright writes for a batch of n u64 -> u64 overwrites.
inline std::size_t lr_record_bytes(std::size_t n) {
  namespace st = leftright::detail::storage;
  return st::align8(st::record_header_size + 4 + n * (1 + 8 + 8));
}

class pwrite_store {
 public:
  static constexpr std::string_view name = "pwrite_fdatasync";
  static std::vector<std::string_view> modes() { return {"append", "fallocate", "overwrite"}; }

  pwrite_store(const fs::path& dir, std::string_view mode, std::span<const std::uint64_t>)
      : dir_(dir), mode_(mode) {
    open_file();
  }
  pwrite_store(const pwrite_store&) = delete;
  pwrite_store& operator=(const pwrite_store&) = delete;
  ~pwrite_store() {
    if (fd_ >= 0) ::close(fd_);
  }

  void commit(const std::uint64_t* keys, std::size_t n, std::uint64_t value) {
    const std::size_t len = lr_record_bytes(n);
    buf_.resize(len);
    std::byte* p = buf_.data() + 36;  // after a header and a count, as in our record
    for (std::size_t i = 0; i < n; ++i, p += 17) {
      const std::uint64_t v = value + i;
      std::memcpy(p + 1, &keys[i], 8);
      std::memcpy(p + 9, &v, 8);
    }
    if (off_ + len > cap_) {
      if (mode_ == "fallocate") {
        open_file();  // a fresh preallocated file, as our log rolls to a new segment
      } else {
        off_ = 0;  // overwrite: wrap (append never reaches cap_)
      }
    }
    for (std::size_t done = 0; done < len;) {
      const ssize_t w = ::pwrite(fd_, buf_.data() + done, len - done, static_cast<off_t>(off_ + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail_errno("pwrite");
      done += static_cast<std::size_t>(w);
    }
    if (::fdatasync(fd_) != 0) fail_errno("fdatasync");
    off_ += len;
  }
  std::string label() const { return {}; }

 private:
  void open_file() {
    if (fd_ >= 0) ::close(fd_);
    const fs::path p = dir_ / ("log-" + std::to_string(files_++));
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_errno("open " + p.string());
    off_ = 0;
    if (mode_ == "append") {
      cap_ = SIZE_MAX;
    } else if (mode_ == "fallocate") {
      cap_ = std::size_t{64} << 20;  // our default segment size
      if (int err = ::posix_fallocate(fd_, 0, static_cast<off_t>(cap_)); err != 0) {
        errno = err;
        fail_errno("posix_fallocate");
      }
    } else {
      cap_ = std::size_t{16} << 20;
      std::vector<std::byte> zeros(std::size_t{1} << 20);
      for (std::size_t off = 0; off < cap_; off += zeros.size()) {
        if (::pwrite(fd_, zeros.data(), zeros.size(), static_cast<off_t>(off)) !=
            static_cast<ssize_t>(zeros.size())) {
          fail_errno("pwrite");
        }
      }
      if (::fsync(fd_) != 0) fail_errno("fsync");
    }
    if (files_ > 1) fs::remove(dir_ / ("log-" + std::to_string(files_ - 2)));
  }

  fs::path dir_;
  std::string mode_;
  int fd_ = -1;
  unsigned files_ = 0;
  std::size_t off_ = 0, cap_ = 0;
  std::vector<std::byte> buf_;
};

#if LEFTRIGHT_BENCH_WITH_LMDB
// ------------------------------------------------------------------------------------------
// LMDB: one write transaction per batch.
// ------------------------------------------------------------------------------------------
class lmdb_store {
 public:
  static constexpr std::string_view name = "lmdb";
  static std::vector<std::string_view> modes() { return {"sync", "nosync"}; }

  lmdb_store(const fs::path& dir, std::string_view mode, std::span<const std::uint64_t> keys) {
    check(mdb_env_create(&env_), "mdb_env_create");
    check(mdb_env_set_mapsize(env_, std::size_t{1} << 30), "mdb_env_set_mapsize");
    const unsigned flags = mode == "nosync" ? MDB_NOSYNC : 0u;
    check(mdb_env_open(env_, dir.c_str(), flags, 0644), "mdb_env_open");
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, nullptr, 0, &dbi_), "mdb_dbi_open");
    for (std::size_t i = 0; i < keys.size(); ++i) put(txn, keys[i], i);
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  lmdb_store(const lmdb_store&) = delete;
  lmdb_store& operator=(const lmdb_store&) = delete;
  ~lmdb_store() { mdb_env_close(env_); }

  void commit(const std::uint64_t* keys, std::size_t n, std::uint64_t value) {
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    for (std::size_t i = 0; i < n; ++i) put(txn, keys[i], value + i);
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  std::string label() const { return {}; }

 private:
  void put(MDB_txn* txn, std::uint64_t k, std::uint64_t v) {
    MDB_val key{sizeof k, &k}, val{sizeof v, &v};
    if (int rc = mdb_put(txn, dbi_, &key, &val, 0); rc != 0) {
      mdb_txn_abort(txn);
      check(rc, "mdb_put");
    }
  }
  static void check(int rc, const char* what) {
    if (rc != 0) throw std::runtime_error(std::string(what) + ": " + mdb_strerror(rc));
  }
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};
#endif

#if LEFTRIGHT_BENCH_WITH_SQLITE
// ------------------------------------------------------------------------------------------
// SQLite in WAL mode: one transaction per batch, prepared statements (an upsert per record).
// ------------------------------------------------------------------------------------------
class sqlite_store {
 public:
  static constexpr std::string_view name = "sqlite_wal";
  static std::vector<std::string_view> modes() { return {"full", "normal"}; }

  sqlite_store(const fs::path& dir, std::string_view mode, std::span<const std::uint64_t> keys) {
    const fs::path p = dir / "db.sqlite";
    if (sqlite3_open_v2(p.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error("sqlite3_open_v2: " + msg);
    }
    exec("PRAGMA journal_mode=WAL");
    exec(mode == "full" ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    exec("CREATE TABLE kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL)");
    begin_ = prepare("BEGIN");
    commit_ = prepare("COMMIT");
    upsert_ = prepare("INSERT INTO kv(k, v) VALUES(?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v");
    step(begin_);
    for (std::size_t i = 0; i < keys.size(); ++i) put(keys[i], i);
    step(commit_);
  }
  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;
  ~sqlite_store() {
    sqlite3_finalize(begin_);
    sqlite3_finalize(commit_);
    sqlite3_finalize(upsert_);
    sqlite3_close(db_);
  }

  void commit(const std::uint64_t* keys, std::size_t n, std::uint64_t value) {
    step(begin_);
    for (std::size_t i = 0; i < n; ++i) put(keys[i], value + i);
    step(commit_);
  }
  std::string label() const { return {}; }

 private:
  void put(std::uint64_t k, std::uint64_t v) {
    // SQLite integers are signed 64-bit: the keys' bits, reinterpreted.
    sqlite3_bind_int64(upsert_, 1, static_cast<sqlite3_int64>(k));
    sqlite3_bind_int64(upsert_, 2, static_cast<sqlite3_int64>(v));
    step(upsert_);
  }
  void step(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) throw std::runtime_error(std::string("sqlite3_step: ") + sqlite3_errmsg(db_));
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("sqlite3_prepare_v2: ") + sqlite3_errmsg(db_));
    }
    return s;
  }
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(std::string(sql) + ": " + msg);
    }
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
};
#endif

/// Calls f.template operator()<Store>() for every durable store compiled in, ours first.
template <class F>
void for_each_store(F&& f) {
  f.template operator()<lr_store>();
  f.template operator()<pwrite_store>();
#if LEFTRIGHT_BENCH_WITH_LMDB
  f.template operator()<lmdb_store>();
#endif
#if LEFTRIGHT_BENCH_WITH_SQLITE
  f.template operator()<sqlite_store>();
#endif
}

}  // namespace lrbench
