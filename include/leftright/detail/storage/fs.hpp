// SPDX-License-Identifier: Apache-2.0
// leftright: the small file-system interface all storage goes through, and its POSIX
// implementation. Tests put a simulated file system underneath (one that loses unsynced writes,
// tears pages and injects errors); the durable map never calls the OS directly.
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../../storage_error.hpp"

namespace leftright::detail::storage {

namespace fs = std::filesystem;

/// How a mapping is about to be read (madvise). Only a hint: it changes no byte read.
enum class access_hint {
  random,     ///< no read-around on a fault: touch a page, get that page (MADV_RANDOM)
  will_need,  ///< read this range ahead now (MADV_WILLNEED)
};

/// A shared, writable or read-only memory mapping of the start of a file.
class mapping {
 public:
  virtual ~mapping() = default;
  virtual std::byte* data() noexcept = 0;
  virtual std::size_t size() const noexcept = 0;
  /// Makes bytes [off, off + len) of the mapping durable (msync MS_SYNC).
  virtual void sync(std::size_t off, std::size_t len) = 0;
  /// A hint about bytes [off, off + len); ignored where it means nothing. Never fails.
  virtual void advise(std::size_t off, std::size_t len, access_hint hint) noexcept {
    (void)off;
    (void)len;
    (void)hint;
  }
  /// Faults bytes [off, off + len) in, writable, without changing them (MADV_POPULATE_WRITE),
  /// so that later stores there do not fault. Best effort: ignored where unsupported.
  virtual void populate(std::size_t off, std::size_t len) noexcept {
    (void)off;
    (void)len;
  }
  /// Starts writing bytes [off, off + len) back to the disk, and returns without waiting
  /// (sync_file_range SYNC_FILE_RANGE_WRITE), so that a sync() of them soon after finds the
  /// work under way. Promises nothing: the bytes are durable only once sync() returns, and they
  /// may reach the disk now, so write here only what may survive a crash. Never fails; errors
  /// surface at the next sync().
  virtual void start_writeback(std::size_t off, std::size_t len) noexcept {
    (void)off;
    (void)len;
  }
};

class file {
 public:
  virtual ~file() = default;
  virtual const fs::path& path() const noexcept = 0;
  virtual std::uint64_t size() = 0;
  /// Writes all n bytes at off, or throws.
  virtual void write_at(const void* p, std::size_t n, std::uint64_t off) = 0;
  /// Reads up to n bytes at off; returns how many (fewer only at the end of the file).
  virtual std::size_t read_at(void* p, std::size_t n, std::uint64_t off) = 0;
  /// Reserves [0, len) on disk (posix_fallocate): a full disk fails here, not as a SIGBUS later.
  virtual void allocate(std::uint64_t len) = 0;
  /// fdatasync.
  virtual void sync() = 0;
  /// Maps [0, len) shared. The mapping keeps the file open and outlives this object.
  virtual std::shared_ptr<mapping> map(std::size_t len, bool writable) = 0;
  /// A hint for readers looking for non-zero bytes: the first range [first, second) at or
  /// after off that may hold any; every byte of [off, first) reads as zero. {size, size}: none
  /// left. Never wrong, possibly coarse: {off, size} (the default) is always a valid answer.
  /// POSIX: lseek SEEK_DATA, then SEEK_HOLE (holes and never-written preallocated extents read
  /// as zeros, so a segment's unused tail need not be read, or faulted in, to know it is zero).
  virtual std::pair<std::uint64_t, std::uint64_t> data_range(std::uint64_t off) {
    const std::uint64_t n = size();
    return {std::min(off, n), n};
  }
};

enum class open_mode {
  read_only,
  read_write,  ///< an existing file
  create_new,  ///< fails if the file exists
};

/// Held while a directory is locked; unlocks when destroyed.
class lock_handle {
 public:
  virtual ~lock_handle() = default;
};

class file_system {
 public:
  virtual ~file_system() = default;
  virtual std::unique_ptr<file> open(const fs::path& p, open_mode mode) = 0;
  /// mkdir -p: creates dir and its missing parents. Returns the directories it created, parents
  /// first (the caller syncs the parent of each to make them durable).
  virtual std::vector<fs::path> create_directories(const fs::path& dir) = 0;
  /// The names of the regular files in dir.
  virtual std::vector<std::string> list(const fs::path& dir) = 0;
  virtual void rename(const fs::path& from, const fs::path& to) = 0;
  /// Removes a file or an empty directory; one that does not exist is not an error.
  virtual void remove(const fs::path& p) = 0;
  /// fsync of the directory itself: makes creates, renames and removes in it durable.
  virtual void sync_directory(const fs::path& dir) = 0;
  /// An exclusive lock on dir, across threads and processes; a storage_error if held.
  virtual std::unique_ptr<lock_handle> lock_directory(const fs::path& dir) = 0;
  /// A shared lock on dir: held with other shared ones, never with the exclusive one (a
  /// storage_error if that is held). Writes nothing; where no exclusive lock was ever taken
  /// (no LOCK file), there is nothing to lock against, and nothing is locked.
  virtual std::unique_ptr<lock_handle> lock_directory_shared(const fs::path& dir) = 0;
};

// ----------------------------------------------------------------------------------------------
// POSIX

namespace posix {

[[noreturn]] inline void fail(const fs::path& p, const char* op, int err, std::string detail = {}) {
  throw storage_error(p, op, err, std::move(detail));
}

class fd_owner {
 public:
  explicit fd_owner(int fd) noexcept : fd_(fd) {}
  fd_owner(const fd_owner&) = delete;
  fd_owner& operator=(const fd_owner&) = delete;
  ~fd_owner() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

class posix_mapping final : public mapping {
 public:
  /// fd: the file's descriptor, kept for start_writeback(); null for a read-only mapping.
  posix_mapping(fs::path p, void* addr, std::size_t len, std::shared_ptr<fd_owner> fd)
      : path_(std::move(p)), addr_(addr), len_(len), fd_(std::move(fd)) {}
  ~posix_mapping() override { ::munmap(addr_, len_); }
  std::byte* data() noexcept override { return static_cast<std::byte*>(addr_); }
  std::size_t size() const noexcept override { return len_; }
  void sync(std::size_t off, std::size_t len) override {
    if (len == 0) return;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t start = off / page * page;
    if (::msync(data() + start, off + len - start, MS_SYNC) != 0) fail(path_, "msync", errno);
  }
  void advise(std::size_t off, std::size_t len, access_hint hint) noexcept override {
    if (off >= len_ || len == 0) return;
    len = std::min(len, len_ - off);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t start = off / page * page;
    // A hint: an error (an old kernel, an odd file system) changes nothing that matters.
    (void)::madvise(data() + start, off + len - start, hint == access_hint::random ? MADV_RANDOM : MADV_WILLNEED);
  }
  void populate(std::size_t off, std::size_t len) noexcept override {
#ifdef MADV_POPULATE_WRITE
    if (off >= len_ || len == 0) return;
    len = std::min(len, len_ - off);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t start = off / page * page;
    // EINVAL before Linux 5.14, EFAULT/ENOMEM/EIO if the pages cannot be had now: then the
    // writer's own stores fault them in, as without this hint.
    (void)::madvise(data() + start, off + len - start, MADV_POPULATE_WRITE);
#else
    (void)off;
    (void)len;
#endif
  }
  void start_writeback(std::size_t off, std::size_t len) noexcept override {
    if (!fd_ || off >= len_ || len == 0) return;
    len = std::min(len, len_ - off);
    // A hint: EINVAL/ESPIPE (a file system without it) change nothing, and a write error is
    // recorded against the file, so the msync that follows reports it.
    (void)::sync_file_range(fd_->get(), static_cast<off_t>(off), static_cast<off_t>(len), SYNC_FILE_RANGE_WRITE);
  }

