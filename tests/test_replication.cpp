// SPDX-License-Identifier: Apache-2.0
// Replication on a real engine: each test case starts its own nats-server with JetStream on
// 127.0.0.1 (tests/support/replication_support.hpp). Built only when libnats and nats-server are found.
// LEFTRIGHT_TEST_OWN_EXECUTABLE: it links libnats, which the other tests do not need.
#include <leftright/replicated_map.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/nats_credentials.hpp"
#include "support/replication_support.hpp"

namespace {

using leftright::replication_errc;
using leftright::replication_error;
using leftright_test::eventually;
using leftright_test::nats_server;
using u64 = std::uint64_t;

// Every batch of these tests writes keys a and b to the same value (the invariant readers
// check), and one more key of its own.
constexpr u64 key_a = 1'000'000;
constexpr u64 key_b = 1'000'001;

/// Runs f, which must throw a replication_error of this code whose message names each of
/// `mentions`; `returned` says what went wrong if f returned instead.
template <class F>
void check_refused(F&& f, replication_errc code, const std::string& returned,
                   std::initializer_list<std::string> mentions = {}) {
  try {
    std::forward<F>(f)();
  } catch (const replication_error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    for (const auto& m : mentions) CHECK_THAT(e.what(), Catch::Matchers::Contains(m));
    return;
  }
  FAIL(returned);
}

u64 mix(u64 k, u64 v) {
  u64 x = k * 0x9E3779B97F4A7C15ULL ^ (v + 0x632BE59BD9B4E019ULL);
  x ^= x >> 31;
  return x * 0xBF58476D1CE4E5B9ULL;
}

/// What a map shows, in one number: the sum of mix(key, value) over its entries, and its size.
struct fingerprint {
  u64 sum = 0;
  u64 size = 0;
  bool operator==(const fingerprint&) const = default;
};
template <class Range>
fingerprint fingerprint_of(const Range& r) {
  fingerprint f;
  for (const auto& [k, v] : r) {
    f.sum += mix(k, v);
    ++f.size;
  }
  return f;
}

/// The model: the map each version shows (as a fingerprint).
struct model {
  std::map<u64, u64> state;
  std::vector<fingerprint> at{fingerprint{}};  // at[v]
  /// Batch v of the workload: a = b = v, key v % 97 = v; every 10th batch erases key (v/10) % 97.
  template <class Writer>
  u64 publish_batch(Writer& w) {
    const u64 v = at.size();
    queue(w, v);
    const u64 got = w.publish();
    record(v);
    return got;
  }
  template <class Writer>
  static void queue(Writer& w, u64 v) {
    w.insert_or_assign(key_a, v);
    w.insert_or_assign(key_b, v);
    w.insert_or_assign(v % 97, v);
    if (v % 10 == 0) w.erase((v / 10) % 97);
  }
  void record(u64 v) {
    state[key_a] = v;
    state[key_b] = v;
    state[v % 97] = v;
    if (v % 10 == 0) state.erase((v / 10) % 97);
    at.push_back(fingerprint_of(state));
  }
};

/// Reader threads on a follower: every read must show a == b, a version no lower than the last
/// one, and (when given a model) exactly the model's map at that version. Failures are
/// collected and asserted after join (Catch2 is not thread-safe).
template <class Factory>
class read_checker {
 public:
  read_checker(Factory f, const model* m, int threads = 1) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, f, m] {
        auto r = f.make_reader();
        u64 last = 0;
        do {
          auto g = r.read();
          const u64 v = g.version();
          const auto* a = g.find(key_a);
          const auto* b = g.find(key_b);
          std::string bad;
          if (v < last) bad = "version went down from " + std::to_string(last) + " to " + std::to_string(v);
          if ((a == nullptr) != (b == nullptr) || (a != nullptr && *a != *b)) bad = "a != b at " + std::to_string(v);
          if (m != nullptr && v < m->at.size() && !(fingerprint_of(g) == m->at[v])) {
            bad = "state differs from the model at version " + std::to_string(v);
          }
          last = v;
          if (!bad.empty()) {
            std::lock_guard lock(mu_);
            failures_.push_back(bad);
          }
          std::this_thread::yield();  // 2 cores: leave the follower's thread room to run
          // At least one read, however short the run. relaxed: a stop flag; join() orders the rest.
        } while (!stop_.load(std::memory_order_relaxed));
      });
    }
  }
  ~read_checker() { stop(); }
  void stop() {
    stop_.store(true, std::memory_order_relaxed);  // relaxed: join() below synchronizes
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::vector<std::string> failures() const { return failures_; }

 private:
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> failures_;
};

using detail_writer = leftright::detail::replication::replica_writer<u64, u64, leftright::default_hash<u64>,
                                                                      leftright::default_eq<u64>, leftright::default_traits>;

leftright::replication_options options_for(const nats_server& s, const std::string& name) {
  leftright::replication_options o;
  o.url = s.url();
  o.name = name;
  o.timeout = std::chrono::milliseconds(2000);
  return o;
}

/// w.publish(), retried while the engine answers unreachable or unavailable (just restarted);
/// mending: also while the last reconnection failed on a credentials file mended since (protocol,
/// until the client's next attempt reads it).
template <class Writer>
u64 publish_retrying(Writer& w, bool mending = false) {
  u64 v = 0;
  std::string last;
  const bool published = eventually([&] {
    try {
      v = w.publish();
      return true;
    } catch (const replication_error& e) {
      last = e.what();
      const bool retry = e.code() == replication_errc::unreachable || e.code() == replication_errc::engine ||
                         (mending && e.code() == replication_errc::protocol);
      if (!retry) throw;
      return false;
    }
  }, std::chrono::seconds(20));
  INFO("last error: " << last);
  REQUIRE(published);
  return v;
}

/// `o` for the process named `id`, taking the leader's lease over when `take_over`.
leftright::replication_options as_member(leftright::replication_options o, std::string id, bool take_over = false) {
  o.id = std::move(id);
  o.take_over = take_over;
  return o;
}

}  // namespace

TEST_CASE("replication: a replica's writer jumps forward to a snapshot's version, never back", "[replication]") {
  // No engine: the map_writer surface a follower re-bootstraps with (skip_to).
  detail_writer w = leftright::detail::replication::make_writer_at<u64, u64, leftright::default_hash<u64>,
                                                                     leftright::default_eq<u64>,
                                                                     leftright::default_traits>(
      leftright::detail::replication::load_table<u64, u64, leftright::default_hash<u64>, leftright::default_eq<u64>,
                                                 leftright::default_traits>{{1, 1}},
      7);
  auto r = w.make_reader();
  CHECK(r.version() == 7);
  CHECK(r.get(1) == 1);
  w.insert_or_assign(2, 2);
  CHECK(w.publish() == 8);
  w.clear();
  w.insert_or_assign(3, 3);
  w.skip_to(20);
  CHECK(w.publish() == 20);  // one batch: the old state is gone, the new one complete
  CHECK(r.version() == 20);
  CHECK(r.size() == 1);
  CHECK(r.get(3) == 3);
  w.insert_or_assign(4, 4);
  CHECK(w.publish() == 21);  // and on by one from there; the other copy caught up
  w.skip_to(5);              // not forward: no effect
  w.erase(4);
  CHECK(w.publish() == 22);
  CHECK(r.size() == 1);
  // An empty batch can jump too.
  w.skip_to(30);
  w.discard();
  CHECK(w.publish() == 30);
}

TEST_CASE("replication: a log message's position is read from both forms of its reply subject; others are refused",
          "[replication]") {
  // No engine: position_of reads the reply subject nats-server 2.9 sends (7 tokens after
  // "$JS.ACK.") and the newer form (domain and account first, more tokens after the pending count).
  using channel = leftright::detail::replication::channel;
  REQUIRE(nats_Open(-1) == NATS_OK);  // natsMsg_Destroy hands messages to the library's collector thread
  const auto position = [](const char* reply) {
    natsMsg* m = nullptr;
    REQUIRE(natsMsg_Create(&m, "lr.m.log", reply, "x", 1) == NATS_OK);
    leftright::detail::replication::msg_ptr owned(m);
    return channel::position_of(m);
  };
  auto p = position("$JS.ACK.LR_m.c1.1.42.42.1733390000000000000.7");
  CHECK(p.sequence == 42);
  CHECK(p.pending == 7);
  p = position("$JS.ACK._.ACCHASH.LR_m.c1.1.18446744073709551615.9.1733390000000000000.0.rnd");
  CHECK(p.sequence == ~u64{0});
  CHECK(p.pending == 0);
  p = position("$JS.ACK.dom.ACCHASH.LR_m.c1.1.5.5.1733390000000000000.3");
  CHECK(p.sequence == 5);
  CHECK(p.pending == 3);
  for (const char* bad : {"", "_INBOX.abc", "$JS.ACK.LR_m.c1.1.42.42.1733390000000000000",
                          "$JS.ACK.LR_m.c1.1.x42.42.1733390000000000000.7", "$JS.ACK.LR_m.c1.1.42.42.1.-7",
                          "$JS.ACK.a.b.LR_m.c1.1.42.42.1733390000000000000"}) {
    CHECK_THROWS_AS(position(*bad != '\0' ? bad : nullptr), replication_error);
  }
}

TEST_CASE("replication: a fresh follower bootstraps from the snapshot and tails the log to the leader's version",
          "[replication]") {
  nats_server server;
  auto opts = options_for(server, "boot");
  opts.keep_log = 100;
  auto [leader, leader_reader] = leftright::open_leader<u64, u64>(opts);
  model m;
  for (int i = 0; i < 1000; ++i) m.publish_batch(leader);
  leader.snapshot();  // at 1000; the log is purged below 901
  for (int i = 0; i < 1000; ++i) m.publish_batch(leader);
  REQUIRE(leader.version() == 2000);
  REQUIRE(fingerprint_of(leader_reader.read()) == m.at[2000]);

  auto [f, reader] = leftright::open_follower<u64, u64>(opts);
  {
    // The snapshot's version, or later if the follower's thread already applied the log; no
    // earlier (it started from the snapshot: the log below 901 is gone, and it never had to
    // re-bootstrap, checked below).
    auto g = reader.read();
    CHECK(g.version() >= 1000);
    CHECK(fingerprint_of(g) == m.at[g.version()]);
  }
  read_checker checker(f.factory(), &m);
  INFO("follower at " << f.version() << ", lag " << f.lag() << ", last error: " << f.last_error());
  REQUIRE(f.wait_for(2000, std::chrono::seconds(20)));
  checker.stop();
  CHECK(checker.failures().empty());
  for (const auto& e : checker.failures()) INFO(e);
  CHECK(fingerprint_of(reader.read()) == m.at[2000]);
  CHECK(f.rebootstraps() == 0);
  CHECK(f.connected());
  CHECK(f.lag() == 0);
}

TEST_CASE("replication: followers see every batch whole while the leader publishes, erase_if included",
          "[replication]") {
  nats_server server;
  auto opts = options_for(server, "tail");
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  auto [f, reader] = leftright::open_follower<u64, u64>(opts);
  model m;  // computed before any reader thread reads it
  for (u64 v = 1; v <= 300; ++v) m.record(v);
  read_checker checker(f.factory(), &m);
  for (u64 v = 1; v <= 300; ++v) {
    model::queue(leader, v);
    REQUIRE(leader.publish() == v);
  }
  REQUIRE(f.wait_for(300, std::chrono::seconds(20)));
  // erase_if is logged as the keys it erased.
  leader.erase_if([](u64 k, u64) { return k < 50; });
  const u64 v = leader.publish();
  REQUIRE(f.wait_for(v, std::chrono::seconds(10)));
  checker.stop();
  CHECK(checker.failures().empty());
  auto g = reader.read();
  CHECK(fingerprint_of(g) == fingerprint_of(lr.read()));
  for (u64 k = 0; k < 50; ++k) CHECK_FALSE(g.contains(k));
}

TEST_CASE("replication: wait_for() callers waiting for different versions each return once theirs is shown",
          "[replication]") {
  // The follower wakes its waiters only when it shows the lowest version one of them asked for
  // (not after every batch): each waiter, woken early, must ask again, and one that gave up
  // leaves a stale lowest version behind (a spurious wake later, never a lost one).
  nats_server server;
  auto opts = options_for(server, "waiters");
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  auto [f, reader] = leftright::open_follower<u64, u64>(opts);
  CHECK_FALSE(f.wait_for(1, std::chrono::milliseconds(50)));
  const std::vector<u64> targets = {1, 2, 5, 9, 10, 10, 20};
  std::vector<int> ok(targets.size(), 0);  // element i written by waiter i only, read after join
  std::vector<u64> seen(targets.size(), 0);
  std::atomic<std::size_t> returned{0};
  std::vector<std::thread> waiters;
  auto& fol = f;  // a structured binding: clang 14 cannot capture it
  for (std::size_t i = 0; i < targets.size(); ++i) {
    waiters.emplace_back([&, i] {
      // A minute: a wait_for() that returns only at its timeout still returns true (the
      // version is there by then); a lost wake shows as a waiter not back within 10 s below.
      ok[i] = fol.wait_for(targets[i], std::chrono::seconds(60)) ? 1 : 0;
      seen[i] = fol.version();
      // relaxed: a count only; ok and seen are read after join.
      returned.fetch_add(1, std::memory_order_relaxed);
    });
  }
  for (u64 v = 1; v <= 20; ++v) {
    leader.insert_or_assign(v, v);
    REQUIRE(leader.publish() == v);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the follower shows most versions in turn
  }
  // relaxed: a count only (see above).
  CHECK(eventually([&] { return returned.load(std::memory_order_relaxed) == targets.size(); }));
  for (auto& t : waiters) t.join();
  for (std::size_t i = 0; i < targets.size(); ++i) {
    INFO("the waiter for version " << targets[i]);
    CHECK(ok[i] == 1);
    CHECK(seen[i] >= targets[i]);
  }
  CHECK(f.wait_for(20, std::chrono::milliseconds(0)));
}

TEST_CASE("replication: wait_for() takes the longest timeout as waiting for ever; a short one on a future version "
          "returns false", "[replication]") {
  nats_server server;
  const auto opts = options_for(server, "waitmax");
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f"));
  for (u64 v = 1; v <= 2; ++v) {
    leader.insert_or_assign(v, v);
    REQUIRE(leader.publish() == v);
  }
  REQUIRE(f.wait_for(2, std::chrono::seconds(10)));
  CHECK(f.wait_for(2, std::chrono::milliseconds::max()));  // reached: at once
  CHECK_FALSE(f.wait_for(100, std::chrono::milliseconds(50)));
  CHECK_FALSE(f.wait_for(100, std::chrono::milliseconds(0)));
  CHECK_FALSE(f.wait_for(100, std::chrono::milliseconds::min()));
  // A version not shown yet, with the longest timeout: it waits (an overflowed deadline would
  // lie in the past and return false at once), and returns once the version is shown.
  int reached = -1;
  std::thread waiter([&reached, &f = f] { reached = f.wait_for(3, std::chrono::milliseconds::max()) ? 1 : 0; });
  leader.insert_or_assign(3, 3);
  REQUIRE(leader.publish() == 3);
  REQUIRE(f.wait_for(3, std::chrono::seconds(10)));
  waiter.join();  // orders `reached`
  CHECK(reached == 1);
  // The leader's wait for acks saturates its deadline too (the report is in the bucket first).
  REQUIRE(eventually([&leader = leader] {
    const auto acks = leader.followers();
    return acks.size() == 1 && acks[0].version >= 3;
  }));
  CHECK(leader.wait_for_acks(3, 1, std::chrono::milliseconds::max()) == 1);
}

