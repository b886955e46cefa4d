// SPDX-License-Identifier: Apache-2.0
// shared_map's combining queue on its own (detail/shared_map_queue.hpp), with a clock of the
// test's: a combiner that finds itself alone right after a group that ended with nobody queued
// waits for that group's callers to queue again (await_returning), for at most half the last
// group's run, and only where that run took 50 us or more. The clock moves only when the test
// moves it, so each case decides exactly when the wait ends (the combiner sleeps for what is left
// of the wait in real time, then reads the test clock again; or the last caller back wakes it).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/detail/shared_map_queue.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using namespace std::chrono_literals;

/// A clock that stands still until the test moves it, and counts how often it was read.
struct test_clock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<test_clock>;
  // seq_cst throughout: a read counted after the test saw the count (read_count()) reads the
  // time after any advance() the test made before that, the one order all four operations share.
  static time_point now() noexcept {
    reads.fetch_add(1, std::memory_order_seq_cst);
    return time_point(duration(ticks.load(std::memory_order_seq_cst)));
  }
  static void advance(duration d) noexcept { ticks.fetch_add(d.count(), std::memory_order_seq_cst); }
  static std::uint64_t read_count() noexcept { return reads.load(std::memory_order_seq_cst); }
  static inline std::atomic<rep> ticks{0};
  static inline std::atomic<std::uint64_t> reads{0};
};

using queue_type = leftright::detail::basic_combining_queue<test_clock>;

struct request final : leftright::detail::combine_request {
  explicit request(int i) : id(i) {}
  int id;
};

/// Runs groups for every caller: records each group's request ids, in the order run, and lets
/// the test hold a run or make it take (test-clock) time.
struct recorder {
  std::mutex mu;
  std::vector<std::vector<int>> groups;          ///< mu
  std::function<void(const std::vector<int>&)> during;  ///< called in each run, set before any thread starts

  void operator()(queue_type::group g) {
    std::vector<int> ids;
    for (leftright::detail::combine_request* r : g) ids.push_back(static_cast<request*>(r)->id);
    if (during) during(ids);
    std::lock_guard<std::mutex> lock(mu);
    groups.push_back(ids);
  }
  std::vector<std::vector<int>> seen() {
    std::lock_guard<std::mutex> lock(mu);
    return groups;
  }
};

/// A flag one thread raises and another waits for.
struct flag {
  std::atomic<bool> up{false};
  void raise() noexcept { up.store(true, std::memory_order_release); }  // release: what came before is seen by a waiter
  bool raised() const noexcept { return up.load(std::memory_order_acquire); }  // acquire: pairs with raise()
};

/// Sets the scene every case starts from: caller A runs a group of its own while B and C queue,
/// so that B leads the next group, {B, C}, whose run takes `run_time` on the test clock and
/// which ends with nobody queued. Then B submits again (B2, alone: it combines), and C submits
/// C2 once the case calls release_c() (or posts it: c2_posted). Catch2's assertions are for the test's thread only: the
/// other threads note a wait that failed in stuck, which finish() reports.
struct scene {
  queue_type q{0us, /*spin=*/false};
  recorder rec;
  flag a_running, release_a, b1_done, c1_done, go_c2, b2_done, stuck;
  std::thread a, b, c;

  bool c2_posted = false;

  explicit scene(test_clock::duration run_time, bool post_c2 = false) : c2_posted(post_c2) {
    rec.during = [this, run_time](const std::vector<int>& ids) {
      if (ids == std::vector<int>{1}) {  // A's group: held until B and C have queued
        a_running.raise();
        wait_or_note([&] { return release_a.raised(); });
      }
      if (ids == std::vector<int>{2, 3}) test_clock::advance(run_time);
    };
  }
  /// Runs the scene up to B2's submit; false if it did not unfold as described.
  bool start() {
    a = std::thread([this] {
      request a1(1);
      q.submit(a1, rec);
    });
    if (!lrtest::yields_until([&] { return a_running.raised(); })) return false;
    b = std::thread([this] {
      request b1(2);
      q.submit(b1, rec);
      b1_done.raise();
      wait_or_note([&] { return c1_done.raised(); });  // the group {B, C} has ended for both
      request b2(4);
      q.submit(b2, rec);
      b2_done.raise();
    });
    if (!lrtest::yields_until([&] { return q.queued() == 1; })) return false;  // B queued before C: B leads
    c = std::thread([this] {
      request c1(3);
      q.submit(c1, rec);
      c1_done.raise();
      wait_or_note([&] { return go_c2.raised(); });
      if (c2_posted) {
        q.post(std::make_unique<request>(5), rec);
      } else {
        request c2(5);
        q.submit(c2, rec);
      }
    });
    if (!lrtest::yields_until([&] { return q.queued() == 2; })) return false;
    release_a.raise();
    return lrtest::yields_until([&] { return b1_done.raised() && c1_done.raised(); });
  }
  void release_c() noexcept { go_c2.raise(); }
  /// Joins the threads; false if one of them waited in vain.
  bool finish() {
    join_all();
    return !stuck.raised();
  }
  ~scene() {  // a case that failed half-way: let every wait end, so that the threads end
    release_a.raise();
    go_c2.raise();
    test_clock::advance(std::chrono::hours(1));
    join_all();
  }

