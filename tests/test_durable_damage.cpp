// SPDX-License-Identifier: Apache-2.0
// Damaged files and hostile environments for the durable map (DESIGN.md section 3): whatever is
// done to the files, open_map() either recovers the state after some prefix of the published
// batches, exactly, or throws storage_error. Never a crash, a signal, another exception type, or
// content that is no prefix.
//
// The base: a map of <uint64_t, std::string> written in durability::sync with 8 KiB segments,
// 290 batches, checkpoints after batches 100 and 200 (so: snap-...c8.dat, then a few segments
// holding records 201..290). Every test works on a copy of it.
//   - random trials (seeded, LEFTRIGHT_SEED replays): truncate a file, flip bits (a segment
//     header, the last record, any record, the used part of a segment, the snapshot header, data
//     or trailer, anywhere), zero a range, append bytes, remove a file, or two of these; then open
//     IN A CHILD PROCESS, which exits 0 (opened, content == the model after the recovered version)
//     or 1 (storage_error; its what() goes to stderr). Anything else fails the test.
//   - deterministic cases: (a) a damaged last record is a torn tail: cut, the rest recovered,
//     and later recoveries stack; (b) a damaged middle record of a synced log is refused, naming
//     the file and offset; (c) a truncated snapshot is refused, naming it; (d) bytes appended past
//     the end change nothing; (e) other key or value types are refused; (f) one open map per
//     directory, in this process and from another one; (g) a path that is a regular file, or an
//     unwritable directory (as root: in a child that becomes nobody), is refused.
//   - disk full without root: a child sets RLIMIT_FSIZE to 1 MiB (SIGXFSZ ignored, so writes
//     fail with EFBIG instead of killing it), opens a sync map with 256 KiB segments and publishes
//     batches of ~4 KiB values until something throws: a storage_error, after which failed() is
//     true, publish() and checkpoint() throw storage_error, and readers show exactly the last
//     batch whose publish() returned; reopened by the parent without the limit, the map holds
//     exactly those batches. Three ways to hit the limit: a snapshot (explicit checkpoint()), a
//     record too large for any segment (posix_fallocate), and an automatic checkpoint inside
//     publish() (that publish() returns, its batch is published; the writer is failed() and the
//     next call throws).
//   - a damaged header of the last segment, with records after it, must be refused.
//
// Children never return into Catch2: they leave through _exit() (no Catch2 macros in them).
// No atomics in this file.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/test_support.hpp"

using lrtest::temp_dir;

namespace {

namespace fs = std::filesystem;
using leftright::durability;
using leftright::storage_error;

// ---------------------------------------------------------------------------------------------
// Files and directories.

/// A directory from mkdtemp, removed with everything in it when destroyed. (Forked children

std::vector<unsigned char> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void write_bytes(const fs::path& p, const std::vector<unsigned char>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}
void xor_byte(const fs::path& p, std::uint64_t off, unsigned char mask) {
  auto b = read_bytes(p);
  if (off >= b.size()) throw std::runtime_error("xor_byte past the end of " + p.string());
  b[off] ^= mask;
  write_bytes(p, b);
}
void append_bytes(const fs::path& p, const std::vector<unsigned char>& extra) {
  std::ofstream out(p, std::ios::binary | std::ios::app);
  out.write(reinterpret_cast<const char*>(extra.data()), static_cast<std::streamsize>(extra.size()));
  if (!out) throw std::runtime_error("cannot append to " + p.string());
}

std::uint32_t le32(const std::vector<unsigned char>& b, std::size_t off) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | b[off + static_cast<std::size_t>(i)];
  return v;
}
std::uint64_t le64(const std::vector<unsigned char>& b, std::size_t off) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | b[off + static_cast<std::size_t>(i)];
  return v;
}

/// The file names in dir with the given prefix, sorted (hex names sort by number).
std::vector<std::string> names_in(const fs::path& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}
std::vector<std::string> all_names(const fs::path& dir) { return names_in(dir, ""); }

/// One log record as found by walking a segment by the format (format.hpp), independently of
/// the library's reader: records from offset 4096, each 8-aligned, until a zero header.
struct record_info {
  std::uint64_t offset;
  std::uint32_t len;  // payload bytes
  std::uint64_t seq;
};
constexpr std::size_t header_page = 4096;
constexpr std::size_t record_header = 32;
std::vector<record_info> records_of(const fs::path& segment) {
  const auto b = read_bytes(segment);
  std::vector<record_info> out;
  std::size_t off = header_page;
  while (off + record_header <= b.size()) {
    const std::uint32_t crc = le32(b, off);
    const std::uint32_t len = le32(b, off + 4);
    if (crc == 0 && len == 0) break;
    if (le32(b, off + 8) != 1) break;  // the successor record (type 2) ends a segment's records
    out.push_back({off, len, le64(b, off + 16)});
    off += (record_header + len + 7) & ~std::size_t{7};
  }
  return out;
}
/// Where the records of a segment end (the first byte after the last one).
std::uint64_t used_end(const fs::path& segment) {
  const auto r = records_of(segment);
  return r.empty() ? header_page : r.back().offset + ((record_header + r.back().len + 7) & ~std::size_t{7});
}

