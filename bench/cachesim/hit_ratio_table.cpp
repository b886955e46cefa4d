// SPDX-License-Identifier: Apache-2.0
#include "hit_ratio_table.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "replay.hpp"
#include "trace.hpp"

namespace leftright::cachesim {
namespace {

// One row of the traces README's table, with its published figures (%).
struct table_row {
  const char* name;
  const char* file;  // under the trace directory
  std::size_t size;
  double lru, arc, s3fifo, caffeine, opt;
};

constexpr table_row rows[] = {
    {"OLTP", "arc/OLTP.lis.zst", 1000, 32.83, 38.93, 40.80, 35.58, 53.61},
    {"OLTP", "arc/OLTP.lis.zst", 2000, 42.47, 46.08, 46.96, 42.02, 60.40},
    {"P3", "arc/P3.lis.zst", 32768, 3.57, 17.12, 16.79, 18.80, 32.25},
    {"P3", "arc/P3.lis.zst", 131072, 44.79, 50.63, 48.26, 46.14, 67.51},
    {"P12", "arc/P12.lis.zst", 32768, 8.93, 15.94, 18.14, 17.87, 30.74},
    {"gli", "lirs/gli.trace.gz", 1000, 11.21, 21.31, 35.05, 40.52, 53.13},
    {"loop", "lirs/loop.trace.gz", 1000, 0.00, 0.00, 11.30, 97.37, 98.71},
    {"multi2", "lirs/multi2.trace.gz", 2000, 49.00, 64.26, 65.71, 69.37, 74.65},
    {"sprite", "lirs/sprite.trace.gz", 100, 21.58, 25.68, 29.93, 31.55, 50.80},
    {"2_pools", "lirs/2_pools.trace.gz", 500, 51.06, 51.88, 51.92, 51.86, 62.84},
    {"web07", "cache2k/web07.trace.xz", 1000, 50.41, 53.04, 54.08, 52.34, 63.58},
};

// The simulated columns, in print order.
constexpr const char* policies[] = {"lru", "arc", "s3fifo", "wtinylfu", "opt", "leftright"};

using cells = std::map<std::string, double>;  // policy -> hit ratio (%)

cells replay_row(const table_row& row, const std::vector<std::uint64_t>& keys) {
  cells out;
  for (const char* policy : policies) {
    std::uint64_t hits = *replay_hits(policy, keys, row.size);
    out[policy] = 100.0 * double(hits) / double(keys.size());
  }
  return out;
}

// The best of LRU, ARC, S3-FIFO and Caffeine for a row: the published figures and ours,
// whichever is higher.
double best_peer(const table_row& row, const cells& c) {
  return std::max({row.lru, row.arc, row.s3fifo, row.caffeine, c.at("lru"), c.at("arc"),
                   c.at("s3fifo")});
}

std::string row_line(const table_row& row, const cells& c) {
  double ours = c.at("leftright");
  double margin = ours - (best_peer(row, c) - 2.0);
  double over_lru = ours - c.at("lru");
  return absl::StrFormat("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | **%.2f** | %.2f | %+.2f | %+.2f |",
                         row.name, row.size, c.at("lru"), c.at("arc"), c.at("s3fifo"),
                         row.caffeine, c.at("wtinylfu"), ours, c.at("opt"), margin, over_lru);
}

void print_verdicts(const std::vector<cells>& all) {
  auto mean = [&](auto value) {
    double sum = 0;
    for (std::size_t i = 0; i < all.size(); ++i) sum += value(rows[i], all[i]);
    return sum / double(all.size());
  };
  double ours = mean([](const table_row&, const cells& c) { return c.at("leftright"); });
  std::map<std::string, double> others = {
      {"LRU", mean([](const table_row&, const cells& c) { return c.at("lru"); })},
      {"ARC", mean([](const table_row&, const cells& c) { return c.at("arc"); })},
      {"S3-FIFO", mean([](const table_row&, const cells& c) { return c.at("s3fifo"); })},
      {"S3-FIFO (README)", mean([](const table_row& r, const cells&) { return r.s3fifo; })},
      {"Caffeine 2.6.2 (README)", mean([](const table_row& r, const cells&) { return r.caffeine; })},
      {"W-TinyLFU 1%", mean([](const table_row&, const cells& c) { return c.at("wtinylfu"); })},
  };
  double worst_margin = 1e9, worst_over_lru = 1e9;
  for (std::size_t i = 0; i < all.size(); ++i) {
    worst_margin = std::min(worst_margin, all[i].at("leftright") - (best_peer(rows[i], all[i]) - 2.0));
    worst_over_lru = std::min(worst_over_lru, all[i].at("leftright") - all[i].at("lru"));
  }
  double best_other = 0;
  std::string best_name;
  for (const auto& [name, value] : others) {
    if (value > best_other) best_other = value, best_name = name;
  }
  std::printf("\nTargets:\n");
  std::printf("- every row at or above the best of LRU, ARC, S3-FIFO and Caffeine minus 2 points: %s "
              "(smallest margin %+.2f)\n", worst_margin >= 0 ? "met" : "NOT met", worst_margin);
  std::printf("- never below LRU: %s (smallest lead %+.2f)\n", worst_over_lru >= 0 ? "met" : "NOT met",
              worst_over_lru);
  std::printf("- mean at least 1 point above every other column's mean: %s (%.2f vs %s %.2f: %+.2f)\n",
              ours - best_other >= 1.0 ? "met" : "NOT met", ours, best_name.c_str(), best_other,
              ours - best_other);
  for (const auto& [name, value] : others) {
    std::printf("  - vs %s: %+.2f\n", name.c_str(), ours - value);
  }
}

}  // namespace

std::string trace_directory(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("LEFTRIGHT_TRACES"); env && *env) return env;
  return "../shared/traces";
}

