// SPDX-License-Identifier: Apache-2.0
// leftright tests: a simulated file system under the storage layer's file_system interface.
//
// Deterministic and seeded. Every file has two contents: what is *durable* (on the platter) and
// what is *current* (the page cache: what reads and mappings see). Writes, allocations and writes
// through mappings change the current content only; file sync (fdatasync) and mapping sync
// (msync) copy current to durable. Names work the same way: creates, renames and removes change
// the current namespace at once and become durable only when their directory is synced (or, as
// in a journaling file system, in the order they were made: a crash keeps a prefix of them).
//
// crash() returns the post-crash image as a new file system and kills this one (every later call
// throws, as if the process were gone):
//   - each page (4096 bytes) whose current content differs from its durable one is kept, dropped
//     or torn at a 512-byte sector boundary (each sector kept or dropped);
//   - a file whose size changed since its last sync keeps either size;
//   - a prefix of the namespace operations not yet made durable by a directory sync survives.
// crash_at(n) does the same at the n-th file-system call from now, inside that call, so a crash
// can land in the middle of a publish, a checkpoint, a roll or a recovery.
//
// Errors: inject(call, nth, fault) makes the nth call of a kind fail with EIO, ENOSPC or EFBIG,
// or (writes) write part of the bytes and then fail. A failed sync loses the pages it was
// writing, as Linux does: they are marked clean without reaching the disk, and a later sync does
// not write them again unless they change. A "lying disk" (set_lying) acknowledges every sync
// and makes nothing durable: only for tests that check a checker.
#pragma once

#include <leftright/detail/storage/fs.hpp>
#include <leftright/storage_error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sim {

namespace st = leftright::detail::storage;
namespace fs = std::filesystem;

/// The kinds of call that errors can be injected into.
enum class call { write, sync, msync, fallocate, rename, dir_sync, create };
enum class fault { eio, enospc, efbig, short_write };

/// What a crash does with what was not durable.
enum class crash_mode {
  random,    ///< each dirty page kept, dropped or torn; each size and name change kept or not
  drop_all,  ///< nothing that was not synced survives
  keep_all,  ///< everything written survives (a process crash: the page cache outlives it)
};

inline const char* name(call c) {
  switch (c) {
    case call::write: return "write";
    case call::sync: return "fdatasync";
    case call::msync: return "msync";
    case call::fallocate: return "fallocate";
    case call::rename: return "rename";
    case call::dir_sync: return "fsync directory";
    case call::create: return "create";
  }
  return "?";
}

class file_system;

namespace detail {

constexpr std::size_t page = 4096;
constexpr std::size_t sector = 512;

// Byte ranges, a page or a whole file at a time (memcmp and memcpy: a byte-at-a-time loop made
// the crash-point tests' images cost more than the recoveries they check, under ASan at -O0).
// A file's bytes past the end of its vector read as zeros.

/// The part of [a, b) that v holds.
inline std::span<const std::byte> held(const std::vector<std::byte>& v, std::size_t a, std::size_t b) {
  a = std::min(a, v.size());
  return {v.data() + a, std::min(b, v.size()) - a};
}
inline bool all_zero(std::span<const std::byte> s) {
  static constexpr std::byte zeros[page] = {};
  for (std::size_t i = 0; i < s.size(); i += page) {
    if (std::memcmp(s.data() + i, zeros, std::min(page, s.size() - i)) != 0) return false;
  }
  return true;
}
/// to[a, b) = from's bytes [a, b), zeros where from ends first; to holds at least b bytes.
inline void copy_range(std::vector<std::byte>& to, const std::vector<std::byte>& from, std::size_t a, std::size_t b) {
  const std::span<const std::byte> h = held(from, a, b);
  if (!h.empty()) std::memcpy(to.data() + a, h.data(), h.size());
  std::fill(to.begin() + static_cast<std::ptrdiff_t>(a + h.size()), to.begin() + static_cast<std::ptrdiff_t>(b),
            std::byte{0});
}

struct inode {
  std::vector<std::byte> cur;  ///< the page cache; its size is the file's size
  std::vector<std::byte> dur;  ///< durable bytes (may run past dur_size: data synced by msync)
  std::size_t dur_size = 0;    ///< the durable file size
  int maps = 0;                ///< live mappings: cur must not reallocate
  /// Pages whose writeback failed, with the content they had: a later sync skips them while
  /// they still hold that content (the kernel marked them clean).
  std::map<std::size_t, std::vector<std::byte>> lost;