// ---------------------------------------------------------------------------------------------
// The batches and the model.

using key_type = std::uint64_t;
using value_type = std::string;

key_type batch_key(std::uint64_t b, int i) { return (b * 13 + static_cast<std::uint64_t>(i) * 29) % 200; }
value_type batch_value(std::uint64_t b, int i) {
  return "b" + std::to_string(b) + "." + std::to_string(i) + std::string((b * 7 + static_cast<std::uint64_t>(i)) % 23, 'x');
}

/// Queues batch b on sink (a durable_writer or the model), the same operations in the same order.
template <class Sink>
void make_batch(std::uint64_t b, Sink& sink) {
  for (int i = 0; i < 6; ++i) sink.insert_or_assign(batch_key(b, i), batch_value(b, i));
  if (b > 3) sink.erase(batch_key(b - 3, static_cast<int>(b % 6)));
  if (b % 9 == 4) {
    sink.erase_if([m = b % 7](const key_type& k, const value_type& v) { return (k + v.size()) % 7 == m; });
  }
  if (b % 17 == 0) {
    sink.insert(batch_key(b, 0), value_type("not inserted: the key is present"));
    sink.insert(1000 + b, batch_value(b, 9));
  }
}

template <class V>
using basic_model = lrtest::model_map<key_type, V>;
using model = basic_model<value_type>;

/// The model after exactly v batches of make_batch.
model model_at(std::uint64_t v) {
  model m;
  while (m.version < v) make_batch(++m.version, m);
  return m;
}

leftright::durable_options options_for(const fs::path& dir, durability mode = durability::sync) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = mode;
  o.segment_size = 8 << 10;  // the minimum: ~17 records per segment
  o.checkpoint_bytes = 0;
  return o;
}

using writer_t = leftright::durable_writer<key_type, value_type>;

/// Writes batches from+1 .. to, checkpointing after every batch that is a multiple of
/// checkpoint_every (0: never).
void write_batches(writer_t& w, std::uint64_t to, std::uint64_t checkpoint_every) {
  for (std::uint64_t b = w.version() + 1; b <= to; ++b) {
    make_batch(b, w);
    if (w.publish() != b) throw std::runtime_error("unexpected version");
    if (checkpoint_every != 0 && b % checkpoint_every == 0) w.checkpoint();
  }
}

constexpr std::uint64_t base_batches = 290;
constexpr std::uint64_t base_snapshot = 200;

/// The base directory, built once per process (sync mode, two checkpoints, a few segments).
struct base_fixture {
  temp_dir tmp{"damage-base"};
  fs::path dir = tmp.path() / "map";
  std::string snapshot;               // its file name
  std::vector<std::string> segments;  // file names, oldest first

  base_fixture() {
    {
      auto [w, r] = leftright::open_map<key_type, value_type>(options_for(dir));
      write_batches(w, base_batches, 100);
    }
    const auto snaps = names_in(dir, "snap-");
    segments = names_in(dir, "wal-");
    if (snaps.size() != 1 || segments.size() < 3) {
      throw std::runtime_error("unexpected base layout: " + std::to_string(snaps.size()) + " snapshots, " +
                               std::to_string(segments.size()) + " segments");
    }
    snapshot = snaps.front();
    if (records_of(dir / segments.back()).size() < 3) throw std::runtime_error("last segment too short");
  }
};
const base_fixture& base() {
  static base_fixture b;
  return b;
}

/// A fresh copy of the base directory.
struct base_copy {
  temp_dir tmp{"damage"};
  fs::path dir = tmp.path() / "map";
  base_copy() { fs::copy(base().dir, dir, fs::copy_options::recursive); }
  fs::path segment(std::size_t i) const { return dir / base().segments.at(i); }
  fs::path last_segment() const { return dir / base().segments.back(); }
  fs::path snapshot() const { return dir / base().snapshot; }
};

// ---------------------------------------------------------------------------------------------
// Children.

