// SPDX-License-Identifier: Apache-2.0
// leftright: the directory's marker file (MAP). It records, durably, that the directory holds a
// map's log, so that a log whose segments are all gone (deleted, or never copied) is refused
// rather than reopened as an empty map. See format.hpp for the bytes and when it is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../../storage_error.hpp"
#include "crc32c.hpp"
#include "format.hpp"
#include "fs.hpp"

namespace leftright::detail::storage {

/// The marker's bytes for these codecs.
inline std::vector<std::byte> marker_bytes(const std::string& key_codec, const std::string& value_codec) {
  std::vector<std::byte> m(24 + key_codec.size() + value_codec.size() + 4);
  put_file_start(m.data(), marker_magic);
  put_codec_names(m.data() + 16, key_codec, value_codec);
  const std::size_t crc_at = m.size() - 4;
  store_le<std::uint32_t>(m.data() + crc_at, crc32c(m.data(), crc_at));
  return m;
}

/// Whether dir holds a marker (names: the directory's file names). Throws storage_error if it
/// is damaged, of another format, or for other key or value types. Reads only.
inline bool read_marker(file_system& fsys, const fs::path& dir, const std::vector<std::string>& names,
                        const std::string& key_codec, const std::string& value_codec) {
  bool present = false;
  for (const auto& n : names) present = present || n == marker_name;
  if (!present) return false;
  const fs::path path = dir / marker_name;
  auto f = fsys.open(path, open_mode::read_only);
  const auto size = f->size();
  if (size < 28 || size > 65536) throw storage_error(path, "open", 0, "damaged map marker (size)");
  std::vector<std::byte> m(static_cast<std::size_t>(size));
  if (f->read_at(m.data(), m.size(), 0) != m.size()) throw storage_error(path, "open", 0, "damaged map marker");
  const std::size_t crc_at = m.size() - 4;
  if (std::memcmp(m.data(), marker_magic, 8) != 0 || load_le<std::uint32_t>(m.data() + crc_at) != crc32c(m.data(), crc_at)) {
    throw storage_error(path, "open", 0, "damaged map marker (magic or checksum)");
  }
  if (load_le<std::uint32_t>(m.data() + 8) != format_version) {
    throw storage_error(path, "open", 0, "unsupported map format version " + std::to_string(load_le<std::uint32_t>(m.data() + 8)));
  }
  if (load_le<std::uint32_t>(m.data() + 12) != endian_mark) {
    throw storage_error(path, "open", 0, "map written with another byte order");
  }
  const std::uint64_t klen = load_le<std::uint32_t>(m.data() + 16), vlen = load_le<std::uint32_t>(m.data() + 20);
  if (24 + klen + vlen != crc_at) throw storage_error(path, "open", 0, "damaged map marker (codec lengths)");
  check_codec_names(m.data() + 24, klen, vlen, path, "the map", key_codec, value_codec);
  return true;
}

/// Writes dir's marker, durably and atomically: MAP.tmp, written and synced, renamed into place,
/// the directory synced. Call once the first segment is durable.
inline void write_marker(file_system& fsys, const fs::path& dir, const std::string& key_codec,
                         const std::string& value_codec) {
  const fs::path path = dir / marker_name;
  const fs::path tmp = path.string() + ".tmp";
  fsys.remove(tmp);
  const auto m = marker_bytes(key_codec, value_codec);
  {
    auto f = fsys.open(tmp, open_mode::create_new);
    f->write_at(m.data(), m.size(), 0);
    f->sync();
  }
  fsys.rename(tmp, path);
  fsys.sync_directory(dir);
}

}  // namespace leftright::detail::storage
