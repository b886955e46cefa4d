// SPDX-License-Identifier: Apache-2.0
// leftright::cache::get_all_or_load: the hits from one snapshot, the misses from one call of a
// bulk loader, coalesced with the loads of other callers (get_or_load and other bulk loads) as
// get_or_load coalesces its own. The concurrent cases assert on counts and values, whatever the
// interleaving.
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <latch>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "leftright/cache.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using leftright::cache;
using entries = std::vector<std::pair<int, std::string>>;

std::string value_of(int k) { return "v" + std::to_string(k); }

/// A bulk loader that finds every key asked but those in `absent`, noting each call's keys.
struct recording_loader {
  std::vector<std::vector<int>>* calls;
  std::set<int> absent{};
  std::map<int, std::string> operator()(std::span<const int> keys) const {
    calls->emplace_back(keys.begin(), keys.end());
    std::map<int, std::string> found;
    for (int k : keys) {
      if (!absent.contains(k)) found.emplace(k, value_of(k));
    }
    return found;
  }
};

}  // namespace

TEST_CASE("cache: get_all_or_load reads the hits once and loads every distinct miss in one loader call",
          "[cache][bulk_load]") {
  cache<int, std::string> c({.max_entries = 100});
  c.put(1, "one");
  c.put(2, "two");
  std::vector<std::vector<int>> calls;
  const entries got = c.get_all_or_load(std::vector<int>{1, 3, 2, 4, 3, 5}, recording_loader{&calls, {5}});
  CHECK(got == entries{{1, "one"}, {3, "v3"}, {2, "two"}, {4, "v4"}, {3, "v3"}});  // 5: not found
  REQUIRE(calls.size() == 1);
  CHECK(std::set<int>(calls[0].begin(), calls[0].end()) == std::set<int>{3, 4, 5});
  CHECK(calls[0].size() == 3);  // each miss asked once
  CHECK(c.peek(3) == "v3");
  CHECK(c.peek(4) == "v4");
  CHECK_FALSE(c.peek(5).has_value());
  const auto s = c.stats();
  CHECK(s.hits == 2);
  CHECK(s.misses == 4);
  CHECK(s.load_successes == 1);
  // All hits now: the loader is not called.
  CHECK(c.get_all_or_load(std::vector<int>{3, 4}, recording_loader{&calls}) == entries{{3, "v3"}, {4, "v4"}});
  CHECK(calls.size() == 1);
  // An empty key list asks nothing.
  CHECK(c.get_all_or_load(std::vector<int>{}, recording_loader{&calls}).empty());
  CHECK(calls.size() == 1);
}

TEST_CASE("cache: get_all_or_load stores only the keys it asked for", "[cache][bulk_load]") {
  cache<int, std::string> c;
  const entries got = c.get_all_or_load(std::vector<int>{7}, [](std::span<const int>) {
    return entries{{7, "seven"}, {99, "not asked"}};
  });
  CHECK(got == entries{{7, "seven"}});
  CHECK(c.peek(7) == "seven");
  CHECK_FALSE(c.peek(99).has_value());
}

TEST_CASE("cache: a bulk loader that throws stores nothing; the next call loads again", "[cache][bulk_load]") {
  cache<int, std::string> c;
  c.put(1, "one");
  CHECK_THROWS_AS(c.get_all_or_load(std::vector<int>{1, 2, 3},
                                    [](std::span<const int>) -> entries { throw std::runtime_error("down"); }),
                  std::runtime_error);
  CHECK_FALSE(c.peek(2).has_value());
  CHECK(c.size() == 1);
  CHECK(c.stats().load_failures == 1);
  std::vector<std::vector<int>> calls;
  CHECK(c.get_all_or_load(std::vector<int>{2, 3}, recording_loader{&calls}) == entries{{2, "v2"}, {3, "v3"}});
  CHECK(calls.size() == 1);
}

