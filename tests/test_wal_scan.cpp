// SPDX-License-Identifier: Apache-2.0
// The log scan's tail check (wal.hpp, scan_segment) on crafted segments, and the file-system hint
// it reads the tail by (file::data_range):
//   - a tail of overlapping record-like headers, each claiming most of the segment, is checked in
//     linear time: the check stops at its checksum budget and recovery refuses the segment
//     (quadratic before: each header cost a checksum over the rest of the segment);
//   - a few such headers are within the budget: the tail is torn, recovery cuts it;
//   - a contradicting record after them is still found; headers that fail a cheap field are
//     never checksummed;
//   - a data_range hint is followed (bytes it calls zero are not read) and the POSIX one is never
//     wrong: it skips no non-zero byte of a preallocated, partly written file.
// No atomics in this file.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::temp_dir;

namespace {

namespace st = leftright::detail::storage;
namespace fs = std::filesystem;

using key = std::uint64_t;
using value = std::uint64_t;

constexpr std::uint64_t salt = 0x1234567800000000ull | 0x9abcdef1u;

/// A batch payload: count inserts of (k, k).
std::string batch(std::uint32_t count, std::uint64_t first_key) {
  std::string out;
  leftright::byte_writer w(out);
  w.put_u32(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    w.put_u8(static_cast<std::uint8_t>(st::op_tag::insert_or_assign));
    leftright::encode<key>(first_key + i, w);
    leftright::encode<value>(first_key + i, w);
  }
  return out;
}

/// A segment under construction: a valid header for <u64, u64> and records appended at will.
struct segment {
  std::vector<std::byte> bytes;
  std::size_t off = st::segment_header_size;

  segment(std::size_t size, std::uint64_t first_seq) : bytes(size) {
    const auto h = st::segment_header(salt, first_seq, size, leftright::codec_name<key>(), leftright::codec_name<value>());
    std::memcpy(bytes.data(), h.data(), h.size());
  }
  /// A record header at `at` (crc valid if good), payload copied in; returns its aligned size.
  std::size_t put(std::size_t at, std::uint64_t seq, std::uint64_t synced, const std::string& payload,
                  bool good = true, std::uint32_t claimed_len = 0) {
    std::byte* rec = bytes.data() + at;
    const std::uint32_t len = claimed_len ? claimed_len : static_cast<std::uint32_t>(payload.size());
    leftright::detail::store_le<std::uint32_t>(rec + 4, len);
    leftright::detail::store_le<std::uint32_t>(rec + 8, st::record_type_batch);
    leftright::detail::store_le<std::uint32_t>(rec + 12, static_cast<std::uint32_t>(salt));
    leftright::detail::store_le<std::uint64_t>(rec + 16, seq);
    leftright::detail::store_le<std::uint64_t>(rec + 24, synced);
    std::memcpy(rec + st::record_header_size, payload.data(), payload.size());
    const std::uint32_t crc = leftright::detail::crc32c(rec + 4, st::record_header_size - 4 + len);
    leftright::detail::store_le<std::uint32_t>(rec, good ? crc : crc ^ 1u);
    return st::align8(st::record_header_size + payload.size());
  }
  void append(std::uint64_t seq, std::uint64_t synced, const std::string& payload) {
    off += put(off, seq, synced, payload);
  }
  std::span<const std::byte> span() const { return bytes; }
  st::segment_header_info info() const {
    return *st::read_segment_header(span(), "seg", leftright::codec_name<key>(), leftright::codec_name<value>());
  }
};

/// Three good records (versions 1..3), then a torn one where version 4 should be.
segment torn_after_three(std::size_t size) {
  segment s(size, 1);
  for (std::uint64_t v = 1; v <= 3; ++v) s.append(v, v - 1, batch(4, v * 100));
  s.put(s.off, 4, 3, batch(4, 400), /*good=*/false);
  return s;
}

/// Fills [from, end) with back-to-back record-like headers (one every 32 bytes) that claim
/// version 5 and that 4 was durable, each with a length reaching to the end of the segment (so
/// over all the headers after it) and a wrong crc.
void fill_with_claims(segment& s, std::size_t from, std::size_t end) {
  for (std::size_t at = from; at + st::record_header_size <= end; at += st::record_header_size) {
    std::byte* rec = s.bytes.data() + at;
    const auto len = static_cast<std::uint32_t>(s.bytes.size() - at - st::record_header_size);
    leftright::detail::store_le<std::uint32_t>(rec, 0xdeadbeefu);  // matches no crc here
    leftright::detail::store_le<std::uint32_t>(rec + 4, len);
    leftright::detail::store_le<std::uint32_t>(rec + 8, st::record_type_batch);
    leftright::detail::store_le<std::uint32_t>(rec + 12, static_cast<std::uint32_t>(salt));
    leftright::detail::store_le<std::uint64_t>(rec + 16, 5);
    leftright::detail::store_le<std::uint64_t>(rec + 24, 4);
  }
}

/// Writes a segment as the only log file of a map directory (with the directory's marker).
void write_segment(const fs::path& dir, const segment& s) {
  fs::create_directories(dir);
  st::write_marker(*st::default_file_system(), dir, leftright::codec_name<key>(), leftright::codec_name<value>());
  const fs::path p = dir / st::segment_name(1);
  const int fd = ::open(p.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, s.bytes.data(), s.bytes.size()) == static_cast<ssize_t>(s.bytes.size()));
  ::close(fd);
}

