// SPDX-License-Identifier: Apache-2.0
// Log segments grow with the map: the first after an open or a checkpoint is small (64 KiB, or
// segment_size if smaller), each next one twice the last, up to segment_size; so a small map's
// directory stays small, and a checkpoint shrinks the directory. Sizes, not timings. No atomics
// in this file.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::temp_dir;

namespace {

namespace fs = std::filesystem;
namespace st = leftright::detail::storage;

leftright::durable_options options(const fs::path& dir) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::none;
  o.checkpoint_bytes = 0;
  o.prefault_bytes = 0;
  return o;
}

/// The sizes of dir's segments, oldest first.
std::vector<std::uintmax_t> segment_sizes(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (st::parse_hex_name(n, "wal-", ".log")) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  std::vector<std::uintmax_t> out;
  for (const auto& n : names) out.push_back(fs::file_size(dir / n));
  return out;
}

/// The bytes of every file in dir (segments are preallocated: their size is what they occupy).
std::uintmax_t directory_bytes(const fs::path& dir) {
  std::uintmax_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) n += e.file_size();
  }
  return n;
}

template <class Writer>
void insert_keys(Writer& w, std::uint64_t from, std::uint64_t to, std::size_t value_bytes) {
  for (std::uint64_t k = from; k < to; ++k) {
    w.insert_or_assign(k, std::string(value_bytes, static_cast<char>('a' + k % 26)));
    w.publish();
  }
}

constexpr std::uintmax_t KiB = 1024;

}  // namespace

TEST_CASE("segments start at 64 KiB and double up to segment_size", "[durable][segments]") {
  temp_dir tmp("growth");
  auto o = options(tmp.path() / "map");
  o.segment_size = std::size_t{1} << 20;
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
    insert_keys(w, 0, 3000, 1000);  // about 3 MiB of log
  }
  const auto sizes = segment_sizes(o.path);
  REQUIRE(sizes.size() >= 6);
  const std::vector<std::uintmax_t> first{64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1024 * KiB, 1024 * KiB};
  CHECK(std::vector<std::uintmax_t>(sizes.begin(), sizes.begin() + 6) == first);
  for (auto s : sizes) CHECK(s <= 1024 * KiB);

  SECTION("a segment_size below 64 KiB is every segment's size") {
    temp_dir tmp2("growth");
    auto o2 = options(tmp2.path() / "map");
    o2.segment_size = 16 * KiB;
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o2);
      insert_keys(w, 0, 100, 1000);
    }
    for (auto s : segment_sizes(o2.path)) CHECK(s == 16 * KiB);
  }
  SECTION("a batch larger than the next segment gets a segment of its own size") {
    temp_dir tmp2("growth");
    auto o2 = options(tmp2.path() / "map");
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o2);
      insert_keys(w, 0, 1, 300 * KiB);
    }
    const auto s2 = segment_sizes(o2.path);
    REQUIRE(s2.size() == 1);  // the empty first segment was replaced under its name
    CHECK(s2.front() >= 300 * KiB);
    CHECK(s2.front() < 320 * KiB);
  }
}

TEST_CASE("a small map's directory stays small, and a checkpoint shrinks it", "[durable][segments]") {
  temp_dir tmp("growth");
  const auto o = options(tmp.path() / "map");  // segment_size: the default 64 MiB
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
    insert_keys(w, 0, 10, 16);
  }
  const auto ten = directory_bytes(o.path);
  WARN("a 10-key map: " << ten << " bytes");
  CHECK(ten < 256 * KiB);

  std::uintmax_t before = 0, after = 0;
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
    insert_keys(w, 10, 500, 16);
    before = directory_bytes(o.path);
    w.checkpoint();
    after = directory_bytes(o.path);
  }
  WARN("a 500-entry map: " << before << " bytes before its checkpoint, " << after << " after");
  CHECK(before < 1024 * KiB);
  CHECK(after < before);
  CHECK(after < 128 * KiB);
  // Reopened, it stays that size: the checkpoint's segment is continued in.
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
    CHECK(w.version() == 500);
  }
  CHECK(directory_bytes(o.path) == after);
}

TEST_CASE("the prefaulter is asked once per segment smaller than its reach, and every half reach in a larger one",
          "[durable][segments]") {
  temp_dir dir("prefault");
  auto fsys = st::default_file_system();
  const auto mapped = [&](const std::string& name, std::size_t size) {
    auto f = fsys->open(dir.path() / name, st::open_mode::create_new);
    f->allocate(size);
    return f->map(size, true);
  };
  constexpr std::size_t reach = std::size_t{4} << 20;
  st::prefaulter p(reach);
  // A 64 KiB segment, written 100 bytes at a time: its whole rest is asked for at once.
  const auto small = mapped("small", std::size_t{64} << 10);
  for (std::size_t at = 100; at < small->size(); at += 100) p.wrote(1, small, at);
  CHECK(p.requests() == 1);
  // A 16 MiB segment, written 4 KiB at a time: a request each time the writer is half way
  // through the last one (2 MiB), until the end was asked for.
  const auto large = mapped("large", std::size_t{16} << 20);
  for (std::size_t at = 4096; at < large->size(); at += 4096) p.wrote(2, large, at);
  CHECK(p.requests() == 1 + 7);
}

}  // namespace LEFTRIGHT_TEST_FILE
