// Scenario: how long open_map() takes to recover a map of 1M u64 -> u64 entries, from a snapshot
// (the map was checkpointed before it was closed) or from the log alone (no checkpoint: 1024
// records of 1024 inserts each are replayed). Only open_map() is timed (manual time); closing
// the map and everything before the first open are not. The files were just written, so they are
// in the page cache: this is recovery after a process restart, not after a reboot (no cold-cache
// figure: dropping the page cache needs root).
//
// Every open also does what any open does: lock the directory, scan the written part of each
// log segment (segments are preallocated, 64 MiB), and continue in the newest segment if it is
// empty or start a fresh one (create, preallocate, sync its header and the directory).
//
// Name: durable_recovery/leftright/<snapshot|log>/u64/1M/manual_time
// items/s = entries recovered per second (wall clock). cpu_ms_per_open: the thread's CPU time in
// open_map() (on a busy machine, wall time minus this is waiting: for the disk, or for a core).
#include <time.h>

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

inline constexpr std::size_t recover_batch = 1024;

/// This thread's CPU time, in seconds.
inline double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

template <std::size_t N>
void bm_recover(benchmark::State& state, bool snapshot) {
  const std::vector<std::uint64_t>& keys = present_keys<std::uint64_t, N>();
  try {
    scratch_dir dir(snapshot ? "recover-snapshot" : "recover-log");
    leftright::durable_options o;
    o.path = dir.path() / "map";
    o.durability = leftright::durability::none;
    o.checkpoint_bytes = 0;  // the log variant must keep its whole log
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
      for (std::size_t i = 0; i < keys.size(); ++i) {
        w.insert_or_assign(keys[i], i);
        if ((i + 1) % recover_batch == 0) w.publish();
      }
      w.publish();
      if (snapshot) w.checkpoint();
    }  // closed: its log synced
    std::uint64_t entries = 0, replayed = 0;
    double open_only_s = 0, cpu_s = 0;
    for (auto _ : state) {
      const double c0 = thread_cpu_seconds();
      const auto t0 = std::chrono::steady_clock::now();
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
      const auto t1 = std::chrono::steady_clock::now();
      cpu_s += thread_cpu_seconds() - c0;
      state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
      entries = r.size();
      replayed = w.recovery().records_replayed;
      open_only_s = std::chrono::duration<double>(w.recovery().duration).count();
    }
    if (entries != keys.size()) {
      state.SkipWithError(("recovered " + std::to_string(entries) + " entries, expected " +
                           std::to_string(keys.size())).c_str());
      return;
    }
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(entries));
    state.counters["records_replayed"] = static_cast<double>(replayed);
    state.counters["cpu_ms_per_open"] = cpu_s * 1e3 / static_cast<double>(state.iterations());
    // open_map's own measure of its recovery (before the reader and writer are built), last run.
    state.counters["recovery_report_ms"] = open_only_s * 1e3;
    state.SetLabel("fs=" + fs_type(dir.path()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

[[maybe_unused]] const bool registered = [] {
  for (bool snapshot : {true, false}) {
    const std::string name = std::string("durable_recovery/leftright/") + (snapshot ? "snapshot" : "log") +
                             "/u64/" + size_name(large_n);
    benchmark::RegisterBenchmark(name.c_str(), &bm_recover<large_n>, snapshot)
        ->UseManualTime()
        ->MinTime(0.5);
  }
  return true;
}();

}  // namespace
}  // namespace lrbench