  bool page_dirty(std::size_t p) const {
    const std::span<const std::byte> c = held(cur, p * page, (p + 1) * page), d = held(dur, p * page, (p + 1) * page);
    const std::size_t both = std::min(c.size(), d.size());
    if (both != 0 && std::memcmp(c.data(), d.data(), both) != 0) return true;
    return !all_zero(c.subspan(both)) || !all_zero(d.subspan(both));
  }
  std::vector<std::byte> cur_page(std::size_t p) const {
    std::vector<std::byte> b(page);  // zeros past the file's end
    const std::span<const std::byte> h = held(cur, p * page, (p + 1) * page);
    if (!h.empty()) std::memcpy(b.data(), h.data(), h.size());
    return b;
  }
  /// Copies current bytes [from, to) to durable, except pages lost to a failed writeback.
  void write_back(std::size_t from, std::size_t to) {
    to = std::min(to, cur.size());
    if (from >= to) return;
    if (dur.size() < to) dur.resize(to);
    for (std::size_t p = from / page; p * page < to; ++p) {
      const std::size_t a = std::max(from, p * page), b = std::min(to, (p + 1) * page);
      if (auto it = lost.find(p); it != lost.end()) {
        if (it->second == cur_page(p)) continue;  // marked clean, never written
        lost.erase(it);
      }
      std::copy(cur.begin() + static_cast<std::ptrdiff_t>(a), cur.begin() + static_cast<std::ptrdiff_t>(b),
                dur.begin() + static_cast<std::ptrdiff_t>(a));
    }
  }
  /// A failed writeback of [from, to): its dirty pages are marked clean without reaching disk.
  void lose(std::size_t from, std::size_t to) {
    to = std::min(to, cur.size());
    for (std::size_t p = from / page; p * page < to; ++p) {
      if (page_dirty(p)) lost[p] = cur_page(p);
    }
  }
};

struct entry {
  bool dir = false;
  std::shared_ptr<inode> node;  ///< files only
};

enum class ns_kind { create, mkdir, rename, remove };
struct ns_op {
  ns_kind kind;
  std::string a, b;  ///< path; rename: from a to b
  entry e;           ///< create, mkdir
  bool committed = false;
};

inline std::string key(const fs::path& p) { return p.lexically_normal().string(); }
inline std::string parent(const std::string& p) { return fs::path(p).parent_path().string(); }

inline void apply(std::map<std::string, entry>& ns, const ns_op& op) {
  switch (op.kind) {
    case ns_kind::create:
    case ns_kind::mkdir: ns[op.a] = op.e; break;
    case ns_kind::remove: ns.erase(op.a); break;
    case ns_kind::rename:
      if (auto it = ns.find(op.a); it != ns.end()) {
        entry e = it->second;
        ns.erase(it);
        ns[op.b] = e;
        if (e.dir) {  // a directory's entries go with it
          const std::string from = op.a + "/";
          for (auto c = ns.lower_bound(from); c != ns.end() && c->first.starts_with(from);) {
            ns[op.b + "/" + c->first.substr(from.size())] = c->second;
            c = ns.erase(c);
          }
        }
      }
      break;
  }
}

struct injected {
  call kind;
  std::uint64_t nth;
  fault f;
};

/// Everything a file system instance shares with its files, mappings and locks.
struct state {
  std::mutex mu;
  bool dead = false;
  bool lying = false;
  std::map<std::string, entry> cur_ns, dur_ns;
  std::vector<ns_op> pending;  ///< namespace operations not yet durable, in order
  std::set<std::string> locked;
  std::map<std::string, int> shared_locked;  ///< holders of a shared lock, by directory
  std::uint64_t calls = 0;
  std::optional<std::uint64_t> crash_at;
  crash_mode crash_how = crash_mode::random;
  std::uint64_t crash_seed = 0;
  std::shared_ptr<file_system> image;  ///< what crash_at captured
  std::map<call, std::uint64_t> counts;
  std::vector<injected> faults;
  std::uint64_t faults_fired = 0;
};

}  // namespace detail

