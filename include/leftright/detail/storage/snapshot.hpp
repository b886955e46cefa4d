// SPDX-License-Identifier: Apache-2.0
// leftright: snapshots. Written to a temp file with pwrite, synced, renamed into place and the
// directory synced; read back through a read-only mapping. See format.hpp for the bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../../storage_error.hpp"
#include "../../traits.hpp"  // no_meta
#include "batch.hpp"         // append_meta
#include "crc32c.hpp"
#include "format.hpp"
#include "fs.hpp"

namespace leftright::detail::storage {

/// Writes one snapshot: header, entries appended in encoded form, trailer; then makes it durable
/// and visible atomically (commit()). Destroying it uncommitted removes the temp file.
class snapshot_writer {
 public:
  snapshot_writer(std::shared_ptr<file_system> fsys, fs::path dir, std::uint64_t seq,
                  std::uint64_t entries, const std::string& key_codec, const std::string& value_codec)
      : fs_(std::move(fsys)),
        dir_(std::move(dir)),
        final_(dir_ / snapshot_name(seq)),
        tmp_(dir_ / (snapshot_name(seq) + ".tmp")) {
    fs_->remove(tmp_);  // a leftover of an earlier failed attempt
    file_ = fs_->open(tmp_, open_mode::create_new);
    std::vector<std::byte> h(44 + key_codec.size() + value_codec.size());
    put_file_start(h.data(), snapshot_magic);
    store_le<std::uint64_t>(h.data() + 16, seq);
    store_le<std::uint64_t>(h.data() + 24, entries);
    const std::size_t crc_at = 32 + put_codec_names(h.data() + 32, key_codec, value_codec);
    store_le<std::uint32_t>(h.data() + crc_at, crc32c(h.data(), crc_at));
    file_->write_at(h.data(), h.size(), 0);
    off_ = h.size();
    data_start_ = off_;
  }
  snapshot_writer(const snapshot_writer&) = delete;
  snapshot_writer& operator=(const snapshot_writer&) = delete;
  ~snapshot_writer() {
    if (!committed_) {
      file_.reset();
      try {
        fs_->remove(tmp_);
      } catch (...) {  // best effort: recovery removes temp files too
      }
    }
  }

  /// The buffer to encode entries into; flushed to the file as it grows.
  std::string& buffer() { return buf_; }
  void maybe_flush() {
    if (buf_.size() >= (std::size_t{1} << 20)) flush();
  }

  /// Writes the trailer, syncs, renames into place, syncs the directory.
  void commit() {
    flush();
    char t[snapshot_trailer_size];
    store_le<std::uint64_t>(t, off_ - data_start_);
    store_le<std::uint32_t>(t + 8, crc_);
    store_le<std::uint32_t>(t + 12, 0);
    std::memcpy(t + 16, snapshot_end_magic, 8);
    file_->write_at(t, sizeof t, off_);
    file_->sync();
    file_.reset();
    fs_->rename(tmp_, final_);
    committed_ = true;
    fs_->sync_directory(dir_);
  }
  const fs::path& path() const { return final_; }

 private:
  void flush() {
    if (buf_.empty()) return;
    crc_ = crc32c(buf_.data(), buf_.size(), crc_);
    file_->write_at(buf_.data(), buf_.size(), off_);
    off_ += buf_.size();
    buf_.clear();
  }

