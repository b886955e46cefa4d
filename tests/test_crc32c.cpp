// SPDX-License-Identifier: Apache-2.0
// Unit tests of CRC32C: the standard check values for each implementation, hardware against
// software on random buffers of many lengths and alignments, and piecewise against one-shot.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/detail/storage/crc32c.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using crc_fn = std::uint32_t (*)(const void*, std::size_t, std::uint32_t) noexcept;

struct implementation {
  const char* name;
  crc_fn fn;
};

/// Every implementation this build and this CPU can run.
std::vector<implementation> implementations() {
  std::vector<implementation> out{{"crc32c (dispatch)", &leftright::detail::crc32c},
                                  {"crc32c_sw", &leftright::detail::crc32c_sw}};
#if LEFTRIGHT_CRC32C_HW
  if (leftright::detail::crc32c_hw_supported()) {
    out.push_back({"crc32c_hw", &leftright::detail::crc32c_hw});
  }
#endif
  return out;
}

std::vector<unsigned char> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

}  // namespace

TEST_CASE("crc32c: the standard check values, for every implementation", "[crc32c]") {
  std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xFF), ascending(32), descending(32);
  for (std::size_t i = 0; i < 32; ++i) {
    ascending[i] = static_cast<unsigned char>(i);
    descending[i] = static_cast<unsigned char>(31 - i);
  }
  const std::string_view check = "123456789";

  for (const implementation& impl : implementations()) {
    INFO(impl.name);
    CHECK(impl.fn(check.data(), check.size(), 0) == 0xE3069283u);
    CHECK(impl.fn(zeros.data(), zeros.size(), 0) == 0x8A9136AAu);
    CHECK(impl.fn(ones.data(), ones.size(), 0) == 0x62A8AB43u);
    CHECK(impl.fn(ascending.data(), ascending.size(), 0) == 0x46DD794Eu);
    CHECK(impl.fn(descending.data(), descending.size(), 0) == 0x113FDB5Cu);
    // The empty input leaves the CRC as it was; the default start is 0.
    CHECK(impl.fn(nullptr, 0, 0) == 0u);
    CHECK(impl.fn(nullptr, 0, 0xDEADBEEFu) == 0xDEADBEEFu);
    CHECK(impl.fn("a", 1, 0) == 0xC1D04330u);
  }
  CHECK(leftright::detail::crc32c(check.data(), check.size()) == 0xE3069283u);
}

TEST_CASE("crc32c: the hardware path is compiled in on x86-64 and used when the CPU has it",
          "[crc32c]") {
#if LEFTRIGHT_CRC32C_HW
  CHECK(leftright::detail::crc32c_hw_supported() == (__builtin_cpu_supports("sse4.2") != 0));
  if (!leftright::detail::crc32c_hw_supported()) WARN("no SSE4.2: only the table is tested");
#else
  CHECK_FALSE(leftright::detail::crc32c_hw_supported());
  WARN("crc32c_hw is not compiled in on this target: only the table is tested");
#endif
}

TEST_CASE("crc32c: every implementation agrees on random buffers of many lengths and alignments",
          "[crc32c]") {
  std::mt19937_64 rng(lrtest::test_seed());
  const auto impls = implementations();
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 300; ++n) lengths.push_back(n);
  // Around the three-stream rounds of the hardware path (3 * crc32c_stride bytes each).
  constexpr std::size_t round = 3 * leftright::detail::crc32c_stride;
  for (std::size_t n : {511u, 512u, 513u, 4095u, 4096u, 4097u, 65536u + 13u}) lengths.push_back(n);
  for (std::size_t n : {round - 1, round, round + 1, round + 7, 2 * round, 2 * round + 9, 5 * round + 4093}) {
    lengths.push_back(n);
  }

  for (std::size_t n : lengths) {
    // A buffer with 16 bytes of slack, read at every offset 0..15 (every alignment).
    const std::vector<unsigned char> buf = random_bytes(rng, n + 16);
    const std::uint32_t start = (n % 3 == 0) ? 0u : static_cast<std::uint32_t>(rng());
    for (std::size_t offset = 0; offset < 16; ++offset) {
      const std::uint32_t expected = leftright::detail::crc32c_sw(buf.data() + offset, n, start);
      for (const implementation& impl : impls) {
        if (impl.fn(buf.data() + offset, n, start) != expected) {
          FAIL(impl.name << " differs from crc32c_sw: length " << n << ", offset " << offset);
        }
      }
    }
  }
  SUCCEED();
}

TEST_CASE("crc32c: computing piecewise gives the one-shot result", "[crc32c]") {
  std::mt19937_64 rng(lrtest::test_seed());
  const std::vector<unsigned char> buf = random_bytes(rng, 300);
  for (const implementation& impl : implementations()) {
    INFO(impl.name);
    const std::uint32_t whole = impl.fn(buf.data(), buf.size(), 0);
    // Every split point in two.
    for (std::size_t cut = 0; cut <= buf.size(); ++cut) {
      const std::uint32_t a = impl.fn(buf.data(), cut, 0);
      if (impl.fn(buf.data() + cut, buf.size() - cut, a) != whole) FAIL("split at " << cut);
    }
    // Random pieces, mixing implementations from piece to piece.
    const auto impls = implementations();
    for (int round = 0; round < 200; ++round) {
      std::uint32_t crc = 0;
      std::size_t pos = 0;
      while (pos < buf.size()) {
        const std::size_t piece = std::min<std::size_t>(rng() % 40, buf.size() - pos);
        crc = impls[rng() % impls.size()].fn(buf.data() + pos, piece, crc);
        pos += piece;
      }
      if (crc != whole) FAIL("random pieces, round " << round);
    }
    // The check value, one byte at a time.
    const std::string_view check = "123456789";
    std::uint32_t crc = 0;
    for (char c : check) crc = impl.fn(&c, 1, crc);
    CHECK(crc == 0xE3069283u);
  }
}

TEST_CASE("crc32c: a single flipped bit always changes the checksum", "[crc32c]") {
  std::mt19937_64 rng(lrtest::test_seed());
  std::vector<unsigned char> buf = random_bytes(rng, 64);
  const std::uint32_t base = leftright::detail::crc32c(buf.data(), buf.size());
  for (std::size_t bit = 0; bit < buf.size() * 8; ++bit) {
    buf[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    if (leftright::detail::crc32c(buf.data(), buf.size()) == base) FAIL("bit " << bit);
    buf[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
  }
  SUCCEED();
}

}  // namespace LEFTRIGHT_TEST_FILE