class file_system final : public st::file_system, public std::enable_shared_from_this<file_system> {
 public:
  file_system() : s_(std::make_shared<detail::state>()) {}

  // ---- Test controls. ----

  /// The post-crash image as a fresh file system; this one is dead from now on.
  std::shared_ptr<file_system> crash(std::uint64_t seed, crash_mode how = crash_mode::random) {
    std::lock_guard<std::mutex> lock(s_->mu);
    return crash_locked(seed, how);
  }
  /// An independent deep copy (files, names, what is durable and what is not): one image can
  /// be crashed in many ways. Mappings, locks and armed crashes are not copied.
  std::shared_ptr<file_system> copy() {
    std::lock_guard<std::mutex> lock(s_->mu);
    auto out = std::make_shared<file_system>();
    std::map<const detail::inode*, std::shared_ptr<detail::inode>> nodes;
    auto dup = [&](const detail::entry& e) {
      if (e.dir) return e;
      auto& n = nodes[e.node.get()];
      if (!n) {
        n = std::make_shared<detail::inode>(*e.node);
        n->maps = 0;
      }
      return detail::entry{false, n};
    };
    for (const auto& [k, e] : s_->cur_ns) out->s_->cur_ns[k] = dup(e);
    for (const auto& [k, e] : s_->dur_ns) out->s_->dur_ns[k] = dup(e);
    for (const auto& op : s_->pending) {
      out->s_->pending.push_back(op);
      if (!op.e.dir && op.e.node) out->s_->pending.back().e = dup(op.e);
    }
    out->s_->lying = s_->lying;
    return out;
  }
  /// Crashes inside the n-th call from now (n >= 1): the image is taken before that call does
  /// anything, and the call and all later ones fail. image() returns it.
  void crash_at(std::uint64_t n, std::uint64_t seed, crash_mode how = crash_mode::random) {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->crash_at = s_->calls + n;
    s_->crash_seed = seed;
    s_->crash_how = how;
  }
  /// The image crash_at() took; null if that call has not been reached.
  std::shared_ptr<file_system> image() {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->image;
  }
  bool dead() {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->dead;
  }
  /// File-system calls made so far (every member of the interface, files' and mappings' too).
  std::uint64_t calls() {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->calls;
  }
  /// Makes the nth call (n >= 1, counted from now) of kind c fail with f.
  void inject(call c, std::uint64_t nth, fault f) {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->faults.push_back({c, s_->counts[c] + nth, f});
  }
  /// How many injected faults have fired.
  std::uint64_t faults_fired() {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->faults_fired;
  }
  /// Syncs succeed and make nothing durable.
  void set_lying(bool on) {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->lying = on;
  }

  // Inspection (tests of the simulator itself).
  bool exists(const fs::path& p) {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->cur_ns.count(detail::key(p)) != 0;
  }
  std::vector<std::byte> contents(const fs::path& p) {
    std::lock_guard<std::mutex> lock(s_->mu);
    auto it = s_->cur_ns.find(detail::key(p));
    if (it == s_->cur_ns.end() || it->second.dir) throw std::logic_error("sim: no file " + p.string());
    return it->second.node->cur;
  }

  // ---- st::file_system. ----

