// SPDX-License-Identifier: Apache-2.0
// Batched reads: find_many, contains_many and get_many give what find, contains and get give,
// key by key, from one snapshot for the whole call.
#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

/// A value too large to be stored inline (the shared layout).
struct wide {
  std::array<std::uint64_t, 12> words{};
  explicit wide(std::uint64_t x = 0) { words.fill(x); }
  bool operator==(const wide&) const = default;
};

template <class V>
V value_of(std::uint64_t x) {
  return V(x);
}

}  // namespace

TEMPLATE_TEST_CASE("find_many, find_each and get_many agree with find and get, key by key", "[find_many]", std::uint64_t,
                   wide) {
  using V = TestType;
  // A small table, read key by key, and one large enough for the batched calls to prefetch.
  const std::uint64_t span = GENERATE(std::uint64_t{2000}, 4 * std::uint64_t{leftright::detail::prefetch_min_entries});
  INFO("keys 0 to " << span << ", every other one present");
  auto [w, r] = leftright::make_map<std::uint64_t, V>();
  STATIC_REQUIRE(decltype(w)::shares_values == std::is_same_v<V, wide>);
  std::mt19937_64 rng(20261203);
  for (std::uint64_t k = 0; k < span; k += 2) w.insert_or_assign(k, value_of<V>(k * 7));
  w.publish();

  for (const std::size_t n : {0, 1, 3, 16, 64, 257}) {
    INFO("batch of " << n);
    std::vector<std::uint64_t> keys(n);
    for (auto& k : keys) k = rng() % (span + span / 5);    // hits, misses (odd, and past span)
    if (n > 2) keys[n - 1] = keys[0];                      // a repeat
    std::vector<const V*> found(n, reinterpret_cast<const V*>(&rng));  // garbage, overwritten
    std::vector<std::optional<V>> got(n, value_of<V>(999));           // stale, overwritten
    std::array<bool, 300> present{};
    const auto g = r.read();
    g.find_many(keys, found);
    const std::size_t hits = r.get_many(keys, got);
    const std::size_t also = g.contains_many(keys, std::span<bool>(present.data(), n));
    std::vector<const V*> each(n, reinterpret_cast<const V*>(&rng));
    std::vector<std::size_t> order;
    g.find_each(keys, [&](std::size_t i, const V* v) {
      order.push_back(i);
      each[i] = v;
    });
    CHECK(order.size() == n);  // each index once, in order
    for (std::size_t i = 0; i < order.size(); ++i) CHECK(order[i] == i);
    std::size_t expect_hits = 0;
    for (std::size_t i = 0; i < n; ++i) {
      INFO("key " << keys[i]);
      CHECK(found[i] == g.find(keys[i]));
      CHECK(each[i] == g.find(keys[i]));
      CHECK(got[i] == r.get(keys[i]));
      CHECK(present[i] == g.contains(keys[i]));
      expect_hits += g.contains(keys[i]) ? 1 : 0;
    }
    CHECK(hits == expect_hits);
    CHECK(also == expect_hits);
  }
}

namespace {
/// A value whose copy throws for 13 while armed (the writer copies it too, before the test arms
/// it); its move does not throw, so it stays in the inline layout. One thread.
struct copy_throws {
  static inline bool armed = false;
  int x = 0;
  explicit copy_throws(int v) : x(v) {}
  copy_throws(const copy_throws& o) : x(o.x) {
    if (armed && x == 13) throw std::runtime_error("copy of 13");
  }
  copy_throws(copy_throws&&) noexcept = default;
  copy_throws& operator=(const copy_throws& o) {
    if (armed && o.x == 13) throw std::runtime_error("copy of 13");
    x = o.x;
    return *this;
  }
  copy_throws& operator=(copy_throws&&) noexcept = default;
  bool operator==(const copy_throws&) const = default;
};
}  // namespace

TEST_CASE("get_many whose copy throws leaves what it copied before, and the rest untouched", "[find_many]") {
  auto [w, r] = leftright::make_map<int, copy_throws>();
  for (int k : {1, 2, 13, 4}) w.insert_or_assign(k, copy_throws(k));
  w.publish();
  const std::array<int, 5> keys{1, 7, 13, 2, 4};  // a miss before the throwing copy
  std::array<std::optional<copy_throws>, 5> out;
  for (auto& o : out) o.emplace(-1);
  copy_throws::armed = true;
  CHECK_THROWS_WITH(r.get_many(std::span<const int>(keys), std::span<std::optional<copy_throws>>(out)), "copy of 13");
  copy_throws::armed = false;
  CHECK(out[0] == copy_throws(1));
  CHECK_FALSE(out[1].has_value());
  CHECK(out[3] == copy_throws(-1));
  CHECK(out[4] == copy_throws(-1));
  // The reader is unharmed: the guard of the failed call has ended.
  const std::array<int, 2> again{4, 1};
  std::array<std::optional<copy_throws>, 2> out2;
  CHECK(r.get_many(std::span<const int>(again), std::span<std::optional<copy_throws>>(out2)) == 2);
  CHECK(out2[0] == copy_throws(4));
  CHECK(out2[1] == copy_throws(1));
}

