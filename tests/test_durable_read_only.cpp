// SPDX-License-Identifier: Apache-2.0
// open_map_read_only(): the state a writable open would recover, for readers, with nothing
// written: no segment created, no tail cut, no unfinished file removed (the report says what a
// writable open would do instead). It works where nothing can be written (every write call
// refused; a full disk in the simulated file system) and takes a shared lock: read-only opens
// coexist, a writer excludes them and they exclude a writer. No atomics in this file.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/sim_fs.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::temp_dir;

namespace {

namespace fs = std::filesystem;
namespace st = leftright::detail::storage;
using leftright::storage_error;

/// The real file system, with every call that could change anything refused (EROFS): what a
/// read-only mount gives, for any user (a mode-0555 directory does not stop root).
class refuse_writes final : public st::file_system {
 public:
  std::unique_ptr<st::file> open(const fs::path& p, st::open_mode mode) override {
    if (mode != st::open_mode::read_only) refuse(p, "open for writing");
    return std::make_unique<read_only_file>(real_->open(p, mode));
  }
  std::vector<fs::path> create_directories(const fs::path& dir) override { refuse(dir, "create directory"); }
  std::vector<std::string> list(const fs::path& dir) override { return real_->list(dir); }
  void rename(const fs::path& from, const fs::path&) override { refuse(from, "rename"); }
  void remove(const fs::path& p) override { refuse(p, "unlink"); }
  void sync_directory(const fs::path& dir) override { refuse(dir, "fsync directory"); }
  std::unique_ptr<st::lock_handle> lock_directory(const fs::path& dir) override { refuse(dir, "lock"); }
  std::unique_ptr<st::lock_handle> lock_directory_shared(const fs::path& dir) override {
    return real_->lock_directory_shared(dir);
  }

 private:
  [[noreturn]] static void refuse(const fs::path& p, const char* op) {
    throw storage_error(p, op, EROFS, "refused by the test: nothing may be written");
  }
  class read_only_file final : public st::file {
   public:
    explicit read_only_file(std::unique_ptr<st::file> f) : f_(std::move(f)) {}
    const fs::path& path() const noexcept override { return f_->path(); }
    std::uint64_t size() override { return f_->size(); }
    void write_at(const void*, std::size_t, std::uint64_t) override { refuse(path(), "pwrite"); }
    std::size_t read_at(void* p, std::size_t n, std::uint64_t off) override { return f_->read_at(p, n, off); }
    void allocate(std::uint64_t) override { refuse(path(), "posix_fallocate"); }
    void sync() override { refuse(path(), "fdatasync"); }
    std::shared_ptr<st::mapping> map(std::size_t len, bool writable) override {
      if (writable) refuse(path(), "mmap for writing");
      return f_->map(len, false);
    }
    std::pair<std::uint64_t, std::uint64_t> data_range(std::uint64_t off) override { return f_->data_range(off); }

   private:
    std::unique_ptr<st::file> f_;
  };
  std::shared_ptr<st::file_system> real_ = st::default_file_system();
};

leftright::durable_options options(const fs::path& dir) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::sync;
  o.segment_size = 8 << 10;
  o.checkpoint_bytes = 0;
  return o;
}

/// Every file of dir and its bytes.
std::map<std::string, std::string> contents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    out[e.path().filename().string()] = std::string(std::istreambuf_iterator<char>(in), {});
  }
  return out;
}

template <class Writer>
void publish_to(Writer& w, std::uint64_t to) {
  while (w.version() < to) {
    const std::uint64_t k = w.version() + 1;
    w.insert_or_assign(k, k * 7);
    w.publish();
  }
}

using ro_map = leftright::read_only_map<std::uint64_t, std::uint64_t>;

ro_map open_ro(const leftright::durable_options& o) { return leftright::open_map_read_only<std::uint64_t, std::uint64_t>(o); }

}  // namespace