  std::unique_ptr<st::file> open(const fs::path& p, st::open_mode mode) override;
  std::vector<fs::path> create_directories(const fs::path& dir) override {
    std::vector<fs::path> created;
    std::unique_lock<std::mutex> lock(s_->mu);
    enter(lock, dir, "create directory");
    fs::path sofar;
    for (const auto& part : fs::path(detail::key(dir))) {
      sofar /= part;
      const std::string k = detail::key(sofar);
      if (k == "/" || k.empty()) continue;
      auto it = s_->cur_ns.find(k);
      if (it == s_->cur_ns.end()) {
        ns(detail::ns_op{detail::ns_kind::mkdir, k, {}, detail::entry{true, nullptr}});
        created.push_back(k);
      } else if (!it->second.dir) {
        throw leftright::storage_error(dir, "create directory", ENOTDIR);
      }
    }
    return created;
  }
  std::vector<std::string> list(const fs::path& dir) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    enter(lock, dir, "list directory");
    const std::string d = detail::key(dir);
    if (!is_dir(d)) throw leftright::storage_error(dir, "list directory", ENOENT);
    std::vector<std::string> names;
    for (const auto& [k, e] : s_->cur_ns) {
      if (!e.dir && detail::parent(k) == d) names.push_back(fs::path(k).filename().string());
    }
    return names;
  }
  void rename(const fs::path& from, const fs::path& to) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    enter(lock, from, "rename");
    fire(call::rename, from, "rename");
    const std::string a = detail::key(from), b = detail::key(to);
    auto it = s_->cur_ns.find(a);
    if (it == s_->cur_ns.end()) throw leftright::storage_error(from, "rename", ENOENT, "to " + to.string());
    if (!is_dir(detail::parent(b))) throw leftright::storage_error(from, "rename", ENOENT, "to " + to.string());
    if (it->second.dir && s_->cur_ns.count(b) != 0) {  // as POSIX, but refusing an empty target too
      throw leftright::storage_error(from, "rename", EEXIST, "to " + to.string());
    }
    ns(detail::ns_op{detail::ns_kind::rename, a, b, {}});
  }
  void remove(const fs::path& p) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    enter(lock, p, "unlink");
    const std::string k = detail::key(p);
    if (s_->cur_ns.count(k) == 0) return;  // as the POSIX one: removing nothing is fine
    ns(detail::ns_op{detail::ns_kind::remove, k, {}, {}});
  }
  void sync_directory(const fs::path& dir) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    enter(lock, dir, "fsync directory");
    const std::string d = detail::key(dir);
    if (!is_dir(d)) throw leftright::storage_error(dir, "open directory", ENOENT);
    fire(call::dir_sync, dir, "fsync directory");
    if (s_->lying) return;
    for (auto& op : s_->pending) {
      if (detail::parent(op.a) == d || (!op.b.empty() && detail::parent(op.b) == d)) op.committed = true;
    }
    // Committed operations at the head are durable for good.
    std::size_t n = 0;
    while (n < s_->pending.size() && s_->pending[n].committed) detail::apply(s_->dur_ns, s_->pending[n++]);
    s_->pending.erase(s_->pending.begin(), s_->pending.begin() + static_cast<std::ptrdiff_t>(n));
  }
  std::unique_ptr<st::lock_handle> lock_directory(const fs::path& dir) override;
  std::unique_ptr<st::lock_handle> lock_directory_shared(const fs::path& dir) override;

 private:
  friend class sim_file;
  friend class sim_mapping;
  friend class sim_lock;

  /// Counts a call; crashes here if asked to; throws if the file system is dead.
  void enter(std::unique_lock<std::mutex>&, const fs::path& p, const char* op) { enter_state(*s_, p, op); }
  static void enter_state(detail::state& s, const fs::path& p, const char* op) {
    if (s.dead) throw leftright::storage_error(p, op, EIO, "simulated crash: the file system is gone");
    ++s.calls;
    if (s.crash_at && s.calls >= *s.crash_at) {
      s.image = crash_state(s, s.crash_seed, s.crash_how);
      throw leftright::storage_error(p, op, EIO, "simulated crash");
    }
  }
  /// Throws an injected fault if this call is the one.
  static void fire_state(detail::state& s, call c, const fs::path& p, const char* op) {
    const std::uint64_t n = ++s.counts[c];
    for (const auto& f : s.faults) {
      if (f.kind != c || f.nth != n || f.f == fault::short_write) continue;
      ++s.faults_fired;
      const int err = f.f == fault::eio ? EIO : f.f == fault::enospc ? ENOSPC : EFBIG;
      throw leftright::storage_error(p, op, err, "injected");
    }
  }
  /// For writes: how many bytes to write before failing (nullopt: no fault).
  static std::optional<int> short_write_due(detail::state& s) {
    const std::uint64_t n = ++s.counts[call::write];
    for (const auto& f : s.faults) {
      if (f.kind != call::write || f.nth != n) continue;
      ++s.faults_fired;
      if (f.f == fault::short_write) return 0;
      return f.f == fault::eio ? EIO : f.f == fault::enospc ? ENOSPC : EFBIG;
    }
    return std::nullopt;
  }
  void fire(call c, const fs::path& p, const char* op) { fire_state(*s_, c, p, op); }

  bool is_dir(const std::string& d) const {
    if (d == "/" || d.empty()) return true;
    auto it = s_->cur_ns.find(d);
    return it != s_->cur_ns.end() && it->second.dir;
  }
  void ns(detail::ns_op op) {
    detail::apply(s_->cur_ns, op);
    s_->pending.push_back(std::move(op));
  }

  std::shared_ptr<file_system> crash_locked(std::uint64_t seed, crash_mode how) {
    if (s_->dead) throw std::logic_error("sim: crash of a file system that is already gone");
    return crash_state(*s_, seed, how);
  }
  static std::shared_ptr<file_system> crash_state(detail::state& s, std::uint64_t seed, crash_mode how);

  std::shared_ptr<detail::state> s_;
};

