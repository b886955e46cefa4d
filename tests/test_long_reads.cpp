// SPDX-License-Identifier: Apache-2.0
// shared_map and cache with max_reader_wait: a thread stuck inside a long read does not hold up
// other threads' writes (each group's publish goes through map_writer::publish_within()).
// Without the option those writes would wait for the reader: each test gives them a generous
// deadline (not a timing assertion: a working option finishes at once, a broken one never does
// before the reader leaves) and then lets the reader go, so a failure ends too.
#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <catch2/catch.hpp>

#include "leftright/cache.hpp"
#include "leftright/durable_map.hpp"
#include "leftright/shared_map.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using namespace std::chrono_literals;
constexpr auto patience = 60s;

/// A value whose copy, on one chosen thread, waits until released: a reader stuck in get().
struct sticky {
  static inline std::atomic<std::thread::id> stuck_thread{};
  static inline std::atomic<bool> entered{false}, released{false};
  int v = 0;
  explicit sticky(int x) : v(x) {}
  sticky(const sticky& o) : v(o.v) {
    // seq_cst throughout: test signals, few and simple.
    if (std::this_thread::get_id() == stuck_thread.load()) {
      entered.store(true);
      const auto give_up = std::chrono::steady_clock::now() + 2 * patience;
      while (!released.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    }
  }
  sticky& operator=(const sticky&) = default;
};

}  // namespace

TEST_CASE("shared_map: with max_reader_wait, writes go on while a thread holds a long read") {
  leftright::shared_map_options o;
  o.max_reader_wait = 1ms;
  o.max_held_copies = 32;
  leftright::shared_map<int, int> m(o);
  m.insert_or_assign(1, 1);
  std::future<void> writes;
  {
    auto g = m.read();  // this thread: a long read
    writes = std::async(std::launch::async, [&] {
      for (int i = 0; i < 20; ++i) m.insert_or_assign(2, i);  // the second would wait for g
    });
    // (each publish that finds g inside holds a copy for it: 20 writes, at most 19 copies)
    CHECK(writes.wait_for(patience) == std::future_status::ready);
    CHECK(g.find(2) == nullptr);  // the long read's snapshot is unchanged
    REQUIRE(g.find(1) != nullptr);
    CHECK(*g.find(1) == 1);
  }
  writes.get();
  CHECK(m.get(2) == 19);
}

TEST_CASE("cache: with max_reader_wait, puts go on while a thread is stuck inside get()") {
  leftright::cache<int, sticky> c({.max_entries = 100, .max_reader_wait = 1ms});
  c.put(1, sticky(1));
  sticky::released.store(false);  // seq_cst: test signals
  sticky::entered.store(false);
  std::thread reader([&] {
    sticky::stuck_thread.store(std::this_thread::get_id());
    (void)c.get(1);  // stuck in the copy, inside its read
  });
  while (!sticky::entered.load()) std::this_thread::yield();
  auto writes = std::async(std::launch::async, [&] {
    for (int i = 0; i < 6; ++i) c.put(2, sticky(i));  // within the 8 copies the cache may hold
  });
  CHECK(writes.wait_for(patience) == std::future_status::ready);
  sticky::released.store(true);
  reader.join();
  writes.get();
  sticky::stuck_thread.store(std::thread::id{});
  REQUIRE(c.peek(2).has_value());
  CHECK(c.peek(2)->v == 5);
}

TEST_CASE("cache: a negative max_reader_wait is refused") {
  CHECK_THROWS_AS((leftright::cache<int, int>({.max_reader_wait = -1ms})), std::invalid_argument);
}

TEST_CASE("durable_writer: publish_within logs every batch it publishes past a long read") {
  lrtest::temp_dir tmp("publish-within");
  leftright::durable_options o;
  o.path = tmp.path() / "map";
  o.durability = leftright::durability::sync;
  {
    auto [w, r] = leftright::open_map<int, int>(o);
    w.insert_or_assign(0, 0);
    w.publish();
    auto g = r.read();  // a long read: held across every publish below
    for (int i = 1; i <= 5; ++i) {
      w.insert_or_assign(i, i);
      w.publish_within(1ms);  // from the second on, publish() would wait for g forever
    }
    CHECK(w.held_copies() >= 1);
    CHECK(g.size() == 1);
  }
  auto [w, r] = leftright::open_map<int, int>(o);
  CHECK(w.version() == 6);
  for (int i = 0; i <= 5; ++i) CHECK(r.get(i) == i);
}

}  // namespace LEFTRIGHT_TEST_FILE
