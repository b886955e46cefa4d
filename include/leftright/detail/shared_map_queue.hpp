// SPDX-License-Identifier: Apache-2.0
// leftright: the combining queue of shared_map (flat combining, no thread of its own).
//
// A writer queues a request and then either becomes the combiner or waits. The combiner holds the
// map's single writer: it takes everything queued (a group), runs it (shared_map applies every
// caller's batch and publishes once), and then, with the queue's mutex released, wakes first the
// caller of the first request that waits, if requests arrived meanwhile (it combines the next
// group, whose publish then runs while this group's callers wake), and then all of its own
// callers at once. So a caller waits for at most the group in progress when it queued, then for
// its own. Requests nobody waits for (posted ones) are run by the combiner of the group that takes
// them; if only such requests are queued when a group ends, the combiner runs them too before it
// returns, so nothing queued is left without one. While it does (its overtime), a post() waits
// as submit() does instead of returning at once, so that the combiner hands its role on after
// one more group: with posts arriving steadily, no caller combines for others indefinitely.
//
// The queue is guarded by one mutex that spins before it sleeps (adaptive_mutex.hpp). A request's
// outcome is its state, an atomic its caller reads without the mutex, and a caller sleeps on one
// of three words of the queue's (sleep_word.hpp), never on its request: the request lives on the
// caller's stack and is gone as soon as the caller sees its state, so the combiner touches it no
// more after storing that state, and wakes the word instead, which lives as long as the queue.
// Which word a caller sleeps on is known when it queues, because a combiner takes the whole
// queue: a request queued after take g is in group g + 1, and the first one that waits will
// lead it if group g is running (if instead the combiner that takes g + 1 had not taken yet, it
// runs that request, and wakes the lead word too). So
//   - the first waiting request queued after a take sleeps on lead_word_, alone;
//   - the others sleep on group_word_[g % 2] of the group g they will be in, and the combiner
//     wakes them all with one wake-up call (one system call, where a notify per caller took 16
//     under the mutex for a group of 16, each woken caller then sleeping on the mutex once more:
//     with 32 durable writers on two cores those wake-ups took as long as the group's sync).
// A caller of group g + 2 may sleep on group g's word and wake with it; it finds its request
// still waiting and sleeps again. A combiner that waits for its last group's callers to queue
// again (await_returning) sleeps on a fourth word, which the last of them wakes.
//
// Atomics:
//   [Q1] spin_, short_runs_, relaxed both ways: hints the combiner sets and waiters read; they
//        publish no other data, and either value is correct (only the wait's cost differs).
//   [Q2] combine_request::state: the combiner's store is release, the caller's loads acquire:
//        what run() recorded in the request (its version, its error) happens-before the caller
//        reads it. A caller handed the combiner's role takes the mutex before it runs.
//   [Q3] lead_word_, group_word_: the combiner's bump (a seq_cst fetch_add, after [Q2]'s stores)
//        releases and the caller's load before it checks its state acquires, so a caller that
//        read the new count also sees its new state; a caller that read the old count sleeps
//        only while the word still holds it (sleep_word.hpp's [W1]), so no wake-up is lost.
//   [Q4] returned_word_, seq_cst: read under the mutex before the combiner sleeps, bumped by the
//        caller that saw, under the mutex, the queue reach the count awaited. Sleeping only
//        while the word holds what was read ([W1]), the combiner misses no bump made after its
//        read; the mutex orders what it then reads of the queue.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "adaptive_mutex.hpp"
#include "config.hpp"
#include "sleep_word.hpp"

namespace leftright::detail {

/// A queued request. The fields but state are set under the queue's mutex; state is the outcome
/// ([Q2]).
struct combine_request {
  enum : std::uint32_t { waiting, done, lead };
  virtual ~combine_request() = default;
  /// waiting; then done (run by a combiner) or lead (its caller is to combine the next group).
  std::atomic<std::uint32_t> state{waiting};
  bool posted = false;     ///< made by post() (its caller may wait for it all the same: see post)
  bool detached = false;   ///< no caller waits: the combiner deletes it after running
  /// Its caller sleeps on the lead word: it was the first waiting request queued since the last
  /// take, so it leads the next group, unless that group's take comes from a combiner that had
  /// not taken yet when it queued (one sleeping max_delay, or running the posted requests left
  /// after its group), which then runs it and wakes the lead word too.
  bool leads = false;
  std::uint64_t group = 0; ///< the take that will run it (combining_queue::takes_ then)
};

/// Clock: what times a group's run and the wait for returning callers (await_returning); a test
/// gives one of its own, to decide when the wait ends.
template <class Clock = std::chrono::steady_clock>
class basic_combining_queue {
 public:
  using group = std::span<combine_request* const>;

