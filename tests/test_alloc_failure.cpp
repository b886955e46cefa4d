// SPDX-License-Identifier: Apache-2.0
// Allocation failures during publish(): a publish that cannot allocate (a table's growth, a
// value's copy, a reserve too large for memory) fails with the strong guarantee and never
// crashes; a size no table can describe is std::length_error, not an abort inside Abseil.
// This executable replaces the global operator new so that a test can make the Nth allocation
// from now fail, or every allocation above a size; the failure is thrown before malloc is
// asked, so sanitizers' allocators never see a request they would report.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>
#include <leftright/map.hpp>
#include <leftright/shared_map.hpp>

#include "support/test_support.hpp"

// ---- Failing allocation, on demand. -----------------------------------------------------------
// Thread-local: only the test's own thread is made to fail (the durable map's other threads and
// the test framework's are left alone).
namespace {
thread_local long fail_countdown = 0;  ///< > 0: the allocation that brings it to 0 fails
thread_local bool fail_sticky = false;  ///< once one allocation failed, fail every later one
thread_local bool failing = false;      ///< set when an allocation failed (for fail_sticky)
thread_local std::size_t fail_above = std::numeric_limits<std::size_t>::max();
thread_local long failures = 0;  ///< allocations refused so far

bool refuse(std::size_t n) noexcept {
  if (n > fail_above || (failing && fail_sticky)) return true;
  if (fail_countdown > 0 && --fail_countdown == 0) {
    failing = true;
    return true;
  }
  return false;
}
}  // namespace

// Every non-aligned form is replaced, so that each allocation and its release go through the
// same pair (sanitizers check that new/delete pairs match). noinline: see test_codec.cpp.
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (refuse(n)) {
    ++failures;
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) { return ::operator new(n); }
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (refuse(n)) {
    ++failures;
    return nullptr;
  }
  return std::malloc(n == 0 ? 1 : n);
}
[[gnu::noinline]] void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept {
  return ::operator new(n, t);
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

/// While alive: the nth allocation from now fails (n >= 1), and with sticky every one after it.
struct fail_nth {
  explicit fail_nth(long n, bool sticky = false) {
    failures = 0;
    failing = false;
    fail_sticky = sticky;
    fail_countdown = n;
  }
  fail_nth(const fail_nth&) = delete;
  fail_nth& operator=(const fail_nth&) = delete;
  ~fail_nth() {
    fail_countdown = 0;
    fail_sticky = false;
    failing = false;
  }
  /// Whether the chosen allocation came (and failed).
  bool fired() const noexcept { return failing; }
};

/// While alive: every allocation larger than `bytes` fails.
struct fail_above_bytes {
  explicit fail_above_bytes(std::size_t bytes) { fail_above = bytes; }
  fail_above_bytes(const fail_above_bytes&) = delete;
  fail_above_bytes& operator=(const fail_above_bytes&) = delete;
  ~fail_above_bytes() { fail_above = std::numeric_limits<std::size_t>::max(); }
};

using key = std::uint64_t;

/// A value over a cache line (the shared layout) that owns heap memory, as a string does.
struct big {
  std::string s;
  char pad[64] = {};
  big() = default;
  big(std::string x) : s(std::move(x)) {}  // NOLINT: implicit, as the string it holds
  bool operator==(const big& o) const { return s == o.s; }
};

}  // namespace

template <>
struct leftright::codec<big> {
  static std::string name() { return "big/1"; }
  static void encode(const big& v, leftright::byte_writer& w) { leftright::encode(v.s, w); }
  static big decode(leftright::byte_reader& r) { return big(leftright::decode<std::string>(r)); }
};

