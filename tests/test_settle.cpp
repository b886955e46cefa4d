// SPDX-License-Identifier: Apache-2.0
// map_writer::try_settle(): readers go back to the copy they read before the last publish, with
// the same version and entries, and only when no reader is left in that copy.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {
using lrtest::make_u64_map;
/// Where a read starting now finds key's value: which copy readers are on (u64 values are
/// stored inline, once per copy).
template <class Reader>
const std::uint64_t* where(const Reader& r, std::uint64_t key) {
  return r.read().find(key);
}
}  // namespace

TEMPLATE_TEST_CASE("try_settle moves readers back to the copy they read before the publish", "[settle]",
                   lrtest::seq_cst_traits, lrtest::asymmetric_traits, leftright::default_traits) {
  auto [w, r] = make_u64_map<TestType>();
  for (std::uint64_t k = 0; k < 100; ++k) w.insert_or_assign(k, k);
  w.publish();
  CHECK(w.try_settle());  // delivers the batch to the other copy, and readers go there
  const std::uint64_t* before = where(r, 7);
  const std::uint64_t v1 = w.version();

  w.insert_or_assign(7, 700);
  w.insert_or_assign(200, 2);
  const std::uint64_t v2 = w.publish();
  CHECK(v2 == v1 + 1);
  const std::uint64_t* published = where(r, 7);
  CHECK(published != before);  // the publish moved readers to the other copy
  CHECK(*published == 700);

  REQUIRE(w.try_settle());
  CHECK(where(r, 7) == before);  // back on the first copy, which now has the batch
  CHECK(r.get(7) == 700);
  CHECK(r.get(200) == 2);
  CHECK(r.size() == 101);
  CHECK(r.version() == v2);
  CHECK(w.version() == v2);
  CHECK_FALSE(w.try_settle());  // nothing published since

  // The next publish goes on as usual: readers to the other copy, which still owes nothing.
  w.erase(std::uint64_t{7});
  CHECK(w.publish() == v2 + 1);
  CHECK(r.get(7) == std::nullopt);
  CHECK(r.size() == 100);
  REQUIRE(w.try_settle());
  CHECK(r.get(7) == std::nullopt);
  CHECK(r.get(200) == 2);
}

TEMPLATE_TEST_CASE("try_settle refuses while a reader is still in the copy it would write", "[settle]",
                   lrtest::seq_cst_traits, lrtest::asymmetric_traits) {
  auto [w, r] = make_u64_map<TestType>();
  w.insert_or_assign(1, 10);
  w.publish();
  (void)w.try_settle();
  auto other = w.make_reader();
  auto g = other.read();  // in the copy the next publish retires
  w.insert_or_assign(1, 11);
  const std::uint64_t v = w.publish();
  CHECK_FALSE(w.try_settle());
  CHECK(*g.find(std::uint64_t{1}) == 10);  // untouched
  CHECK(r.get(1) == 11);
  CHECK(r.version() == v);
  { auto done = std::move(g); }
  CHECK(w.try_settle());
  CHECK(r.get(1) == 11);
  CHECK(other.get(1) == 11);
  CHECK(r.version() == v);
}

TEMPLATE_TEST_CASE("try_settle publishes nothing that is queued", "[settle]", lrtest::seq_cst_traits,
                   lrtest::asymmetric_traits) {
  auto [w, r] = make_u64_map<TestType>();
  w.insert_or_assign(1, 1);
  const std::uint64_t v = w.publish();
  w.insert_or_assign(2, 2);
  w.erase(std::uint64_t{1});
  REQUIRE(w.try_settle());
  CHECK(w.pending() == 2);
  CHECK(r.get(1) == 1);
  CHECK(r.get(2) == std::nullopt);
  CHECK(r.version() == v);
  CHECK(w.find(std::uint64_t{2}) != nullptr);  // the writer still reads its own queued writes
  CHECK(w.publish() == v + 1);
  CHECK(r.get(1) == std::nullopt);
  CHECK(r.get(2) == 2);
  // Settling twice in a row between publishes, and publishing right after: the copies stay
  // equal (these traits compare them at every publish).
  for (std::uint64_t i = 0; i < 50; ++i) {
    w.insert_or_assign(i % 7, i);
    if (i % 3 == 0) w.erase(i % 5);
    w.publish();
    if (i % 2 == 0) CHECK(w.try_settle());
  }
  CHECK(r.get(6) == 48);
}

