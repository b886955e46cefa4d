// SPDX-License-Identifier: Apache-2.0
// leftright::cache: the semantics its header promises, each asserted. Deterministic: time comes
// from a fake ticker, maintenance from run_pending(); the concurrent cases assert on counts.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
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
using leftright::cache_stats;
using leftright::removal_cause;
using lrtest::fake_clock;
using lrtest::fixed_hash;
using namespace std::chrono_literals;

/// A refresh executor that queues its tasks; the test runs them when it chooses. Declared before
/// the cache it serves, so every test runs (or clears) the queue before the cache goes.
struct task_queue {
  std::mutex mu;
  std::vector<std::function<void()>> tasks;
  std::function<void(std::function<void()>)> executor() {
    return [this](std::function<void()> task) {
      std::lock_guard<std::mutex> lock(mu);
      tasks.push_back(std::move(task));
    };
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return tasks.size();
  }
  void run_all() {
    std::vector<std::function<void()>> now;
    {
      std::lock_guard<std::mutex> lock(mu);
      now.swap(tasks);
    }
    for (auto& t : now) t();
  }
};

template <class C>
std::size_t count_present(const C& c, std::uint64_t from, std::uint64_t to) {
  std::size_t n = 0;
  for (std::uint64_t k = from; k < to; ++k) n += c.peek(k).has_value();
  return n;
}

}  // namespace

TEST_CASE("cache: a put is read back on its thread and by a thread started after it") {
  cache<std::string, int> c;
  c.put("a", 1);
  CHECK(c.get("a") == 1);
  CHECK(c.get(std::string_view("a")) == 1);  // heterogeneous lookup of string keys
  c.put("a", 2);
  CHECK(c.get("a") == 2);
  std::optional<int> seen;
  std::thread([&] { seen = c.get("a"); }).join();
  CHECK(seen == 2);
  CHECK_FALSE(c.get("b").has_value());
  CHECK(c.size() == 1);
}

TEST_CASE("cache: a cache made where another died is read as itself by a thread that read the other") {
  // As for shared_map (test_shared_map_readers.cpp): the thread's one-entry cache of its reading
  // state is keyed by an address inside the cache, which the dead cache must have cleared.
  using icache = cache<int, int>;
  alignas(icache) unsigned char storage[sizeof(icache)];
  icache* a = new (storage) icache;
  a->put(1, 10);
  std::latch first_read(1), remade(1), second_read(1);
  std::optional<int> before, after, after_other;
  icache* b = nullptr;
  std::thread t([&] {
    before = a->get(1);
    first_read.count_down();
    remade.wait();
    after = b->get(1);
    after_other = b->get(2);
    second_read.count_down();
  });
  first_read.wait();
  a->~icache();
  b = new (storage) icache;
  REQUIRE(static_cast<void*>(a) == static_cast<void*>(b));
  b->put(1, 20);
  remade.count_down();
  second_read.wait();
  t.join();
  CHECK(before == 10);
  CHECK(after == 20);
  CHECK_FALSE(after_other.has_value());
  b->~icache();
}

TEST_CASE("cache: options that contradict each other are refused") {
  CHECK_THROWS_AS((cache<int, int>({.max_entries = 4, .max_weight = 4}, [](int, int) { return 1u; })),
                  std::invalid_argument);
  CHECK_THROWS_AS((cache<int, int>({.max_weight = 4})), std::invalid_argument);
  CHECK_THROWS_AS((cache<int, int>({}, [](int, int) { return 1u; })), std::invalid_argument);
  CHECK_THROWS_AS((cache<int, int>({.expire_after_write = -1ns})), std::invalid_argument);
  CHECK_THROWS_AS((cache<int, int>({.refresh_after_write = -1ns})), std::invalid_argument);
}

TEST_CASE("cache: a max_weight above 2^62 is refused; at 2^62 the weights' sums stay exact") {
  // Above it the policy's sums of weights could wrap: four entries of 2^63 under a bound of
  // 2^64 - 1 read as a total of 0, and the bound meant nothing.
  const auto weigher = [](const int&, const std::uint64_t& v) { return v; };
  constexpr std::uint64_t limit = std::uint64_t{1} << 62;
  CHECK_THROWS_AS((cache<int, std::uint64_t>({.max_weight = limit + 1}, weigher)), std::invalid_argument);
  CHECK_THROWS_AS((cache<int, std::uint64_t>({.max_weight = ~std::uint64_t{0}}, weigher)), std::invalid_argument);
  cache<int, std::uint64_t> c({.max_weight = limit}, weigher);
  const std::uint64_t over_half = limit / 2 + 1;  // two of them do not fit
  for (int k = 0; k < 4; ++k) {
    c.put(k, over_half);
    CHECK(c.size() == 1);
    CHECK(c.weighted_size() == over_half);
  }
  c.invalidate_all();
  c.put(10, limit);  // the whole bound, in an empty cache: kept
  CHECK(c.size() == 1);
  CHECK(c.peek(10) == limit);
  CHECK(c.weighted_size() == limit);
  c.put(11, limit + 1);  // heavier than the bound: not kept
  CHECK_FALSE(c.peek(11).has_value());
  CHECK(c.weighted_size() <= limit);
}

TEST_CASE("cache: the count bound holds after every put, and run_pending keeps it") {
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 100});
  for (std::uint64_t k = 0; k < 5000; ++k) {
    c.put(k, k * 3);
    REQUIRE(c.size() <= 100);
    // What the cache holds is what was put.
    if (auto v = c.peek(k)) REQUIRE(*v == k * 3);
  }
  c.run_pending();
  CHECK(c.size() <= 100);
  CHECK(c.size() >= 90);  // the policy keeps it (nearly) full
  const auto s = c.stats();
  CHECK(s.evictions == 5000 - c.size());
}

TEST_CASE("cache: a cache of one entry keeps its newest, from the start and after set_maximum(1)") {
  // Its policy's window holds one entry (with none, every newcomer contested the resident and
  // lost on a tie: put(k) then get(k) missed nearly always).
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 1});
  for (std::uint64_t k = 0; k < 200; ++k) {
    c.put(k, k + 7);
    REQUIRE(c.get(k) == k + 7);
    REQUIRE(c.size() == 1);
  }
  CHECK(c.compute(1000, [](const std::uint64_t*) { return std::optional<std::uint64_t>(5); }) == 5u);
  CHECK(c.get(1000) == 5u);
  cache<std::uint64_t, std::uint64_t> shrunk({.max_entries = 50});
  for (std::uint64_t k = 0; k < 50; ++k) shrunk.put(k, k);
  shrunk.set_maximum(1);
  for (std::uint64_t k = 100; k < 300; ++k) {
    shrunk.put(k, k);
    REQUIRE(shrunk.get(k) == k);
    REQUIRE(shrunk.size() == 1);
  }
}

TEST_CASE("cache: the weight bound holds, and an entry heavier than the bound is not kept") {
  cache<int, std::string> c({.max_weight = 100},
                            [](const int&, const std::string& v) { return static_cast<std::uint64_t>(v.size()); });
  for (int k = 0; k < 200; ++k) {
    c.put(k, std::string(static_cast<std::size_t>(k % 17 + 1), 'x'));
    REQUIRE(c.weighted_size() <= 100);
  }
  c.put(1000, std::string(101, 'y'));
  CHECK_FALSE(c.peek(1000).has_value());
  // A resident entry that grows past the bound goes too.
  c.put(2000, "small");
  c.put(2000, std::string(150, 'z'));
  CHECK_FALSE(c.peek(2000).has_value());
  CHECK(c.weighted_size() <= 100);
}

