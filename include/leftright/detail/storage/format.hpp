// SPDX-License-Identifier: Apache-2.0
// leftright: the on-disk formats. All integers little-endian.
//
// Directory of a durable map:
//   LOCK                       flock'ed by the open map (shared by read-only opens)
//   MAP                        the marker: this directory holds a map's log (written once, when the
//                              first segment is durable; from then on a log segment must exist)
//   wal-<first seq, hex>.log   log segments, preallocated, written through a shared mapping
//   snap-<seq, hex>.dat        snapshots: the whole map as of version <seq>
//   *.tmp                      a file being written (snapshot, segment, marker) before its rename
//                              into place; removed at recovery
//
// Marker: magic "LRMAP001" | u32 format | u32 endian mark | u32 key codec length | u32 value codec
//           length | key codec | value codec | u32 crc32c of the bytes before it.
// Segment: a 4096-byte header page, then records from offset 4096, each 8-byte aligned. A segment
//   is created as <name>.tmp, preallocated, its header written and synced, then renamed into
//   place: a segment under its final name always has a complete header and its full size.
//   header: magic "LRWAL001" | u32 format | u32 endian mark 0x01020304 | u64 salt | u64 first seq |
//           u32 key codec length | u32 value codec length | key codec | value codec | ... |
//           u64 file size (as preallocated) at 4080 | u32 zero | u32 crc32c of bytes [0, 4092)
//   record: u32 crc32c of bytes [4, 32 + len) | u32 len | u32 type | u32 salt (low half of the
//           segment's) | u64 seq | u64 synced seq (every seq <= it was durable when this record
//           was written) | payload (len bytes) | zero padding to 8
//   type 1, batch: one published batch, version seq.
//   type 2, successor: len 0, the segment's last record: the log goes on in the segment whose
//           first seq is seq (written once that segment is durable, before any record goes in
//           it). Every segment keeps room for it.
//   The crc is stored last: a record whose crc does not match was not completely written.
// Snapshot: header: magic "LRSNAP01" | u32 format | u32 endian mark | u64 seq | u64 entries |
//           u32 key codec length | u32 value codec length | codecs | u32 crc32c of the header;
//           then the entries (key, value) in codec encoding; then a trailer:
//           u64 data length | u32 crc32c of the data | u32 zero | magic "LRSNEND1".
// Batch payload: u32 operation count, then per operation a u8 tag (1 insert_or_assign: key,
//           value; 2 insert: key, value; 3 erase: key; 4 clear; 5 set_meta: u32 length, the
//           metadata in its codec's encoding; last in a batch that set one).
// Metadata (a map whose Traits name a meta_type): the value codec recorded in every header is
//           "<value codec>+meta:<metadata codec>" (meta_codec_name), so files written with
//           metadata and without are refused by a map of the other kind, naming both; and a
//           snapshot's entries are preceded by u32 length | the published metadata, encoded.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "../../codec.hpp"  // store_le, load_le
#include "../../storage_error.hpp"

namespace leftright::detail::storage {

static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "leftright: mixed-endian hosts are not supported");

/// 2: the successor record, the marker file, the segment's size in its header. A directory
/// written in format 1 is refused (storage_error naming the version).
inline constexpr std::uint32_t format_version = 2;
inline constexpr std::uint32_t endian_mark = 0x01020304;
inline constexpr std::size_t segment_header_size = 4096;
inline constexpr std::size_t record_header_size = 32;
inline constexpr std::uint32_t record_type_batch = 1;
inline constexpr std::uint32_t record_type_successor = 2;
inline constexpr std::size_t segment_size_offset = 4080;  ///< the u64 file size in a segment's header
inline constexpr char marker_magic[8] = {'L', 'R', 'M', 'A', 'P', '0', '0', '1'};
inline constexpr const char* marker_name = "MAP";
inline constexpr char segment_magic[8] = {'L', 'R', 'W', 'A', 'L', '0', '0', '1'};
inline constexpr char snapshot_magic[8] = {'L', 'R', 'S', 'N', 'A', 'P', '0', '1'};
inline constexpr char snapshot_end_magic[8] = {'L', 'R', 'S', 'N', 'E', 'N', 'D', '1'};
inline constexpr std::size_t snapshot_trailer_size = 24;

enum class op_tag : std::uint8_t { insert_or_assign = 1, insert = 2, erase = 3, clear = 4, set_meta = 5 };

inline constexpr std::size_t align8(std::size_t n) noexcept { return (n + 7) & ~std::size_t{7}; }

// ---- What every file header holds: its start, and the codec names. ----

/// Writes what every file header starts with at p: magic, format_version, endian_mark (16 bytes).
inline void put_file_start(std::byte* p, const char (&magic)[8]) noexcept {
  std::memcpy(p, magic, 8);
  store_le<std::uint32_t>(p + 8, format_version);
  store_le<std::uint32_t>(p + 12, endian_mark);
}

/// Writes the codec names as every header carries them, at p: u32 key codec length | u32 value
/// codec length | key codec | value codec. Returns the bytes written.
inline std::size_t put_codec_names(std::byte* p, const std::string& key_codec, const std::string& value_codec) noexcept {
  store_le<std::uint32_t>(p, static_cast<std::uint32_t>(key_codec.size()));
  store_le<std::uint32_t>(p + 4, static_cast<std::uint32_t>(value_codec.size()));
  std::memcpy(p + 8, key_codec.data(), key_codec.size());
  std::memcpy(p + 8 + key_codec.size(), value_codec.data(), value_codec.size());
  return 8 + key_codec.size() + value_codec.size();
}

/// Checks the codec names a header holds (klen and vlen bytes at names, which the caller checked
/// are there) against the ones the map is opened with. Throws storage_error (path, "open")
/// naming both pairs if they differ; `holder` says whose they are ("the log", "the map").
inline void check_codec_names(const std::byte* names, std::uint64_t klen, std::uint64_t vlen,
                              const std::filesystem::path& path, const char* holder, const std::string& key_codec,
                              const std::string& value_codec) {
  const std::string k(reinterpret_cast<const char*>(names), static_cast<std::size_t>(klen));
  const std::string v(reinterpret_cast<const char*>(names + klen), static_cast<std::size_t>(vlen));
  if (k != key_codec || v != value_codec) {
    throw storage_error(path, "open", 0,
                        std::string(holder) + " holds keys '" + k + "' and values '" + v + "', opened as keys '" +
                            key_codec + "' and values '" + value_codec + "'");
  }
}

inline std::string hex_name(const char* prefix, std::uint64_t n, const char* suffix) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%016llx%s", prefix, static_cast<unsigned long long>(n), suffix);
  return buf;
}
inline std::string segment_name(std::uint64_t first_seq) { return hex_name("wal-", first_seq, ".log"); }
inline std::string snapshot_name(std::uint64_t seq) { return hex_name("snap-", seq, ".dat"); }

/// Parses "<prefix><16 hex digits><suffix>"; nullopt if the name is not of that form.
inline std::optional<std::uint64_t> parse_hex_name(std::string_view name, std::string_view prefix,
                                                   std::string_view suffix) {
  if (name.size() != prefix.size() + 16 + suffix.size()) return std::nullopt;
  if (name.substr(0, prefix.size()) != prefix || name.substr(prefix.size() + 16) != suffix) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  for (char c : name.substr(prefix.size(), 16)) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return std::nullopt;
    v = v << 4 | static_cast<std::uint64_t>(d);
  }
  return v;
}

}  // namespace leftright::detail::storage
