// SPDX-License-Identifier: Apache-2.0
// leftright: a mutex that spins briefly before it sleeps, for critical sections of a few hundred
// nanoseconds taken by threads that run at once.
//
// glibc's default mutex (std::mutex's) sleeps on a futex as soon as it finds the lock taken, so
// two threads that meet on a short critical section pay a system call each, and one of them a
// sleep and a wake-up: microseconds, where the holder would have released it in a fraction of
// one. (shared_map's combining queue, two threads writing 5% of their operations on a 2-core VM:
// three futex calls in four were that mutex's.) glibc's adaptive mutex tries the lock again for
// a bounded, self-tuning number of rounds before it sleeps. It is a pthread mutex, so
// ThreadSanitizer sees its ordering, which absl::Mutex does not give us (see epoch.hpp). Where
// the adaptive kind does not exist, this is an ordinary pthread mutex.
#pragma once

#include <pthread.h>

namespace leftright::detail {

/// Lockable (std::unique_lock, std::lock_guard). Neither copyable nor movable.
class adaptive_mutex {
 public:
  adaptive_mutex() noexcept = default;
  ~adaptive_mutex() { ::pthread_mutex_destroy(&m_); }
  adaptive_mutex(const adaptive_mutex&) = delete;
  adaptive_mutex& operator=(const adaptive_mutex&) = delete;

  /// Blocks until held. Cannot fail for a mutex that is valid and not held by this thread (the
  /// caller's precondition, as for std::mutex).
  void lock() noexcept { ::pthread_mutex_lock(&m_); }
  bool try_lock() noexcept { return ::pthread_mutex_trylock(&m_) == 0; }
  void unlock() noexcept { ::pthread_mutex_unlock(&m_); }

 private:
#if defined(PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP)
  pthread_mutex_t m_ = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
#else
  pthread_mutex_t m_ = PTHREAD_MUTEX_INITIALIZER;
#endif
};

}  // namespace leftright::detail
