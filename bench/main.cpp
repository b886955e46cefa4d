// leftright_bench's main: Google Benchmark's, with a short default --benchmark_min_time (0.1 s,
// so the whole suite with 3 repetitions stays within minutes on 2 cores; pass the flag to
// override), and the suite's context (which reader_sync the asymmetric variant resolved to,
// which peers were compiled in) added to the console and JSON output.
#include <cstdio>
#include <cstring>
#include <malloc.h>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"

namespace lrbench {
int recover_child_main(const char* dir);    // bench_durable_recovery.cpp
int build_child_main(const char* entries);  // bench_durable_recovery.cpp (the floor)
}

int main(int argc, char** argv) {
  // The recovery scenario's child: one open_map() in a fresh process (see that scenario).
  if (argc == 3 && std::strcmp(argv[1], "--recover-child") == 0) return lrbench::recover_child_main(argv[2]);
  if (argc == 3 && std::strcmp(argv[1], "--build-child") == 0) return lrbench::build_child_main(argv[2]);
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
  std::vector<char*> args(argv, argv + argc);
  static char default_min_time[] = "--benchmark_min_time=0.1";
  bool has_min_time = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_min_time", 20) == 0) has_min_time = true;
  }
  if (!has_min_time) args.insert(args.begin() + 1, default_min_time);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

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
