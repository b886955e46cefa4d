// SPDX-License-Identifier: Apache-2.0
// The version promises of the README ("Versions"): the version header says what the CMake project
// says, and a directory in a newer on-disk format is refused, with nothing in it changed.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include <absl/strings/str_cat.h>
#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>
#include <leftright/version.hpp>

#include "project_version.hpp"  // generated from project() in CMakeLists.txt
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

namespace fs = std::filesystem;
namespace st = leftright::detail::storage;

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

/// Every file of the directory but the lock, with its bytes.
std::map<std::string, std::string> data_files(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "LOCK") out.emplace(name, read_file(e.path()));
  }
  return out;
}

leftright::durable_options options(const fs::path& dir) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::sync;
  return o;
}

/// A map directory holding one published batch, and a snapshot of it if `checkpoint`.
void make_map_dir(const fs::path& dir, bool checkpoint) {
  auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
  w.insert_or_assign(1, 10);
  w.publish();
  if (checkpoint) w.checkpoint();
}

/// Rewrites the format version of a segment's header page (and the page's checksum, so that
/// the header is a complete one of that version).
void set_segment_format(const fs::path& p, std::uint32_t version) {
  std::string b = read_file(p);
  REQUIRE(b.size() >= st::segment_header_size);
  leftright::detail::store_le<std::uint32_t>(b.data() + 8, version);
  leftright::detail::store_le<std::uint32_t>(b.data() + st::segment_header_size - 4,
                              leftright::detail::crc32c(b.data(), st::segment_header_size - 4));
  write_file(p, b);
}

/// Rewrites the format version of a snapshot's header (and the header's checksum).
void set_snapshot_format(const fs::path& p, std::uint32_t version) {
  std::string b = read_file(p);
  REQUIRE(b.size() >= 44);
  leftright::detail::store_le<std::uint32_t>(b.data() + 8, version);
  const std::size_t crc_at = 40 + std::size_t{leftright::detail::load_le<std::uint32_t>(b.data() + 32)} +
                             leftright::detail::load_le<std::uint32_t>(b.data() + 36);
  REQUIRE(crc_at + 4 <= b.size());
  leftright::detail::store_le<std::uint32_t>(b.data() + crc_at, leftright::detail::crc32c(b.data(), crc_at));
  write_file(p, b);
}

/// Opens dir, which must fail with a storage_error whose message contains `what`.
void require_refused(const fs::path& dir, const std::string& what) {
  bool refused = false;
  try {
    auto opened = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
  } catch (const leftright::storage_error& e) {
    refused = true;
    INFO(e.what());
    CHECK(std::string(e.what()).find(what) != std::string::npos);
  }
  CHECK(refused);
}

}  // namespace

TEST_CASE("the version header matches the CMake project version", "[version]") {
  CHECK(LEFTRIGHT_VERSION_MAJOR == LEFTRIGHT_TEST_PROJECT_VERSION_MAJOR);
  CHECK(LEFTRIGHT_VERSION_MINOR == LEFTRIGHT_TEST_PROJECT_VERSION_MINOR);
  CHECK(LEFTRIGHT_VERSION_PATCH == LEFTRIGHT_TEST_PROJECT_VERSION_PATCH);
  CHECK(std::string(LEFTRIGHT_VERSION_STRING) == LEFTRIGHT_TEST_PROJECT_VERSION);
  CHECK(std::string(LEFTRIGHT_VERSION_STRING) ==
        absl::StrCat(LEFTRIGHT_VERSION_MAJOR, ".", LEFTRIGHT_VERSION_MINOR, ".", LEFTRIGHT_VERSION_PATCH));
  CHECK(LEFTRIGHT_VERSION ==
        LEFTRIGHT_VERSION_MAJOR * 10000 + LEFTRIGHT_VERSION_MINOR * 100 + LEFTRIGHT_VERSION_PATCH);
}

TEST_CASE("the storage format version in the version header is the one the library writes", "[version]") {
  CHECK(LEFTRIGHT_STORAGE_FORMAT_VERSION == st::format_version);
}

TEST_CASE("a log in a newer format is refused and left as it is", "[version]") {
  lrtest::temp_dir tmp("version-wal");
  const fs::path dir = tmp.path() / "map";
  make_map_dir(dir, false);
  for (const auto& [name, bytes] : data_files(dir)) {
    if (st::parse_hex_name(name, "wal-", ".log")) set_segment_format(dir / name, st::format_version + 1);
  }
  const auto before = data_files(dir);
  require_refused(dir, absl::StrCat("unsupported log format version ", st::format_version + 1));
  CHECK(data_files(dir) == before);
}

TEST_CASE("a snapshot in a newer format is refused and left as it is", "[version]") {
  lrtest::temp_dir tmp("version-snap");
  const fs::path dir = tmp.path() / "map";
  make_map_dir(dir, true);
  int snapshots = 0;
  for (const auto& [name, bytes] : data_files(dir)) {
    if (st::parse_hex_name(name, "snap-", ".dat")) {
      set_snapshot_format(dir / name, st::format_version + 1);
      ++snapshots;
    }
  }
  REQUIRE(snapshots == 1);
  const auto before = data_files(dir);
  require_refused(dir, "unsupported format version");
  CHECK(data_files(dir) == before);
}

}  // namespace LEFTRIGHT_TEST_FILE