 private:
  template <class Pred>
  void wait_or_note(Pred pred) {
    if (!lrtest::yields_until(pred)) stuck.raise();
  }
  void join_all() {
    for (std::thread* t : {&a, &b, &c}) {
      if (t->joinable()) t->join();
    }
  }
};

using groups = std::vector<std::vector<int>>;

}  // namespace

TEST_CASE("combining queue: a lone combiner after a synced group waits for that group's callers", "[combining_queue]") {
  scene s(200us);
  REQUIRE(s.start());
  // B2 queued, and its combiner waits: the queue still holds it (a combiner that did not wait
  // would have taken it at once, in the same hold of the mutex).
  REQUIRE(lrtest::yields_until([&] { return s.q.queued() == 1; }));
  CHECK_FALSE(s.b2_done.raised());
  s.release_c();
  CHECK(s.finish());
  CHECK(s.rec.seen() == groups{{1}, {2, 3}, {4, 5}});  // one group, one publish, for both
}

TEST_CASE("combining queue: the last caller back wakes the waiting combiner", "[combining_queue]") {
  // The last run took two hours on the test clock, so the combiner's wait (it sleeps for what is
  // left of an hour, in real time) ends only if C2, submitted or posted, wakes it as it queues.
  const bool posted = GENERATE(false, true);
  CAPTURE(posted);
  scene s(std::chrono::hours(2), posted);
  REQUIRE(s.start());
  REQUIRE(lrtest::yields_until([&] { return s.q.queued() == 1; }));
  s.release_c();
  REQUIRE(lrtest::yields_until([&] { return s.b2_done.raised(); }));  // within 30 s: woken, not timed out
  CHECK(s.finish());
  CHECK(s.rec.seen() == groups{{1}, {2, 3}, {4, 5}});
}

TEST_CASE("combining queue: the wait for returning callers ends at half the last run", "[combining_queue]") {
  scene s(200us);
  REQUIRE(s.start());
  REQUIRE(lrtest::yields_until([&] { return s.q.queued() == 1; }));
  test_clock::advance(99us);  // not yet half of 200 us
  // The waiting combiner reads the clock again, finds 99 us gone, and goes on waiting: the
  // queue still holds B2 (it reads the clock and takes the queue in one hold of the mutex).
  const std::uint64_t reads = test_clock::read_count();
  REQUIRE(lrtest::yields_until([&] { return test_clock::read_count() > reads; }));
  CHECK(s.q.queued() == 1);
  test_clock::advance(1us);
  // C has not queued: B's combiner runs B2 alone once the clock reaches the deadline.
  REQUIRE(lrtest::yields_until([&] { return s.b2_done.raised(); }));
  CHECK(s.rec.seen() == groups{{1}, {2, 3}, {4}});
  s.release_c();
  CHECK(s.finish());
  CHECK(s.rec.seen() == groups{{1}, {2, 3}, {4}, {5}});
}

TEST_CASE("combining queue: no wait after a run shorter than a sync", "[combining_queue]") {
  scene s(49us);  // under min_run_to_wait (50 us): a publish that made no system call
  REQUIRE(s.start());
  // B2 runs at once, alone, with the clock standing still: no wait, or it would never end.
  REQUIRE(lrtest::yields_until([&] { return s.b2_done.raised(); }));
  CHECK(s.rec.seen() == groups{{1}, {2, 3}, {4}});
  s.release_c();
  CHECK(s.finish());
  CHECK(s.rec.seen() == groups{{1}, {2, 3}, {4}, {5}});
}

}  // namespace LEFTRIGHT_TEST_FILE
