// SPDX-License-Identifier: Apache-2.0
// publish_within(): a reader that keeps its guard never stalls the writer past the bound. The
// reader keeps its snapshot whole and unchanged, other readers see every new version, the held
// copies are freed once the slow reader leaves, and nothing leaks (instance-counted values). A
// publish that would have waited is detected by a stall report that throws (never by the clock).
// A guard kept across calls lives in a unique_ptr, not a std::optional: GCC 12 at -O1 (the tsan
// preset) warns that the optional's guard may be used uninitialized where a call may throw.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <thread>

#include <catch2/catch.hpp>
#include <leftright/map.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using namespace std::chrono_literals;

using counted = lrtest::counted;
using large_counted = lrtest::large<lrtest::counted>;

/// A publish that waits for a reader throws this (set_stall_report) instead of hanging the test.
struct would_wait : std::runtime_error {
  would_wait() : std::runtime_error("publish waited for a reader") {}
};
template <class W>
void fail_instead_of_waiting(W& w) {
  w.set_stall_report(1us, [](const leftright::reader_stall&) { throw would_wait(); });
}

long value_of(const counted& c) { return c.v; }
long value_of(const large_counted& c) { return c.inner.v; }

/// The sum of the entries of a snapshot (a fingerprint of its contents), -1 on a destroyed value.
template <class Guard>
long fingerprint(const Guard& g) {
  long sum = 0;
  for (const auto& kv : g) {
    const long x = value_of(kv.second);
    if (x < 0) return -1;
    sum += static_cast<long>(kv.first) * 1000 + x;
  }
  return sum;
}

}  // namespace

TEMPLATE_TEST_CASE("publish_within gives the write copy to a guard held on the writer's thread", "[publish_within]",
                   counted, large_counted) {
  // [T1] seq_cst loads of the instance count: this thread alone makes values here.
  const long live_before = counted::live.load();
  {
    auto [w, r] = leftright::make_map<std::uint64_t, TestType, leftright::default_hash<std::uint64_t>,
                                      leftright::default_eq<std::uint64_t>, lrtest::seq_cst_traits>();
    w.set_held_copy_limit(1000);
    for (std::uint64_t k = 0; k < 50; ++k) w.insert_or_assign(k, TestType(1));
    w.publish();
    auto slow = std::make_unique<decltype(r.read())>(r.read());  // version 1, kept across every publish
    const long print = fingerprint(*slow);
    auto other = w.make_reader();
    fail_instead_of_waiting(w);
    constexpr int publishes = 200;
    for (int i = 0; i < publishes; ++i) {
      w.insert_or_assign(static_cast<std::uint64_t>(i % 50), TestType(i + 2));
      w.insert_or_assign(static_cast<std::uint64_t>(1000 + i), TestType(i));
      REQUIRE(w.publish_within(1ms) == static_cast<std::uint64_t>(i + 2));
      const auto g = other.read();
      REQUIRE(g.version() == static_cast<std::uint64_t>(i + 2));  // sees every new version
      REQUIRE(g.size() == static_cast<std::size_t>(51 + i));
      REQUIRE(g.find(static_cast<std::uint64_t>(1000 + i)) != nullptr);
      REQUIRE(slow->version() == 1);
    }
    // The first publish found no reader inside; every later one found the slow reader, which
    // may read either copy it pinned: one held copy per publish from the second on.
    CHECK(w.held_copies() == publishes - 1);
    CHECK(slow->size() == 50);
    CHECK(fingerprint(*slow) == print);  // unchanged, and no value destroyed under it
    CHECK(w.release_held_copies() == publishes - 1);  // still inside: nothing freed
    slow.reset();
    CHECK(w.release_held_copies() == 0);
    w.insert_or_assign(7, TestType(7));
    CHECK(w.publish() == publishes + 2);  // no wait: the slow reader is gone
    CHECK(r.read().find(std::uint64_t{7}) != nullptr);
    CHECK(w.held_copies() == 0);
  }
  CHECK(counted::live.load() == live_before);  // [T1]
}

TEST_CASE("publish_within and the stall report take nanoseconds::max() as no bound", "[publish_within]") {
  auto [w, r] = leftright::make_map<int, int>();
  w.set_stall_report(std::chrono::nanoseconds::max());
  w.insert_or_assign(1, 1);
  CHECK(w.publish_within(std::chrono::nanoseconds::max()) == 1);  // (a deadline past the clock's end overflowed)
  w.insert_or_assign(1, 2);
  CHECK(w.publish_within(std::chrono::nanoseconds::max()) == 2);
  CHECK(w.held_copies() == 0);
  CHECK(r.get(1) == 2);
  CHECK(leftright::detail::saturating_after(std::chrono::steady_clock::now(), std::chrono::nanoseconds::max()) ==
        std::chrono::steady_clock::time_point::max());
}