TEST_CASE("cache: a write made while a bulk loader runs wins over that key's loaded value", "[cache][bulk_load]") {
  cache<int, std::string> c({.max_entries = 100});
  const entries got = c.get_all_or_load(std::vector<int>{1, 2, 3}, [&c](std::span<const int> keys) {
    c.put(1, "newer");
    c.invalidate(2);
    entries found;
    for (int k : keys) found.emplace_back(k, value_of(k));
    return found;
  });
  CHECK(got == entries{{1, "v1"}, {2, "v2"}, {3, "v3"}});  // returned to the caller all the same
  CHECK(c.peek(1) == "newer");
  CHECK_FALSE(c.peek(2).has_value());
  CHECK(c.peek(3) == "v3");
}

TEST_CASE("cache: a bulk loader that asks the cache to load a key it is loading gets a logic_error",
          "[cache][bulk_load]") {
  cache<int, std::string> c;
  CHECK_THROWS_AS(c.get_all_or_load(std::vector<int>{1, 2},
                                    [&c](std::span<const int>) {
                                      (void)c.get_or_load(2, [](const int&) { return std::string("x"); });
                                      return entries{};
                                    }),
                  std::logic_error);
  CHECK_THROWS_AS(c.get_all_or_load(std::vector<int>{1, 2},
                                    [&c](std::span<const int>) {
                                      return c.get_all_or_load(std::vector<int>{3, 1}, [](std::span<const int>) {
                                        return entries{};
                                      });
                                    }),
                  std::logic_error);
  CHECK(c.size() == 0);
  // Another key from inside a bulk loader is fine.
  CHECK(c.get_all_or_load(std::vector<int>{1},
                          [&c](std::span<const int>) {
                            return entries{{1, c.get_or_load(5, [](const int&) { return std::string("5"); })}};
                          }) == entries{{1, "5"}});
}

TEST_CASE("cache: get_or_load callers of keys in a bulk load get its values; of a key it did not find, load it",
          "[cache][bulk_load]") {
  cache<int, std::string> c;
  constexpr int waiters = 4;
  std::atomic<bool> loading{false};
  std::atomic<int> arrived{0};
  std::atomic<int> own_loads{0};
  std::vector<std::string> got(waiters);
  std::vector<std::thread> ts;
  std::thread bulk([&] {
    const entries r = c.get_all_or_load(std::vector<int>{1, 2}, [&](std::span<const int>) {
      loading.store(true);  // seq_cst: a plain flag; keys 1 and 2 are claimed by now
      // Held until the other callers arrived: they find the load in flight, or its outcome.
      while (arrived.load() < waiters) std::this_thread::yield();  // seq_cst: a plain count
      return entries{{1, "bulk"}};  // 2: not found
    });
    CHECK(r == entries{{1, "bulk"}});
  });
  for (int i = 0; i < waiters; ++i) {
    ts.emplace_back([&, i] {
      const int key = 1 + i % 2;
      while (!loading.load()) std::this_thread::yield();  // seq_cst: a plain flag
      arrived.fetch_add(1);  // seq_cst: a plain count
      got[static_cast<std::size_t>(i)] = c.get_or_load(key, [&](const int& k) {
        own_loads.fetch_add(1);  // seq_cst: a plain count
        return "own" + std::to_string(k);
      });
    });
  }
  bulk.join();
  for (auto& t : ts) t.join();
  for (int i = 0; i < waiters; ++i) {
    INFO("caller " << i);
    CHECK(got[static_cast<std::size_t>(i)] == (i % 2 == 0 ? "bulk" : "own2"));
  }
  CHECK(own_loads.load() == 1);  // key 2's callers coalesce on one load of their own
  CHECK(c.peek(1) == "bulk");
  CHECK(c.peek(2) == "own2");
}

