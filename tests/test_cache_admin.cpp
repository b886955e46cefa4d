// SPDX-License-Identifier: Apache-2.0
// leftright::cache: changing the bound of a running cache (set_maximum, maximum) and walking its
// entries (for_each). Deterministic: time comes from a fake ticker; the concurrent case asserts
// on what every walk saw, for a fixed count of writes.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "leftright/cache.hpp"
#include "support/cache_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using leftright::cache;
using leftright::cache_options;
using leftright::removal_cause;
using lrtest::fake_clock;
using lrtest::fixed_hash;
using namespace std::chrono_literals;

/// A value whose copies throw while `failing` is set (moves never throw).
struct fragile {
  static inline bool failing = false;
  int v = 0;
  fragile() = default;
  explicit fragile(int x) : v(x) {}
  fragile(const fragile& o) : v(o.v) {
    if (failing) throw std::runtime_error("fragile copy");
  }
  fragile(fragile&&) noexcept = default;
  fragile& operator=(const fragile& o) {
    if (failing) throw std::runtime_error("fragile copy");
    v = o.v;
    return *this;
  }
  fragile& operator=(fragile&&) noexcept = default;
};

template <class C>
std::map<int, int> contents(const C& c) {
  std::map<int, int> seen;
  c.for_each([&](const int& k, const int& v) { REQUIRE(seen.emplace(k, v).second); });
  return seen;
}

}  // namespace

TEST_CASE("cache: set_maximum shrinks a running cache to the policy's picks, and later writes keep the new bound") {
  cache<int, int, fixed_hash> c({.max_entries = 100});
  std::vector<std::tuple<int, int, removal_cause>> heard;
  c.set_removal_listener([&](const int& k, const int& v, removal_cause why) { heard.emplace_back(k, v, why); });
  for (int k = 0; k < 100; ++k) c.put(k, k * 7);
  REQUIRE(c.size() == 100);
  // Keys 0-4 are hot (hit in probation, so protected): the policy evicts from its other segments first.
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 5; ++k) REQUIRE(c.get(k) == k * 7);
  }
  const auto evicted_before = c.stats().evictions;
  c.set_maximum(10);
  CHECK(c.maximum() == 10);
  CHECK(c.options().max_entries == 100);  // the options the cache was made with
  CHECK(c.size() <= 10);
  CHECK(c.size() >= 9);
  for (int k = 0; k < 5; ++k) CHECK(c.peek(k) == k * 7);
  // Every entry removed was reported, as evicted, with its value, and counted.
  CHECK(heard.size() == 100 - c.size());
  for (const auto& [k, v, why] : heard) {
    CHECK(why == removal_cause::evicted);
    CHECK(v == k * 7);
    CHECK_FALSE(c.peek(k).has_value());
  }
  CHECK(c.stats().evictions - evicted_before == heard.size());

  for (int k = 1000; k < 1500; ++k) {
    c.put(k, k);
    REQUIRE(c.size() <= 10);
  }
  // Grown again, the cache fills up to the new bound and no further.
  c.set_maximum(60);
  CHECK(c.maximum() == 60);
  for (int k = 2000; k < 2500; ++k) {
    c.put(k, k);
    REQUIRE(c.size() <= 60);
  }
  CHECK(c.size() >= 54);
}

TEST_CASE("cache: set_maximum of a cache bound by weight bounds the weight") {
  cache<int, std::string> c({.max_weight = 1000},
                            [](const int&, const std::string& v) { return static_cast<std::uint64_t>(v.size()); });
  for (int k = 0; k < 100; ++k) c.put(k, std::string(10, 'x'));
  REQUIRE(c.weighted_size() == 1000);
  c.set_maximum(250);
  CHECK(c.maximum() == 250);
  CHECK(c.weighted_size() <= 250);
  CHECK(c.weighted_size() >= 200);
  c.put(500, std::string(251, 'y'));  // heavier than the new bound: not kept
  CHECK_FALSE(c.peek(500).has_value());
  for (int k = 600; k < 700; ++k) {
    c.put(k, std::string(static_cast<std::size_t>(k % 13 + 1), 'z'));
    REQUIRE(c.weighted_size() <= 250);
  }
}