TEST_CASE("cache: a weigher's negative weight is refused at the put, which puts nothing") {
  cache<int, int> c({.max_weight = 100}, [](const int&, const int& v) { return v; });  // an int weight
  c.put(1, 10);
  CHECK_THROWS_WITH(c.put(2, -1), Catch::Matchers::Contains("the weigher returned -1"));
  CHECK_THROWS_AS(c.put(1, -5), std::invalid_argument);
  CHECK(c.get(1) == 10);  // kept as it was
  CHECK_FALSE(c.get(2).has_value());
  CHECK(c.weighted_size() == 10);
  CHECK(c.stats().evictions == 0);  // converted, -1 was a weight near 2^64: evicted at once
  cache<int, double> d({.max_weight = 100}, [](const int&, const double& v) { return v; });
  CHECK_THROWS_AS(d.put(1, std::nan("")), std::invalid_argument);
  d.put(2, 2.5);
  CHECK(d.weighted_size() == 2);
}

TEST_CASE("cache: a resident entry that grows past the weight bound goes alone") {
  cache<int, std::string> c({.max_weight = 100},
                            [](const int&, const std::string& v) { return static_cast<std::uint64_t>(v.size()); });
  for (int k = 0; k < 10; ++k) c.put(k, std::string(10, 'x'));
  REQUIRE(c.size() == 10);
  c.put(3, std::string(1000, 'y'));
  CHECK_FALSE(c.peek(3).has_value());
  CHECK(c.size() == 9);  // the other nine stay: nothing was evicted for an entry that cannot fit
  CHECK(c.weighted_size() == 90);
  CHECK(c.stats().evictions == 1);
}

TEST_CASE("cache: a put that grows an entry past the bound reports the old value replaced and the new one evicted") {
  cache<int, std::string> c({.max_weight = 100},
                            [](const int&, const std::string& v) { return static_cast<std::uint64_t>(v.size()); });
  std::vector<std::tuple<int, std::string, removal_cause>> heard;
  c.set_removal_listener(
      [&](const int& k, const std::string& v, removal_cause why) { heard.emplace_back(k, v, why); });
  c.put(3, std::string(10, 'x'));
  c.put(3, std::string(1000, 'y'));
  CHECK_FALSE(c.peek(3).has_value());
  // As for a new key heavier than the bound, the listener hears of the value put; the value it
  // replaced was not evicted but replaced. One eviction is counted, as the listener hears one.
  REQUIRE(heard.size() == 2);
  CHECK(heard[0] == std::tuple(3, std::string(10, 'x'), removal_cause::replaced));
  CHECK(heard[1] == std::tuple(3, std::string(1000, 'y'), removal_cause::evicted));
  CHECK(c.stats().evictions == 1);
  // put_all: the same.
  heard.clear();
  c.put(4, std::string(10, 'x'));
  c.put_all(std::vector<std::pair<int, std::string>>{{4, std::string(500, 'z')}});
  REQUIRE(heard.size() == 2);
  CHECK(heard[0] == std::tuple(4, std::string(10, 'x'), removal_cause::replaced));
  CHECK(heard[1] == std::tuple(4, std::string(500, 'z'), removal_cause::evicted));
  CHECK(c.stats().evictions == 2);
  CHECK(c.size() == 0);
}

TEST_CASE("cache: hot keys survive a scan of one-hit keys larger than the cache") {
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 1000});
  const std::uint64_t hot = 200;
  for (int round = 0; round < 20; ++round) {
    for (std::uint64_t k = 0; k < hot; ++k) {
      if (!c.get(k)) c.put(k, k);
    }
    c.run_pending();
  }
  REQUIRE(count_present(c, 0, hot) == hot);
  // A scan of 10x the cache, each key once, with the hot keys still in use now and then.
  for (std::uint64_t k = 1'000'000; k < 1'010'000; ++k) {
    if (!c.get(k)) c.put(k, k);
    if (k % 50 == 0) {
      for (std::uint64_t h = 0; h < hot; ++h) (void)c.get(h);
    }
  }
  c.run_pending();
  CHECK(count_present(c, 0, hot) >= hot * 95 / 100);
}

TEST_CASE("cache: a new working set displaces an old one once the old one stops being used") {
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 500});
  const auto use = [&](std::uint64_t from, std::uint64_t to, int rounds) {
    for (int r = 0; r < rounds; ++r) {
      for (std::uint64_t k = from; k < to; ++k) {
        if (!c.get(k)) c.put(k, k);
      }
      c.run_pending();
    }
  };
  use(0, 400, 30);  // very frequent
  use(10'000, 10'400, 60);
  CHECK(count_present(c, 10'000, 10'400) >= 380);
}

TEST_CASE("cache: the same sequence of calls leaves the same entries") {
  const auto run = [] {
    cache<std::uint64_t, std::uint64_t> c({.max_entries = 64});
    std::uint64_t x = 12345;
    for (int i = 0; i < 20'000; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const std::uint64_t k = (x >> 33) % 300;
      if (!c.get(k)) c.put(k, k);
      c.run_pending();
    }
    std::set<std::uint64_t> held;
    for (std::uint64_t k = 0; k < 300; ++k) {
      if (c.peek(k)) held.insert(k);
    }
    return std::pair(held, c.stats().hits);
  };
  const auto a = run();
  const auto b = run();
  CHECK(a.first.size() <= 64);
  CHECK(a == b);
}

TEST_CASE("cache: an entry past its deadline is a miss before maintenance, and maintenance removes it") {
  fake_clock clock;
  cache<int, int> c({.expire_after_write = 10s, .ticker = clock.ticker()});
  c.put(1, 10);
  c.put(2, 20, 30s);  // a per-entry ttl overrides the default
  c.put(3, 30, 0s);   // a ttl <= 0: nothing is kept
  CHECK_FALSE(c.peek(3).has_value());
  clock.advance(9s);
  CHECK(c.get(1) == 10);
  clock.advance(1s);
  CHECK_FALSE(c.get(1).has_value());  // at the deadline: expired, with no maintenance yet
  CHECK(c.get(2) == 20);
  CHECK(c.size() == 2);
  CHECK(c.stats().expirations == 0);
  c.run_pending();
  CHECK(c.size() == 1);
  CHECK(c.stats().expirations == 1);
  c.put(1, 11);  // a new put of an expired key starts a new lifetime
  clock.advance(25s);
  CHECK(c.get(1) == std::nullopt);
  CHECK(c.get(2) == std::nullopt);
  c.run_pending();
  CHECK(c.size() == 0);
  CHECK(c.stats().expirations == 3);
}

TEST_CASE("cache: a put over an entry resets its deadline; an invalidated entry is forgotten") {
  fake_clock clock;
  cache<int, int> c({.expire_after_write = 10s, .ticker = clock.ticker()});
  c.put(1, 1);
  clock.advance(8s);
  c.put(1, 2);
  clock.advance(8s);
  CHECK(c.get(1) == 2);
  c.invalidate(1);
  CHECK_FALSE(c.get(1).has_value());
  clock.advance(1h);
  c.run_pending();
  CHECK(c.stats().expirations == 0);  // its deadline went with it
}