TEST_CASE("cache: bulk loads of overlapping keys from several threads load each key once", "[cache][bulk_load]") {
  cache<int, int> c({.max_entries = 1000});
  constexpr int threads = 4;
  constexpr int keys = 40;
  std::array<std::atomic<int>, keys> loads{};
  std::atomic<int> arrived{0};
  std::vector<std::vector<std::pair<int, int>>> results(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<int> mine;
      for (int k = t * 5; k < t * 5 + 20; ++k) mine.push_back(k);  // each overlaps its neighbours'
      arrived.fetch_add(1);  // seq_cst: a plain count
      results[static_cast<std::size_t>(t)] = c.get_all_or_load(mine, [&](std::span<const int> ask) {
        while (arrived.load() < threads) std::this_thread::yield();  // seq_cst: a plain count
        std::vector<std::pair<int, int>> found;
        for (int k : ask) {
          loads[static_cast<std::size_t>(k)].fetch_add(1);  // seq_cst: a plain count
          found.emplace_back(k, k * 10);
        }
        return found;
      });
    });
  }
  for (auto& t : ts) t.join();
  for (int k = 0; k < (threads - 1) * 5 + 20; ++k) {
    INFO("key " << k);
    CHECK(loads[static_cast<std::size_t>(k)].load() == 1);
    CHECK(c.peek(k) == k * 10);
  }
  for (int t = 0; t < threads; ++t) {
    const auto& r = results[static_cast<std::size_t>(t)];
    REQUIRE(r.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(r[static_cast<std::size_t>(i)] == std::pair<int, int>(t * 5 + i, (t * 5 + i) * 10));
  }
}

TEST_CASE("cache: a bulk load into a bounded cache keeps the bound and returns every value loaded",
          "[cache][bulk_load]") {
  cache<int, std::string> c({.max_entries = 4});
  std::vector<int> keys;
  for (int k = 0; k < 10; ++k) keys.push_back(k);
  std::vector<std::vector<int>> calls;
  const entries got = c.get_all_or_load(keys, recording_loader{&calls});
  CHECK(got.size() == 10);
  c.run_pending();
  CHECK(c.size() <= 4);
}

namespace {
/// A hash that runs hook() the second time it hashes key 1 on the thread armed for it: in
/// get_all_or_load, just after the snapshot's miss of key 1 (its lookup, then its note as missed).
struct hooked_hash {
  static inline thread_local int armed_hashes = -1;  // -1: not armed
  static inline std::function<void()> hook;
  std::size_t operator()(int k) const {
    if (k == 1 && armed_hashes >= 0 && ++armed_hashes == 2 && hook) hook();
    return leftright::default_hash<int>{}(k);
  }
};
}  // namespace

TEST_CASE("cache: a value another write stored after a bulk call's miss is returned, not stored again",
          "[cache][bulk_load]") {
  std::int64_t now = 1'000'000'000;
  leftright::cache<int, std::string, hooked_hash, leftright::default_eq<int>> c(
      {.max_entries = 100, .ticker = [&now] { return now; }});
  std::vector<std::pair<int, leftright::removal_cause>> removed;
  c.set_removal_listener([&](const int& k, const std::string&, leftright::removal_cause why) {
    removed.emplace_back(k, why);
  });
  // Another thread's put of key 1, with its own ttl, lands between the miss and the load.
  hooked_hash::hook = [&c] { std::thread([&c] { c.put(1, "put", std::chrono::seconds(10)); }).join(); };
  hooked_hash::armed_hashes = 0;
  std::vector<std::vector<int>> calls;
  const auto got = c.get_all_or_load(std::vector<int>{1, 2}, recording_loader{&calls});
  hooked_hash::armed_hashes = -1;
  hooked_hash::hook = nullptr;
  CHECK(got == entries{{1, "put"}, {2, "v2"}});
  REQUIRE(calls.size() == 1);
  CHECK(calls[0] == std::vector<int>{2});  // key 1 was found on the second look
  CHECK(removed.empty());                  // not put again over itself ("replaced")
  now += 20'000'000'000;                   // past the put's own ttl: not the default expiry
  CHECK_FALSE(c.peek(1).has_value());
  CHECK(c.peek(2) == "v2");
}