class sim_mapping final : public st::mapping {
 public:
  sim_mapping(std::shared_ptr<detail::state> s, std::shared_ptr<detail::inode> n, fs::path p, std::size_t len)
      : s_(std::move(s)), n_(std::move(n)), path_(std::move(p)), len_(len) {
    data_ = n_->cur.data();
  }
  ~sim_mapping() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    --n_->maps;
  }
  std::byte* data() noexcept override { return data_; }
  std::size_t size() const noexcept override { return len_; }
  void sync(std::size_t off, std::size_t len) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "msync");
    if (off + len > len_) throw std::logic_error("sim: msync past the end of a mapping");
    try {
      file_system::fire_state(*s_, call::msync, path_, "msync");
    } catch (...) {
      n_->lose(off, off + len);
      throw;
    }
    // Only the bytes asked for: another thread may be writing the rest of the page (the
    // syncer thread of durability::async); a real msync would write whatever it held, which
    // a crash covers anyway by keeping or dropping the rest of the page.
    if (!s_->lying) n_->write_back(off, off + len);
  }
  /// The worst case of a hint that promises nothing: the bytes reach the disk at once, so a
  /// crash keeps them even if they are changed again before any sync. Not a crash point (it
  /// cannot fail), and no injected fault fires here: errors belong to the sync that follows.
  void start_writeback(std::size_t off, std::size_t len) noexcept override {
    std::lock_guard<std::mutex> lock(s_->mu);
    if (s_->dead || s_->lying || off >= len_) return;
    n_->write_back(off, std::min(off + len, len_));
  }
  // advise(): the base class's no-op (a page-cache hint; the simulation has no read-ahead).

 private:
  std::shared_ptr<detail::state> s_;
  std::shared_ptr<detail::inode> n_;
  fs::path path_;
  std::size_t len_;
  std::byte* data_;
};