TEST_CASE("cache: invalidate_if and invalidate_all remove what they name") {
  cache<int, int> c({.max_entries = 1000});
  for (int k = 0; k < 100; ++k) c.put(k, k);
  c.invalidate_if([](const int& k, const int&) { return k % 2 == 0; });
  CHECK(c.size() == 50);
  CHECK_FALSE(c.peek(4).has_value());
  CHECK(c.peek(5) == 5);
  c.invalidate_all();
  CHECK(c.size() == 0);
  for (int k = 0; k < 2000; ++k) c.put(k, k);  // the policy forgot them too: the bound still holds
  CHECK(c.size() <= 1000);
}

TEST_CASE("cache: the removal listener hears every removal with its cause and value") {
  fake_clock clock;
  cache<int, int> c({.max_entries = 2, .ticker = clock.ticker()});
  std::vector<std::tuple<int, int, removal_cause>> heard;
  c.set_removal_listener([&](const int& k, const int& v, removal_cause why) { heard.emplace_back(k, v, why); });
  c.put(1, 10);
  c.put(1, 11);
  REQUIRE(heard.size() == 1);
  CHECK(heard[0] == std::tuple(1, 10, removal_cause::replaced));
  c.invalidate(1);
  CHECK(heard.back() == std::tuple(1, 11, removal_cause::invalidated));
  c.put(2, 20, 5s);
  clock.advance(5s);
  c.run_pending();
  CHECK(heard.back() == std::tuple(2, 20, removal_cause::expired));
  heard.clear();
  for (int k = 100; k < 110; ++k) c.put(k, k);
  CHECK(heard.size() == 8);
  for (const auto& [k, v, why] : heard) {
    CHECK(why == removal_cause::evicted);
    CHECK(k == v);
  }
  // The listener may call the cache: no lock is held.
  c.set_removal_listener([&](const int& k, const int&, removal_cause) { (void)c.get(k); });
  c.invalidate_all();
  CHECK(c.size() == 0);
}

TEST_CASE("cache: get_or_load loads a miss once and caches it; a failed load caches nothing") {
  cache<int, std::string> c;
  int calls = 0;
  const auto loader = [&](const int& k) {
    ++calls;
    return std::to_string(k);
  };
  CHECK(c.get_or_load(7, loader) == "7");
  CHECK(c.get_or_load(7, loader) == "7");
  CHECK(calls == 1);
  CHECK_THROWS_AS(c.get_or_load(8, [](const int&) -> std::string { throw std::runtime_error("down"); }),
                  std::runtime_error);
  CHECK_FALSE(c.peek(8).has_value());
  CHECK(c.get_or_load(8, loader) == "8");
  const auto s = c.stats();
  CHECK(s.load_successes == 2);
  CHECK(s.load_failures == 1);
  CHECK(s.hits == 1);
  CHECK(s.misses == 3);
}

TEST_CASE("cache: a put or an invalidate of the key made during its load wins over the loaded value") {
  // As in Caffeine and moka: the write is newer than what the loader read, so the load's value
  // is returned to its caller but not stored. The loader itself makes the write: deterministic.
  cache<int, int> c({.max_entries = 100});
  SECTION("invalidate") {
    CHECK(c.get_or_load(1, [&](const int& k) {
      c.invalidate(k);
      return 10;
    }) == 10);
    CHECK_FALSE(c.get(1).has_value());
  }
  SECTION("put") {
    CHECK(c.get_or_load(1, [&](const int& k) {
      c.put(k, 20);
      return 10;
    }) == 10);
    CHECK(c.get(1) == 20);
  }
  SECTION("put with a ttl <= 0 (a removal)") {
    CHECK(c.get_or_load(1, [&](const int& k) {
      c.put(k, 20, 0s);
      return 10;
    }) == 10);
    CHECK_FALSE(c.get(1).has_value());
  }
  SECTION("put_all") {
    CHECK(c.get_or_load(1, [&](const int&) {
      c.put_all(std::vector<std::pair<int, int>>{{2, 2}, {1, 20}});
      return 10;
    }) == 10);
    CHECK(c.get(1) == 20);
    CHECK(c.get(2) == 2);
  }
  SECTION("invalidate_all") {
    c.put(2, 2);
    CHECK(c.get_or_load(1, [&](const int&) {
      c.invalidate_all();
      return 10;
    }) == 10);
    CHECK_FALSE(c.get(1).has_value());
    CHECK(c.size() == 0);
  }
  SECTION("invalidate_if, which cannot judge an entry not yet stored") {
    CHECK(c.get_or_load(1, [&](const int&) {
      c.invalidate_if([](const int& k, const int&) { return k == 3; });
      return 10;
    }) == 10);
    CHECK_FALSE(c.get(1).has_value());
  }
  SECTION("a write of another key does not keep the value out") {
    CHECK(c.get_or_load(1, [&](const int&) {
      c.put(2, 2);
      c.invalidate(3);
      return 10;
    }) == 10);
    CHECK(c.get(1) == 10);
  }
  // The next load of the key is not affected by the last one's write.
  CHECK(c.get_or_load(5, [](const int&) { return 50; }) == 50);
  CHECK(c.get(5) == 50);
  CHECK(c.stats().load_successes == 2);
}

TEST_CASE("cache: a loader that loads its own key again gets a logic_error, not a deadlock") {
  cache<int, int> c;
  CHECK_THROWS_AS(c.get_or_load(1, [&](const int& k) { return c.get_or_load(k, [](const int&) { return 0; }); }),
                  std::logic_error);
  // Another key from inside a loader is fine.
  CHECK(c.get_or_load(2, [&](const int&) { return c.get_or_load(3, [](const int&) { return 3; }) + 1; }) == 4);
  CHECK(c.peek(1) == std::nullopt);
}

TEST_CASE("cache: concurrent misses of one key run one loader and all get its value") {
  cache<int, int> c;
  constexpr int threads = 8;
  std::atomic<int> loads{0};
  std::atomic<int> arrived{0};
  std::vector<int> got(threads, -1);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      arrived.fetch_add(1);  // seq_cst: a plain count, read by the loader below
      got[static_cast<std::size_t>(i)] = c.get_or_load(42, [&](const int&) {
        loads.fetch_add(1);  // seq_cst: a plain count
        // Hold the load until every caller has arrived (they then find it in flight, or its value).
        while (arrived.load() < threads) std::this_thread::yield();
        return 4242;
      });
    });
  }
  for (auto& t : ts) t.join();
  CHECK(loads.load() == 1);
  for (int v : got) CHECK(v == 4242);
  CHECK(c.stats().load_successes == 1);
}