TEST_CASE("cache: a key another caller's bulk load did not find is asked of this call's own loader",
          "[cache][bulk_load]") {
  cache<int, std::string> c;
  std::atomic<bool> first_loading{false}, second_done{false};
  std::atomic<int> second_arrived{0};
  std::thread first([&] {
    const entries r = c.get_all_or_load(std::vector<int>{1}, [&](std::span<const int>) {
      first_loading.store(true);  // seq_cst: a plain flag; key 1 is claimed by now
      while (second_arrived.load() == 0) std::this_thread::yield();  // seq_cst: a plain flag
      // Give the second call the time to find key 1 in flight (it cannot finish before this
      // returns if it did; if it did not, it loads key 1 itself: the outcome is the same).
      for (int i = 0; i < 10'000 && !second_done.load(); ++i) std::this_thread::yield();  // seq_cst
      return entries{};  // another source: key 1 not found there
    });
    CHECK(r.empty());
  });
  while (!first_loading.load()) std::this_thread::yield();  // seq_cst: a plain flag
  second_arrived.store(1);  // seq_cst: a plain flag
  std::vector<std::vector<int>> calls;
  const entries got = c.get_all_or_load(std::vector<int>{1, 2}, recording_loader{&calls});
  second_done.store(true);  // seq_cst: a plain flag
  first.join();
  CHECK(got == entries{{1, "v1"}, {2, "v2"}});
  CHECK(c.peek(1) == "v1");
  std::set<int> asked;
  for (const auto& call : calls) asked.insert(call.begin(), call.end());
  CHECK(asked == std::set<int>{1, 2});
}

TEST_CASE("cache: an entry a bulk loader gives for a key another caller is loading is ignored", "[cache][bulk_load]") {
  // The second call waits for the first one's load of key 1, and its loader, asked for key 2,
  // returns key 1 too (a store that answers with all it has). That answer is from before key 1
  // was invalidated; the first load does not find key 1, so the second call asks its own loader
  // for it, which no longer has it: key 1 must stay absent, not take the answer not asked for.
  cache<int, std::string> c;
  std::latch first_loading(1), release_first(1);
  std::thread first([&] {
    const entries r = c.get_all_or_load(std::vector<int>{1}, [&](std::span<const int>) {
      first_loading.count_down();
      release_first.wait();
      return entries{};
    });
    CHECK(r.empty());
  });
  first_loading.wait();  // key 1 is claimed by the first call
  std::vector<std::vector<int>> calls;
  const entries got = c.get_all_or_load(std::vector<int>{1, 2}, [&](std::span<const int> keys) {
    calls.emplace_back(keys.begin(), keys.end());
    if (calls.size() > 1) return entries{};  // key 1 is gone from the store by now
    c.invalidate(1);  // the store's key 1 is deleted, and the cache told so
    release_first.count_down();
    return entries{{1, "stale"}, {2, "two"}};
  });
  first.join();
  CHECK(calls == std::vector<std::vector<int>>{{2}, {1}});
  CHECK(got == entries{{2, "two"}});
  CHECK_FALSE(c.peek(1).has_value());
  CHECK(c.peek(2) == "two");
}

TEST_CASE("cache: a bulk loader's with_ttl gives each entry its own expiry", "[cache][bulk_load]") {
  std::int64_t now = 1'000'000'000;
  cache<int, std::string> c({.max_entries = 100, .expire_after_write = std::chrono::seconds(100),
                             .ticker = [&now] { return now; }});
  using timed = std::vector<std::pair<int, leftright::with_ttl<std::string>>>;
  const entries got = c.get_all_or_load(std::vector<int>{1, 2, 3}, [](std::span<const int>) {
    return timed{{1, {"short", std::chrono::seconds(5)}},
                 {2, {"long", std::chrono::seconds(50)}},
                 {3, {"gone", std::chrono::seconds(0)}}};  // a ttl <= 0: returned, not kept
  });
  CHECK(got == entries{{1, "short"}, {2, "long"}, {3, "gone"}});
  CHECK(c.peek(1) == "short");
  CHECK_FALSE(c.peek(3).has_value());
  now += 10'000'000'000;  // 10 s
  CHECK_FALSE(c.peek(1).has_value());
  CHECK(c.peek(2) == "long");
  now += 60'000'000'000;  // 70 s: past 50 s, before the default 100 s
  CHECK_FALSE(c.peek(2).has_value());
}

}  // namespace LEFTRIGHT_TEST_FILE
