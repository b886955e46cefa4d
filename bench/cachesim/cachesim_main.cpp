// SPDX-License-Identifier: Apache-2.0
// leftright_cachesim: hit ratios of leftright's eviction policy and the reference policies on
// real cache traces (see ../shared/traces/README.md for the traces and where to get them).
//   leftright_cachesim --trace PATH --size N
//                      --policy leftright|leftright_weight|leftright_weights|policy|lru|arc|s3fifo|wtinylfu|opt
//                      [--format arc|lirs|cache2k] [--salt S]
//   leftright_cachesim --table [--traces DIR] [--salts N] [--big_salts N] [--jobs N]
//                      every trace and size of the README's table, every policy, as a markdown
//                      table; leftright and wtinylfu (which depend on the key hash) under salts
//                      0 .. N-1, shown as the mean and the min-max
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
ABSL_FLAG(std::string, policy, "leftright",
          "leftright (the real cache, bounded by entries), leftright_weight / leftright_weights "
          "(bounded by weight: every entry weighing 64, or 1 to 127 by its key; as many entries "
          "on average), policy (its policy alone), lru, arc, "
          "s3fifo, wtinylfu (leftright's policy with a fixed 1% window, no hill climber, no "
          "ghost) or opt");
ABSL_FLAG(std::uint64_t, salt, 0,
          "key-hash salt for leftright, policy and wtinylfu (0: the fixed hash of earlier "
          "figures; the real cache's absl::Hash is seeded anew in every process)");
ABSL_FLAG(bool, dump_keys, false,
          "print the trace's keys, one decimal per line, instead of replaying it (for a replay "
          "in another program, such as bench/caffeine/CaffeineReplay.java)");
ABSL_FLAG(bool, table, false, "run every trace and size of the reference table, every policy");
ABSL_FLAG(std::string, traces, "",
          "trace directory for --table (default: $LEFTRIGHT_TRACES, else ../shared/traces)");
ABSL_FLAG(int, salts, 32, "--table: hash salts (0 .. N-1) for leftright and wtinylfu");
ABSL_FLAG(int, big_salts, 16,
          "--table: hash salts for P3 and P12 (millions of requests), at most --salts (0: as "
          "--salts)");
ABSL_FLAG(int, jobs, 2, "--table: replays run at once (threads)");

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
  std::optional<std::uint64_t> hits =
      lc::replay_hits(policy, keys, absl::GetFlag(FLAGS_size), absl::GetFlag(FLAGS_salt));
  if (!hits) {
    std::fprintf(stderr, "leftright_cachesim: unknown policy '%s'\n", policy.c_str());
    return 2;
  }
  double ratio = keys.empty() ? 0.0 : 100.0 * double(*hits) / double(keys.size());
  std::string salt = lc::hash_dependent(policy) && absl::GetFlag(FLAGS_salt) != 0
                         ? absl::StrFormat(" salt %d", absl::GetFlag(FLAGS_salt))
                         : "";
  std::printf("%s\n", absl::StrFormat("%s size %d %s%s: %.2f%% (%d hits / %d requests)", path,
                                      absl::GetFlag(FLAGS_size), policy, salt, ratio, *hits,
                                      keys.size())
                          .c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "hit ratio of a cache policy on a trace\n"
      "  leftright_cachesim --trace PATH --size N --policy "
      "leftright|leftright_weight|leftright_weights|policy|lru|arc|s3fifo|wtinylfu|opt\n"
      "      [--format arc|lirs|cache2k] [--salt S]\n"
      "  leftright_cachesim --table [--traces DIR] [--salts N] [--big_salts N] [--jobs N]");
  absl::ParseCommandLine(argc, argv);
  try {
    if (absl::GetFlag(FLAGS_table)) {
      lc::table_options options;
      options.salts = absl::GetFlag(FLAGS_salts);
      options.big_salts = absl::GetFlag(FLAGS_big_salts);
      options.jobs = absl::GetFlag(FLAGS_jobs);
      return lc::print_table(lc::trace_directory(absl::GetFlag(FLAGS_traces)), options);
    }
    return run_one();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "leftright_cachesim: %s\n", e.what());
    return 1;
  }
}
