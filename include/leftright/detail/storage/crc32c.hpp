// SPDX-License-Identifier: Apache-2.0
// leftright: CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every WAL
// record and snapshot. Two implementations with identical results:
//   crc32c_hw  the SSE4.2 crc32 instruction, 8 bytes per instruction (x86-64 with GCC or Clang
//              only; LEFTRIGHT_CRC32C_HW is 1 where it is compiled in);
//   crc32c_sw  portable slicing-by-8 over tables computed at compile time.
// crc32c() picks the hardware one when the CPU has SSE4.2 (checked once, then cached).
//
// All three take and return a finished CRC, so a checksum can be computed piecewise:
//   crc32c(b, nb, crc32c(a, na)) == crc32c(a + b, na + nb),   crc32c(anything, 0, c) == c.
// Check values: "123456789" -> 0xE3069283; 32 zero bytes -> 0x8A9136AA (RFC 3720, B.4).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LEFTRIGHT_CRC32C_HW 1
#include <nmmintrin.h>
#else
#define LEFTRIGHT_CRC32C_HW 0
#endif

namespace leftright::detail {

/// The CRC32C polynomial, bit-reversed (the reflected form the table and the instruction use).
inline constexpr std::uint32_t crc32c_poly = 0x82F63B78u;

/// Slicing-by-8 tables: [0] is the byte-wise table; [k][b] is the CRC of byte b followed by k
/// zero bytes, so eight table lookups consume eight input bytes at once.
inline constexpr std::array<std::array<std::uint32_t, 256>, 8> crc32c_tables = [] {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) != 0 ? (c >> 1) ^ crc32c_poly : c >> 1;
    t[0][b] = c;
  }
  for (std::size_t k = 1; k < 8; ++k) {
    for (std::size_t b = 0; b < 256; ++b) {
      const std::uint32_t prev = t[k - 1][b];
      t[k][b] = (prev >> 8) ^ t[0][prev & 0xFFu];
    }
  }
  return t;
}();

