// SPDX-License-Identifier: Apache-2.0
// examples/session_store.cpp: logged-in sessions that end after 30 idle minutes, on
// leftright::cache with expire_after_access (and a 12-hour cap with expire_after_write).
//
// The scenario: request threads look a session token up on every request. A miss asks the
// (slow) auth service to validate the token, which is a new login for the user; a hit serves the
// cached session. A session must end once its user has been idle for 30 minutes, and after 12
// hours whatever happens. The day runs in simulated time (the cache's ticker is a clock the
// program moves a minute at a time), so it takes a moment and gives the same counts every run.
//
// Users come and go: each one alternates active stretches (a request every minute or two) and
// breaks (5 to 60 minutes). The program keeps its own record of each user's last request and
// login, and checks every hit against it: a session served once 30 minutes have passed since its
// user's last request, or 12 hours since its login, is a violation. It prints the requests, the logins (first
// ones, after a break, after the cap) and the violations, and exits 1 if there was any.
//
// Usage: leftright_session_store_example [users] (default 400)
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <leftright/cache.hpp>

namespace {

using namespace std::chrono_literals;
using minutes = std::chrono::minutes;

constexpr minutes idle_limit{30};
constexpr minutes session_cap{12 * 60};
constexpr int day = 24 * 60;  // minutes simulated
constexpr int threads = 4;

struct session {
  std::string user;
  std::int64_t login_minute = 0;
};

/// One user: when they next make a request, and what the program knows of their session.
struct user_state {
  std::string token;
  int next_request = 0;     ///< minute
  int active_until = 0;     ///< minute the current active stretch ends
  int last_request = -1'000'000;
  int login = -1'000'000;   ///< minute of the login that the cached session came from
};

}  // namespace

int main(int argc, char** argv) {
  const int users = argc > 1 ? std::atoi(argv[1]) : 400;
  if (users <= 0) {
    std::fprintf(stderr, "usage: %s [users > 0]\n", argv[0]);
    return 2;
  }
  // The simulated clock, in ticker nanoseconds; only the main thread moves it, between minutes.
  std::atomic<std::int64_t> now_ns{0};
  leftright::cache<std::string, session> sessions(
      {.max_entries = 100'000,
       .expire_after_write = session_cap,
       .expire_after_access = idle_limit,
       .ticker = [&] { return now_ns.load(std::memory_order_relaxed); }});  // ordered by the barrier

  std::vector<user_state> state(static_cast<std::size_t>(users));
  std::mt19937 setup(7);
  for (int u = 0; u < users; ++u) {
    state[static_cast<std::size_t>(u)].token = "token-" + std::to_string(u);
    state[static_cast<std::size_t>(u)].next_request = static_cast<int>(setup() % 120);
  }

  // Counts, each thread its own (summed at the end).
  struct counts {
    std::uint64_t requests = 0, first_logins = 0, after_break = 0, after_cap = 0, early = 0, violations = 0;
  };
  std::vector<counts> per_thread(threads);
  int minute = 0;
  std::barrier sync(threads + 1);

  auto worker = [&](int id) {
    std::mt19937 rng(static_cast<std::uint32_t>(100 + id));
    counts& c = per_thread[static_cast<std::size_t>(id)];
    for (;;) {
      sync.arrive_and_wait();  // the main thread has set the minute (or ended the day)
      if (minute >= day) return;
      for (int u = id; u < users; u += threads) {
        user_state& s = state[static_cast<std::size_t>(u)];
        if (s.next_request != minute) continue;
        ++c.requests;
        bool validated = false;
        const session got = sessions.get_or_load(s.token, [&](const std::string& token) {
          validated = true;  // the auth service: a new login for this user
          return session{"user-" + token.substr(6), minute};
        });
        const int idle = minute - s.last_request;
        if (validated) {
          if (s.login < 0) ++c.first_logins;
          else if (minute - s.login >= session_cap.count()) ++c.after_cap;
          else if (idle >= idle_limit.count()) ++c.after_break;
          else ++c.early;  // allowed (a cache may always miss), and counted
          s.login = minute;
        } else if (idle >= idle_limit.count() || minute - s.login >= session_cap.count() ||
                   got.login_minute != s.login) {  // served at its end, or after: too late
          ++c.violations;
        }
        s.last_request = minute;
        // The next request: soon while active; after a break when the stretch ends.
        if (minute >= s.active_until) {
          s.next_request = minute + 5 + static_cast<int>(rng() % 56);
          s.active_until = s.next_request + 20 + static_cast<int>(rng() % 100);
        } else {
          s.next_request = minute + 1 + static_cast<int>(rng() % 2);
        }
      }
      sync.arrive_and_wait();  // this minute's requests are done
    }
  };
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) pool.emplace_back(worker, id);
  for (minute = 0; minute <= day; ++minute) {
    now_ns.store(std::chrono::nanoseconds(minutes(minute)).count(), std::memory_order_relaxed);  // as above
    sync.arrive_and_wait();
    if (minute >= day) break;
    sync.arrive_and_wait();
  }
  for (auto& t : pool) t.join();

  counts total;
  for (const counts& c : per_thread) {
    total.requests += c.requests;
    total.first_logins += c.first_logins;
    total.after_break += c.after_break;
    total.after_cap += c.after_cap;
    total.early += c.early;
    total.violations += c.violations;
  }
  const auto st = sessions.stats();
  std::printf("users %d, a simulated day: %llu requests, %llu hits\n", users,
              static_cast<unsigned long long>(total.requests), static_cast<unsigned long long>(st.hits));
  std::printf("logins: %llu first, %llu after a break of %lld+ minutes, %llu after the %lld-hour cap, %llu early\n",
              static_cast<unsigned long long>(total.first_logins), static_cast<unsigned long long>(total.after_break),
              static_cast<long long>(idle_limit.count()), static_cast<unsigned long long>(total.after_cap),
              static_cast<long long>(session_cap.count() / 60), static_cast<unsigned long long>(total.early));
  std::printf("sessions expired: %llu; sessions held at the end: %zu\n",
              static_cast<unsigned long long>(st.expirations), sessions.size());
  std::printf("sessions served after they should have ended: %llu\n",
              static_cast<unsigned long long>(total.violations));
  return total.violations == 0 ? 0 : 1;
}