 private:
  fs::path path_;
  void* addr_;
  std::size_t len_;
  std::shared_ptr<fd_owner> fd_;
};

class posix_file final : public file {
 public:
  posix_file(fs::path p, int fd) : path_(std::move(p)), fd_(std::make_shared<fd_owner>(fd)) {}
  const fs::path& path() const noexcept override { return path_; }
  std::uint64_t size() override {
    struct stat st {};
    if (::fstat(fd_->get(), &st) != 0) fail(path_, "fstat", errno);
    return static_cast<std::uint64_t>(st.st_size);
  }
  void write_at(const void* p, std::size_t n, std::uint64_t off) override {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::pwrite(fd_->get(), c, n, static_cast<off_t>(off));
      if (w < 0) {
        if (errno == EINTR) continue;
        fail(path_, "pwrite", errno);
      }
      if (w == 0) fail(path_, "pwrite", EIO, "wrote nothing");
      c += w;
      n -= static_cast<std::size_t>(w);
      off += static_cast<std::uint64_t>(w);
    }
  }
  std::size_t read_at(void* p, std::size_t n, std::uint64_t off) override {
    char* c = static_cast<char*>(p);
    std::size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_->get(), c + done, n - done, static_cast<off_t>(off + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        fail(path_, "pread", errno);
      }
      if (r == 0) break;
      done += static_cast<std::size_t>(r);
    }
    return done;
  }
  void allocate(std::uint64_t len) override {
    // posix_fallocate returns the error rather than setting errno.
    const int err = ::posix_fallocate(fd_->get(), 0, static_cast<off_t>(len));
    if (err != 0) fail(path_, "posix_fallocate", err, std::to_string(len) + " bytes");
  }
  void sync() override {
    if (::fdatasync(fd_->get()) != 0) fail(path_, "fdatasync", errno);
  }
  std::pair<std::uint64_t, std::uint64_t> data_range(std::uint64_t off) override {
    const std::uint64_t n = size();
    if (off >= n) return {n, n};
    const off_t data = ::lseek(fd_->get(), static_cast<off_t>(off), SEEK_DATA);
    if (data < 0) {
      // ENXIO: no data at or after off. Anything else (a file system without SEEK_DATA):
      // no hint, the whole rest may hold data.
      return errno == ENXIO ? std::pair{n, n} : std::pair{off, n};
    }
    const off_t hole = ::lseek(fd_->get(), data, SEEK_HOLE);
    const auto first = std::min<std::uint64_t>(static_cast<std::uint64_t>(data), n);
    if (hole < 0) return {first, n};
    return {first, std::clamp<std::uint64_t>(static_cast<std::uint64_t>(hole), first, n)};
  }
  std::shared_ptr<mapping> map(std::size_t len, bool writable) override {
    if (len == 0) fail(path_, "mmap", EINVAL, "empty mapping");
    const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
    void* addr = ::mmap(nullptr, len, prot, MAP_SHARED, fd_->get(), 0);
    if (addr == MAP_FAILED) fail(path_, "mmap", errno);
    // A mapping stays valid after its descriptor closes; a writable one keeps it open for
    // start_writeback().
    return std::make_shared<posix_mapping>(path_, addr, len, writable ? fd_ : nullptr);
  }