TEST_CASE("publish_within waits as publish does at the held-copy limit", "[publish_within]") {
  auto [w, r] = leftright::make_map<int, int>();
  w.set_held_copy_limit(2);
  w.insert_or_assign(1, 1);
  w.publish();
  auto slow = std::make_unique<decltype(r.read())>(r.read());
  w.publish_within(1ms);  // records the slow reader
  w.publish_within(1ms);  // holds one copy
  w.publish_within(1ms);  // holds a second
  REQUIRE(w.held_copies() == 2);
  fail_instead_of_waiting(w);
  w.insert_or_assign(2, 2);
  CHECK_THROWS_AS(w.publish_within(1ms), would_wait);  // a third would pass the limit: it waited
  CHECK(w.pending() == 1);
  CHECK(w.version() == 4);
  slow.reset();
  CHECK(w.publish_within(1ms) == 5);  // frees both held copies first, then need not wait
  CHECK(w.held_copies() == 0);
  CHECK(r.get(2) == 2);
}

TEST_CASE("publish_within falls back to waiting when the fresh copy cannot be made", "[publish_within]") {
  using lrtest::fragile;
  auto [w, r] = leftright::make_map<int, fragile>();
  for (int k = 0; k < 10; ++k) w.insert_or_assign(k, fragile(k));
  w.publish();
  auto slow = std::make_unique<decltype(r.read())>(r.read());
  w.publish_within(1ms);  // records the slow reader
  fail_instead_of_waiting(w);
  w.insert_or_assign(3, fragile(30));
  fragile::copy_budget = 0;  // the fresh copy's first value copy throws
  fragile::refuse_once = true;
  CHECK_THROWS_AS(w.publish_within(1ms), would_wait);  // no copy: it waited, and gave up
  fragile::copy_budget = -1;
  fragile::refuse_once = false;
  CHECK(w.held_copies() == 0);
  CHECK(w.pending() == 1);  // nothing lost
  CHECK(w.version() == 2);
  CHECK_FALSE(w.poisoned());
  CHECK(slow->find(3)->v == 3);
  CHECK(w.publish_within(1ms) == 3);  // now the copy can be made
  CHECK(w.held_copies() == 1);
  CHECK(slow->find(3)->v == 3);
  slow.reset();
  CHECK(r.get(3)->v == 30);
  CHECK(w.release_held_copies() == 0);
}

TEMPLATE_TEST_CASE("a reader holding its guard in another thread never stalls publish_within", "[publish_within]",
                   lrtest::seq_cst_traits, lrtest::asymmetric_traits) {
  using map_traits = TestType;
  // [T1] seq_cst loads of the instance count, before the threads start and after they joined.
  const long live_before = counted::live.load();
  constexpr int publishes = 300;
  lrtest::failure_log failures;
  {
    auto [w, r] = leftright::make_map<std::uint64_t, counted, leftright::default_hash<std::uint64_t>,
                                      leftright::default_eq<std::uint64_t>, map_traits>();
    w.set_held_copy_limit(publishes);
    for (std::uint64_t k = 0; k < 100; ++k) w.insert_or_assign(k, counted(0));
    w.publish();
    std::atomic<int> progress{0};        // publishes the writer has made since the slow read began
    std::atomic<bool> slow_inside{false};
    std::atomic<bool> slow_left{false};
    std::atomic<std::uint64_t> fast_seen{0};  // the latest version the fast reader has read
    std::atomic<bool> stop{false};             // the writer gave up early (a failed test)
    std::thread slow([&, reader = w.make_reader()] {
      auto g = reader.read();
      const std::uint64_t v = g.version();
      const long print = fingerprint(g);
      // [T2] release: the guard is taken before the writer starts publishing.
      slow_inside.store(true, std::memory_order_release);
      // [T3] acquire: pairs with the writer's [T4]; holds the guard until the last publish.
      while (progress.load(std::memory_order_acquire) < publishes) std::this_thread::yield();
      if (g.version() != v) failures.add("the slow snapshot's version moved");
      if (g.size() != 100) failures.add("the slow snapshot's size moved: ", g.size());
      if (fingerprint(g) != print) failures.add("the slow snapshot's contents changed");
      // [T5] release: the guard's end is not this store but the destructor's; this only says
      //      the thread is about to leave (the writer re-checks the epoch itself).
      slow_left.store(true, std::memory_order_release);
    });
    std::thread fast([&, reader = w.make_reader()] {
      std::uint64_t last = 1;
      // [T9] relaxed: only ends the loop; nothing is read through it.
      while (last < publishes + 1 && !stop.load(std::memory_order_relaxed)) {
        const auto g = reader.read();
        const std::uint64_t v = g.version();
        if (v == last) continue;
        if (v != last + 1) failures.add("the fast reader skipped from ", last, " to ", v);
        if (g.find(std::uint64_t{1000} + v) == nullptr) failures.add("version ", v, " without its entry");
        last = v;
        // [T6] release: acknowledges version v to the writer, which waits for it ([T7]).
        fast_seen.store(v, std::memory_order_release);
      }
    });
    // [T8] acquire: pairs with [T2].
    while (!slow_inside.load(std::memory_order_acquire)) std::this_thread::yield();
    std::size_t waited = 0;  // publishes that would have waited for the slow reader
    w.set_stall_report(1us, [](const leftright::reader_stall&) { throw would_wait(); });
    for (int i = 0; i < publishes; ++i) {
      w.insert_or_assign(static_cast<std::uint64_t>(i % 100), counted(i + 1));
      w.insert_or_assign(static_cast<std::uint64_t>(1000 + i + 2), counted(i));
      std::uint64_t v = 0;
      try {
        v = w.publish_within(1ms);
      } catch (const would_wait&) {
        ++waited;
        break;
      }
      // [T4] release: the slow reader may leave after the last one.
      progress.store(i + 1, std::memory_order_release);
      // [T7] acquire: pairs with [T6]; the fast reader has seen version v before the next one.
      while (fast_seen.load(std::memory_order_acquire) < v) std::this_thread::yield();
    }
    if (waited != 0) {
      progress.store(publishes, std::memory_order_release);  // [T4] lets the slow reader go
      stop.store(true, std::memory_order_relaxed);            // [T9]
    }
    slow.join();
    fast.join();
    CHECK(waited == 0);
    // seq_cst loads after join(): the threads' stores happen-before them.
    CHECK(progress.load() == publishes);
    CHECK(slow_left.load());
    CHECK(w.held_copies() >= 1);
    CHECK(w.release_held_copies() == 0);  // the slow reader has left: everything freed
    CHECK(w.publish() == publishes + 2);
  }
  INFO(failures.summary());
  CHECK(failures.count() == 0);
  CHECK(counted::live.load() == live_before);  // [T1]
}