TEST_CASE("replication: of two leaders exactly one wins each version; the other is fenced and shows nothing",
          "[replication]") {
  using leader_t = std::pair<leftright::replicated_writer<u64, u64>, leftright::map_reader<u64, u64>>;
  nats_server server;
  auto opts_a = options_for(server, "fence");
  opts_a.id = "a";
  std::optional<leader_t> a(leftright::open_leader<u64, u64>(opts_a));
  for (u64 v = 1; v <= 10; ++v) {
    a->first.insert_or_assign(key_a, v);
    a->first.insert_or_assign(key_b, v);
    a->first.publish();
  }
  auto opts_b = opts_a;
  opts_b.id = "b";
  // The lease keeps a second leader out, unless it takes over (a failover).
  check_refused(
      [&] { (void)leftright::open_leader<u64, u64>(opts_b); }, replication_errc::lease_held,
      "a second leader opened without taking over", {"another leader: a"});
  opts_a.take_over = opts_b.take_over = true;
  std::optional<leader_t> b(leftright::open_leader<u64, u64>(opts_b));
  CHECK(b->first.version() == 10);  // it loaded the log
  auto [f, fr] = leftright::open_follower<u64, u64>(opts_a);
  read_checker checker(f.factory(), nullptr);

  // Each round both try the next version with values of their own; whoever goes first wins it,
  // the other is fenced, shows nothing of its batch, and reopens (loading the log) to go on.
  u64 wins_a = 0, wins_b = 0;
  for (u64 round = 0; round < 10; ++round) {
    const u64 next = a->first.version() + 1;
    REQUIRE(b->first.version() + 1 == next);
    auto attempt = [&](std::optional<leader_t>& l, const leftright::replication_options& o, u64 value) {
      auto& [w, r] = *l;
      w.insert_or_assign(key_a, value);
      w.insert_or_assign(key_b, value);
      try {
        const u64 got = w.publish();
        CHECK(got == next);
        return true;
      } catch (const replication_error& e) {
        CHECK(e.code() == replication_errc::fenced);
        CHECK(w.version() == next - 1);  // nothing visible locally
        CHECK(*r.read().find(key_a) != value);
        CHECK(w.pending() == 2);  // still queued
        l.reset();
        l.emplace(leftright::open_leader<u64, u64>(o));
        return false;
      }
    };
    bool won_a = false, won_b = false;
    if (round % 3 != 1) {
      won_a = attempt(a, opts_a, 1000 + round);
      won_b = attempt(b, opts_b, 2000 + round);
    } else {
      won_b = attempt(b, opts_b, 2000 + round);
      won_a = attempt(a, opts_a, 1000 + round);
    }
    CHECK(won_a != won_b);  // exactly one
    wins_a += won_a;
    wins_b += won_b;
    REQUIRE(f.wait_for(next, std::chrono::seconds(10)));
    CHECK(*fr.read().find(key_a) == (won_a ? 1000 + round : 2000 + round));
    CHECK(a->first.version() == next);  // the loser reloaded the winner's batch
    CHECK(b->first.version() == next);
  }
  CHECK(wins_a >= 1);
  CHECK(wins_b >= 1);
  checker.stop();
  CHECK(checker.failures().empty());
}

namespace {

/// A leader and a follower at version 20; outage(server) makes the engine unreachable, heal(server)
/// brings it back. While it is out the leader's publish fails with nothing visible and the
/// follower keeps serving version 20; once back, the same batch is published (or recognised as
/// a duplicate of the attempt that landed) and the follower catches up.
template <class Outage, class Heal>
void engine_outage(const std::string& name, Outage outage, Heal heal) {
  nats_server server;
  auto opts = options_for(server, name);
  opts.timeout = std::chrono::milliseconds(1000);
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  read_checker checker(f.factory(), nullptr);
  u64 value = 0;
  auto queue = [&, &leader = leader] {
    ++value;
    leader.insert_or_assign(key_a, value);
    leader.insert_or_assign(key_b, value);
  };
  for (int i = 0; i < 20; ++i) {
    queue();
    leader.publish();
  }
  REQUIRE(f.wait_for(20, std::chrono::seconds(10)));

  outage(server);
  queue();
  bool failed = false;
  try {
    const u64 v = leader.publish();
    INFO("published version " << v);
  } catch (const replication_error& e) {
    failed = true;
    CHECK(e.code() == replication_errc::unreachable);
  }
  CHECK(failed);
  CHECK(leader.version() == 20);
  CHECK(*lr.read().find(key_a) == 20);
  CHECK(leader.pending() == 2);
  CHECK(eventually([&f = f] { return !f.connected(); }));
  CHECK(fr.version() == 20);
  CHECK(*fr.read().find(key_a) == 20);

  heal(server);
  REQUIRE(eventually([&leader = leader] {
    try {
      leader.publish();
      return true;
    } catch (const replication_error& e) {
      if (e.code() != replication_errc::unreachable) throw;
      return false;
    }
  }, std::chrono::seconds(20)));
  CHECK(leader.version() == 21);
  for (int i = 0; i < 5; ++i) {
    queue();
    leader.publish();
  }
  REQUIRE(f.wait_for(26, std::chrono::seconds(20)));
  CHECK(f.connected());
  CHECK(*fr.read().find(key_a) == value);
  checker.stop();
  CHECK(checker.failures().empty());
}

}  // namespace

TEST_CASE("replication: engine killed (SIGKILL) and restarted on its store: publish fails meanwhile, followers serve",
          "[replication]") {
  engine_outage("killed", [](nats_server& s) { s.kill(); }, [](nats_server& s) { s.start(); });
}

TEST_CASE("replication: engine stopped (SIGSTOP, a silent peer) and continued: publish fails meanwhile, followers serve",
          "[replication]") {
  engine_outage("stopped", [](nats_server& s) { s.stop_signal(); }, [](nats_server& s) { s.cont_signal(); });
}

TEST_CASE("replication: a follower behind the retained log re-bootstraps, jumping forward", "[replication]") {
  nats_server server;
  auto opts = options_for(server, "behind");
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  model m;
  for (u64 v = 1; v <= 300; ++v) m.record(v);
  for (u64 v = 1; v <= 100; ++v) {
    model::queue(leader, v);
    leader.publish();
  }
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  std::mutex mu;
  std::vector<std::pair<u64, u64>> jumps;
  f.on_rebootstrap([&](u64 from, u64 to) {
    std::lock_guard lock(mu);
    jumps.emplace_back(from, to);
  });
  read_checker checker(f.factory(), &m);
  REQUIRE(f.wait_for(100, std::chrono::seconds(10)));
  f.pause();
  for (u64 v = 101; v <= 200; ++v) {
    model::queue(leader, v);
    leader.publish();
  }
  leader.snapshot();  // at 200; the log below 201 is purged
  for (u64 v = 201; v <= 300; ++v) {
    model::queue(leader, v);
    leader.publish();
  }
  CHECK(fr.version() == 100);  // paused
  f.resume();
  REQUIRE(f.wait_for(300, std::chrono::seconds(20)));
  checker.stop();
  CHECK(checker.failures().empty());
  CHECK(f.rebootstraps() == 1);
  std::lock_guard lock(mu);
  REQUIRE(jumps.size() == 1);
  CHECK(jumps[0] == std::pair<u64, u64>(100, 200));
}

TEST_CASE("replication: a batch larger than the engine's message limit is a typed error; nothing is lost",
          "[replication]") {
  nats_server server(64 * 1024);
  auto opts = options_for(server, "big");
  auto [leader, lr] = leftright::open_leader<std::string, std::string>(opts);
  auto [f, fr] = leftright::open_follower<std::string, std::string>(opts);
  leader.insert_or_assign("small", "x");
  REQUIRE(leader.publish() == 1);
  for (int i = 0; i < 100; ++i) leader.insert_or_assign("k" + std::to_string(i), std::string(1024, 'v'));
  check_refused([&leader = leader] { leader.publish(); }, replication_errc::too_large,
                "a batch over the limit was published");
  CHECK(leader.version() == 1);
  CHECK(leader.pending() == 100);
  CHECK_FALSE(lr.read().contains("k0"));
  // Split in two it fits; the follower gets all of it.
  leader.discard();
  for (int i = 0; i < 50; ++i) leader.insert_or_assign("k" + std::to_string(i), std::string(1024, 'v'));
  REQUIRE(leader.publish() == 2);
  for (int i = 50; i < 100; ++i) leader.insert_or_assign("k" + std::to_string(i), std::string(1024, 'v'));
  REQUIRE(leader.publish() == 3);
  // A snapshot larger than the limit goes in chunks.
  leader.snapshot();
  auto [g, gr] = leftright::open_follower<std::string, std::string>(opts);
  CHECK(gr.version() == 3);
  CHECK(gr.size() == 101);
  REQUIRE(f.wait_for(3, std::chrono::seconds(10)));
  CHECK(fr.size() == 101);
}

namespace {

/// Runs this test executable's hidden follower case ([replication-child]) as a child process,
/// following map `name` at url and writing "<version> <sum> <size> <ok>" to `out` whenever its
/// version moves. Returns its pid.
pid_t spawn_follower_child(const std::string& url, const std::string& name, const std::filesystem::path& out) {
  std::vector<std::string> args = {"/proc/self/exe", "[replication-child]"};
  std::vector<std::string> env = {"LEFTRIGHT_CHILD_URL=" + url, "LEFTRIGHT_CHILD_NAME=" + name,
                                  "LEFTRIGHT_CHILD_OUT=" + out.string()};
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) {
    throw std::runtime_error("cannot spawn the follower child");
  }
  return pid;
}

/// The child's last line: version, fingerprint, and whether every read so far was consistent.
struct child_report {
  u64 version = 0;
  fingerprint f;
  bool ok = false;
};
std::optional<child_report> read_child(const std::filesystem::path& out) {
  std::ifstream in(out);
  child_report r;
  int ok = 0;
  if (!(in >> r.version >> r.f.sum >> r.f.size >> ok)) return std::nullopt;
  r.ok = ok == 1;
  return r;
}

}  // namespace

TEST_CASE("replication child: a follower in a process of its own", "[.][replication-child]") {
  const char* url = std::getenv("LEFTRIGHT_CHILD_URL");
  const char* name = std::getenv("LEFTRIGHT_CHILD_NAME");
  const char* out = std::getenv("LEFTRIGHT_CHILD_OUT");
  REQUIRE(url != nullptr);
  REQUIRE(name != nullptr);
  REQUIRE(out != nullptr);
  leftright::replication_options o;
  o.url = url;
  o.name = name;
  auto [f, r] = leftright::open_follower<u64, u64>(o);
  bool ok = true;
  u64 last = 0;
  for (;;) {  // until killed (bounded by the parent)
    f.wait_for(last + 1, std::chrono::milliseconds(200));
    auto g = r.read();
    const u64 v = g.version();
    if (v == last && v != 0) continue;
    const auto* a = g.find(key_a);
    const auto* b = g.find(key_b);
    ok = ok && v >= last && (a == nullptr) == (b == nullptr) && (a == nullptr || *a == *b);
    const fingerprint fp = fingerprint_of(g);
    last = v;
    const std::string tmp = std::string(out) + ".tmp";
    std::ofstream(tmp) << v << ' ' << fp.sum << ' ' << fp.size << ' ' << (ok ? 1 : 0) << '\n';
    std::filesystem::rename(tmp, out);  // the parent reads whole lines only
  }
}

TEST_CASE("replication: a follower process killed (kill -9) mid-stream is restarted and catches up", "[replication]") {
  nats_server server;
  auto opts = options_for(server, "childkill");
  opts.keep_log = 10;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  model m;
  for (u64 v = 1; v <= 100; ++v) m.record(v);
  for (u64 v = 1; v <= 40; ++v) {
    model::queue(leader, v);
    leader.publish();
  }
  char tmpl[] = "/tmp/leftright-child-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  const std::filesystem::path dir = tmpl;
  const auto out = dir / "report";

  pid_t child = spawn_follower_child(server.url(), opts.name, out);
  REQUIRE(eventually([&] { auto r = read_child(out); return r && r->version >= 40; }, std::chrono::seconds(20)));
  for (u64 v = 41; v <= 60; ++v) {  // the child is following while it is killed
    model::queue(leader, v);
    leader.publish();
    if (v == 50) {
      ::kill(child, SIGKILL);
      int status = 0;
      ::waitpid(child, &status, 0);
      CHECK(WIFSIGNALED(status));
    }
  }
  const auto before = read_child(out);
  REQUIRE(before);
  CHECK(before->ok);
  CHECK(before->f == m.at[before->version]);
  leader.snapshot();  // at 60; the log keeps 51 on
  for (u64 v = 61; v <= 100; ++v) {
    model::queue(leader, v);
    leader.publish();
  }

  std::filesystem::remove(out);
  child = spawn_follower_child(server.url(), opts.name, out);
  const bool reached = eventually([&] { auto r = read_child(out); return r && r->version == 100; },
                                  std::chrono::seconds(20));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  const auto after = read_child(out);
  std::filesystem::remove_all(dir);
  REQUIRE(reached);
  REQUIRE(after);
  CHECK(after->ok);
  CHECK(after->f == m.at[100]);
}

namespace {

/// A replicated map whose versions carry a label (Traits::meta_type).
struct labelled_traits : leftright::default_traits {
  using meta_type = std::string;
};
using labelled_leader = leftright::replicated_writer<u64, u64, leftright::default_hash<u64>,
                                                     leftright::default_eq<u64>, labelled_traits>;

/// The label version v shows: batches whose version is a multiple of 3 set none, so they keep
/// the one before.
std::string label_at(u64 v) {
  while (v % 3 == 0 && v > 0) --v;
  return v == 0 ? std::string() : "v" + std::to_string(v);
}

/// Publishes versions from..to on w, labelling those label_at() says.
void publish_labelled(labelled_leader& w, u64 from, u64 to) {
  for (u64 v = from; v <= to; ++v) {
    model::queue(w, v);
    if (v % 3 != 0) w.set_meta("v" + std::to_string(v));
    REQUIRE(w.publish() == v);
  }
}

/// Reads a follower until stopped: every read's label must be label_at(its version).
class label_checker {
 public:
  template <class Factory>
  explicit label_checker(Factory f)
      : thread_([this, f] {
          auto r = f.make_reader();
          do {
            auto g = r.read();
            if (g.meta() != label_at(g.version())) {
              failures_.push_back("version " + std::to_string(g.version()) + " shows label '" + g.meta() + "'");
            }
            std::this_thread::yield();
            // relaxed: a stop flag; join() orders the rest.
          } while (!stop_.load(std::memory_order_relaxed));
        }) {}
  ~label_checker() { stop(); }
  void stop() {
    stop_.store(true, std::memory_order_relaxed);  // relaxed: join() below synchronizes
    if (thread_.joinable()) thread_.join();
  }
  const std::vector<std::string>& failures() const { return failures_; }  // after stop()