struct child_result {
  int status = 0;
  std::string out;  // what the child wrote to the pipe
  bool exited(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
  std::string describe() const {
    std::ostringstream s;
    if (WIFEXITED(status)) {
      s << "exit code " << WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      s << "killed by signal " << WTERMSIG(status) << " (" << ::strsignal(WTERMSIG(status)) << ")";
    } else {
      s << "status " << status;
    }
    s << "; said: " << out;
    return s.str();
  }
};

void put(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t w = ::write(fd, s.data() + done, s.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    done += static_cast<std::size_t>(w);
  }
}

/// Runs body(fd) in a forked child; its return value is the exit code. body must not use Catch2.
/// A child still running after 60 s gets SIGALRM (a hang shows as a signal).
child_result run_in_child(const std::function<int(int)>& body) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  std::fflush(nullptr);  // nothing buffered in the parent gets written twice
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    ::close(fds[0]);
    ::alarm(60);
    int code = 3;
    try {
      code = body(fds[1]);
    } catch (const std::exception& e) {
      put(fds[1], std::string("unexpected exception: ") + e.what());
      code = 3;
    } catch (...) {
      code = 3;
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  child_result res;
  char buf[4096];
  while (true) {
    const ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    res.out.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fds[0]);
  while (::waitpid(pid, &res.status, 0) < 0 && errno == EINTR) {
  }
  return res;
}

/// In a child: opens dir; exit 0 if it opened and shows exactly the model at its version
/// (prints "version <v>"), 1 on storage_error (what() to stderr and the pipe), 2 if it opened
/// with content that is no prefix, 3 on any other exception.
int open_and_check(const fs::path& dir, int fd) {
  try {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(dir));
    const std::uint64_t v = w.version();
    const std::string diff = lrtest::compare_to_model(r, model_at(v));
    if (!diff.empty()) {
      put(fd, "opened at version " + std::to_string(v) + " with wrong content: " + diff);
      return 2;
    }
    put(fd, "version " + std::to_string(v) + (w.recovery().tail_truncated ? " (tail cut)" : ""));
    return 0;
  } catch (const storage_error& e) {
    std::fprintf(stderr, "child: storage_error: %s\n", e.what());
    put(fd, std::string("storage_error: ") + e.what());
    return 1;
  }
}

/// Opens dir in this process and checks it holds exactly the model at version v.
void require_opens_at(const fs::path& dir, std::uint64_t v) {
  auto [w, r] = leftright::open_map<key_type, value_type>(options_for(dir));
  INFO("recovery note: " << w.recovery().note);
  REQUIRE(w.version() == v);
  const std::string diff = lrtest::compare_to_model(r, model_at(v));
  INFO(diff);
  REQUIRE(diff.empty());
}

/// The storage_error open_map throws for dir (fails the test if it opens or throws another type).
storage_error open_error(const fs::path& dir) {
  try {
    auto opened = leftright::open_map<key_type, value_type>(options_for(dir));
    FAIL("open_map succeeded at version " << opened.first.version() << "; expected a storage_error");
  } catch (const storage_error& e) {
    return e;
  }
  throw std::logic_error("not reached");
}

// ---------------------------------------------------------------------------------------------
// Random damage.

/// Damages one file of the copy at random; returns a description.
std::string damage_once(const base_copy& c, std::mt19937_64& rng) {
  auto pick = [&rng](std::uint64_t n) { return n == 0 ? 0 : rng() % n; };
  const auto& segs = base().segments;
  const fs::path seg = c.segment(pick(segs.size()));
  const fs::path last = c.last_segment();
  const fs::path snap = c.snapshot();
  std::ostringstream d;
  auto flip_bits = [&](const fs::path& p, std::uint64_t from, std::uint64_t to) {
    const int n = 1 + static_cast<int>(pick(4));
    auto b = read_bytes(p);
    if (b.empty()) {
      d << p.filename().string() << " is empty: nothing flipped";
      return;
    }
    to = std::min<std::uint64_t>(to, b.size());
    if (from >= to) from = 0;
    d << "flip " << n << " bits in " << p.filename().string() << " [" << from << ", " << to << "):";
    for (int i = 0; i < n; ++i) {
      const std::uint64_t off = from + pick(to - from);
      const int bit = static_cast<int>(pick(8));
      b[off] ^= static_cast<unsigned char>(1u << bit);
      d << " " << off << "." << bit;
    }
    write_bytes(p, b);
  };
  switch (pick(13)) {
    case 0: {  // truncate a segment, mostly inside its records
      const std::uint64_t end = used_end(seg) + 64;
      const std::uint64_t at = pick(4) == 0 ? pick(fs::file_size(seg)) : pick(end);
      fs::resize_file(seg, at);
      d << "truncate " << seg.filename().string() << " to " << at;
      break;
    }
    case 1: {  // truncate the snapshot
      const std::uint64_t at = pick(fs::file_size(snap));
      fs::resize_file(snap, at);
      d << "truncate " << snap.filename().string() << " to " << at;
      break;
    }
    case 2: {  // a segment header: mostly the fields at the start and the crc at the end
      if (pick(3) == 0) {
        flip_bits(seg, header_page - 4, header_page);
      } else {
        flip_bits(seg, 0, pick(2) == 0 ? 48 : header_page);
      }
      break;
    }
    case 3: {  // the last record
      const auto recs = records_of(last);
      if (recs.empty()) {  // an earlier damage of this trial truncated it
        flip_bits(last, 0, header_page);
        break;
      }
      const auto& r = recs.back();
      flip_bits(last, r.offset, r.offset + record_header + r.len);
      break;
    }
    case 4: {  // a record of any segment (its header or payload)
      const auto recs = records_of(seg);
      if (recs.empty()) {
        flip_bits(seg, 0, header_page);
        break;
      }
      const auto& r = recs.at(pick(recs.size()));
      flip_bits(seg, r.offset, r.offset + (pick(2) == 0 ? record_header : record_header + r.len));
      break;
    }
    case 5:  // the used part of a segment
      flip_bits(seg, header_page, used_end(seg));
      break;
    case 6: {  // anywhere in a segment (the preallocated zeros too)
      flip_bits(seg, 0, fs::file_size(seg));
      break;
    }
    case 7:  // the snapshot's header
      flip_bits(snap, 0, 64);
      break;
    case 8: {  // the snapshot's trailer
      const std::uint64_t size = fs::file_size(snap);
      flip_bits(snap, size - 24, size);
      break;
    }
    case 9:  // anywhere in the snapshot (mostly its data)
      flip_bits(snap, 0, fs::file_size(snap));
      break;
    case 10: {  // zero a range in the used part of a segment or in the snapshot
      const fs::path p = pick(3) == 0 ? snap : seg;
      auto b = read_bytes(p);
      const std::uint64_t hi = std::min<std::uint64_t>(p == snap ? b.size() : used_end(p), b.size());
      if (hi == 0) {
        d << p.filename().string() << " is empty: nothing zeroed";
        break;
      }
      const std::uint64_t off = pick(hi);
      const std::uint64_t len = std::min<std::uint64_t>(1 + pick(4096), b.size() - off);
      std::fill(b.begin() + static_cast<std::ptrdiff_t>(off), b.begin() + static_cast<std::ptrdiff_t>(off + len), 0);
      write_bytes(p, b);
      d << "zero " << p.filename().string() << " [" << off << ", " << off + len << ")";
      break;
    }
    case 11: {  // append zeros or garbage to any file
      const fs::path p = pick(4) == 0 ? snap : seg;
      std::vector<unsigned char> extra(1 + pick(5000));
      const bool garbage = pick(2) == 0;
      if (garbage) {
        for (auto& x : extra) x = static_cast<unsigned char>(rng());
      }
      append_bytes(p, extra);
      d << "append " << extra.size() << (garbage ? " random bytes" : " zeros") << " to " << p.filename().string();
      break;
    }
    default: {  // remove a file
      const fs::path p = pick(4) == 0 ? snap : seg;
      fs::remove(p);
      d << "remove " << p.filename().string();
      break;
    }
  }
  return d.str();
}

