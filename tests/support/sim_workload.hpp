// SPDX-License-Identifier: Apache-2.0
// leftright tests: seeded workloads of a durable map on the simulated file system, and the
// checker every crash test uses. The model keeps the state after every version still in play:
// after a crash the reopened map must equal states[v] for some v with promised <= v <= the last
// version whose publish() was attempted.
#pragma once

#include <leftright/durable_map.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "durability_name.hpp"
#include "sim_fs.hpp"

namespace simw {

/// A record's payload for the log-level tests (what it holds does not matter to them).
inline std::vector<std::byte> record_payload() { return std::vector<std::byte>(64, std::byte{7}); }

/// A log in fsys's /map (made here) whose record 1 is synced and record 2 appended after it, not
/// yet synced: where the tests of a failing sync of the log start.
inline std::unique_ptr<leftright::detail::storage::wal_writer> log_with_unsynced_record(
    const std::shared_ptr<leftright::detail::storage::file_system>& fsys) {
  fsys->create_directories("/map");
  auto w = std::make_unique<leftright::detail::storage::wal_writer>(fsys, "/map", "u64", "u64", 1 << 16);
  w->append(1, record_payload());
  w->sync();
  w->append(2, record_payload());
  return w;
}

using key = std::uint64_t;
using value = std::string;
using state = std::map<key, value>;
using writer_t = leftright::durable_writer<key, value>;
using reader_t = leftright::map_reader<key, value>;
using map_t = std::pair<writer_t, reader_t>;

inline const char* name(leftright::durability d) { return lrtest::durability_name(d); }

/// One queued operation, replayable on the map and on the model.
struct op {
  enum kind_t { assign, insert, erase, clear, erase_if_mod } kind;
  key k = 0;
  value v;
};
using batch = std::vector<op>;

/// Small keys (so operations collide), values of varied length (so records vary in size).
inline batch random_batch(std::mt19937_64& rng, std::size_t max_ops = 8) {
  batch b;
  const std::size_t n = 1 + rng() % max_ops;
  for (std::size_t i = 0; i < n; ++i) {
    const auto r = rng() % 100;
    op o;
    o.k = rng() % 48;
    if (r < 55) {
      o.kind = op::assign;
    } else if (r < 70) {
      o.kind = op::insert;
    } else if (r < 94) {
      o.kind = op::erase;
    } else if (r < 97) {
      o.kind = op::erase_if_mod;
      o.k = rng() % 5;
    } else {
      o.kind = op::clear;
    }
    if (o.kind == op::assign || o.kind == op::insert) {
      // Two draws, sequenced: the operands of + are evaluated in an order the compiler picks
      // (g++ right to left, clang++ left to right), and the workload must not depend on it.
      const auto pad = rng() % 200;
      const auto num = rng() % 100000;
      o.v = "v" + std::to_string(num) + std::string(pad, 'x');
    }
    b.push_back(std::move(o));
  }
  return b;
}

inline void apply(state& s, const batch& b) {
  for (const op& o : b) {
    switch (o.kind) {
      case op::assign: s[o.k] = o.v; break;
      case op::insert: s.try_emplace(o.k, o.v); break;
      case op::erase: s.erase(o.k); break;
      case op::clear: s.clear(); break;
      case op::erase_if_mod: std::erase_if(s, [m = o.k](const auto& kv) { return kv.first % 5 == m; }); break;
    }
  }
}

inline void queue(writer_t& w, const batch& b) {
  for (const op& o : b) {
    switch (o.kind) {
      case op::assign: w.insert_or_assign(o.k, o.v); break;
      case op::insert: w.insert(o.k, o.v); break;
      case op::erase: w.erase(o.k); break;
      case op::clear: w.clear(); break;
      case op::erase_if_mod: w.erase_if([m = o.k](const key& k, const value&) { return k % 5 == m; }); break;
    }
  }
}

/// What the model knows: the state after each version still in play, and what was promised.
struct history {
  std::vector<state> states{state{}};  ///< states[v]: the state after version v
  std::uint64_t promised = 0;          ///< every version <= this must survive any crash
  std::uint64_t acked = 0;             ///< the last version whose publish() returned

