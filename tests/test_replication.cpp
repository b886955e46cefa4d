// SPDX-License-Identifier: Apache-2.0
// Replication on a real engine: each test case starts its own nats-server with JetStream on
// 127.0.0.1 (tests/replication_support.hpp). Built only when libnats and nats-server are found.
// LEFTRIGHT_TEST_OWN_EXECUTABLE: it links libnats, which the other tests do not need.
#include <leftright/replicated_map.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "replication_support.hpp"

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
  read_checker(Factory f, const model* m, int threads = 2) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, f, m] {
        auto r = f.make_reader();
        u64 last = 0;
        // relaxed: a stop flag; join() orders everything else.
        while (!stop_.load(std::memory_order_relaxed)) {
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
          // relaxed: a counter read after join.
          reads_.fetch_add(1, std::memory_order_relaxed);
        }
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
  u64 reads() const { return reads_.load(std::memory_order_relaxed); }  // relaxed: after join

 private:
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<u64> reads_{0};
  std::mutex mu_;
  std::vector<std::string> failures_;
};

leftright::replication_options options_for(const nats_server& s, const std::string& name) {
  leftright::replication_options o;
  o.url = s.url();
  o.name = name;
  o.timeout = std::chrono::milliseconds(2000);
  return o;
}

}  // namespace

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
  CHECK(reader.version() == 1000);  // the snapshot's
  CHECK(fingerprint_of(reader.read()) == m.at[1000]);
  read_checker checker(f.factory(), &m);
  REQUIRE(f.wait_for(2000, std::chrono::seconds(20)));
  checker.stop();
  CHECK(checker.failures().empty());
  for (const auto& e : checker.failures()) INFO(e);
  CHECK(checker.reads() > 0);
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
