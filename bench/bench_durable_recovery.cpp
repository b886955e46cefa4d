// SPDX-License-Identifier: Apache-2.0
// Scenario: how long open_map() takes to recover a map of 1M (or 16M: a map that lives in DRAM)
// u64 -> u64 entries, from a snapshot (the map was checkpointed before it was closed) or from the
// log alone (no checkpoint: records of 1024 inserts each are replayed). Only open_map() is timed (manual time); closing
// the map and everything before the first open are not. The files were just written, so they are
// in the page cache: this is recovery after a process restart, not after a reboot (no cold-cache
// figure: dropping the page cache needs root).
//
// Each open runs in a fresh process (this executable, started again with --recover_child DIR),
// as a real restart does. That matters: absl::Hash is seeded per process, so in the process that
// wrote the files the snapshot's entries come in the order of the table being built, which a
// restarted process never sees.
//
// Every open also does what any open does: lock the directory, scan the written part of each
// log segment (segments are preallocated, 64 MiB), and continue in the newest segment if it is
// empty or start a fresh one (create, preallocate, sync its header and the directory).
//
// Each recovery is measured twice: as open_map() does it by default (on a machine of two
// hardware threads or more, both copies built side by side on two threads), and with
// recovery_threads = 1 (one copy built, then copied). Each has its floor: the two tables built
// from memory on one thread, and on two.
//
// Name: durable_recovery/<leftright|leftright_1t>/<snapshot|log>/u64/<1M|16M>/manual_time,
//       durable_recovery/floor/<tables|tables_2t>/u64/<1M|16M>/manual_time
// items/s = entries recovered per second (wall clock). cpu_ms_per_open: the child's CPU time in
// open_map(), all its threads (on a busy machine, wall time minus this is waiting: for the disk,
// or for a core; with two threads it can exceed the wall time). peak_mib: the child's peak
// resident memory (the keys it builds the floor from included; the recovering child's mapped
// files count where their pages were touched).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <benchmark/benchmark.h>
#include <leftright/detail/allocator.hpp>
#include <leftright/detail/slot_order.hpp>
#include <leftright/detail/storage/replay.hpp>

#include "durable_adapters.hpp"
#include "measure.hpp"
#include "workload.hpp"

extern char** environ;

namespace lrbench {
namespace {

inline constexpr std::size_t recover_batch = 1024;

/// The map's options, in the writing process and in the child that reopens it: `none`, and no
/// automatic checkpoint (the log variant must keep its whole log); threads: recovery_threads.
inline leftright::durable_options recover_options(const std::filesystem::path& path, unsigned threads = 0) {
  leftright::durable_options o;
  o.path = path;
  o.durability = leftright::durability::none;
  o.checkpoint_bytes = 0;
  o.recovery_threads = threads;
  return o;
}

/// What one open in a child process measured.
struct recovery_sample {
  double wall_s = 0;    ///< open_map(), wall clock
  double cpu_s = 0;     ///< open_map(), the child's CPU time
  double report_s = 0;  ///< the recovery report's own duration
  std::uint64_t entries = 0;
  std::uint64_t replayed = 0;
  unsigned threads = 0;  ///< that built the two copies
  double peak_mib = 0;   ///< the child's peak resident memory (VmHWM), MiB
};

/// This process's peak resident memory so far (VmHWM: of this program's image alone; getrusage's
/// ru_maxrss keeps the spawning parent's across the exec), in MiB; 0 if not known.
inline double peak_rss_mib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kib = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "VmHWM: %lf kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib / 1024.0;
}

/// Runs `<this executable> <flag> <arg> --child_threads=<threads>` (--recover_child DIR, or
/// --build_child N: the floor) and reads its one line of figures.
inline recovery_sample run_child(const char* child_flag, const std::string& child_arg, unsigned threads) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  std::string exe = "/proc/self/exe", flag = child_flag, arg = child_arg,
              threads_flag = "--child_threads=" + std::to_string(threads);
  char* argv[] = {exe.data(), flag.data(), arg.data(), threads_flag.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw std::system_error(rc, std::generic_category(), "posix_spawn");
  }
  std::string out;
  char buf[256];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  recovery_sample r;
  unsigned long long entries = 0, replayed = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      std::sscanf(out.c_str(), "%lf %lf %lf %llu %llu %u %lf", &r.wall_s, &r.cpu_s, &r.report_s, &entries,
                  &replayed, &r.threads, &r.peak_mib) != 7) {
    throw std::runtime_error(std::string("the child (") + child_flag + ") failed: " + out);
  }
  r.entries = entries;
  r.replayed = replayed;
  return r;
}

