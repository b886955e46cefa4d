// SPDX-License-Identifier: Apache-2.0
// What publish() and try_publish() wait for, and what guards held across them see.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {
template <class Traits>
using u64_map = decltype(leftright::make_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                             std::equal_to<std::uint64_t>, Traits>());

/// The first and the last cache line that [p, p + n) touches.
std::pair<std::uintptr_t, std::uintptr_t> lines_of(const void* p, std::size_t n) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  return {a / leftright::detail::cache_line, (a + n - 1) / leftright::detail::cache_line};
}
struct some_meta {
  std::uint64_t term = 0;
};
}  // namespace

TEST_CASE("a copy's version and metadata lie on a cache line apart from its table's header", "[publish]") {
  // Every publish stores them into the copy it is about to show; on the header's line, that
  // store would make the first lookup of each reader after the swap wait for the line.
  using table = absl::flat_hash_map<std::uint64_t, std::uint64_t>;
  const auto plain = std::make_unique<leftright::detail::versioned<table>>();
  const auto header = lines_of(&plain->value, sizeof plain->value);
  CHECK(lines_of(&plain->version, sizeof plain->version).first > header.second);
  const auto with_meta = std::make_unique<leftright::detail::versioned<table, some_meta>>();
  const auto header2 = lines_of(&with_meta->value, sizeof with_meta->value);
  CHECK(lines_of(&with_meta->version, sizeof with_meta->version).first > header2.second);
  CHECK(lines_of(&with_meta->meta, sizeof with_meta->meta).first > header2.second);
}

TEMPLATE_TEST_CASE("a guard held across one publish keeps its snapshot; new reads see the new state",
                   "[publish]", lrtest::seq_cst_traits, lrtest::asymmetric_traits) {
  u64_map<TestType> m = leftright::make_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                            std::equal_to<std::uint64_t>, TestType>();
  auto& w = m.first;  // named references, not bindings: clang 14 cannot capture a binding
  auto& r = m.second;
  w.insert_or_assign(1, 100);
  w.publish();

  auto other = r.factory().make_reader();
  auto g = r.read();
  w.insert_or_assign(1, 200);
  w.insert_or_assign(2, 300);
  CHECK(w.publish() == 2);  // does not wait for g: g reads the copy it just retired

  // g is unchanged and valid.
  CHECK(g.version() == 1);
  REQUIRE(g.find(std::uint64_t{1}) != nullptr);
  CHECK(*g.find(std::uint64_t{1}) == 100);
  CHECK(g.find(std::uint64_t{2}) == nullptr);
  CHECK(g.size() == 1);
  // Another reader, existing or new, sees all of the new batch.
  CHECK(other.version() == 2);
  CHECK(other.get(1) == 200);
  CHECK(other.get(2) == 300);
  auto fresh = w.make_reader();
  CHECK(fresh.get(2) == 300);

  // A read nested inside g on the same reader sees g's snapshot (one reader, one snapshot).
  CHECK(r.version() == 1);
  CHECK(r.get(1) == 100);

  SECTION("try_publish refuses while g holds the copy it would write, and changes nothing") {
    w.insert_or_assign(3, 400);
    CHECK_FALSE(w.try_publish());
    CHECK(w.pending() == 1);
    CHECK(w.version() == 2);
    CHECK_FALSE(other.contains(3));
    CHECK(g.version() == 1);
    CHECK(*g.find(std::uint64_t{1}) == 100);

    g = std::move(g);  // self-move keeps the guard
    { auto done = std::move(g); }  // leave
    CHECK(w.try_publish());
    CHECK(w.version() == 3);
    CHECK(other.get(3) == 400);
    CHECK(r.get(3) == 400);
  }
  SECTION("a second publish waits for g, and returns once g is gone") {
    std::atomic<bool> published{false};
    std::thread t([&] {
      w.insert_or_assign(4, 500);
      w.publish();
      // [T1] release: the main thread's acquire below sees the publish completed.
      published.store(true, std::memory_order_release);
    });
    // Give the writer ample time to get stuck on g; if publish() did not wait it would be done.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // [T1] acquire: pairs with the release above.
    const bool early = published.load(std::memory_order_acquire);
    CHECK(g.find(std::uint64_t{1}) != nullptr);  // still valid, still ours
    CHECK(*g.find(std::uint64_t{1}) == 100);
    { auto done = std::move(g); }
    t.join();
    CHECK_FALSE(early);
    CHECK(other.get(4) == 500);
  }
}

