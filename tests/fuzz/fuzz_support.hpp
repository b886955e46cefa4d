// SPDX-License-Identifier: Apache-2.0
// Shared by the fuzz targets and the corpus generator: the layout of each target's input (a
// mode byte, then bytes), the checksum fix-ups that let mutated inputs reach the decoders, the
// types the codec target decodes, and a check that aborts (the fuzzer reports it as a crash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <leftright/codec.hpp>
#include <leftright/detail/storage/crc32c.hpp>
#include <leftright/detail/storage/format.hpp>
#include <leftright/detail/storage/wal.hpp>
#include <leftright/storage_error.hpp>

namespace lrfuzz {

namespace st = leftright::detail::storage;

/// A property of the code under test does not hold: report and abort.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}
inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

/// Every storage_error a parser throws on bad bytes names an operation; the decoders' is
/// "decode" with no path and no errno (codec.hpp's contract).
inline void check_decode_error(const leftright::storage_error& e) {
  check(e.operation() == "decode", "a decoder threw a storage_error whose operation is not decode");
  check(e.path().empty(), "a decoder's storage_error names a path");
  check(e.code().value() == 0, "a decoder's storage_error carries an errno");
}

// ---------------------------------------------------------------------------------------------
// fuzz_wal. Input: a mode byte, then bytes.
//   wal_synth_header: the bytes are the records region (what follows offset 4096); the target
//                     puts a valid header for <u64, str> in front, with the salt and first seq of
//                     the record the bytes start with, so mutations explore records, not the
//                     header check.
//   wal_fix_crcs:     before scanning, the header's crc and the crc of every record along the
//                     chain of record lengths are recomputed, so a mutated payload still reaches
//                     the batch decoder.
// Neither bit: the bytes are one segment file, as found on disk.

inline constexpr std::uint8_t wal_synth_header = 1;
inline constexpr std::uint8_t wal_fix_crcs = 2;
using wal_key = std::uint64_t;
using wal_value = std::string;

/// The segment file an input stands for.
inline std::vector<std::byte> wal_segment(std::uint8_t mode, std::span<const std::byte> body) {
  std::vector<std::byte> seg;
  if (mode & wal_synth_header) {
    std::uint64_t salt = 0x5eed5eed00000000u;
    std::uint64_t first_seq = 1;
    if (body.size() >= 16) salt |= leftright::detail::load_le<std::uint32_t>(body.data() + 12);
    if (body.size() >= 24) first_seq = leftright::detail::load_le<std::uint64_t>(body.data() + 16);
    seg = st::segment_header(salt, first_seq, st::segment_header_size + body.size(), leftright::codec_name<wal_key>(),
                             leftright::codec_name<wal_value>());
  }
  seg.insert(seg.end(), body.begin(), body.end());
  if (mode & wal_fix_crcs) {
    if (seg.size() >= st::segment_header_size) {
      const std::size_t at = st::segment_header_size - 4;
      leftright::detail::store_le<std::uint32_t>(seg.data() + at, leftright::detail::crc32c(seg.data(), at));
    }
    std::size_t off = st::segment_header_size;
    while (off + st::record_header_size <= seg.size()) {
      const auto len = leftright::detail::load_le<std::uint32_t>(seg.data() + off + 4);
      if (len > seg.size() - off - st::record_header_size) break;
      leftright::detail::store_le<std::uint32_t>(seg.data() + off,
                                  leftright::detail::crc32c(seg.data() + off + 4, st::record_header_size - 4 + len));
      off += st::align8(st::record_header_size + len);
    }
  }
  return seg;
}

// ---------------------------------------------------------------------------------------------
// fuzz_snapshot. Input: a mode byte, then one snapshot file's bytes.
//   snap_fix: before parsing, the header's crc (where the codec lengths place it), the trailer's
//             data length and the data crc are recomputed, so mutated entries reach the decoder.

inline constexpr std::uint8_t snap_fix = 1;
using snap_key = std::uint64_t;
using snap_value = std::string;

inline std::vector<std::byte> snapshot_file(std::uint8_t mode, std::span<const std::byte> body) {
  std::vector<std::byte> f(body.begin(), body.end());
  if ((mode & snap_fix) && f.size() >= 44 + st::snapshot_trailer_size) {
    const auto klen = leftright::detail::load_le<std::uint32_t>(f.data() + 32);
    const auto vlen = leftright::detail::load_le<std::uint32_t>(f.data() + 36);
    const std::uint64_t crc_at = 40 + std::uint64_t{klen} + vlen;
    if (crc_at + 4 + st::snapshot_trailer_size <= f.size()) {
      const auto at = static_cast<std::size_t>(crc_at);
      leftright::detail::store_le<std::uint32_t>(f.data() + at, leftright::detail::crc32c(f.data(), at));
      const std::size_t data_start = at + 4;
      const std::size_t data_len = f.size() - st::snapshot_trailer_size - data_start;
      std::byte* t = f.data() + f.size() - st::snapshot_trailer_size;
      leftright::detail::store_le<std::uint64_t>(t, data_len);
      leftright::detail::store_le<std::uint32_t>(t + 8, leftright::detail::crc32c(f.data() + data_start, data_len));
    }
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// fuzz_codec. Input: a type byte (index into codec_types, modulo its size), then the bytes to
// decode as that type.

enum class color : std::uint16_t { red = 1, green = 2, blue = 3 };
enum level : std::int64_t { low = -1, high = 1 };

using codec_types = std::tuple<
    // scalars
    bool, std::uint8_t, std::int8_t, char, std::uint16_t, std::int16_t, char16_t, std::uint32_t,
    std::int32_t, char32_t, std::uint64_t, std::int64_t, long long, color, level, float, double,
    // strings and vectors
    std::string, std::vector<std::uint8_t>, std::vector<char>, std::vector<std::int32_t>,
    std::vector<std::uint64_t>, std::vector<bool>, std::vector<float>, std::vector<double>,
    std::vector<color>,
    // pairs and tuples, nested
    std::pair<std::uint64_t, std::string>, std::pair<std::string, std::vector<std::uint16_t>>,
    std::pair<bool, double>, std::tuple<>, std::tuple<std::uint8_t, std::string, float>,
    std::tuple<std::pair<std::int32_t, std::string>, std::vector<std::uint64_t>, bool>,
    std::pair<std::tuple<std::string, std::string>, std::pair<color, std::vector<bool>>>,
    std::tuple<std::tuple<>, std::pair<std::string, std::tuple<double, std::vector<std::int16_t>>>>>;

inline constexpr std::size_t codec_type_count = std::tuple_size_v<codec_types>;

}  // namespace lrfuzz