/// threads: recovery_threads of the child's open (0: open_map's default).
template <std::size_t N>
void bm_recover(benchmark::State& state, bool snapshot, unsigned threads) {
  const std::vector<std::uint64_t>& keys = present_keys<std::uint64_t, N>();
  try {
    scratch_dir dir(snapshot ? "recover-snapshot" : "recover-log");
    const leftright::durable_options o = recover_options(dir.path() / "map");
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
      for (std::size_t i = 0; i < keys.size(); ++i) {
        w.insert_or_assign(keys[i], i);
        if ((i + 1) % recover_batch == 0) w.publish();
      }
      w.publish();
      if (snapshot) w.checkpoint();
    }  // closed: its log synced
    recovery_sample last{};
    double cpu_s = 0;
    for (auto _ : state) {
      last = run_child("--recover_child", o.path.string(), threads);
      cpu_s += last.cpu_s;
      state.SetIterationTime(last.wall_s);
    }
    const std::uint64_t entries = last.entries;
    if (entries != keys.size()) {
      state.SkipWithError(("recovered " + std::to_string(entries) + " entries, expected " +
                           std::to_string(keys.size())).c_str());
      return;
    }
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(entries));
    state.counters["records_replayed"] = static_cast<double>(last.replayed);
    state.counters["cpu_ms_per_open"] = cpu_s * 1e3 / static_cast<double>(state.iterations());
    // open_map's own measure of its recovery (before the reader and writer are built), last run.
    state.counters["recovery_report_ms"] = last.report_s * 1e3;
    state.counters["threads"] = static_cast<double>(last.threads);
    state.counters["peak_mib"] = last.peak_mib;
    state.SetLabel("fs=" + fs_type(dir.path()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

/// The floor: what any recovery of a left-right map must do at least, in a fresh process:
/// build two tables of the same entries from memory (reserved, inserted in the table's slot
/// order as recovery inserts a snapshot's entries, the map's own table type and allocator): on
/// one thread, one table
/// and then a copy of it; on two, both at once, as a recovery on two threads builds them.
/// Recovery's ratio to it is what reading, checking and decoding the files, and the rest of
/// open_map(), cost.
template <std::size_t N>
void bm_build_floor(benchmark::State& state, unsigned threads) {
  try {
    recovery_sample last{};
    double cpu_s = 0;
    for (auto _ : state) {
      last = run_child("--build_child", std::to_string(N), threads);
      cpu_s += last.cpu_s;
      state.SetIterationTime(last.wall_s);
    }
    if (last.entries != N) {
      state.SkipWithError(("built " + std::to_string(last.entries) + " entries, expected " + std::to_string(N)).c_str());
      return;
    }
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(N));
    state.counters["cpu_ms_per_open"] = cpu_s * 1e3 / static_cast<double>(state.iterations());
    state.counters["peak_mib"] = last.peak_mib;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

/// The floors and the recoveries of a map of N entries.
template <std::size_t N>
void register_size() {
  for (unsigned threads : {1u, 2u}) {
    const std::string name =
        std::string("durable_recovery/floor/") + (threads == 1 ? "tables" : "tables_2t") + "/u64/" + size_name(N);
    benchmark::RegisterBenchmark(name.c_str(), &bm_build_floor<N>, threads)->UseManualTime()->MinTime(0.5);
  }
  for (unsigned threads : {0u, 1u}) {
    for (bool snapshot : {true, false}) {
      const std::string name = std::string("durable_recovery/") + (threads == 0 ? "leftright/" : "leftright_1t/") +
                               (snapshot ? "snapshot" : "log") + "/u64/" + size_name(N);
      benchmark::RegisterBenchmark(name.c_str(), &bm_recover<N>, snapshot, threads)->UseManualTime()->MinTime(0.5);
    }
  }
}

[[maybe_unused]] const bool registered = [] {
  register_size<large_n>();
  register_size<dram_n>();  // a map that lives in DRAM (see workload.hpp)
  return true;
}();

/// build_child_main's work for a map of N entries, on threads threads (1 or 2).
template <std::size_t N>
int build_floor_tables(unsigned threads) {
  using table = absl::flat_hash_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                    std::equal_to<std::uint64_t>,
                                    leftright::detail::table_allocator_t<std::pair<const std::uint64_t, std::uint64_t>,
                                                                         leftright::default_traits::huge_pages>>;
  const std::vector<std::uint64_t>& keys = present_keys<std::uint64_t, N>();  // before the clock
  const double c0 = process_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  table a;
  leftright::no_meta meta;
  // Two threads: the second table is built beside the first, by recovery's own machinery.
  leftright::detail::storage::recovery_tables<table, leftright::no_meta> both(a, meta);
  if (threads == 2) both.split();
  leftright::detail::each_table(both, [&keys](table& t) { t.reserve(keys.size()); });
  // In the table's slot order, as recovery inserts a snapshot's entries where they lie
  // (leftright/detail/slot_order.hpp): here the i-th key, with value i.
  const auto* const base = reinterpret_cast<const std::byte*>(keys.data());
  const auto* const end = base + keys.size() * sizeof(std::uint64_t);
  leftright::detail::apply_in_place_in_slot_order(
      both, base, static_cast<std::size_t>(end - base),
      [base, end](auto&& f) {
        for (const std::byte* e = base; e != end; e += sizeof(std::uint64_t)) f(e);
      },
      [base](const std::byte* e) {
        std::uint64_t k;
        std::memcpy(&k, e, sizeof k);
        const auto i = static_cast<std::uint64_t>(e - base) / sizeof k;
        return leftright::detail::placed_op<std::uint64_t, std::uint64_t>{leftright::detail::keyed_op::insert_or_assign,
                                                                           k, i};
      });
  std::optional<table> second = both.take_second();
  if (!second) second.emplace(a);
  const auto t1 = std::chrono::steady_clock::now();
  const double cpu = process_cpu_seconds() - c0;
  benchmark::DoNotOptimize(*second);
  std::printf("%.9f %.9f %.9f %llu %llu %u %.1f\n", std::chrono::duration<double>(t1 - t0).count(), cpu,
              std::chrono::duration<double>(t1 - t0).count(), static_cast<unsigned long long>(second->size()), 0ull,
              threads, peak_rss_mib());
  return 0;
}

}  // namespace

/// The floor's child: builds the two tables of n entries (1M or 16M) from memory, its figures on
/// stdout as one line (the recovery child's format).
int build_child_main(const char* n_arg, unsigned threads) {
  try {
    const std::uint64_t n = std::strtoull(n_arg, nullptr, 10);
    if (threads != 1 && threads != 2) throw std::runtime_error("the floor is built on 1 or 2 threads");
    if (n == large_n) return build_floor_tables<large_n>(threads);
    if (n == dram_n) return build_floor_tables<dram_n>(threads);
    throw std::runtime_error("only the 1M and 16M floors are built");
  } catch (const std::exception& e) {
    std::printf("%s\n", e.what());
    return 1;
  }
}

/// The child's side: one open of the map in dir, its figures on stdout as one line.
int recover_child_main(const char* dir, unsigned threads) {
  try {
    const leftright::durable_options o = recover_options(dir, threads);
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    const auto t1 = std::chrono::steady_clock::now();
    const double cpu = process_cpu_seconds() - c0;
    std::printf("%.9f %.9f %.9f %llu %llu %u %.1f\n", std::chrono::duration<double>(t1 - t0).count(), cpu,
                std::chrono::duration<double>(w.recovery().duration).count(),
                static_cast<unsigned long long>(r.size()),
                static_cast<unsigned long long>(w.recovery().records_replayed), w.recovery().threads, peak_rss_mib());
    return 0;
  } catch (const std::exception& e) {
    std::printf("%s\n", e.what());
    return 1;
  }
}

}  // namespace lrbench
