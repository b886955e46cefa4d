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
// through _exit() or dies of the signal; a failure in it shows as an exit code (2: an exception).
// Bounded: a fixed count of rounds and of reports per round. durability::sync and none (kill -9
// keeps the page cache, so both must hold every acknowledged write).
//
// No atomics in this file.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"

namespace {

using dmap = leftright::shared_map<std::uint64_t, std::uint64_t>;
constexpr int threads = 4;
constexpr int rounds = 6;
constexpr int reports_before_kill = 200;

std::uint64_t key_of(int round, int thread, std::uint64_t i) {
  return (std::uint64_t(round) << 40) | (std::uint64_t(thread) << 32) | i;
}

[[noreturn]] void child(const leftright::durable_options& o, int round, int fd) {
  try {
    dmap m(o);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&m, round, t, fd] {
        for (std::uint64_t i = 0;; ++i) {
          const std::uint64_t k = key_of(round, t, i);
          m.insert_or_assign(k, i);
          if (::write(fd, &k, sizeof k) != static_cast<ssize_t>(sizeof k)) ::_exit(0);  // parent gone
        }
      });
    }
    for (auto& t : ts) t.join();
  } catch (...) {
    ::_exit(2);
  }
  ::_exit(0);
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
      int fds[2];
      REQUIRE(::pipe(fds) == 0);
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        ::close(fds[0]);
        child(o, round, fds[1]);
      }
      ::close(fds[1]);
      for (int r = 0; r < reports_before_kill; ++r) {
        std::uint64_t k = 0;
        if (::read(fds[0], &k, sizeof k) != static_cast<ssize_t>(sizeof k)) break;
        const int t = static_cast<int>((k >> 32) & 0xff);
        auto& n = acked[{round, t}];
        n = std::max(n, (k & 0xffffffffu) + 1);
      }
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      ::close(fds[0]);
      INFO("round " << round);
      CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
      check(o, acked);
    }
  }
}