TEST_CASE("cache: set_maximum refuses what it cannot do, and changes nothing then") {
  cache<int, int> unbounded;
  unbounded.put(1, 1);
  CHECK_THROWS_AS(unbounded.set_maximum(10), std::logic_error);
  CHECK(unbounded.maximum() == 0);
  CHECK(unbounded.peek(1) == 1);

  cache<int, int> counted({.max_entries = 5});
  CHECK_THROWS_AS(counted.set_maximum(0), std::invalid_argument);
  CHECK(counted.maximum() == 5);

  cache<int, int> weighed({.max_weight = 5}, [](const int&, const int&) { return std::uint64_t{1}; });
  CHECK_THROWS_AS(weighed.set_maximum((std::uint64_t{1} << 62) + 1), std::invalid_argument);
  weighed.set_maximum(std::uint64_t{1} << 62);  // the largest bound by weight
  CHECK(weighed.maximum() == std::uint64_t{1} << 62);
}

TEST_CASE("cache: a set_maximum that fails part-way leaves the bound and every entry as they were") {
  cache<int, fragile, fixed_hash> c({.max_entries = 50});
  int reported = 0;
  c.set_removal_listener([&](const int&, const fragile&, removal_cause) { ++reported; });
  for (int k = 0; k < 50; ++k) c.put(k, fragile(k));
  fragile::failing = true;  // reporting a victim copies its value: the first one throws
  CHECK_THROWS_AS(c.set_maximum(5), std::runtime_error);
  fragile::failing = false;
  CHECK(c.maximum() == 50);
  CHECK(c.size() == 50);
  CHECK(reported == 0);
  for (int k = 0; k < 50; ++k) REQUIRE(c.peek(k)->v == k);
  // The old bound still rules the next writes: nothing is evicted below 50.
  c.put(100, fragile(100));
  CHECK(c.size() == 50);
  CHECK(reported == 1);
  // And the change, tried again, takes.
  c.set_maximum(5);
  CHECK(c.size() <= 5);
  CHECK(reported == 46 + (5 - static_cast<int>(c.size())));
}

TEST_CASE("cache: for_each visits every live entry once, skips the expired ones, and counts nothing") {
  fake_clock clock;
  cache<int, int> c({.ticker = clock.ticker()});
  CHECK(contents(c).empty());
  for (int k = 0; k < 300; ++k) c.put(k, -k);
  c.put(1000, 1, 5s);
  c.put(1001, 2, 50s);
  c.invalidate(7);
  clock.advance(5s);  // 1000 is past its deadline, not yet removed
  REQUIRE(c.size() == 301);
  const auto before = c.stats();
  const std::map<int, int> seen = contents(c);
  CHECK(seen.size() == 300);
  CHECK_FALSE(seen.contains(7));
  CHECK_FALSE(seen.contains(1000));
  CHECK(seen.at(1001) == 2);
  for (const auto& [k, v] : seen) {
    if (k < 300) CHECK(v == -k);
  }
  const auto after = c.stats();
  CHECK(after.hits == before.hits);
  CHECK(after.misses == before.misses);
}

TEST_CASE("cache: a for_each function may read the cache; any other call of it throws, and the cache goes on") {
  cache<int, int> c({.max_entries = 100});
  for (int k = 0; k < 10; ++k) c.put(k, k);
  int reads = 0;
  c.for_each([&](const int& k, const int& v) {
    CHECK(c.get(k) == v);  // a read inside the walk: the same snapshot
    CHECK(c.peek(k) == v);
    ++reads;
  });
  CHECK(reads == 10);
  CHECK_THROWS_AS(c.for_each([&](const int& k, const int&) { c.put(k, 0); }), std::logic_error);
  CHECK_THROWS_AS(c.for_each([&](const int& k, const int&) { c.invalidate(k); }), std::logic_error);
  CHECK_THROWS_AS(c.for_each([&](const int&, const int&) { (void)c.get_or_load(500, [](int k) { return k; }); }),
                  std::logic_error);
  CHECK_THROWS_AS(c.for_each([&](const int&, const int&) { c.run_pending(); }), std::logic_error);
  CHECK_THROWS_AS(c.for_each([&](const int&, const int&) { c.sync(); }), std::logic_error);
  CHECK_THROWS_AS(c.for_each([](const int&, const int&) { throw std::runtime_error("f"); }), std::runtime_error);
  // Nothing of it was applied, and the thread writes again once the walk is over.
  for (int k = 0; k < 10; ++k) CHECK(c.peek(k) == k);
  c.put(3, 33);
  CHECK(c.peek(3) == 33);
  CHECK(contents(c).size() == 10);
}

