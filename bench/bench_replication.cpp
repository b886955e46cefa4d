// SPDX-License-Identifier: Apache-2.0
// Replication through NATS JetStream, against the local baselines in the same run: the latency
// of a leader's publish (batches of 1, 64 and 1024 overwrites of u64 keys) beside a durable
// map's publish in sync mode and in none mode, and the time from a leader's publish until a follower's readers
// see it. Each benchmark reports p50 and p99 of its iterations (microseconds) as counters.
// Its own executable (it links libnats) and its own nats-server on 127.0.0.1, in a temporary
// store: leftright_bench_replication --benchmark_repetitions=5.
#include <leftright/durable_map.hpp>
#include <leftright/replicated_map.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support/replication_support.hpp"

namespace {

using u64 = std::uint64_t;
using clock_type = std::chrono::steady_clock;

/// The server every benchmark of this run shares (started on first use).
leftright_test::nats_server& server() {
  static leftright_test::nats_server s;
  return s;
}

/// A fresh map name per benchmark run (streams are per name).
std::string fresh_name(const char* what) {
  static std::atomic<int> n{0};
  // relaxed: a unique number; nothing else is ordered by it.
  return std::string(what) + "-" + std::to_string(n.fetch_add(1, std::memory_order_relaxed));
}

/// Sets p50 and p99 (microseconds) from the iterations' latencies.
void report_percentiles(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
}

template <class Writer>
void queue_batch(Writer& w, u64 batch, u64& next) {
  for (u64 i = 0; i < batch; ++i, ++next) w.insert_or_assign(next % 100'000, next);
}

void BM_replicated_publish(benchmark::State& state) {
  const u64 batch = static_cast<u64>(state.range(0));
  leftright::replication_options o;
  o.url = server().url();
  o.name = fresh_name("publish");
  o.purge_log = false;
  auto [w, r] = leftright::open_leader<u64, u64>(o);
  std::vector<double> us;
  u64 next = 0;
  for (auto _ : state) {
    queue_batch(w, batch, next);
    const auto t0 = clock_type::now();
    benchmark::DoNotOptimize(w.publish());
    us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  report_percentiles(state, us);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_replicated_publish)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();

/// A durable map's publish, in sync mode (range(1) == 1: msync before publish returns) or none
/// (range(1) == 0: the record is in the page cache, as nats-server 2.9 has it when it acks).
void BM_durable_publish(benchmark::State& state) {
  const u64 batch = static_cast<u64>(state.range(0));
  char tmpl[] = "/tmp/leftright-bench-durable-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  std::vector<double> us;
  {
    leftright::durable_options o;
    o.path = tmpl;
    o.durability = state.range(1) == 1 ? leftright::durability::sync : leftright::durability::none;
    auto [w, r] = leftright::open_map<u64, u64>(o);
    u64 next = 0;
    for (auto _ : state) {
      queue_batch(w, batch, next);
      const auto t0 = clock_type::now();
      benchmark::DoNotOptimize(w.publish());
      us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
  }
  std::filesystem::remove_all(tmpl);
  report_percentiles(state, us);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_durable_publish)->ArgsProduct({{1, 64, 1024}, {1, 0}})->ArgNames({"batch", "sync"})->UseRealTime();

/// From the leader's publish() call until a follower's readers see that version.
void BM_follower_visibility(benchmark::State& state) {
  const u64 batch = static_cast<u64>(state.range(0));
  leftright::replication_options o;
  o.url = server().url();
  o.name = fresh_name("visible");
  o.purge_log = false;
  auto [w, r] = leftright::open_leader<u64, u64>(o);
  auto [f, fr] = leftright::open_follower<u64, u64>(o);
  std::vector<double> us;
  u64 next = 0;
  for (auto _ : state) {
    queue_batch(w, batch, next);
    const auto t0 = clock_type::now();
    const u64 v = w.publish();
    if (!f.wait_for(v, std::chrono::seconds(10))) {
      state.SkipWithError("the follower did not catch up in 10 s");
      break;
    }
    us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  report_percentiles(state, us);
}
BENCHMARK(BM_follower_visibility)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