TEST_CASE("try_publish succeeds when readers left or read only the current copy", "[publish]") {
  auto [w, r] = leftright::make_map<int, int>();
  CHECK(w.try_publish());  // no readers inside at all
  {
    auto g = r.read();  // inside the current read copy, not the one the writer writes next
    w.insert_or_assign(1, 1);
    CHECK(w.try_publish());
    CHECK(g.version() == 1);
    CHECK(r.factory().make_reader().get(1) == 1);
    w.insert_or_assign(2, 2);
    CHECK_FALSE(w.try_publish());  // now g is inside the copy to write
  }
  CHECK(w.try_publish());
  CHECK(r.get(2) == 2);
}

TEST_CASE("readers register and leave while the writer waits, without deadlock", "[publish]") {
  auto m = leftright::make_map<int, int>();
  auto& w = m.first;  // not a binding: the lambda below captures it (clang 14 cannot capture one)
  auto& r = m.second;
  w.insert_or_assign(1, 1);
  w.publish();
  auto g = r.read();
  w.publish();  // retires g's copy
  std::atomic<bool> published{false};
  std::thread writer([&] {
    w.publish();  // waits for g
    // [T2] release: pairs with the acquire in the main thread's check.
    published.store(true, std::memory_order_release);
  });
  // While the writer waits: register, read, copy and drop many readers on this thread and another.
  auto factory = r.factory();
  long reads = 0;
  long other_reads = 0;
  std::thread other([&] {
    for (int i = 0; i < 200; ++i) {
      auto rd = factory.make_reader();
      auto copy = rd;
      other_reads += copy.get(1).value_or(0) + rd.get(1).value_or(0);
    }
  });
  for (int i = 0; i < 200; ++i) reads += factory.make_reader().get(1).value_or(0);
  other.join();
  CHECK(reads == 200);
  CHECK(other_reads == 400);
  // [T2] acquire: pairs with the writer's release.
  CHECK_FALSE(published.load(std::memory_order_acquire));
  { auto done = std::move(g); }
  writer.join();
  CHECK(r.version() == 3);
}

TEST_CASE("slots of destroyed readers are reused", "[publish][registry]") {
  auto [w, r] = leftright::make_map<int, int>();
  const std::size_t base = w.reader_slots();
  CHECK(base == 1);
  for (int i = 0; i < 1000; ++i) {
    auto a = w.make_reader();
    auto b = a;  // a copy is a second registered reader
    CHECK(b.get(1) == std::nullopt);
    if (i % 7 == 0) w.publish();
  }
  CHECK(w.reader_slots() == base + 2);
}

TEST_CASE("sync_mode tells which barrier a map got", "[publish]") {
  auto [w1, r1] = leftright::make_map<int, int, absl::Hash<int>, std::equal_to<int>, lrtest::seq_cst_traits>();
  CHECK(w1.sync_mode() == leftright::reader_sync::seq_cst);
  CHECK(r1.sync_mode() == leftright::reader_sync::seq_cst);
  auto [w2, r2] = leftright::make_map<int, int>();
  const auto expected = leftright::detail::membarrier_available() ? leftright::reader_sync::asymmetric
                                                                  : leftright::reader_sync::seq_cst;
  CHECK(w2.sync_mode() == expected);
  CHECK(r2.sync_mode() == expected);
#if LEFTRIGHT_TSAN
  CHECK(expected == leftright::reader_sync::seq_cst);  // the barrier is invisible to TSan
#endif
}