 private:
  std::vector<std::string> failures_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

TEST_CASE("replication: metadata travels with its batch: from the log, from a snapshot, after a re-bootstrap, "
          "to a reopened leader",
          "[replication]") {
  nats_server server;
  auto opts = options_for(server, "labels");
  auto [leader, lr] = leftright::open_leader<u64, u64, leftright::default_hash<u64>, leftright::default_eq<u64>,
                                             labelled_traits>(opts);
  // A follower from the start: every label through the log.
  auto [tail, tail_reader] = leftright::open_follower<u64, u64, leftright::default_hash<u64>,
                                                      leftright::default_eq<u64>, labelled_traits>(opts);
  label_checker tail_check(tail.factory());
  publish_labelled(leader, 1, 100);
  REQUIRE(tail.wait_for(100, std::chrono::seconds(10)));
  tail.pause();  // falls behind the retained log below
  publish_labelled(leader, 101, 120);
  leader.snapshot();  // at 120, labelled "v119"; the log below 121 is purged
  publish_labelled(leader, 121, 150);
  CHECK(lr.read().meta() == label_at(150));

  // A fresh follower: the snapshot's label, then the log's.
  auto [fresh, fresh_reader] = leftright::open_follower<u64, u64, leftright::default_hash<u64>,
                                                        leftright::default_eq<u64>, labelled_traits>(opts);
  CHECK(fresh_reader.read().meta() == label_at(fresh_reader.read().version()));
  label_checker fresh_check(fresh.factory());
  REQUIRE(fresh.wait_for(150, std::chrono::seconds(10)));

  // The paused follower re-bootstraps from the snapshot and goes on from there.
  tail.resume();
  REQUIRE(tail.wait_for(150, std::chrono::seconds(20)));
  CHECK(tail.rebootstraps() == 1);
  tail_check.stop();
  fresh_check.stop();
  for (const auto& e : tail_check.failures()) FAIL_CHECK("tailing follower: " << e);
  for (const auto& e : fresh_check.failures()) FAIL_CHECK("fresh follower: " << e);
  CHECK(tail_reader.read().meta() == "v149");
  CHECK(fresh_reader.read().meta() == "v149");

  // A leader reopened on the engine's state shows the last label, and goes on from it.
  {
    auto moved = std::move(leader);  // the old writer goes away, giving its lease up
  }
  auto [again, again_reader] = leftright::open_leader<u64, u64, leftright::default_hash<u64>,
                                                      leftright::default_eq<u64>, labelled_traits>(opts);
  CHECK(again.version() == 150);
  CHECK(again.meta() == "v149");
  CHECK(again_reader.read().meta() == "v149");

  // Maps with and without metadata refuse each other's snapshots, naming both.
  check_refused(
      [&] { auto plain = leftright::open_follower<u64, u64>(opts); }, replication_errc::protocol,
      "a follower without metadata opened a labelled map", {"u64+meta:str"});
}

TEST_CASE("replication: streams made without direct gets (an older version's) are read through the API",
          "[replication]") {
  nats_server server;
  auto opts = options_for(server, "olddirect");
  {
    // The two streams as a version before direct gets made them.
    natsConnection* nc = nullptr;
    REQUIRE(natsConnection_ConnectTo(&nc, opts.url.c_str()) == NATS_OK);
    jsCtx* js = nullptr;
    REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
    for (const auto& [stream, subject] : {std::pair<std::string, std::string>{"LR_olddirect", "lr.olddirect.log"},
                                          {"LRS_olddirect", "lr.olddirect.snap"}}) {
      jsStreamConfig cfg;
      jsStreamConfig_Init(&cfg);
      cfg.Name = stream.c_str();
      const char* subjects[] = {subject.c_str()};
      cfg.Subjects = subjects;
      cfg.SubjectsLen = 1;
      cfg.Storage = js_FileStorage;
      jsStreamInfo* si = nullptr;
      REQUIRE(js_AddStream(&si, js, &cfg, nullptr, nullptr) == NATS_OK);
      CHECK_FALSE(si->Config->AllowDirect);
      jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  model m;
  for (int i = 0; i < 20; ++i) m.publish_batch(leader);
  leader.snapshot();  // at 20; the log below 21 is purged
  for (int i = 0; i < 20; ++i) m.publish_batch(leader);
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  CHECK(fr.read().version() >= 20);  // from the snapshot, read through the API
  REQUIRE(f.wait_for(40, std::chrono::seconds(10)));
  CHECK(fingerprint_of(fr.read()) == m.at[40]);
}

TEST_CASE("replication: more copies than the engine can keep is a typed error at open, with the engine's reason",
          "[replication]") {
  nats_server server;  // a single server: one copy of each stream at most
  auto opts = options_for(server, "replicas");
  opts.replicas = 3;
  try {
    auto leader = leftright::open_leader<u64, u64>(opts);
    FAIL("a single server made streams of 3 replicas");
  } catch (const replication_error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("create stream LR_replicas") != std::string::npos);
  }
  opts.replicas = 1;
  auto [leader, r] = leftright::open_leader<u64, u64>(opts);  // the same name, now possible
  leader.insert(1, 1);
  CHECK(leader.publish() == 1);
}

TEST_CASE("replication: a lease_ttl of 0 or less is refused at open, before the lease bucket is made",
          "[replication][lease]") {
  nats_server server;
  auto opts = options_for(server, "leasettl");
  for (const auto ttl : {std::chrono::milliseconds(0), std::chrono::milliseconds(-1)}) {
    opts.lease_ttl = ttl;
    check_refused([&] { (void)leftright::open_leader<u64, u64>(opts); }, replication_errc::protocol,
                  "a leader opened with a lease that never expires", {"lease_ttl", "positive"});
    check_refused([&] { (void)leftright::open_follower<u64, u64>(opts); }, replication_errc::protocol,
                  "a follower opened with a lease that never expires", {"lease_ttl", "positive"});
  }
  // Nothing was made with a TTL of 0: the first valid open makes the bucket with its own TTL,
  // which expires a lease that is not renewed.
  opts.lease_ttl = std::chrono::milliseconds(1000);
  leftright::detail::replication::channel ch(opts.url, opts.name, opts.timeout, opts.lease_ttl);
  ch.acquire_lease("gone", false);
  auto next = as_member(opts, "next");
  CHECK(eventually([&] {
    try {
      (void)leftright::open_leader<u64, u64>(next);
      return true;
    } catch (const replication_error& e) {
      if (e.code() != replication_errc::lease_held) throw;
      return false;
    }
  }));
}

TEST_CASE("replication: a leader stopped cleanly gives its lease up: the next one opens at once and goes on",
          "[replication][lease]") {
  using leader_t = std::pair<leftright::replicated_writer<u64, u64>, leftright::map_reader<u64, u64>>;
  nats_server server;
  auto opts = options_for(server, "release");  // lease_ttl 10 s: far longer than this test
  model m;
  {
    auto [w, r] = leftright::open_leader<u64, u64>(as_member(opts, "first"));
    for (int i = 0; i < 5; ++i) m.publish_batch(w);
  }
  // The same id, then another, then default ids (one made at each open): none takes over.
  for (const std::string id : {"first", "second", "", ""}) {
    INFO("id '" << id << "'");
    auto [w, r] = leftright::open_leader<u64, u64>(as_member(opts, id));
    REQUIRE(w.version() == m.at.size() - 1);
    const u64 v = m.publish_batch(w);
    CHECK(v == m.at.size() - 1);
    CHECK(fingerprint_of(r.read()) == m.at[v]);
  }
  // A moved-from writer gives nothing up: the one it moved to still holds the lease.
  std::optional<leader_t> held(leftright::open_leader<u64, u64>(as_member(opts, "mover")));
  auto moved = std::move(held->first);
  held.reset();
  check_refused(
      [&] { (void)leftright::open_leader<u64, u64>(as_member(opts, "other")); }, replication_errc::lease_held,
      "a leader opened while a moved writer held the lease", {"another leader: mover"});
  CHECK(moved.version() == 9);  // 5, then one by each of the four leaders after the first
  CHECK(m.publish_batch(moved) == 10);
}

TEST_CASE("replication: a deposed leader's stop leaves the lease of the leader that took over",
          "[replication][lease]") {
  using leader_t = std::pair<leftright::replicated_writer<u64, u64>, leftright::map_reader<u64, u64>>;
  nats_server server;
  auto opts = options_for(server, "deposed");
  model m;
  std::optional<leader_t> a(leftright::open_leader<u64, u64>(as_member(opts, "a")));
  m.publish_batch(a->first);
  auto [b, br] = leftright::open_leader<u64, u64>(as_member(opts, "b", /*take_over=*/true));
  a.reset();  // its delete expects its own revision of the lease: refused
  check_refused(
      [&] { (void)leftright::open_leader<u64, u64>(as_member(opts, "c")); }, replication_errc::lease_held,
      "a deposed leader's stop deleted the lease of the leader that took over", {"another leader: b"});
  CHECK(m.publish_batch(b) == 2);

  // A run that crashed holding the lease under an id: the next run of that id takes it back at
  // once, without take_over; the crashed run's revision no longer deletes it.
  nats_server server2;
  auto opts2 = options_for(server2, "crashed");
  std::optional<leftright::detail::replication::channel> crashed;
  crashed.emplace(opts2.url, opts2.name, opts2.timeout, opts2.lease_ttl);
  crashed->acquire_lease("same", false);
  auto [w, wr] = leftright::open_leader<u64, u64>(as_member(opts2, "same"));
  crashed.reset();  // as if its writer stopped cleanly now: its revision is stale
  check_refused(
      [&] { (void)leftright::open_leader<u64, u64>(as_member(opts2, "other")); }, replication_errc::lease_held,
      "a stale revision deleted the lease", {"another leader: same"});
  w.insert(1, 1);
  CHECK(w.publish() == 1);
}

namespace {

/// A fresh directory under /tmp, removed with everything in it when this goes.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/leftright-warm-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

/// The names of the local snapshots in dir.
std::vector<std::string> local_snapshots(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.starts_with("snap-")) names.push_back(n);
  }
  return names;
}

/// Removes the engine's log below seq, with no snapshot to replace it: then only a local copy
/// can supply those versions (a cold follower could not start; a warm one must not need them).
void purge_engine_log_below(const leftright::replication_options& o, u64 seq) {
  leftright::detail::replication::channel ch(o.url, o.name, o.timeout, o.lease_ttl);
  ch.purge_log_below(seq);
}

/// options_for(), with a longer bound on each request: a loaded machine can make the engine's
/// first consumer slow to create, and a follower's subscribe must not time out then.
leftright::replication_options warm_options(const nats_server& s, const std::string& name) {
  auto o = options_for(s, name);
  o.timeout = std::chrono::milliseconds(5000);
  return o;
}

/// Publishes versions from..to of the model's workload on w (m recorded them already).
template <class Writer>
void publish_range(Writer& w, u64 from, u64 to) {
  for (u64 v = from; v <= to; ++v) {
    model::queue(w, v);
    REQUIRE(w.publish() == v);
  }
}

/// A follower with a local copy in dir follows w through version `to`, then is destroyed
/// (a clean stop: its last local snapshot is at `to`).
template <class Writer>
void follow_then_stop(const leftright::replication_options& fopts, Writer& w, u64 from, u64 to) {
  auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
  publish_range(w, from, to);
  const bool reached = f.wait_for(to, std::chrono::seconds(20));
  INFO("follower at " << f.version() << ", lag " << f.lag() << ", last error: " << f.last_error());
  REQUIRE(reached);
}

/// Opens a follower on its local copy at `from` and checks it as a user would: its first read
/// shows `from` or later, as the model has it; a reader thread checks every version it sees on
/// the way to `to`. Returns the follower and its reader, at `to`.
auto follow_warm(const leftright::replication_options& fopts, const model& m, u64 from, u64 to) {
  auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
  {
    auto g = fr.read();  // at open: the local copy's version (or later, if the thread applied some)
    CHECK(g.version() >= from);
    CHECK(fingerprint_of(g) == m.at[g.version()]);
  }
  read_checker checker(f.factory(), &m);
  INFO("follower at " << f.version() << ", last error: " << f.last_error());
  REQUIRE(f.wait_for(to, std::chrono::seconds(20)));
  checker.stop();
  for (const auto& e : checker.failures()) FAIL_CHECK(e);
  CHECK(fingerprint_of(fr.read()) == m.at[to]);
  return std::make_pair(std::move(f), std::move(fr));
}

/// What a warm-restart case starts from: a server, a directory for the follower's local copy,
/// the leader's options and the follower's (local_path: that directory).
struct warm_case {
  nats_server server;
  temp_dir dir;
  leftright::replication_options opts;
  leftright::replication_options fopts;
  explicit warm_case(const std::string& name) : opts(warm_options(server, name)), fopts(opts) {
    fopts.local_path = dir.path;
  }
};

}  // namespace

namespace {

/// A leader with a short lease: outage(server) makes the engine unreachable for longer than a
/// third of the lease's TTL, so that every publish meanwhile renews the lease first; heal(server)
/// brings it back. A renewal the engine did not answer is unreachable, never lease_held (nobody
/// else took the lease); once back, publishing goes on, from the lease as the engine holds it
/// then (a renewal that timed out here may have landed since, moving its revision on).
template <class Outage, class Heal>
void lease_outage(const std::string& name, Outage outage, Heal heal) {
  nats_server server;
  auto opts = as_member(options_for(server, name), "leader");
  opts.timeout = std::chrono::milliseconds(500);
  opts.lease_ttl = std::chrono::milliseconds(3000);
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  publish_range(leader, 1, 5);
  outage(server);
  // Longer than lease_ttl / 3 since the last renewal (the open's): each publish renews first.
  std::this_thread::sleep_for(opts.lease_ttl / 3 + std::chrono::milliseconds(100));
  for (int i = 0; i < 2; ++i) {
    model::queue(leader, 6);
    check_refused([&leader = leader] { leader.publish(); }, replication_errc::unreachable,
                  "a publish during an outage succeeded");
    CHECK(leader.version() == 5);
  }
  heal(server);
  // The engine may answer "unavailable" while it recovers; the lease is still this leader's.
  CHECK(publish_retrying(leader) == 6);
  publish_range(leader, 7, 10);  // and renews from then on
  auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f"));
  REQUIRE(f.wait_for(10, std::chrono::seconds(10)));
  CHECK(*fr.read().find(key_a) == 10);
}

}  // namespace

TEST_CASE("replication: a lease renewal during an engine outage (SIGKILL) is unreachable, and publishing resumes",
          "[replication][lease]") {
  lease_outage("leasekill", [](nats_server& s) { s.kill(); }, [](nats_server& s) { s.start(); });
}

TEST_CASE("replication: a lease renewal during an engine outage (SIGSTOP) is unreachable, and publishing resumes",
          "[replication][lease]") {
  lease_outage("leasestop", [](nats_server& s) { s.stop_signal(); }, [](nats_server& s) { s.cont_signal(); });
}

TEST_CASE("replication: a follower with a local copy restarts warm at its version, then follows the log",
          "[replication][warm]") {
  warm_case c("warm");
  const auto& opts = c.opts;
  auto& fopts = c.fopts;
  const auto& dir = c.dir;
  fopts.local_path = dir.path / "copy" / "a";  // missing: created
  fopts.local_checkpoint_every = 100;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  model m;
  for (u64 v = 1; v <= 400; ++v) m.record(v);
  follow_then_stop(fopts, leader, 1, 300);
  // Only the newest local snapshot is kept: the one the stop wrote.
  CHECK(local_snapshots(fopts.local_path) == std::vector<std::string>{"snap-000000000000012c.dat"});
  publish_range(leader, 301, 400);
  // No engine snapshot, and the log below 301 gone: only the local copy has versions 1..300.
  purge_engine_log_below(opts, 301);

  auto [f, fr] = follow_warm(fopts, m, 300, 400);
  CHECK(f.rebootstraps() == 0);
}

TEST_CASE("replication: a warm follower whose next version the engine purged re-bootstraps forward",
          "[replication][warm]") {
  warm_case c("warmpurged");
  const auto& opts = c.opts;
  auto& fopts = c.fopts;
  fopts.local_checkpoint_every = 100;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  model m;
  for (u64 v = 1; v <= 420; ++v) m.record(v);
  follow_then_stop(fopts, leader, 1, 300);
  publish_range(leader, 301, 400);
  leader.snapshot();  // at 400; the log below 401 is purged: it holds nothing now

  auto [f, fr] = follow_warm(fopts, m, 300, 400);
  CHECK(f.rebootstraps() == 1);
  publish_range(leader, 401, 420);  // and on through the log from there
  read_checker checker(f.factory(), &m);
  REQUIRE(f.wait_for(420, std::chrono::seconds(20)));
  checker.stop();
  for (const auto& e : checker.failures()) FAIL_CHECK(e);
  CHECK(fingerprint_of(fr.read()) == m.at[420]);
  CHECK(f.rebootstraps() == 1);
}

TEST_CASE("replication: a damaged local copy, one of other types, or one in use is refused, naming why",
          "[replication][warm]") {
  warm_case c("warmdamaged");
  const auto& opts = c.opts;
  auto& fopts = c.fopts;
  const auto& dir = c.dir;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  follow_then_stop(fopts, leader, 1, 50);
  const auto names = local_snapshots(dir.path);
  REQUIRE(names.size() == 1);
  const auto file = dir.path / names[0];
  {
    // In use: one follower per directory.
    auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
    CHECK(fr.version() >= 50);
    CHECK_THROWS_AS((leftright::open_follower<u64, u64>(fopts)), replication_error);
  }
  check_refused(
      [&] { (void)leftright::open_follower<u64, std::string>(fopts); }, replication_errc::protocol,
      "a follower of other types opened the local copy", {file.string()});
  {
    // A byte flipped in the middle of the entries.
    std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = std::filesystem::file_size(file);
    io.seekg(static_cast<std::streamoff>(size / 2));
    char byte = 0;
    io.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    io.seekp(static_cast<std::streamoff>(size / 2));
    io.write(&byte, 1);
  }
  check_refused(
      [&] { (void)leftright::open_follower<u64, u64>(fopts); }, replication_errc::protocol,
      "a damaged local snapshot was loaded", {file.string(), "checksum"});
  // Deleting the directory starts cold, from the engine.
  std::filesystem::remove_all(dir.path);
  auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
  REQUIRE(f.wait_for(50, std::chrono::seconds(20)));
}

namespace {

/// Deletes a map's streams and buckets from the engine, as an operator who starts the map over
/// would: its next leader makes them anew, a new history.
void delete_map(const leftright::replication_options& o) {
  natsConnection* nc = nullptr;
  REQUIRE(natsConnection_ConnectTo(&nc, o.url.c_str()) == NATS_OK);
  jsCtx* js = nullptr;
  REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  for (const std::string& stream : {"LR_" + o.name, "LRS_" + o.name}) {
    CHECK(js_DeleteStream(js, stream.c_str(), nullptr, nullptr) == NATS_OK);
  }
  for (const std::string& bucket : {"LR_" + o.name + "_META", "LR_" + o.name + "_LEASE"}) {
    CHECK(js_DeleteKeyValue(js, bucket.c_str()) == NATS_OK);
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

/// A history other than the model's: versions 1..to with a = b = 7,000,000 + v.
template <class Writer>
void publish_other_history(Writer& w, u64 to) {
  for (u64 v = 1; v <= to; ++v) {
    w.insert_or_assign(key_a, 7'000'000 + v);
    w.insert_or_assign(key_b, 7'000'000 + v);
    REQUIRE(w.publish() == v);
  }
}

}  // namespace

TEST_CASE("replication: a warm follower ahead of an engine that lost its data keeps its state and follows none of the new log",
          "[replication][warm]") {
  temp_dir dir;
  u64 sum = 0;
  leftright::replication_options fopts;
  {
    nats_server first;
    auto opts = warm_options(first, "warmahead");
    fopts = opts;
    fopts.local_path = dir.path;
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
    follow_then_stop(fopts, leader, 1, 30);
    sum = fingerprint_of(lr.read()).sum;
  }
  nats_server second;  // an empty engine: its log (made anew) ends at 0
  fopts.url = second.url();
  auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
  CHECK(fr.version() == 30);
  CHECK(eventually([&f = f] { return f.log_replaced(); }, std::chrono::seconds(20)));
  CHECK_THAT(f.last_error(), Catch::Matchers::Contains("log replaced"));
  {
    // The new log passes the copy's version: none of it is applied.
    auto opts = fopts;
    opts.local_path.clear();
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
    publish_other_history(leader, 40);
  }
  CHECK(fr.version() == 30);  // never backwards, nor onto another history
  CHECK(fingerprint_of(fr.read()).sum == sum);
}

TEST_CASE("replication: metadata survives a follower's warm restart", "[replication][warm]") {
  warm_case c("warmlabels");
  const auto& opts = c.opts;
  auto& fopts = c.fopts;
  fopts.local_checkpoint_every = 30;
  auto [leader, lr] = leftright::open_leader<u64, u64, leftright::default_hash<u64>, leftright::default_eq<u64>,
                                             labelled_traits>(opts);
  auto open = [&] {
    return leftright::open_follower<u64, u64, leftright::default_hash<u64>, leftright::default_eq<u64>,
                                    labelled_traits>(fopts);
  };
  {
    auto [f, fr] = open();
    publish_labelled(leader, 1, 100);  // 100 sets no label: it shows "v99"
    REQUIRE(f.wait_for(100, std::chrono::seconds(20)));
  }
  publish_labelled(leader, 101, 150);
  purge_engine_log_below(opts, 101);  // only the local copy has versions 1..100
  auto [f, fr] = open();
  {
    auto g = fr.read();
    CHECK(g.version() >= 100);
    CHECK(g.meta() == label_at(g.version()));
  }
  label_checker check(f.factory());
  REQUIRE(f.wait_for(150, std::chrono::seconds(20)));
  check.stop();
  for (const auto& e : check.failures()) FAIL_CHECK(e);
  CHECK(fr.read().meta() == "v149");
  CHECK(f.rebootstraps() == 0);
}

TEST_CASE("replication: a follower applies nothing of a log deleted and made anew, and says so",
          "[replication]") {
  nats_server server;
  auto opts = warm_options(server, "remade");
  model m;
  for (u64 v = 1; v <= 40; ++v) m.record(v);
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
    publish_range(leader, 1, 40);
  }
  REQUIRE(f.wait_for(40, std::chrono::seconds(20)));
  read_checker checker(f.factory(), &m);  // every version it shows is the model's
  delete_map(opts);
  {
    // The new history passes the follower's version, and its snapshot (at 60) is newer than
    // the follower's: neither the log nor a re-bootstrap may bring it in.
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
    publish_other_history(leader, 60);
    leader.snapshot();
  }
  CHECK(eventually([&f = f] { return f.log_replaced(); }, std::chrono::seconds(20)));
  CHECK_THAT(f.last_error(), Catch::Matchers::Contains("log replaced"));
  checker.stop();
  for (const auto& e : checker.failures()) FAIL_CHECK(e);
  CHECK(f.version() == 40);
  CHECK(fingerprint_of(fr.read()) == m.at[40]);
  CHECK(f.rebootstraps() == 0);
  // A follower opened now follows the new history.
  auto [g, gr] = leftright::open_follower<u64, u64>(opts);
  REQUIRE(g.wait_for(60, std::chrono::seconds(20)));
  CHECK(*gr.read().find(key_a) == 7'000'060);
  CHECK_FALSE(g.log_replaced());
}


namespace {
/// Leader "old" logs versions 1..last (model::queue's batches), the engine's store copied aside
/// at version 5: what an engine that lost its tail restarts from. Returns the copy's path.
std::filesystem::path log_keeping_store_at_5(nats_server& server, const leftright::replication_options& opts,
                                             u64 last) {
  namespace fs = std::filesystem;
  const fs::path at5 = server.store().parent_path() / "js-at-5";
  auto [leader, lr] = leftright::open_leader<u64, u64>(as_member(opts, "old"));
  publish_range(leader, 1, 5);
  server.kill();
  fs::copy(server.store(), at5, fs::copy_options::recursive);
  server.start();
  for (u64 v = 6; v <= last; ++v) {
    model::queue(leader, v);
    REQUIRE(publish_retrying(leader) == v);
  }
  return at5;
}

/// The engine restarts from the store log_keeping_store_at_5 copied: it lost every version
/// after 5 (the same log, made at the same time).
void restart_from_store(nats_server& server, const std::filesystem::path& at5) {
  server.kill();
  std::filesystem::remove_all(server.store());
  std::filesystem::rename(at5, server.store());
  server.start();
}

/// A new leader, taking over, finds the log at 5 and logs versions 6..last of another history
/// (key_a and key_b at 7,000,000 + v).
void log_other_history_after_5(const leftright::replication_options& opts, u64 last) {
  auto [leader, lr] = leftright::open_leader<u64, u64>(as_member(opts, "new", true));
  REQUIRE(leader.version() == 5);
  for (u64 v = 6; v <= last; ++v) {
    leader.insert_or_assign(key_a, 7'000'000 + v);
    leader.insert_or_assign(key_b, 7'000'000 + v);
    REQUIRE(publish_retrying(leader) == v);
  }
}

/// The engine restarts from a store older than what it acknowledged (a tail lost before its
/// sync): the same log, made at the same time, ends at 5 while a follower shows 10. A new leader
/// then logs versions 6..15 of another history; the follower must apply none of them. paused:
/// the follower is paused meanwhile, so that the new history is past its version when it looks
/// again (the log's end alone then says nothing: the batch at a version it applied does).
void lost_tail(const std::string& name, bool paused) {
  namespace fs = std::filesystem;
  nats_server server;
  const auto opts = warm_options(server, name);
  model m;
  for (u64 v = 1; v <= 10; ++v) m.record(v);
  auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f"));
  const fs::path at5 = log_keeping_store_at_5(server, opts, 10);
  REQUIRE(f.wait_for(10, std::chrono::seconds(20)));
  CHECK(fingerprint_of(fr.read()) == m.at[10]);
  if (paused) f.pause();
  restart_from_store(server, at5);
  if (!paused) {
    CHECK(eventually([&f = f] { return f.log_replaced(); }, std::chrono::seconds(20)));
    CHECK_THAT(f.last_error(), Catch::Matchers::Contains("engine lost versions"));
  }
  log_other_history_after_5(opts, 15);
  if (paused) {
    f.resume();
    CHECK(eventually([&f = f] { return f.log_replaced(); }, std::chrono::seconds(20)));
    CHECK_THAT(f.last_error(), Catch::Matchers::Contains("another batch at version 10"));
  }
  // A follower opened now follows the new history (and by then the old one had the time to
  // take it, were it to).
  auto [g, gr] = leftright::open_follower<u64, u64>(as_member(opts, "g"));
  REQUIRE(g.wait_for(15, std::chrono::seconds(20)));
  CHECK(*gr.read().find(key_a) == 7'000'015);
  CHECK_FALSE(g.log_replaced());
  CHECK(f.version() == 10);  // never onto another history
  CHECK(fingerprint_of(fr.read()) == m.at[10]);
  CHECK(f.log_replaced());
  CHECK(f.rebootstraps() == 0);
}
}  // namespace

TEST_CASE("replication: a follower stops for good when the engine's log loses versions it applied",
          "[replication]") {
  lost_tail("tail", false);
}

TEST_CASE("replication: a follower stops for good when a new history passed its version while it looked away",
          "[replication]") {
  lost_tail("tailpassed", true);
}

namespace {

/// Sets how often followers opened meanwhile look at the log's range (their watchdog), and puts
/// the period back when it ends.
class watchdog_period_set {
 public:
  explicit watchdog_period_set(std::chrono::milliseconds p) : old_(period()) { period() = p; }
  ~watchdog_period_set() { period() = old_; }
  watchdog_period_set(const watchdog_period_set&) = delete;
  watchdog_period_set& operator=(const watchdog_period_set&) = delete;