namespace {

/// A writer built on map_writer, as the durable writer is: publish_within through its hook.
class hooked_writer : public leftright::map_writer<int, int> {
 public:
  explicit hooked_writer(leftright::map_writer<int, int>&& w) : map_writer(std::move(w)) {}
  struct hook {
    std::vector<std::uint64_t>* applied;  // versions seen by before_apply
    std::size_t* ops;                     // the operations in the last batch seen
    bool* fail;                           // make before_apply throw
    void before_apply(std::uint64_t v, const std::vector<op_type>& batch) const {
      if (*fail) throw std::runtime_error("hook refused");
      applied->push_back(v);
      *ops = batch.size();
    }
    void before_swap(std::uint64_t, const std::vector<op_type>&) const noexcept {}
    void abort() const noexcept {}
  };
  std::uint64_t publish_hooked(hook h, std::chrono::nanoseconds max_wait) {
    return publish_within_with(h, max_wait);
  }
};

}  // namespace

TEST_CASE("publish_within_with calls the hook after a detachment, and a refusing hook loses nothing",
          "[publish_within]") {
  auto [plain, r] = leftright::make_map<int, int>();
  hooked_writer w(std::move(plain));
  std::vector<std::uint64_t> applied;
  std::size_t ops = 0;
  bool fail = false;
  const hooked_writer::hook h{&applied, &ops, &fail};
  w.insert_or_assign(1, 1);
  REQUIRE(w.publish_hooked(h, 1ms) == 1);
  auto slow = std::make_unique<decltype(r.read())>(r.read());
  w.insert_or_assign(2, 2);
  REQUIRE(w.publish_hooked(h, 1ms) == 2);  // records the slow reader
  w.insert_or_assign(3, 3);
  w.insert_or_assign(4, 4);
  fail = true;
  CHECK_THROWS_WITH(w.publish_hooked(h, 1ms), "hook refused");  // after detaching: nothing published
  CHECK(w.held_copies() == 1);
  CHECK(w.pending() == 2);
  CHECK(w.version() == 2);
  fail = false;
  fail_instead_of_waiting(w);
  CHECK(w.publish_hooked(h, 1ms) == 3);  // the fresh copy is already there: no wait, no new copy
  CHECK(w.held_copies() == 1);
  CHECK(applied == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(ops == 2);
  CHECK(slow->version() == 1);
  CHECK(slow->find(2) == nullptr);
  slow.reset();
  CHECK(r.get(4) == 4);
  CHECK(r.get(2) == 2);
  CHECK(w.release_held_copies() == 0);
}

}  // namespace LEFTRIGHT_TEST_FILE