 private:
  fs::path path_;
  std::shared_ptr<fd_owner> fd_;
};

class posix_lock;

/// The directory locks this process holds, so that a child made by fork() lets go of the copies
/// it inherits. A flock belongs to the open file description, which a child shares: without
/// this, a pre-fork server's workers would keep the parent's directory locked after the parent
/// closed its map. Made once, never destroyed (a fork may come while statics are destroyed).
class held_locks {
 public:
  static held_locks& instance() {
    static held_locks* const h = new held_locks;
    return *h;
  }
  void add(posix_lock* l) {
    std::lock_guard<std::mutex> g(mu_);
    locks_.push_back(l);
  }
  void remove(posix_lock* l) noexcept {
    std::lock_guard<std::mutex> g(mu_);
    std::erase(locks_, l);
  }

 private:
  held_locks() { ::pthread_atfork(&before_fork, &in_parent, &in_child); }
  // No lock is added or removed while fork() copies the process: the child's list is whole.
  static void before_fork() { instance().mu_.lock(); }
  static void in_parent() { instance().mu_.unlock(); }
  static void in_child();

  std::mutex mu_;
  std::vector<posix_lock*> locks_;  // guarded by mu_
};

/// An flock on a directory's LOCK file, held through the descriptor: closing it (in every
/// process that has a copy, see held_locks) releases the lock.
class posix_lock final : public lock_handle {
 public:
  explicit posix_lock(int fd) : fd_(fd) { held_locks::instance().add(this); }
  posix_lock(const posix_lock&) = delete;
  posix_lock& operator=(const posix_lock&) = delete;
  ~posix_lock() override {
    held_locks::instance().remove(this);
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const noexcept { return fd_; }
  /// In a child after fork(): closes this process's copy of the descriptor, so the lock lives
  /// only as long as the parent keeps it. The child must not use the map it inherited.
  void release_inherited() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

inline void held_locks::in_child() {
  held_locks& h = instance();
  for (posix_lock* l : h.locks_) l->release_inherited();
  h.locks_.clear();
  h.mu_.unlock();
}

}  // namespace posix

class posix_file_system final : public file_system {
 public:
  std::unique_ptr<file> open(const fs::path& p, open_mode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case open_mode::read_only: flags |= O_RDONLY; break;
      case open_mode::read_write: flags |= O_RDWR; break;
      case open_mode::create_new: flags |= O_RDWR | O_CREAT | O_EXCL; break;
    }
    const int fd = ::open(p.c_str(), flags, 0644);
    if (fd < 0) posix::fail(p, "open", errno);
    return std::make_unique<posix::posix_file>(p, fd);
  }
  std::vector<fs::path> create_directories(const fs::path& dir) override {
    std::vector<fs::path> created;
    fs::path sofar;
    for (const auto& part : dir.lexically_normal()) {
      sofar /= part;
      if (part.empty() || part == "/") continue;
      if (::mkdir(sofar.c_str(), 0755) == 0) {
        created.push_back(sofar);
      } else if (errno != EEXIST) {
        posix::fail(sofar, "create directory", errno);
      }
    }
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) posix::fail(dir, "open directory", ENOTDIR);
    return created;
  }
  std::vector<std::string> list(const fs::path& dir) override {
    std::vector<std::string> names;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file(ec)) names.push_back(it->path().filename().string());
    }
    if (ec) posix::fail(dir, "list directory", ec.value());
    return names;
  }
  void rename(const fs::path& from, const fs::path& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) posix::fail(from, "rename", errno, "to " + to.string());
  }
  void remove(const fs::path& p) override {
    if (::remove(p.c_str()) != 0 && errno != ENOENT) posix::fail(p, "remove", errno);
  }
  void sync_directory(const fs::path& dir) override {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) posix::fail(dir, "open directory", errno);
    posix::fd_owner owner(fd);
    if (::fsync(fd) != 0) posix::fail(dir, "fsync directory", errno);
  }
  std::unique_ptr<lock_handle> lock_directory(const fs::path& dir) override {
    const fs::path p = dir / "LOCK";
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int err = errno;
      posix::fail(p, "open", err,
                  err == EACCES || err == EROFS
                      ? "a writable open needs to write here; open_map_read_only() reads a directory it cannot write"
                      : std::string{});
    }
    auto lock = std::make_unique<posix::posix_lock>(fd);  // owns fd from here on
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      posix::fail(dir, "lock", err,
                  err == EWOULDBLOCK ? "the directory is in use by another open map" : std::string{});
    }
    return lock;
  }
  std::unique_ptr<lock_handle> lock_directory_shared(const fs::path& dir) override {
    const fs::path p = dir / "LOCK";
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return std::make_unique<lock_handle>();
    if (fd < 0) posix::fail(p, "open", errno);
    auto lock = std::make_unique<posix::posix_lock>(fd);
    if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
      const int err = errno;
      posix::fail(dir, "lock (shared)", err,
                  err == EWOULDBLOCK ? "the directory is in use by a writable open map" : std::string{});
    }
    return lock;
  }
};

/// The process-wide POSIX file system.
inline std::shared_ptr<file_system> default_file_system() {
  static const std::shared_ptr<file_system> fs = std::make_shared<posix_file_system>();
  return fs;
}

}  // namespace leftright::detail::storage