class sim_file final : public st::file {
 public:
  sim_file(std::shared_ptr<detail::state> s, std::shared_ptr<detail::inode> n, fs::path p, bool writable)
      : s_(std::move(s)), n_(std::move(n)), path_(std::move(p)), writable_(writable) {}
  const fs::path& path() const noexcept override { return path_; }
  std::uint64_t size() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "fstat");
    return n_->cur.size();
  }
  void write_at(const void* p, std::size_t n, std::uint64_t off) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "pwrite");
    if (!writable_) throw leftright::storage_error(path_, "pwrite", EBADF);
    const auto due = file_system::short_write_due(*s_);
    std::size_t len = n;
    if (due && *due == 0) len = n / 2;  // a short write, then the disk is full
    grow(static_cast<std::size_t>(off) + len);
    std::memcpy(n_->cur.data() + off, p, len);
    if (due) throw leftright::storage_error(path_, "pwrite", *due == 0 ? ENOSPC : *due, "injected");
  }
  std::size_t read_at(void* p, std::size_t n, std::uint64_t off) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "pread");
    if (off >= n_->cur.size()) return 0;
    const std::size_t k = std::min<std::size_t>(n, n_->cur.size() - static_cast<std::size_t>(off));
    std::memcpy(p, n_->cur.data() + off, k);
    return k;
  }
  void allocate(std::uint64_t len) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "posix_fallocate");
    if (!writable_) throw leftright::storage_error(path_, "posix_fallocate", EBADF);
    file_system::fire_state(*s_, call::fallocate, path_, "posix_fallocate");
    grow(static_cast<std::size_t>(len));
  }
  void sync() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "fdatasync");
    try {
      file_system::fire_state(*s_, call::sync, path_, "fdatasync");
    } catch (...) {
      n_->lose(0, n_->cur.size());
      throw;
    }
    if (s_->lying) return;
    n_->write_back(0, n_->cur.size());
    n_->dur_size = n_->cur.size();
  }
  /// As SEEK_DATA/SEEK_HOLE over a file whose all-zero pages are holes: the first run of pages
  /// at or after off holding a non-zero byte (so callers that skip zeros this way are tested).
  std::pair<std::uint64_t, std::uint64_t> data_range(std::uint64_t off) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "lseek");
    const std::size_t n = n_->cur.size();
    if (off >= n) return {n, n};
    const auto zero_page = [&](std::size_t p) {
      return detail::all_zero(detail::held(n_->cur, p * detail::page, (p + 1) * detail::page));
    };
    std::size_t p = static_cast<std::size_t>(off) / detail::page;
    while (p * detail::page < n && zero_page(p)) ++p;
    if (p * detail::page >= n) return {n, n};
    const std::size_t first = std::max<std::size_t>(static_cast<std::size_t>(off), p * detail::page);
    while (p * detail::page < n && !zero_page(p)) ++p;
    return {first, std::min(n, p * detail::page)};
  }
  std::shared_ptr<st::mapping> map(std::size_t len, bool writable) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    file_system::enter_state(*s_, path_, "mmap");
    if (len == 0) throw leftright::storage_error(path_, "mmap", EINVAL, "empty mapping");
    if (writable && !writable_) throw leftright::storage_error(path_, "mmap", EACCES);
    // Touching a mapping past the end of its file is a SIGBUS; the storage layer must never
    // map more than the file holds.
    if (len > n_->cur.size()) throw std::logic_error("sim: mapping past the end of " + path_.string());
    ++n_->maps;
    return std::make_shared<sim_mapping>(s_, n_, path_, len);
  }

 private:
  void grow(std::size_t to) {
    if (to <= n_->cur.size()) return;
    if (n_->maps > 0 && to > n_->cur.capacity()) {
      throw std::logic_error("sim: growing a mapped file is not modelled (" + path_.string() + ")");
    }
    n_->cur.resize(to);
  }

  std::shared_ptr<detail::state> s_;
  std::shared_ptr<detail::inode> n_;
  fs::path path_;
  bool writable_;
};

class sim_lock final : public st::lock_handle {
 public:
  sim_lock(std::shared_ptr<detail::state> s, std::string dir, bool shared = false)
      : s_(std::move(s)), dir_(std::move(dir)), shared_(shared) {}
  ~sim_lock() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    if (!shared_) {
      s_->locked.erase(dir_);
    } else if (--s_->shared_locked[dir_] == 0) {
      s_->shared_locked.erase(dir_);
    }
  }

 private:
  std::shared_ptr<detail::state> s_;
  std::string dir_;
  bool shared_;
};

inline std::unique_ptr<st::file> file_system::open(const fs::path& p, st::open_mode mode) {
  std::unique_lock<std::mutex> lock(s_->mu);
  enter(lock, p, "open");
  const std::string k = detail::key(p);
  if (!is_dir(detail::parent(k))) throw leftright::storage_error(p, "open", ENOENT);
  auto it = s_->cur_ns.find(k);
  if (mode == st::open_mode::create_new) {
    if (it != s_->cur_ns.end()) throw leftright::storage_error(p, "open", EEXIST);
    fire(call::create, p, "open");
    auto node = std::make_shared<detail::inode>();
    ns(detail::ns_op{detail::ns_kind::create, k, {}, detail::entry{false, node}});
    return std::make_unique<sim_file>(s_, node, p, true);
  }
  if (it == s_->cur_ns.end()) throw leftright::storage_error(p, "open", ENOENT);
  if (it->second.dir) throw leftright::storage_error(p, "open", EISDIR);
  return std::make_unique<sim_file>(s_, it->second.node, p, mode == st::open_mode::read_write);
}