// ---------------------------------------------------------------------------------------------
// Disk full (RLIMIT_FSIZE) in a child.

constexpr rlim_t file_size_limit = rlim_t{1} << 20;
constexpr std::size_t big_value_bytes = 4000;

using disk_model = basic_model<std::string>;

std::string big_value(std::uint64_t b, int i) {
  std::string v = std::to_string(b) + "/" + std::to_string(i) + ":";
  v.resize(big_value_bytes, static_cast<char>('a' + (b + static_cast<std::uint64_t>(i)) % 26));
  return v;
}
/// Batch b of the disk-full tests: two new ~4 KiB values (the map keeps growing), an erase every
/// 4th batch; batch `huge_at` (if nonzero) instead holds 300 of them (~1.2 MiB: one record larger
/// than the file size limit).
template <class Sink>
void make_big_batch(std::uint64_t b, Sink& sink, std::uint64_t huge_at) {
  const int n = b == huge_at ? 300 : 2;
  for (int i = 0; i < n; ++i) sink.insert_or_assign(b * 1000 + static_cast<std::uint64_t>(i), big_value(b, i));
  if (b % 4 == 0) sink.erase((b - 3) * 1000);
}
disk_model disk_model_at(std::uint64_t v, std::uint64_t huge_at) {
  disk_model m;
  while (m.version < v) make_big_batch(++m.version, m, huge_at);
  return m;
}

struct disk_full_plan {
  std::uint64_t checkpoint_every = 0;  // explicit checkpoint() after batches that are multiples
  std::uint64_t checkpoint_bytes = 0;  // automatic checkpoints
  std::uint64_t huge_at = 0;           // the batch that is larger than the limit
};