leftright::durable_options options(const fs::path& dir) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::none;
  o.segment_size = std::size_t{1} << 16;
  o.checkpoint_bytes = 0;
  return o;
}

}  // namespace

TEST_CASE("a tail of overlapping record-like headers is checked in linear time, then refused", "[wal][scan]") {
  lrtest::watchdog dog(std::chrono::seconds(60), "bounded tail check");
  // Unbounded, this is quadratic: 2^17 headers, each a crc over 2 MiB on average (256 GiB).
  const std::size_t size = std::size_t{4} << 20;
  segment s = torn_after_three(size);
  fill_with_claims(s, s.off + 128, size);

  const auto started = std::chrono::steady_clock::now();
  const auto scan = st::scan_segment(s.span(), s.info());
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(scan.records.size() == 3);
  CHECK(scan.torn);
  CHECK_FALSE(scan.contradicting_offset);
  REQUIRE(scan.unchecked_offset);
  CHECK(*scan.unchecked_offset > scan.end_offset);
  // The budget is twice the segment: a few milliseconds of crc; allow a slow sanitizer build.
  CHECK(took < std::chrono::seconds(10));

  temp_dir tmp("walscan");
  write_segment(tmp.path() / "map", s);
  try {
    (void)leftright::open_map<key, value>(options(tmp.path() / "map"));
    FAIL("a tail that no crash leaves was accepted");
  } catch (const leftright::storage_error& e) {
    const std::string what = e.what();
    CHECK(what.find(st::segment_name(1)) != std::string::npos);
    CHECK(what.find("record-like headers") != std::string::npos);
  }
}

TEST_CASE("a few record-like headers after a torn record are within budget: the tail is cut", "[wal][scan]") {
  const std::size_t size = std::size_t{1} << 16;
  segment s = torn_after_three(size);
  // Ten claims of version 5 (4 was durable, they say), each with a wrong crc: checked, and
  // rejected, well inside the budget.
  for (std::size_t i = 0; i < 10; ++i) s.put(s.off + 256 + 64 * i, 5, 4, std::string(24, 'x'), /*good=*/false);
  const auto scan = st::scan_segment(s.span(), s.info());
  CHECK(scan.records.size() == 3);
  CHECK(scan.torn);
  CHECK_FALSE(scan.contradicting_offset);
  CHECK_FALSE(scan.unchecked_offset);

  temp_dir tmp("walscan");
  write_segment(tmp.path() / "map", s);
  {
    auto [w, r] = leftright::open_map<key, value>(options(tmp.path() / "map"));
    CHECK(w.version() == 3);
    CHECK(w.recovery().tail_truncated);
    CHECK(r.size() == 12);
    w.insert_or_assign(1, 1);
    w.publish();
  }
  auto [w, r] = leftright::open_map<key, value>(options(tmp.path() / "map"));
  CHECK(w.version() == 4);
  CHECK(r.size() == 13);
}

