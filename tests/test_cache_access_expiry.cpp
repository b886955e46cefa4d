// SPDX-License-Identifier: Apache-2.0
// leftright::cache: expiry after access (cache_options::expire_after_access). Deterministic: time
// comes from a fake ticker the test moves; the concurrent case asserts on values and counts for a
// fixed number of reads.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>

#include "leftright/cache.hpp"
#include "support/test_support.hpp"
#include "support/cache_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using leftright::cache;
using leftright::cache_options;
using leftright::removal_cause;
using lrtest::fake_clock;
using namespace std::chrono_literals;

/// A loader that counts its calls (a hit must not call it).
struct counting_loader {
  int* calls;
  int operator()(const int& k) const {
    ++*calls;
    return k * 2;
  }
};

}  // namespace

TEST_CASE("cache: expire_after_access: an unread entry goes after the period; a read seen by a maintenance moves it") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  c.put(2, 20);
  clock.set(5s);
  c.run_pending();          // a maintenance at 5
  clock.set(6s);
  REQUIRE(c.get(1) == 10);  // recorded; seen by the next write's maintenance, dated 5
  clock.set(7s);
  c.put(3, 30);             // a write: its maintenance moves 1's deadline to 5 + 10
  clock.set(10s);
  CHECK_FALSE(c.get(2).has_value());  // not read since its put at 0
  CHECK(c.peek(1) == 10);
  CHECK(c.peek(3) == 30);
  clock.set(14s);
  CHECK(c.peek(1) == 10);
  CHECK(c.peek(3) == 30);
  clock.set(15s);                     // peek records nothing
  CHECK_FALSE(c.peek(1).has_value());
  clock.set(17s);
  CHECK_FALSE(c.peek(3).has_value());  // written at 7, not read since
  c.run_pending();
  CHECK(c.size() == 0);
  CHECK(c.stats().expirations == 3);
}

TEST_CASE("cache: expire_after_access: a read only moves the deadline once a maintenance sees it") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  clock.set(6s);
  REQUIRE(c.get(1) == 10);  // get() runs no maintenance, and none runs before the deadline
  clock.set(10s);
  CHECK_FALSE(c.get(1).has_value());  // gone early (a miss, never a stale value)
  c.run_pending();                    // the read seen now does not bring it back
  CHECK_FALSE(c.peek(1).has_value());
  CHECK(c.size() == 0);
}

TEST_CASE("cache: expire_after_access: get_or_load hits keep an entry alive with no write; idle, it goes") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  int loads = 0;
  REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 2);
  REQUIRE(loads == 1);
  for (int i = 0; i < 40; ++i) {  // two minutes of hits every 3 s, and nothing else
    clock.advance(3s);
    REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 2);
  }
  CHECK(loads == 1);
  CHECK(c.stats().expirations == 0);
  clock.advance(10s);
  CHECK_FALSE(c.peek(1).has_value());  // 10 s idle: gone
  CHECK(c.get_or_load(1, counting_loader{&loads}) == 2);
  CHECK(loads == 2);
}

TEST_CASE("cache: expire_after_access with a write deadline: reads never keep an entry past it") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_write = 25s, .expire_after_access = 10s, .ticker = clock.ticker()});
  int loads = 0;
  REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 2);
  c.put(5, 50, 8s);  // a put's ttl caps it as well
  for (int t = 3; t <= 24; t += 3) {
    clock.set(std::chrono::seconds(t));
    REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 2);
    if (t < 8) REQUIRE(c.get_or_load(5, counting_loader{&loads}) == 50);
  }
  CHECK(loads == 1);
  CHECK_FALSE(c.peek(5).has_value());  // read at 3 and 6, yet its ttl of 8 s ended it
  clock.set(25s);
  CHECK_FALSE(c.peek(1).has_value());  // read every 3 s, yet 25 s after its write
  CHECK(c.get_or_load(1, counting_loader{&loads}) == 2);
  CHECK(loads == 2);
}

TEST_CASE("cache: expire_after_access: a moved deadline is no replacement; the listener hears the expiry once") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  std::vector<std::tuple<int, int, removal_cause>> heard;
  c.set_removal_listener([&](const int& k, const int& v, removal_cause why) { heard.emplace_back(k, v, why); });
  c.put(1, 10);
  for (int i = 0; i < 10; ++i) {
    clock.advance(4s);
    REQUIRE(c.get(1) == 10);
    c.run_pending();
  }
  CHECK(heard.empty());
  clock.advance(10s);
  c.run_pending();
  REQUIRE(heard.size() == 1);
  CHECK(heard[0] == std::tuple(1, 10, removal_cause::expired));
}

