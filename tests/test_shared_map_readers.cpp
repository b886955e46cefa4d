// SPDX-License-Identifier: Apache-2.0
// shared_map's per-thread readers: made on a thread's first read, released when the thread exits
// or when the map dies, whichever comes first, with no leak and no use after free either way.
#include <atomic>
#include <cstdint>
#include <latch>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using imap = leftright::shared_map<int, int>;
using cmap = leftright::shared_map<int, lrtest::counted>;

}  // namespace

TEST_CASE("shared_map readers: a thread's reader is released when the thread exits", "[shared_map][readers]") {
  imap m;
  m.insert_or_assign(1, 10);
  CHECK(m.live_readers() == 0);
  std::optional<int> seen;
  std::thread([&] { seen = m.get(1); }).join();
  CHECK(seen == std::optional<int>(10));
  CHECK(m.live_readers() == 0);
  CHECK(m.reader_slots() == 1);
  CHECK(m.get(1) == std::optional<int>(10));  // this thread's own, alive until it exits
  CHECK(m.live_readers() == 1);
}

TEST_CASE("shared_map readers: 10,000 short-lived threads leave the slots bounded by those alive at once",
          "[shared_map][readers]") {
  constexpr int waves = 2500, per_wave = 4;
  imap m;
  m.insert_or_assign(7, 70);
  std::atomic<int> wrong{0};
  for (int w = 0; w < waves; ++w) {
    std::vector<std::thread> ts;
    for (int i = 0; i < per_wave; ++i) {
      ts.emplace_back([&] {
        if (m.get(7) != std::optional<int>(70)) wrong.fetch_add(1);
      });
    }
    for (auto& t : ts) t.join();
  }
  CHECK(wrong.load() == 0);
  CHECK(m.live_readers() == 0);
  CHECK(m.reader_slots() <= std::size_t(per_wave));
}

TEST_CASE("shared_map readers: the map may die before the threads that read it", "[shared_map][readers]") {
  REQUIRE(lrtest::counted::live == 0);
  constexpr int threads = 4;
  auto m = std::make_unique<cmap>();
  m->insert_or_assign(1, lrtest::counted(1));
  auto other = std::make_unique<imap>();  // a second map the threads read, alive throughout
  other->insert_or_assign(2, 20);
  std::latch read(threads), map_gone(1);
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) {
    ts.emplace_back([&] {
      if (m->get(1).value().v != 1) wrong.fetch_add(1);
      if (other->get(2) != std::optional<int>(20)) wrong.fetch_add(1);
      read.count_down();
      map_gone.wait();
      // The thread reads another map after the first died: its table must not touch the dead one.
      if (other->get(2) != std::optional<int>(20)) wrong.fetch_add(1);
      // At exit its table releases the reader of `other` and finds m's home closed.
    });
  }
  read.wait();
  CHECK(m->live_readers() == std::size_t(threads));
  m.reset();  // does not wait for the threads, which are still alive
  map_gone.count_down();
  for (auto& t : ts) t.join();
  CHECK(wrong.load() == 0);
  CHECK(lrtest::counted::live == 0);
  CHECK(other->live_readers() == 0);
}

TEST_CASE("shared_map readers: a map made where another died is read as itself by a thread that read the other",
          "[shared_map][readers]") {
  // The thread's one-entry cache is keyed by an address inside the map: the dead map must have
  // cleared it, or the thread would read the new map through the dead one's (freed) reader.
  alignas(imap) unsigned char storage[sizeof(imap)];
  imap* a = new (storage) imap;
  a->insert_or_assign(1, 10);
  std::latch first_read(1), remade(1), second_read(1), done(1);
  std::optional<int> before, after, after_other;
  imap* b = nullptr;
  std::thread t([&] {
    before = a->get(1);  // caches a's reader
    first_read.count_down();
    remade.wait();
    after = b->get(1);  // the same address: must reach b's reader, not a's
    after_other = b->get(2);
    second_read.count_down();
    done.wait();  // keeps the thread, and its reader of b, alive while the main thread checks
  });
  first_read.wait();
  a->~imap();  // the thread is alive and still caches a
  b = new (storage) imap;
  REQUIRE(static_cast<void*>(a) == static_cast<void*>(b));
  b->insert_or_assign(1, 20);
  remade.count_down();
  second_read.wait();
  CHECK(before == std::optional<int>(10));
  CHECK(after == std::optional<int>(20));
  CHECK(after_other == std::nullopt);
  CHECK(b->live_readers() == 1);  // the thread made a reader of b
  done.count_down();
  t.join();
  CHECK(b->live_readers() == 0);
  b->~imap();
}