  /// spin: whether a waiting writer checks back a few times before it sleeps (wait_for_outcome).
  basic_combining_queue(std::chrono::microseconds max_delay, bool spin) : max_delay_(max_delay), spin_(spin) {}
  /// Changes spin, for the next waiters (the combiner, when its publishes start or stop making a
  /// system call). Any thread.
  void set_spin(bool spin) noexcept { spin_.store(spin, std::memory_order_relaxed); }  // [Q1]
  basic_combining_queue(const basic_combining_queue&) = delete;
  basic_combining_queue& operator=(const basic_combining_queue&) = delete;

  /// Queues r and returns once it has run: run(group) called by this thread, or by the
  /// combiner whose group took r. run must not throw (it records each request's outcome in it).
  /// Progress: blocking; waits for at most the group in progress and r's own. Memory ordering:
  /// everything run did to r happens-before this returns.
  template <class Run>
  void submit(combine_request& r, Run& run) {
    std::unique_lock<adaptive_mutex> lock(mu_);
    queue_.push_back(&r);
    if (busy_) {
      r.group = takes_ + 1;
      r.leads = !waiting_queued_;
      waiting_queued_ = true;
      unlock_after_queueing(lock);
      if (wait_for_outcome(r) == combine_request::done) return;
      lock.lock();  // handed the combiner's role (busy_ stayed set)
      r.leads = false;  // its group's end has no one to wake on lead_word_ for it
    }
    busy_ = true;
    combine(lock, run);
  }

  /// Queues r, which no caller waits for. Returns at once if a combiner is running (it or the
  /// next one runs r), unless that combiner is past its own group, running posted requests
  /// only: then this waits for r as submit() does (and may take the combiner's role). Otherwise
  /// this thread combines, r's group included.
  template <class Run>
  void post(std::unique_ptr<combine_request> r, Run& run) {
    r->posted = true;
    std::unique_lock<adaptive_mutex> lock(mu_);
    if (busy_ && overtime_) {
      lock.unlock();
      submit(*r, run);  // r is deleted once it has run
      return;
    }
    r->detached = true;
    queue_.push_back(r.get());
    r.release();  // the combiner that runs it deletes it
    if (busy_) return unlock_after_queueing(lock);
    busy_ = true;
    combine(lock, run);
  }

  /// Requests queued and not yet taken by a combiner. Cost: the mutex.
  std::size_t queued() {
    std::lock_guard<adaptive_mutex> lock(mu_);
    return queue_.size();
  }

 private:
  /// The largest group copied out of the queue (combine); a larger one takes the queue's buffer.
  static constexpr std::size_t small_group = 32;

  /// Runs groups until the queue is empty or a waiting caller takes over. Called with the lock
  /// held and busy_ set by this thread; returns with it released.
  template <class Run>
  void combine(std::unique_lock<adaptive_mutex>& lock, Run& run) {
    // A group of up to small_group requests is copied out of the queue, which keeps its buffer
    // (no allocation a write); a larger one takes the queue's buffer. Nothing here allocates
    // while this thread holds the role: a failure would leave the queue with no combiner.
    std::array<combine_request*, small_group> small;
    std::vector<combine_request*> large;
    for (;;) {
      gather(lock);
      const taken_group taken = take_group(small, large);
      lock.unlock();
      const auto ran = run_group(run, taken);
      lock.lock();
      const bool posted_left = end_group(lock, taken, ran);
      delete_detached(taken.requests);  // outside the lock
      large.clear();
      if (!posted_left) break;
      lock.lock();
    }
  }

  /// What take_group took: the requests, how many of them have a caller waiting (the others
  /// are posted), and the take's number (group_word_[take % 2] is where those callers sleep).
  struct taken_group {
    std::span<combine_request*> requests;  ///< in this combiner's own storage (small, or large)
    std::size_t callers;
    std::uint64_t take;
  };

  /// Before a take: lets more writers join the group (max_delay), or waits for the last group's
  /// callers to queue again (await_returning). Called and returns with the lock held.
  void gather(std::unique_lock<adaptive_mutex>& lock) {
    if (max_delay_.count() > 0) {
      lock.unlock();
      std::this_thread::sleep_for(max_delay_);
      lock.lock();
    } else {
      await_returning(lock);
    }
  }