 private:
  static std::chrono::milliseconds& period() { return leftright::detail::replication::follower_watchdog_period; }
  std::chrono::milliseconds old_;
};

/// The subject the map's one consumer of the log on the engine (a follower's) delivers to.
std::string the_log_consumers_inbox(const leftright::replication_options& o) {
  natsConnection* nc = nullptr;
  REQUIRE(natsConnection_ConnectTo(&nc, o.url.c_str()) == NATS_OK);
  jsCtx* js = nullptr;
  REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  jsConsumerInfoList* list = nullptr;
  REQUIRE(js_Consumers(&list, js, ("LR_" + o.name).c_str(), nullptr, nullptr) == NATS_OK);
  REQUIRE(list->Count == 1);
  REQUIRE(list->List[0]->Config->DeliverSubject != nullptr);
  std::string inbox = list->List[0]->Config->DeliverSubject;
  jsConsumerInfoList_Destroy(list);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return inbox;
}

/// A consumer of the map's log on the engine, delivering from version `from` to `inbox` (a
/// follower's subscription) while it lives: the engine hands that follower the log's messages
/// as its own consumer would. (A client cannot send a message as a consumer's: the engine drops
/// a client's message whose reply subject is a consumer's.)
class log_consumer {
 public:
  log_consumer(const leftright::replication_options& o, const std::string& inbox, u64 from)
      : stream_("LR_" + o.name) {
    REQUIRE(natsConnection_ConnectTo(&nc_, o.url.c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&js_, nc_, nullptr) == NATS_OK);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.DeliverSubject = inbox.c_str();
    cc.DeliverPolicy = js_DeliverByStartSequence;
    cc.OptStartSeq = from;
    cc.AckPolicy = js_AckNone;
    jsConsumerInfo* ci = nullptr;
    REQUIRE(js_AddConsumer(&ci, js_, stream_.c_str(), &cc, nullptr, nullptr) == NATS_OK);
    name_ = ci->Name;
    jsConsumerInfo_Destroy(ci);
  }
  ~log_consumer() {
    js_DeleteConsumer(js_, stream_.c_str(), name_.c_str(), nullptr, nullptr);
    jsCtx_Destroy(js_);
    natsConnection_Destroy(nc_);
  }
  log_consumer(const log_consumer&) = delete;
  log_consumer& operator=(const log_consumer&) = delete;

