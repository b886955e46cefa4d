// SPDX-License-Identifier: Apache-2.0
// A log that is missing or cut short in a way no crash explains is refused (storage_error), never
// reopened at an older version: the newest of several segments deleted (the segment before it
// names it in its successor record), the only segment deleted with or without a snapshot (the
// directory's marker says a log is there), a segment truncated to its header or part way (its
// header records the size it was preallocated with), the marker itself deleted. Each on the real
// file system and, where the simulated one adds something (deletions it can see exactly), there.
// A crash must still never look like damage: test_sim_crash_points and stress_sim_crash crash
// every call of rolls, checkpoints and the first open. No atomics in this file.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
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
using map_types = std::pair<std::uint64_t, std::uint64_t>;

leftright::durable_options options(const fs::path& dir, leftright::durability mode = leftright::durability::sync) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = mode;
  o.segment_size = 8 << 10;  // small: a few dozen batches fill one
  o.checkpoint_bytes = 0;
  return o;
}

using lrtest::segments;

/// Publishes batches up to version `to`, one key each.
template <class Writer>
void publish_to(Writer& w, std::uint64_t to, std::uint64_t checkpoint_at = 0) {
  while (w.version() < to) {
    const std::uint64_t k = w.version() + 1;
    w.insert_or_assign(k, k * 7);
    w.publish();
    if (k == checkpoint_at) w.checkpoint();
  }
}

/// The storage_error opening dir throws; fails the test (naming the version it opened at) if it
/// opens.
storage_error open_error(const leftright::durable_options& o) {
  try {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    FAIL("opened at version " << w.version() << " (note: " << w.recovery().note << "); expected a storage_error");
  } catch (const storage_error& e) {
    return e;
  }
  throw std::logic_error("not reached");
}

bool mentions(const storage_error& e, const std::string& what) { return std::string(e.what()).find(what) != std::string::npos; }

}  // namespace

TEST_CASE("deleting the newest of three segments is refused, naming it", "[durable][damage][missing-log]") {
  temp_dir tmp("missing");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_to(w, 150);
  }
  auto segs = segments(dir);
  REQUIRE(segs.size() >= 3);
  SECTION("after a clean close") { SUCCEED("after a clean close"); }
  SECTION("after a reopen that started a segment of its own") {
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
      REQUIRE(w.version() == 150);
      publish_to(w, 160);
    }
    segs = segments(dir);
  }
  fs::remove(dir / segs.back());
  const storage_error e = open_error(options(dir));
  INFO(e.what());
  CHECK(mentions(e, segs.back()));
  CHECK(mentions(e, "missing"));
  CHECK(segments(dir).size() == segs.size() - 1);  // refusing repairs nothing
}

TEST_CASE("deleting the only segment is refused, with or without a snapshot", "[durable][damage][missing-log]") {
  temp_dir tmp("missing");
  const fs::path dir = tmp.path() / "map";
  std::uint64_t checkpoint_at = 0;
  SECTION("a log only") { SUCCEED("a log only"); }
  SECTION("a snapshot and the segment after it") { checkpoint_at = 20; SUCCEED("a snapshot and the segment after it"); }
  SECTION("a snapshot and the empty segment after it") { checkpoint_at = 30; SUCCEED("a snapshot and the empty segment after it"); }
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_to(w, 30, checkpoint_at);
  }
  const auto segs = segments(dir);
  REQUIRE(segs.size() == 1);
  fs::remove(dir / segs.front());
  const storage_error e = open_error(options(dir));
  INFO(e.what());
  CHECK(mentions(e, "segment"));
}

TEST_CASE("a segment shorter than it was preallocated is refused", "[durable][damage][missing-log]") {
  temp_dir tmp("missing");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_to(w, 150);
  }
  const auto segs = segments(dir);
  REQUIRE(segs.size() >= 3);
  const fs::path last = dir / segs.back();
  const auto size = fs::file_size(last);
  std::uintmax_t cut = 0;
  SECTION("the newest, to its header") { cut = 4096; SUCCEED("the newest, to its header"); }
  SECTION("the newest, part way through its records") { cut = 4096 + 256; SUCCEED("the newest, part way through its records"); }
  SECTION("the newest, by one page") { cut = size - 4096; SUCCEED("the newest, by one page"); }
  SECTION("the newest, into its header") { cut = 1000; SUCCEED("the newest, into its header"); }
  REQUIRE(cut < size);
  fs::resize_file(last, cut);
  const storage_error e = open_error(options(dir));
  INFO(e.what());
  CHECK(mentions(e, segs.back()));
  CHECK(mentions(e, "cut short"));
}