/// What the child saw. Text lines "name value", parsed by the parent.
struct disk_full_facts {
  std::map<std::string, std::string> f;
  std::uint64_t num(const std::string& k) const {
    auto it = f.find(k);
    return it == f.end() ? UINT64_MAX : std::stoull(it->second);
  }
  std::string str(const std::string& k) const {
    auto it = f.find(k);
    return it == f.end() ? std::string("<missing>") : it->second;
  }
};
disk_full_facts parse_facts(const std::string& out) {
  disk_full_facts facts;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    const auto sp = line.find(' ');
    if (sp != std::string::npos) facts.f[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return facts;
}

/// The child: limit the file size, write until something throws, then probe the failed writer.
int disk_full_child(const fs::path& dir, const disk_full_plan& plan, int fd) {
  rlimit rl{};
  ::getrlimit(RLIMIT_FSIZE, &rl);
  rl.rlim_cur = file_size_limit;
  if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) {
    put(fd, "setup setrlimit failed\n");
    return 4;
  }
  ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG instead of killing us

  leftright::durable_options o;
  o.path = dir;
  o.durability = durability::sync;
  o.segment_size = 256 << 10;
  o.checkpoint_bytes = plan.checkpoint_bytes;
  auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
  std::uint64_t published = 0;
  std::string where = "nowhere", kind = "none", what;
  for (std::uint64_t b = 1; b <= 2000 && kind == "none"; ++b) {
    make_big_batch(b, w, plan.huge_at);
    try {
      if (w.publish() != b) {
        put(fd, "setup unexpected version\n");
        return 4;
      }
      published = b;
    } catch (const storage_error& e) {
      where = "publish", kind = "storage_error", what = e.what();
      break;
    } catch (const std::exception& e) {
      where = "publish", kind = "other", what = e.what();
      break;
    }
    if (plan.checkpoint_every != 0 && b % plan.checkpoint_every == 0) {
      try {
        w.checkpoint();
      } catch (const storage_error& e) {
        where = "checkpoint", kind = "storage_error", what = e.what();
      } catch (const std::exception& e) {
        where = "checkpoint", kind = "other", what = e.what();
      }
    }
  }
  std::fprintf(stderr, "disk-full child: %s threw %s: %s\n", where.c_str(), kind.c_str(), what.c_str());
  std::ostringstream out;
  out << "published " << published << "\n"
      << "where " << where << "\n"
      << "kind " << kind << "\n"
      << "what " << what << "\n"
      << "failed " << w.failed() << "\n"
      << "reader_version " << r.version() << "\n"
      << "writer_version " << w.version() << "\n";
  // The readers must show exactly the last batch whose publish() returned.
  out << "reader_diff " << lrtest::compare_to_model(r, disk_model_at(published, plan.huge_at)) << "\n";
  // Every later publish and checkpoint must be refused with a storage_error.
  w.insert_or_assign(1, "after the failure");
  try {
    w.publish();
    out << "later_publish returned\n";
  } catch (const storage_error&) {
    out << "later_publish storage_error\n";
  } catch (const std::exception& e) {
    out << "later_publish other: " << e.what() << "\n";
  }
  try {
    w.checkpoint();
    out << "later_checkpoint returned\n";
  } catch (const storage_error&) {
    out << "later_checkpoint storage_error\n";
  } catch (const std::exception& e) {
    out << "later_checkpoint other: " << e.what() << "\n";
  }
  out << "reader_version_after " << r.version() << "\n";
  put(fd, out.str());
  return 0;
}

/// Runs the disk-full child, then reopens without the limit; the facts and the reopened state
/// are checked by the caller through the returned values.
struct disk_full_outcome {
  disk_full_facts facts;
  std::uint64_t reopened_version = 0;
  std::string reopened_diff_vs_published;
};
disk_full_outcome run_disk_full(const disk_full_plan& plan) {
  temp_dir tmp("diskfull");
  const fs::path dir = tmp.path() / "map";
  const child_result res = run_in_child([&](int fd) { return disk_full_child(dir, plan, fd); });
  INFO(res.describe());
  REQUIRE(res.exited(0));
  disk_full_outcome out;
  out.facts = parse_facts(res.out);
  leftright::durable_options o;
  o.path = dir;
  o.segment_size = 256 << 10;
  o.checkpoint_bytes = 0;
  auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
  out.reopened_version = w.version();
  const std::uint64_t published = out.facts.num("published");
  if (published != UINT64_MAX) out.reopened_diff_vs_published = lrtest::compare_to_model(r, disk_model_at(published, plan.huge_at));
  return out;
}

