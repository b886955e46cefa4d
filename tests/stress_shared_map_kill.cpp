// SPDX-License-Identifier: Apache-2.0
// Stress: kill -9 a process whose threads write a durable shared_map concurrently, and recover.
// Each round forks a child that opens the map (recovering the previous round's crash) and starts
// 4 writer threads; each thread writes its own keys in order (key = round << 40 | thread << 32 |
// i, value i) and, after each write call returns, reports the key through a pipe (one 8-byte
// write, atomic for a pipe). The parent reads reports, SIGKILLs the child after a bounded number
// of them, reopens the directory and checks, for every thread of every round so far:
//   - every reported (acknowledged) key is present with its value;
//   - what is present is a prefix of the thread's writes (program order, a prefix of versions).
// The child is a fresh process: the test binary starts no threads before fork(). It leaves
// through _exit() or dies of the signal (tests/support/child_process.hpp); a failure in it shows as an exit code (2: an exception).
// Bounded: a fixed count of rounds and of reports per round. durability::sync and none (kill -9
// keeps the page cache, so both must hold every acknowledged write).
//
// No atomics in this file.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/child_process.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using dmap = leftright::shared_map<std::uint64_t, std::uint64_t>;
constexpr int threads = 4;
constexpr int rounds = 6;
constexpr int reports_before_kill = 200;

std::uint64_t key_of(int round, int thread, std::uint64_t i) {
  return (std::uint64_t(round) << 40) | (std::uint64_t(thread) << 32) | i;
}

/// The child's writers, until killed; returns (its exit code) only on an exception: 2.
int child(const leftright::durable_options& o, int round, int fd) {
  try {
    dmap m(o);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&m, round, t, fd] {
        for (std::uint64_t i = 0;; ++i) {
          const std::uint64_t k = key_of(round, t, i);
          m.insert_or_assign(k, i);
          if (!lrtest::send_record(fd, k)) ::_exit(0);  // parent gone
        }
      });
    }
    for (auto& t : ts) t.join();
  } catch (...) {
    return 2;
  }
  return 0;
}

/// Runs one round's child until it has reported `reports_before_kill` writes (or is gone), adds
/// them to acked, kills it and reaps it.
lrtest::exit_status run_round(const leftright::durable_options& o, int round,
                              std::map<std::pair<int, int>, std::uint64_t>& acked) {
  lrtest::child_process c = lrtest::child_process::fork([&](int fd) { return child(o, round, fd); });
  std::string buf;
  int reports = 0;
  while (reports < reports_before_kill &&
         c.read_some(buf, lrtest::child_process::clock::time_point::max()) ==
             lrtest::child_process::read_state::data) {
    lrtest::take_records<std::uint64_t>(buf, [&](std::uint64_t k) {
      if (reports++ >= reports_before_kill) return;  // read, but after the count: as if unread
      const int t = static_cast<int>((k >> 32) & 0xff);
      auto& n = acked[{round, t}];
      n = std::max(n, (k & 0xffffffffu) + 1);
    });
  }
  return c.kill_and_wait(SIGKILL);
}

/// Checks the reopened map against what each (round, thread) acknowledged.
void check(const leftright::durable_options& o, const std::map<std::pair<int, int>, std::uint64_t>& acked) {
  dmap m(o);
  for (const auto& [rt, n] : acked) {
    INFO("round " << rt.first << " thread " << rt.second << " acknowledged " << n);
    std::uint64_t present = 0;
    while (m.contains(key_of(rt.first, rt.second, present))) {
      if (m.get(key_of(rt.first, rt.second, present)) != std::optional<std::uint64_t>(present)) break;
      ++present;
    }
    CHECK(present >= n);
    CHECK_FALSE(m.contains(key_of(rt.first, rt.second, present + 1)));
  }
}

}  // namespace

TEST_CASE("shared_map stress: kill -9 amid concurrent writers keeps every acknowledged write",
          "[shared_map][durable][stress]") {
  for (auto mode : {leftright::durability::sync, leftright::durability::none}) {
    lrtest::temp_dir dir("shared-kill");
    leftright::durable_options o;
    o.path = dir.path() / "map";
    o.durability = mode;
    o.segment_size = 64 << 10;  // rolls during the rounds
    std::map<std::pair<int, int>, std::uint64_t> acked;  // (round, thread) -> writes acknowledged
    for (int round = 0; round < rounds; ++round) {
      const lrtest::exit_status status = run_round(o, round, acked);
      INFO("round " << round);
      INFO("child " << status.describe());
      CHECK(status.killed_by(SIGKILL));
      check(o, acked);
    }
  }
}

}  // namespace LEFTRIGHT_TEST_FILE
