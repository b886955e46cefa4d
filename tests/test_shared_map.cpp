// SPDX-License-Identifier: Apache-2.0
// shared_map: reads and writes from any thread without handles; writers combined into groups
// (one publish per group); a caller whose operations throw fails alone.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/shared_map_support.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using smap = leftright::shared_map<int, std::string>;

/// Starts n threads, each calling f(i), and joins them.
template <class F>
void run_threads(int n, F f) {
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back(f, i);
  for (auto& t : ts) t.join();
}

}  // namespace

TEST_CASE("shared_map: each write call publishes one version; reads see it at once", "[shared_map]") {
  smap m;
  CHECK(m.version() == 0);
  CHECK(m.empty());
  CHECK(m.insert_or_assign(1, "a") == 1);
  CHECK(m.get(1) == std::optional<std::string>("a"));
  CHECK(m.insert(1, "b") == 2);  // present: unchanged
  CHECK(m.get(1) == std::optional<std::string>("a"));
  CHECK(m.insert(2, "b") == 3);
  CHECK(m.insert_or_assign(1, "c") == 4);
  CHECK(m.size() == 2);
  CHECK(m.erase(1) == 5);
  CHECK_FALSE(m.contains(1));
  CHECK(m.version() == 5);
  CHECK(m.clear() == 6);
  CHECK(m.empty());
  const auto s = m.stats();
  CHECK(s.writes == 6);
  CHECK(s.publishes == 6);
  CHECK(s.operations == 6);
  CHECK(s.failed_writes == 0);
  CHECK(s.largest_group == 1);
}

TEST_CASE("shared_map: while readers fence, each write leaves readers on the copy they read", "[shared_map]") {
  // seq_cst readers always fence, so the map settles after every group (map_writer::try_settle):
  // a value is read at the same address before and after writes to other keys. u64 values are
  // stored inline, once per copy, so the other copy would show another address.
  leftright::shared_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>, std::equal_to<std::uint64_t>,
                        lrtest::seq_cst_traits>
      m;
  m.insert_or_assign(1, 10);
  const std::uint64_t* home = m.read().find(std::uint64_t{1});
  REQUIRE(home != nullptr);
  for (std::uint64_t i = 0; i < 20; ++i) {
    const std::uint64_t v = m.insert_or_assign(100 + i, i);
    CHECK(m.version() == v);
    CHECK(m.get(100 + i) == i);
    CHECK(m.read().find(std::uint64_t{1}) == home);
  }
  // A reader inside the copy readers left (another thread's: this one may not write while it
  // holds a guard) stops the settle, never the write. Other threads reading now, the map does
  // not try again for some groups; then settles resume, and readers stay on one copy from one
  // write to the next again.
  {
    std::latch inside(1);
    std::latch written(1);
    std::uint64_t seen = 0;
    std::thread reader([&] {
      auto g = m.read();
      inside.count_down();
      written.wait();
      seen = *g.find(std::uint64_t{1});
    });
    inside.wait();
    m.insert_or_assign(1, 11);
    written.count_down();
    reader.join();
    CHECK(seen == 10);
  }
  CHECK(m.get(1) == 11);
  const std::uint64_t* before = m.read().find(std::uint64_t{1});
  int writes = 0;
  bool settled = false;
  while (!settled && writes < 100) {
    m.insert_or_assign(1000 + writes, 0);
    ++writes;
    const std::uint64_t* now = m.read().find(std::uint64_t{1});
    settled = now == before;
    before = now;
  }
  CHECK(settled);
  CHECK(writes <= 20);
  CHECK(m.get(1) == 11);
}

