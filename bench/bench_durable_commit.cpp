// SPDX-License-Identifier: Apache-2.0
// Scenario: what a durable commit costs. Each iteration overwrites `batch` existing keys of a
// 64K-entry store (u64 key, u64 value; keys in a shuffled order) and commits them as one batch:
// ours publishes (in memory, or logged in each durability mode), LMDB commits one write
// transaction, SQLite (WAL mode) one transaction of prepared upserts, and the floor pwrites the
// bytes our log record would take and fdatasyncs them. Every commit (its operations included) is
// timed on its own; p50/p99/p99.9 of those samples are reported as counters in nanoseconds, as
// bench_publish.cpp does for publish().
//
// Each run starts from an empty directory under $LEFTRIGHT_BENCH_DIR (see durable_adapters.hpp),
// fills the 64K entries in one untimed batch, and removes the directory at the end. Our stores
// run with the default options (64 MiB segments, automatic checkpoint every 256 MiB of log):
// those costs are part of what a user gets.
//
// Name: durable_commit/<system>/<mode>/u64/batch:<1|64|1024>/real_time
// items/s = records committed per second; commits_per_s = batches per second.
//
// The targets are ratios of two of these, and this 2-core machine is shared: a store measured a
// few seconds after its baseline may see another disk or CPU load. So each target also runs as
// a pair, the two stores committing the same batches alternately in one loop (which one goes
// first alternates too), each commit timed on its own:
//   durable_pair/none_vs_memory/...      leftright/none against leftright/memory (make_map)
//   durable_pair/sync_vs_<floor>/...     leftright/sync against pwrite_fdatasync/<floor>
// Counters: p50_ns, mean_ns of the store; base_p50_ns, base_mean_ns of its baseline;
// p50_ratio = p50_ns / base_p50_ns and mean_ratio = mean_ns / base_mean_ns (cost ratios: a
// rate ratio is the inverse).
// Name: durable_pair/<target>/u64/batch:<1|64|1024>/real_time
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "durable_adapters.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

inline constexpr std::size_t commit_n = std::size_t{1} << 16;  // entries in every store

