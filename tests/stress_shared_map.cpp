// SPDX-License-Identifier: Apache-2.0
// shared_map under contention (bounded: a fixed count of operations per thread): update() batches
// from many threads are never split across versions nor interleaved with another caller's, a
// thread's writes apply in program order, and readers on other threads (which come and go) see
// every write whose call returned before their read started.
#include <atomic>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

constexpr int writers = 4, keys_per_batch = 8, rounds = 400;
using smap = leftright::shared_map<int, long>;

/// Writer t owns keys [t * 100, t * 100 + keys_per_batch): each round it clears them and sets
/// them all to the round number, in one update(), alternating with posted rounds.
void write_rounds(smap& m, int t, std::atomic<long>& done_round, lrtest::failure_log& failures) {
  for (long r = 1; r <= rounds; ++r) {
    auto fill = [t, r](smap::batch& b) {
      b.erase_if([t](const int& k, const long&) { return k / 100 == t; });
      for (int i = 0; i < keys_per_batch; ++i) b.insert_or_assign(t * 100 + i, r);
    };
    if (r % 3 == 0) {
      m.post(fill);
    } else {
      m.update(fill);
      // Program order and read-your-writes: this thread sees round r (nothing older).
      if (m.get(t * 100) != std::optional<long>(r)) failures.add("writer ", t, " does not see round ", r);
      // [T3] release: hands "round r returned" to the checkers' acquire load.
      done_round.store(r, std::memory_order_release);
    }
  }
  m.sync();
  done_round.store(rounds, std::memory_order_release);  // [T3]
}

/// Checks one snapshot: each writer's keys all carry one round, at least the last it reported.
void check_snapshot(const smap& m, std::vector<std::atomic<long>>& done_round, lrtest::failure_log& failures) {
  std::vector<long> floor(writers);
  for (int t = 0; t < writers; ++t) floor[std::size_t(t)] = done_round[std::size_t(t)].load(std::memory_order_acquire);  // [T3]
  auto g = m.read();
  for (int t = 0; t < writers; ++t) {
    const long* first = g.find(t * 100);
    const long seen = first != nullptr ? *first : 0;
    if (seen < floor[std::size_t(t)]) failures.add("writer ", t, ": read saw round ", seen, " after ", floor[std::size_t(t)], " returned");
    for (int i = 1; i < keys_per_batch; ++i) {
      const long* v = g.find(t * 100 + i);
      if ((v != nullptr ? *v : 0) != seen) failures.add("writer ", t, ": batch split or interleaved at key ", i);
    }
  }
}

}  // namespace

TEST_CASE("shared_map stress: batches stay whole, writes stay in order, reads see returned writes",
          "[shared_map][stress]") {
  smap m;
  lrtest::failure_log failures;
  std::vector<std::atomic<long>> done_round(writers);
  for (auto& d : done_round) d.store(0);
  std::atomic<int> finished{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < writers; ++t) {
    ts.emplace_back([&, t] {
      write_rounds(m, t, done_round[std::size_t(t)], failures);
      finished.fetch_add(1);
    });
  }
  // Checkers: short-lived threads, each taking a few snapshots (their readers come and go).
  int checkers = 0;
  while (finished.load() < writers || checkers < 8) {
    std::thread c([&] {
      for (int i = 0; i < 20; ++i) check_snapshot(m, done_round, failures);
    });
    c.join();
    ++checkers;
  }
  for (auto& t : ts) t.join();
  check_snapshot(m, done_round, failures);
  INFO(failures.summary());
  CHECK(failures.count() == 0);
  const auto s = m.stats();
  CHECK(s.writes == std::uint64_t(writers * rounds));
  CHECK(s.failed_writes == 0);
  CHECK(m.live_readers() == 1);  // this thread's, from the last check
  WARN("publishes " << s.publishes << " for " << s.writes << " writes; largest group " << s.largest_group);
}

}  // namespace LEFTRIGHT_TEST_FILE
