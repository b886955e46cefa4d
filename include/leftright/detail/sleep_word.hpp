// SPDX-License-Identifier: Apache-2.0
// leftright: words that threads sleep on until they change, for the combining queue.
//
// std::atomic<T>::wait is the portable way to sleep on a word, but libstdc++ 12's spins and then
// yields the processor four times before it sleeps. With 32 durable writers on two cores each
// yield is a context switch: 4.9 context switches a commit, and 43% of the process's CPU time in
// sched_yield and what it calls (producers/leftright/sync, 2026-12-06). A writer that waits for a
// group's sync has nothing to spin for, so on Linux a sleep_words sleeps on the word's futex at
// once; elsewhere it falls back to std::atomic<T>::wait. It also gives a sleep with a timeout,
// which std::atomic has not.
//
// A wake makes a system call only while someone sleeps: the sleepers are counted, one count for
// all the words a sleep_words serves (a wake may then call for a sleeper on another word: a
// wasted call, never a lost wake-up).
//
// Atomics:
//   [W1] sleepers_ and the words, seq_cst on both sides (a Dekker pair): a sleeper adds itself,
//        then reads the word; a waker changes the word, then reads the count. In the one order
//        of seq_cst operations, either the waker sees the sleeper (and wakes the futex), or the
//        sleeper sees the new value (and does not sleep). The kernel's own compare closes the
//        gap between the sleeper's read and its sleep. What a woken thread then reads is ordered
//        by the caller's own atomics, not by these.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ctime>
#endif

namespace leftright::detail {

/// Sleeping on std::atomic<std::uint32_t> words until they change; see the file comment.
/// Neither copyable nor movable; the words it serves must outlive every call.
class sleep_words {
 public:
  sleep_words() = default;
  sleep_words(const sleep_words&) = delete;
  sleep_words& operator=(const sleep_words&) = delete;

  /// Sleeps while word holds seen: until a bump() of it, for at most timeout if one is given.
  /// May return early (a signal, another word's wake); the caller checks its condition again.
  void wait(const std::atomic<std::uint32_t>& word, std::uint32_t seen,
            std::optional<std::chrono::nanoseconds> timeout = std::nullopt) noexcept {
#if defined(__linux__)
    sleepers_.fetch_add(1, std::memory_order_seq_cst);  // [W1]
    if (word.load(std::memory_order_seq_cst) == seen) {  // [W1]
      timespec ts{};
      if (timeout) {
        const auto ns = std::max<std::int64_t>(timeout->count(), 0);
        ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      }
      // A std::atomic<std::uint32_t> is the 32-bit word itself (static_assert below).
      ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, seen,
                timeout ? &ts : nullptr, nullptr, 0);
    }
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);  // [W1]
#else
    if (timeout) {
      std::this_thread::yield();  // no timed wait in std::atomic: the caller polls
    } else {
      word.wait(seen, std::memory_order_seq_cst);  // [W1]
    }
#endif
  }

  /// Adds one to word and wakes every thread sleeping on it.
  void bump(std::atomic<std::uint32_t>& word) noexcept {
    word.fetch_add(1, std::memory_order_seq_cst);  // [W1]
#if defined(__linux__)
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {  // [W1]
      ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
    }
#else
    word.notify_all();
#endif
  }

 private:
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                std::atomic<std::uint32_t>::is_always_lock_free);
  std::atomic<std::uint32_t> sleepers_{0};
};

}  // namespace leftright::detail
