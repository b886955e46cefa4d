// SPDX-License-Identifier: Apache-2.0
// leftright::cache::compute: the read-modify-write its header promises, each part asserted. Time
// comes from a fake ticker; the threads coordinate through latches and assert on totals, never on
// timing.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <latch>
#include <optional>
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
using leftright::removal_cause;
using lrtest::fake_clock;
using namespace std::chrono_literals;

/// What a removal listener heard.
template <class K, class V>
struct removals {
  std::vector<std::tuple<K, V, removal_cause>> heard;
  typename cache<K, V>::removal_listener listener() {
    return [this](const K& k, const V& v, removal_cause why) { heard.emplace_back(k, v, why); };
  }
};

std::optional<int> plus_one(const int* current) { return current != nullptr ? *current + 1 : 1; }

std::uint64_t length_weight(const int&, const std::string& v) { return v.size(); }

}  // namespace

TEST_CASE("cache compute: concurrent increments of a few keys lose no update") {
  // Each thread adds 1 to each key, many times: a get() then put() would lose some of the adds
  // made by the others in between; compute() loses none.
  cache<int, int> c;
  constexpr int threads = 4;
  constexpr int keys = 3;
  constexpr int rounds = 500;
  std::latch start(threads);
  std::vector<int> unheld(threads, 0);  // computes that returned nullopt, by thread (Catch2 asserts on one)
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      start.arrive_and_wait();
      for (int r = 0; r < rounds; ++r) {
        for (int k = 0; k < keys; ++k) unheld[static_cast<std::size_t>(i)] += !c.compute(k, plus_one).has_value();
      }
    });
  }
  for (auto& t : ts) t.join();
  for (int n : unheld) CHECK(n == 0);
  for (int k = 0; k < keys; ++k) CHECK(c.peek(k) == threads * rounds);
  const auto s = c.stats();
  CHECK(s.hits == 0);  // a compute is a write: no lookup counted
  CHECK(s.misses == 0);
}

TEST_CASE("cache compute: concurrent appends to a cached list, beside puts of other keys, lose no element") {
  // Appends, each thread its own elements, while another thread puts other keys: every element
  // is in the final list, once.
  cache<int, std::vector<int>> c({.max_entries = 1000});
  constexpr int threads = 3;
  constexpr int per_thread = 300;
  std::latch start(threads + 1);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&, i] {
      start.arrive_and_wait();
      for (int n = 0; n < per_thread; ++n) {
        (void)c.compute(0, [&](const std::vector<int>* current) {
          std::vector<int> next = current != nullptr ? *current : std::vector<int>{};
          next.push_back(i * per_thread + n);
          return std::optional(std::move(next));
        });
      }
    });
  }
  ts.emplace_back([&] {
    start.arrive_and_wait();
    for (int k = 1; k <= per_thread; ++k) c.put(k, std::vector<int>{k});
  });
  for (auto& t : ts) t.join();
  const std::optional<std::vector<int>> list = c.peek(0);
  REQUIRE(list.has_value());
  REQUIRE(list->size() == static_cast<std::size_t>(threads * per_thread));
  std::vector<bool> seen(list->size(), false);
  for (int e : *list) {
    REQUIRE(e >= 0);
    REQUIRE(e < threads * per_thread);
    CHECK_FALSE(seen[static_cast<std::size_t>(e)]);
    seen[static_cast<std::size_t>(e)] = true;
  }
}

TEST_CASE("cache compute: a value is put, replacing the old one; nullopt removes it as invalidate does") {
  cache<int, int> c;
  removals<int, int> r;
  c.set_removal_listener(r.listener());
  std::vector<bool> saw_entry;
  const auto record = [&](std::optional<int> next) {
    return [&saw_entry, next](const int* current) {
      saw_entry.push_back(current != nullptr);
      return next;
    };
  };
  // Absent, and nullopt: the key stays absent, nothing is heard.
  CHECK(c.compute(1, record(std::nullopt)) == std::nullopt);
  CHECK(c.size() == 0);
  // Absent, and a value: put.
  CHECK(c.compute(1, record(10)) == 10);
  CHECK(c.get(1) == 10);
  CHECK(r.heard.empty());
  // Present: f sees the value; the new one replaces it, reported replaced.
  int seen = 0;
  CHECK(c.compute(1, [&](const int* current) {
    seen = *current;
    return std::optional(*current * 2);
  }) == 20);
  CHECK(seen == 10);
  CHECK(c.get(1) == 20);
  REQUIRE(r.heard.size() == 1);
  CHECK(r.heard[0] == std::tuple(1, 10, removal_cause::replaced));
  // Present, and nullopt: removed, reported as invalidate() reports it.
  CHECK(c.compute(1, record(std::nullopt)) == std::nullopt);
  CHECK_FALSE(c.peek(1).has_value());
  CHECK(c.size() == 0);
  REQUIRE(r.heard.size() == 2);
  CHECK(r.heard[1] == std::tuple(1, 20, removal_cause::invalidated));
  CHECK(saw_entry == std::vector<bool>{false, false, true});
  // Counted as put() and invalidate() are: no hit, no miss, no eviction (the two get()s above
  // are the only lookups).
  const auto s = c.stats();
  CHECK(s.hits == 2);
  CHECK(s.misses == 0);
  CHECK(s.evictions == 0);
  CHECK(s.expirations == 0);
}

