// SPDX-License-Identifier: Apache-2.0
// Thread readers (reader_factory::make_thread_reader) and solo swaps (detail/left_right.hpp, case
// C9): a publish on a thread whose own thread readers are the only readers registered makes no
// membarrier and asks no reader to fence; any other reader, registered before or during, ends
// that; reads stay whole throughout.
#include <atomic>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {
using lrtest::automatic_traits;
using lrtest::make_u64_map;
using registry = leftright::detail::reader_registry;
using owner = leftright::detail::slot_owner;
}  // namespace

TEST_CASE("the registry's owners: counted at every acquire and release, their sole owner found by a walk",
          "[thread_readers]") {
  registry reg;
  std::uint64_t gen = 99;
  const std::uint64_t me = leftright::detail::thread_tag();
  CHECK(me == leftright::detail::thread_tag());  // the same thread, the same tag
  std::uint64_t other = 0;
  std::thread([&] { other = leftright::detail::thread_tag(); }).join();
  CHECK(other != me);
  CHECK(other != owner::none);
  CHECK(other != owner::any_thread);

  CHECK(reg.sole_owner(&gen) == owner::none);  // nothing registered
  CHECK(gen == 0);
  leftright::detail::reader_slot* mine = reg.acquire(true, me);
  CHECK(reg.owners_generation(std::memory_order_relaxed) == 1);
  CHECK(reg.sole_owner(&gen) == me);
  CHECK(gen == 1);
  leftright::detail::reader_slot* theirs = reg.acquire(true, other);
  CHECK(reg.sole_owner(&gen) == owner::any_thread);  // two threads
  CHECK(gen == 2);
  reg.release(theirs);
  CHECK(reg.sole_owner(&gen) == me);  // a free slot is nobody's
  CHECK(gen == 3);
  leftright::detail::reader_slot* any = reg.acquire(true, owner::any_thread);
  CHECK(any == theirs);  // reused, now for any thread
  CHECK(reg.sole_owner(&gen) == owner::any_thread);
  reg.release(mine);
  CHECK(reg.sole_owner(&gen) == owner::any_thread);
  reg.release(any);
  CHECK(reg.sole_owner(&gen) == owner::none);
  CHECK(gen == 6);
}

TEMPLATE_TEST_CASE("a thread reader's own publishes are solo until another reader registers", "[thread_readers]",
                   lrtest::asymmetric_traits, automatic_traits) {
  auto [w, r] = make_u64_map<TestType>();
  if (r.sync_mode() != leftright::reader_sync::asymmetric) {
    // seq_cst readers (no membarrier here, or ThreadSanitizer) always fence: nothing to skip.
    w.insert_or_assign(1, 1);
    w.publish();
    CHECK(w.solo_swaps() == 0);
    return;
  }
  auto mine = w.make_thread_reader();
  w.insert_or_assign(1, 1);
  w.publish();
  CHECK(w.solo_swaps() == 0);  // r is a reader for any thread
  { auto gone = std::move(r); }
  w.insert_or_assign(1, 2);
  w.publish();
  CHECK(w.solo_swaps() == 1);
  CHECK(mine.get(1) == 2);
  CHECK(w.try_settle());  // a settle's swap is solo too
  CHECK(w.solo_swaps() == 2);
  CHECK(mine.get(1) == 2);

  {
    auto roaming = w.factory().make_reader();
    w.insert_or_assign(1, 3);
    w.publish();
    CHECK(w.solo_swaps() == 2);
    CHECK(roaming.get(1) == 3);
  }
  w.insert_or_assign(1, 4);
  w.publish();
  CHECK(w.solo_swaps() == 3);  // released: solo again

  // A thread reader of another thread, alive while this thread publishes.
  std::atomic<int> stage{0};  // [T1] seq_cst: orders the two threads' steps, a test's handshake
  std::optional<std::uint64_t> seen;
  std::thread other([&, f = w.factory()] {
    auto theirs = f.make_thread_reader();
    seen = theirs.get(1);
    stage.store(1);
    stage.notify_one();
    stage.wait(1);  // until the publish below is done
    seen = theirs.get(1);
  });
  stage.wait(0);
  CHECK(seen == 4);
  w.insert_or_assign(1, 5);
  w.publish();
  CHECK(w.solo_swaps() == 3);
  stage.store(2);
  stage.notify_one();
  other.join();
  CHECK(seen == 5);
  w.insert_or_assign(1, 6);
  w.publish();
  CHECK(w.solo_swaps() == 4);  // that thread's reader is gone with it
  CHECK(mine.get(1) == 6);

  // Another thread publishing: this thread's reader is not its own.
  std::thread([&w = w] {
    w.insert_or_assign(1, 7);
    w.publish();
  }).join();
  CHECK(w.solo_swaps() == 4);
  CHECK(mine.get(1) == 7);
}

TEST_CASE("a guard held across a solo publish keeps its snapshot", "[thread_readers]") {
  auto [w, r] = make_u64_map<lrtest::asymmetric_traits>();
  { auto gone = std::move(r); }
  auto mine = w.make_thread_reader();
  w.insert_or_assign(1, 1);
  w.insert_or_assign(2, 1);
  w.publish();
  {
    auto g = mine.read();
    w.insert_or_assign(1, 2);
    w.insert_or_assign(2, 2);
    w.publish();  // the guard is seen inside the copy it pinned
    CHECK(*g.find(1) == 1);
    CHECK(*g.find(2) == 1);
    CHECK(mine.get(1) == 1);  // nested: the same snapshot
    CHECK(mine.read().version() == g.version());
  }
  CHECK(mine.get(1) == 2);
  w.insert_or_assign(1, 3);
  w.insert_or_assign(2, 3);
  w.publish();  // waits for the guard above, which has ended
  CHECK(mine.get(1) == 3);
  CHECK(mine.get(2) == 3);
}