TEST_CASE("cache: expire_after_access: an entry first read just after another's keep-alive still lives on") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 100s, .ticker = clock.ticker()});
  int loads = 0;
  REQUIRE(c.get_or_load(2, counting_loader{&loads}) == 4);  // deadline 100
  clock.set(30s);
  REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 2);  // deadline 130
  clock.set(80s);
  REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 2);  // a keep-alive: none other before 105
  for (int t = 81; t < 100; ++t) {                           // 2 is read again, but would be gone at 100
    clock.set(std::chrono::seconds(t));
    REQUIRE(c.get_or_load(2, counting_loader{&loads}) == 4);
  }
  clock.set(100s);
  CHECK(c.peek(2) == 4);
  clock.set(179s);
  CHECK(c.peek(2) == 4);  // moved to 80 + 100 (its first read dated by the keep-alive at 80)
  CHECK(loads == 2);
}

TEST_CASE("cache: expire_after_access: a failed write's rebuild keeps moving the deadlines of entries read") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  c.put(2, 20);
  for (int i = 0; i < 3; ++i) {  // 1 read every 4 s: moved at each maintenance
    clock.advance(4s);
    REQUIRE(c.get(1) == 10);
    c.run_pending();
  }
  // A write that fails rebuilds the writer's state from the map (its deadlines included).
  CHECK_THROWS_AS(c.invalidate_if([](const int&, const int&) -> bool { throw std::runtime_error("pred"); }),
                  std::runtime_error);
  CHECK_FALSE(c.peek(2).has_value());  // (gone since 10: 2 was never read)
  for (int i = 0; i < 6; ++i) {  // 1 is still read, and still lives on, past its deadline at the failure
    clock.advance(4s);
    REQUIRE(c.get(1) == 10);
    c.run_pending();
  }
  CHECK(c.peek(1) == 10);
}

TEST_CASE("cache: expire_after_access: a get_or_load hit in an invalidate_if predicate runs no keep-alive") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 1);
  c.put(2, 2);
  clock.set(6s);  // 1 is in its last half: out of a write, its hit would run a keep-alive
  int loads = 0;
  c.invalidate_if([&](const int& k, const int&) { return k == 2 && c.get_or_load(1, counting_loader{&loads}) == 1; });
  CHECK_FALSE(c.peek(2).has_value());
  CHECK(c.peek(1) == 1);
  CHECK(loads == 0);
}

TEST_CASE("cache: expire_after_access: a read seen late never keeps its entry past the read plus the period") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  clock.set(4s);
  c.run_pending();
  clock.set(8s);
  REQUIRE(c.get(1) == 10);  // the last read of 1
  clock.set(9s);
  c.run_pending();          // sees it: dated 4, the maintenance before (it ran at 4 to 9)
  clock.set(13s);
  CHECK(c.peek(1) == 10);
  clock.set(14s);
  CHECK_FALSE(c.peek(1).has_value());  // early (8 + 10 = 18), never later than 18
}

TEST_CASE("cache: expire_after_access must not be negative") {
  CHECK_THROWS_AS((cache<int, int>({.expire_after_access = -1s})), std::invalid_argument);
}

TEST_CASE("cache: expire_after_access: a get_or_load inside a compute function reads without running a maintenance") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  clock.set(8s);
  int loads = 0;
  // The hit is in the last half of 1's time: out of compute it would run a maintenance, which
  // inside would throw (the writer lock is held); it reads instead.
  const auto got =
      c.compute(2, [&](const int*) { return std::optional<int>(c.get_or_load(1, counting_loader{&loads})); });
  CHECK(got == 10);
  CHECK(loads == 0);
  // The compute's own write came before that read; the next maintenance sees it.
  clock.set(9s);
  c.run_pending();
  clock.set(17s);
  CHECK(c.peek(1) == 10);
}

TEST_CASE("cache: expire_after_access: a hit inside a compute function leaves the keep-alive to the next hit") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 100s, .ticker = clock.ticker()});
  c.put(1, 10);
  c.put(3, 30, 60500ms);  // gone at 60.5 s; a maintenance after that removes it
  clock.set(60s);
  int loads = 0;
  (void)c.compute(2, [&](const int*) { return std::optional<int>(c.get_or_load(1, counting_loader{&loads})); });
  REQUIRE(c.size() == 3);
  clock.set(61s);
  // This hit is the first to run a keep-alive (the one inside compute did not take its turn):
  // its maintenance removes 3.
  REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 10);
  CHECK(c.size() == 2);
  CHECK(loads == 0);
}

