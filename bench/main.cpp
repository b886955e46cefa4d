// SPDX-License-Identifier: Apache-2.0
// leftright_bench's main: Google Benchmark's, with a short default --benchmark_min_time (0.1 s,
// so the whole suite with 3 repetitions stays within minutes on 2 cores; pass the flag to
// override), and the suite's context (which reader_sync the asymmetric variant resolved to,
// which peers were compiled in) added to the console and JSON output. Google Benchmark parses
// its own flags (--benchmark_*, --help); Abseil's flags library parses the rest (ours below), so
// anything else is an error with a message.
#include <cstdio>
#include <cstdlib>
#include <malloc.h>
#include <string>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <absl/strings/match.h>
#include <benchmark/benchmark.h>

#include "adapters.hpp"

namespace lrbench {
int recover_child_main(const char* dir, unsigned threads);    // bench_durable_recovery.cpp
int build_child_main(const char* entries, unsigned threads);  // bench_durable_recovery.cpp (the floor)
}

// The recovery scenario's children (bench_durable_recovery.cpp starts this executable again).
ABSL_FLAG(std::string, recover_child, "",
          "internal: open the durable map in this directory once and print the figures");
ABSL_FLAG(std::string, build_child, "",
          "internal: build the recovery floor's tables of this many entries and print the figures");
ABSL_FLAG(unsigned, child_threads, 0,
          "internal: the recovery child's recovery_threads (0: the default); the floor child's threads (1 or 2)");

namespace {

/// --help: Google Benchmark's flags, then where ours are listed.
void print_help() {
  benchmark::PrintDefaultHelp();
  std::printf("\nleftright_bench's own flags (--helpfull lists them with Abseil's): --recover_child=DIR,\n"
              "--build_child=N, --child_threads=T (all internal: the durable_recovery scenario's fresh processes)\n");
}

/// Google Benchmark's flags first (it removes them from argv), then ours; exits 1 with a
/// message on any argument neither knows.
void parse_flags(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  // A shorter default --benchmark_min_time than Google Benchmark's, unless one is given.
  static char default_min_time[] = "--benchmark_min_time=0.1";
  bool has_min_time = false;
  for (int i = 1; i < argc; ++i) {
    if (absl::StartsWith(argv[i], "--benchmark_min_time")) has_min_time = true;
  }
  if (!has_min_time) args.insert(args.begin() + 1, default_min_time);
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data(), print_help);
  absl::SetProgramUsageMessage("leftright's benchmark suite (Google Benchmark); --help for its flags");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "bench/main.cpp"); };
  absl::SetFlagsUsageConfig(usage);
  if (absl::ParseCommandLine(n, args.data()).size() > 1) {
    std::fprintf(stderr, "leftright_bench: unexpected argument '%s' (--help for the flags)\n", args[1]);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  parse_flags(argc, argv);
  // The recovery scenario's child: one open_map() in a fresh process (see that scenario).
  if (const std::string dir = absl::GetFlag(FLAGS_recover_child); !dir.empty()) {
    return lrbench::recover_child_main(dir.c_str(), absl::GetFlag(FLAGS_child_threads));
  }
  if (const std::string n = absl::GetFlag(FLAGS_build_child); !n.empty()) {
    return lrbench::build_child_main(n.c_str(), absl::GetFlag(FLAGS_child_threads));
  }
  // Every fixture's memory placed the same way, whatever ran before it. By default glibc raises
  // its mmap threshold to the size of each mmap'd block freed (up to 32 MiB), so after the first
  // map's table growth, later maps' intermediate tables come from the heap instead; freed, they
  // leave holes carrying the tables' huge-page advice, and the string keys of maps built later
  // land there, on huge pages. A map built later then read its keys with fewer TLB misses: two
  // instances of the limit itself differed by 4-14% (str16, 1M). A fixed threshold turns that
  // adjustment off: every large table is mmap'd (and advised) on its own, and keys stay on
  // ordinary heap pages for every map alike. Not in the recovery children above: they measure
  // a restart as a user's process would run it.
  // One arena, for the same reason: a fixture is built by whichever benchmark thread first
  // needs it, and one built by a second thread went to that thread's arena (64 MiB heaps of
  // their own) instead of the main heap, by the luck of the run's order. Nothing timed here
  // allocates from two threads at once (readers never allocate).
  if (mallopt(M_MMAP_THRESHOLD, 128 * 1024) != 1 || mallopt(M_ARENA_MAX, 1) != 1) {
    std::fprintf(stderr, "leftright_bench: mallopt refused; fixture layouts may differ\n");
  }

  // Ask a throwaway map which barrier an asymmetric request got on this kernel.
  {
    const auto probe = leftright::make_map<int, int, absl::Hash<int>, std::equal_to<int>,
                                           lrbench::asymmetric_traits>();
    benchmark::AddCustomContext("lr_asym_sync_mode", lrbench::sync_name(probe.first.sync_mode()));
  }
  std::string peers = "shared_mutex,absl_mutex";
#if LEFTRIGHT_BENCH_WITH_TBB
  peers += ",tbb_chm";
#endif
#if LEFTRIGHT_BENCH_WITH_CUCKOO
  peers += ",libcuckoo";
#endif
#if LEFTRIGHT_BENCH_WITH_URCU
  peers += ",urcu_lfht";
#endif
  benchmark::AddCustomContext("peers", peers);

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
