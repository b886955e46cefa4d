// SPDX-License-Identifier: Apache-2.0
// leftright: the combining queue of shared_map (flat combining, no thread of its own).
//
// A writer queues a request and then either becomes the combiner or waits. The combiner holds the
// map's single writer: it takes everything queued (a group), runs it (shared_map applies every
// caller's batch and publishes once), marks the group done, and wakes each caller. If requests
// arrived meanwhile, it hands the combiner's role to the thread of the first one that waits (its
// caller wakes and combines the next group) and returns: so a caller waits for at most the group
// in progress when it queued, then for its own. Requests nobody waits for (posted ones) are run
// by the combiner of the group that takes them; if only such requests are queued when a group
// ends, the combiner runs them too before it returns, so nothing queued is left without one.
//
// All state but the spin hint is guarded by one std::mutex (ThreadSanitizer sees it; see
// epoch.hpp); each request
// has a condition variable of its own, so a group's end wakes exactly its callers and the next
// combiner, not every waiting thread. They are notified with the mutex held: a caller may return
// and destroy its request as soon as it can take the mutex.
//
// Atomics: [Q1] spin_, relaxed both ways: a hint the combiner sets after a group and waiters
// read; it publishes no other data, and either value is correct (only the wait's cost differs).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "config.hpp"

namespace leftright::detail {

/// A queued request. The fields are guarded by the queue's mutex.
struct combine_request {
  virtual ~combine_request() = default;
  std::condition_variable cv;  ///< the caller waits here
  bool done = false;           ///< run by a combiner
  bool lead = false;           ///< this request's caller is to combine the next group
  bool detached = false;       ///< posted: no caller waits; the combiner deletes it after running
};

class combining_queue {
 public:
  using group = std::span<combine_request* const>;

  /// spin: whether a waiting writer checks back a few times before it sleeps (spin_while_running).
  combining_queue(std::chrono::microseconds max_delay, bool spin) : max_delay_(max_delay), spin_(spin) {}
  /// Changes spin, for the next waiters (the combiner, when its publishes start or stop making a
  /// system call). Any thread.
  void set_spin(bool spin) noexcept { spin_.store(spin, std::memory_order_relaxed); }  // [Q1]
  combining_queue(const combining_queue&) = delete;
  combining_queue& operator=(const combining_queue&) = delete;

  /// Queues r and returns once it has run: run(group) called by this thread, or by the
  /// combiner whose group took r. run must not throw (it records each request's outcome in it). Progress: blocking; waits for at most the group in progress and
  /// r's own. Memory ordering: everything run did to r happens-before this returns.
  template <class Run>
  void submit(combine_request& r, Run& run) {
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(&r);
    if (busy_) {
      if (spin_.load(std::memory_order_relaxed)) spin_while_running(lock, r);  // [Q1]
      r.cv.wait(lock, [&r] { return r.done || r.lead; });
      if (r.done) return;
      r.lead = false;  // handed the combiner's role
    }
    busy_ = true;
    combine(lock, run);
  }

  /// Queues r, which no caller waits for. Returns at once if a combiner is running (it or the
  /// next one runs r); otherwise this thread combines, r's group included.
  template <class Run>
  void post(std::unique_ptr<combine_request> r, Run& run) {
    r->detached = true;
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(r.release());
    if (busy_) return;
    busy_ = true;
    combine(lock, run);
  }

  /// Requests queued and not yet taken by a combiner. Cost: the mutex.
  std::size_t queued() {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size();
  }

 private:
  /// Runs groups until the queue is empty or a waiting caller takes over. Called with the lock
  /// held and busy_ set by this thread; returns with it released.
  template <class Run>
  void combine(std::unique_lock<std::mutex>& lock, Run& run) {
    std::vector<combine_request*> taken;
    std::vector<std::unique_ptr<combine_request>> finished;
    for (;;) {
      if (max_delay_.count() > 0) {  // let more writers join the group
        lock.unlock();
        std::this_thread::sleep_for(max_delay_);
        lock.lock();
      }
      taken.swap(queue_);
      lock.unlock();
      finished.reserve(finished.size() + taken.size());  // so that the loop below, under the lock, cannot throw
      run(group(taken));
      lock.lock();
      for (combine_request* r : taken) {
        r->done = true;
        if (r->detached) finished.emplace_back(r); else r->cv.notify_one();
      }
      taken.clear();
      if (queue_.empty() || hand_off()) break;
    }
    if (queue_.empty()) busy_ = false;
    lock.unlock();
    finished.clear();  // deletes the posted requests, outside the lock
  }

  /// Checks back on r a few times, over some tens of microseconds, before its caller sleeps on
  /// r's condition variable: a group's run (a publish) often takes less than a sleep and a
  /// wake-up, which cost the caller a futex wait and the combiner a futex wake (a third of the
  /// time of two threads writing 5% of their operations went there). Not for maps whose publish
  /// makes a membarrier (see shared_map's constructor). Called and returns with the lock held;
  /// releases it in between.
  static void spin_while_running(std::unique_lock<std::mutex>& lock, const combine_request& r) {
    for (int round = 0; round < 64 && !(r.done || r.lead); ++round) {
      lock.unlock();
      for (int i = 0; i < 32; ++i) cpu_relax();
      lock.lock();
    }
  }

  /// Makes the caller of the first queued request that waits the next combiner; false if only
  /// posted requests are queued.
  bool hand_off() {
    for (combine_request* r : queue_) {
      if (!r->detached) {
        r->lead = true;
        r->cv.notify_one();
        return true;
      }
    }
    return false;
  }

  std::mutex mu_;
  std::vector<combine_request*> queue_;  ///< FIFO; guarded by mu_
  bool busy_ = false;                    ///< a combiner runs (or was handed the role); mu_
  const std::chrono::microseconds max_delay_;
  std::atomic<bool> spin_;
};

}  // namespace leftright::detail
