// SPDX-License-Identifier: Apache-2.0
// A durable leftright::cache: what it held survives a close and a reopen (values, deadlines,
// refresh times); entries that expired while it was closed and entries beyond a smaller bound
// are removed at the open, durably; its default clock is the wall clock. Deterministic: time
// comes from a fake ticker. LEFTRIGHT_TEST_ONE_THREAD: every case runs on one thread.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "leftright/cache.hpp"
#include "support/test_support.hpp"
#include "support/cache_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using leftright::cache_options;
using leftright::durable_options;
using lrtest::fake_clock;
using namespace std::chrono_literals;
using dcache = leftright::cache<std::uint64_t, std::string>;

durable_options in(const lrtest::temp_dir& dir) {
  durable_options o;
  o.path = dir.path() / "cache";
  return o;
}

std::string value_of(std::uint64_t k) { return "value-" + std::to_string(k); }

}  // namespace

TEST_CASE("durable cache: entries, updates and invalidations survive a reopen", "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable");
  {
    dcache c(in(dir), {.max_entries = 100});
    CHECK(c.durable());
    CHECK(c.recovery().version == 0);
    for (std::uint64_t k = 0; k < 50; ++k) c.put(k, value_of(k));
    c.put(7, "seven");
    c.invalidate(3);
    c.put_all(std::vector<std::pair<std::uint64_t, std::string>>{{60, "sixty"}, {61, "sixty-one"}});
    c.invalidate_if([](const std::uint64_t& k, const std::string&) { return k >= 40 && k < 45; });
  }
  dcache c(in(dir), {.max_entries = 100});
  CHECK(c.recovery().version > 0);
  CHECK(c.size() == 46);  // 50 - 1 - 5 + 2
  CHECK(c.peek(std::uint64_t{7}) == "seven");
  CHECK_FALSE(c.peek(std::uint64_t{3}).has_value());
  CHECK_FALSE(c.peek(std::uint64_t{42}).has_value());
  CHECK(c.peek(std::uint64_t{61}) == "sixty-one");
  for (std::uint64_t k : {0, 1, 2, 4, 39, 45, 49}) CHECK(c.peek(k) == value_of(k));
  const leftright::cache_stats s = c.stats();
  CHECK(s.evictions == 0);
  CHECK(s.expirations == 0);
  // The reopened cache's writer knows every entry: it invalidates and bounds them.
  c.invalidate(0);
  CHECK_FALSE(c.peek(std::uint64_t{0}).has_value());
  CHECK(c.weighted_size() == 45);
}

TEST_CASE("durable cache: what compute puts and removes survives a reopen, deadline included", "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable-compute");
  fake_clock clock;
  const auto append = [](const char* tail) {
    return [tail](const std::string* s) { return std::optional((s != nullptr ? *s : std::string()) + tail); };
  };
  {
    dcache c(in(dir), {.max_entries = 100, .ticker = clock.ticker()});
    for (std::uint64_t k = 0; k < 5; ++k) c.put(k, value_of(k));
    CHECK(c.compute(1, append("+a")) == value_of(1) + "+a");
    CHECK(c.compute(2, [](const std::string*) { return std::optional<std::string>(); }) == std::nullopt);
    CHECK(c.compute(7, append("new"), 10s) == "new");
  }
  dcache c(in(dir), {.max_entries = 100, .ticker = clock.ticker()});
  CHECK(c.size() == 5);  // 5 - 1 + 1
  CHECK(c.peek(std::uint64_t{1}) == value_of(1) + "+a");
  CHECK_FALSE(c.peek(std::uint64_t{2}).has_value());
  CHECK(c.peek(std::uint64_t{7}) == "new");
  clock.advance(10s);
  CHECK_FALSE(c.peek(std::uint64_t{7}).has_value());  // its ttl came back with it
  CHECK(c.peek(std::uint64_t{0}) == value_of(0));
}

TEST_CASE("durable cache: deadlines mean the same after a reopen; what expired while closed is removed",
          "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable-expiry");
  fake_clock clock;
  auto options = [&] { return cache_options{.expire_after_write = 10s, .ticker = clock.ticker()}; };
  {
    dcache c(in(dir), options());
    c.put(1, "ten seconds");
    c.put(2, "a minute", 60s);
    c.put(3, "no more than 5 s", 5s);
  }
  clock.advance(6s);
  {
    dcache c(in(dir), options());
    CHECK(c.stats().expirations == 1);  // 3, at the open
    CHECK(c.size() == 2);
    CHECK(c.get(std::uint64_t{1}) == "ten seconds");
    clock.advance(5s);  // 11 s: 1 is past its deadline, whether or not the writer has run
    CHECK_FALSE(c.get(std::uint64_t{1}).has_value());
    CHECK(c.get(std::uint64_t{2}) == "a minute");
  }
  {
    dcache c(in(dir), options());
    CHECK(c.stats().expirations == 1);  // 1, at this open
    CHECK(c.size() == 1);
    c.put(4, "new");
  }
  clock.advance(60s);
  {
    dcache c(in(dir), options());
    CHECK(c.stats().expirations == 2);  // at 72 s: 2 (deadline 61 s) and 4 (put at 12 s, 22 s)
    CHECK(c.size() == 0);
  }
}