TEST_CASE("shared_map: update() publishes its batch in one version, in order", "[shared_map]") {
  smap m;
  m.insert_or_assign(9, "nine");
  const std::uint64_t v = m.update([](smap::batch& b) {
    b.insert_or_assign(1, "a");
    b.insert_or_assign(2, "b");
    b.erase(1);
    b.insert(2, "ignored");
    b.erase_if([](const int& k, const std::string&) { return k == 9; });
    b.insert_or_assign(3, "c");
    CHECK(b.size() == 6);
  });
  CHECK(v == 2);
  auto g = m.read();
  CHECK(g.version() == 2);
  CHECK(g.size() == 2);
  CHECK(g.find(1) == nullptr);
  CHECK(*g.find(2) == "b");
  CHECK(*g.find(3) == "c");
  CHECK(g.find(9) == nullptr);
}

TEST_CASE("shared_map: an update() whose f throws applies nothing", "[shared_map]") {
  smap m;
  m.insert_or_assign(1, "a");
  CHECK_THROWS_AS(m.update([](smap::batch& b) {
    b.insert_or_assign(2, "b");
    b.clear();
    throw std::runtime_error("changed my mind");
  }),
                  std::runtime_error);
  CHECK(m.version() == 1);
  CHECK(m.size() == 1);
  CHECK(m.stats().writes == 1);  // the thrown update never reached the queue
}

TEST_CASE("shared_map: writes that overlap one publish are published together", "[shared_map]") {
  constexpr int writers = 6;
  smap m;
  m.insert_or_assign(0, "zero");
  std::vector<std::uint64_t> versions(writers);
  // Queued behind a holder that is the combiner, inside its publish.
  lrtest::in_one_group(m, writers, [&](int i) {
    if (i % 2 == 0) {
      versions[std::size_t(i)] = m.insert_or_assign(i + 1, std::to_string(i + 1));
    } else {
      versions[std::size_t(i)] = m.update([i](smap::batch& b) {
        b.insert_or_assign(i + 1, std::to_string(i + 1));
        b.insert_or_assign(100 + i, "x");
      });
    }
  });
  for (int i = 0; i < writers; ++i) {
    CHECK(versions[std::size_t(i)] == 3);  // version 2 was the holder's
    CHECK(m.get(i + 1) == std::optional<std::string>(std::to_string(i + 1)));
  }
  const auto s = m.stats();
  CHECK(s.publishes == 3);
  CHECK(s.largest_group == writers);
  CHECK(s.writes == writers + 2);
  CHECK(s.operations == 2 + writers + writers / 2);
}

TEST_CASE("shared_map: groups handed on one after another each end with their own callers", "[shared_map]") {
  // Groups 1-3 are each held inside their publish by the caller that leads them (queued first
  // while the group before ran, so handed the combiner's role); groups 2 and 4 share a wake-up
  // word (the queue's, by parity), and group 4's callers must wait through group 3 all the same.
  constexpr int per_group = 4;
  smap m;
  m.insert_or_assign(0, "zero");  // version 1
  lrtest::gate g1, g2, g3;
  const auto hold = [&m](lrtest::gate& g) {
    return std::thread([&m, &g] { m.update([&g](smap::batch& b) { lrtest::hold_combiner(b, g); }); });
  };
  std::vector<std::uint64_t> versions(3 * per_group);
  std::vector<std::thread> writers;
  // The group's writers, queued behind whatever is queued already (queued of them).
  const auto queue_writers = [&](int group, std::size_t queued) {
    for (int i = 0; i < per_group; ++i) {
      const int k = group * 100 + i;
      const std::size_t slot = std::size_t((group - 2) * per_group + i);
      writers.emplace_back([&m, &versions, k, slot] { versions[slot] = m.insert_or_assign(k, std::to_string(k)); });
    }
    lrtest::await_queued(m, queued + per_group);
  };
  // Group `group`: a caller held in g, queued while the group before is held in prev (so it
  // leads the next group), and the group's writers behind it; then the group before ends.
  const auto hand_on = [&](lrtest::gate& prev, std::thread& prev_leader, lrtest::gate& g, int group) {
    std::thread leader = hold(g);
    lrtest::await_queued(m, 1);
    queue_writers(group, 1);
    prev.release();
    prev_leader.join();
    g.await_entered();
    return leader;
  };
  std::thread c1 = hold(g1);  // group 1: version 2
  g1.await_entered();
  std::thread c2 = hand_on(g1, c1, g2, 2);  // version 3
  std::thread c3 = hand_on(g2, c2, g3, 3);  // version 4
  queue_writers(4, 0);  // group 4 (its first caller leads it): version 5
  CHECK_FALSE(m.contains(400));  // not before group 3 ends
  g3.release();
  c3.join();
  for (auto& t : writers) t.join();
  for (int group = 2; group <= 4; ++group) {
    for (int i = 0; i < per_group; ++i) {
      CHECK(versions[std::size_t((group - 2) * per_group + i)] == std::uint64_t(group + 1));
      CHECK(m.get(group * 100 + i) == std::optional<std::string>(std::to_string(group * 100 + i)));
    }
  }
  const auto s = m.stats();
  CHECK(s.publishes == 5);
  CHECK(s.largest_group == per_group + 1);
  CHECK(s.writes == 3 * per_group + 4);
}

