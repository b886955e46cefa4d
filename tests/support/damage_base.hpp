// SPDX-License-Identifier: Apache-2.0
// The map the damage tests (test_durable_damage.cpp) damage copies of, and how they check what
// open_map() makes of a copy.
//
// The base: a map of <uint64_t, std::string> written in durability::sync with 8 KiB segments
// (the minimum: ~17 records a segment), base_batches = 290 batches of make_batch(), checkpoints
// after batches 100 and 200 (so: one snapshot at 200, then a few segments holding records
// 201..290). It is built once per process, on first use; base_copy is a fresh copy of it.
//
// Contract:
//   - make_batch(b, sink) queues the same operations in the same order on a durable_writer or on
//     the model; model_at(v) is the state after exactly v batches.
//   - open_and_check(dir, fd) is for a forked child (no Catch2): it opens dir and returns 0 if
//     the map opened with exactly the model at its version (and writes "version <v>", plus
//     " (tail cut)" when recovery cut a torn tail, to fd), 1 on storage_error (what() to stderr
//     and fd), 2 if it opened with content that is no prefix; anything else escapes.
//   - require_opens_at() and open_error() are for the test itself (Catch2 assertions).
// No atomics in this file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "child_process.hpp"
#include "file_damage.hpp"
#include "model_map.hpp"
#include "test_support.hpp"

namespace lrtest::damage {

namespace fs = std::filesystem;
using leftright::durability;
using leftright::storage_error;

using key_type = std::uint64_t;
using value_type = std::string;
using model = model_map<key_type, value_type>;
using writer_t = leftright::durable_writer<key_type, value_type>;

inline key_type batch_key(std::uint64_t b, int i) { return (b * 13 + static_cast<std::uint64_t>(i) * 29) % 200; }
inline value_type batch_value(std::uint64_t b, int i) {
  return "b" + std::to_string(b) + "." + std::to_string(i) + std::string((b * 7 + static_cast<std::uint64_t>(i)) % 23, 'x');
}

/// Queues batch b on sink (a durable_writer or the model), the same operations in the same order.
template <class Sink>
void make_batch(std::uint64_t b, Sink& sink) {
  for (int i = 0; i < 6; ++i) sink.insert_or_assign(batch_key(b, i), batch_value(b, i));
  if (b > 3) sink.erase(batch_key(b - 3, static_cast<int>(b % 6)));
  if (b % 9 == 4) {
    sink.erase_if([m = b % 7](const key_type& k, const value_type& v) { return (k + v.size()) % 7 == m; });
  }
  if (b % 17 == 0) {
    sink.insert(batch_key(b, 0), value_type("not inserted: the key is present"));
    sink.insert(1000 + b, batch_value(b, 9));
  }
}

/// The model after exactly v batches of make_batch.
inline model model_at(std::uint64_t v) {
  model m;
  m.advance_to(v, [](std::uint64_t b, model& s) { make_batch(b, s); });
  return m;
}

inline leftright::durable_options options_for(const fs::path& dir, durability mode = durability::sync) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = mode;
  o.segment_size = 8 << 10;  // the minimum: ~17 records per segment
  o.checkpoint_bytes = 0;
  return o;
}

/// Writes batches version+1 .. to, checkpointing after every batch that is a multiple of
/// checkpoint_every (0: never).
inline void write_batches(writer_t& w, std::uint64_t to, std::uint64_t checkpoint_every) {
  for (std::uint64_t b = w.version() + 1; b <= to; ++b) {
    make_batch(b, w);
    if (w.publish() != b) throw std::runtime_error("unexpected version");
    if (checkpoint_every != 0 && b % checkpoint_every == 0) w.checkpoint();
  }
}

inline constexpr std::uint64_t base_batches = 290;
inline constexpr std::uint64_t base_snapshot = 200;

/// The base directory (sync mode, two checkpoints, a few segments).
struct base_fixture {
  temp_dir tmp{"damage-base"};
  fs::path dir = tmp.path() / "map";
  std::string snapshot;               // its file name
  std::vector<std::string> segments;  // file names, oldest first

  base_fixture() {
    {
      auto [w, r] = leftright::open_map<key_type, value_type>(options_for(dir));
      write_batches(w, base_batches, 100);
    }
    const auto snaps = names_in(dir, "snap-");
    segments = names_in(dir, "wal-");
    if (snaps.size() != 1 || segments.size() < 3) {
      throw std::runtime_error("unexpected base layout: " + std::to_string(snaps.size()) + " snapshots, " +
                               std::to_string(segments.size()) + " segments");
    }
    snapshot = snaps.front();
    if (records_of(dir / segments.back()).size() < 3) throw std::runtime_error("last segment too short");
  }
};
/// The base, built on first use.
inline const base_fixture& base() {
  static base_fixture b;
  return b;
}

/// A fresh copy of the base directory.
struct base_copy {
  temp_dir tmp{"damage"};
  fs::path dir = tmp.path() / "map";
  base_copy() { fs::copy(base().dir, dir, fs::copy_options::recursive); }
  fs::path segment(std::size_t i) const { return dir / base().segments.at(i); }
  fs::path last_segment() const { return dir / base().segments.back(); }
  fs::path snapshot() const { return dir / base().snapshot; }
  /// Its files, for damage_at_random().
  map_files files() const {
    map_files f{{}, snapshot()};
    for (std::size_t i = 0; i < base().segments.size(); ++i) f.segments.push_back(segment(i));
    return f;
  }
};

/// In a forked child: opens dir and checks it (see the contract above).
inline int open_and_check(const fs::path& dir, int fd) {
  try {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(dir));
    const std::uint64_t v = w.version();
    const std::string diff = compare_to_model(r, model_at(v));
    if (!diff.empty()) {
      put(fd, "opened at version " + std::to_string(v) + " with wrong content: " + diff);
      return 2;
    }
    put(fd, "version " + std::to_string(v) + (w.recovery().tail_truncated ? " (tail cut)" : ""));
    return 0;
  } catch (const storage_error& e) {
    std::fprintf(stderr, "child: storage_error: %s\n", e.what());
    put(fd, std::string("storage_error: ") + e.what());
    return 1;
  }
}

/// Opens dir in this process and checks it holds exactly the model at version v.
inline void require_opens_at(const fs::path& dir, std::uint64_t v) {
  auto [w, r] = leftright::open_map<key_type, value_type>(options_for(dir));
  INFO("recovery note: " << w.recovery().note);
  REQUIRE(w.version() == v);
  const std::string diff = compare_to_model(r, model_at(v));
  INFO(diff);
  REQUIRE(diff.empty());
}

/// The storage_error open_map throws for dir (fails the test if it opens or throws another type).
inline storage_error open_error(const fs::path& dir) {
  try {
    auto opened = leftright::open_map<key_type, value_type>(options_for(dir));
    FAIL("open_map succeeded at version " << opened.first.version() << "; expected a storage_error");
  } catch (const storage_error& e) {
    return e;
  }
  throw std::logic_error("not reached");
}

}  // namespace lrtest::damage