TEST_CASE("cache compute: a value with a ttl expires by the clock, and f sees nullptr for an expired entry") {
  fake_clock clock;
  cache<int, int> c({.expire_after_write = 10s, .ticker = clock.ticker()});
  removals<int, int> r;
  c.set_removal_listener(r.listener());
  CHECK(c.compute(1, plus_one, 5s) == 1);
  clock.advance(4s);
  CHECK(c.peek(1) == 1);
  clock.advance(1s);
  CHECK_FALSE(c.peek(1).has_value());  // past its deadline, not yet removed
  // f is given nullptr, not the expired value; the expired entry is reported expired.
  CHECK(c.compute(1, plus_one) == 1);
  REQUIRE(r.heard.size() == 1);
  CHECK(r.heard[0] == std::tuple(1, 1, removal_cause::expired));
  CHECK(c.stats().expirations == 1);
  // Without a ttl: the default expiry, counted from the compute.
  clock.advance(9s);
  CHECK(c.peek(1) == 1);
  clock.advance(1s);
  CHECK_FALSE(c.peek(1).has_value());
  // A ttl <= 0 only removes what the key held, as put(k, v, 0s).
  CHECK(c.compute(2, plus_one) == 1);
  CHECK(c.compute(2, plus_one, 0s) == std::nullopt);
  CHECK_FALSE(c.peek(2).has_value());
  CHECK(c.size() == 0);
}

TEST_CASE("cache compute: an entry whose deadline passes during the write's maintenance is given to f as absent") {
  // The clock passes the deadline after the maintenance read it (which then kept the entry) and
  // before f runs: f must not see a value past its deadline.
  fake_clock clock;
  cache<int, int> c({.ticker = clock.ticker()});
  removals<int, int> r;
  c.set_removal_listener(r.listener());
  c.put(1, 41, 5s);
  clock.advance(5s - 1ns);
  REQUIRE(c.peek(1) == 41);
  clock.step_at_next_read(1ns);  // the maintenance reads 5s - 1ns, f's look 5s
  const int not_called = 0;
  const int* seen = &not_called;
  CHECK(c.compute(1, [&](const int* current) {
    seen = current;
    return std::optional(1);
  }) == 1);
  CHECK(seen == nullptr);
  REQUIRE(r.heard.size() == 1);
  CHECK(r.heard[0] == std::tuple(1, 41, removal_cause::expired));
  CHECK(c.peek(1) == 1);
}

TEST_CASE("cache compute: a function that throws changes nothing, and the cache stays usable") {
  cache<int, std::string> c({.max_weight = 100}, length_weight);
  removals<int, std::string> r;
  c.set_removal_listener(r.listener());
  for (int k = 0; k < 4; ++k) c.put(k, std::string(10, 'a'));
  REQUIRE(c.weighted_size() == 40);
  CHECK_THROWS_AS(c.compute(2, [](const std::string*) -> std::optional<std::string> { throw std::runtime_error("f"); }),
                  std::runtime_error);
  CHECK_THROWS_AS(c.compute(9, [](const std::string*) -> std::optional<std::string> { throw std::runtime_error("f"); }),
                  std::runtime_error);
  CHECK(c.peek(2) == std::string(10, 'a'));
  CHECK_FALSE(c.peek(9).has_value());
  CHECK(c.size() == 4);
  CHECK(c.weighted_size() == 40);
  CHECK(r.heard.empty());
  // Later writes work, and the weight bound holds on every one.
  CHECK(c.compute(2, [](const std::string* s) { return std::optional(*s + "b"); }) == std::string(10, 'a') + "b");
  CHECK(c.weighted_size() == 41);
  for (int k = 10; k < 40; ++k) {
    c.put(k, std::string(static_cast<std::size_t>(k % 7 + 5), 'c'));
    REQUIRE(c.weighted_size() <= 100);
  }
  c.invalidate_all();
  CHECK(c.size() == 0);
  CHECK(c.weighted_size() == 0);
}