  /// Takes everything queued, with the lock held: copied into small if it fits, else the
  /// queue's buffer swapped into large.
  taken_group take_group(std::array<combine_request*, small_group>& small,
                         std::vector<combine_request*>& large) noexcept {
    std::size_t callers = 0;
    for (const combine_request* r : queue_) callers += r->detached ? 0 : 1;
    std::span<combine_request*> requests;
    if (queue_.size() <= small.size()) {
      std::copy(queue_.begin(), queue_.end(), small.begin());
      requests = std::span<combine_request*>(small.data(), queue_.size());
      queue_.clear();
    } else {
      large.swap(queue_);
      requests = std::span<combine_request*>(large);
    }
    waiting_queued_ = false;
    return {requests, callers, ++takes_};
  }
  /// Deletes the detached requests of a group that has ended: what finish_group left of it (it
  /// cleared the entries of the others, whose callers may have returned).
  static void delete_detached(std::span<combine_request*> requests) noexcept {
    for (combine_request* r : requests) delete r;  // nullptr, or a detached request
  }

  /// Runs a taken group, without the lock; returns how long it ran, where await_returning may
  /// read that: for a group of two callers or more (a clock read cost a tenth of a one-thread
  /// write).
  template <class Run>
  typename Clock::duration run_group(Run& run, const taken_group& taken) {
    const bool timed = taken.callers >= 2;
    const auto started = timed ? Clock::now() : typename Clock::time_point{};
    run(taken.requests);
    return timed ? Clock::now() - started : typename Clock::duration{};
  }

  /// After a group ran, with the lock held: the first waiting caller queued meanwhile, if any,
  /// is to lead the next group; otherwise this combiner is done unless posted requests are
  /// left. Releases the lock, then wakes that caller (first: its group runs meanwhile) and the
  /// group's own callers. Returns whether posted requests are left, which this thread runs.
  bool end_group(std::unique_lock<adaptive_mutex>& lock, const taken_group& taken, typename Clock::duration ran) {
    combine_request* const next = first_waiting();
    const bool posted_left = next == nullptr && !queue_.empty();
    if (next == nullptr && !posted_left) busy_ = false;
    overtime_ = posted_left;  // this combiner goes on with posted requests only (see post)
    // Nobody queued meanwhile: these callers wake together and queue again (see await_returning).
    returning_ = next == nullptr ? taken.callers : 0;
    last_run_ = ran;
    // A group of one caller is not timed (run_group): the last timed group's length stands.
    if (taken.callers >= 2) short_runs_.store(ran < min_run_to_wait, std::memory_order_relaxed);  // [Q1]
    lock.unlock();
    if (next != nullptr) wake(*next, combine_request::lead, lead_word_);
    if (taken.callers > 0) finish_group(taken.requests, group_word_[taken.take % 2], lead_word_);
    return posted_left;
  }