TEST_CASE("cache: an invalidate_if predicate may read the cache; a write from it throws instead of deadlocking") {
  cache<int, int> c({.max_entries = 100});
  for (int k = 0; k < 10; ++k) c.put(k, k);
  c.invalidate_if([&](const int& k, const int& v) { return k % 2 == 0 && c.peek(k) == v; });
  CHECK(c.size() == 5);
  CHECK_THROWS_AS(c.invalidate_if([&](const int& k, const int&) {
    c.put(k + 100, 0);  // the writer lock is held: refused
    return false;
  }),
                  std::logic_error);
  CHECK_THROWS_AS(c.invalidate_if([&](const int&, const int&) { return c.stats().hits > 0; }), std::logic_error);
  // The failed calls removed nothing, and the cache writes on.
  CHECK(c.size() == 5);
  c.put(100, 1);
  CHECK(c.peek(100) == 1);
}

TEST_CASE("cache: hottest and coldest list the policy's entries in its order, hot keys first or last") {
  fake_clock clock;
  cache<int, int, fixed_hash> c({.max_entries = 100, .ticker = clock.ticker()});
  for (int k = 0; k < 100; ++k) c.put(k, k * 3);
  for (int round = 0; round < 10; ++round) {
    for (int k = 0; k < 10; ++k) REQUIRE(c.get(k) == k * 3);  // recorded; applied by the next call
  }
  const auto hot = c.hottest(10);
  REQUIRE(hot.size() == 10);
  std::set<int> hot_keys;
  for (const auto& [k, v] : hot) {
    CHECK(v == k * 3);
    hot_keys.insert(k);
  }
  CHECK(hot_keys == std::set<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  const auto cold = c.coldest(20);
  REQUIRE(cold.size() == 20);
  std::set<int> cold_keys;
  for (const auto& [k, v] : cold) {
    CHECK(k >= 10);  // never read
    CHECK(v == k * 3);
    cold_keys.insert(k);
  }
  CHECK(cold_keys.size() == 20);
  // Every entry once, either way; none past its deadline; n = 0 lists none.
  c.put(500, 1, 5s);  // the cache is full: one entry goes for it
  clock.advance(5s);
  CHECK(c.hottest(1000).size() == 99);  // its maintenance removes 500, past its deadline
  CHECK(c.size() == 99);
  std::set<int> all;
  for (const auto& [k, v] : c.coldest(1000)) all.insert(k);
  CHECK(all.size() == 99);
  CHECK_FALSE(all.contains(500));
  CHECK(c.coldest(0).empty());
  cache<int, int> unbounded;
  CHECK_THROWS_AS(unbounded.hottest(1), std::logic_error);
}

TEST_CASE("cache: each for_each sees one version, while another thread writes pairs") {
  cache<int, int> c({.max_entries = 1000});
  c.put_all(std::vector<std::pair<int, int>>{{1, 0}, {2, 0}});
  constexpr int writes = 2000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 1; i <= writes; ++i) c.put_all(std::vector<std::pair<int, int>>{{1, i}, {2, i}, {i + 10, i}});
    done.store(true, std::memory_order_release);  // the walker's last walk sees every write
  });
  int last = 0;
  int walks = 0;
  auto walk = [&] {
    const std::map<int, int> seen = contents(c);
    REQUIRE(seen.size() >= 2);
    REQUIRE(seen.at(1) == seen.at(2));  // a put_all is seen whole
    REQUIRE(seen.at(1) >= last);        // and versions never go back
    last = seen.at(1);
    ++walks;
  };
  while (!done.load(std::memory_order_acquire)) walk();
  writer.join();
  walk();
  CHECK(last == writes);
  CHECK(walks >= 1);
}

