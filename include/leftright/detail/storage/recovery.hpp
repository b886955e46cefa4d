// SPDX-License-Identifier: Apache-2.0
// leftright: the steps of recovery that do not depend on the map's types: the directory's
// inventory, opening and checking a log segment, the checks of a segment's scan against the
// segments after it, ending the log at a hole a crash explains, and starting the log again after
// recovery (a writable open only). open_map() and open_map_read_only() (durable_map.hpp) run them.
//
// What a crash can leave, and what recovery accepts (see format.hpp for the files):
//   - a segment under its final name is complete: created as .tmp, preallocated, header synced,
//     renamed, directory synced. A shorter file, or a bad header, is damage.
//   - the log moves on to a new segment only once that segment is durable: the old one then
//     gets its successor record. A successor record whose segment is missing is damage; a
//     segment without one, followed by the next, is a crash between those steps.
//   - the marker (MAP) is written once the first segment is durable, and no step ever removes
//     the newest segment: a marker without any segment is damage; segments without a marker
//     are a first open that crashed, acceptable only if they hold nothing (and no snapshot).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../../storage_error.hpp"
#include "format.hpp"
#include "fs.hpp"
#include "marker.hpp"
#include "wal.hpp"

namespace leftright::detail::storage {

/// The files of a map's directory, by kind.
struct inventory {
  std::map<std::uint64_t, std::string> segments;   ///< by first seq
  std::map<std::uint64_t, std::string> snapshots;  ///< by version
  bool marker = false;                             ///< MAP is there (and checks out)
};

/// For a writable open: creates dir if absent, durably (each directory made is synced into its
/// parent before anything is written in it), and locks it for this open alone.
inline std::unique_ptr<lock_handle> open_directory(file_system& fsys, const fs::path& dir) {
  for (const auto& made : fsys.create_directories(dir)) {
    fsys.sync_directory(made.has_parent_path() ? made.parent_path() : fs::path("."));
  }
  return fsys.lock_directory(dir);
}

/// Lists dir. A writable open removes the *.tmp files (a snapshot, segment or marker whose
/// commit a crash interrupted); a read-only one notes that it would. Checks the marker.
inline inventory take_inventory(file_system& fsys, const fs::path& dir, bool writable, const std::string& key_codec,
                                const std::string& value_codec, std::string& note) {
  inventory inv;
  const std::vector<std::string> names = fsys.list(dir);
  for (const std::string& name : names) {
    if (auto n = parse_hex_name(name, "wal-", ".log")) {
      inv.segments.emplace(*n, name);
    } else if (auto m = parse_hex_name(name, "snap-", ".dat")) {
      inv.snapshots.emplace(*m, name);
    } else if (name.size() > 4 && name.ends_with(".tmp")) {
      if (writable) {
        fsys.remove(dir / name);
        note += "removed unfinished " + name + "; ";
      } else {
        note += "found unfinished " + name + " (a writable open removes it); ";
      }
    }
  }
  inv.marker = read_marker(fsys, dir, names, key_codec, value_codec);
  return inv;
}

/// A log segment opened for recovery's scan: its file, a read-only mapping of all of it without
/// read-around (access_hint::random), and its checked header.
struct open_segment {
  std::unique_ptr<storage::file> file;
  std::shared_ptr<mapping> map;
  segment_header_info header{};