void check_disk_full(const disk_full_outcome& o, const char* expected_where) {
  const auto& f = o.facts;
  INFO("child facts: published " << f.str("published") << ", " << f.str("where") << " threw "
                                 << f.str("kind") << ": " << f.str("what"));
  REQUIRE(f.str("kind") == "storage_error");
  CHECK(f.str("where") == expected_where);
  CHECK(f.str("what").find("File too large") != std::string::npos);  // EFBIG
  CHECK(f.num("failed") == 1);
  CHECK(f.str("later_publish") == "storage_error");
  CHECK(f.str("later_checkpoint") == "storage_error");
  // Readers keep the last successfully published state.
  CHECK(f.num("reader_version") == f.num("published"));
  CHECK(f.num("reader_version_after") == f.num("published"));
  CHECK(f.str("reader_diff").empty());
  // Reopened without the limit: exactly the batches whose publish() returned.
  CHECK(o.reopened_version == f.num("published"));
  CHECK(o.reopened_diff_vs_published.empty());
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("damage: the undamaged base opens with every batch", "[durable][damage]") {
  base_copy c;
  require_opens_at(c.dir, base_batches);
  const child_result res = run_in_child([&](int fd) { return open_and_check(c.dir, fd); });
  INFO(res.describe());
  CHECK(res.exited(0));
}

TEST_CASE("damage: random truncations, bit flips, zeroed ranges, appended and removed files",
          "[durable][damage]") {
  const std::uint64_t seed = lrtest::test_seed();
  std::mt19937_64 rng(seed);
  constexpr int max_trials = 250;
  const auto budget = std::chrono::seconds(8);
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::string> bad;
  int trials = 0, opened = 0, refused = 0, cut = 0;
  for (; trials < max_trials && std::chrono::steady_clock::now() - started < budget; ++trials) {
    base_copy c;
    std::string what = damage_once(c, rng);
    if (rng() % 6 == 0) {
      try {
        what += "; then " + damage_once(c, rng);
      } catch (const std::exception& e) {  // e.g. the first damage removed the file it picked
        what += "; (no second damage: " + std::string(e.what()) + ")";
      }
    }
    const child_result res = run_in_child([&](int fd) { return open_and_check(c.dir, fd); });
    if (res.exited(0)) {
      ++opened;
      if (res.out.find("tail cut") != std::string::npos) ++cut;
    } else if (res.exited(1)) {
      ++refused;
    } else {
      bad.push_back("trial " + std::to_string(trials) + ": " + what + " -> " + res.describe());
    }
  }
  WARN(trials << " damage trials: " << opened << " opened at a prefix (" << cut << " with a cut tail), "
              << refused << " refused with storage_error");
  std::string all;
  for (const auto& b : bad) all += b + "\n";
  INFO(all);
  CHECK(bad.empty());
  CHECK(trials > 0);
}

TEST_CASE("damage (a): a damaged last record is a torn tail: cut, the rest recovered", "[durable][damage]") {
  base_copy c;
  const auto recs = records_of(c.last_segment());
  const record_info last = recs.back();
  REQUIRE(last.seq == base_batches);
  xor_byte(c.last_segment(), last.offset + record_header + last.len / 2, 0x5a);
  {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(c.dir));
    INFO("note: " << w.recovery().note);
    CHECK(w.recovery().tail_truncated);
    CHECK(w.recovery().note.find(base().segments.back()) != std::string::npos);
    REQUIRE(w.version() == base_batches - 1);
    CHECK(w.recovery().snapshot_version == base_snapshot);
    const std::string diff = lrtest::compare_to_model(r, model_at(base_batches - 1));
    INFO(diff);
    REQUIRE(diff.empty());
  }
  // The damaged segment is no longer the last: a second recovery reads it up to the cut and goes
  // on; new batches go to a fresh segment, and a third recovery has them all.
  {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(c.dir));
    INFO("note: " << w.recovery().note);
    REQUIRE(w.version() == base_batches - 1);
    write_batches(w, base_batches + 5, 0);
  }
  require_opens_at(c.dir, base_batches + 5);
}

TEST_CASE("damage (b): a damaged middle record of a synced log is refused, naming file and offset",
          "[durable][damage]") {
  base_copy c;
  const auto& segs = base().segments;
  std::size_t which = 0;
  std::uint64_t off = 0;
  std::string expect_in_what;
  SECTION("the payload of a middle record of the last segment") {
    which = segs.size() - 1;
    const auto recs = records_of(c.segment(which));
    off = recs[recs.size() / 2].offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + record_header + 3, 0x01));
    expect_in_what = "offset " + std::to_string(off);
  }
  SECTION("the header (seq field) of the first record of the last segment") {
    which = segs.size() - 1;
    off = records_of(c.segment(which)).front().offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + 16, 0x80));
    expect_in_what = "offset " + std::to_string(off);
  }
  SECTION("a middle record of the first segment (not the last one)") {
    which = 0;
    const auto recs = records_of(c.segment(which));
    off = recs[recs.size() / 2].offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + record_header + 1, 0x10));
    expect_in_what = "offset " + std::to_string(off);
  }
  SECTION("the last record of the first segment: the next segment starts after it (a hole)") {
    which = 0;
    off = records_of(c.segment(which)).back().offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + record_header, 0x04));
    expect_in_what = "offset " + std::to_string(off);
  }
  const auto before = all_names(c.dir);
  const storage_error e = open_error(c.dir);
  INFO("what(): " << e.what());
  CHECK(std::string(e.what()).find(segs[which]) != std::string::npos);
  CHECK(std::string(e.what()).find(expect_in_what) != std::string::npos);
  // Refusing repairs nothing: every file is still there for a human to look at.
  CHECK(all_names(c.dir) == before);
}

TEST_CASE("damage (c): a truncated or corrupt snapshot is refused, naming it", "[durable][damage]") {
  base_copy c;
  const std::uint64_t size = fs::file_size(c.snapshot());
  SECTION("half of it") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), size / 2)); }
  SECTION("one byte short") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), size - 1)); }
  SECTION("its header only") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), 40)); }
  SECTION("empty") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), 0)); }
  SECTION("a bit flipped in its data") { REQUIRE_NOTHROW(xor_byte(c.snapshot(), size / 2, 0x08)); }
  const storage_error e = open_error(c.dir);
  INFO("what(): " << e.what());
  CHECK(std::string(e.what()).find(base().snapshot) != std::string::npos);
}