TEST_CASE("cache: stats count the weight evicted and the time loaders took") {
  fake_clock clock;
  cache<int, std::string> c({.max_weight = 100, .ticker = clock.ticker()},
                            [](const int&, const std::string& v) { return static_cast<std::uint64_t>(v.size()); });
  std::uint64_t heard_weight = 0;
  int heard = 0;
  c.set_removal_listener([&](const int&, const std::string& v, removal_cause why) {
    if (why == removal_cause::evicted) {
      heard_weight += v.size();
      ++heard;
    }
  });
  for (int k = 0; k < 200; ++k) c.put(k, std::string(static_cast<std::size_t>(k % 9 + 1), 'w'));
  c.put(1000, std::string(150, 'h'));  // heavier than the bound: evicted at once, its weight counted
  auto s = c.stats();
  CHECK(s.evictions == static_cast<std::uint64_t>(heard));
  CHECK(s.eviction_weight == heard_weight);
  CHECK(s.eviction_weight >= 150);
  CHECK(s.load_time_ns == 0);
  CHECK(s.average_load_penalty_ns() == 0.0);

  // Loads: the time each loader call took, by the cache's ticker, failed calls too.
  CHECK(c.get_or_load(2000, [&](const int&) {
    clock.advance(3s);
    return std::string("a");
  }) == "a");
  CHECK_THROWS_AS(c.get_or_load(2001,
                                [&](const int&) -> std::string {
                                  clock.advance(2s);
                                  throw std::runtime_error("down");
                                }),
                  std::runtime_error);
  const auto got = c.get_all_or_load(std::vector<int>{3000, 3001}, [&](std::span<const int> keys) {
    clock.advance(1s);
    std::vector<std::pair<int, std::string>> found;
    for (int k : keys) found.emplace_back(k, "b");
    return found;
  });
  CHECK(got.size() == 2);
  s = c.stats();
  CHECK(s.load_successes == 2);
  CHECK(s.load_failures == 1);
  CHECK(s.load_time_ns == 6'000'000'000);
  CHECK(s.average_load_penalty_ns() == 2'000'000'000.0);
}

TEST_CASE("cache: a write that fails counts none of the expirations and evictions it dropped") {
  // A failed write publishes nothing: the entries its maintenance expired and the victims it
  // chose stay in the map, and the next write removes (and counts) them again.
  fake_clock clock;
  cache<int, fragile, fixed_hash> c({.max_entries = 50, .expire_after_write = 10s, .ticker = clock.ticker()});
  int expired = 0, evicted = 0;
  c.set_removal_listener([&](const int&, const fragile&, removal_cause why) {
    if (why == removal_cause::expired) ++expired;
    if (why == removal_cause::evicted) ++evicted;
  });
  c.put(0, fragile(0));
  clock.advance(11s);  // 0 is past its deadline
  for (int k = 1; k < 50; ++k) c.put(k, fragile(k));
  CHECK(expired == 1);
  c.put(0, fragile(0));
  clock.advance(11s);  // 0 is past its deadline again, the others too
  CHECK_THROWS_AS(c.invalidate_if([](const int&, const fragile&) -> bool { throw std::runtime_error("pred"); }),
                  std::runtime_error);
  CHECK(c.size() == 50);
  c.run_pending();
  CHECK(c.size() == 0);
  CHECK(expired == 51);
  CHECK(c.stats().expirations == 51);

  for (int k = 0; k < 50; ++k) c.put(k, fragile(k));
  fragile::failing = true;  // reporting the first victim copies its value: it throws
  CHECK_THROWS_AS(c.set_maximum(5), std::runtime_error);
  fragile::failing = false;
  CHECK(c.size() == 50);
  CHECK(c.stats().evictions == 0);
  c.set_maximum(5);
  CHECK(c.size() <= 5);
  const auto s = c.stats();
  CHECK(s.evictions == static_cast<std::uint64_t>(evicted));
  CHECK(s.evictions == 50 - c.size());
  CHECK(s.eviction_weight == s.evictions);
}

TEST_CASE("cache: invalidate_all(keys) removes the keys named in one write, and wins over their loads") {
  cache<int, int> c({.max_entries = 100});
  std::vector<std::tuple<int, int, removal_cause>> heard;
  c.set_removal_listener([&](const int& k, const int& v, removal_cause why) { heard.emplace_back(k, v, why); });
  for (int k = 1; k <= 10; ++k) c.put(k, k * 10);
  c.invalidate_all(std::vector<int>{2, 4, 4, 99});  // a key repeated, a key absent
  CHECK(c.size() == 8);
  CHECK_FALSE(c.peek(2).has_value());
  CHECK_FALSE(c.peek(4).has_value());
  CHECK(c.peek(3) == 30);
  REQUIRE(heard.size() == 2);
  for (const auto& [k, v, why] : heard) {
    CHECK((k == 2 || k == 4));
    CHECK(v == k * 10);
    CHECK(why == removal_cause::invalidated);
  }
  c.invalidate_all(std::vector<int>{});
  CHECK(c.size() == 8);
  // Made while a load of the key runs, it wins: the value is returned but not stored.
  CHECK(c.get_or_load(50, [&](const int& k) {
    c.invalidate_all(std::vector<int>{k});
    return k;
  }) == 50);
  CHECK_FALSE(c.peek(50).has_value());
  CHECK(c.get_or_load(51, [](const int& k) { return k; }) == 51);  // a load of another key stores
  CHECK(c.peek(51) == 51);
}

TEST_CASE("cache: a reader sees all of an invalidate_all(keys) or none of it") {
  cache<int, int> c;
  constexpr int rounds = 2000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < rounds; ++i) {
      c.put_all(std::vector<std::pair<int, int>>{{1, i}, {2, i}});
      c.invalidate_all(std::vector<int>{1, 2});
    }
    done.store(true, std::memory_order_release);  // ends the reader's loop; no data rides on it
  });
  std::size_t halves = 0;
  while (!done.load(std::memory_order_acquire)) {
    if (c.get_all(std::vector<int>{1, 2}).size() == 1) ++halves;
  }
  writer.join();
  CHECK(halves == 0);
  CHECK(c.size() == 0);
}