TEST_CASE("shared_map: a caller whose value cannot be copied fails alone", "[shared_map][exceptions]") {
  using bmap = leftright::shared_map<int, lrtest::bomb>;
  bmap m;
  m.insert_or_assign(0, lrtest::bomb(0));
  constexpr int writers = 7;
  constexpr int bad = 3;
  std::vector<std::uint64_t> versions(writers, 0);
  std::vector<int> threw(writers, 0);
  lrtest::in_one_group(m, writers, [&](int i) {
    try {
      versions[std::size_t(i)] = m.update([i](bmap::batch& b) {
        b.insert_or_assign(10 + i, lrtest::bomb(i));
        b.insert_or_assign(20 + i, lrtest::bomb(i == bad ? -1 : i));  // copied at publish: throws
      });
    } catch (const std::runtime_error&) {
      threw[std::size_t(i)] = 1;
    }
  });
  for (int i = 0; i < writers; ++i) {
    INFO("writer " << i);
    if (i == bad) {
      CHECK(threw[std::size_t(i)] == 1);
      CHECK_FALSE(m.contains(10 + i));  // nothing of its batch
      CHECK_FALSE(m.contains(20 + i));
    } else {
      CHECK(threw[std::size_t(i)] == 0);
      CHECK(versions[std::size_t(i)] > 2);
      CHECK(m.get(20 + i).value().v == i);
    }
  }
  const auto s = m.stats();
  CHECK(s.failed_writes == 1);
  CHECK(s.splits >= 1);
  // Still usable: a later write from this thread publishes normally.
  const std::uint64_t v = m.insert_or_assign(99, lrtest::bomb(99));
  CHECK(v == m.version());
  CHECK(m.get(99).value().v == 99);
}

TEST_CASE("shared_map: a caller whose key the hash refuses fails alone, also when alone",
          "[shared_map][exceptions]") {
  using pmap = leftright::shared_map<int, int, lrtest::picky_hash>;
  pmap m;
  m.insert_or_assign(1, 1);
  CHECK_THROWS_AS(m.insert_or_assign(666, 1), std::runtime_error);
  CHECK(m.version() == 1);
  CHECK(m.size() == 1);

  constexpr int writers = 5;
  std::vector<int> threw(writers, 0);
  lrtest::in_one_group(m, writers, [&](int i) {
    try {
      if (i == 0) m.erase(666); else m.insert_or_assign(100 + i, i);
    } catch (const std::runtime_error&) {
      threw[std::size_t(i)] = 1;
    }
  });
  CHECK(threw == std::vector<int>{1, 0, 0, 0, 0});
  for (int i = 1; i < writers; ++i) CHECK(m.get(100 + i) == std::optional<int>(i));
}

TEST_CASE("shared_map: a thread's writes apply in program order; posted ones too", "[shared_map]") {
  smap m;
  for (int i = 0; i < 50; ++i) m.post([i](smap::batch& b) { b.insert_or_assign(i % 5, std::to_string(i)); });
  m.erase(0);
  m.post([](smap::batch& b) { b.insert(0, "again"); });
  m.sync();
  CHECK(m.get(0) == std::optional<std::string>("again"));
  for (int k = 1; k < 5; ++k) CHECK(m.get(k) == std::optional<std::string>(std::to_string(45 + k)));
  CHECK(m.stats().writes == 52);
}