TEST_CASE("cache compute: a function that writes to its own cache gets a logic_error, not a deadlock") {
  cache<int, int> c;
  c.put(1, 10);
  const std::vector<std::pair<const char*, std::function<void()>>> calls = {
      {"put", [&] { c.put(1, 11); }},
      {"invalidate", [&] { c.invalidate(1); }},
      {"invalidate_all", [&] { c.invalidate_all(); }},
      {"run_pending", [&] { c.run_pending(); }},
      {"compute", [&] { (void)c.compute(1, plus_one); }},
      {"compute of another key", [&] { (void)c.compute(2, plus_one); }},
      {"get_or_load of a miss", [&] { (void)c.get_or_load(3, [](const int&) { return 3; }); }},
      {"get_all_or_load of a miss",
       [&] {
         (void)c.get_all_or_load(std::vector<int>{3},
                                 [](std::span<const int>) { return std::vector<std::pair<int, int>>{{3, 3}}; });
       }},
      {"stats", [&] { (void)c.stats(); }},
      {"weighted_size", [&] { (void)c.weighted_size(); }},
      {"set_removal_listener", [&] { c.set_removal_listener({}); }},
  };
  for (const auto& named : calls) {  // (not a structured binding: clang before 16 cannot capture one)
    INFO(named.first);
    const std::function<void()>& call = named.second;
    CHECK_THROWS_AS(c.compute(1,
                              [&](const int* current) {
                                call();
                                return std::optional(*current + 100);
                              }),
                    std::logic_error);
    // Nothing changed, and the thread is no longer marked: its own writes work.
    CHECK(c.peek(1) == 10);
    CHECK_FALSE(c.peek(2).has_value());
    CHECK_FALSE(c.peek(3).has_value());
    c.put(1, 10);
  }
  // f may read its cache, and may catch the refusal and go on.
  std::optional<int> got;
  bool refused = false;
  CHECK(c.compute(1, [&](const int* current) {
    got = c.get(1);
    try {
      c.put(1, 0);
    } catch (const std::logic_error&) {
      refused = true;
    }
    return std::optional(*current + 1);
  }) == 11);
  CHECK(got == 10);
  CHECK(refused);
  CHECK(c.peek(1) == 11);
}

TEST_CASE("cache compute: a function that would wait on another thread's load of its cache gets a logic_error") {
  // The load in flight stores its value under the writer lock that f's thread holds: waiting on
  // it from f would never end.
  cache<int, int> c;
  std::latch loading(1), release(1);
  std::thread loader([&] {
    (void)c.get_or_load(5, [&](const int&) {
      loading.count_down();
      release.wait();
      return 50;
    });
  });
  loading.wait();
  CHECK_THROWS_AS(c.compute(1,
                            [&](const int*) {
                              return std::optional(c.get_or_load(5, [](const int&) { return 0; }));
                            }),
                  std::logic_error);
  CHECK_THROWS_AS(c.compute(1,
                            [&](const int*) {
                              const auto got = c.get_all_or_load(std::vector<int>{5}, [](std::span<const int>) {
                                return std::vector<std::pair<int, int>>{};
                              });
                              return std::optional(static_cast<int>(got.size()));
                            }),
                  std::logic_error);
  release.count_down();
  loader.join();
  CHECK(c.peek(5) == 50);
  CHECK_FALSE(c.peek(1).has_value());
}

TEST_CASE("cache compute: f may compute on another cache, whose own f cannot write to the first") {
  cache<int, int> a, b;
  // a's f computes on b: allowed (b's lock is not held).
  CHECK(a.compute(1, [&](const int*) { return b.compute(1, plus_one); }) == 1);
  CHECK(b.peek(1) == 1);
  // b's f, run inside a's, writes to a, whose lock this thread holds: refused, and a's compute
  // (whose f lets the exception through) changes nothing either.
  CHECK_THROWS_AS(a.compute(1,
                            [&](const int*) {
                              return b.compute(1, [&](const int* v) {
                                a.put(2, 2);
                                return std::optional(*v + 1);
                              });
                            }),
                  std::logic_error);
  CHECK(a.peek(1) == 1);
  CHECK_FALSE(a.peek(2).has_value());
  CHECK(b.peek(1) == 1);
  // Both caches take writes again.
  a.put(2, 2);
  b.put(2, 2);
  CHECK(a.peek(2) == 2);
  CHECK(b.peek(2) == 2);
}