TEST_CASE("a map directory whose marker was deleted is refused; a fresh directory is not",
          "[durable][damage][missing-log]") {
  temp_dir tmp("missing");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    CHECK(w.version() == 0);
    publish_to(w, 5);
  }
  REQUIRE(fs::exists(dir / "MAP"));
  fs::remove(dir / "MAP");
  const storage_error e = open_error(options(dir));
  INFO(e.what());
  CHECK(mentions(e, "MAP"));
}

TEST_CASE("a segment of format 1 is refused, naming the version", "[durable][damage][missing-log]") {
  temp_dir tmp("missing");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_to(w, 5);
  }
  // Rewrite the first segment's header as format 1 wrote it (version field, crc).
  const fs::path seg = dir / segments(dir).front();
  std::vector<char> h(4096);
  {
    std::ifstream in(seg, std::ios::binary);
    REQUIRE(in.read(h.data(), 4096));
  }
  leftright::detail::store_le<std::uint32_t>(h.data() + 8, 1);
  leftright::detail::store_le<std::uint32_t>(h.data() + 4092, leftright::detail::crc32c(h.data(), 4092));
  {
    std::fstream out(seg, std::ios::in | std::ios::out | std::ios::binary);
    out.write(h.data(), 4096);
  }
  const storage_error e = open_error(options(dir));
  INFO(e.what());
  CHECK(mentions(e, "version 1"));
}

TEST_CASE("a crash-cut log tail, then more batches: deleting the newest segment is still refused",
          "[durable][damage][missing-log]") {
  // Recovery cuts a torn tail and starts a new segment; the segment it cut gets the successor
  // record then (nothing else would name the new segment).
  temp_dir tmp("missing");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_to(w, 10);
  }
  const fs::path only = dir / segments(dir).front();
  {
    // A torn record after the last one: garbage where version 11 would go.
    std::fstream f(only, std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> b(4096 + 10 * 48 + 200);
    REQUIRE(f.read(b.data(), static_cast<std::streamsize>(b.size())));
    std::size_t end = 4096;
    while (leftright::detail::load_le<std::uint32_t>(b.data() + end + 8) == st::record_type_batch) {
      end += st::align8(32 + leftright::detail::load_le<std::uint32_t>(b.data() + end + 4));
    }
    f.seekp(static_cast<std::streamoff>(end + 40));
    f.write("torn", 4);
  }
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    REQUIRE(w.version() == 10);
    CHECK(w.recovery().tail_truncated);
    publish_to(w, 20);
  }
  const auto segs = segments(dir);
  REQUIRE(segs.size() == 2);
  fs::remove(dir / segs.back());
  const storage_error e = open_error(options(dir));
  INFO(e.what());
  CHECK(mentions(e, segs.back()));
}

TEST_CASE("sim: deleting the newest or the only segment is refused; the untouched copy reopens",
          "[durable][damage][missing-log][sim]") {
  auto fsys = std::make_shared<sim::file_system>();
  leftright::durable_options o = options("/m");
  o.file_system = fsys;
  bool checkpoint = false;
  SECTION("three segments") { SUCCEED("three segments"); }
  SECTION("a checkpoint, then one segment") { checkpoint = true; SUCCEED("a checkpoint, then one segment"); }
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    publish_to(w, 150);
    if (checkpoint) {
      w.checkpoint();
      publish_to(w, 160);
    }
  }
  std::vector<std::string> segs;
  for (const auto& n : fsys->list("/m")) {
    if (st::parse_hex_name(n, "wal-", ".log")) segs.push_back(n);
  }
  std::sort(segs.begin(), segs.end());
  if (checkpoint) REQUIRE(segs.size() == 1);
  if (!checkpoint) REQUIRE(segs.size() >= 3);
  {
    auto copy = fsys->copy();
    leftright::durable_options oc = o;
    oc.file_system = copy;
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(oc);
    CHECK(w.version() == (checkpoint ? 160u : 150u));
  }
  fsys->remove("/m/" + segs.back());
  const storage_error e = open_error(o);
  INFO(e.what());
  CHECK(mentions(e, "segment"));
}

}  // namespace LEFTRIGHT_TEST_FILE