TEST_CASE("damage (d): bytes appended past the end of log segments change nothing", "[durable][damage]") {
  base_copy c;
  std::mt19937_64 rng(7);
  std::vector<unsigned char> garbage(3000);
  for (auto& x : garbage) x = static_cast<unsigned char>(rng() | 1);
  SECTION("zeros after every segment") {
    for (std::size_t i = 0; i < base().segments.size(); ++i) {
      REQUIRE_NOTHROW(append_bytes(c.segment(i), std::vector<unsigned char>(65536)));
    }
  }
  SECTION("garbage after the last segment") { REQUIRE_NOTHROW(append_bytes(c.last_segment(), garbage)); }
  SECTION("garbage after the first segment") { REQUIRE_NOTHROW(append_bytes(c.segment(0), garbage)); }
  require_opens_at(c.dir, base_batches);
}

TEST_CASE("damage (e): reopening with other key or value types is refused", "[durable][damage]") {
  temp_dir tmp("types");
  const fs::path log_only = tmp.path() / "log-only";
  {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(log_only));
    write_batches(w, 10, 0);
  }
  base_copy c;
  for (const fs::path& dir : {c.dir, log_only}) {
    INFO("directory " << dir << (dir == log_only ? " (log only)" : " (snapshot and log)"));
    const auto before = all_names(dir);
    auto refuse = [&](auto opened_as) {
      using map_types = decltype(opened_as);
      try {
        auto m = leftright::open_map<typename map_types::first_type, typename map_types::second_type>(options_for(dir));
        FAIL("opened with other types at version " << m.first.version());
      } catch (const storage_error& e) {
        INFO("what(): " << e.what());
        // It names what is there.
        CHECK(std::string(e.what()).find("'u64'") != std::string::npos);
        CHECK(std::string(e.what()).find("'str'") != std::string::npos);
      }
    };
    refuse(std::pair<std::uint64_t, std::uint64_t>{});
    refuse(std::pair<std::string, std::string>{});
    refuse(std::pair<std::uint32_t, std::string>{});
    refuse(std::pair<std::int64_t, std::string>{});
    CHECK(all_names(dir) == before);
  }
  // The refusals changed nothing: the right types still find everything.
  require_opens_at(c.dir, base_batches);
  require_opens_at(log_only, 10);
}

TEST_CASE("damage (f): one open map per directory, in this process and from another", "[durable][damage]") {
  temp_dir tmp("lock");
  const fs::path dir = tmp.path() / "map";
  auto opened_in_child = [&] { return run_in_child([&](int fd) { return open_and_check(dir, fd); }); };
  auto first = leftright::open_map<key_type, value_type>(options_for(dir));
  {
    auto& w = first.first;
    write_batches(w, 3, 0);
    const storage_error e = open_error(dir);
    INFO("what(): " << e.what());
    CHECK(e.operation() == "lock");
    CHECK(std::string(e.what()).find("in use") != std::string::npos);
    // The refused open released nothing (an fcntl lock would be dropped by its close): the
    // writer goes on, and the directory is still locked.
    write_batches(w, 4, 0);
    CHECK(first.second.version() == 4);
    CHECK_THROWS_AS((leftright::open_map<key_type, value_type>(options_for(dir))), storage_error);
    const child_result res = opened_in_child();
    INFO(res.describe());
    CHECK(res.exited(1));
    CHECK(res.out.find("in use") != std::string::npos);
  }
  // The first writer is gone (its reader lives on, still showing version 4): the directory
  // opens, here and in a child.
  { auto gone = std::move(first.first); }
  CHECK(first.second.version() == 4);
  require_opens_at(dir, 4);
  const child_result res = opened_in_child();
  INFO(res.describe());
  CHECK(res.exited(0));
  CHECK(res.out.find("version 4") != std::string::npos);
  CHECK(first.second.version() == 4);
}