TEST_CASE("cache compute: computes of new keys into a bounded cache evict as puts do") {
  // The same calls as puts and as computes leave the same entries, and the bound holds after
  // each compute.
  cache<int, int> by_put({.max_entries = 50});
  cache<int, int> by_compute({.max_entries = 50});
  removals<int, int> r;
  by_compute.set_removal_listener(r.listener());
  for (int k = 0; k < 2000; ++k) {
    const int key = k % 3 == 0 ? k % 40 : k;  // some keys come back: the policy keeps them
    by_put.put(key, k);
    const std::optional<int> held = by_compute.compute(key, [k](const int*) { return std::optional(k); });
    REQUIRE(by_compute.size() <= 50);
    REQUIRE(held == by_compute.peek(key));
  }
  for (int k = 0; k < 2000; ++k) CHECK(by_put.peek(k) == by_compute.peek(k));
  const auto s = by_compute.stats();
  CHECK(s.evictions == by_put.stats().evictions);
  CHECK(s.evictions > 0);
  std::size_t evicted = 0;
  for (const auto& [k, v, why] : r.heard) evicted += why == removal_cause::evicted;
  CHECK(evicted == s.evictions);
}

TEST_CASE("cache compute: a weight bound weighs the computed value as a put's") {
  cache<int, std::string> c({.max_weight = 100}, length_weight);
  removals<int, std::string> r;
  c.set_removal_listener(r.listener());
  const auto append = [](std::size_t n) {
    return [n](const std::string* s) {
      return std::optional((s != nullptr ? *s : std::string()) + std::string(n, 'x'));
    };
  };
  for (int k = 0; k < 60; ++k) {
    (void)c.compute(k % 15, append(static_cast<std::size_t>(k % 4 + 1)));
    REQUIRE(c.weighted_size() <= 100);
  }
  // Grown past the bound: not kept; the old value reported replaced, the new one evicted.
  c.invalidate_all();  // (a new key put into the full cache might not be admitted)
  c.put(99, "small");
  REQUIRE(c.peek(99) == "small");
  r.heard.clear();
  CHECK(c.compute(99, append(200)) == std::nullopt);
  CHECK_FALSE(c.peek(99).has_value());
  REQUIRE(r.heard.size() == 2);
  CHECK(r.heard[0] == std::tuple(99, std::string("small"), removal_cause::replaced));
  CHECK(r.heard[1] == std::tuple(99, "small" + std::string(200, 'x'), removal_cause::evicted));
  // A new key heavier than the bound: not kept.
  CHECK(c.compute(98, append(101)) == std::nullopt);
  CHECK_FALSE(c.peek(98).has_value());
  CHECK(c.weighted_size() <= 100);
}

TEST_CASE("cache compute: a compute of the key during its load wins over the loaded value") {
  // The loader makes the compute itself (no lock is held while a loader runs): deterministic.
  cache<int, int> c({.max_entries = 100});
  SECTION("a value") {
    const int not_called = 0;
    const int* seen = &not_called;
    CHECK(c.get_or_load(1, [&](const int& k) {
      (void)c.compute(k, [&](const int* current) {
        seen = current;
        return std::optional(20);
      });
      return 10;
    }) == 10);
    CHECK(seen == nullptr);  // the load has stored nothing yet
    CHECK(c.get(1) == 20);
  }
  SECTION("nullopt on the absent key") {
    CHECK(c.get_or_load(1, [&](const int& k) {
      (void)c.compute(k, [](const int*) { return std::optional<int>(); });
      return 10;
    }) == 10);
    CHECK_FALSE(c.get(1).has_value());
  }
  SECTION("a compute whose f threw is no write: the load stores its value") {
    CHECK(c.get_or_load(1, [&](const int& k) {
      CHECK_THROWS_AS(c.compute(k, [](const int*) -> std::optional<int> { throw std::runtime_error("f"); }),
                      std::runtime_error);
      return 10;
    }) == 10);
    CHECK(c.get(1) == 10);
  }
  SECTION("a compute of another key does not keep the value out") {
    CHECK(c.get_or_load(1, [&](const int&) {
      (void)c.compute(2, plus_one);
      return 10;
    }) == 10);
    CHECK(c.get(1) == 10);
    CHECK(c.get(2) == 1);
  }
}

TEST_CASE("cache compute: a compute on another thread while a load of the key runs wins over the loaded value") {
  cache<int, int> c({.max_entries = 100});
  std::latch loading(1), computed(1);
  int loaded = 0;
  std::thread loader([&] {
    loaded = c.get_or_load(1, [&](const int&) {
      loading.count_down();
      computed.wait();  // the compute below is done before this load stores
      return 10;
    });
  });
  loading.wait();
  bool saw_nothing = false;
  CHECK(c.compute(1, [&](const int* current) {
    saw_nothing = current == nullptr;  // a compute does not wait for the load
    return std::optional(20);
  }) == 20);
  computed.count_down();
  loader.join();
  CHECK(saw_nothing);
  CHECK(loaded == 10);  // the loading caller gets its value
  CHECK(c.get(1) == 20);  // but the compute's is the one kept
  CHECK(c.stats().load_successes == 1);
}

}  // namespace LEFTRIGHT_TEST_FILE