 private:
  std::string stream_;
  std::string name_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

}  // namespace

// The engine loses versions 6..10 a follower applied; a new leader logs other batches at 6..11;
// a consumer of the engine's whose position is past the lost versions (one that outlived the
// loss: its state kept while the stream's tail was not) hands the follower the new history's
// version 11, the one after its own. A single test server restored from an older store keeps
// its consumers' state with its streams', so the test makes that consumer itself, delivering to
// the follower's subscription. The follower's watchdog looks at the log once an hour here: only
// what the follower does with the message can keep the other history out.
TEST_CASE("replication: a follower takes no other history's next version from a consumer that outlived a loss",
          "[replication]") {
  namespace fs = std::filesystem;
  nats_server server;
  const auto opts = warm_options(server, "window");
  model m;
  for (u64 v = 1; v <= 10; ++v) m.record(v);
  const fs::path at5 = log_keeping_store_at_5(server, opts, 8);
  std::optional<watchdog_period_set> slow(std::in_place, std::chrono::hours(1));
  // Opened after the copy: the store restored below holds no consumer of its.
  auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f"));
  REQUIRE(f.wait_for(8, std::chrono::seconds(20)));
  {
    // A leader change the engine lost nothing in: the follower goes on through it.
    auto [leader, lr] = leftright::open_leader<u64, u64>(as_member(opts, "mid"));
    publish_range(leader, 9, 10);
  }
  REQUIRE(f.wait_for(10, std::chrono::seconds(20)));
  CHECK(fingerprint_of(fr.read()) == m.at[10]);
  CHECK_FALSE(f.log_replaced());
  const std::string inbox = the_log_consumers_inbox(opts);

  restart_from_store(server, at5);
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(as_member(opts, "new", true));
    REQUIRE(leader.version() == 5);
    auto publish_new = [&leader = leader](u64 v) {
      leader.insert_or_assign(key_a, 7'000'000 + v);
      leader.insert_or_assign(key_b, 7'000'000 + v);
      REQUIRE(publish_retrying(leader) == v);
    };
    for (u64 v = 6; v <= 11; ++v) publish_new(v);
    REQUIRE(eventually([&f = f] { return f.connected(); }, std::chrono::seconds(20)));
    {
      log_consumer outlived(opts, inbox, 11);
      CHECK(eventually([&f = f] { return f.log_replaced() || f.version() != 10; }, std::chrono::seconds(20)));
    }
    CHECK(f.log_replaced());
    CHECK_THAT(f.last_error(), Catch::Matchers::Contains("another batch at version 10"));
    for (u64 v = 12; v <= 15; ++v) publish_new(v);
  }
  CHECK(f.version() == 10);  // never onto another history
  CHECK(fingerprint_of(fr.read()) == m.at[10]);
  CHECK(f.rebootstraps() == 0);
  slow.reset();
  // A follower opened now follows the new history.
  auto [g, gr] = leftright::open_follower<u64, u64>(as_member(opts, "g"));
  REQUIRE(g.wait_for(15, std::chrono::seconds(20)));
  CHECK(*gr.read().find(key_a) == 7'000'015);
  CHECK_FALSE(g.log_replaced());
}

// As lost_tail, with a follower stopped meanwhile: it applied versions 1..10 and wrote them to
// its local copy, the engine lost 6..10, a new leader logged other batches at 6..15. Restarting
// warm at 10, where the log's end says nothing, the follower reads back the log's batch at the
// version its copy recorded with its snapshot, and applies none of the new history.
TEST_CASE("replication: a warm follower applies nothing of a new history logged past its copy's version",
          "[replication][warm]") {
  namespace fs = std::filesystem;
  warm_case c("warmlost");
  auto& server = c.server;
  const auto& opts = c.opts;
  const auto fopts = as_member(c.fopts, "f");
  model m;
  for (u64 v = 1; v <= 10; ++v) m.record(v);
  const fs::path at5 = log_keeping_store_at_5(server, opts, 10);
  {
    auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
    REQUIRE(f.wait_for(10, std::chrono::seconds(20)));
  }  // stopped: its copy holds version 10, and the id of the batch it applied there
  CHECK(fs::exists(fopts.local_path / "witness-000000000000000a"));
  restart_from_store(server, at5);
  log_other_history_after_5(opts, 15);
  auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
  CHECK(fr.version() == 10);
  CHECK(eventually([&f = f] { return f.log_replaced(); }, std::chrono::seconds(20)));
  CHECK_THAT(f.last_error(), Catch::Matchers::Contains("another batch at version 10"));
  CHECK(f.version() == 10);  // never onto another history
  CHECK(fingerprint_of(fr.read()) == m.at[10]);
  CHECK(f.rebootstraps() == 0);
}

TEST_CASE("replication: a warm follower whose copy's log was deleted and made anew keeps its state and says so",
          "[replication][warm]") {
  warm_case c("warmremade");
  const auto& opts = c.opts;
  auto& fopts = c.fopts;
  const auto& dir = c.dir;
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
    follow_then_stop(fopts, leader, 1, 30);
  }
  delete_map(opts);
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
    publish_other_history(leader, 50);
  }
  model m;
  for (u64 v = 1; v <= 30; ++v) m.record(v);
  {
    auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
    CHECK(fr.version() == 30);
    CHECK(eventually([&f = f] { return f.log_replaced(); }, std::chrono::seconds(20)));
    CHECK_THAT(f.last_error(), Catch::Matchers::Contains("log replaced"));
    CHECK(f.version() == 30);
    CHECK(fingerprint_of(fr.read()) == m.at[30]);
  }
  // Deleting the directory starts cold, on the new history.
  std::filesystem::remove_all(dir.path);
  auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
  REQUIRE(f.wait_for(50, std::chrono::seconds(20)));
  CHECK(*fr.read().find(key_a) == 7'000'050);
  CHECK_FALSE(f.log_replaced());
}

namespace {

/// Copies a local copy's directory (the snapshot a restart would find there), for a restart
/// from an older copy after the leader moved on.
void copy_dir(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

/// Opens a leader on its local copy and checks what it shows at once: version `at`, as the
/// model has it.
auto lead_warm(const leftright::replication_options& lopts, const model& m, u64 at) {
  auto [leader, lr] = leftright::open_leader<u64, u64>(lopts);
  CHECK(leader.version() == at);
  CHECK(fingerprint_of(lr.read()) == m.at[at]);
  return std::make_pair(std::move(leader), std::move(lr));
}

}  // namespace

TEST_CASE("replication: a leader with a local copy restarts warm, from its copy and the log after it",
          "[replication][warm]") {
  warm_case c("leaderwarm");
  auto lopts = c.opts;
  lopts.local_path = c.dir.path / "leader";
  lopts.local_checkpoint_every = 100;
  // No take_over: each restart opens at once, its predecessor having given the lease up.
  model m;
  for (u64 v = 1; v <= 350; ++v) m.record(v);
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(lopts);
    publish_range(leader, 1, 250);
    // Every 100 versions, keeping the newest: the one at 200.
    CHECK(local_snapshots(lopts.local_path) == std::vector<std::string>{"snap-00000000000000c8.dat"});
  }
  // The stop wrote the newest state.
  CHECK(local_snapshots(lopts.local_path) == std::vector<std::string>{"snap-00000000000000fa.dat"});
  // No engine snapshot, and the log below 251 gone: only the local copy has versions 1..250.
  purge_engine_log_below(c.opts, 251);
  auto cold = c.opts;
  CHECK_THROWS_AS((leftright::open_leader<u64, u64>(cold)), replication_error);  // cold: cannot
  {
    auto [leader, lr] = lead_warm(lopts, m, 250);
    publish_range(leader, 251, 300);
  }
  const auto older = c.dir.path / "older";  // a copy at 300, left behind while the leader goes on
  copy_dir(lopts.local_path, older);
  const auto oldest = c.dir.path / "oldest";
  copy_dir(lopts.local_path, oldest);
  {
    auto [leader, lr] = lead_warm(lopts, m, 300);
    publish_range(leader, 301, 350);
  }
  // The copy at 300, with the log after it still in the engine: 301..350 come from the log.
  auto from_log = lopts;
  from_log.local_path = older;
  {
    auto [leader, lr] = lead_warm(from_log, m, 350);
    leader.snapshot();  // at 350; the log below 351 is purged
  }
  // The copy at 300 once the engine purged past it: the engine's snapshot, forward, not back.
  auto from_snapshot = lopts;
  from_snapshot.local_path = oldest;
  auto [leader, lr] = lead_warm(from_snapshot, m, 350);
  publish_range(leader, 351, 360);
  leader.local_snapshot();
  CHECK(local_snapshots(oldest) == std::vector<std::string>{"snap-0000000000000168.dat"});
}

TEST_CASE("replication: a leader refuses a local copy ahead of the engine, of a log made anew, or in use",
          "[replication][warm]") {
  temp_dir dir;
  leftright::replication_options lopts;
  {
    nats_server first;
    lopts = warm_options(first, "leaderahead");
    lopts.local_path = dir.path;
    auto [leader, lr] = leftright::open_leader<u64, u64>(lopts);
    publish_range(leader, 1, 30);
    // In use: one leader per directory (refused before the lease is asked for).
    CHECK_THROWS_AS((leftright::open_leader<u64, u64>(lopts)), replication_error);
  }
  const auto expect_refused = [&lopts](const char* why) {
    check_refused(
        [&] { (void)leftright::open_leader<u64, u64>(lopts); }, replication_errc::protocol,
        "a leader opened on a local copy the engine cannot go on from", {why, "delete the directory"});
  };
  nats_server second;  // an empty engine: its log ends at 0, before the copy's 30
  lopts.url = second.url();
  expect_refused("the engine lost data");
  {
    // A new history on that engine, past the copy's version: still not the copy's.
    auto cold = lopts;
    cold.local_path.clear();
    auto [leader, lr] = leftright::open_leader<u64, u64>(cold);
    publish_other_history(leader, 40);
  }
  expect_refused("deleted and made anew");
  // Deleting the directory starts cold, from the engine.
  std::filesystem::remove_all(dir.path);
  auto [leader, lr] = leftright::open_leader<u64, u64>(lopts);
  CHECK(leader.version() == 40);
  CHECK(*lr.read().find(key_a) == 7'000'040);
}

TEST_CASE("replication: a follower further behind than its buffer reads what its client dropped again from the log",
          "[replication]") {
  // The follower cannot apply while the log is written (a reader's guard holds up its second
  // publish), as a slow follower would not keep up. Its client holds 4 KiB of messages and drops
  // what arrives beyond; once released, the follower reads those versions again from the log
  // and catches up, every version whole, with no re-bootstrap and no error.
  constexpr u64 behind = 2'000;
  nats_server server(/*max_payload=*/1024);
  auto opts = warm_options(server, "farbehind");
  opts.follower_buffer_bytes = 4096;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  model m;
  {
    auto held = fr.read();  // until the log is written: the follower stops at its second publish
    for (u64 v = 1; v <= behind; ++v) REQUIRE(m.publish_batch(leader) == v);
    CHECK(f.version() < behind);
  }
  read_checker checker(f.factory(), &m);
  const bool reached = f.wait_for(behind, std::chrono::seconds(60));
  checker.stop();
  INFO("follower at " << f.version() << ", last error: " << f.last_error());
  REQUIRE(reached);
  for (const auto& e : checker.failures()) FAIL_CHECK(e);
  CHECK(fingerprint_of(fr.read()) == m.at[behind]);
  CHECK(f.resubscriptions() >= 1);  // its client dropped messages: it read the log afresh
  CHECK(f.rebootstraps() == 0);
  CHECK(f.last_error().empty());  // no version went missing on the way
}

TEST_CASE("replication: a follower's buffer must hold the engine's largest message", "[replication]") {
  nats_server server(/*max_payload=*/1024);
  auto opts = warm_options(server, "buffer");
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  for (const std::int64_t bytes : {std::int64_t{1023}, std::int64_t{-1}}) {
    opts.follower_buffer_bytes = bytes;
    check_refused(
        [&] { (void)leftright::open_follower<u64, u64>(opts); }, replication_errc::protocol,
        "a follower opened with follower_buffer_bytes " + std::to_string(bytes),
        {"follower_buffer_bytes", "1024"});
  }
  opts.follower_buffer_bytes = 1024;
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  model m;
  REQUIRE(m.publish_batch(leader) == 1);
  CHECK(f.wait_for(1, std::chrono::seconds(10)));
}

TEST_CASE("replication: a leader's local copy that holds no state yet follows a log made anew", "[replication][warm]") {
  warm_case c("leaderempty");
  auto lopts = c.opts;
  lopts.local_path = c.dir.path;
  { auto [leader, lr] = leftright::open_leader<u64, u64>(lopts); }  // records the log; no snapshot
  REQUIRE(local_snapshots(c.dir.path).empty());
  delete_map(c.opts);
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(lopts);  // the copy has nothing to lose
    publish_other_history(leader, 5);
  }
  auto [leader, lr] = leftright::open_leader<u64, u64>(lopts);  // its snapshot is of the new log
  CHECK(leader.version() == 5);
  CHECK(*lr.read().find(key_a) == 7'000'005);
}

namespace {
/// How many of the followers show version v or later.
template <class... Followers>
int showing(u64 v, const Followers&... fs) {
  return ((fs.version() >= v ? 1 : 0) + ...);
}
}  // namespace

TEST_CASE("replication: a leader with acks returns once that many followers applied the batch; fewer is a typed "
          "error, the batch published all the same",
          "[replication][acks]") {
  nats_server server;
  auto fopts = options_for(server, "acks");
  auto lopts = fopts;
  lopts.acks = 2;
  auto [leader, lr] = leftright::open_leader<u64, u64>(lopts);
  fopts.id = "f1";
  auto [f1, r1] = leftright::open_follower<u64, u64>(fopts);
  fopts.id = "f2";
  auto [f2, r2] = leftright::open_follower<u64, u64>(fopts);
  fopts.id = "f3";
  auto [f3, r3] = leftright::open_follower<u64, u64>(fopts);
  CHECK(f2.id() == "f2");
  model m;

  // Each publish returns only once two followers show its version: checked right after it
  // returns, before any wait.
  for (int i = 0; i < 20; ++i) {
    const u64 v = m.publish_batch(leader);
    REQUIRE(showing(v, f1, f2, f3) >= 2);
  }
  CHECK(leader.wait_for_acks(20, 3, std::chrono::seconds(10)) == 3);

  f3.pause();  // applies nothing, reports nothing, until resumed
  for (int i = 0; i < 5; ++i) {
    const u64 v = m.publish_batch(leader);
    REQUIRE(showing(v, f1, f2) == 2);
    CHECK(f3.version() < v);
  }

  f2.pause();
  const u64 before = leader.version();
  model::queue(leader, before + 1);
  check_refused(
      [&leader = leader] { leader.publish(); }, replication_errc::unacknowledged,
      "a publish that one follower of two applied returned", {"1 of 2"});
  m.record(before + 1);
  // Published all the same: in the log (the follower still running applies it) and visible.
  CHECK(leader.version() == before + 1);
  CHECK(leader.pending() == 0);
  CHECK(fingerprint_of(lr.read()) == m.at[before + 1]);
  CHECK(f1.wait_for(before + 1, std::chrono::seconds(10)));
  CHECK(f2.version() < before + 1);

  f2.resume();
  f3.resume();
  CHECK(leader.wait_for_acks(before + 1, 3, std::chrono::seconds(10)) == 3);
  CHECK(fingerprint_of(r3.read()) == m.at[before + 1]);
  const u64 v = m.publish_batch(leader);  // two of three again
  CHECK(showing(v, f1, f2, f3) >= 2);
  const auto fs = leader.followers();
  REQUIRE(fs.size() == 3);
  for (const auto& f : fs) CHECK(f.version >= before + 1);
}

TEST_CASE("replication: followers report the version they show without being asked; a new leader reads the reports",
          "[replication][acks]") {
  nats_server server;
  auto opts = options_for(server, "reports");
  model m;
  u64 v = 0;
  auto [f1, r1] = leftright::open_follower<u64, u64>(opts);
  auto [f2, r2] = leftright::open_follower<u64, u64>(opts);
  CHECK(f1.id() != f2.id());  // the default ids: each follower its own
  CHECK_FALSE(f1.id().empty());
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);  // no acks asked
    for (int i = 0; i < 10; ++i) v = m.publish_batch(leader);
    // Reported at the followers' next round (about a second), not at once.
    CHECK(leader.wait_for_acks(v, 2, std::chrono::seconds(10)) == 2);
    CHECK(leader.wait_for_acks(v + 1, 1, std::chrono::milliseconds(50)) == 0);  // nobody is past the leader
  }
  // A leader opened later reads them from the bucket.
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  const auto fs = leader.followers();
  REQUIRE(fs.size() == 2);
  for (const auto& f : fs) {
    CHECK((f.id == f1.id() || f.id == f2.id()));
    CHECK(f.version == v);
  }
}