  /// Before a group is taken: if the last group ended with nobody queued behind it, its callers
  /// woke together and are queueing again, and the first of them found no combiner. Taking the
  /// queue at once would publish that caller alone (one sync for one commit) while the others
  /// queue behind it; so this sleeps until they have queued (the last of them wakes it:
  /// unlock_after_queueing), or for half the last group's run at most. Not where the last run
  /// took less than min_run_to_wait (a publish that makes no sync: a sleep and a wake-up among
  /// many threads took longer than that, and a 2 µs commit became a 150 µs one). As
  /// PostgreSQL's commit_delay, which waits only while commit_siblings transactions are active.
  /// It sleeps rather than yields: with 32 writers on two cores, yielding until they were back
  /// cost more CPU time than the group's own work. Called and returns with the lock held.
  void await_returning(std::unique_lock<adaptive_mutex>& lock) {
    const std::size_t expected = std::exchange(returning_, 0);
    if (expected < 2 || queue_.size() >= expected || last_run_ < min_run_to_wait) return;
    const auto until = Clock::now() + last_run_ / 2;
    awaiting_ = expected;
    for (auto left = until - Clock::now(); queue_.size() < expected && left > Clock::duration::zero();
         left = until - Clock::now()) {
      const std::uint32_t seen = returned_word_.load(std::memory_order_seq_cst);  // [Q4]
      lock.unlock();
      words_.wait(returned_word_, seen, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
      lock.lock();
    }
    awaiting_ = 0;
  }

  /// Releases the lock after a request was queued behind a running combiner; if the queue now
  /// holds as many requests as await_returning waits for, wakes it (after the release).
  void unlock_after_queueing(std::unique_lock<adaptive_mutex>& lock) noexcept {
    const bool last_back = awaiting_ != 0 && queue_.size() >= awaiting_;
    if (last_back) awaiting_ = 0;
    lock.unlock();
    if (last_back) words_.bump(returned_word_);  // [Q4]
  }

  /// Marks the waiting requests of a group done and wakes their callers, all at once. A
  /// request may be gone once its state is stored (its caller returns): its entry in taken is
  /// cleared first, so that taken then names only the detached ones (delete_detached). A caller
  /// that expected to lead the next group but was taken into this one sleeps on lead_word, not on
  /// word (see combine_request::leads).
  void finish_group(std::span<combine_request*> taken, std::atomic<std::uint32_t>& word,
                    std::atomic<std::uint32_t>& lead_word) noexcept {
    bool lead_sleeper = false;
    for (combine_request*& entry : taken) {
      if (entry->detached) continue;
      combine_request* const r = std::exchange(entry, nullptr);
      lead_sleeper = lead_sleeper || r->leads;  // read before the store: r may be gone after it
      r->state.store(combine_request::done, std::memory_order_release);  // [Q2]
    }
    words_.bump(word);  // [Q3]
    if (lead_sleeper) words_.bump(lead_word);  // [Q3]
  }
  /// Sets one request's outcome and wakes the callers sleeping on word.
  void wake(combine_request& r, std::uint32_t state, std::atomic<std::uint32_t>& word) noexcept {
    r.state.store(state, std::memory_order_release);  // [Q2]
    words_.bump(word);                                // [Q3]
  }

  /// Waits, without the lock, until r is done or its caller is to lead; returns which. Where
  /// spin_ says a group's run takes less than a sleep and a wake-up, checks back a few times
  /// over some tens of microseconds first (a third of the time of two threads writing 5% of
  /// their operations went to futex waits and wakes); not for maps whose publish makes a
  /// membarrier or a sync (see shared_map's constructor). Where the last timed group ran
  /// shorter than a sync (short_runs_), yields the processor a few times before it sleeps: among
  /// more writers than cores, a yield lets the combiner run, and the group often ends meanwhile
  /// (sleeping at once cost durable writers in `none` mode 7-22% at 8 and 32 writers). After a
  /// sync it sleeps at once, as the group will take a sync's time.
  std::uint32_t wait_for_outcome(const combine_request& r) {
    const auto outcome = [&r] {
      return r.state.load(std::memory_order_acquire);  // [Q2] acquire: see the file's list
    };
    if (spin_.load(std::memory_order_relaxed)) {  // [Q1]
      for (int round = 0; round < 64; ++round) {
        if (const std::uint32_t s = outcome(); s != combine_request::waiting) return s;
        for (int i = 0; i < 32; ++i) cpu_relax();
      }
    }
    if (short_runs_.load(std::memory_order_relaxed)) {  // [Q1]
      for (int round = 0; round < 4; ++round) {
        if (const std::uint32_t s = outcome(); s != combine_request::waiting) return s;
        std::this_thread::yield();
      }
    }
    std::atomic<std::uint32_t>& word = r.leads ? lead_word_ : group_word_[r.group % 2];
    for (;;) {
      const std::uint32_t seen = word.load(std::memory_order_acquire);  // [Q3]
      if (const std::uint32_t s = outcome(); s != combine_request::waiting) return s;
      words_.wait(word, seen);  // returns once the word moved (or spuriously)
    }
  }

  /// The first queued request whose caller waits (the next combiner), or nullptr if only posted
  /// requests are queued.
  combine_request* first_waiting() const noexcept {
    for (combine_request* r : queue_) {
      if (!r->detached) return r;
    }
    return nullptr;
  }

  adaptive_mutex mu_;
  std::vector<combine_request*> queue_;  ///< FIFO; guarded by mu_
  bool busy_ = false;                    ///< a combiner runs (or was handed the role); mu_
  std::uint64_t takes_ = 0;              ///< groups taken so far; mu_
  bool waiting_queued_ = false;          ///< queue_ holds a waiting request (its first leads); mu_
  bool overtime_ = false;                ///< the combiner runs posted requests only (see post); mu_
  static constexpr std::chrono::microseconds min_run_to_wait{50};
  std::size_t awaiting_ = 0;             ///< how many queued requests await_returning waits for (0: none); mu_
  std::size_t returning_ = 0;            ///< callers of the last group, if none queued behind it; mu_
  typename Clock::duration last_run_{};  ///< how long the last group's run took; mu_
  const std::chrono::microseconds max_delay_;
  std::atomic<bool> spin_;
  std::atomic<bool> short_runs_{true};  ///< the last group timed ran shorter than min_run_to_wait ([Q1])
  std::atomic<std::uint32_t> lead_word_{0};      ///< the next combiner sleeps here ([Q3])
  std::atomic<std::uint32_t> group_word_[2]{};   ///< a group's callers sleep here, by its parity ([Q3])
  std::atomic<std::uint32_t> returned_word_{0};  ///< await_returning sleeps here ([Q4])
  sleep_words words_;                            ///< how a thread sleeps on the words above
};

using combining_queue = basic_combining_queue<>;

}  // namespace leftright::detail