TEST_CASE("shared_map: a posted batch that throws is dropped alone; sync() reports it once",
          "[shared_map][exceptions]") {
  using bmap = leftright::shared_map<int, lrtest::bomb>;
  bmap m;
  m.post([](bmap::batch& b) { b.insert_or_assign(1, lrtest::bomb(1)); });
  m.post([](bmap::batch& b) { b.insert_or_assign(2, lrtest::bomb(-2)); });  // throws when copied
  m.post([](bmap::batch& b) { b.insert_or_assign(3, lrtest::bomb(3)); });
  CHECK_THROWS_AS(m.sync(), std::runtime_error);
  CHECK_NOTHROW(m.sync());
  CHECK(m.contains(1));
  CHECK_FALSE(m.contains(2));
  CHECK(m.contains(3));
  CHECK(m.stats().failed_writes == 1);
}

TEST_CASE("shared_map: a sync() in the group of a posted batch that throws reports it",
          "[shared_map][exceptions]") {
  using bmap = leftright::shared_map<int, lrtest::bomb>;
  bmap m;
  m.insert_or_assign(0, lrtest::bomb(0));
  lrtest::gate g;
  std::thread holder = lrtest::start_holder(m, g);
  m.post([](bmap::batch& b) { b.insert_or_assign(2, lrtest::bomb(-2)); });  // queued; throws when copied
  int sync_threw = -1;
  std::thread syncer([&] {
    try {
      m.sync();
      sync_threw = 0;
    } catch (const std::runtime_error&) {
      sync_threw = 1;
    }
  });
  lrtest::await_queued(m, 2);  // the posted batch, then the sync: one group
  g.release();
  holder.join();
  syncer.join();
  CHECK(sync_threw == 1);
  CHECK_NOTHROW(m.sync());  // reported once
  CHECK_FALSE(m.contains(2));
}

namespace {
/// As lrtest::hold_combiner, also noting which thread applied the batch first (the combiner).
template <class Batch>
void hold_noting(Batch& b, lrtest::gate& g, std::thread::id& applier) {
  b.erase_if([&g, &applier](const auto&, const auto&) {
    if (applier == std::thread::id{}) applier = std::this_thread::get_id();
    g.enter();
    return false;
  });
}
}  // namespace

TEST_CASE("shared_map: a combiner publishing posted batches only hands its role to the next post()",
          "[shared_map]") {
  smap m;
  m.insert_or_assign(0, "zero");
  lrtest::gate g1, g2, g3;
  std::thread::id applied1, applied2, applied3;
  std::thread writer([&] { m.update([&](smap::batch& b) { hold_noting(b, g1, applied1); }); });
  g1.await_entered();  // the writer combines its own group
  // Posted while it runs: returns at once; the writer runs it after its own group (overtime).
  m.post([&](smap::batch& b) { hold_noting(b, g2, applied2); });
  g1.release();
  g2.await_entered();
  // Posted during the overtime: waits, and takes the combiner's role when that group ends.
  std::thread poster([&] { m.post([&](smap::batch& b) { hold_noting(b, g3, applied3); }); });
  lrtest::await_queued(m, 1);
  g2.release();
  g3.await_entered();
  CHECK(applied1 == writer.get_id());
  CHECK(applied2 == writer.get_id());
  CHECK(applied3 == poster.get_id());  // not the writer's: its call returned after one more group
  g3.release();
  writer.join();
  poster.join();
  CHECK_NOTHROW(m.sync());
  CHECK(m.stats().publishes == 4);
}