TEST_CASE("nested guards keep the read open until the last one ends, in any order", "[publish]") {
  auto [w, r] = leftright::make_map<int, int>();
  w.insert_or_assign(1, 1);
  w.publish();
  auto outer = r.read();
  auto inner = r.read();
  auto inner2 = r.read();
  CHECK(inner.version() == 1);
  w.insert_or_assign(1, 2);
  w.publish();  // retires the copy the three guards read
  { auto gone = std::move(outer); }  // the outermost ends first ...
  w.insert_or_assign(1, 3);
  CHECK_FALSE(w.try_publish());      // ... but the nested ones still hold the read open
  { auto gone = std::move(inner); }
  CHECK_FALSE(w.try_publish());
  CHECK(*inner2.find(1) == 1);       // still the snapshot, untouched
  { auto gone = std::move(inner2); }
  CHECK(w.try_publish());            // the last one ended the read
  CHECK(r.get(1) == 3);
  auto again = r.read();             // the reader's state is clean for the next read
  CHECK(again.version() == 3);
}

TEST_CASE("move-assigning a guard ends the read it replaced and carries the other one", "[publish]") {
  auto [w, r] = leftright::make_map<int, int>();
  auto r2 = r.factory().make_reader();
  w.insert_or_assign(1, 1);
  w.publish();
  auto a = r.read();   // r's read, version 1
  auto b = r2.read();  // r2's read, version 1
  w.insert_or_assign(1, 2);
  w.publish();         // retires the copy both read
  w.insert_or_assign(1, 3);
  CHECK_FALSE(w.try_publish());
  a = std::move(b);    // r's read ends; a now holds r2's read
  CHECK_FALSE(w.try_publish());  // r2 is still inside
  CHECK(*a.find(1) == 1);
  auto c = r.read();   // r is outside again: a fresh, outermost read of the new state
  CHECK(c.version() == 2);
  { auto gone = std::move(a); }  // r2's read ends through the guard it was moved into
  CHECK(w.try_publish());
  { auto gone = std::move(c); }
  { auto moved_from = std::move(b); }  // b was moved from: destroying its move does nothing
  CHECK(r.get(1) == 3);
  CHECK(r2.get(1) == 3);
}

TEST_CASE("a publish that waits too long for a reader says which one", "[publish][stall]") {
  auto [w, r] = leftright::make_map<int, int>();
  auto other = w.make_reader();  // slot 1: the one that forgets its guard
  w.insert_or_assign(1, 1);
  w.publish();
  std::optional<decltype(other.read())> forgotten = other.read();  // sees version 1
  w.insert_or_assign(2, 2);
  REQUIRE(w.publish() == 2);  // finds slot 1 inside; never waits for it
  std::vector<leftright::reader_stall> reports;
  w.set_stall_report(std::chrono::microseconds(1), [&](const leftright::reader_stall& s) {
    reports.push_back(s);
    if (reports.size() == 3) forgotten.reset();  // the stall ends: the reader leaves
  });
  w.insert_or_assign(3, 3);
  CHECK(w.publish() == 3);  // waits for slot 1 until the third report lets it go
  REQUIRE(reports.size() == 3);
  for (const auto& s : reports) {
    CHECK(s.slot == 1);
    CHECK(s.seen_at == 2);
    CHECK(s.publishing == 3);
    CHECK(s.inside_for >= s.waited);
  }
  CHECK(reports[2].waited > reports[0].waited);
  CHECK(r.get(3) == 3);
}

TEST_CASE("a stall report that throws makes the waiting publish give up, changing nothing", "[publish][stall]") {
  auto [w, r] = leftright::make_map<int, int>();
  w.insert_or_assign(1, 1);
  w.publish();
  std::optional<decltype(r.read())> forgotten = r.read();
  w.insert_or_assign(2, 2);
  REQUIRE(w.publish() == 2);
  w.set_stall_report(std::chrono::microseconds(1),
                     [](const leftright::reader_stall&) { throw std::runtime_error("gave up"); });
  w.insert_or_assign(3, 3);
  CHECK_THROWS_WITH(w.publish(), "gave up");
  CHECK(w.pending() == 1);
  CHECK(w.version() == 2);
  CHECK_FALSE(w.poisoned());
  CHECK(forgotten->version() == 1);  // the forgotten snapshot is untouched
  forgotten.reset();
  CHECK(w.publish() == 3);
  CHECK(r.get(3) == 3);
  CHECK(r.get(2) == 2);
}

}  // namespace LEFTRIGHT_TEST_FILE