/// Portable CRC32C: slicing-by-8, about 1 byte per cycle. Any alignment, any host byte order.
/// crc: the CRC of the bytes before these (0 to start).
inline std::uint32_t crc32c_sw(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept {
  const auto& t = crc32c_tables;
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  while (n >= 8) {
    std::uint64_t w;
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(&w, p, 8);
    } else {
      w = 0;
      for (int i = 7; i >= 0; --i) w = (w << 8) | p[i];
    }
    w ^= c;
    c = t[7][w & 0xFFu] ^ t[6][(w >> 8) & 0xFFu] ^ t[5][(w >> 16) & 0xFFu] ^
        t[4][(w >> 24) & 0xFFu] ^ t[3][(w >> 32) & 0xFFu] ^ t[2][(w >> 40) & 0xFFu] ^
        t[1][(w >> 48) & 0xFFu] ^ t[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = (c >> 8) ^ t[0][(c ^ *p) & 0xFFu];
    ++p;
    --n;
  }
  return ~c;
}

/// Long inputs are checksummed as three interleaved streams of this many bytes each, so that
/// three independent crc32 instructions are in flight (the instruction's latency is 3 cycles,
/// its throughput 1), then combined.
inline constexpr std::size_t crc32c_stride = 1024;

/// Appending crc32c_stride zero bytes to a raw CRC register (no pre- or post-inversion) is a
/// linear map of its 32 bits: zeros[k][b] is its image of byte b at byte position k. Combining
/// three streams A, B, C: crc(A B C) = shift(shift(crc(A)) ^ crc0(B)) ^ crc0(C), where crc0
/// starts from a zero register (the register update is linear in the register).
inline constexpr std::array<std::array<std::uint32_t, 256>, 4> crc32c_zeros = [] {
  std::array<std::uint32_t, 32> column{};  // the image of each single bit
  for (int i = 0; i < 32; ++i) {
    std::uint32_t c = std::uint32_t{1} << i;
    for (std::size_t n = 0; n < crc32c_stride; ++n) c = (c >> 8) ^ crc32c_tables[0][c & 0xFFu];
    column[static_cast<std::size_t>(i)] = c;
  }
  std::array<std::array<std::uint32_t, 256>, 4> z{};
  for (std::size_t k = 0; k < 4; ++k) {
    for (std::size_t b = 0; b < 256; ++b) {
      std::uint32_t v = 0;
      for (std::size_t bit = 0; bit < 8; ++bit) {
        if ((b >> bit) & 1u) v ^= column[8 * k + bit];
      }
      z[k][b] = v;
    }
  }
  return z;
}();

/// The raw register c followed by crc32c_stride zero bytes.
inline std::uint32_t crc32c_shift(std::uint32_t c) noexcept {
  const auto& z = crc32c_zeros;
  return z[0][c & 0xFFu] ^ z[1][(c >> 8) & 0xFFu] ^ z[2][(c >> 16) & 0xFFu] ^ z[3][c >> 24];
}

#if LEFTRIGHT_CRC32C_HW
/// CRC32C with the SSE4.2 crc32 instruction: byte steps up to 8-byte alignment, then 8 bytes per
/// instruction, three streams at once while at least 3 * crc32c_stride bytes remain (about 8
/// bytes per cycle), one stream for the rest (8 bytes per 3 cycles).
/// Precondition: the CPU has SSE4.2 (crc32c_hw_supported()); otherwise SIGILL.
__attribute__((target("sse4.2"))) inline std::uint32_t crc32c_hw(const void* data, std::size_t n,
                                                                 std::uint32_t crc = 0) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  while (n > 0 && (reinterpret_cast<std::uintptr_t>(p) & 7u) != 0) {
    c = _mm_crc32_u8(c, *p);
    ++p;
    --n;
  }
  std::uint64_t c64 = c;
  while (n >= 3 * crc32c_stride) {
    std::uint64_t a = c64, b = 0, d = 0;
    for (std::size_t i = 0; i < crc32c_stride; i += 8) {
      std::uint64_t wa, wb, wd;
      std::memcpy(&wa, p + i, 8);
      std::memcpy(&wb, p + crc32c_stride + i, 8);
      std::memcpy(&wd, p + 2 * crc32c_stride + i, 8);
      a = _mm_crc32_u64(a, wa);
      b = _mm_crc32_u64(b, wb);
      d = _mm_crc32_u64(d, wd);
    }
    // The instruction leaves the upper halves zero.
    c64 = crc32c_shift(crc32c_shift(static_cast<std::uint32_t>(a)) ^ static_cast<std::uint32_t>(b)) ^
          static_cast<std::uint32_t>(d);
    p += 3 * crc32c_stride;
    n -= 3 * crc32c_stride;
  }
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    c64 = _mm_crc32_u64(c64, w);
    p += 8;
    n -= 8;
  }
  c = static_cast<std::uint32_t>(c64);  // the instruction leaves the upper half zero
  while (n > 0) {
    c = _mm_crc32_u8(c, *p);
    ++p;
    --n;
  }
  return ~c;
}
#endif

/// True if crc32c_hw is compiled in and this CPU can run it. The CPU is asked once; later calls
/// read a cached flag (a function-local static: thread-safe initialization).
inline bool crc32c_hw_supported() noexcept {
#if LEFTRIGHT_CRC32C_HW
  static const bool supported = [] {
    __builtin_cpu_init();  // harmless after main(); needed if first called from a constructor
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return supported;
#else
  return false;
#endif
}

/// CRC32C of n bytes at data, continuing from crc (the CRC of the bytes before; 0 to start).
/// Uses the SSE4.2 instruction when the CPU has it, the table otherwise; same result either way.
/// Thread-safety: any thread. Cost: O(n), no allocation.
inline std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept {
#if LEFTRIGHT_CRC32C_HW
  if (crc32c_hw_supported()) return crc32c_hw(data, n, crc);
#endif
  return crc32c_sw(data, n, crc);
}

}  // namespace leftright::detail