  std::span<const std::byte> bytes() const { return {map->data(), map->size()}; }
};

/// Opens a segment for its scan (for reading and writing if writable). Throws storage_error if
/// its header is not a complete one of this map's, or the file is shorter than the size it was
/// preallocated with: a segment gets its name only when both are durable, so neither is a
/// crash's doing.
inline open_segment open_for_scan(file_system& fsys, const fs::path& path, bool writable,
                                  const std::string& key_codec, const std::string& value_codec) {
  open_segment s;
  s.file = fsys.open(path, writable ? open_mode::read_write : open_mode::read_only);
  const std::uint64_t size = s.file->size();
  if (size < segment_header_size) {
    throw storage_error(path, "recover", 0,
                        "the segment is " + std::to_string(size) + " bytes, shorter than its header: cut short");
  }
  s.map = s.file->map(static_cast<std::size_t>(size), false);
  s.map->advise(0, s.map->size(), access_hint::random);
  const auto h = read_segment_header(s.bytes(), path, key_codec, value_codec);
  if (!h) throw storage_error(path, "recover", 0, "segment header damaged (offset 0)");
  if (h->first_seq != parse_hex_name(path.filename().string(), "wal-", ".log")) {
    throw storage_error(path, "recover", 0, "file name and header disagree");
  }
  if (size < h->size) {
    throw storage_error(path, "recover", 0,
                        "the segment is " + std::to_string(size) + " bytes, shorter than the " +
                            std::to_string(h->size) + " it was preallocated with: cut short (a crash does not "
                            "shorten a segment)");
  }
  s.header = *h;
  return s;
}

/// Scans an open segment's records, reading only where the file system says the file may hold
/// data (file::data_range), each such range read ahead as it is reached: the never-written tail
/// of a preallocated segment is neither read nor brought into the page cache.
inline segment_scan scan_open_segment(open_segment& s) {
  file& f = *s.file;
  mapping& m = *s.map;
  const auto ranges = [&f, &m](std::uint64_t off, std::uint64_t) {
    const auto r = f.data_range(off);
    if (r.second > r.first) {
      m.advise(static_cast<std::size_t>(r.first), static_cast<std::size_t>(r.second - r.first), access_hint::will_need);
    }
    return r;
  };
  ranges(segment_header_size, m.size());  // the records: read ahead
  return scan_segment(s.bytes(), s.header, ranges);
}

/// Throws storage_error for what a segment's scan shows that no crash explains: a damaged record
/// that a later one says was durable, a tail of more record-like headers than a crash leaves, a
/// successor record naming a segment that is not the next one there (next_first: the next
/// segment's first seq; nullopt: this is the newest).
inline void check_scan(const segment_scan& scan, const fs::path& path, std::size_t size,
                       std::optional<std::uint64_t> next_first) {
  const std::uint64_t ended = scan.first_seq + scan.records.size();  // first seq not read
  if (scan.contradicting_offset) {
    throw storage_error(path, "recover", 0,
                        "the record for version " + std::to_string(ended) + " at offset " +
                            std::to_string(scan.end_offset) + " is damaged, but a later record at offset " +
                            std::to_string(*scan.contradicting_offset) + " says it was durable");
  }
  if (scan.unchecked_offset) {
    throw storage_error(path, "recover", 0,
                        "the record for version " + std::to_string(ended) + " at offset " +
                            std::to_string(scan.end_offset) +
                            " is damaged, and the bytes after it hold more record-like headers than a crash "
                            "leaves (checked " +
                            std::to_string(tail_check_budget(size)) + " bytes; the header at offset " +
                            std::to_string(*scan.unchecked_offset) + " was not checked)");
  }
  if (scan.successor && next_first != scan.successor) {
    throw storage_error(path, "recover", 0,
                        "the segment ends (offset " + std::to_string(scan.end_offset) +
                            ") saying the log goes on in " + segment_name(*scan.successor) +
                            ", which is missing" +
                            (next_first ? " (the next segment is " + segment_name(*next_first) + ")"
                                        : std::string(" (this is the newest segment)")));
  }
}

/// Versions from `ended` are missing after segment segs[i], and the next segment starts later. A
/// crash explains that only if no later record says they were durable (durability::none does
/// not sync a segment before starting the next, so power loss can drop its tail and keep the
/// next one's records): then the log ends here, and a writable open removes the later segments
/// (in order, oldest first); otherwise it is damage (storage_error).
inline void end_log_at_hole(file_system& fsys, const fs::path& dir,
                            const std::vector<std::pair<std::uint64_t, std::string>>& segs, std::size_t i,
                            const segment_scan& scan, bool writable, const std::string& key_codec,
                            const std::string& value_codec, std::string& note) {
  const std::uint64_t ended = scan.first_seq + scan.records.size();
  for (std::size_t j = i + 1; j < segs.size(); ++j) {
    auto later = open_for_scan(fsys, dir / segs[j].second, false, key_codec, value_codec);
    for (const auto& rec : scan_open_segment(later).records) {
      if (rec.synced >= ended) {
        throw storage_error(dir / segs[i].second, "recover", 0,
                            "log hole after offset " + std::to_string(scan.end_offset) + ": version " +
                                std::to_string(ended) + " is missing, but the record at offset " +
                                std::to_string(rec.offset) + " of " + segs[j].second + " says it was durable");
      }
    }
  }
  const std::string where = segs[i].second + " offset " + std::to_string(scan.end_offset) + " (version " +
                            std::to_string(ended) + " was never made durable; ";
  if (!writable) {
    note += "the log ends at " + where + "a writable open removes the " + std::to_string(segs.size() - i - 1) +
                " later segment(s)); ";
    return;
  }
  for (std::size_t j = i + 1; j < segs.size(); ++j) fsys.remove(dir / segs[j].second);
  fsys.sync_directory(dir);
  note += "cut the log at " + where + "removed " + std::to_string(segs.size() - i - 1) + " later segment(s)); ";
}

/// What the replay leaves for a writable open to go on from.
struct log_state {
  /// The newest segment, when it starts at the recovered version + 1, holds nothing and was
  /// synced: the fresh segment the last open (or a checkpoint) started. A writer continues in it.
  struct reusable {
    std::string name;
    std::uint64_t salt;
    std::uint64_t size;
    std::unique_ptr<storage::file> file;
  };
  std::optional<reusable> reuse;
  /// The segment whose records end the log, when it has no successor record: a writer that
  /// starts the next segment writes one there (at offset, naming next).
  struct end {
    fs::path path;
    std::uint64_t salt;
    std::uint64_t offset;
    std::uint64_t next;
  };
  std::optional<end> open_end;
  bool holds_data = false;  ///< a segment with a record, a successor record or a torn tail
  /// The log's bytes the replay read (each segment's header and valid records), as wal_writer
  /// counts what it writes: the log written since the last checkpoint, which checkpoint_bytes
  /// measures across reopens too.
  std::uint64_t bytes = 0;
};

/// Refuses what the marker says cannot be: a marker without a segment (the log was deleted), or
/// a snapshot or a segment with data without a marker (a format-2 map always has one by then).
inline void check_marker(const inventory& inv, const log_state& log, const fs::path& dir) {
  if (inv.marker && inv.segments.empty()) {
    throw storage_error(dir, "recover", 0,
                        std::string(marker_name) + " says this directory holds a map's log, but no log segment "
                                                   "(wal-*.log) is there: deleted or not copied");
  }
  if (!inv.marker && (!inv.snapshots.empty() || log.holds_data)) {
    throw storage_error(dir / marker_name, "recover", 0,
                        "missing: the directory holds a map's snapshot or log, but not the marker every "
                        "map written in this format has");
  }
}

/// For a writable open, after recovery: makes the log go on at version + 1, in the reusable
/// segment or a new one (which replaces a segment of that name: recovery cut before it), then
/// writes the successor record into the segment the log ended in, and, in a directory that had
/// none, the marker. Each step is durable before the next (see the top of this file).
inline void start_log(wal_writer& wal, file_system& fsys, const fs::path& dir, log_state& log, std::uint64_t version,
                      bool marker, const std::string& key_codec, const std::string& value_codec) {
  if (log.reuse) {
    // Its name must be durable before records in it are acknowledged: the open that created it
    // may have crashed between its rename and the directory sync.
    fsys.sync_directory(dir);
    wal.reuse(dir / log.reuse->name, version + 1, log.reuse->salt,
              log.reuse->file->map(static_cast<std::size_t>(log.reuse->size), true));
    log.reuse.reset();
  } else {
    // A fresh segment with a fresh salt: stale bytes can never be mistaken for new records.
    wal.roll(version + 1, 0, /*sync_previous=*/false);
  }
  if (log.open_end && log.open_end->next == version + 1) {
    const auto rec = successor_record(log.open_end->salt, version + 1, version);
    auto f = fsys.open(log.open_end->path, open_mode::read_write);
    // Every segment keeps room for it (wal_writer::append); a file that has none is left as is.
    if (log.open_end->offset + rec.size() <= f->size()) {
      f->write_at(rec.data(), rec.size(), log.open_end->offset);
      f->sync();
    }
  }
  if (!marker) write_marker(fsys, dir, key_codec, value_codec);
}

}  // namespace leftright::detail::storage