TEST_CASE("batched reads check their spans and take heterogeneous keys", "[find_many]") {
  auto [w, r] = leftright::make_map<std::string, int>();
  w.insert_or_assign("a", 1);
  w.insert_or_assign("b", 2);
  w.publish();
  const std::vector<std::string_view> keys = {"b", "zz", "a"};
  std::vector<std::optional<int>> out(3);
  CHECK(r.get_many(keys, out) == 2);
  CHECK(out == std::vector<std::optional<int>>{2, std::nullopt, 1});

  std::vector<std::optional<int>> short_out(2, 7);
  CHECK_THROWS_AS(r.get_many(keys, short_out), std::invalid_argument);
  CHECK(short_out == std::vector<std::optional<int>>{7, 7});  // nothing written
  const auto g = r.read();
  std::vector<const int*> ptrs(4);
  CHECK_THROWS_WITH(g.find_many(keys, ptrs),
                    Catch::Contains("find_many") && Catch::Contains("must equal keys.size()"));
  // The span form, as declared, with K named.
  std::vector<const int*> three(3);
  g.find_many<std::string_view>(keys, three);
  CHECK(*three[0] == 2);
  CHECK(three[1] == nullptr);
  // Empty spans: nothing to do, nothing thrown.
  CHECK(r.get_many(std::vector<std::string>{}, std::span<std::optional<int>>{}) == 0);
  int calls = 0;
  g.find_each(std::vector<std::string>{}, [&](std::size_t, const int*) { ++calls; });
  CHECK(calls == 0);
  // find_each with heterogeneous keys; an exception from f ends the call there.
  std::vector<const int*> seen;
  g.find_each(keys, [&](std::size_t, const int* v) { seen.push_back(v); });
  CHECK(seen == std::vector<const int*>{g.find("b"), nullptr, g.find("a")});
  seen.clear();
  CHECK_THROWS_AS(g.find_each(keys,
                              [&](std::size_t i, const int* v) {
                                if (i == 1) throw std::runtime_error("stop");
                                seen.push_back(v);
                              }),
                  std::runtime_error);
  CHECK(seen.size() == 1);
}

TEST_CASE("a batched read sees one snapshot while the writer publishes", "[find_many][stress]") {
  // Every batch sets all keys to one value (its version): a call that mixed two snapshots
  // would see two values.
  constexpr std::uint64_t keys_n = 256;
  constexpr int publishes = 300;
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t>();
  for (std::uint64_t k = 0; k < keys_n; ++k) w.insert_or_assign(k, 0);
  w.publish();
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, calls{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, rd = w.make_reader()] {
      std::vector<std::uint64_t> keys(keys_n);
      for (std::uint64_t k = 0; k < keys_n; ++k) keys[k] = (k * 37) % keys_n;
      std::vector<std::optional<std::uint64_t>> out(keys_n);
      // [T1] relaxed: a stop flag and counters, read after join(). At least one call each.
      do {
        rd.get_many(keys, out);
        for (const auto& v : out) {
          if (!v || *v != *out[0]) torn.fetch_add(1, std::memory_order_relaxed);  // [T1]
        }
        const auto g = rd.read();
        std::optional<std::uint64_t> first;
        g.find_each(keys, [&](std::size_t, const std::uint64_t* v) {
          if (!first && v) first = *v;
          if (!v || *v != *first) torn.fetch_add(1, std::memory_order_relaxed);  // [T1]
        });
        calls.fetch_add(1, std::memory_order_relaxed);  // [T1]
      } while (!done.load(std::memory_order_relaxed));  // [T1]
    });
  }
  for (int p = 0; p < publishes; ++p) {
    for (std::uint64_t k = 0; k < keys_n; ++k) w.insert_or_assign(k, w.version() + 1);
    w.publish();
  }
  done.store(true, std::memory_order_relaxed);  // [T1]
  for (auto& t : readers) t.join();
  CHECK(torn.load() == 0);
  CHECK(calls.load() >= 2);
}

}  // namespace LEFTRIGHT_TEST_FILE