TEST_CASE("durable cache: reopened with a smaller bound, it evicts down to the bound at the open",
          "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable-bound");
  {
    dcache c(in(dir), {.max_entries = 200});
    for (std::uint64_t k = 0; k < 200; ++k) c.put(k, value_of(k));
    CHECK(c.size() == 200);
  }
  {
    dcache c(in(dir), {.max_entries = 50});
    CHECK(c.size() <= 50);
    CHECK(c.stats().evictions == 200 - c.size());
    std::size_t found = 0;
    for (std::uint64_t k = 0; k < 200; ++k) {
      if (auto v = c.peek(k)) {
        CHECK(*v == value_of(k));
        ++found;
      }
    }
    CHECK(found == c.size());
  }
  dcache c(in(dir), {.max_entries = 50});  // the evictions were durable
  CHECK(c.size() <= 50);
  CHECK(c.stats().evictions == 0);
}

TEST_CASE("durable cache: a bound by weight is rebuilt with the weigher", "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable-weight");
  auto weigher = [](const std::uint64_t&, const std::string& v) { return std::uint64_t(v.size()); };
  {
    dcache c(in(dir), {.max_weight = 1000}, weigher);
    c.put(1, std::string(100, 'a'));
    c.put(2, std::string(300, 'b'));
    CHECK(c.weighted_size() == 400);
  }
  dcache c(in(dir), {.max_weight = 1000}, weigher);
  CHECK(c.weighted_size() == 400);
  c.put(3, std::string(700, 'c'));  // 1100 > 1000: something goes
  c.run_pending();
  CHECK(c.weighted_size() <= 1000);
}

TEST_CASE("durable cache: its default clock is the wall clock, stored as such", "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable-clock");
  const auto wall = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const std::int64_t before = wall();
  {
    dcache c(in(dir), {});
    c.put(1, "an hour", 1h);
  }
  const std::int64_t after = wall();
  // The stored deadline, read through the durable map underneath (its entries' codec).
  using entry = leftright::detail::cache_entry<std::string>;
  auto [w, r] = leftright::open_map<std::uint64_t, entry>(in(dir));
  auto g = r.read();
  const entry* e = g.find(std::uint64_t{1});
  REQUIRE(e != nullptr);
  CHECK(e->value == "an hour");
  CHECK(e->expires >= before + std::chrono::nanoseconds(1h).count());
  CHECK(e->expires <= after + std::chrono::nanoseconds(1h).count());
  CHECK(e->refresh_at == entry::never);
}

TEST_CASE("durable cache: refresh times survive a reopen", "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable-refresh");
  fake_clock clock;
  auto options = [&] { return cache_options{.ticker = clock.ticker(), .refresh_after_write = 10s}; };
  {
    dcache c(in(dir), options());
    c.put(1, "old");
  }
  clock.advance(11s);
  dcache c(in(dir), options());
  int loads = 0;
  // Due: the hit returns the refreshed value (no executor: the caller refreshes).
  CHECK(c.get_or_load(1, [&](const std::uint64_t&) { ++loads; return std::string("new"); }) == "new");
  CHECK(loads == 1);
  CHECK(c.peek(std::uint64_t{1}) == "new");
}

TEST_CASE("durable cache: sync, checkpoint, and a directory it cannot open", "[cache][durable]") {
  lrtest::temp_dir dir("cache-durable-misc");
  durable_options o = in(dir);
  o.durability = leftright::durability::none;
  {
    dcache c(o, {.max_entries = 10});
    c.put(1, "one");
    c.sync();
    c.checkpoint();
    c.put(2, "two");
  }
  {
    dcache c(o, {.max_entries = 10});
    CHECK(c.recovery().snapshot_entries == 1);
    CHECK(c.size() == 2);
  }
  dcache memory({.max_entries = 10});
  CHECK_FALSE(memory.durable());
  CHECK_THROWS_WITH(memory.checkpoint(), Catch::Matchers::Contains("in-memory cache"));
  CHECK_THROWS_AS(memory.checkpoint(), std::logic_error);
  // A file where the directory should be.
  durable_options bad;
  bad.path = dir.path() / "file";
  { std::ofstream(bad.path) << "x"; }
  CHECK_THROWS_AS(dcache(bad), leftright::storage_error);
  // Bad cache options are refused before anything is opened.
  durable_options unused = in(dir);
  unused.path = dir.path() / "never";
  CHECK_THROWS_AS(dcache(unused, {.max_weight = 10}), std::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(unused.path));
}

}  // namespace LEFTRIGHT_TEST_FILE