  std::shared_ptr<file_system> fs_;
  fs::path dir_, final_, tmp_;
  std::unique_ptr<file> file_;
  std::string buf_;
  std::uint64_t off_ = 0, data_start_ = 0;
  std::uint32_t crc_ = 0;
  bool committed_ = false;
};

/// Writes a map's state as snapshot `seq` of dir: its metadata first (unless Meta is no_meta),
/// then each (key, value) of entries through the codecs; then commits it (temp file, sync,
/// rename, directory sync). The one way a checkpoint and a follower's local copy write one.
/// Throws storage_error, or what a codec throws; a failure leaves no snapshot behind.
template <class Entries, class Meta>
void write_snapshot(const std::shared_ptr<file_system>& fsys, const fs::path& dir, std::uint64_t seq,
                    const Entries& entries, const Meta& meta, const std::string& key_codec,
                    const std::string& value_codec) {
  snapshot_writer snap(fsys, dir, seq, entries.size(), key_codec, value_codec);
  byte_writer w(snap.buffer());
  if constexpr (!std::is_same_v<Meta, no_meta>) append_meta(w, meta);
  for (const auto& [k, v] : entries) {
    leftright::encode(k, w);
    leftright::encode(v, w);
    snap.maybe_flush();
  }
  snap.commit();
}

/// Removes what a snapshot at v covers: log segments whose records are all <= v and older
/// snapshots; segments oldest first, so that a crash part way leaves no segment whose successor
/// is gone. Syncs the directory if it removed anything.
inline void remove_covered(file_system& fsys, const fs::path& dir, std::uint64_t v) {
  bool removed = false;
  std::vector<std::string> names = fsys.list(dir);
  std::sort(names.begin(), names.end());  // wal-<16 hex digits>: name order is version order
  for (const std::string& name : names) {
    const auto first = parse_hex_name(name, "wal-", ".log");
    const auto seq = parse_hex_name(name, "snap-", ".dat");
    if ((first && *first <= v) || (seq && *seq < v)) {
      fsys.remove(dir / name);
      removed = true;
    }
  }
  if (removed) fsys.sync_directory(dir);
}

/// A snapshot mapped for reading, its integrity checked.
struct snapshot_view {
  std::shared_ptr<mapping> map;
  std::uint64_t seq = 0;
  std::uint64_t entries = 0;
  std::span<const std::byte> data;
};

/// Checks a snapshot's bytes (the whole file) and returns a view of them (map left null; data
/// points into bytes). Throws storage_error naming path and what is wrong. Pure: no file access,
/// so it is what the fuzzer drives.
inline snapshot_view parse_snapshot(std::span<const std::byte> bytes, const fs::path& path,
                                    const std::string& key_codec, const std::string& value_codec) {
  const std::uint64_t size = bytes.size();
  if (size < 44 + snapshot_trailer_size) throw storage_error(path, "read snapshot", 0, "file too short");
  snapshot_view v;
  const std::byte* p = bytes.data();
  auto bad = [&](const std::string& why, std::uint64_t at) {
    return storage_error(path, "read snapshot", 0, why + " at offset " + std::to_string(at));
  };
  if (std::memcmp(p, snapshot_magic, 8) != 0) throw bad("not a snapshot (bad magic)", 0);
  const auto klen = load_le<std::uint32_t>(p + 32);
  const auto vlen = load_le<std::uint32_t>(p + 36);
  const std::uint64_t crc_at = 40 + std::uint64_t{klen} + vlen;
  if (crc_at + 4 + snapshot_trailer_size > size) throw bad("corrupt header", 32);
  if (load_le<std::uint32_t>(p + crc_at) != crc32c(p, static_cast<std::size_t>(crc_at))) {
    throw bad("header checksum mismatch", crc_at);
  }
  if (load_le<std::uint32_t>(p + 8) != format_version) throw bad("unsupported format version", 8);
  if (load_le<std::uint32_t>(p + 12) != endian_mark) throw bad("written with another byte order", 12);
  check_codec_names(p + 40, klen, vlen, path, "the snapshot", key_codec, value_codec);
  const std::byte* t = p + size - snapshot_trailer_size;
  if (std::memcmp(t + 16, snapshot_end_magic, 8) != 0) throw bad("missing trailer", size - 8);
  const std::uint64_t data_start = crc_at + 4;
  const auto data_len = load_le<std::uint64_t>(t);
  if (data_len != size - snapshot_trailer_size - data_start) throw bad("data length mismatch", size - 24);
  v.data = std::span<const std::byte>(p + data_start, static_cast<std::size_t>(data_len));
  if (load_le<std::uint32_t>(t + 8) != crc32c(v.data.data(), v.data.size())) {
    throw bad("data checksum mismatch", data_start);
  }
  v.seq = load_le<std::uint64_t>(p + 16);
  v.entries = load_le<std::uint64_t>(p + 24);
  // Distinct keys have distinct encodings, so at most one entry takes no bytes. A larger count
  // is damage, and must not size the table the entries are loaded into.
  if (v.entries > v.data.size() + 1) {
    throw bad("entry count " + std::to_string(v.entries) + " exceeds what " +
                  std::to_string(v.data.size()) + " bytes of entries can hold",
              24);
  }
  return v;
}

/// Opens, maps and checks a snapshot (parse_snapshot); throws storage_error naming what is wrong.
inline snapshot_view read_snapshot(file_system& fsys, const fs::path& path, const std::string& key_codec,
                                   const std::string& value_codec) {
  auto f = fsys.open(path, open_mode::read_only);
  const std::uint64_t size = f->size();
  if (size < 44 + snapshot_trailer_size) throw storage_error(path, "read snapshot", 0, "file too short");
  auto map = f->map(static_cast<std::size_t>(size), false);
  snapshot_view v = parse_snapshot(std::span<const std::byte>(map->data(), static_cast<std::size_t>(size)), path,
                                   key_codec, value_codec);
  v.map = std::move(map);
  return v;
}

}  // namespace leftright::detail::storage
