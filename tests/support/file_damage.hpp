// SPDX-License-Identifier: Apache-2.0
// Files of a map directory damaged on purpose, for the tests of what recovery does with them:
// whole-file bytes read and written, a byte xor'ed, bytes appended, the names in a directory,
// a log segment's records found by walking the on-disk format, and one random damage of a map's
// segments or snapshot (truncate, flip bits, zero a range, append, remove), described in words.
//
// Contract:
//   - records_of() walks a segment by the format (detail/storage/format.hpp), independently of
//     the library's reader: records from offset 4096, each 8-aligned, until a zero header or a
//     record that is not a batch (the successor record ends a segment's records). It trusts the
//     lengths it finds: use it on files before damaging them, or to aim damage.
//   - damage_at_random() changes one file of those it is given (nothing, when the file it picked
//     is empty), draws only from the rng it is given (a seed replays it), and returns what it
//     did. It throws std::runtime_error or
//     std::filesystem::filesystem_error when the file it picked is gone (an earlier damage
//     removed it).
//   - Every other function throws std::runtime_error when a file cannot be read or written.
// No Catch2 in here (a forked child may use it). No atomics in this file.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lrtest {

inline std::vector<unsigned char> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Replaces the content of p with bytes (or appends them, with std::ios::app).
inline void write_bytes(const std::filesystem::path& p, const std::vector<unsigned char>& bytes,
                        std::ios::openmode how = std::ios::trunc) {
  std::ofstream out(p, std::ios::binary | how);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

inline void append_bytes(const std::filesystem::path& p, const std::vector<unsigned char>& extra) {
  write_bytes(p, extra, std::ios::app);
}

inline void xor_byte(const std::filesystem::path& p, std::uint64_t off, unsigned char mask) {
  auto b = read_bytes(p);
  if (off >= b.size()) throw std::runtime_error("xor_byte past the end of " + p.string());
  b[off] ^= mask;
  write_bytes(p, b);
}

/// The file names in dir with the given prefix, sorted (hex names sort by number).
inline std::vector<std::string> names_in(const std::filesystem::path& dir, const std::string& prefix = "") {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// A log segment's records, by the format.

/// One log record as found in a segment.
struct record_info {
  std::uint64_t offset;
  std::uint32_t len;  // payload bytes
  std::uint64_t seq;
};
inline constexpr std::size_t header_page = 4096;   // a segment's header; records start after it
inline constexpr std::size_t record_header = 32;   // crc, len, type, salt, seq, durable seq

/// The little-endian unsigned integer of N bytes at b[off].
template <int N>
std::uint64_t little_endian(const std::vector<unsigned char>& b, std::size_t off) {
  std::uint64_t v = 0;
  for (int i = N - 1; i >= 0; --i) v = v << 8 | b[off + static_cast<std::size_t>(i)];
  return v;
}

/// The bytes a record with len payload bytes takes, padding included.
inline std::uint64_t record_span(std::uint32_t len) { return (record_header + len + 7) & ~std::uint64_t{7}; }

inline std::vector<record_info> records_of(const std::filesystem::path& segment) {
  const auto b = read_bytes(segment);
  std::vector<record_info> out;
  std::size_t off = header_page;
  while (off + record_header <= b.size()) {
    const auto crc = little_endian<4>(b, off);
    const auto len = static_cast<std::uint32_t>(little_endian<4>(b, off + 4));
    if (crc == 0 && len == 0) break;
    if (little_endian<4>(b, off + 8) != 1) break;  // the successor record (type 2) ends a segment's records
    out.push_back({off, len, little_endian<8>(b, off + 16)});
    off += record_span(len);
  }
  return out;
}

/// Where the records of a segment end (the first byte after the last one).
inline std::uint64_t used_end(const std::filesystem::path& segment) {
  const auto r = records_of(segment);
  return r.empty() ? header_page : r.back().offset + record_span(r.back().len);
}

// ---------------------------------------------------------------------------------------------
// Random damage.

/// The files of a map directory that damage_at_random() picks from.
struct map_files {
  std::vector<std::filesystem::path> segments;  // oldest first; at least one
  std::filesystem::path snapshot;
};

/// A number below n drawn from rng (0 for n == 0).
struct random_pick {
  std::mt19937_64& rng;
  std::uint64_t operator()(std::uint64_t n) const { return n == 0 ? 0 : rng() % n; }
};

/// Flips 1 to 4 random bits of p in [from, to) (clamped to the file; from past the end: 0).
inline void flip_random_bits(const std::filesystem::path& p, std::uint64_t from, std::uint64_t to,
                             const random_pick& pick, std::ostream& said) {
  const int n = 1 + static_cast<int>(pick(4));
  auto b = read_bytes(p);
  if (b.empty()) {
    said << p.filename().string() << " is empty: nothing flipped";
    return;
  }
  to = std::min<std::uint64_t>(to, b.size());
  if (from >= to) from = 0;
  said << "flip " << n << " bits in " << p.filename().string() << " [" << from << ", " << to << "):";
  for (int i = 0; i < n; ++i) {
    const std::uint64_t off = from + pick(to - from);
    const int bit = static_cast<int>(pick(8));
    b[off] ^= static_cast<unsigned char>(1u << bit);
    said << " " << off << "." << bit;
  }
  write_bytes(p, b);
}

/// Damage kinds 0 and 2..6: truncate seg or flip bits in it (its header, a record, its used part,
/// anywhere), or flip bits of the last record of last.
inline void damage_segment(std::uint64_t kind, const std::filesystem::path& seg, const std::filesystem::path& last,
                           const random_pick& pick, std::ostream& said) {
  namespace fs = std::filesystem;
  if (kind == 0) {  // truncate a segment, mostly inside its records
    const std::uint64_t end = used_end(seg) + 64;
    const std::uint64_t at = pick(4) == 0 ? pick(fs::file_size(seg)) : pick(end);
    fs::resize_file(seg, at);
    said << "truncate " << seg.filename().string() << " to " << at;
  } else if (kind == 2) {  // a segment header: mostly the fields at the start and the crc at the end
    if (pick(3) == 0) {
      flip_random_bits(seg, header_page - 4, header_page, pick, said);
    } else {
      flip_random_bits(seg, 0, pick(2) == 0 ? 48 : header_page, pick, said);
    }
  } else if (kind == 3 || kind == 4) {  // the last record of last; a record of any segment
    const fs::path& p = kind == 3 ? last : seg;
    const auto recs = records_of(p);
    if (recs.empty()) {  // an earlier damage of this trial truncated it
      flip_random_bits(p, 0, header_page, pick, said);
      return;
    }
    const record_info& r = kind == 3 ? recs.back() : recs.at(pick(recs.size()));
    const bool whole = kind == 3 || pick(2) != 0;  // kind 4: its header only, or all of it
    flip_random_bits(p, r.offset, r.offset + record_header + (whole ? r.len : 0), pick, said);
  } else if (kind == 5) {  // the used part of a segment
    flip_random_bits(seg, header_page, used_end(seg), pick, said);
  } else {  // anywhere in a segment (the preallocated zeros too)
    flip_random_bits(seg, 0, fs::file_size(seg), pick, said);
  }
}

/// Damage kinds 1 and 7..9: truncate the snapshot, or flip bits of its header, its trailer, or
/// anywhere in it.
inline void damage_snapshot(std::uint64_t kind, const std::filesystem::path& snap, const random_pick& pick,
                            std::ostream& said) {
  namespace fs = std::filesystem;
  if (kind == 1) {
    const std::uint64_t at = pick(fs::file_size(snap));
    fs::resize_file(snap, at);
    said << "truncate " << snap.filename().string() << " to " << at;
  } else if (kind == 7) {  // the header
    flip_random_bits(snap, 0, 64, pick, said);
  } else if (kind == 8) {  // the trailer
    const std::uint64_t size = fs::file_size(snap);
    flip_random_bits(snap, size - 24, size, pick, said);
  } else {  // anywhere (mostly its data)
    flip_random_bits(snap, 0, fs::file_size(snap), pick, said);
  }
}

/// Zeroes a random range (up to 4 KiB) in the used part of a segment or in the snapshot.
inline void zero_random_range(const std::filesystem::path& p, bool is_snapshot, const random_pick& pick,
                              std::ostream& said) {
  auto b = read_bytes(p);
  const std::uint64_t hi = std::min<std::uint64_t>(is_snapshot ? b.size() : used_end(p), b.size());
  if (hi == 0) {
    said << p.filename().string() << " is empty: nothing zeroed";
    return;
  }
  const std::uint64_t off = pick(hi);
  const std::uint64_t len = std::min<std::uint64_t>(1 + pick(4096), b.size() - off);
  std::fill(b.begin() + static_cast<std::ptrdiff_t>(off), b.begin() + static_cast<std::ptrdiff_t>(off + len), 0);
  write_bytes(p, b);
  said << "zero " << p.filename().string() << " [" << off << ", " << off + len << ")";
}

/// Damage kinds 10 and up, on a segment or (one time in 3 or 4) the snapshot: zero a range,
/// append zeros or random bytes, or remove the file.
inline void damage_either(std::uint64_t kind, const std::filesystem::path& seg, const std::filesystem::path& snap,
                          const random_pick& pick, std::ostream& said) {
  const bool on_snapshot = pick(kind == 10 ? 3 : 4) == 0;
  const std::filesystem::path& p = on_snapshot ? snap : seg;
  if (kind == 10) {
    zero_random_range(p, on_snapshot, pick, said);
  } else if (kind == 11) {
    std::vector<unsigned char> extra(1 + pick(5000));
    const bool garbage = pick(2) == 0;
    if (garbage) {
      for (auto& x : extra) x = static_cast<unsigned char>(pick.rng());
    }
    append_bytes(p, extra);
    said << "append " << extra.size() << (garbage ? " random bytes" : " zeros") << " to " << p.filename().string();
  } else {
    std::filesystem::remove(p);
    said << "remove " << p.filename().string();
  }
}

/// Damages one file of f at random (13 kinds, see the functions above); returns what it did.
inline std::string damage_at_random(const map_files& f, std::mt19937_64& rng) {
  const random_pick pick{rng};
  const std::filesystem::path seg = f.segments.at(pick(f.segments.size()));
  std::ostringstream said;
  const std::uint64_t kind = pick(13);
  if (kind == 1 || (kind >= 7 && kind <= 9)) {
    damage_snapshot(kind, f.snapshot, pick, said);
  } else if (kind < 10) {
    damage_segment(kind, seg, f.segments.back(), pick, said);
  } else {
    damage_either(kind, seg, f.snapshot, pick, said);
  }
  return said.str();
}

}  // namespace lrtest