TEST_CASE("shared_map: a write is seen by every read that starts after it returned, on any thread",
          "[shared_map]") {
  constexpr int writers = 3, readers = 2, per_writer = 300;
  leftright::shared_map<int, int> m;
  std::vector<std::atomic<int>> latest(writers);
  for (auto& l : latest) l.store(-1);
  std::atomic<int> writers_done{0};
  lrtest::failure_log failures;
  run_threads(writers + readers, [&](int t) {
    if (t < writers) {
      for (int i = 0; i < per_writer; ++i) {
        const int key = t * per_writer + i;
        const std::uint64_t v = m.insert_or_assign(key, i);
        if (m.get(key) != std::optional<int>(i)) failures.add("writer ", t, " does not see its key ", key);
        if (m.version() < v) failures.add("writer ", t, " sees version ", m.version(), " < ", v);
        // [T2] release: hands "key is written" to the readers' acquire load below.
        latest[std::size_t(t)].store(i, std::memory_order_release);
      }
      writers_done.fetch_add(1);
      return;
    }
    while (writers_done.load() < writers) {
      for (int w = 0; w < writers; ++w) {
        const int i = latest[std::size_t(w)].load(std::memory_order_acquire);  // [T2]
        if (i >= 0 && !m.contains(w * per_writer + i)) failures.add("reader misses ", w, "/", i);
      }
    }
  });
  INFO(failures.summary());
  CHECK(failures.count() == 0);
  CHECK(m.size() == std::size_t(writers * per_writer));
  CHECK(m.stats().writes == std::uint64_t(writers * per_writer));
}

TEST_CASE("shared_map: checkpoint() of an in-memory map is a logic_error", "[shared_map]") {
  smap m;
  CHECK_FALSE(m.durable());
  CHECK_THROWS_AS(m.checkpoint(), std::logic_error);
  CHECK_NOTHROW(m.sync());
  CHECK(m.recovery().version == 0);
  m.insert_or_assign(1, "still usable");
  CHECK(m.contains(1));
}

TEST_CASE("shared_map: a thread holding a read() guard may not write the same map; nothing of the call applies",
          "[shared_map]") {
  smap m;
  m.insert_or_assign(1, "one");
  smap other;
  {
    auto g = m.read();
    // Each of these would publish (or wait for a group that does) while the guard pins its copy.
    CHECK_THROWS_AS(m.insert_or_assign(3, "three"), std::logic_error);
    CHECK_THROWS_AS(m.insert(3, "three"), std::logic_error);
    CHECK_THROWS_AS(m.erase(1), std::logic_error);
    CHECK_THROWS_AS(m.clear(), std::logic_error);
    CHECK_THROWS_AS(m.update([](smap::batch& b) { b.insert_or_assign(3, "three"); }), std::logic_error);
    CHECK_THROWS_AS(m.post([](smap::batch& b) { b.insert_or_assign(3, "three"); }), std::logic_error);
    CHECK_THROWS_AS(m.sync(), std::logic_error);
    CHECK_THROWS_AS(m.reader_slots(), std::logic_error);
    // Another map is written at once; reading it takes this thread's one-entry cache, and m's
    // reader is then found in the thread's table.
    CHECK(other.insert_or_assign(1, "x") == 1);
    CHECK(other.get(1) == "x");
    CHECK_THROWS_AS(m.insert_or_assign(3, "three"), std::logic_error);
    // Another thread writes m: its publish waits for no guard taken after the last swap.
    std::thread([&m] { m.insert_or_assign(4, "four"); }).join();
    CHECK(g.find(4) == nullptr);  // the snapshot stays
    CHECK(g.find(1) != nullptr);
  }
  CHECK(m.get(1) == "one");
  CHECK_FALSE(m.contains(3));
  CHECK(m.get(4) == "four");
  CHECK(m.version() == 2);  // versions 1 and 2: the refused calls published nothing
  CHECK_NOTHROW(m.sync());
  CHECK(m.insert_or_assign(3, "three") == 3);
  CHECK(m.get(3) == "three");
  // Writing threads that never read this map have no reader of it (the check makes none).
  std::thread([&m] { m.erase(4); }).join();
  CHECK(m.live_readers() == 1);
}