TEST_CASE("a solo writer publishing flat out never asks readers to fence", "[thread_readers]") {
  auto [w, r] = make_u64_map<automatic_traits>();
  if (r.sync_mode() != leftright::reader_sync::asymmetric) {
    SUCCEED("no membarrier here (or ThreadSanitizer): automatic readers always fence");
    return;
  }
  { auto gone = std::move(r); }
  auto mine = w.make_thread_reader();
  for (std::uint64_t i = 1; i <= 20000; ++i) {
    w.insert_or_assign(1, i);
    w.publish();
    REQUIRE_FALSE(w.readers_fence());
  }
  CHECK(w.solo_swaps() == 20000);
  CHECK(mine.get(1) == 20000);
  // A reader for any thread arrives: from here on the rate decides, as before.
  auto roaming = w.factory().make_reader();
  const std::uint64_t i = lrtest::publish_until_fencing(w, 20000, 200000);
  CHECK(w.readers_fence());
  CHECK(roaming.get(1) == i);
  CHECK(w.solo_swaps() == 20000);
}

// Threads come and go, each registering a thread reader and checking pairs, while the writer,
// which reads through its own thread reader, publishes: its swaps alternate between solo and
// not as readers register and release, and no read may see half a batch or a version go back.
TEMPLATE_TEST_CASE("readers registering and leaving while a solo writer publishes read whole batches",
                   "[thread_readers]", lrtest::asymmetric_traits, automatic_traits, lrtest::seq_cst_traits) {
  auto [w, r] = make_u64_map<TestType>();
  { auto gone = std::move(r); }
  const auto factory = w.factory();
  auto mine = w.make_thread_reader();
  w.insert_or_assign(1, 0);
  w.insert_or_assign(2, 0);
  w.publish();
  std::atomic<int> finished{0};   // [T2] relaxed: only ends the writer's loop; join orders the rest
  std::atomic<long> failures{0};  // [T3] relaxed: a count read after join
  constexpr int visitors = 3;
  constexpr int visits = 60;
  std::vector<std::thread> threads;
  for (int t = 0; t < visitors; ++t) {
    threads.emplace_back([&] {
      for (int v = 0; v < visits; ++v) {
        std::thread([&] {
          auto reader = factory.make_thread_reader();
          std::uint64_t last = 0;
          for (int n = 0; n < 50; ++n) {
            auto g = reader.read();
            const std::uint64_t* a = g.find(1);
            const std::uint64_t* b = g.find(2);
            if (a == nullptr || b == nullptr || *a != *b || *a < last || g.version() < last) {
              failures.fetch_add(1, std::memory_order_relaxed);
            }
            last = a != nullptr ? *a : last;
          }
        }).join();
      }
      finished.fetch_add(1, std::memory_order_relaxed);
    });
  }
  // At least a fixed number of publishes, and on until every visitor is done (each does a fixed
  // amount of work).
  std::uint64_t i = 0;
  while (i < 4000 || finished.load(std::memory_order_relaxed) < visitors) {
    ++i;
    w.insert_or_assign(1, i);
    w.insert_or_assign(2, i);
    w.publish();
    if (i % 3 == 0) w.try_settle();
    const auto g = mine.read();
    if (*g.find(1) != i || *g.find(2) != i) failures.fetch_add(1, std::memory_order_relaxed);
  }
  for (auto& t : threads) t.join();
  CHECK(failures.load(std::memory_order_relaxed) == 0);
  CHECK(mine.get(1) == i);
  if (w.sync_mode() == leftright::reader_sync::seq_cst) CHECK(w.solo_swaps() == 0);
}

TEST_CASE("a shared_map read and written by one thread publishes solo, and reads its own writes", "[thread_readers]") {
  leftright::shared_map<std::uint64_t, std::uint64_t> m;
  const bool asymmetric = m.factory().make_reader().sync_mode() == leftright::reader_sync::asymmetric;
  for (std::uint64_t i = 0; i < 2000; ++i) {
    m.insert_or_assign(i % 37, i);
    REQUIRE(m.get(i % 37) == i);
  }
  leftright::shared_map_stats s = m.stats();
  CHECK(s.publishes == 2000);
  // Solo once the factory's reader above is gone: all but the first publish or two.
  CHECK(s.solo_publishes >= (asymmetric ? 1998u : 0u));
  CHECK(s.solo_publishes <= (asymmetric ? 2000u : 0u));
  // A second thread that writes and reads: its publishes are not solo while this thread's
  // reader lives (this thread's, made by its first read above, until this thread exits).
  std::thread([&] {
    for (std::uint64_t i = 0; i < 500; ++i) {
      m.insert_or_assign(1000 + i, i);
      REQUIRE(m.get(1000 + i) == i);
    }
  }).join();
  CHECK(m.stats().solo_publishes == s.solo_publishes);
  CHECK(m.get(1000 + 499) == 499);
  CHECK(m.size() == 37 + 500);
}

}  // namespace LEFTRIGHT_TEST_FILE
