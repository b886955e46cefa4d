// SPDX-License-Identifier: Apache-2.0
// leftright: the reader registry. One cache-line slot per reader holds its epoch word (a count
// of its live guards and a generation); the writer records the slots that are inside after a
// swap and later waits for each to leave that read.
// The memory-order reasoning for the epoch itself lives in left_right.hpp, next to the reader and
// writer code that pairs its operations; this file defines the word and hands out slots.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "config.hpp"

#if __has_include(<pthread.h>)
#include <pthread.h>
#endif

namespace leftright::detail {

/// The layout of a reader's epoch word, one 64-bit atomic that only its reader stores:
///   bit 0       fenced: this reader orders its entry with seq_cst (reader_sync::seq_cst), fixed
///                       while the slot is registered; beside the count, so that one test on the
///                       read path sends both a nested read and a fenced reader off it
///   bits 1-29   count:  live guards of the current read (the outermost and the nested ones)
///   bits 30-63  generation: reads entered so far (wraps; see left_since)
/// A reader is inside while its count is not zero. Entering from outside adds one generation
/// and one guard in one store; a nested guard adds one guard; every guard, outermost or not,
/// leaves by taking one off, in whatever order the guards end: no leave needs a branch, and a
/// guard needs to know nothing but its slot. (liburcu's reader counter likewise keeps its
/// nesting count beside a grace-period phase.) The masks and the entry increment stay below
/// 2^31, so x86 tests and adds them as immediates.
struct epoch_word {
  static constexpr std::uint64_t fenced = 1;
  static constexpr std::uint64_t guard_unit = 2;
  static constexpr std::uint64_t count_mask = 0x1fff'ffffULL * guard_unit;
  static constexpr std::uint64_t generation_unit = count_mask + guard_unit;  // 1 << 30
  /// Entering a read from outside: one generation more, one guard.
  static constexpr std::uint64_t enter_read = generation_unit + guard_unit;

  static constexpr bool inside(std::uint64_t e) noexcept { return (e & count_mask) != 0; }
  /// True once a reader seen inside with word `seen` has left that read. Its generation only
  /// changes when it enters a read from outside, and it is outside only once every guard of the
  /// read has left. A wrapped generation (2^34 reads between two looks) can only make the
  /// writer wait for the reader's current read as well: safe.
  static constexpr bool left_since(std::uint64_t now, std::uint64_t seen) noexcept {
    return !inside(now) || ((now ^ seen) >= generation_unit);
  }
  static_assert(enter_read < (1ULL << 31) && (count_mask | fenced) < (1ULL << 31));
  /// Whether one more guard fits in the count.
  static constexpr bool can_nest(std::uint64_t e) noexcept { return (e & count_mask) != count_mask; }
};

/// Who may read through a slot (reader_slot::owner): nobody (free), any thread (a reader handle,
/// which may move between threads), or one thread, named by its thread_tag(): a per-thread
/// reader that no other thread ever enters through (case C9 of left_right.hpp).
struct slot_owner {
  static constexpr std::uint64_t none = 0;
  static constexpr std::uint64_t any_thread = ~std::uint64_t{0};
};

/// This thread's tag: a number no other live thread of the process has, never slot_owner::none
/// or any_thread: the thread's pthread_t where that is an integer or a pointer (the address of
/// its thread descriptor on Linux), the same in every shared object of the process; elsewhere
/// the address of a thread-local (one thread may then get different tags in objects built with
/// hidden visibility: its publishes are then not solo, only slower). A thread that has exited
/// may have had the tag a later thread gets; a slot still owned by the exited thread is then
/// taken for the later thread's own, which is safe: nobody reads through it any more (its reads
/// ended before its thread did). Cost: a call that reads a thread register.
inline std::uint64_t thread_tag() noexcept {
#if __has_include(<pthread.h>)
  const pthread_t self = ::pthread_self();
  if constexpr (std::is_integral_v<pthread_t>) {
    return static_cast<std::uint64_t>(self);
  } else if constexpr (std::is_pointer_v<pthread_t>) {
    return reinterpret_cast<std::uintptr_t>(self);
  }
#endif
  constinit thread_local char anchor = 0;
  return reinterpret_cast<std::uintptr_t>(&anchor);
}

/// One reader's slot. Written only by its owner (the epoch, and the reader-private field beside
/// it), read by the writer; alignas keeps every slot on a line of its own so that no reader ever
/// writes a line another reader or the registry writes.
struct alignas(cache_line) reader_slot {
  /// The epoch word (epoch_word). Never reset, also not when the slot is reused (only its
  /// fenced bit is set anew): a writer waiting for it to leave a read it saw can never be fooled.
  std::atomic<std::uint64_t> epoch{0};
  /// Reader-private: the copy the outermost guard of the current read pinned (for nested ones).
  const void* pinned = nullptr;
  /// Reader-private: entries made with a fence on an adaptive core's request (left_right.hpp,
  /// case C8), counted so that every so many the reader checks whether writes have gone quiet.
  std::uint32_t fenced_entries = 0;
  /// The next older slot in the registry's list. Set before the slot is published and never
  /// changed after, so the writer can walk the list without a lock.
  reader_slot* next = nullptr;
  /// slot_owner: stored by the registry at acquire and release ([G5], [G6]), read by the
  /// writer's solo check ([W8]). On the slot's own line, which the writer reads at every swap.
  std::atomic<std::uint64_t> owner{slot_owner::none};