TEST_CASE("replication: a follower's id must be a key of the acks bucket", "[replication][acks]") {
  nats_server server;
  auto opts = options_for(server, "ids");
  for (const std::string bad : {"a.b", "a b", "a*", "a>"}) {
    opts.id = bad;
    check_refused(
        [&] { (void)leftright::open_follower<u64, u64>(opts); }, replication_errc::protocol,
        std::string("a follower opened with id '") + bad + "'", {bad});
  }
  opts.id = "edge-7_=x";
  auto [f, r] = leftright::open_follower<u64, u64>(opts);
  CHECK(f.id() == "edge-7_=x");
}

TEST_CASE("replication: a snapshot keeps the log a follower behind it still needs, within keep_log_for_followers",
          "[replication][acks]") {
  for (const bool keep : {true, false}) {
    INFO("keep_log_for_followers " << (keep ? 100 : 0));
    nats_server server;
    auto opts = options_for(server, "keepfor");
    opts.id = "slow";
    auto [f, fr] = leftright::open_follower<u64, u64>(opts);
    opts.keep_log_for_followers = keep ? 100 : 0;
    auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
    model m;
    for (int i = 0; i < 10; ++i) m.publish_batch(leader);
    REQUIRE(leader.wait_for_acks(10, 1, std::chrono::seconds(10)) == 1);  // its report says 10
    f.pause();
    for (int i = 0; i < 50; ++i) m.publish_batch(leader);
    leader.snapshot();  // at 60; keep_log 0
    f.resume();
    REQUIRE(f.wait_for(60, std::chrono::seconds(20)));
    CHECK(fingerprint_of(fr.read()) == m.at[60]);
    // Kept: it read versions 11..60 from the log. Not kept: the log starts at 61, so it loaded
    // the snapshot.
    CHECK(f.rebootstraps() == (keep ? 0u : 1u));
  }
}

TEST_CASE("replication: keep_log_for_followers is bounded: a follower further behind re-bootstraps",
          "[replication][acks]") {
  nats_server server;
  auto opts = options_for(server, "keepbound");
  opts.id = "slow";
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  opts.keep_log_for_followers = 20;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  model m;
  for (int i = 0; i < 10; ++i) m.publish_batch(leader);
  REQUIRE(leader.wait_for_acks(10, 1, std::chrono::seconds(10)) == 1);
  f.pause();
  for (int i = 0; i < 50; ++i) m.publish_batch(leader);
  leader.snapshot();  // at 60: the follower at 10 is 50 behind, past the bound of 20
  f.resume();
  REQUIRE(f.wait_for(60, std::chrono::seconds(20)));
  CHECK(fingerprint_of(fr.read()) == m.at[60]);
  CHECK(f.rebootstraps() == 1);
}

TEST_CASE("replication: a deposed leader's first batch is fenced after the new leader purged the log",
          "[replication]") {
  nats_server server;
  const auto opts = options_for(server, "firstfence");
  auto [l1, r1] = leftright::open_leader<u64, u64>(as_member(opts, "a"));  // a new map: version 0
  auto [l2, r2] = leftright::open_leader<u64, u64>(as_member(opts, "b", true));  // a failover before the first publish
  for (u64 v = 1; v <= 10; ++v) {
    l2.insert_or_assign(v, v);
    REQUIRE(l2.publish() == v);
  }
  l2.snapshot();  // purges the log below 11: no message is left in it, its last sequence is 10
  l1.insert_or_assign(1, 999);
  check_refused([&l1 = l1] { l1.publish(); }, replication_errc::fenced, "a deposed leader's first batch was stored");
  CHECK(r1.version() == 0);
  l2.insert_or_assign(11, 11);
  CHECK(l2.publish() == 11);  // the log is still the new leader's alone
  auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f"));
  REQUIRE(f.wait_for(11, std::chrono::seconds(10)));
  CHECK(*fr.read().find(u64{1}) == 1);
}

TEST_CASE("replication: another leader's identical batch at the same version is fenced, not taken for a duplicate",
          "[replication]") {
  nats_server server;
  const auto opts = options_for(server, "samebatch");
  auto [l1, r1] = leftright::open_leader<u64, u64>(as_member(opts, "a"));
  publish_range(l1, 1, 10);
  auto [l2, r2] = leftright::open_leader<u64, u64>(as_member(opts, "b", true));  // at 10 too
  l1.insert_or_assign(11, 11);
  REQUIRE(l1.publish() == 11);
  // The same bytes at the same version: a message id of version and bytes alone would make the
  // engine answer "duplicate" with the stored sequence, and l2 would show a version it never stored.
  l2.insert_or_assign(11, 11);
  check_refused([&l2 = l2] { l2.publish(); }, replication_errc::fenced,
                "another leader's identical batch passed for a duplicate of this one's");
  CHECK(l2.version() == 10);
}

TEST_CASE("replication: a deposed leader's snapshot() is fenced: the pointer never moves back, nothing is purged",
          "[replication]") {
  nats_server server;
  const auto opts = options_for(server, "snapfence");
  auto [l1, r1] = leftright::open_leader<u64, u64>(as_member(opts, "a"));
  for (u64 v = 1; v <= 10; ++v) {
    l1.insert_or_assign(v, v);
    REQUIRE(l1.publish() == v);
  }
  auto [l2, r2] = leftright::open_leader<u64, u64>(as_member(opts, "b", true));
  for (u64 v = 11; v <= 20; ++v) {
    l2.insert_or_assign(v, v);
    REQUIRE(l2.publish() == v);
  }
  l2.snapshot();  // the pointer at 20; the log purged below 21
  // l1 is still at 10, and was never fenced by a publish.
  check_refused([&l1 = l1] { l1.snapshot(); }, replication_errc::fenced,
                "a deposed leader's snapshot moved the pointer");
  auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f"));  // bootstraps from the newest snapshot
  REQUIRE(f.wait_for(20, std::chrono::seconds(10)));
  CHECK(*fr.read().find(u64{20}) == 20);
  auto [l3, r3] = leftright::open_leader<u64, u64>(as_member(opts, "c", true));
  CHECK(l3.version() == 20);
}

TEST_CASE("replication: a snapshot whose chunk chain another writer broke is fenced; the pointer stays usable",
          "[replication][snapchain]") {
  namespace rp = leftright::detail::replication;
  nats_server server(8192);  // several chunks per snapshot
  const auto opts = options_for(server, "snapchain");
  auto [leader, lr] = leftright::open_leader<u64, u64>(as_member(opts, "a"));
  for (u64 v = 1; v <= 5; ++v) {  // an image of several chunks
    for (u64 i = 0; i < 300; ++i) leader.insert_or_assign(10'000 + v * 1000 + i, i);
    REQUIRE(leader.publish() == v);
  }
  publish_range(leader, 6, 20);
  leader.snapshot();
  rp::channel a(opts.url, opts.name, opts.timeout, opts.lease_ttl);
  rp::channel b(opts.url, opts.name, opts.timeout, opts.lease_ttl);
  const rp::snapshot_pointer at20 = a.snapshot();
  REQUIRE(at20.version == 20);
  REQUIRE(at20.chunks > 1);
  CHECK(at20.crc.has_value());
  // Writer a starts a chain; writer b's chunk comes next; a's next chunk is refused.
  const u64 a1 = a.append_chunk("a1", a.snapshot_stream_last());
  CHECK(a1 == at20.first_seq + at20.chunks);
  const u64 b1 = b.append_chunk("b1", b.snapshot_stream_last());
  CHECK(b1 == a1 + 1);
  check_refused([&] { a.append_chunk("a2", a1); }, replication_errc::fenced,
                "a chunk was stored after another writer's", {"another writer's snapshot chunk"});
  // A first chunk expecting an empty stream is refused too (the client sends no expectation for 0).
  check_refused([&] { a.append_chunk("x", 0); }, replication_errc::fenced, "a chunk expecting 0 was stored");
  CHECK(a.snapshot_stream_last() == b1);
  // The pointer and its snapshot are untouched: a follower bootstraps from it.
  {
    auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f1"));
    CHECK(fr.version() >= 20);
    REQUIRE(f.wait_for(20, std::chrono::seconds(10)));
  }
  // The leader snapshots again past the stray chunks (its chain starts after them).
  publish_range(leader, 21, 40);
  leader.snapshot();
  const fingerprint shown40 = fingerprint_of(lr.read());
  const rp::snapshot_pointer at40 = a.snapshot();
  REQUIRE(at40.version == 40);
  CHECK(at40.first_seq > b1);
  // A pointer to chunks written before the current pointer's is refused, whatever its version:
  // the current one's writer purges below its own chunks.
  check_refused([&] { a.set_snapshot({41, at20.first_seq, at20.chunks, at20.bytes, at20.crc}); },
                replication_errc::fenced, "the pointer moved back to older chunks", {"written after this one's"});
  // A pointer of the older form (no checksum) is read too.
  a.set_snapshot({at40.version, at40.first_seq, at40.chunks, at40.bytes, std::nullopt});
  CHECK_FALSE(a.snapshot().crc.has_value());
  {
    auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f2"));
    CHECK(fr.version() == 40);
    CHECK(fingerprint_of(fr.read()) == shown40);
  }
  // A checksum that does not match the image is refused.
  a.set_snapshot({at40.version, at40.first_seq, at40.chunks, at40.bytes, *at40.crc ^ 1u});
  check_refused([&] { (void)leftright::open_follower<u64, u64>(as_member(opts, "f3")); },
                replication_errc::protocol, "a damaged snapshot was loaded", {"checksum mismatch"});
}

TEST_CASE("replication: two leaders snapshotting at once: each is stored whole or fenced; followers bootstrap",
          "[replication][snapchain]") {
  nats_server server(8192);
  const auto opts = options_for(server, "snaprace");
  auto [a, ar] = leftright::open_leader<u64, u64>(as_member(opts, "a"));
  for (u64 i = 0; i < 20000; ++i) {
    a.insert_or_assign(i, i);
    if (i % 200 == 199) a.publish();
  }
  auto [b, br] = leftright::open_leader<u64, u64>(as_member(opts, "b", true));
  b.insert_or_assign(1, 42);
  const u64 vb = b.publish();  // b, the leader now, one version past a
  std::optional<replication_errc> ea, eb;
  std::string what_a, what_b;
  auto run = [](auto& w, std::optional<replication_errc>& code, std::string& what) {
    try {
      w.snapshot();
    } catch (const replication_error& e) {
      code = e.code();
      what = e.what();
    }
  };
  std::thread ta([&, &a = a] { run(a, ea, what_a); });
  std::thread tb([&, &b = b] { run(b, eb, what_b); });
  ta.join();
  tb.join();
  INFO("a: " << what_a << "; b: " << what_b);
  CHECK((!ea || *ea == replication_errc::fenced));
  CHECK((!eb || *eb == replication_errc::fenced));
  CHECK((!ea || !eb));  // one of them at least is stored whole
  auto [f, fr] = leftright::open_follower<u64, u64>(as_member(opts, "f"));
  REQUIRE(f.wait_for(vb, std::chrono::seconds(20)));
  CHECK(fingerprint_of(fr.read()) == fingerprint_of(br.read()));
}

TEST_CASE("replication: under a small message limit a snapshot's chunks fill the limit but for a small reserve",
          "[replication][snapchain]") {
  namespace rp = leftright::detail::replication;
  nats_server server(4096);
  const auto opts = options_for(server, "smallchunks");
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  for (u64 v = 1; v <= 10; ++v) {
    for (u64 i = 0; i < 100; ++i) leader.insert_or_assign(v * 1000 + i, i);
    REQUIRE(leader.publish() == v);
  }
  leader.snapshot();
  rp::channel ch(opts.url, opts.name, opts.timeout, opts.lease_ttl);
  const rp::snapshot_pointer p = ch.snapshot();
  REQUIRE(p.version == 10);
  const u64 chunk = 4096 - rp::channel::chunk_header_reserve;
  CHECK(p.chunks == (p.bytes + chunk - 1) / chunk);  // not 1-byte chunks
  CHECK(p.chunks > 1);
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  CHECK(fr.version() == 10);
  CHECK(fingerprint_of(fr.read()) == fingerprint_of(lr.read()));
}

namespace {
/// The consumers the engine has on a map's log stream.
int log_consumers(const nats_server& server, const std::string& name) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  jsStreamInfo* si = nullptr;
  REQUIRE(natsConnection_ConnectTo(&nc, server.url().c_str()) == NATS_OK);
  REQUIRE(natsConnection_JetStream(&js, nc, nullptr) == NATS_OK);
  const natsStatus s = js_GetStreamInfo(&si, js, ("LR_" + name).c_str(), nullptr, nullptr);
  const int n = s == NATS_OK && si != nullptr ? static_cast<int>(si->State.Consumers) : -1;
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return n;
}
}  // namespace

TEST_CASE("replication: a paused follower has let go of its consumer on the engine", "[replication]") {
  nats_server server;
  const auto opts = options_for(server, "pausing");
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  leader.insert_or_assign(1, 1);
  leader.publish();
  REQUIRE(f.wait_for(1, std::chrono::seconds(10)));
  CHECK(log_consumers(server, "pausing") == 1);
  f.pause();
  CHECK(log_consumers(server, "pausing") == 0);  // nothing is pushed to it while paused
  for (u64 v = 2; v <= 50; ++v) {
    leader.insert_or_assign(v, v);
    leader.publish();
  }
  CHECK(f.version() == 1);
  f.resume();
  REQUIRE(f.wait_for(50, std::chrono::seconds(10)));
  CHECK(*fr.read().find(u64{50}) == 50);
}

TEST_CASE("replication: a follower's local copy that holds no state yet follows a log made anew",
          "[replication][warm]") {
  warm_case c("followerempty");
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(c.opts);
    auto [f, fr] = leftright::open_follower<u64, u64>(c.fopts);  // records the log, at version 0
  }
  delete_map(c.opts);
  {
    auto [leader, lr] = leftright::open_leader<u64, u64>(c.opts);
    publish_other_history(leader, 5);
  }
  auto [f, fr] = leftright::open_follower<u64, u64>(c.fopts);  // the copy has nothing to lose
  REQUIRE(f.wait_for(5, std::chrono::seconds(10)));
  CHECK_FALSE(f.log_replaced());
  CHECK(*fr.read().find(key_a) == 7'000'005);
}

// ---- Connecting to a secured engine: several servers, credentials, TLS ----