TEST_CASE("cache: every caller waiting on a load that throws gets the exception") {
  cache<int, int> c;
  constexpr int threads = 6;
  std::atomic<int> arrived{0}, failures{0}, loads{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&] {
      arrived.fetch_add(1);  // seq_cst: a plain count
      try {
        (void)c.get_or_load(5, [&](const int&) -> int {
          loads.fetch_add(1);  // seq_cst: a plain count
          while (arrived.load() < threads) std::this_thread::yield();
          throw std::runtime_error("backend down");
        });
      } catch (const std::runtime_error&) {
        failures.fetch_add(1);  // seq_cst: a plain count
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(failures.load() == threads);  // nobody got a value, nobody hung
  CHECK(loads.load() >= 1);
  CHECK(c.stats().load_failures == static_cast<std::uint64_t>(loads.load()));
  CHECK_FALSE(c.peek(5).has_value());
  CHECK(c.get_or_load(5, [](const int&) { return 55; }) == 55);
}

/// A value whose copies throw on a thread that has armed them: what a value whose copy
/// allocates does when memory runs out.
struct fragile {
  int v = 0;
  static inline thread_local bool armed = false;
  explicit fragile(int x) : v(x) {}
  fragile(fragile&&) noexcept = default;
  fragile& operator=(fragile&&) noexcept = default;
  fragile(const fragile& o) : v(o.v) { check(); }
  fragile& operator=(const fragile& o) {
    check();
    v = o.v;
    return *this;
  }
  static void check() {
    if (armed) throw std::bad_alloc();
  }
};

TEST_CASE("cache: callers waiting on a load are released even when handing them the value fails") {
  fake_clock clock;
  cache<int, fragile> c({.ticker = clock.ticker()});
  // The removal listener runs on the writing thread once its write has taken effect: here, the
  // loading thread's put, which expires an entry. From then on that thread's copies throw, and
  // the next is the one that hands the value to the callers waiting on the load.
  c.set_removal_listener([](const int&, const fragile&, removal_cause) { fragile::armed = true; });
  constexpr int rounds = 20;
  int waited = 0;
  for (int key = 1; key <= rounds; ++key) {
    c.put(-key, fragile(0), 1s);
    clock.advance(2s);  // due: the load's put expires it
    std::atomic<bool> loading{false}, waiter_arrived{false};
    int loader_got = -1;
    bool loader_threw = false;
    std::optional<int> waiter_got;
    bool waiter_threw = false;
    std::thread loader([&] {
      try {
        loader_got = c.get_or_load(key, [&](const int&) {
                        loading.store(true);  // seq_cst: a flag
                        while (!waiter_arrived.load()) std::this_thread::yield();  // seq_cst: a flag
                        for (int i = 0; i < 100; ++i) std::this_thread::yield();  // let it reach the wait
                        return fragile(key);
                      }).v;
      } catch (...) {
        loader_threw = true;
      }
      fragile::armed = false;
    });
    std::thread waiter([&] {
      while (!loading.load()) std::this_thread::yield();  // seq_cst: a flag
      waiter_arrived.store(true);                          // seq_cst: a flag
      try {
        waiter_got = c.get_or_load(key, [](const int& k) { return fragile(k); }).v;
      } catch (const std::bad_alloc&) {
        waiter_threw = true;
      }
    });
    loader.join();
    waiter.join();
    CHECK_FALSE(loader_threw);
    CHECK(loader_got == key);  // the loading caller gets its value: only the hand-over failed
    CHECK((waiter_threw || waiter_got == key));  // a waiter gets the failed copy's exception
    waited += waiter_threw ? 1 : 0;
    CHECK(c.peek(key).has_value());
  }
  INFO("rounds whose second caller waited on the load: " << waited);
  CHECK(c.stats().load_failures == 0);
}

TEST_CASE("cache: a write that throws part-way changes nothing, and every entry stays removable") {
  cache<int, int> c({.max_entries = 4});
  for (int k = 0; k < 4; ++k) c.put(k, k);
  int calls = 0;
  CHECK_THROWS_AS(c.invalidate_if([&](const int&, const int&) {
    if (++calls == 3) throw std::runtime_error("predicate");
    return true;
  }),
                  std::runtime_error);
  CHECK(c.size() == 4);  // none removed, not even those the predicate had chosen
  for (int k = 0; k < 4; ++k) CHECK(c.peek(k) == k);
  c.invalidate_all();
  CHECK(c.size() == 0);
  for (int k = 10; k < 20; ++k) c.put(k, k);
  c.run_pending();
  CHECK(c.size() <= 4);
}

TEST_CASE("cache: a weigher that throws after an expiry, and again in the rebuild, loses no entry") {
  fake_clock clock;
  bool fail = false;
  cache<int, int> c({.max_weight = 100, .expire_after_write = 10s, .ticker = clock.ticker()},
                    [&](const int&, const int&) -> std::uint64_t {
                      if (fail) throw std::runtime_error("weigher");
                      return 1;
                    });
  c.put(1, 1);
  clock.advance(5s);
  c.put(2, 2);
  clock.advance(6s);  // 1 is past its deadline, 2 is not
  fail = true;        // the put's own weighing throws, and so does the rebuild after it
  CHECK_THROWS_AS(c.put(3, 3), std::runtime_error);
  fail = false;
  CHECK_FALSE(c.peek(3).has_value());
  c.run_pending();  // the rebuild left due runs first; then 1 expires
  CHECK(c.size() == 1);
  CHECK(c.peek(2) == 2);
  CHECK(c.weighted_size() == 1);
  c.invalidate_all();
  CHECK(c.size() == 0);
}

TEST_CASE("cache: after a failed write the weight bound still holds on every later write") {
  // A write that throws rebuilds the writer's index and policy from the map. The rebuild used to
  // run the policy's insertion, which near a full weight bound may evict (a contest for the
  // slack): those entries stayed in the map and the index, unknown to the policy, and the weight
  // exceeded the bound for good. Which fills come close enough to the bound depends on the
  // hashes (fixed ones here, the same in every process): several are tried.
  constexpr std::uint64_t cap = 10'000;
  const auto weight_of = [](int k) { return 1 + (k * 7919) % 64; };
  int tried = 0;
  for (int fill = 1990; fill < 2200 && tried < 8; ++fill) {
    cache<int, int, fixed_hash> c({.max_weight = cap},
                                  [](const int&, const int& v) { return static_cast<std::uint64_t>(v); });
    int k = 0;
    for (; k < fill; ++k) c.put(k, weight_of(k));
    const std::uint64_t before = c.weighted_size();
    if (before == cap || cap - before > 25) continue;  // the slack where the contest runs
    ++tried;
    CHECK_THROWS_AS(c.invalidate_if([](const int&, const int&) -> bool { throw std::runtime_error("pred"); }),
                    std::runtime_error);
    CHECK(c.weighted_size() == before);  // the failed write changed nothing
    for (int round = 0; round < 3000; ++round, ++k) {
      c.put(k, weight_of(k));
      REQUIRE(c.weighted_size() <= cap);
    }
    // The index (weighted_size) and the map agree: every key put, looked up, weighs as counted.
    std::uint64_t in_map = 0;
    for (int key = 0; key < k; ++key) {
      if (auto v = c.peek(key)) in_map += static_cast<std::uint64_t>(*v);
    }
    CHECK(in_map == c.weighted_size());
  }
  CHECK(tried == 8);
}

TEST_CASE("cache: an entry the rebuild after a failed write cannot hold is evicted by the next write") {
  // A weigher that changed its mind: after the failed write, the rebuild weighs key 1 above the
  // bound. It stays in the map until a write can erase it, and is not counted meanwhile.
  bool heavy = false;
  cache<int, int> c({.max_weight = 100}, [&](const int& k, const int& v) -> std::uint64_t {
    return heavy && k == 1 ? 1000 : static_cast<std::uint64_t>(v);
  });
  std::vector<std::tuple<int, int, removal_cause>> removed;
  c.set_removal_listener([&](const int& k, const int& v, removal_cause why) { removed.emplace_back(k, v, why); });
  c.put(1, 10);
  c.put(2, 20);
  heavy = true;
  CHECK_THROWS_AS(c.invalidate_if([](const int&, const int&) -> bool { throw std::runtime_error("pred"); }),
                  std::runtime_error);
  CHECK(c.weighted_size() == 20);
  heavy = false;
  c.run_pending();
  CHECK_FALSE(c.peek(1).has_value());
  CHECK(c.peek(2) == 20);
  CHECK(c.weighted_size() == 20);
  CHECK(c.stats().evictions == 1);
  REQUIRE(removed.size() == 1);
  CHECK(removed[0] == std::tuple{1, 10, removal_cause::evicted});
}

TEST_CASE("cache: a removal listener that throws reaches the loading caller; its waiters get the value") {
  fake_clock clock;
  cache<int, int> c({.ticker = clock.ticker()});
  c.set_removal_listener([](const int&, const int&, removal_cause) { throw std::runtime_error("listener"); });
  constexpr int rounds = 10;
  for (int key = 1; key <= rounds; ++key) {
    c.put(-key, 0, 1s);
    clock.advance(2s);  // due: the load's put expires it, and the listener throws after the put
    std::atomic<bool> loading{false}, waiter_arrived{false};
    bool loader_threw = false;
    std::optional<int> waiter_got;
    std::thread loader([&] {
      try {
        (void)c.get_or_load(key, [&](const int& k) {
          loading.store(true);                                                  // seq_cst: a flag
          while (!waiter_arrived.load()) std::this_thread::yield();             // seq_cst: a flag
          for (int i = 0; i < 100; ++i) std::this_thread::yield();              // let it reach the wait
          return 10 * k;
        });
      } catch (const std::runtime_error&) {
        loader_threw = true;
      }
    });
    std::thread waiter([&] {
      while (!loading.load()) std::this_thread::yield();  // seq_cst: a flag
      waiter_arrived.store(true);                          // seq_cst: a flag
      waiter_got = c.get_or_load(key, [](const int&) { return -1; });
    });
    loader.join();
    waiter.join();
    CHECK(loader_threw);               // the write that ran the listener reports it
    CHECK(waiter_got == 10 * key);     // the load itself succeeded: cached, and handed on
    CHECK(c.peek(key) == 10 * key);
  }
  CHECK(c.stats().load_successes == rounds);
  CHECK(c.stats().load_failures == 0);
}

TEST_CASE("cache: loads of different keys run in parallel") {
  cache<int, int> c;
  std::atomic<bool> first_started{false}, second_started{false};
  bool saw_other = false;
  std::thread a([&] {
    c.get_or_load(1, [&](const int&) {
      first_started.store(true);  // seq_cst: a flag
      // Wait (bounded) for the other key's loader to start: it can only if no lock is held here.
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (!second_started.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
      saw_other = second_started.load();
      return 1;
    });
  });
  while (!first_started.load()) std::this_thread::yield();
  c.get_or_load(2, [&](const int&) {
    second_started.store(true);  // seq_cst: a flag
    return 2;
  });
  a.join();
  CHECK(saw_other);
}

TEST_CASE("cache: hits and misses add up to the lookups made, across threads") {
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 10'000});
  for (std::uint64_t k = 0; k < 1000; ++k) c.put(k, k);
  constexpr int threads = 4;
  constexpr std::uint64_t per_thread = 20'000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (std::uint64_t i = 0; i < per_thread; ++i) (void)c.get(i % 2000);  // half hit
    });
  }
  for (auto& t : ts) t.join();
  const auto s = c.stats();
  CHECK(s.hits + s.misses == threads * per_thread);
  CHECK(s.hits == threads * per_thread / 2);
  CHECK(s.hit_ratio() == 0.5);
  c.run_pending();
  // The ring keeps a thread's newest records; the rest are counted as dropped.
  CHECK(c.stats().dropped_accesses > 0);
}