TEST_CASE("a contradicting record after failed claims is still found; cheap fields come first", "[wal][scan]") {
  const std::size_t size = std::size_t{1} << 16;
  segment s = torn_after_three(size);
  std::size_t at = s.off + 256;
  // Headers that fail a cheap field, with lengths to the end (never checksummed, so they do not
  // count against the budget): seq not after the missing one, synced before it, other salt.
  for (int i = 0; i < 200; ++i) {
    const auto len = static_cast<std::uint32_t>(size - at - st::record_header_size);
    s.put(at, 4, 3, "", false, len);          // seq == expected: the torn one itself
    s.put(at + 32, 5, 3, "", false, len - 32);  // synced < expected: a crash explains it
    at += 64;
  }
  const std::size_t good_at = at + 64;
  s.put(good_at, 6, 4, batch(2, 600));  // valid, and says version 4 was durable
  const auto scan = st::scan_segment(s.span(), s.info());
  CHECK(scan.records.size() == 3);
  REQUIRE(scan.contradicting_offset);
  CHECK(*scan.contradicting_offset == good_at);
  CHECK_FALSE(scan.unchecked_offset);
}

TEST_CASE("the scan reads the tail only where data_range says it may hold data", "[wal][scan]") {
  const std::size_t size = std::size_t{1} << 16;
  segment s(size, 1);
  s.append(1, 0, batch(2, 10));
  s.bytes[size - 100] = std::byte{7};  // stray bytes near the end
  CHECK(st::scan_segment(s.span(), s.info()).torn);
  // A hint that says the rest is zeros is believed (it is the file system's word).
  const auto none_left = [](std::uint64_t, std::uint64_t n) { return std::pair<std::uint64_t, std::uint64_t>{n, n}; };
  CHECK_FALSE(st::scan_segment(s.span(), s.info(), none_left).torn);
  // A hint naming the last page finds them.
  const auto last_page = [](std::uint64_t off, std::uint64_t n) {
    return std::pair<std::uint64_t, std::uint64_t>{std::max<std::uint64_t>(off, n - 4096), n};
  };
  const auto scan = st::scan_segment(s.span(), s.info(), last_page);
  CHECK(scan.records.size() == 1);
  CHECK(scan.torn);
}

TEST_CASE("the POSIX data_range never skips a non-zero byte", "[wal][scan][fs]") {
  temp_dir tmp("walscan");
  auto fsys = st::default_file_system();
  const fs::path p = tmp.path() / "f";
  const std::size_t size = std::size_t{4} << 20;
  auto f = fsys->open(p, st::open_mode::create_new);
  f->allocate(size);
  std::vector<std::byte> page(4096, std::byte{1});
  f->write_at(page.data(), page.size(), 0);
  f->sync();
  {
    auto m = f->map(size, true);  // written through a mapping, as the log is, and not synced
    m->data()[size / 2 + 17] = std::byte{9};
  }
  const std::uint64_t marks[] = {0, 4095, size / 2 + 17};
  std::mt19937_64 rng(lrtest::test_seed());
  for (int trial = 0; trial < 200; ++trial) {
    const std::uint64_t off = rng() % size;
    const auto [first, second] = f->data_range(off);
    REQUIRE(first >= off);
    REQUIRE(first <= size);
    REQUIRE(second <= size);
    for (std::uint64_t mark : marks) {
      if (mark >= off) {
        INFO("off " << off << " first " << first << " mark " << mark);
        CHECK(first <= mark);  // [off, first) reads as zeros
      }
    }
  }
  CHECK(f->data_range(size).first == size);
}

}  // namespace LEFTRIGHT_TEST_FILE
