// SPDX-License-Identifier: Apache-2.0
// Helpers for the shared_map tests: a gate that holds the combiner inside its publish, so that a
// test knows exactly which writes overlap it, and values and hashes that throw on demand.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <leftright/shared_map.hpp>

namespace lrtest {

/// Holds the first thread that enters it until release(); later entries pass.
class gate {
 public:
  /// Called by the thread to hold (from inside the combiner's publish).
  void enter() {
    std::unique_lock<std::mutex> lock(mu_);
    if (used_) return;
    used_ = true;
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  void await_entered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return entered_; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool used_ = false, entered_ = false, open_ = false;
};

/// Queues, into a shared_map batch, an erase_if that erases nothing and holds the combiner in g
/// the first time it runs (the map must hold an entry, or the predicate never runs).
template <class Batch>
void hold_combiner(Batch& b, gate& g) {
  b.erase_if([&g](const auto&, const auto&) {
    g.enter();
    return false;
  });
}

/// Starts a thread whose write holds the combiner inside its publish (hold_combiner, in g), and
/// returns it once it is held. The map must hold an entry.
template <class Map>
std::thread start_holder(Map& m, gate& g) {
  std::thread t([&m, &g] { m.update([&g](typename Map::batch& b) { hold_combiner(b, g); }); });
  g.await_entered();
  return t;
}

/// Waits (yielding) until m has n write calls queued behind the combiner.
template <class Map>
void await_queued(const Map& m, std::size_t n) {
  while (m.queued_writes() < n) std::this_thread::yield();
}

/// Runs write(i) for i in [0, n) on n threads whose calls all queue behind a held combiner, so
/// that they form one group; returns once every call returned. The map must hold an entry.
template <class Map, class F>
void in_one_group(Map& m, int n, F write) {
  gate g;
  std::thread holder = start_holder(m, g);
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back(write, i);
  await_queued(m, static_cast<std::size_t>(n));
  g.release();
  holder.join();
  for (auto& t : ts) t.join();
}

/// A value whose copy constructor throws when it holds a negative number. Moves never throw.
struct bomb {
  long v = 0;
  bomb() = default;
  explicit bomb(long x) : v(x) {}
  bomb(const bomb& o) : v(o.v) {
    if (v < 0) throw std::runtime_error("bomb: copy refused");
  }
  bomb(bomb&& o) noexcept : v(o.v) {}
  bomb& operator=(const bomb& o) {
    bomb tmp(o);
    v = tmp.v;
    return *this;
  }
  bomb& operator=(bomb&&) noexcept = default;
  friend bool operator==(const bomb& a, const bomb& b) { return a.v == b.v; }
};

/// absl::Hash, except that it throws for the key 666.
struct picky_hash {
  std::size_t operator()(int k) const {
    if (k == 666) throw std::runtime_error("picky_hash: key refused");
    return absl::Hash<int>{}(k);
  }
};

}  // namespace lrtest
