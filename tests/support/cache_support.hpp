// SPDX-License-Identifier: Apache-2.0
// Helpers for the cache tests: a clock the test moves by hand, and a hash that is the same in
// every process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace lrtest {

/// A clock the test moves by hand (the cache's ticker), read by any thread. Atomics here carry no
/// other data: a test orders its threads by joins and the cache's own locks, so relaxed is enough.
struct fake_clock {
  std::atomic<std::int64_t> ns;
  std::atomic<std::int64_t> pending_step{0};
  explicit fake_clock(std::int64_t start = 1'000'000'000) : ns(start) {}
  fake_clock(const fake_clock&) = delete;
  fake_clock& operator=(const fake_clock&) = delete;

  std::function<std::int64_t()> ticker() {
    return [this] {
      const std::int64_t step = pending_step.exchange(0, std::memory_order_relaxed);  // (see above)
      return ns.fetch_add(step, std::memory_order_relaxed);  // this read's time, then the step
    };
  }
  void advance(std::chrono::nanoseconds d) { ns.fetch_add(d.count(), std::memory_order_relaxed); }  // (see above)
  void set(std::chrono::nanoseconds t) { ns.store(t.count(), std::memory_order_relaxed); }          // (see above)
  /// Moves the clock by d just after its next read: for a test that needs the clock to pass a
  /// deadline between two reads of one write.
  void step_at_next_read(std::chrono::nanoseconds d) {
    pending_step.store(d.count(), std::memory_order_relaxed);  // (see above)
  }
};

/// A hash that is the same in every process (absl::Hash, the default, is seeded per process), for
/// a test whose outcome depends on which entries the policy keeps. splitmix64's finalizer.
struct fixed_hash {
  std::size_t operator()(int k) const {
    std::uint64_t x = static_cast<std::uint64_t>(k) + 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::size_t>(x ^ (x >> 31));
  }
};

}  // namespace lrtest