namespace {

/// A leader on opts publishes one batch, and a follower on fopts shows it: the pair works.
void publish_and_follow(const leftright::replication_options& opts, const leftright::replication_options& fopts) {
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  leader.insert_or_assign(1, 11);
  const u64 v = leader.publish();
  auto [f, fr] = leftright::open_follower<u64, u64>(fopts);
  REQUIRE(f.wait_for(v, std::chrono::seconds(10)));
  CHECK(*fr.read().find(u64{1}) == 11);
}

/// The replication_error that open_leader(opts) throws (it must throw one).
replication_error open_failure(const leftright::replication_options& opts) {
  try {
    auto opened = leftright::open_leader<u64, u64>(opts);
  } catch (const replication_error& e) {
    return e;
  }
  FAIL("open_leader did not throw");
  return replication_error(replication_errc::engine, "open", "did not throw");
}
replication_errc open_error(const leftright::replication_options& opts) { return open_failure(opts).code(); }

/// A certificate authority and a server certificate for 127.0.0.1 that it signed (made with the
/// openssl command), in a directory of their own; and a second authority that signed nothing.
struct tls_files {
  temp_dir made;
  const std::filesystem::path& dir = made.path;
  tls_files() {
    std::ofstream(dir / "ext.cnf") << "subjectAltName=IP:127.0.0.1\n";
    const std::string d = dir.string();
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run("openssl req -x509" + ec + " -days 2 -subj /CN=leftright-test-ca -keyout " + d + "/ca.key -out " + d +
        "/ca.pem");
    run("openssl req -x509" + ec + " -days 2 -subj /CN=leftright-other-ca -keyout " + d + "/other.key -out " + d +
        "/other.pem");
    run("openssl req" + ec + " -subj /CN=127.0.0.1 -keyout " + d + "/server.key -out " + d + "/server.csr");
    run("openssl x509 -req -in " + d + "/server.csr -CA " + d + "/ca.pem -CAkey " + d + "/ca.key" +
        " -CAcreateserial -days 2 -extfile " + d + "/ext.cnf -out " + d + "/server.pem");
    // Client certificates: one the test's authority signed, one the other authority signed.
    for (const std::string who : {"client", "other-client"}) {
      const std::string ca = who == "client" ? "ca" : "other";
      run("openssl req" + ec + " -subj /CN=leftright-" + who + " -keyout " + d + "/" + who + ".key -out " + d + "/" +
          who + ".csr");
      run("openssl x509 -req -in " + d + "/" + who + ".csr -CA " + d + "/" + ca + ".pem -CAkey " + d + "/" + ca +
          ".key -CAcreateserial -days 2 -out " + d + "/" + who + ".pem");
    }
  }
 private:
  static void run(const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) throw std::runtime_error("failed: " + command);
  }
};

}  // namespace

TEST_CASE("replication: the url may list a cluster's servers; with the first one down the next one serves",
          "[replication]") {
  nats_server server;
  auto opts = options_for(server, "servers");
  opts.url = "nats://127.0.0.1:" + std::to_string(leftright_test::free_port()) + ", " + server.url();
  publish_and_follow(opts, opts);
  opts.url = " , ";
  CHECK(open_error(opts) == replication_errc::protocol);
}

TEST_CASE("replication: an engine with users refuses a client without credentials, and serves one with them",
          "[replication]") {
  nats_server server({"--user", "lr", "--pass", "s3cret"});
  auto opts = options_for(server, "users");
  CHECK(open_error(opts) == replication_errc::refused);
  opts.password = "wrong";
  opts.user = "lr";
  CHECK(open_error(opts) == replication_errc::refused);
  opts.password = "s3cret";
  auto fopts = options_for(server, "users");  // the follower's in its url
  fopts.url = "nats://lr:s3cret@127.0.0.1:" + server.url().substr(server.url().rfind(':') + 1);
  publish_and_follow(opts, fopts);
  opts.token = "t";  // a token and a user at once: refused before connecting
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.token.clear();
  opts.url = fopts.url;  // a user in the url and one in the options: the client would drop one
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.url = "nats://lr:ab/cd@127.0.0.1:" + server.url().substr(server.url().rfind(':') + 1);  // a / in it
  CHECK(open_error(opts) == replication_errc::protocol);
  // A refusal names the servers, never the secrets (in the url or in the options).
  auto wrong = options_for(server, "users");
  wrong.url = "nats://lr:hunter2@127.0.0.1:" + server.url().substr(server.url().rfind(':') + 1);
  std::string said = std::string(open_failure(wrong).what());
  CHECK(said.find("lr:***@127.0.0.1") != std::string::npos);
  CHECK(said.find("hunter2") == std::string::npos);
  wrong = options_for(server, "users");
  wrong.user = "lr";
  wrong.password = "correct-horse";
  said = std::string(open_failure(wrong).what());
  CHECK(said.find("correct-horse") == std::string::npos);
  // With several servers, a refusal met before a server that is down is still a refusal (the
  // client library's status is the last server's).
  wrong.url = server.url() + "," + "nats://127.0.0.1:" + std::to_string(leftright_test::free_port());
  CHECK(open_error(wrong) == replication_errc::refused);
}

TEST_CASE("replication: an error's detail is its message without the operation", "[replication]") {
  const replication_error e(replication_errc::refused, "connect to nats://h:1", "Authorization Violation: x: y");
  CHECK(std::string(e.what()) == "leftright: connect to nats://h:1: Authorization Violation: x: y");
  CHECK(std::string(e.detail()) == "Authorization Violation: x: y");
  const replication_error copy = e;  // the copy's detail is in the copy's message
  CHECK(std::string(copy.detail()) == "Authorization Violation: x: y");
  CHECK(std::string(replication_error(replication_errc::engine, "open", "").detail()).empty());
}

TEST_CASE("replication: error messages hide the secrets of the urls, read as the client library reads a url",
          "[replication]") {
  namespace rp = leftright::detail::replication;
  rp::connection_settings engine;
  // Passwords with a / or an @ in them (base64 makes them), a space, and a token.
  engine.url = "nats://lr:ab/c@d@127.0.0.1:4222, nats://tok3n@10.0.0.1:4222,lr:s3/cret@10.0.0.2:4222,"
               "nats://lr:two words@10.0.0.3:4222";
  engine.password = "o";  // the options' secrets never reach a message: not looked for
  const std::string said = rp::without_secrets(
      "connect to " + engine.url + ": Authentication Violation ('nats://lr:ab/c@d@127.0.0.1:4222/' as the "
      "library writes it, and tls://u:p@h:1)",
      engine);
  CHECK(said ==
        "connect to nats://lr:***@127.0.0.1:4222, nats://***@10.0.0.1:4222,lr:***@10.0.0.2:4222,"
        "nats://lr:***@10.0.0.3:4222: Authentication Violation ('nats://lr:***@127.0.0.1:4222/' as the "
        "library writes it, and tls://u:***@h:1)");
  CHECK(rp::url_secret("nats://127.0.0.1:4222") == std::pair<std::size_t, std::size_t>(0, 0));
}

TEST_CASE("replication: an engine with a token refuses a client without it, and serves one with it", "[replication]") {
  nats_server server({"--auth", "tok3n"});
  auto opts = options_for(server, "token");
  CHECK(open_error(opts) == replication_errc::refused);
  opts.token = "tok3n";
  publish_and_follow(opts, opts);
}

TEST_CASE("replication: TLS: a client that trusts the engine's authority connects; others are refused",
          "[replication]") {
  const tls_files certs;
  const std::string d = certs.dir.string();
  nats_server server({"--tls", "--tlscert", d + "/server.pem", "--tlskey", d + "/server.key"});
  auto opts = options_for(server, "tls");
  CHECK(open_error(opts) == replication_errc::refused);  // no authority given: the system's do not know the test's
  opts.tls_ca_file = certs.dir / "missing.pem";
  CHECK(open_error(opts) == replication_errc::protocol);  // a setting to mend, not a refusal
  opts.tls_ca_file = certs.dir / "other.pem";
  CHECK(open_error(opts) == replication_errc::refused);  // a certificate no trusted authority signed
  const std::string url = opts.url;
  opts.url = url + ",nats://127.0.0.1:" + std::to_string(leftright_test::free_port());  // then one down
  CHECK(open_error(opts) == replication_errc::refused);
  opts.url = url;
  opts.tls_ca_file = certs.dir / "ca.pem";
  publish_and_follow(opts, opts);
  opts.tls_cert_file = certs.dir / "server.pem";  // a certificate without its key
  CHECK(open_error(opts) == replication_errc::protocol);
}

TEST_CASE("replication: TLS: an engine that verifies its clients refuses one without a certificate its authority "
          "signed", "[replication]") {
  const tls_files certs;
  const std::string d = certs.dir.string();
  nats_server server({"--tls", "--tlscert", d + "/server.pem", "--tlskey", d + "/server.key", "--tlsverify",
                      "--tlscacert", d + "/ca.pem"});
  auto opts = options_for(server, "mtls");
  opts.tls_ca_file = certs.dir / "ca.pem";
  const replication_error none = open_failure(opts);  // no certificate of its own
  INFO(none.what());
  CHECK(none.code() == replication_errc::refused);
  CHECK(std::string(none.what()).find("tls_cert_file") != std::string::npos);
  opts.tls_cert_file = certs.dir / "other-client.pem";  // signed by an authority the engine does not trust
  opts.tls_key_file = certs.dir / "other-client.key";
  CHECK(open_error(opts) == replication_errc::refused);
  opts.tls_cert_file = certs.dir / "client.pem";
  opts.tls_key_file = certs.dir / "client.key";
  publish_and_follow(opts, opts);
}

TEST_CASE("replication: a tls:// url asks for TLS: an engine without it is refused, not spoken to in clear",
          "[replication]") {
  nats_server server;
  auto opts = options_for(server, "tls-url");
  opts.url = "TLS://127.0.0.1:" + server.url().substr(server.url().rfind(':') + 1);
  CHECK(open_error(opts) == replication_errc::refused);
  opts.url += ",tls://127.0.0.1:" + std::to_string(leftright_test::free_port());  // then one down
  const replication_error e = open_failure(opts);
  INFO(e.what());
  CHECK(e.code() == replication_errc::refused);
}