TEST_CASE("cache: expire_after_access: no keep-alive for an entry its write deadline caps") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 10, 4s);  // capped at 4: no read can move it
  c.put(2, 20, 1s);
  clock.set(2s);     // 2 is past its deadline, not yet removed
  int loads = 0;
  REQUIRE(c.get_or_load(1, counting_loader{&loads}) == 10);  // in the last half of 1's time
  CHECK(c.size() == 2);  // no maintenance ran for it (it would have removed 2)
  clock.set(4s);
  CHECK_FALSE(c.peek(1).has_value());
}

TEST_CASE("cache: expire_after_access: a read made during a write that fails is not served late") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  clock.set(4s);
  CHECK_THROWS_AS(c.invalidate_if([&](const int&, const int&) -> bool {
    REQUIRE(c.get(1) == 10);  // the last read of 1, at 4
    clock.set(9s);           // a long predicate, and it fails
    throw std::runtime_error("pred");
  }),
                  std::runtime_error);
  clock.set(9500ms);
  c.run_pending();  // sees the read: dated 4 at the latest
  clock.set(13s);
  CHECK(c.peek(1) == 10);
  clock.set(14s);
  CHECK_FALSE(c.peek(1).has_value());
}

TEST_CASE("cache: expire_after_access: hits on an entry due for refresh keep it alive while refreshes fail") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_access = 10s, .ticker = clock.ticker(), .refresh_after_write = 2s});
  bool failing = false;
  auto loader = [&](const int& k) {
    if (failing) throw std::runtime_error("store down");
    return k * 2;
  };
  REQUIRE(c.get_or_load(1, loader) == 2);
  failing = true;
  int served = 0;
  for (int i = 0; i < 40; ++i) {  // every second for 40 s: each a refresh that fails, the old value served
    clock.advance(1s);
    try {
      served += c.get_or_load(1, loader) == 2;
    } catch (const std::runtime_error&) {
    }
  }
  CHECK(served == 40);
  CHECK(c.stats().load_failures >= 30);
}

TEST_CASE("cache: expire_after_access: threads reading through get_or_load as the clock moves count every lookup") {
  fake_clock clock(0);
  cache<int, int> c({.max_entries = 64, .expire_after_access = 8s, .ticker = clock.ticker()});
  std::atomic<int> loads{0};
  auto loader = [&](const int& k) {
    loads.fetch_add(1, std::memory_order_relaxed);  // a count, read after the join
    return k * 2;
  };
  // (For ThreadSanitizer: the keep-alive's election and its maintenance beside reading threads.)
  constexpr int reads = 3000;
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      for (int i = 0; i < reads; ++i) {
        const int k = (i * 7 + r) % 16;
        (void)c.get_or_load(k, loader);
        if (i % 8 == 0) clock.advance(1s);  // the readers move the clock: through many periods
      }
    });
  }
  for (auto& t : readers) t.join();
  const auto s = c.stats();
  CHECK(s.hits + s.misses == 2 * reads);
  // Idle for a period: every entry goes.
  clock.advance(8s);
  c.run_pending();
  CHECK(c.size() == 0);
}

TEST_CASE("cache: expire_after_access: a durable cache keeps moved deadlines across a reopen, at most") {
  lrtest::temp_dir dir("cache-access-expiry");
  leftright::durable_options o;
  o.path = dir.path() / "cache";
  fake_clock clock(0);
  const cache_options options{.expire_after_access = 10s, .ticker = clock.ticker()};
  {
    cache<std::uint64_t, std::string> c(o, options);
    c.put(1, "one");
    c.put(2, "two");
    clock.set(5s);
    c.run_pending();
    clock.set(6s);
    REQUIRE(c.get(1) == "one");
    c.run_pending();  // 1's deadline moves to 5 + 10 (the read dated by the maintenance before)
  }
  clock.set(12s);
  cache<std::uint64_t, std::string> c(o, options);
  CHECK(c.peek(1) == "one");
  CHECK_FALSE(c.peek(2).has_value());  // its deadline of 10 passed while closed
  CHECK(c.stats().expirations == 1);
  // Reopened, an entry is not moved past the deadline it had (its write deadline is not stored).
  clock.set(13s);
  REQUIRE(c.get(1) == "one");
  c.run_pending();
  clock.set(15s);
  CHECK_FALSE(c.peek(1).has_value());
}

}  // namespace LEFTRIGHT_TEST_FILE
