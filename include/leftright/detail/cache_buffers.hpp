// SPDX-License-Identifier: Apache-2.0
// leftright: what a thread reading a cache writes, and only that thread: a lossy ring of the
// hashes of the keys it hit, and its hit and miss counters. The cache's writer drains the rings
// into the eviction policy and sums the counters; a reader never writes a line another thread
// writes, and never waits.
//
// The ring keeps the newest `access_ring::size` records: a reader overwrites the oldest slot
// whether or not the writer has read it (so it never reads the writer's position), and the
// writer reads at most the newest `size` slots since its last drain. A slot the reader
// overwrites while the writer reads it yields another recent hash: the policy is told of a
// recent access that is not the one it would have been, which is what "lossy" allows. The
// records lost that way are counted (dropped()).
//
// Cost. record() is a load of the head and two stores (the slot, the head) to this thread's own
// lines; on x86-64 the relaxed and release accesses below are plain moves. Measured (issue 17,
// bench/bench_cache.cpp, 2026-12-03, medians of ratios to shared_map::get), a get() hit runs at
// about 0.87 (1K entries) and 0.90 (1M), peek(), which records nothing, at 0.92 and 0.91: the
// ring costs a few percent. Publishing the head only every N records, or recording only a
// sample of the hits, could save at most that, and would leave stats() and the policy behind
// the reads; neither is done. (get()'s earlier gap was elsewhere: see cache.hpp's "Reads".)
//
// Atomics in this file:
//   [B0] head load (owner)        relaxed  the owning thread reads its own last store
//   [B1] slot store / load        relaxed  each slot is a whole hash (no tearing); which hash the
//                                          writer reads does not matter (see above)
//   [B2] head store               release  (reader) the slots written before it are visible to
//                                          the writer that loads this head...
//   [B3] head load                acquire  (writer) ...and pairs with [B2]
//   [B7] head load elsewhere      relaxed  recorded(): a count (the thread's hits), as [B5]
//   [B4] own counter load + store relaxed  one writer per counter (the owning thread); a load
//                                          and a store, as a plain counter would be
//   [B5] counter load elsewhere   relaxed  a statistic; a slightly old value is fine, and a
//                                          thread's final counts reach the totals through [B6]
//   [B6] totals fetch_add / load  relaxed  counts only; a joined thread's adds happen-before
//                                          the joiner's read through the join
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "config.hpp"

namespace leftright::detail {

/// A counter only its owning thread increments; any thread may read it.
class owned_counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // [B4]
  }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }  // [B5]

 private:
  std::atomic<std::uint64_t> v_{0};
};

/// The newest accesses of one reading thread. record(): the owning thread; drain(): one thread
/// at a time (the cache's writer).
class access_ring {
 public:
  static constexpr std::uint64_t size = 1024;  ///< a power of two: 8 KiB of slots per thread

  /// Records an access. Progress: wait-free, a few stores to lines only this thread writes.
  void record(std::uint64_t hash) noexcept {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);  // [B0] own variable
    slots_[h & (size - 1)].store(hash, std::memory_order_relaxed);  // [B1]
    head_.store(h + 1, std::memory_order_release);                   // [B2]
  }

  /// Calls f(hash) for each access recorded since the last drain, oldest first, up to the newest
  /// `size`; counts the older ones as dropped.
  template <class F>
  void drain(F&& f) {
    const std::uint64_t h = head_.load(std::memory_order_acquire);  // [B3]
    std::uint64_t from = drained_;
    if (h - from > size) {
      dropped_ += h - from - size;
      from = h - size;
    }
    for (std::uint64_t i = from; i < h; ++i) {
      f(slots_[i & (size - 1)].load(std::memory_order_relaxed));  // [B1]
    }
    drained_ = h;
  }

  /// Accesses recorded so far (the cache counts a thread's hits by it). Any thread; may be old.
  std::uint64_t recorded() const noexcept { return head_.load(std::memory_order_relaxed); }  // [B7]
  /// Records lost to overwriting, as of the last drain. The drainer's thread.
  std::uint64_t dropped() const noexcept { return dropped_; }
  /// Records no drain has taken: the owning thread, once no drain can run (it is leaving).
  std::uint64_t undrained() const noexcept {
    return head_.load(std::memory_order_relaxed) - drained_;  // [B0]
  }

 private:
  // The reader's line(s): the head and the slots.
  alignas(cache_line) std::atomic<std::uint64_t> head_{0};
  std::array<std::atomic<std::uint64_t>, size> slots_{};
  // The drainer's: read and written only under the cache's writer lock.
  alignas(cache_line) std::uint64_t drained_ = 0;
  std::uint64_t dropped_ = 0;
};

/// Counts of the threads that have stopped reading a cache (a thread's counts move here when it
/// exits).
struct cache_totals {
  std::atomic<std::uint64_t> hits{0}, misses{0}, dropped{0};
  void add(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
    a.fetch_add(n, std::memory_order_relaxed);  // [B6]
  }
  static std::uint64_t get(const std::atomic<std::uint64_t>& a) noexcept {
    return a.load(std::memory_order_relaxed);  // [B6]
  }
};

}  // namespace leftright::detail