TEST_CASE("a read-only open recovers what a writable one would, and writes nothing", "[durable][read-only]") {
  temp_dir tmp("readonly");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_to(w, 40);
    w.checkpoint();
    publish_to(w, 100);
  }
  bool torn = false;
  SECTION("a clean directory") { SUCCEED("a clean directory"); }
  SECTION("a torn tail and an unfinished snapshot") {
    torn = true;
    std::vector<std::string> segs;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (st::parse_hex_name(e.path().filename().string(), "wal-", ".log")) segs.push_back(e.path().filename().string());
    }
    std::sort(segs.begin(), segs.end());
    REQUIRE_FALSE(segs.empty());
    {
      std::fstream f(dir / segs.back(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(8192 - 64);  // zeros past the last record: a record that never completed
      f.write("torn", 4);
    }
    std::ofstream(dir / "snap-00000000000000ff.dat.tmp") << "half a snapshot";
  }
  const auto before = contents(dir);
  auto o = options(dir);
  o.file_system = std::make_shared<refuse_writes>();
  ro_map m = open_ro(o);
  CHECK(m.version() == 100);
  CHECK(m.recovery().snapshot_version == 40);
  auto r = m.make_reader();
  CHECK(r.size() == 100);
  for (std::uint64_t k = 1; k <= 100; ++k) CHECK(r.get(k) == std::optional<std::uint64_t>(k * 7));
  auto from_factory = m.factory().make_reader();
  CHECK(from_factory.version() == 100);
  CHECK(contents(dir) == before);
  if (torn) {
    INFO(m.recovery().note);
    CHECK(m.recovery().tail_truncated);
    CHECK(m.recovery().note.find("a writable open") != std::string::npos);
    CHECK(m.recovery().note.find(".tmp") != std::string::npos);
  } else {
    CHECK(m.recovery().note.empty());
  }
  // The writable open that refuses nothing changes what it says it would; the same state.
  o.file_system = nullptr;
  {
    ro_map drop = std::move(m);  // releases the shared lock at the end of this scope
  }
  auto [w, r2] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
  CHECK(w.version() == 100);
  CHECK(w.recovery().tail_truncated == torn);
}

TEST_CASE("a read-only open has open_map's defaults: its readers are map_readers of the same type",
          "[durable][read-only]") {
  temp_dir tmp("readonly-defaults");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::string, int>(options(dir));
    w.insert_or_assign("a", 1);
    w.publish();
  }
  auto m = leftright::open_map_read_only<std::string, int>(options(dir));
  // Code written for open_map's readers takes these too.
  const auto lookup = [](const leftright::map_reader<std::string, int>& r, std::string_view k) { return r.get(k); };
  auto r = m.make_reader();
  CHECK(lookup(r, "a") == 1);
  CHECK(r.get(std::string_view("b")) == std::nullopt);  // default_hash/default_eq: no std::string made
}

TEST_CASE("read-only opens share the directory; a writer excludes them and they exclude it",
          "[durable][read-only]") {
  temp_dir tmp("readonly");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_to(w, 3);
    {
      CHECK_THROWS_AS(open_ro(options(dir)), storage_error);
    }
  }
  {
    ro_map a = open_ro(options(dir));
    ro_map b = open_ro(options(dir));
    CHECK(a.version() == 3);
    CHECK(b.version() == 3);
    CHECK_THROWS_AS((leftright::open_map<std::uint64_t, std::uint64_t>(options(dir))), storage_error);
  }
  auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
  CHECK(w.version() == 3);
}

TEST_CASE("a read-only open of a missing directory is refused; of an empty one, an empty map",
          "[durable][read-only]") {
  temp_dir tmp("readonly");
  CHECK_THROWS_AS(open_ro(options(tmp.path() / "absent")), storage_error);
  CHECK_FALSE(fs::exists(tmp.path() / "absent"));
  fs::create_directory(tmp.path() / "empty");
  ro_map m = open_ro(options(tmp.path() / "empty"));
  CHECK(m.version() == 0);
  CHECK(m.make_reader().size() == 0);
  CHECK(fs::is_empty(tmp.path() / "empty"));
}

TEST_CASE("sim: on a full disk a writable open fails, a read-only one reads everything", "[durable][read-only][sim]") {
  auto fsys = std::make_shared<sim::file_system>();
  auto o = options("/m");
  o.file_system = fsys;
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    publish_to(w, 50);
  }
  // The disk is full: every allocation and every write fails.
  for (std::uint64_t n = 1; n <= 8; ++n) {
    fsys->inject(sim::call::fallocate, n, sim::fault::enospc);
    fsys->inject(sim::call::write, n, sim::fault::enospc);
  }
  CHECK_THROWS_AS((leftright::open_map<std::uint64_t, std::uint64_t>(o)), storage_error);
  const std::uint64_t fired = fsys->faults_fired();
  CHECK(fired > 0);
  ro_map m = open_ro(o);
  CHECK(m.version() == 50);
  CHECK(m.make_reader().size() == 50);
  CHECK(fsys->faults_fired() == fired);  // the read-only open tried to write nothing
}

}  // namespace LEFTRIGHT_TEST_FILE