TEST_CASE("replication: credentials files are read as the engine's tools write them, and refused when they would "
          "send a secret or fail", "[replication]") {
  namespace rp = leftright::detail::replication;
  const temp_dir keys;
  const lrtest::nkey user = lrtest::make_nkey('U', keys.path);
  const lrtest::nkey account = lrtest::make_nkey('A', keys.path);
  // The keys themselves: form, checksum, kind (never shown in the reason).
  CHECK(rp::user_nkey_problem(user.seed, true).empty());
  CHECK(rp::user_nkey_problem(user.public_key, false).empty());
  CHECK(rp::user_nkey_problem(account.seed, true).find("not the seed of a user") != std::string::npos);
  CHECK(rp::user_nkey_problem(account.public_key, false).find("not the public key of a user") != std::string::npos);
  CHECK(rp::user_nkey_problem(user.seed, false).find("56 characters") != std::string::npos);  // a seed as the key
  std::string flipped = user.seed;
  flipped[20] = flipped[20] == 'A' ? 'B' : 'A';
  CHECK(rp::user_nkey_problem(flipped, true).find("checksum") != std::string::npos);
  std::string lower = user.seed;
  lower[30] = 'a';
  CHECK(rp::user_nkey_problem(lower, true).find("base32") != std::string::npos);

  // A credentials file as nsc writes it, and as other tools or editors may leave it.
  const std::string jwt = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJVIn0.c2ln";
  const std::filesystem::path nsc = keys.path / "nsc.creds";
  lrtest::write_creds_file(nsc, jwt, user);
  std::ifstream in(nsc, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string crlf;
  for (const char c : text) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  std::string spaced;
  for (const char c : text) spaced += c == '\n' ? std::string(" \n\t ") : std::string(1, c);
  std::string banner = text;  // banners of dashes between the blocks: marker lines that open no block
  std::replace(banner.begin(), banner.end(), '*', '-');
  const std::vector<std::pair<const char*, std::string>> readable = {
      {"nsc", text}, {"crlf + bom", "\xEF\xBB\xBF" + crlf}, {"spaces", spaced}, {"banner", banner},
      {"prefixed markers", "## " + text.substr(0, text.find('\n')) + text.substr(text.find('\n'))}};
  for (const auto& [name, body] : readable) {
    INFO(name);
    std::ofstream(keys.path / "c.creds", std::ios::binary | std::ios::trunc) << body;
    const rp::user_credentials c((keys.path / "c.creds").string(), "credentials_file",
                                 rp::credential_file::jwt_and_seed);
    CHECK(c.jwt == jwt);
    CHECK(c.seed == user.seed);
  }
  // What would send a secret as the JWT, or fail at every connection, is refused, naming why.
  const auto refusal = [&](const std::string& body, rp::credential_file holds) {
    std::ofstream(keys.path / "bad", std::ios::binary | std::ios::trunc) << body;
    try {
      const rp::user_credentials c((keys.path / "bad").string(), "credentials_file", holds);
    } catch (const replication_error& e) {
      CHECK(e.code() == replication_errc::protocol);
      for (const std::string& seed : {user.seed, account.seed}) {
        CHECK(std::string(e.what()).find(seed) == std::string::npos);
      }
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const std::string seed_block = "-----BEGIN USER NKEY SEED-----\n" + user.seed + "\n------END USER NKEY SEED------\n";
  const std::string jwt_block = "-----BEGIN NATS USER JWT-----\n" + jwt + "\n------END NATS USER JWT------\n";
  constexpr auto both = rp::credential_file::jwt_and_seed, jwt_only = rp::credential_file::jwt,
                 seed_only = rp::credential_file::seed;
  CHECK(refusal(seed_block, both).find("holds no user JWT") != std::string::npos);      // the seed as the JWT
  CHECK(refusal(seed_block + seed_block, both).find("holds no user JWT") != std::string::npos);
  CHECK(refusal(jwt + "\n" + user.seed + "\n", both).find("holds no user JWT") != std::string::npos);  // no blocks
  CHECK(refusal(jwt_block, both).find("holds a JWT but no seed") != std::string::npos);  // the JWT alone
  CHECK(refusal(text, seed_only).find("goes in credentials_file") != std::string::npos);  // as the seed file
  CHECK(refusal(jwt_block + "-----BEGIN USER NKEY SEED-----\n" + account.seed + "\n------END USER NKEY SEED------\n",
                both)
            .find("not the seed of a user") != std::string::npos);
  // A seed file: its first block, or its first line that starts with SU.
  CHECK(refusal(seed_block, seed_only) == "accepted");
  CHECK(refusal("# the seed\r\n  " + user.seed + " \r\n", seed_only) == "accepted");
  CHECK(refusal("# no seed here\n", seed_only).find("holds no user seed") != std::string::npos);
  // A JWT whose seed is in a file of its own: its first block, or the JWT alone on a line; never
  // a seed sent as the JWT.
  CHECK(refusal(jwt_block, jwt_only) == "accepted");
  CHECK(refusal(text, jwt_only) == "accepted");
  CHECK(refusal("\xEF\xBB\xBF# the user's JWT\r\n " + jwt + "\r\n", jwt_only) == "accepted");
  CHECK(refusal(seed_block, jwt_only).find("holds no user JWT") != std::string::npos);
  CHECK(refusal(user.seed + "\n", jwt_only).find("holds no user JWT") != std::string::npos);
  // The two files together: the JWT from the first, the seed from the second (even where the
  // first holds one too).
  const lrtest::nkey second = lrtest::make_nkey('U', keys.path);
  std::ofstream(keys.path / "jwt", std::ios::binary | std::ios::trunc) << jwt_block;
  const rp::user_credentials split(rp::credentials_source{(keys.path / "jwt").string(), second.seed_file.string()});
  CHECK(split.jwt == jwt);
  CHECK(split.seed == second.seed);
  const rp::user_credentials chained_and_seed(rp::credentials_source{nsc.string(), second.seed_file.string()});
  CHECK(chained_and_seed.seed == second.seed);

  // One connection attempt reads the files once: the seed that signs is the one read with the
  // JWT sent, even if the files are replaced between the client library's two callbacks.
  std::ofstream(keys.path / "live.creds", std::ios::binary | std::ios::trunc) << text;
  std::optional<rp::credentials_registration> live(
      rp::credentials_source{(keys.path / "live.creds").string(), {}});
  const auto id = reinterpret_cast<std::uintptr_t>(live->closure());
  const auto read = [id](auto how) {
    const std::shared_ptr<const rp::user_credentials> c = how(id);
    REQUIRE(c != nullptr);
    return std::pair<std::string, std::string>(c->jwt, c->seed);
  };
  const auto for_jwt = &rp::credentials_registry::for_jwt;
  const auto for_signature = &rp::credentials_registry::for_signature;
  CHECK(read(for_jwt).first == jwt);
  const std::string jwt2 = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJWIn0.c2ln";
  lrtest::write_creds_file(keys.path / "live.creds", jwt2, second);
  CHECK(read(for_signature).second == user.seed);    // kept from the JWT's reading
  CHECK(read(for_signature).second == second.seed);  // the next attempt reads anew
  CHECK(read(for_jwt).first == jwt2);
  rp::credentials_registry::drop_kept(id);  // an attempt that asked for no signature
  lrtest::write_creds_file(keys.path / "live.creds", jwt, user);
  CHECK(read(for_signature).second == user.seed);
  (void)read(for_jwt);
  live.reset();  // the connection gone: its callbacks find nothing, and nothing kept stays
  CHECK(rp::credentials_registry::for_jwt(id) == nullptr);
  CHECK(rp::credentials_registry::for_signature(id) == nullptr);
}

TEST_CASE("replication: an engine with NKey users refuses a client without the user's seed, and serves one with it",
          "[replication]") {
  const temp_dir keys;
  const lrtest::nkey user = lrtest::make_nkey('U', keys.path);
  const lrtest::nkey other = lrtest::make_nkey('U', keys.path);
  std::ofstream(keys.path / "nkeys.conf") << "authorization { users = [ { nkey: \"" << user.public_key << "\" } ] }\n";
  nats_server server({"-c", (keys.path / "nkeys.conf").string()});
  auto opts = options_for(server, "nkeys");
  CHECK(open_error(opts) == replication_errc::refused);  // no credentials
  opts.nkey = other.public_key;
  opts.nkey_seed_file = other.seed_file;
  CHECK(open_error(opts) == replication_errc::refused);  // a key the engine does not list
  opts.nkey = user.public_key;
  CHECK(open_error(opts) == replication_errc::refused);  // the user's key, signed with another's seed
  opts.nkey_seed_file = keys.path / "missing.nk";
  CHECK(open_error(opts) == replication_errc::protocol);  // a setting to mend, not a refusal
  opts.nkey_seed_file.clear();
  CHECK(open_error(opts) == replication_errc::protocol);  // a key without its seed
  std::ofstream(keys.path / "garbage.nk") << "SUNOTASEED\n";  // the client library would report an engine error
  opts.nkey_seed_file = keys.path / "garbage.nk";
  CHECK(open_error(opts) == replication_errc::protocol);
  std::ofstream(keys.path / "account.nk") << lrtest::make_nkey('A', keys.path).seed << "\n";
  opts.nkey_seed_file = keys.path / "account.nk";
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.nkey = user.seed;  // the seed where the public key goes: refused before it is sent
  opts.nkey_seed_file = user.seed_file;
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.nkey.clear();  // a seed file without its key
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.nkey = user.public_key;
  opts.nkey_seed_file = user.seed_file;
  publish_and_follow(opts, opts);
  opts.token = "t";  // two ways at once: refused before connecting
  CHECK(open_error(opts) == replication_errc::protocol);
  // The seed is a secret: no error shows it.
  opts.token.clear();
  opts.nkey = other.public_key;
  CHECK(std::string(open_failure(opts).what()).find(user.seed) == std::string::npos);
}

TEST_CASE("replication: a connection the engine refuses twice on reconnecting is closed for good: calls on it are "
          "refused, not unreachable", "[replication]") {
  const temp_dir keys;
  const lrtest::nkey user = lrtest::make_nkey('U', keys.path);
  const lrtest::nkey other = lrtest::make_nkey('U', keys.path);
  const auto allow = [&](const lrtest::nkey& who) {
    std::ofstream(keys.path / "nkeys.conf", std::ios::trunc)
        << "authorization { users = [ { nkey: \"" << who.public_key << "\" } ] }\n";
  };
  allow(user);
  nats_server server({"-c", (keys.path / "nkeys.conf").string()});
  auto opts = options_for(server, "revoked");
  opts.nkey = user.public_key;
  opts.nkey_seed_file = user.seed_file;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  leader.insert_or_assign(1, 1);
  REQUIRE(leader.publish() == 1);
  server.kill();
  allow(other);  // the user revoked while the engine restarts
  server.start();
  // While the client library may still try again, a publish is unreachable; once the engine has
  // refused it twice in a row the library closes the connection for good, and every call is
  // refused (not a bound on time: each attempt fails within the timeout, and the library's
  // attempts come a reconnect wait apart; here the first publish usually finds it closed).
  leader.insert_or_assign(2, 2);
  replication_errc last = replication_errc::unreachable;
  std::string said;
  for (int attempt = 0; attempt < 20 && last != replication_errc::refused; ++attempt) {
    try {
      (void)leader.publish();
      FAIL("published as a user the engine no longer lists");
    } catch (const replication_error& e) {
      last = e.code();
      said = e.what();
      CHECK((last == replication_errc::unreachable || last == replication_errc::refused));
    }
  }
  INFO(said);
  CHECK(last == replication_errc::refused);
  CHECK(said.find("Authorization Violation") != std::string::npos);
  CHECK_FALSE(leader.connected());
  CHECK(lr.read().find(u64{2}) == nullptr);
}

TEST_CASE("replication: an engine in operator mode serves a client with a user's credentials file, and refuses others",
          "[replication]") {
  const temp_dir keys;
  const lrtest::operator_setup trusted = lrtest::make_operator_setup(keys.path);
  const std::filesystem::path untrusted = lrtest::make_untrusted_creds(keys.path);
  std::ofstream(keys.path / "operator.conf") << trusted.server_config;
  nats_server server({"-c", (keys.path / "operator.conf").string()});
  auto opts = options_for(server, "creds");
  CHECK(open_error(opts) == replication_errc::refused);  // no credentials
  opts.credentials_file = untrusted;
  CHECK(open_error(opts) == replication_errc::refused);  // a user of an account the operator never signed
  opts.credentials_file = keys.path / "missing.creds";
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.credentials_file = keys.path;  // a directory
  CHECK(open_error(opts) == replication_errc::protocol);
  std::ofstream(keys.path / "garbage.creds") << "not a credentials file\n";
  opts.credentials_file = keys.path / "garbage.creds";
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.credentials_file = lrtest::make_nkey('U', keys.path).seed_file;  // a seed without its JWT
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.credentials_file = trusted.creds_file;
  publish_and_follow(opts, opts);  // the map's streams and buckets, in the user's account
  opts.user = "lr";  // two ways at once
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.user.clear();
  const std::string port = server.url().substr(server.url().rfind(':') + 1);
  opts.url = "nats://lr:pw@127.0.0.1:" + port;  // a user in the url, and the file
  CHECK(open_error(opts) == replication_errc::protocol);
  // A file with Windows line ends and a byte order mark serves, the same as nsc's.
  std::ifstream in(trusted.creds_file, std::ios::binary);
  std::string windows = "\xEF\xBB\xBF";
  for (char c; in.get(c);) windows += c == '\n' ? std::string("\r\n") : std::string(1, c);
  std::ofstream(keys.path / "windows.creds", std::ios::binary) << windows;
  opts.url = server.url();
  opts.credentials_file = keys.path / "windows.creds";
  publish_and_follow(opts, opts);
  // The JWT in a file of its own and its seed in another (as a secrets store may hold them).
  std::ofstream(keys.path / "user.jwt") << lrtest::make_user_jwt(trusted.account, trusted.user, "split", keys.path)
                                        << "\n";
  opts.credentials_file = keys.path / "user.jwt";
  CHECK(open_error(opts) == replication_errc::protocol);  // the JWT without its seed
  opts.nkey_seed_file = lrtest::make_nkey('U', keys.path).seed_file;
  CHECK(open_error(opts) == replication_errc::refused);  // another user's seed: the engine refuses
  opts.nkey_seed_file = trusted.user.seed_file;
  publish_and_follow(opts, opts);
  opts.nkey = trusted.user.public_key;  // and an NKey user at once: two ways
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.nkey.clear();
  opts.credentials_file.clear();  // a seed file with neither a JWT nor a key
  CHECK(open_error(opts) == replication_errc::protocol);
  opts.nkey_seed_file.clear();
  // A JWT past its expiry is not sent (the engine would refuse it): a setting to mend.
  const long long past = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count() - 60;
  lrtest::write_creds_file(keys.path / "expired.creds",
                           lrtest::make_user_jwt(trusted.account, trusted.user, "expired", keys.path, past),
                           trusted.user);
  opts.credentials_file = keys.path / "expired.creds";
  const replication_error expired = open_failure(opts);
  CHECK(expired.code() == replication_errc::protocol);
  CHECK(std::string(expired.what()).find("expired") != std::string::npos);
  lrtest::write_creds_file(keys.path / "later.creds",
                           lrtest::make_user_jwt(trusted.account, trusted.user, "later", keys.path, past + 3660),
                           trusted.user);
  opts.credentials_file = keys.path / "later.creds";  // an expiry still ahead: served
  publish_and_follow(opts, opts);
  // An engine without authentication sends no nonce: nothing to sign, and it serves.
  nats_server open_engine;
  auto open_opts = options_for(open_engine, "creds-open");
  open_opts.credentials_file = trusted.creds_file;
  publish_and_follow(open_opts, open_opts);
  open_opts.credentials_file.clear();
  const lrtest::nkey any_user = lrtest::make_nkey('U', keys.path);
  open_opts.nkey = any_user.public_key;
  open_opts.nkey_seed_file = any_user.seed_file;
  publish_and_follow(open_opts, open_opts);
}

TEST_CASE("replication: a user the engine revokes while connected is closed out at once: calls are refused",
          "[replication]") {
  const temp_dir keys;
  const lrtest::operator_setup trusted = lrtest::make_operator_setup(keys.path);
  std::ofstream(keys.path / "operator.conf") << trusted.server_config;
  nats_server server({"-c", (keys.path / "operator.conf").string()});
  auto opts = options_for(server, "revoked-user");
  opts.credentials_file = trusted.creds_file;
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  leader.insert_or_assign(1, 1);
  REQUIRE(leader.publish() == 1);
  auto [f, fr] = leftright::open_follower<u64, u64>(opts);
  REQUIRE(f.wait_for(1, std::chrono::seconds(10)));
  CHECK_FALSE(f.closed());
  std::ofstream(keys.path / "operator.conf", std::ios::trunc) << trusted.server_config_revoking(trusted.user);
  server.reload();
  // Until the engine has read its configuration again, publishes go through; then the client
  // library closes the connection at the engine's notice, and every call is refused (a bound on
  // attempts, not on time).
  std::string said;
  for (int attempt = 0; attempt < 100'000 && said.empty(); ++attempt) {
    leader.insert_or_assign(2, u64(attempt));
    try {
      (void)leader.publish();
    } catch (const replication_error& e) {
      said = e.what();
      CHECK(e.code() == replication_errc::refused);
    }
  }
  INFO(said);
  CHECK(said.find("Revoked") != std::string::npos);
  CHECK_FALSE(leader.connected());
  // The follower, the same user, is closed out too (the engine's notice reaches each connection
  // as its own: waited for, not timed), and its readers keep version 1.
  const auto& fol = f;  // (clang before 16 cannot capture a structured binding)
  CHECK(eventually([&] { return fol.closed(); }, std::chrono::seconds(30)));
  CHECK_FALSE(f.connected());
  CHECK(*fr.read().find(u64{1}) == 1);
  try {
    (void)leader.publish();
    FAIL("published as a revoked user");
  } catch (const replication_error& e) {
    CHECK(e.code() == replication_errc::refused);
  }
}

TEST_CASE("replication: the credentials file is read at every connection: expired, it keeps a restarted engine's "
          "door shut; renewed, the leader goes on", "[replication]") {
  const temp_dir keys;
  const lrtest::operator_setup trusted = lrtest::make_operator_setup(keys.path);
  std::ofstream(keys.path / "operator.conf") << trusted.server_config;
  nats_server server({"-c", (keys.path / "operator.conf").string()});
  auto opts = options_for(server, "rotated");
  opts.credentials_file = keys.path / "live.creds";
  std::filesystem::copy_file(trusted.creds_file, opts.credentials_file);
  auto [leader, lr] = leftright::open_leader<u64, u64>(opts);
  leader.insert_or_assign(1, 1);
  REQUIRE(leader.publish() == 1);
  // The user's JWT expires and is not yet renewed: refused by the library, not sent (two refusals
  // by the engine would end the client library's reconnections for good).
  const long long past = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count() - 1;
  lrtest::write_creds_file(opts.credentials_file,
                           lrtest::make_user_jwt(trusted.account, trusted.user, "expired", keys.path, past),
                           trusted.user);
  server.kill();
  server.start();
  leader.insert_or_assign(2, 2);
  // Not a bound on time: with the file read once at the open, the client would be back within
  // a reconnect wait (100 ms), and these publishes (2 s each) would go through.
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      (void)leader.publish();
      FAIL("published through a connection whose credentials file holds an expired JWT");
    } catch (const replication_error& e) {
      // Unreachable until the client's first attempt has failed on the file; then protocol,
      // naming why.
      INFO(e.what());
      if (e.code() == replication_errc::protocol) {
        CHECK(std::string(e.what()).find("expired") != std::string::npos);
      } else {
        CHECK((e.code() == replication_errc::unreachable || e.code() == replication_errc::engine));
      }
    }
  }
  std::filesystem::copy_file(trusted.creds_file, opts.credentials_file,
                             std::filesystem::copy_options::overwrite_existing);
  CHECK(publish_retrying(leader, true) == 2);
  CHECK(*lr.read().find(u64{2}) == 2);
  // A file that no longer holds what it must while the client reconnects: every attempt fails,
  // and a call says why (protocol, the file named), not that the engine is out of reach.
  std::ofstream(opts.credentials_file, std::ios::trunc) << "not a credentials file\n";
  server.kill();
  server.start();
  leader.insert_or_assign(3, 3);
  std::string said;
  for (int attempt = 0; attempt < 10 && said.find("every reconnection fails") == std::string::npos; ++attempt) {
    try {
      (void)leader.publish();
      FAIL("published through a connection whose credentials file holds garbage");
    } catch (const replication_error& e) {
      said = e.what();
      if (said.find("every reconnection fails") != std::string::npos) CHECK(e.code() == replication_errc::protocol);
    }
  }
  INFO(said);
  CHECK(said.find(opts.credentials_file.string()) != std::string::npos);
  // Mended while the engine is down: the client's last attempt failed on the file, but a call
  // reads the file again before it says so, and says the engine is out of reach.
  server.kill();
  std::filesystem::copy_file(trusted.creds_file, opts.credentials_file,
                             std::filesystem::copy_options::overwrite_existing);
  try {
    (void)leader.publish();
    FAIL("published while the engine was down");
  } catch (const replication_error& e) {
    INFO(e.what());
    CHECK(e.code() == replication_errc::unreachable);
  }
  server.start();
  CHECK(publish_retrying(leader, true) == 3);
}