// On a table of prefetch_min_entries or more, a batch too small for the writer's prefetching
// ahead has its keys' lines prefetched in both copies before it is applied (the read copy's
// for the replay it gets at the next settle or publish). The prefetch reads the read copy's
// table while readers use it: a reader thread checks a pair of keys every batch writes
// together, and both copies are compared with the model at every publish (these traits).
TEMPLATE_TEST_CASE("small batches on a large table: the prefetching writer keeps both copies right", "[settle]",
                   lrtest::seq_cst_traits, lrtest::asymmetric_traits) {
  constexpr std::uint64_t n = 2 * leftright::detail::prefetch_min_entries;
  auto [w, r] = make_u64_map<TestType>();
  absl::flat_hash_map<std::uint64_t, std::uint64_t> model;
  for (std::uint64_t k = 0; k < n; ++k) {
    w.insert_or_assign(k, 0);
    model[k] = 0;
  }
  w.publish();
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> torn{0};
  std::thread reader([&done, &torn, rr = w.make_reader()] {
    // [T1] relaxed: a stop flag; the join orders what the reader found.
    for (std::uint64_t i = 0; !done.load(std::memory_order_relaxed); ++i) {
      const auto g = rr.read();
      const std::uint64_t k = (i * 7919) % (n / 2);
      const std::uint64_t* a = g.find(k);
      const std::uint64_t* b = g.find(k + n / 2);
      if (a == nullptr || b == nullptr || *a != *b) torn.fetch_add(1, std::memory_order_relaxed);  // [T1]
    }
  });
  std::mt19937_64 rng(7);
  for (std::uint64_t v = 1; v <= 400; ++v) {
    const std::size_t ops = 1 + rng() % 4;
    for (std::size_t j = 0; j < ops; ++j) {
      const std::uint64_t k = rng() % (n / 2);
      w.insert_or_assign(k, v);  // the pair the reader checks, in one batch
      w.insert_or_assign(k + n / 2, v);
      model[k] = model[k + n / 2] = v;
      const std::uint64_t extra = n + rng() % 64;  // keys outside the pairs: inserted and erased
      if (rng() % 2 == 0) {
        w.insert(extra, v);
        model.try_emplace(extra, v);
      } else {
        w.erase(extra);
        model.erase(extra);
      }
    }
    w.publish();
    if (v % 3 != 0) (void)w.try_settle();  // a settle may find the reader inside: then the next publish replays
  }
  done.store(true, std::memory_order_relaxed);  // [T1]
  reader.join();
  CHECK(torn.load(std::memory_order_relaxed) == 0);  // [T1]
  w.publish();  // both copies have every batch now; the traits compared them at every publish
  const auto g = r.read();
  CHECK(g.size() == model.size());
  for (const auto& [k, v] : model) {
    const std::uint64_t* got = g.find(k);
    REQUIRE(got != nullptr);
    CHECK(*got == v);
  }
}

TEST_CASE("a durable map's settle logs nothing: reopened, it holds what was published", "[settle]") {
  lrtest::temp_dir dir("settle");
  leftright::durable_options o;
  o.path = dir.path();
  std::uint64_t v = 0;
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    w.insert_or_assign(1, 10);
    w.insert_or_assign(2, 20);
    v = w.publish();
    CHECK(w.try_settle());
    CHECK(r.get(1) == 10);
    CHECK(r.version() == v);
    w.insert_or_assign(1, 11);
    CHECK(w.publish() == v + 1);
    CHECK(w.try_settle());
  }
  auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
  CHECK(w.version() == v + 1);
  CHECK(r.get(1) == 11);
  CHECK(r.get(2) == 20);
}

}  // namespace LEFTRIGHT_TEST_FILE
