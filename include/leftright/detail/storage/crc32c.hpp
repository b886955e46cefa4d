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

#if LEFTRIGHT_CRC32C_HW
/// CRC32C with the SSE4.2 crc32 instruction: byte steps up to 8-byte alignment, then 8 bytes per
/// instruction (about 8 bytes per 3 cycles; the dependency chain is the limit).
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