const char* where_to_get_traces() {
  return "The traces are not part of this repository. Get them from their public repositories:\n"
         "  arc/OLTP.lis.zst, arc/P3.lis.zst, arc/P12.lis.zst: github.com/moka-rs/cache-trace, "
         "folder arc/\n"
         "  lirs/*.trace.gz: github.com/ben-manes/caffeine, folder simulator/src/main/resources/"
         "com/github/benmanes/caffeine/cache/simulator/parser/lirs/\n"
         "  cache2k/web07.trace.xz: the same, folder .../parser/cache2k/\n"
         "and point --traces (or $LEFTRIGHT_TRACES) at a folder holding arc/, lirs/ and cache2k/.\n";
}

int print_table(const std::string& dir) {
  for (const table_row& row : rows) {
    if (!std::filesystem::exists(std::filesystem::path(dir) / row.file)) {
      std::fprintf(stderr, "leftright_cachesim: %s/%s not found.\n%s", dir.c_str(), row.file,
                   where_to_get_traces());
      return 1;
    }
  }
  std::printf("| trace | size | LRU | ARC | S3-FIFO (10%%) | Caffeine 2.6.2 (README) | "
              "W-TinyLFU 1%% (sim) | leftright | OPT | vs best peer - 2 | vs LRU |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  std::vector<cells> all;
  std::string loaded;
  std::vector<std::uint64_t> keys;
  for (const table_row& row : rows) {
    if (loaded != row.file) {
      std::string path = (std::filesystem::path(dir) / row.file).string();
      keys = read_trace(path, *format_from_path(path));
      loaded = row.file;
    }
    all.push_back(replay_row(row, keys));
    std::printf("%s\n", row_line(row, all.back()).c_str());
    std::fflush(stdout);
  }
  auto mean_of = [&](auto value) {
    double sum = 0;
    for (std::size_t i = 0; i < all.size(); ++i) sum += value(rows[i], all[i]);
    return sum / double(all.size());
  };
  std::printf("| **mean** | | %.2f | %.2f | %.2f | %.2f | %.2f | **%.2f** | %.2f | | |\n",
              mean_of([](const table_row&, const cells& c) { return c.at("lru"); }),
              mean_of([](const table_row&, const cells& c) { return c.at("arc"); }),
              mean_of([](const table_row&, const cells& c) { return c.at("s3fifo"); }),
              mean_of([](const table_row& r, const cells&) { return r.caffeine; }),
              mean_of([](const table_row&, const cells& c) { return c.at("wtinylfu"); }),
              mean_of([](const table_row&, const cells& c) { return c.at("leftright"); }),
              mean_of([](const table_row&, const cells& c) { return c.at("opt"); }));
  print_verdicts(all);
  return 0;
}

}  // namespace leftright::cachesim