  std::uint64_t attempted() const { return states.size() - 1; }
  /// The map reopened at version v: later versions are gone for good.
  void reopened_at(std::uint64_t v) {
    states.resize(v + 1);
    acked = v;
    promised = std::min(promised, v);
  }
};

/// "" if the map read through r is a state the history allows; else what is wrong.
inline std::string check(reader_t& r, const history& h) {
  auto g = r.read();
  const std::uint64_t v = g.version();
  std::ostringstream out;
  if (v < h.promised) {
    out << "recovered version " << v << " but version " << h.promised << " was promised durable";
    return out.str();
  }
  if (v > h.attempted()) {
    out << "recovered version " << v << " but only " << h.attempted() << " were ever published";
    return out.str();
  }
  const state& want = h.states[v];
  state got;
  for (const auto& [k, val] : g) got.emplace(k, val);
  if (got != want) {
    out << "version " << v << ": the map holds " << got.size() << " entries, the model " << want.size();
    for (const auto& [k, val] : want) {
      auto it = got.find(k);
      if (it == got.end()) {
        out << "; key " << k << " missing";
        break;
      }
      if (it->second != val) {
        out << "; key " << k << " differs";
        break;
      }
    }
    return out.str();
  }
  return {};
}

struct config {
  leftright::durability mode = leftright::durability::sync;
  std::size_t segment_size = 8192;       ///< small: segments roll every few batches
  std::uint64_t checkpoint_bytes = 0;    ///< 0: explicit checkpoints only
};

inline leftright::durable_options options(std::shared_ptr<sim::file_system> fsys, const config& c) {
  leftright::durable_options o;
  o.path = "/data/map";
  o.durability = c.mode;
  o.sync_interval = std::chrono::milliseconds(2);
  o.segment_size = c.segment_size;
  o.checkpoint_bytes = c.checkpoint_bytes;
  o.file_system = std::move(fsys);
  return o;
}

/// Publishes a random batch, keeping the model in step: the state is recorded as attempted
/// before the call (a crash inside it may or may not keep the batch), acknowledged after it
/// returns, and promised durable at once in sync mode. Throws what publish() throws.
inline void publish_random(map_t& m, history& h, std::mt19937_64& rng, const config& c, std::size_t max_ops = 8) {
  const batch b = random_batch(rng, max_ops);
  state next = h.states.back();
  apply(next, b);
  queue(m.first, b);
  h.states.push_back(std::move(next));
  const std::uint64_t v = m.first.publish();
  if (v != h.attempted()) throw std::logic_error("publish returned version " + std::to_string(v));
  h.acked = v;
  if (c.mode == leftright::durability::sync) h.promised = v;
}

/// Makes everything acknowledged durable: checkpoint() or flush().
inline void make_durable(map_t& m, history& h, bool checkpoint) {
  if (checkpoint) {
    m.first.checkpoint();
  } else {
    m.first.flush();
  }
  h.promised = std::max(h.promised, h.acked);
}

/// Runs one step of a workload against an open map: a publish of a random batch (mostly), a
/// checkpoint, or a flush. Throws what the map throws.
inline void step(map_t& m, history& h, std::mt19937_64& rng, const config& c) {
  const auto r = rng() % 100;
  if (r < 9) return make_durable(m, h, r < 6);
  publish_random(m, h, rng, c);
}

/// Opens the map on fsys and checks it against the history; on success the history moves to the
/// recovered version. Returns the failure ("" if none) and the map.
inline std::string open_and_check(std::shared_ptr<sim::file_system> fsys, const config& c, history& h,
                                  std::optional<map_t>& m) {
  m.reset();
  try {
    m.emplace(leftright::open_map<key, value>(options(fsys, c)));
  } catch (const leftright::storage_error& e) {
    return std::string("reopening failed: ") + e.what();
  }
  if (std::string f = check(m->second, h); !f.empty()) {
    const auto& r = m->first.recovery();
    return f + " (recovery: snapshot " + std::to_string(r.snapshot_version) + ", " +
           std::to_string(r.records_replayed) + " records from " + std::to_string(r.segments_read) +
           " segments; " + r.note + ")";
  }
  h.reopened_at(m->second.version());
  return {};
}

/// Replays one scenario seed: LEFTRIGHT_SIM_SEED=<seed> runs just that one.
inline std::optional<std::uint64_t> replay_seed() {
  if (const char* s = std::getenv("LEFTRIGHT_SIM_SEED")) return std::strtoull(s, nullptr, 10);
  return std::nullopt;
}

}  // namespace simw
