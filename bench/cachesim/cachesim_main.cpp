// SPDX-License-Identifier: Apache-2.0
// leftright_cachesim: hit ratios of leftright's eviction policy and the reference policies on
// real cache traces (see ../shared/traces/README.md for the traces and where to get them).
//   leftright_cachesim --trace PATH --size N --policy leftright|policy|lru|arc|s3fifo|wtinylfu|opt
//                      [--format arc|lirs|cache2k]
//   leftright_cachesim --table [--traces DIR]   every trace and size of the README's table,
//                                               every policy, as a markdown table
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "hit_ratio_table.hpp"
#include "replay.hpp"
#include "trace.hpp"

ABSL_FLAG(std::string, trace, "", "trace file (.zst, .gz, .xz or raw)");
ABSL_FLAG(std::string, format, "", "trace format: arc, lirs or cache2k (default: from the path)");
ABSL_FLAG(std::uint64_t, size, 0, "cache size in entries");
ABSL_FLAG(std::string, policy, "leftright", "leftright (the real cache), policy (its policy alone), lru, arc, s3fifo, wtinylfu or opt");
ABSL_FLAG(bool, dump_keys, false,
          "print the trace's keys, one decimal per line, instead of replaying it (for a replay "
          "in another program, such as bench/caffeine/CaffeineReplay.java)");
ABSL_FLAG(bool, table, false, "run every trace and size of the reference table, every policy");
ABSL_FLAG(std::string, traces, "",
          "trace directory for --table (default: $LEFTRIGHT_TRACES, else ../shared/traces)");

namespace lc = leftright::cachesim;

namespace {

int dump(const std::vector<std::uint64_t>& keys) {
  for (std::uint64_t key : keys) std::printf("%llu\n", static_cast<unsigned long long>(key));
  return std::ferror(stdout) ? 1 : 0;
}

int run_one() {
  std::string path = absl::GetFlag(FLAGS_trace);
  std::string policy = absl::GetFlag(FLAGS_policy);
  std::optional<lc::trace_format> format = absl::GetFlag(FLAGS_format).empty()
                                               ? lc::format_from_path(path)
                                               : lc::parse_trace_format(absl::GetFlag(FLAGS_format));
  if (path.empty() || !format || (absl::GetFlag(FLAGS_size) == 0 && !absl::GetFlag(FLAGS_dump_keys))) {
    std::fprintf(stderr, "%s\n", std::string(absl::ProgramUsageMessage()).c_str());
    return 2;
  }
  if (!std::filesystem::exists(path)) {
    std::fprintf(stderr, "leftright_cachesim: %s not found.\n%s", path.c_str(), lc::where_to_get_traces());
    return 1;
  }
  std::vector<std::uint64_t> keys = lc::read_trace(path, *format);
  if (absl::GetFlag(FLAGS_dump_keys)) return dump(keys);
  std::optional<std::uint64_t> hits = lc::replay_hits(policy, keys, absl::GetFlag(FLAGS_size));
  if (!hits) {
    std::fprintf(stderr, "leftright_cachesim: unknown policy '%s'\n", policy.c_str());
    return 2;
  }
  double ratio = keys.empty() ? 0.0 : 100.0 * double(*hits) / double(keys.size());
  std::printf("%s\n", absl::StrFormat("%s size %d %s: %.2f%% (%d hits / %d requests)", path,
                                      absl::GetFlag(FLAGS_size), policy, ratio, *hits,
                                      keys.size())
                          .c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hit ratio of a cache policy on a trace\n"
      "  leftright_cachesim --trace PATH --size N --policy "
      "leftright|policy|lru|arc|s3fifo|wtinylfu|opt [--format arc|lirs|cache2k]\n"
      "  leftright_cachesim --table [--traces DIR]");
  absl::ParseCommandLine(argc, argv);
  try {
    if (absl::GetFlag(FLAGS_table)) return lc::print_table(lc::trace_directory(absl::GetFlag(FLAGS_traces)));
    return run_one();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "leftright_cachesim: %s\n", e.what());
    return 1;
  }
}