TEST_CASE("shared_map: negative waits are refused before anything is opened", "[shared_map]") {
  leftright::shared_map_options o;
  o.max_delay = std::chrono::microseconds(-1);
  CHECK_THROWS_AS(smap(o), std::invalid_argument);
  o = {};
  o.max_reader_wait = std::chrono::nanoseconds(-1);
  CHECK_THROWS_AS(smap(o), std::invalid_argument);
  lrtest::temp_dir tmp("shared-options");
  leftright::durable_options d;
  d.path = tmp.path() / "map";
  CHECK_THROWS_AS(smap(d, o), std::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(d.path));  // nothing opened, nothing made
  o.max_reader_wait = std::chrono::nanoseconds(0);
  smap ok(d, o);
  CHECK(ok.durable());
}

TEST_CASE("shared_map: with max_delay a combiner waits for joiners; every write still lands once",
          "[shared_map]") {
  leftright::shared_map_options o;
  o.max_delay = std::chrono::microseconds(500);
  leftright::shared_map<int, int> m(o);
  constexpr int writers = 4, per_writer = 25;
  run_threads(writers, [&](int t) {
    for (int i = 0; i < per_writer; ++i) m.insert_or_assign(t * 100 + i, i);
  });
  CHECK(m.size() == std::size_t(writers * per_writer));
  const auto s = m.stats();
  CHECK(s.writes == std::uint64_t(writers * per_writer));
  CHECK(s.operations == std::uint64_t(writers * per_writer));
  CHECK(s.publishes <= s.writes);
  CHECK(s.publishes == m.version());
}

TEST_CASE("shared_map: get_many reads many keys from one snapshot, from any thread", "[shared_map]") {
  leftright::shared_map<std::string, int> m;
  m.update([](auto& b) {
    b.insert_or_assign("a", 1);
    b.insert_or_assign("b", 2);
  });
  std::vector<std::optional<int>> out(3);
  std::size_t found = 0;
  std::thread([&] {
    const std::vector<std::string_view> keys = {"b", "none", "a"};  // transparent by default
    found = m.get_many(keys, out);
  }).join();
  CHECK(found == 2);
  CHECK(out == std::vector<std::optional<int>>{2, std::nullopt, 1});
  std::vector<std::optional<int>> wrong(1);
  CHECK_THROWS_AS(m.get_many(std::vector<std::string>{"a", "b"}, wrong), std::invalid_argument);
}

namespace {
using cmap = leftright::shared_map<int, std::uint64_t>;
/// A compute function adding one to the key's value (0 if absent).
std::optional<std::uint64_t> plus_one(const std::uint64_t* v) { return (v != nullptr ? *v : 0) + 1; }
}  // namespace

TEST_CASE("shared_map: computes in one group each see the writes before them", "[shared_map][compute]") {
  constexpr int writers = 6;
  cmap m;
  m.insert_or_assign(1, 100);  // version 1; the holder's is 2
  std::vector<std::uint64_t> versions(writers);
  lrtest::in_one_group(m, writers, [&](int i) {
    if (i == 0) {
      // Its own batch's earlier operation too: 7, then doubled.
      versions[0] = m.update([](cmap::batch& b) {
        b.insert_or_assign(2, 7);
        b.compute(2, [](const std::uint64_t* v) { return *v * 2; });
      });
    } else {
      versions[std::size_t(i)] = m.compute(1, plus_one);
    }
  });
  CHECK(versions == std::vector<std::uint64_t>(writers, 3));  // one group, one version
  CHECK(m.get(1) == std::optional<std::uint64_t>(100 + writers - 1));  // no increment lost
  CHECK(m.get(2) == std::optional<std::uint64_t>(14));
  CHECK(m.stats().publishes == 3);
}