TEST_CASE("damage (g): a path that is a file, or an unwritable directory, is refused", "[durable][damage]") {
  temp_dir tmp("paths");
  const fs::path file = tmp.path() / "plain-file";
  write_bytes(file, {1, 2, 3});
  SECTION("the path is a regular file") {
    const storage_error e = open_error(file);
    INFO("what(): " << e.what());
    CHECK(std::string(e.what()).find("plain-file") != std::string::npos);
    CHECK(read_bytes(file) == std::vector<unsigned char>{1, 2, 3});
  }
  SECTION("the path is below a regular file") {
    const storage_error e = open_error(file / "map");
    INFO("what(): " << e.what());
    CHECK(std::string(e.what()).find("plain-file") != std::string::npos);
  }
  SECTION("the path is empty") { CHECK_THROWS_AS((leftright::open_map<key_type, value_type>(leftright::durable_options{})), storage_error); }
  SECTION("an unwritable directory") {
    const fs::path ro = tmp.path() / "read-only";
    fs::create_directory(ro);
    const auto r_x = fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                     fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec;
    fs::permissions(ro, r_x);
    if (::geteuid() != 0) {
      CHECK(open_error(ro).code().value() == EACCES);          // cannot create LOCK
      CHECK(open_error(ro / "map").code().value() == EACCES);  // cannot create the directory
    } else {
      // Root ignores permissions: try as nobody, in a child that drops its privileges.
      fs::permissions(tmp.path(), r_x | fs::perms::owner_write);
      const child_result res = run_in_child([&](int fd) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
          put(fd, "cannot become nobody");
          return 5;
        }
        for (const fs::path& p : {ro, ro / "map"}) {
          try {
            auto m = leftright::open_map<key_type, value_type>(options_for(p));
            put(fd, "opened " + p.string());
            return 2;
          } catch (const storage_error& e) {
            put(fd, std::string(e.what()) + "\n");
            if (e.code().value() != EACCES) return 4;
          }
        }
        return 1;
      });
      INFO(res.describe());
      if (res.exited(5)) {
        WARN("running as root and cannot drop privileges: unwritable directory not tested");
        SUCCEED("skipped");
      } else {
        CHECK(res.exited(1));
      }
    }
    fs::permissions(ro, fs::perms::owner_all);
  }
}

TEST_CASE("damage: a damaged header of the last segment, with durable records after it, is refused",
          "[durable][damage]") {
  // A segment's header page is written and fdatasync'ed before any record goes into the segment
  // (wal_writer::roll), so a header that does not check out while records follow it is damage a
  // crash cannot explain: open_map must throw (and keep the file), not delete the segment and
  // with it every acknowledged batch in it.
  base_copy c;
  const auto records = records_of(c.last_segment()).size();
  REQUIRE(records >= 3);
  SECTION("a flipped bit in the salt") { REQUIRE_NOTHROW(xor_byte(c.last_segment(), 16, 0x01)); }
  SECTION("a flipped bit in the header's crc") { REQUIRE_NOTHROW(xor_byte(c.last_segment(), header_page - 2, 0x20)); }
  const auto damaged = read_bytes(c.last_segment());
  try {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(c.dir));
    FAIL_CHECK("opened at version " << w.version() << " of " << base_batches << ", dropping " << records
                                    << " synced batches; note: " << w.recovery().note);
  } catch (const storage_error& e) {
    INFO("what(): " << e.what());
    CHECK(std::string(e.what()).find(base().segments.back()) != std::string::npos);
  }
  // The damaged file must still be there, as it was (not replaced by a fresh segment that
  // recovery started under the same name).
  REQUIRE(fs::exists(c.last_segment()));
  const bool unchanged = read_bytes(c.last_segment()) == damaged;
  CHECK(unchanged);
}

TEST_CASE("disk full (RLIMIT_FSIZE): a checkpoint that cannot write its snapshot stops the writer",
          "[durable][damage][diskfull]") {
  // Snapshots grow with the map; the one written after batch 160 passes 1 MiB (pwrite: EFBIG).
  disk_full_plan plan;
  plan.checkpoint_every = 32;
  const disk_full_outcome o = run_disk_full(plan);
  check_disk_full(o, "checkpoint");
}

TEST_CASE("disk full (RLIMIT_FSIZE): a log segment that cannot be allocated fails publish()",
          "[durable][damage][diskfull]") {
  // One batch is a ~1.2 MiB record: its segment cannot be preallocated (posix_fallocate: EFBIG),
  // so publish() fails before readers can see the batch. Batch 20 leaves a segment holding
  // batches 1..19; batch 1 replaces the still empty segment that open_map() started.
  for (const std::uint64_t huge_at : {std::uint64_t{20}, std::uint64_t{1}}) {
    INFO("the huge batch is batch " << huge_at);
    disk_full_plan plan;
    plan.huge_at = huge_at;
    const disk_full_outcome o = run_disk_full(plan);
    check_disk_full(o, "publish");
    CHECK(o.facts.num("published") == huge_at - 1);
    CHECK(o.facts.str("what").find("posix_fallocate") != std::string::npos);
  }
}

TEST_CASE("disk full (RLIMIT_FSIZE): an automatic checkpoint that fails inside publish()",
          "[durable][damage][diskfull]") {
  // An automatic checkpoint (checkpoint_bytes) runs inside publish(), after the batch was logged
  // and made visible. When it fails, that publish() still returns (its batch is published), the
  // writer is failed(), and the next publish() throws storage_error saying why.
  disk_full_plan plan;
  plan.checkpoint_bytes = 300 << 10;
  const disk_full_outcome o = run_disk_full(plan);
  check_disk_full(o, "publish");
}