TEST_CASE("cache: readers and writers on many threads keep the bound and see only what was put") {
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 256});
  constexpr int threads = 4;
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::uint64_t x = static_cast<std::uint64_t>(t) + 1;
      for (int i = 0; i < 4000; ++i) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const std::uint64_t k = (x >> 40) % 1024;
        if (auto v = c.get(k)) {
          if (*v != k * 7) bad.fetch_add(1);  // seq_cst: a plain count
        } else if (i % 3 == 0) {
          c.put(k, k * 7);
        } else if (i % 3 == 1) {
          (void)c.get_or_load(k, [](const std::uint64_t& key) { return key * 7; });
        } else {
          c.invalidate(k ^ 1);
        }
        if (c.size() > 256) bad.fetch_add(1000);  // seq_cst: a plain count
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(bad.load() == 0);
  c.run_pending();
  CHECK(c.size() <= 256);
  CHECK(c.stats().hits + c.stats().misses >= threads * 4000);
}

TEST_CASE("cache: two threads whose writes read the map through the writers' reader never wait on each other") {
  // Each write with a removal listener, and every invalidate_all, reads the map through the
  // writers' shared reader; a write that let go of it only after the writer lock would leave it
  // pinned on the copy the next writer publishes over, and that writer would wait for itself
  // (and ThreadSanitizer reports the two threads' accesses to the reader). Bounded by count.
  cache<int, int> c({.max_entries = 64});
  std::atomic<long> removals{0};
  c.set_removal_listener([&](const int&, const int&, removal_cause) {
    removals.fetch_add(1);  // seq_cst: a plain count, read after the joins
  });
  constexpr int ops = 20000;
  std::latch start(2);
  auto writer = [&](bool all) {
    start.arrive_and_wait();
    for (int i = 0; i < ops; ++i) {
      c.put(i % 16, i);
      if (all) c.invalidate_all();
      else c.invalidate(i % 16);
    }
  };
  std::thread a(writer, true), b(writer, false);
  a.join();
  b.join();
  // Every put made an entry that some write removed (invalidated, or replaced by the other
  // thread's put of its key), except those still resident.
  CHECK(removals.load() + static_cast<long>(c.size()) == 2 * ops);
}

TEST_CASE("cache: a loader's with_ttl gives the loaded entry its own expiry") {
  fake_clock clock;
  cache<int, int> c({.ticker = clock.ticker()});
  CHECK(c.get_or_load(1, [](const int&) { return leftright::with_ttl<int>{10, 3s}; }) == 10);
  clock.advance(2s);
  CHECK(c.get(1) == 10);
  clock.advance(1s);
  CHECK_FALSE(c.get(1).has_value());
  CHECK(c.get_or_load(1, [](const int&) { return 11; }) == 11);  // no ttl: kept
  clock.advance(1000h);
  CHECK(c.get(1) == 11);
}

TEST_CASE("cache: put_all puts every entry as one write; a key repeated keeps its last value") {
  cache<int, int> c({.max_entries = 100});
  std::vector<std::tuple<int, int, removal_cause>> heard;
  c.set_removal_listener([&](const int& k, const int& v, removal_cause why) { heard.emplace_back(k, v, why); });
  c.put(1, 1);
  const std::vector<std::pair<int, int>> entries{{1, 10}, {2, 20}, {3, 30}, {2, 21}};
  c.put_all(entries);
  CHECK(c.size() == 3);
  CHECK(c.peek(1) == 10);
  CHECK(c.peek(2) == 21);
  CHECK(c.peek(3) == 30);
  // Replaced: 1's value from before the call, then 2's value put earlier by the same call.
  REQUIRE(heard.size() == 2);
  CHECK(heard[0] == std::tuple(1, 1, removal_cause::replaced));
  CHECK(heard[1] == std::tuple(2, 20, removal_cause::replaced));
  // Any range of pairs, and an empty one (maintenance only).
  c.put_all(std::map<int, int>{{4, 40}, {5, 50}});
  CHECK(c.peek(5) == 50);
  c.put_all(std::vector<std::pair<int, int>>{});
  CHECK(c.size() == 5);
  CHECK(c.stats().evictions == 0);
}