TEST_CASE("cache: expires_in gives a live entry's time left: none for an absent or expired one, max without a deadline") {
  fake_clock clock(0);
  cache<int, int> c({.expire_after_write = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  c.put(2, 20, 3s);  // its own expiry
  CHECK(c.expires_in(1) == 10s);
  CHECK(c.expires_in(2) == 3s);
  CHECK_FALSE(c.expires_in(9).has_value());
  clock.set(2s);
  CHECK(c.expires_in(1) == 8s);
  CHECK(c.expires_in(2) == 1s);
  clock.set(3s);
  CHECK_FALSE(c.expires_in(2).has_value());  // expired, not yet removed
  CHECK(c.size() == 2);
  CHECK(c.stats().hits + c.stats().misses == 0);  // as peek: nothing counted

  cache<int, int> forever;
  forever.put(1, 1);
  CHECK(forever.expires_in(1) == std::chrono::nanoseconds::max());

  // With expire_after_access, the deadline moves once a maintenance has seen a read.
  clock.set(0s);
  cache<int, int> idle({.expire_after_access = 10s, .ticker = clock.ticker()});
  idle.put(1, 10);
  const auto left = [&] { return idle.expires_in(1).value_or(0ns); };
  CHECK(left() >= 10s - 1ns);  // published at most 1 ns early (cache_options::expire_after_access)
  CHECK(left() <= 10s);
  clock.set(5s);
  idle.run_pending();
  clock.set(6s);
  REQUIRE(idle.get(1) == 10);
  CHECK(left() <= 4s);  // the read is not seen yet
  clock.set(7s);
  idle.run_pending();  // sees it, dated 5: the deadline is now 15
  CHECK(left() >= 8s - 1ns);
  CHECK(left() <= 8s);
}

}  // namespace LEFTRIGHT_TEST_FILE