TEST_CASE("shared_map readers: many maps per thread, made and destroyed in turn", "[shared_map][readers]") {
  std::atomic<int> wrong{0};
  std::thread t([&] {
    imap keep;
    keep.insert_or_assign(0, -1);
    for (int round = 0; round < 300; ++round) {
      imap m;  // often at the address of the last round's map: the id, not the address, finds a reader
      m.insert_or_assign(round, round);
      if (m.get(round) != std::optional<int>(round)) wrong.fetch_add(1);
      if (m.get(round - 1).has_value()) wrong.fetch_add(1);
      if (keep.get(0) != std::optional<int>(-1)) wrong.fetch_add(1);  // alternating: cache misses
      if (m.live_readers() != 1) wrong.fetch_add(1);
    }
    std::vector<std::unique_ptr<imap>> many;
    for (int i = 0; i < 50; ++i) {
      many.push_back(std::make_unique<imap>());
      many.back()->insert_or_assign(i, i);
    }
    for (int pass = 0; pass < 3; ++pass) {
      for (int i = 0; i < 50; ++i) {
        if (many[std::size_t(i)]->get(i) != std::optional<int>(i)) wrong.fetch_add(1);
      }
    }
  });
  t.join();
  CHECK(wrong.load() == 0);
}

TEST_CASE("shared_map readers: many threads per map, each with a reader of its own", "[shared_map][readers]") {
  constexpr int threads = 8;
  imap m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, i);
  std::latch all_read(threads), done(1);
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        if (m.get((i + t) % 100) != std::optional<int>((i + t) % 100)) wrong.fetch_add(1);
      }
      all_read.count_down();
      done.wait();
    });
  }
  all_read.wait();
  CHECK(m.live_readers() == std::size_t(threads));
  CHECK(m.reader_slots() == std::size_t(threads));
  done.count_down();
  for (auto& t : ts) t.join();
  CHECK(wrong.load() == 0);
  CHECK(m.live_readers() == 0);
}

namespace {

/// Reads a map from its destructor: a thread_local made before the thread's first read of the map
/// is destroyed after the thread's table of readers.
struct reads_at_exit {
  imap* m = nullptr;
  std::atomic<int>* seen = nullptr;
  ~reads_at_exit() {
    if (m != nullptr) seen->store(m->get(5).value_or(-1));
  }
};

}  // namespace

TEST_CASE("shared_map readers: a read from a thread_local destructor after the table is gone works",
          "[shared_map][readers]") {
  imap m;
  m.insert_or_assign(5, 55);
  std::atomic<int> seen{0};
  std::thread([&] {
    thread_local reads_at_exit late;  // constructed first, destroyed last
    late.m = &m;
    late.seen = &seen;
    if (m.get(5) != std::optional<int>(55)) seen.store(-2);
  }).join();
  CHECK(seen.load() == 55);
  // The late reader was released after the thread's last thread_local destructor.
  CHECK(m.live_readers() == 0);
}

TEST_CASE("shared_map readers: short-lived threads that read from thread_local destructors leave no reader behind",
          "[shared_map][readers]") {
  imap m;
  m.insert_or_assign(5, 55);
  imap other;
  other.insert_or_assign(5, 56);
  std::atomic<int> seen{0};
  std::atomic<int> failures{0};
  for (int i = 0; i < 300; ++i) {
    std::thread([&, i] {
      thread_local reads_at_exit late;  // destroyed after the thread's table of readers
      late.m = &m;
      late.seen = &seen;
      // Odd threads read only from the destructor: their one reader of m is a late one.
      if (i % 2 == 0 && m.get(5) != std::optional<int>(55)) failures.fetch_add(1);
      if (other.get(5) != std::optional<int>(56)) failures.fetch_add(1);
    }).join();
  }
  CHECK(failures.load() == 0);
  CHECK(seen.load() == 55);
  CHECK(m.live_readers() == 0);
  CHECK(other.live_readers() == 0);
  CHECK(m.reader_slots() <= 2);  // one thread at a time: its table's reader and its late one
}

TEST_CASE("shared_map readers: a late reader of a map destroyed before its thread exits is the map's to free",
          "[shared_map][readers]") {
  std::atomic<int> seen{0};
  std::latch read_late(1);
  std::latch destroyed(1);
  auto m = std::make_unique<imap>();
  m->insert_or_assign(5, 55);
  struct late_then_wait {
    imap* m = nullptr;
    std::atomic<int>* seen = nullptr;
    std::latch* read_late = nullptr;
    std::latch* destroyed = nullptr;
    ~late_then_wait() {
      if (m == nullptr) return;
      seen->store(m->get(5).value_or(-1));  // a late reader, made after the table is gone
      read_late->count_down();
      destroyed->wait();  // the map dies now; the key's destructor then finds its home closed
    }
  };
  std::thread t([&] {
    thread_local late_then_wait late;
    late.m = m.get();
    late.seen = &seen;
    late.read_late = &read_late;
    late.destroyed = &destroyed;
  });
  read_late.wait();
  CHECK(m->live_readers() == 1);
  m.reset();
  destroyed.count_down();
  t.join();
  CHECK(seen.load() == 55);
}

TEST_CASE("shared_map readers: a guard is a snapshot; nested reads on one thread share it", "[shared_map][readers]") {
  imap m;
  m.insert_or_assign(1, 1);
  auto g = m.read();
  std::thread([&] { m.insert_or_assign(1, 2); }).join();  // published; g keeps version 1
  CHECK(*g.find(1) == 1);
  CHECK(g.version() == 1);
  auto inner = m.read();  // nested on this thread's reader: the outer snapshot
  CHECK(inner.version() == 1);
}

}  // namespace LEFTRIGHT_TEST_FILE
