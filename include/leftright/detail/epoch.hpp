// leftright: the reader registry. One cache-line slot per reader holds its epoch counter (odd =
// inside a read); the writer snapshots the odd ones after a swap and later waits for them to move.
// The memory-order reasoning for the epoch itself lives in left_right.hpp, next to the reader and
// writer code that pairs its operations; this file only hands out and takes back slots.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "config.hpp"

namespace leftright::detail {

/// One reader's slot. Written only by its owner (the epoch, and the reader-private fields beside
/// it), read by the writer; alignas keeps every slot on a line of its own so that no reader ever
/// writes a line another reader or the registry writes.
struct alignas(cache_line) reader_slot {
  /// Odd while the owner is inside a read. Never reset, also not when the slot is reused: a
  /// writer waiting for it to move away from an odd value it saw can never be fooled.
  std::atomic<std::uint64_t> epoch{0};
  // Reader-private: touched only by the thread that owns the slot (between acquire and release).
  const void* pinned = nullptr;   ///< the copy the outermost guard pinned
  std::uint32_t nested = 0;       ///< live guards nested in the current read
  bool outer_done = false;        ///< the outermost guard ended before its nested ones
  bool asymmetric = false;        ///< this reader's half of the barrier (see barrier.hpp)
  /// The next older slot in the registry's list. Set before the slot is published and never
  /// changed after, so the writer can walk the list without a lock.
  reader_slot* next = nullptr;
};
static_assert(sizeof(reader_slot) == cache_line, "a reader slot must fill exactly one cache line");

/// The set of slots of one left-right instance: an append-only list (slots are reused, never
/// freed before the registry), so the writer walks it without a lock and without allocating.
/// Thread-safe; any thread may register or release at any time, also while the writer waits.
class reader_registry {
 public:
  reader_registry() = default;
  reader_registry(const reader_registry&) = delete;
  reader_registry& operator=(const reader_registry&) = delete;
  ~reader_registry() {
    // [G0] relaxed: the registry dies with the last handle, so no other thread can be here.
    reader_slot* s = head_.load(std::memory_order_relaxed);
    while (s != nullptr) delete std::exchange(s, s->next);
  }

  /// Hands out a free slot, reusing released ones first. Cost: a mutex, and an allocation when
  /// none is free. The slot's epoch is even (its last owner left it outside a read).
  reader_slot* acquire(bool asymmetric) {
    std::lock_guard<std::mutex> lock(mu_);
    reader_slot* s;
    if (!free_.empty()) {
      s = free_.back();
      free_.pop_back();
    } else {
      free_.reserve(count_ + 1);  // so release() never allocates; may throw, nothing changed yet
      s = new reader_slot;
      // [G1] relaxed load: head_ is only stored under mu_, which we hold.
      s->next = head_.load(std::memory_order_relaxed);
      // [G2] seq_cst store: publishes the slot (and its next) to the writer's walk [G3]. Must be
      //      ordered before this reader's first epoch store [R1] against the writer's pointer
      //      store [W1] and walk [G3]: the same StoreLoad pattern as [R1]/[W3]. Registration is
      //      rare, so it always pays the full price.
      head_.store(s, std::memory_order_seq_cst);
      ++count_;
    }
    s->pinned = nullptr;
    s->nested = 0;
    s->outer_done = false;
    s->asymmetric = asymmetric;
    return s;
  }

  /// Takes a slot back. Precondition: its owner is outside any read (epoch even).
  void release(reader_slot* s) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(s);  // capacity reserved in acquire(): cannot throw
  }

  /// Calls f(slot) for every slot ever registered, live or free, without taking the lock.
  template <class F>
  void for_each(F&& f) const {
    // [G3] seq_cst load: pairs with [G2]. A slot registered too late to be seen here was
    //      registered after the writer's swap [W1], so its reader loads the new pointer.
    for (reader_slot* s = head_.load(std::memory_order_seq_cst); s != nullptr; s = s->next) f(*s);
  }

  /// Number of slots ever allocated: the high-water mark of concurrently live readers.
  std::size_t capacity() {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }

 private:
  std::atomic<reader_slot*> head_{nullptr};
  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with ThreadSanitizer, which
  // then cannot see absl::Mutex's ordering; pthread mutexes it intercepts. Registration is rare.
  std::mutex mu_;
  std::vector<reader_slot*> free_;  // guarded by mu_
  std::size_t count_ = 0;           // guarded by mu_
};

/// Spin briefly, then yield, then sleep with growing pauses: a writer waiting for a reader that
/// was preempted inside a read must not burn the core that reader needs to finish.
class backoff {
 public:
  void pause() {
    if (n_ < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else if (n_ < 128) {
      std::this_thread::yield();
    } else {
      const int shift = n_ - 128 < 10 ? n_ - 128 : 10;
      absl::SleepFor(absl::Microseconds(1 << shift));  // up to ~1 ms
    }
    ++n_;
  }

 private:
  int n_ = 0;
};

}  // namespace leftright::detail