TEST_CASE("cache: put_all of more entries than the bound keeps the bound and reports each eviction") {
  cache<int, int> c({.max_entries = 10});
  std::vector<std::tuple<int, int, removal_cause>> heard;
  c.set_removal_listener([&](const int& k, const int& v, removal_cause why) { heard.emplace_back(k, v, why); });
  std::vector<std::pair<int, int>> entries;
  for (int k = 0; k < 50; ++k) entries.emplace_back(k, k * 10);
  c.put_all(entries);
  CHECK(c.size() == 10);
  // Every entry is either present with its value or was reported evicted with it (some only
  // ever existed inside the call).
  CHECK(heard.size() == 40);
  std::set<int> gone;
  for (const auto& [k, v, why] : heard) {
    CHECK(why == removal_cause::evicted);
    CHECK(v == k * 10);
    gone.insert(k);
  }
  for (int k = 0; k < 50; ++k) {
    const std::optional<int> v = c.peek(k);
    CHECK(v.has_value() != gone.contains(k));
    if (v) CHECK(*v == k * 10);
  }
  CHECK(c.stats().evictions == 40);
  c.run_pending();
  CHECK(c.size() == 10);
}

TEST_CASE("cache: put_all with a ttl; a weight bound weighs each entry") {
  fake_clock clock;
  cache<int, int> c({.max_entries = 100, .ticker = clock.ticker()});
  c.put_all(std::vector<std::pair<int, int>>{{1, 1}, {2, 2}}, 5s);
  c.put(3, 3);
  clock.advance(5s);
  CHECK_FALSE(c.get(1).has_value());
  CHECK(c.get(3) == 3);
  c.run_pending();
  CHECK(c.size() == 1);
  CHECK(c.stats().expirations == 2);
  c.put_all(std::vector<std::pair<int, int>>{{3, 4}}, 0s);  // ttl <= 0: removes
  CHECK(c.size() == 0);

  cache<int, std::string> w({.max_weight = 10},
                            [](const int&, const std::string& s) { return std::uint64_t(s.size()); });
  w.put_all(std::vector<std::pair<int, std::string>>{{1, "aaaa"}, {2, "bbbbbbbbbbbb"}, {3, "cc"}});
  CHECK(w.peek(1) == "aaaa");
  CHECK_FALSE(w.peek(2).has_value());  // heavier than the bound: not kept
  CHECK(w.peek(3) == "cc");
  CHECK(w.weighted_size() == 6);
}

TEST_CASE("cache: get_all returns the live entries found, in order, counting and recording each lookup") {
  fake_clock clock;
  cache<std::string, int> c({.max_entries = 100, .ticker = clock.ticker()});
  c.put("a", 1);
  c.put("b", 2);
  c.put("old", 3, 1s);
  clock.advance(1s);
  const std::vector<std::string> keys{"b", "x", "a", "old", "b"};
  const auto found = c.get_all(keys);
  REQUIRE(found.size() == 3);
  CHECK(found[0] == std::pair<std::string, int>("b", 2));
  CHECK(found[1] == std::pair<std::string, int>("a", 1));
  CHECK(found[2] == std::pair<std::string, int>("b", 2));
  CHECK(c.get_all(std::vector<std::string_view>{"a"}).size() == 1);  // heterogeneous keys
  const auto s = c.stats();
  CHECK(s.hits == 4);
  CHECK(s.misses == 2);
  CHECK(c.get_all(std::vector<std::string>{}).empty());
}

TEST_CASE("cache: get_many gives what get gives, key for key, counting and recording each lookup") {
  fake_clock clock;
  cache<std::uint64_t, std::string> c({.max_entries = 1000, .ticker = clock.ticker()});
  for (std::uint64_t k = 0; k < 300; k += 2) c.put(k, "v" + std::to_string(k));
  for (std::uint64_t k = 1; k < 40; k += 2) c.put(k, "short", 1s);
  clock.advance(1s);  // the odd keys below 40 have expired; the others are absent
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> keys(1000);  // repeats, hits, misses, expired entries; 64 < 1000
  for (auto& k : keys) k = rng() % 400;
  std::vector<std::optional<std::string>> out(keys.size(), std::string("stale"));
  const cache_stats before = c.stats();
  const std::size_t found = c.get_many(keys, out);
  const cache_stats after = c.stats();
  std::size_t expected = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::optional<std::string> one = c.peek(keys[i]);
    CHECK(out[i] == one);
    expected += one.has_value();
  }
  CHECK(found == expected);
  CHECK(after.hits - before.hits == expected);
  CHECK(after.misses - before.misses == keys.size() - expected);
  // Spans: empty, mismatched.
  CHECK(c.get_many(std::span<const std::uint64_t>(), std::span<std::optional<std::string>>()) == 0);
  CHECK_THROWS_AS(c.get_many(keys, std::span<std::optional<std::string>>(out).first(10)), std::invalid_argument);
}

TEST_CASE("cache: get_all's recorded hits keep hot keys, as get's do") {
  // As "hot keys survive a scan", the hot keys read through get_all only.
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 1000});
  std::vector<std::uint64_t> hot;
  for (std::uint64_t k = 0; k < 200; ++k) hot.push_back(k);
  for (int round = 0; round < 20; ++round) {
    const auto found = c.get_all(hot);
    if (found.size() < hot.size()) {
      for (std::uint64_t k : hot) {
        if (!c.peek(k)) c.put(k, k);
      }
    }
    c.run_pending();
  }
  REQUIRE(count_present(c, 0, 200) == 200);
  for (std::uint64_t k = 1'000'000; k < 1'010'000; ++k) {
    if (!c.get(k)) c.put(k, k);
    if (k % 50 == 0) (void)c.get_all(hot);
  }
  c.run_pending();
  CHECK(count_present(c, 0, 200) >= 190);
}

TEST_CASE("cache: a reader's get_all sees all of a put_all or none of it") {
  // No eviction (the bound is far off): each put_all's entries appear in one version, and each
  // get_all reads one version.
  cache<std::uint64_t, std::uint64_t> c({.max_entries = 100'000});
  constexpr std::uint64_t batches = 300, per_batch = 8;
  const auto keys_of = [](std::uint64_t b) {
    std::vector<std::uint64_t> keys;
    for (std::uint64_t i = 0; i < per_batch; ++i) keys.push_back(b * per_batch + i);
    return keys;
  };
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> torn{0}, whole{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::uint64_t b = static_cast<std::uint64_t>(r);
      while (!done.load()) {
        const auto found = c.get_all(keys_of(b));
        if (found.size() == per_batch) whole.fetch_add(1);
        else if (!found.empty()) torn.fetch_add(1);
        b = (b + 7) % batches;
      }
    });
  }
  for (std::uint64_t b = 0; b < batches; ++b) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> entries;
    for (std::uint64_t k : keys_of(b)) entries.emplace_back(k, k);
    c.put_all(entries);
  }
  done.store(true);
  for (auto& t : readers) t.join();
  CHECK(torn.load() == 0);
  CHECK(c.size() == batches * per_batch);
  const auto s = c.stats();
  CHECK(s.hits == whole.load() * per_batch);
}

// ---- refresh_after_write ----