namespace {

/// Copies compared at every publish: a copy the repair got wrong fails the next publish.
using traits = lrtest::seq_cst_traits;

template <class Value>
using writer_of = leftright::map_writer<key, Value, absl::Hash<key>, std::equal_to<key>, traits>;
template <class Value>
using reader_of = leftright::map_reader<key, Value, absl::Hash<key>, std::equal_to<key>, traits>;

static_assert(!writer_of<std::string>::shares_values, "std::string values are stored inline");
static_assert(writer_of<big>::shares_values, "big values are stored in shared nodes");

using state = std::map<key, std::string>;

std::string text_of(const std::string& v) { return v; }
std::string text_of(const big& v) { return v.s; }

template <class Reader>
state contents(const Reader& r) {
  state s;
  for (const auto& [k, v] : r.read()) s.emplace(k, text_of(v));
  return s;
}

/// A value long enough to live on the heap (a string's copy allocates).
std::string value_for(key k, int round) {
  return "value " + std::to_string(k) + " of round " + std::to_string(round) + ", on the heap";
}

/// The published state every test starts from: keys 0..19, published once (so that the next
/// publish first replays it into the other copy).
template <class Writer>
state publish_initial(Writer& w) {
  state s;
  for (key k = 0; k < 20; ++k) {
    s[k] = value_for(k, 0);
    w.insert_or_assign(k, value_for(k, 0));
  }
  w.publish();
  return s;
}

/// A batch that makes the tables grow several times, with overwrites, erases and an insert of
/// a present key (no effect). Returns the state once it is published.
template <class Writer>
state queue_growth_batch(Writer& w, state s, key new_keys) {
  for (key k = 100; k < 100 + new_keys; ++k) {
    s[k] = value_for(k, 1);
    w.insert_or_assign(k, value_for(k, 1));
  }
  for (key k = 0; k < 5; ++k) {
    s[k] = value_for(k, 2);
    w.insert_or_assign(k, value_for(k, 2));
  }
  for (key k = 5; k < 10; ++k) {
    s.erase(k);
    w.erase(k);
  }
  w.insert(10, value_for(10, 3));
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("a size no table can hold is std::length_error, before it reaches Abseil", "[alloc]",
                   std::string, big) {
  auto [w, r] = leftright::make_map<key, TestType, absl::Hash<key>, std::equal_to<key>, traits>();
  w.insert_or_assign(1, TestType(value_for(1, 0)));
  CHECK_THROWS_AS(w.reserve(std::size_t{1} << 62), std::length_error);
  CHECK_THROWS_AS(w.reserve(std::numeric_limits<std::size_t>::max()), std::length_error);
  CHECK(w.pending() == 1);  // the reserve queued nothing
  CHECK(w.publish() == 1);
  CHECK(r.size() == 1);

  const auto make_huge = [] {
    return leftright::make_map<key, TestType, absl::Hash<key>, std::equal_to<key>, traits>(std::size_t{1} << 62);
  };
  CHECK_THROWS_AS(make_huge(), std::length_error);
}

TEST_CASE("the tables we ask Abseil for are within its limits and grow as it would", "[alloc]") {
  using inline_table = absl::flat_hash_map<key, std::string>;
  using pointer_set = absl::flat_hash_set<void*>;
  namespace d = leftright::detail;
  CHECK(d::max_entries<inline_table>() <= inline_table().max_size());
  CHECK(d::max_entries<pointer_set>() <= pointer_set().max_size());
  CHECK(d::capacity_for<inline_table>(d::max_entries<inline_table>()) == d::max_capacity<inline_table>());
  CHECK(d::capacity_for<inline_table>(0) == 0);
  CHECK(d::capacity_for<inline_table>(1) == d::min_capacity);
  for (std::size_t n : {std::size_t{1}, std::size_t{22}, std::size_t{23}, std::size_t{1000}, std::size_t{1} << 20}) {
    const std::size_t cap = d::capacity_for<inline_table>(n);
    CHECK(d::room_limit(cap) >= n);
    CHECK(d::room_limit(cap / 2) < n);  // the smallest such capacity
  }
  // A full table grows to twice its slots, as Abseil grows (not four times: a 1M map would
  // take 4M slots).
  for (std::size_t cap = 0; cap < (std::size_t{1} << 24); cap = cap * 2 + 1) {
    const std::size_t size = d::room_limit(cap);
    CHECK(d::capacity_for<inline_table>(d::growth_target(size, cap)) == std::max(d::min_capacity, cap * 2 + 1));
  }
}

TEMPLATE_TEST_CASE("a reserve too large for memory fails the publish, with the strong guarantee", "[alloc]",
                   std::string, big) {
  auto [w, r] = leftright::make_map<key, TestType, absl::Hash<key>, std::equal_to<key>, traits>();
  const state published = publish_initial(w);
  w.insert_or_assign(500, TestType(value_for(500, 1)));
  w.reserve(std::size_t{1} << 40);  // some 16 TiB of table
  w.insert_or_assign(501, TestType(value_for(501, 1)));
  {
    const fail_above_bytes limit(std::size_t{1} << 30);
    CHECK_THROWS_AS(w.publish(), std::bad_alloc);
  }
  CHECK_FALSE(w.poisoned());
  CHECK(w.pending() == 3);
  CHECK(w.version() == 1);
  CHECK(r.version() == 1);
  CHECK(contents(r) == published);

  // The same batch fails again; without it the writer goes on (and replays onto the repaired
  // copy, which the every-publish copy check compares).
  {
    const fail_above_bytes limit(std::size_t{1} << 30);
    CHECK_THROWS_AS(w.publish(), std::bad_alloc);
  }
  w.discard();
  w.insert_or_assign(502, TestType(value_for(502, 1)));
  CHECK(w.publish() == 2);
  CHECK(w.publish() == 3);
  state want = published;
  want[502] = value_for(502, 1);
  CHECK(contents(r) == want);
}

TEMPLATE_TEST_CASE("a publish that fails at any of its allocations publishes nothing; a retry publishes all",
                   "[alloc]", std::string, big) {
  long failed_publishes = 0;
  for (long k = 1;; ++k) {
    INFO("failing allocation " << k);
    auto [w, r] = leftright::make_map<key, TestType, absl::Hash<key>, std::equal_to<key>, traits>();
    const state published = publish_initial(w);
    const state want = queue_growth_batch(w, published, 200);
    const std::size_t queued = w.pending();

    bool threw = false;
    bool fired = false;
    {
      const fail_nth fail(k);
      try {
        w.publish();
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      fired = fail.fired();
    }
    if (!fired) {
      // Every allocation of the publish has been made to fail once: this one had no k-th.
      CHECK_FALSE(threw);
      CHECK(contents(r) == want);
      break;
    }
    REQUIRE(threw);  // a failed allocation is never swallowed into a wrong state
    ++failed_publishes;
    // Nothing published, the batch queued, the writer usable.
    REQUIRE_FALSE(w.poisoned());
    REQUIRE(w.pending() == queued);
    REQUIRE(w.version() == 1);
    REQUIRE(r.version() == 1);
    REQUIRE(contents(r) == published);
    // A retry publishes the whole batch; the publish after it replays it onto the repaired
    // copy, and the copy check (every publish) compares the two.
    REQUIRE(w.publish() == 2);
    REQUIRE(contents(r) == want);
    REQUIRE(w.publish() == 3);
    REQUIRE(contents(r) == want);
  }
  // The value copies alone are 200 allocations.
  CHECK(failed_publishes > 200);
}

TEMPLATE_TEST_CASE("a repair that cannot allocate poisons the writer; readers keep the last published state",
                   "[alloc]", std::string, big) {
  // Fail at a point in the new batch (after the replay), and from there on everything: the
  // repair's copy fails too.
  auto [w, r] = leftright::make_map<key, TestType, absl::Hash<key>, std::equal_to<key>, traits>();
  const state published = publish_initial(w);
  queue_growth_batch(w, published, 200);
  bool threw = false;
  {
    const fail_nth fail(50, /*sticky=*/true);  // no assertion inside: Catch2 allocates too
    try {
      w.publish();
    } catch (const std::bad_alloc&) {
      threw = true;
    }
  }
  CHECK(threw);
  CHECK(w.poisoned());
  CHECK_THROWS_AS(w.publish(), std::logic_error);
  CHECK(r.version() == 1);
  CHECK(contents(r) == published);
  CHECK(contents(w.make_reader()) == published);
}

namespace {

leftright::durable_options durable_at(const std::filesystem::path& dir) {
  leftright::durable_options o;
  o.path = dir / "map";
  o.durability = leftright::durability::sync;
  o.segment_size = std::size_t{1} << 20;  // the test's batches never roll to a new segment
  return o;
}

template <class Value>
auto open_durable(const std::filesystem::path& dir) {
  return leftright::open_map<key, Value, absl::Hash<key>, std::equal_to<key>, traits>(durable_at(dir));
}

}  // namespace

TEMPLATE_TEST_CASE("durable, sync: a publish that cannot allocate leaves the writer usable and the log without it",
                   "[alloc][durable]", std::string, big) {
  long failed_publishes = 0;
  for (long k = 1;; ++k) {
    INFO("failing allocation " << k);
    lrtest::temp_dir dir("alloc");
    state published, want;
    std::size_t queued = 0;
    bool fired = false;
    {
      auto m = open_durable<TestType>(dir.path());
      auto& w = m.first;
      published = publish_initial(w);
      want = queue_growth_batch(w, published, 60);
      queued = w.pending();
      bool threw = false;
      {
        const fail_nth fail(k);
        try {
          w.publish();
        } catch (const std::bad_alloc&) {
          threw = true;
        }
        fired = fail.fired();
      }
      if (!fired) {
        CHECK_FALSE(threw);
        CHECK(contents(m.second) == want);
        break;
      }
      REQUIRE(threw);
      ++failed_publishes;
      REQUIRE_FALSE(w.failed());
      REQUIRE(w.pending() == queued);
      REQUIRE(m.second.version() == 1);
      REQUIRE(contents(m.second) == published);
      if (k % 2 == 0) {
        // Retried: the batch lands as version 2, where the failed one would have.
        REQUIRE(w.publish() == 2);
        REQUIRE(contents(m.second) == want);
      } else {
        w.discard();
      }
    }
    // Reopened: the log holds the initial batch, and the retried one if it was retried.
    auto m = open_durable<TestType>(dir.path());
    if (k % 2 == 0) {
      REQUIRE(m.second.version() == 2);
      REQUIRE(contents(m.second) == want);
    } else {
      REQUIRE(m.second.version() == 1);
      REQUIRE(contents(m.second) == published);
    }
  }
  CHECK(failed_publishes > 60);
}

TEST_CASE("shared_map: a post or a write that fails at any of its allocations leaves the map writable",
          "[alloc][shared_map]") {
  leftright::shared_map<int, std::string> m;
  m.insert_or_assign(0, "zero");
  long failed = 0;
  for (long k = 1;; ++k) {
    INFO("failing allocation " << k);
    const int posted_key = static_cast<int>(1000 + k);
    bool post_threw = false;
    bool write_threw = false;
    bool fired = false;
    {
      const fail_nth fail(k);
      try {  // no combiner runs: this thread combines its own group
        m.post([posted_key](auto& b) { b.insert_or_assign(posted_key, std::string(40, 'p')); });
      } catch (const std::bad_alloc&) {
        post_threw = true;
      }
      try {
        m.update([k](auto& b) {
          b.insert_or_assign(static_cast<int>(k), std::string(40, 'w'));
          b.erase(static_cast<int>(k) - 1);
        });
      } catch (const std::bad_alloc&) {
        write_threw = true;
      }
      fired = fail.fired();
    }
    bool post_failed = post_threw;
    try {  // a posted batch that failed when applied is reported here
      m.sync();
    } catch (const std::bad_alloc&) {
      post_failed = true;
    }
    // Not wedged: a write and a sync complete, and each call took effect exactly when it did
    // not fail.
    REQUIRE(m.insert_or_assign(-1, "probe") > 0);
    REQUIRE_NOTHROW(m.sync());
    CHECK(m.contains(posted_key) == !post_failed);
    CHECK(m.contains(static_cast<int>(k)) == !write_threw);
    if (!fired) {
      CHECK_FALSE(post_failed);
      CHECK_FALSE(write_threw);
      break;
    }
    failed += post_failed || write_threw ? 1 : 0;
  }
  CHECK(failed > 3);
}
