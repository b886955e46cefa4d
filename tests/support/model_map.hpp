// SPDX-License-Identifier: Apache-2.0
// The model the durable tests compare a map against: a std::map driven by the same queueing
// calls as a writer (insert_or_assign, insert, erase, erase_if, clear), so that one function
// queues a batch on either, and the version it stands for.
//
// Contract: advance_to(v, make_batch) leaves the model exactly at the state after batches 1..v of
// a deterministic batch sequence (make_batch(b, model) queues batch b); going back starts over
// from the empty map. compare_to_model(reader, model) is empty when the reader shows exactly the
// model (version and every entry), else it names the first difference. Single-threaded; no
// Catch2 in here, so a forked child may use it.
#pragma once

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <utility>

namespace lrtest {

/// The expected state of a map and the version it stands for.
template <class Key, class Value>
struct model_map {
  std::map<Key, Value> m;
  std::uint64_t version = 0;
  void insert_or_assign(Key k, Value v) { m[k] = std::move(v); }
  void insert(Key k, Value v) { m.emplace(k, std::move(v)); }
  void erase(const Key& k) { m.erase(k); }
  template <class Pred>
  void erase_if(Pred pred) {
    std::erase_if(m, [&pred](const auto& kv) { return pred(kv.first, kv.second); });
  }
  void clear() { m.clear(); }

  /// The state after exactly v batches: make_batch(b, *this) queues batch b.
  template <class MakeBatch>
  model_map& advance_to(std::uint64_t v, MakeBatch&& make_batch) {
    if (v < version) {
      m.clear();
      version = 0;
    }
    while (version < v) make_batch(++version, *this);
    return *this;
  }
};

/// Empty if what the reader shows equals the model exactly (version and entries); else the
/// first difference.
template <class Reader, class Model>
std::string compare_to_model(const Reader& r, const Model& expected) {
  auto g = r.read();
  std::ostringstream out;
  if (g.version() != expected.version) {
    out << "reader version " << g.version() << ", model version " << expected.version;
    return out.str();
  }
  for (const auto& [k, v] : expected.m) {
    const auto* p = g.find(k);
    if (p == nullptr) {
      out << "version " << expected.version << ": key " << k << " missing";
      return out.str();
    }
    if (!(*p == v)) {
      out << "version " << expected.version << ": key " << k << " differs";
      return out.str();
    }
  }
  if (g.size() != expected.m.size()) {
    out << "version " << expected.version << ": " << g.size() << " entries, expected " << expected.m.size();
  }
  return out.str();
}

}  // namespace lrtest