TEST_CASE("shared_map: compute from many threads loses no update; posted computes too", "[shared_map][compute]") {
  constexpr int threads = 4;
  constexpr int per_thread = 400;
  constexpr int keys = 3;
  cmap m;
  std::vector<std::uint64_t> expected(keys, 0);
  for (int t = 0; t < threads; ++t) {
    for (int i = 0; i < per_thread; ++i) ++expected[std::size_t((t + i) % keys)];
  }
  run_threads(threads, [&m](int t) {
    for (int i = 0; i < per_thread; ++i) {
      const int k = (t + i) % keys;
      if (i % 4 == 3) {
        m.post([k](cmap::batch& b) { b.compute(k, plus_one); });
      } else {
        m.compute(k, plus_one);
      }
    }
  });
  m.sync();
  for (int k = 0; k < keys; ++k) CHECK(m.get(k) == std::optional<std::uint64_t>(expected[std::size_t(k)]));
}

TEST_CASE("shared_map: compute's nullopt erases a present key and leaves an absent one absent",
          "[shared_map][compute]") {
  cmap m;
  m.insert_or_assign(1, 5);
  const auto erase = [](const std::uint64_t*) { return std::optional<std::uint64_t>(); };
  std::vector<const std::uint64_t*> seen;
  const std::uint64_t v1 = m.compute(1, [&seen](const std::uint64_t* v) {
    seen.push_back(v);
    return std::optional<std::uint64_t>();
  });
  CHECK(seen.size() == 1);
  CHECK(seen[0] != nullptr);
  CHECK_FALSE(m.contains(1));
  const std::uint64_t v2 = m.compute(2, erase);  // absent: nothing to erase, still a version
  CHECK(v2 == v1 + 1);
  CHECK(m.size() == 0);
  // A compute-and-set: replaces only what it expects.
  m.insert_or_assign(3, 30);
  const auto cas = [](std::uint64_t expect, std::uint64_t want) {
    return [=](const std::uint64_t* v) -> std::optional<std::uint64_t> {
      if (v == nullptr) return std::nullopt;
      return *v == expect ? want : *v;
    };
  };
  m.compute(3, cas(29, 1));
  CHECK(m.get(3) == std::optional<std::uint64_t>(30));
  m.compute(3, cas(30, 31));
  CHECK(m.get(3) == std::optional<std::uint64_t>(31));
}

TEST_CASE("shared_map: a compute whose function throws fails alone; the others apply once each",
          "[shared_map][compute][exceptions]") {
  constexpr int writers = 6;
  constexpr int bad = 2;
  cmap m;
  m.insert_or_assign(1, 0);
  m.insert_or_assign(2, 50);
  std::vector<int> threw(writers, 0);
  lrtest::in_one_group(m, writers, [&](int i) {
    try {
      if (i == bad) {
        m.update([](cmap::batch& b) {
          b.insert_or_assign(3, 3);
          b.compute(2, [](const std::uint64_t*) -> std::optional<std::uint64_t> { throw std::runtime_error("no"); });
        });
      } else {
        m.compute(1, plus_one);
      }
    } catch (const std::runtime_error&) {
      threw[std::size_t(i)] = 1;
    }
  });
  std::vector<int> want(writers, 0);
  want[bad] = 1;
  CHECK(threw == want);
  CHECK(m.get(1) == std::optional<std::uint64_t>(writers - 1));  // retried, never applied twice
  CHECK(m.get(2) == std::optional<std::uint64_t>(50));
  CHECK_FALSE(m.contains(3));  // nothing of the failed batch
  CHECK(m.stats().splits >= 1);
}