template <class Store>
void bm_commit(benchmark::State& state, const std::string& mode, std::size_t batch) {
  const std::vector<std::uint64_t>& preload = present_keys<std::uint64_t, commit_n>();
  const std::vector<std::uint64_t>& keys = write_keys<std::uint64_t, commit_n>();
  try {
    scratch_dir dir(std::string(Store::name) + "-" + mode);
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(std::min<benchmark::IterationCount>(state.max_iterations, 1 << 22)));
    std::uint64_t checkpoints = 0;
    {
      Store s(dir.path(), mode, preload);
      std::size_t i = 0;
      std::uint64_t v = commit_n;
      for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        s.commit(&keys[i], batch, v);
        const auto t1 = std::chrono::steady_clock::now();
        samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
        v += batch;
        i += batch;
        if (i == keys.size()) i = 0;
      }
      if constexpr (requires { s.checkpoints(); }) checkpoints = s.checkpoints();
    }  // closed (untimed) before its directory is removed
    std::sort(samples.begin(), samples.end());
    state.counters["p50_ns"] = quantile(samples, 0.50);
    state.counters["p99_ns"] = quantile(samples, 0.99);
    state.counters["p999_ns"] = quantile(samples, 0.999);
    state.counters["commits_per_s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["record_bytes"] = static_cast<double>(lr_record_bytes(batch));
    if (checkpoints != 0) state.counters["auto_checkpoints"] = static_cast<double>(checkpoints);
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(batch));
    state.SetLabel("fs=" + fs_type(dir.path()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

template <class StoreA, class StoreB>
void bm_pair(benchmark::State& state, const std::string& mode_a, const std::string& mode_b, std::size_t batch) {
  const std::vector<std::uint64_t>& preload = present_keys<std::uint64_t, commit_n>();
  const std::vector<std::uint64_t>& keys = write_keys<std::uint64_t, commit_n>();
  try {
    scratch_dir dir_a(std::string(StoreA::name) + "-" + mode_a);
    scratch_dir dir_b(std::string(StoreB::name) + "-" + mode_b);
    const auto cap = static_cast<std::size_t>(std::min<benchmark::IterationCount>(state.max_iterations, 1 << 22));
    std::vector<double> a, b;
    a.reserve(cap);
    b.reserve(cap);
    {
      StoreA sa(dir_a.path(), mode_a, preload);
      StoreB sb(dir_b.path(), mode_b, preload);
      std::size_t i = 0;
      std::uint64_t v = commit_n;
      bool a_first = true;
      const auto timed = [&](auto& s, std::vector<double>& out) {
        const auto t0 = std::chrono::steady_clock::now();
        s.commit(&keys[i], batch, v);
        const auto t1 = std::chrono::steady_clock::now();
        out.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
      };
      for (auto _ : state) {
        if (a_first) {
          timed(sa, a);
          timed(sb, b);
        } else {
          timed(sb, b);
          timed(sa, a);
        }
        a_first = !a_first;
        v += batch;
        i += batch;
        if (i == keys.size()) i = 0;
      }
    }
    const auto mean = [](const std::vector<double>& x) {
      double sum = 0;
      for (double d : x) sum += d;
      return x.empty() ? 0.0 : sum / static_cast<double>(x.size());
    };
    const double mean_a = mean(a), mean_b = mean(b);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    const double p50_a = quantile(a, 0.50), p50_b = quantile(b, 0.50);
    state.counters["p50_ns"] = p50_a;
    state.counters["p99_ns"] = quantile(a, 0.99);
    state.counters["mean_ns"] = mean_a;
    state.counters["base_p50_ns"] = p50_b;
    state.counters["base_p99_ns"] = quantile(b, 0.99);
    state.counters["base_mean_ns"] = mean_b;
    state.counters["p50_ratio"] = p50_b > 0 ? p50_a / p50_b : 0;
    state.counters["mean_ratio"] = mean_b > 0 ? mean_a / mean_b : 0;
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(batch));
    state.SetLabel("fs=" + fs_type(dir_a.path()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

[[maybe_unused]] const bool registered = [] {
  benchmark::AddCustomContext("durable_dir", scratch_root().string());
  benchmark::AddCustomContext("durable_fs", fs_description(scratch_root()));
  std::string stores;
  for_each_store([&]<class Store>() {
    stores += (stores.empty() ? "" : ",") + std::string(Store::name);
    for (std::string_view mode : Store::modes()) {
      for (std::size_t batch : {std::size_t{1}, std::size_t{64}, std::size_t{1024}}) {
        const std::string name = "durable_commit/" + std::string(Store::name) + "/" + std::string(mode) +
                                 "/u64/batch:" + std::to_string(batch);
        benchmark::RegisterBenchmark(name.c_str(), &bm_commit<Store>, std::string(mode), batch)
            ->UseRealTime()
            ->MinTime(0.5);  // thousands of samples even at fdatasync speed, for the p99
      }
    }
  });
  benchmark::AddCustomContext("durable_stores", stores);
  for (std::size_t batch : {std::size_t{1}, std::size_t{64}, std::size_t{1024}}) {
    const std::string b = "/u64/batch:" + std::to_string(batch);
    benchmark::RegisterBenchmark(("durable_pair/none_vs_memory" + b).c_str(), &bm_pair<lr_store, lr_store>,
                                 std::string("none"), std::string("memory"), batch)
        ->UseRealTime()
        ->MinTime(0.5);
    for (const char* floor : {"fallocate", "overwrite"}) {
      benchmark::RegisterBenchmark(("durable_pair/sync_vs_" + std::string(floor) + b).c_str(),
                                   &bm_pair<lr_store, pwrite_store>, std::string("sync"), std::string(floor), batch)
          ->UseRealTime()
          ->MinTime(0.5);
    }
  }
  return true;
}();

}  // namespace
}  // namespace lrbench