  /// Whether the owner orders its entries with the writer's membarrier (else seq_cst).
  bool asymmetric() const noexcept {
    // [R0] relaxed: the owner reads its own word; the bit is set at registration [G4], by the
    //      owner's thread or before it got the slot.
    return (epoch.load(std::memory_order_relaxed) & epoch_word::fenced) == 0;
  }
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

  /// Hands out a free slot, reusing released ones first, to `owner` (slot_owner::any_thread, or
  /// the thread_tag() of the one thread that will read through it). Cost: a mutex, and an
  /// allocation when none is free. The slot is outside any read (its last owner left it so); its
  /// fenced bit is set for a seq_cst reader, cleared for an asymmetric one. The caller makes a
  /// seq_cst load of the read pointer before the slot's first entry ([G5], case C9).
  reader_slot* acquire(bool asymmetric, std::uint64_t owner = slot_owner::any_thread) {
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
    // Only the fenced bit changes; the generation goes on (a writer may still hold an old value).
    // [G4] relaxed load: the last store was the previous owner's, ordered before us by mu_.
    const std::uint64_t e = s->epoch.load(std::memory_order_relaxed);
    // [G4] release: a writer that reads this value instead of the previous owner's last leave
    //      still gets that owner's reads ordered before it (they precede its release(), under mu_).
    s->epoch.store(asymmetric ? e & ~epoch_word::fenced : e | epoch_word::fenced, std::memory_order_release);
    // [G5] relaxed store, then a seq_cst increment: a writer that loads the count (acquire) at
    //      this value or later sees this owner. Both under mu_, so acquires and releases change
    //      the count in the order they change owners.
    s->owner.store(owner, std::memory_order_relaxed);
    owners_gen_.fetch_add(1, std::memory_order_seq_cst);
    return s;
  }

  /// Takes a slot back. Precondition: its owner is outside any read.
  void release(reader_slot* s) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    // [G6] release store: a writer that loads none ([W8], acquire) has this owner's reads, all
    //      ended before this call, happen-before its check; the increment, seq_cst, tells a
    //      writer that caches its last walk to walk again (a solo swap may be possible now).
    s->owner.store(slot_owner::none, std::memory_order_release);
    owners_gen_.fetch_add(1, std::memory_order_seq_cst);
    free_.push_back(s);  // capacity reserved in acquire(): cannot throw
  }

  /// The registration count ([W8]): it moves at every acquire and release, after the owner is
  /// stored. `order` is the caller's (see lr_writer's solo check).
  std::uint64_t owners_generation(std::memory_order order) const noexcept { return owners_gen_.load(order); }

  /// The one thread every live slot is owned by, as of owners generation `*gen` (set here):
  /// slot_owner::none if every slot is free, that thread's tag if all live slots are its own,
  /// else slot_owner::any_thread. Lock-free: an acquire load of the generation, then of each
  /// slot's owner. A slot registered at that generation or before is seen with its owner or a
  /// later one ([G5]'s increment is a release, and every change of the count an RMW).
  std::uint64_t sole_owner(std::uint64_t* gen) const noexcept {
    // [W8] acquire: synchronizes with every [G5]/[G6] increment up to the value read.
    *gen = owners_gen_.load(std::memory_order_acquire);
    std::uint64_t sole = slot_owner::none;
    for_each([&](const reader_slot& s) {
      // [W8] acquire: pairs with [G6]; an owner of none means its reads are over.
      const std::uint64_t o = s.owner.load(std::memory_order_acquire);
      if (o != slot_owner::none && o != sole) sole = sole == slot_owner::none ? o : slot_owner::any_thread;
    });
    return sole;
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
  /// Acquires and releases so far ([G5], [G6]); beside head_, which the writer also reads.
  std::atomic<std::uint64_t> owners_gen_{0};
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
  /// pause(), but a sleep is cut to at most `limit` (a wait with a deadline must not sleep past it).
  void pause_at_most(std::chrono::nanoseconds limit) {
    if (n_ < 128) return pause();
    const int shift = n_ - 128 < 10 ? n_ - 128 : 10;
    absl::SleepFor(std::min(absl::Microseconds(1 << shift), absl::FromChrono(limit)));
    ++n_;
  }
  /// Whether the next pauses sleep (the waiting has gone on past spinning and yielding).
  bool sleeping() const noexcept { return n_ > 128; }

 private:
  int n_ = 0;
};

}  // namespace leftright::detail