inline std::unique_ptr<st::lock_handle> file_system::lock_directory(const fs::path& dir) {
  std::unique_lock<std::mutex> lock(s_->mu);
  enter(lock, dir, "lock");
  const std::string d = detail::key(dir);
  if (!is_dir(d)) throw leftright::storage_error(dir, "open", ENOENT);
  if (s_->shared_locked.count(d) != 0 || !s_->locked.insert(d).second) {
    throw leftright::storage_error(dir, "lock", EWOULDBLOCK, "the directory is in use by another open map");
  }
  return std::make_unique<sim_lock>(s_, d);
}

inline std::unique_ptr<st::lock_handle> file_system::lock_directory_shared(const fs::path& dir) {
  std::unique_lock<std::mutex> lock(s_->mu);
  enter(lock, dir, "lock (shared)");
  const std::string d = detail::key(dir);
  if (!is_dir(d)) throw leftright::storage_error(dir, "open", ENOENT);
  if (s_->locked.count(d) != 0) {
    throw leftright::storage_error(dir, "lock (shared)", EWOULDBLOCK, "the directory is in use by a writable open map");
  }
  ++s_->shared_locked[d];
  return std::make_unique<sim_lock>(s_, d, true);
}

inline std::shared_ptr<file_system> file_system::crash_state(detail::state& s, std::uint64_t seed, crash_mode how) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };

  // Names: the durable namespace, the committed operations, and a prefix of the rest.
  std::size_t uncommitted = 0;
  for (const auto& op : s.pending) uncommitted += op.committed ? 0 : 1;
  std::size_t keep = how == crash_mode::drop_all   ? 0
                     : how == crash_mode::keep_all ? uncommitted
                                                   : static_cast<std::size_t>(rng() % (uncommitted + 1));
  std::map<std::string, detail::entry> names = s.dur_ns;
  for (const auto& op : s.pending) {
    if (op.committed) {
      detail::apply(names, op);
    } else if (keep > 0) {
      --keep;
      detail::apply(names, op);
    }
  }

  // A name whose directory did not survive goes with it (parents sort before their children).
  for (auto it = names.begin(); it != names.end();) {
    const std::string d = detail::parent(it->first);
    const bool ok = d == "/" || d.empty() || (names.count(d) != 0 && names.at(d).dir);
    it = ok ? std::next(it) : names.erase(it);
  }

  // Contents: one image per inode, shared by every name that refers to it.
  auto out = std::make_shared<file_system>();
  std::map<const detail::inode*, std::shared_ptr<detail::inode>> images;
  for (auto& [k, e] : names) {
    detail::entry ne{e.dir, nullptr};
    if (!e.dir) {
      auto& img = images[e.node.get()];
      if (!img) {
        const detail::inode& n = *e.node;
        std::size_t size = n.dur_size;
        if (n.cur.size() != n.dur_size) {
          if (how == crash_mode::keep_all || (how == crash_mode::random && pick(2) == 0)) size = n.cur.size();
        }
        img = std::make_shared<detail::inode>();
        img->cur.resize(size);
        detail::copy_range(img->cur, n.dur, 0, size);
        for (std::size_t p = 0; p * detail::page < size; ++p) {
          if (!n.page_dirty(p)) continue;
          if (n.lost.count(p) && n.lost.at(p) == n.cur_page(p)) continue;  // its writeback failed
          const int choice = how == crash_mode::keep_all ? 0 : how == crash_mode::drop_all ? 1 : pick(3);
          if (choice == 1) continue;  // dropped
          for (std::size_t sec = p * detail::page; sec < (p + 1) * detail::page && sec < size; sec += detail::sector) {
            if (choice == 2 && pick(2) == 0) continue;  // torn: this sector did not make it
            detail::copy_range(img->cur, n.cur, sec, std::min(sec + detail::sector, size));
          }
        }
        img->dur = img->cur;
        img->dur_size = size;
      }
      ne.node = img;
    }
    out->s_->cur_ns[k] = ne;
    out->s_->dur_ns[k] = ne;
  }
  s.dead = true;
  return out;
}

}  // namespace sim