TEST_CASE("cache: a due entry is served at once and refreshed once, on the executor") {
  fake_clock clock;
  task_queue q;
  cache<int, std::string> c({.ticker = clock.ticker(), .refresh_after_write = 10s, .refresh_executor = q.executor()});
  int calls = 0;
  const auto loader = [&](const int&) { return "v" + std::to_string(++calls); };
  CHECK(c.get_or_load(1, loader) == "v1");  // a miss: loaded on the calling thread
  clock.advance(9s);
  CHECK(c.get_or_load(1, loader) == "v1");  // not due yet
  CHECK(q.size() == 0);
  clock.advance(1s);
  CHECK(c.get_or_load(1, loader) == "v1");  // due: the old value, and a refresh submitted
  CHECK(c.get_or_load(1, loader) == "v1");  // one in flight: no second
  CHECK(q.size() == 1);
  CHECK(calls == 1);
  q.run_all();
  CHECK(calls == 2);
  CHECK(c.peek(1) == "v2");
  CHECK(c.get_or_load(1, loader) == "v2");  // written again: not due
  CHECK(q.size() == 0);
  clock.advance(10s);
  CHECK(c.get_or_load(1, loader) == "v2");
  q.run_all();
  CHECK(c.peek(1) == "v3");
  const auto s = c.stats();
  CHECK(s.refreshes == 2);
  CHECK(s.load_successes == 3);
  CHECK(s.load_failures == 0);
  CHECK(s.misses == 1);
  CHECK(s.hits == 5);
}

TEST_CASE("cache: refresh tasks may outlive their cache: run or destroyed after it, they do nothing") {
  fake_clock clock;
  task_queue q;  // an executor that outlives the caches below (a thread pool, usually)
  int calls = 0;
  const auto loader = [&calls](const int& k) { return "v" + std::to_string(k) + "." + std::to_string(++calls); };
  for (int k : {1, 2}) {
    cache<int, std::string> c({.ticker = clock.ticker(), .refresh_after_write = 5s, .refresh_executor = q.executor()});
    CHECK(c.get_or_load(k, loader) == "v" + std::to_string(k) + ".1");
    clock.advance(5s);
    CHECK(c.get_or_load(k, loader) == "v" + std::to_string(k) + ".1");  // due: a task submitted
    calls = 0;
  }
  REQUIRE(q.size() == 2);
  // The first task runs after its cache is gone (ASan: no use after free), the second is
  // destroyed unrun (its end touches no cache either).
  std::vector<std::function<void()>> tasks;
  tasks.swap(q.tasks);
  tasks.front()();
  CHECK(calls == 0);  // its loader was not called: the cache it would fill is gone
  tasks.clear();
}

TEST_CASE("cache: destroying a cache waits for the refresh task running in it") {
  fake_clock clock;
  task_queue q;
  std::mutex mu;
  std::condition_variable cv;
  bool loading = false, release = false, loaded = false;
  const auto slow = [&](const int&) {
    std::unique_lock<std::mutex> lock(mu);
    loading = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    loaded = true;
    return std::string("new");
  };
  auto c = std::make_unique<cache<int, std::string>>(
      cache_options{.ticker = clock.ticker(), .refresh_after_write = 5s, .refresh_executor = q.executor()});
  c->put(1, "old");
  clock.advance(5s);
  CHECK(c->get_or_load(1, slow) == "old");
  REQUIRE(q.size() == 1);
  std::thread runner([&] { q.run_all(); });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return loading; });  // the task is inside the cache, in its loader
  }
  bool loaded_before_gone = false;
  std::thread destroyer([&] {
    c.reset();  // waits for the task
    std::lock_guard<std::mutex> lock(mu);
    loaded_before_gone = loaded;
  });
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  runner.join();
  destroyer.join();
  CHECK(loaded_before_gone);  // the loader had returned before the cache was gone
  CHECK(c == nullptr);
}

TEST_CASE("cache: get, get_all and peek never refresh") {
  fake_clock clock;
  task_queue q;
  cache<int, int> c({.ticker = clock.ticker(), .refresh_after_write = 1s, .refresh_executor = q.executor()});
  c.put(1, 10);
  clock.advance(5s);
  CHECK(c.get(1) == 10);
  CHECK(c.get_all(std::vector<int>{1}).size() == 1);
  CHECK(c.peek(1) == 10);
  c.run_pending();
  CHECK(q.size() == 0);
  CHECK(c.stats().refreshes == 0);
}

TEST_CASE("cache: a refresh replaces the entry as a put does: a new expiry, reported as replaced") {
  fake_clock clock;
  task_queue q;
  cache<int, std::string> c({.expire_after_write = 30s, .ticker = clock.ticker(), .refresh_after_write = 10s,
                             .refresh_executor = q.executor()});
  std::vector<std::tuple<int, std::string, removal_cause>> heard;
  c.set_removal_listener(
      [&](const int& k, const std::string& v, removal_cause why) { heard.emplace_back(k, v, why); });
  c.put(1, "a");
  clock.advance(20s);
  CHECK(c.get_or_load(1, [](const int&) { return std::string("b"); }) == "a");
  q.run_all();
  REQUIRE(heard.size() == 1);
  CHECK(heard[0] == std::tuple(1, std::string("a"), removal_cause::replaced));
  clock.advance(20s);  // past the old deadline (30s), before the new one (20s + 30s)
  CHECK(c.get(1) == "b");
  // A loader's with_ttl gives the refreshed entry its own expiry.
  clock.advance(5s);
  CHECK(c.get_or_load(1, [](const int&) { return leftright::with_ttl<std::string>{"c", 2s}; }) == "b");
  q.run_all();
  CHECK(c.get(1) == "c");
  clock.advance(2s);
  CHECK_FALSE(c.get(1).has_value());
}

TEST_CASE("cache: expiry wins over refresh: an expired entry is a miss, and a refresh of it is dropped") {
  fake_clock clock;
  task_queue q;
  cache<int, std::string> c({.expire_after_write = 10s, .ticker = clock.ticker(), .refresh_after_write = 5s,
                             .refresh_executor = q.executor()});
  int calls = 0;
  const auto loader = [&](const int&) { return "v" + std::to_string(++calls); };
  c.put(1, "old");
  clock.advance(10s);
  CHECK(c.get_or_load(1, loader) == "v1");  // expired: a miss, loaded on the calling thread
  CHECK(q.size() == 0);
  // Due, then expired before its refresh runs: the refreshed value is not put.
  c.put(2, "old");
  clock.advance(5s);
  CHECK(c.get_or_load(2, loader) == "old");
  clock.advance(5s);
  q.run_all();
  CHECK(calls == 2);
  CHECK_FALSE(c.peek(2).has_value());
  const auto s = c.stats();
  CHECK(s.refreshes == 1);
  CHECK(s.load_successes == 2);
}

TEST_CASE("cache: a put or an invalidate during a refresh wins over the refreshed value") {
  fake_clock clock;
  task_queue q;
  cache<int, std::string> c({.ticker = clock.ticker(), .refresh_after_write = 5s, .refresh_executor = q.executor()});
  const auto refreshed = [](const int&) { return std::string("refreshed"); };
  c.put(1, "a");
  c.put(2, "a");
  c.put(3, "a");
  clock.advance(5s);
  for (int k = 1; k <= 3; ++k) CHECK(c.get_or_load(k, refreshed) == "a");
  REQUIRE(q.size() == 3);
  c.put(1, "mine");
  c.invalidate(2);
  c.invalidate(3);
  c.put(3, "a");  // the same value again, but another write: still not the entry refreshed
  q.run_all();
  CHECK(c.peek(1) == "mine");
  CHECK_FALSE(c.peek(2).has_value());
  CHECK(c.peek(3) == "a");
  const auto s = c.stats();
  CHECK(s.refreshes == 3);
  CHECK(s.load_successes == 3);  // the loads ran; their values were dropped
}