TEST_CASE("shared_map: a write of the same map from inside compute or erase_if is refused, not a hang",
          "[shared_map][compute]") {
  cmap m;
  cmap other;
  m.insert_or_assign(1, 1);
  bool refused_after_other = false;
  CHECK_THROWS_AS(m.compute(1,
                            [&m](const std::uint64_t* v) {
                              m.insert_or_assign(2, 2);
                              return *v + 1;
                            }),
                  std::logic_error);
  CHECK_THROWS_AS(m.compute(1,
                            [&m](const std::uint64_t* v) {
                              m.sync();
                              return *v + 1;
                            }),
                  std::logic_error);
  CHECK_THROWS_AS(m.update([&m](cmap::batch& b) {
    b.erase_if([&m](int, std::uint64_t) {
      m.post([](cmap::batch& c) { c.clear(); });
      return false;
    });
  }),
                  std::logic_error);
  CHECK(m.get(1) == std::optional<std::uint64_t>(1));
  CHECK_FALSE(m.contains(2));
  // Another map may be written from inside; this one is still refused after that write returns.
  m.compute(1, [&](const std::uint64_t* v) {
    other.insert_or_assign(7, *v);
    try {
      m.erase(1);
    } catch (const std::logic_error&) {
      refused_after_other = true;
    }
    return *v + 1;
  });
  CHECK(refused_after_other);
  CHECK(other.get(7) == std::optional<std::uint64_t>(1));
  CHECK(m.get(1) == std::optional<std::uint64_t>(2));
  const std::uint64_t v = m.insert_or_assign(2, 2);  // usable as ever
  CHECK(v == m.version());
}

TEST_CASE("shared_map: a write back to a map whose group the thread runs is refused, also from a nested group",
          "[shared_map][compute]") {
  cmap a, b;
  b.insert_or_assign(0, 0);  // the holder's predicate needs an entry to be asked about
  lrtest::gate g;
  std::thread holder = lrtest::start_holder(b, g);  // b's combiner, held inside its publish
  // t combines a; the function it runs writes b, and that write, queued first behind the
  // holder, leads b's next group: t will run b's group inside a's.
  std::thread t([&] {
    a.compute(1, [&b](const std::uint64_t*) {
      b.insert_or_assign(1, 1);
      return std::uint64_t{1};
    });
  });
  lrtest::await_queued(b, 1);
  // u's compute of b joins that group; its function, run on t's thread, writes a back.
  bool refused = false;
  std::thread u([&] {
    try {
      b.compute(2, [&a](const std::uint64_t*) {
        a.insert_or_assign(2, 2);
        return std::uint64_t{2};
      });
    } catch (const std::logic_error&) {
      refused = true;
    }
  });
  lrtest::await_queued(b, 2);
  g.release();
  holder.join();
  t.join();
  u.join();
  CHECK(refused);
  CHECK(a.get(1) == std::optional<std::uint64_t>(1));
  CHECK(b.get(1) == std::optional<std::uint64_t>(1));
  CHECK_FALSE(a.contains(2));
  CHECK_FALSE(b.contains(2));
}

TEST_CASE("shared_map: a compute retried without a caller that failed decides again from the state it finds",
          "[shared_map][compute][exceptions]") {
  // The group [a, b]: a assigns key 1 and then erases a key the hash refuses, which throws only
  // when the group is published (the operations are applied then); b's compute saw a's assign.
  // Retried without a, b's compute must decide from what key 1 holds then, not reuse 101.
  using pmap = leftright::shared_map<int, std::uint64_t, lrtest::picky_hash>;
  pmap m;
  m.insert_or_assign(1, 0);
  lrtest::gate g;
  std::thread holder = lrtest::start_holder(m, g);
  std::vector<std::uint64_t> seen;  // what b's function found, call by call (the combiner's thread)
  bool a_threw = false;
  std::thread a([&] {
    try {
      m.update([](pmap::batch& b) {
        b.insert_or_assign(1, 100);
        b.erase(666);
      });
    } catch (const std::runtime_error&) {
      a_threw = true;
    }
  });
  lrtest::await_queued(m, 1);
  std::thread b([&] {
    m.compute(1, [&seen](const std::uint64_t* v) {
      seen.push_back(*v);
      return *v + 1;
    });
  });
  lrtest::await_queued(m, 2);
  g.release();
  holder.join();
  a.join();
  b.join();
  CHECK(a_threw);
  CHECK(seen == std::vector<std::uint64_t>{100, 0});
  CHECK(m.get(1) == std::optional<std::uint64_t>(1));
}

}  // namespace LEFTRIGHT_TEST_FILE