TEST_CASE("cache: a miss during a refresh loads on its own and does not wait for the refresh") {
  fake_clock clock;
  task_queue q;
  cache<int, std::string> c({.ticker = clock.ticker(), .refresh_after_write = 5s, .refresh_executor = q.executor()});
  c.put(1, "a");
  clock.advance(5s);
  CHECK(c.get_or_load(1, [](const int&) { return std::string("refreshed"); }) == "a");
  c.invalidate(1);
  CHECK(c.get_or_load(1, [](const int&) { return std::string("loaded"); }) == "loaded");  // the queue never ran
  q.run_all();
  CHECK(c.peek(1) == "loaded");
}

TEST_CASE("cache: a refresh that throws keeps the old value and counts a failure; the next due call retries") {
  fake_clock clock;
  task_queue q;
  cache<int, std::string> c({.ticker = clock.ticker(), .refresh_after_write = 5s, .refresh_executor = q.executor()});
  c.put(1, "a");
  clock.advance(5s);
  CHECK(c.get_or_load(1, [](const int&) -> std::string { throw std::runtime_error("down"); }) == "a");
  q.run_all();
  CHECK(c.peek(1) == "a");
  CHECK(c.stats().load_failures == 1);
  CHECK(c.get_or_load(1, [](const int&) { return std::string("b"); }) == "a");
  REQUIRE(q.size() == 1);
  q.run_all();
  CHECK(c.peek(1) == "b");
  const auto s = c.stats();
  CHECK(s.refreshes == 2);
  CHECK(s.load_successes == 1);
  CHECK(s.load_failures == 1);
}

namespace {
/// fixed_hash, but throwing while `failing` is set (a hash that allocates, under memory pressure).
struct failing_hash {
  static inline bool failing = false;
  std::size_t operator()(int k) const {
    if (failing) throw std::runtime_error("hash");
    return fixed_hash{}(k);
  }
};
}  // namespace

TEST_CASE("cache: a refresh whose end meets a throwing hash still ends; the next due call refreshes") {
  // The refresh's put fails (the hash throws), and so does its end's erase of the key from the
  // refreshes in flight: that erase used to throw out of a noexcept function (std::terminate).
  fake_clock clock;
  cache<int, int, failing_hash> c({.ticker = clock.ticker(), .refresh_after_write = 10s});
  c.put(1, 1);
  clock.advance(10s);
  CHECK_THROWS_AS(c.get_or_load(1,
                                [](const int&) {
                                  failing_hash::failing = true;
                                  return 2;
                                }),
                  std::runtime_error);
  failing_hash::failing = false;
  CHECK(c.peek(1) == 1);
  c.run_pending();  // the rebuild the failed put left due
  int calls = 0;
  CHECK(c.get_or_load(1,
                      [&](const int&) {
                        ++calls;
                        return 3;
                      }) == 3);  // not stuck behind the refresh that failed
  CHECK(calls == 1);
  CHECK(c.peek(1) == 3);
}

TEST_CASE("cache: an executor that refuses or drops a refresh leaves the old value and no refresh in flight") {
  fake_clock clock;
  int submitted = 0;
  std::vector<std::function<void()>> kept;
  cache<int, int> c({.ticker = clock.ticker(), .refresh_after_write = 5s,
                     .refresh_executor = [&](std::function<void()> task) {
                       if (++submitted == 1) throw std::runtime_error("full");
                       kept.push_back(std::move(task));
                     }});
  c.put(1, 10);
  clock.advance(5s);
  CHECK(c.get_or_load(1, [](const int&) { return 11; }) == 10);  // refused
  CHECK(c.get_or_load(1, [](const int&) { return 12; }) == 10);  // submitted again, kept
  CHECK(submitted == 2);
  kept.clear();                                                   // dropped unrun
  CHECK(c.get_or_load(1, [](const int&) { return 13; }) == 10);  // submitted again
  REQUIRE(kept.size() == 1);
  kept.front()();
  kept.front()();  // a second run does nothing
  kept.clear();
  CHECK(c.peek(1) == 13);
  CHECK(c.stats().refreshes == 1);
}

TEST_CASE("cache: without an executor the caller that finds the entry due refreshes and returns the new value") {
  fake_clock clock;
  cache<int, std::string> c({.ticker = clock.ticker(), .refresh_after_write = 5s});
  c.put(1, "a");
  clock.advance(5s);
  CHECK(c.get_or_load(1, [](const int&) { return std::string("b"); }) == "b");
  CHECK(c.peek(1) == "b");
  clock.advance(5s);
  // A refresh that throws: the old value, no exception.
  CHECK(c.get_or_load(1, [](const int&) -> std::string { throw std::runtime_error("down"); }) == "b");
  // A move-only loader, as an rvalue and as an lvalue.
  auto owned = [p = std::make_unique<std::string>("c")](const int&) { return *p; };
  CHECK(c.get_or_load(1, owned) == "c");
  clock.advance(5s);
  CHECK(c.get_or_load(1, [p = std::make_unique<std::string>("d")](const int&) { return *p; }) == "d");
  const auto s = c.stats();
  CHECK(s.refreshes == 4);
  CHECK(s.load_successes == 3);
  CHECK(s.load_failures == 1);
}

TEST_CASE("cache: concurrent callers that find one entry due start one refresh") {
  fake_clock clock;
  task_queue q;
  cache<int, int> c({.ticker = clock.ticker(), .refresh_after_write = 5s, .refresh_executor = q.executor()});
  c.put(1, 10);
  clock.advance(5s);
  constexpr int threads = 4;
  std::atomic<int> loads{0};
  std::vector<int> got(threads, -1);
  std::latch start(threads);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      start.arrive_and_wait();
      got[static_cast<std::size_t>(i)] = c.get_or_load(1, [&](const int&) {
        loads.fetch_add(1);  // seq_cst: a plain count
        return 11;
      });
    });
  }
  for (auto& t : ts) t.join();
  for (int v : got) CHECK(v == 10);
  CHECK(q.size() == 1);
  CHECK(loads.load() == 0);
  q.run_all();
  CHECK(loads.load() == 1);
  CHECK(c.peek(1) == 11);
}

TEST_CASE("cache: without an executor one caller refreshes while the others get the old value without waiting") {
  fake_clock clock;
  cache<int, int> c({.ticker = clock.ticker(), .refresh_after_write = 5s});
  c.put(1, 10);
  clock.advance(5s);
  constexpr int threads = 4;
  std::atomic<int> loads{0}, returned_old{0};
  std::vector<int> got(threads, -1);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      const int v = c.get_or_load(1, [&](const int&) {
        loads.fetch_add(1);  // seq_cst: a plain count
        // Hold the refresh until every other caller has returned: they must not wait for it.
        while (returned_old.load() < threads - 1) std::this_thread::yield();
        return 11;
      });
      if (v == 10) returned_old.fetch_add(1);  // seq_cst: a plain count, read by the loader
      got[static_cast<std::size_t>(i)] = v;
    });
  }
  for (auto& t : ts) t.join();
  CHECK(loads.load() == 1);
  CHECK(std::count(got.begin(), got.end(), 11) == 1);
  CHECK(std::count(got.begin(), got.end(), 10) == threads - 1);
  CHECK(c.peek(1) == 11);
}

}  // namespace LEFTRIGHT_TEST_FILE
