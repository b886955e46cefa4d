// SPDX-License-Identifier: Apache-2.0
#include "hit_ratio_table.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
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
  bool big;  // P3, P12: millions of requests, table_options::big_salts
};

constexpr table_row rows[] = {
    {"OLTP", "arc/OLTP.lis.zst", 1000, 32.83, 38.93, 40.80, 35.58, 53.61, false},
    {"OLTP", "arc/OLTP.lis.zst", 2000, 42.47, 46.08, 46.96, 42.02, 60.40, false},
    {"P3", "arc/P3.lis.zst", 32768, 3.57, 17.12, 16.79, 18.80, 32.25, true},
    {"P3", "arc/P3.lis.zst", 131072, 44.79, 50.63, 48.26, 46.14, 67.51, true},
    {"P12", "arc/P12.lis.zst", 32768, 8.93, 15.94, 18.14, 17.87, 30.74, true},
    {"gli", "lirs/gli.trace.gz", 1000, 11.21, 21.31, 35.05, 40.52, 53.13, false},
    {"loop", "lirs/loop.trace.gz", 1000, 0.00, 0.00, 11.30, 97.37, 98.71, false},
    {"multi2", "lirs/multi2.trace.gz", 2000, 49.00, 64.26, 65.71, 69.37, 74.65, false},
    {"sprite", "lirs/sprite.trace.gz", 100, 21.58, 25.68, 29.93, 31.55, 50.80, false},
    {"2_pools", "lirs/2_pools.trace.gz", 500, 51.06, 51.88, 51.92, 51.86, 62.84, false},
    {"web07", "cache2k/web07.trace.xz", 1000, 50.41, 53.04, 54.08, 52.34, 63.58, false},
};
constexpr std::size_t row_count = std::size(rows);

// The simulated columns: the ones that see the keys themselves run once, the hash-dependent
// ones (replay.hpp hash_dependent()) once per salt.
constexpr const char* fixed_policies[] = {"lru", "arc", "s3fifo", "opt"};
constexpr const char* salted_policies[] = {"wtinylfu", "leftright"};
// The real cache bounded by weight (replay.hpp), at salt 0 only: a table of their own.
constexpr const char* weighted_policies[] = {"leftright_weight", "leftright_weights"};

// A hash-dependent cell over its salts (0 .. n-1).
struct spread {
  double mean = 0, min = 0, max = 0;
  std::uint64_t min_salt = 0;
};

spread spread_of(const std::vector<double>& by_salt) {
  spread s;
  s.min = s.max = by_salt.at(0);
  double sum = 0;
  for (std::size_t salt = 0; salt < by_salt.size(); ++salt) {
    double v = by_salt[salt];
    sum += v;
    if (v < s.min) s.min = v, s.min_salt = salt;
    s.max = std::max(s.max, v);
  }
  s.mean = sum / double(by_salt.size());
  return s;
}

// One row's hit ratios (%).
struct cells {
  std::map<std::string, double> fixed;                    // lru, arc, s3fifo, opt
  std::map<std::string, std::vector<double>> by_salt;     // wtinylfu, leftright; weighted_policies (salt 0)
  std::map<std::string, spread> salted;                   // from by_salt
  double at(const std::string& policy) const { return fixed.at(policy); }
};

int salts_for(const table_row& row, const table_options& o) {
  return row.big && o.big_salts > 0 ? std::min(o.salts, o.big_salts) : o.salts;
}

// The best of LRU, ARC, S3-FIFO and Caffeine for a row: the published figures and ours,
// whichever is higher.
double best_peer(const table_row& row, const cells& c) {
  return std::max({row.lru, row.arc, row.s3fifo, row.caffeine, c.at("lru"), c.at("arc"),
                   c.at("s3fifo")});
}

// leftright's margins over a row's two floors, on the mean and on the worst salt.
struct margins {
  double peer_mean, peer_worst, lru_mean, lru_worst;
};

margins margins_of(const table_row& row, const cells& c) {
  const spread& ours = c.salted.at("leftright");
  double floor = best_peer(row, c) - 2.0;
  return {ours.mean - floor, ours.min - floor, ours.mean - c.at("lru"), ours.min - c.at("lru")};
}

std::string range(const spread& s, bool bold) {
  // Two calls: absl checks a format string at compile time, so it cannot be chosen at run time.
  if (bold) return absl::StrFormat("**%.2f** (%.2f–%.2f)", s.mean, s.min, s.max);
  return absl::StrFormat("%.2f (%.2f–%.2f)", s.mean, s.min, s.max);
}

std::string row_line(const table_row& row, const cells& c) {
  margins m = margins_of(row, c);
  return absl::StrFormat("| %s | %d | %.2f | %.2f | %.2f | %.2f | %s | %s | %.2f | %d | %+.2f (%+.2f) | "
                         "%+.2f (%+.2f) |",
                         row.name, row.size, c.at("lru"), c.at("arc"), c.at("s3fifo"), row.caffeine,
                         range(c.salted.at("wtinylfu"), false), range(c.salted.at("leftright"), true),
                         c.at("opt"), c.by_salt.at("leftright").size(), m.peer_mean, m.peer_worst,
                         m.lru_mean, m.lru_worst);
}

template <class Value>
double mean_over_rows(const std::vector<cells>& all, Value value) {
  double sum = 0;
  for (std::size_t i = 0; i < all.size(); ++i) sum += value(rows[i], all[i]);
  return sum / double(all.size());
}

void print_verdicts(const std::vector<cells>& all) {
  auto salted_mean = [&](const char* policy, double spread::*field) {
    return mean_over_rows(all, [&](const table_row&, const cells& c) { return c.salted.at(policy).*field; });
  };
  auto fixed_mean = [&](const char* policy) {
    return mean_over_rows(all, [&](const table_row&, const cells& c) { return c.at(policy); });
  };
  const double ours = salted_mean("leftright", &spread::mean);
  const double ours_worst = salted_mean("leftright", &spread::min);
  std::map<std::string, double> others = {
      {"LRU", fixed_mean("lru")},
      {"ARC", fixed_mean("arc")},
      {"S3-FIFO", fixed_mean("s3fifo")},
      {"S3-FIFO (README)", mean_over_rows(all, [](const table_row& r, const cells&) { return r.s3fifo; })},
      {"Caffeine 2.6.2 (README)", mean_over_rows(all, [](const table_row& r, const cells&) { return r.caffeine; })},
      {"W-TinyLFU 1%", salted_mean("wtinylfu", &spread::mean)},
  };
  // The smallest of each margin, with its row (and, for the worst salt, the salt).
  struct smallest {
    double value = 1e9;
    std::size_t row = 0;
  };
  smallest peer_mean, peer_worst, lru_mean, lru_worst;
  auto keep = [](smallest& s, double v, std::size_t row) {
    if (v < s.value) s.value = v, s.row = row;
  };
  for (std::size_t i = 0; i < all.size(); ++i) {
    margins m = margins_of(rows[i], all[i]);
    keep(peer_mean, m.peer_mean, i);
    keep(peer_worst, m.peer_worst, i);
    keep(lru_mean, m.lru_mean, i);
    keep(lru_worst, m.lru_worst, i);
  }
  auto where = [&](const smallest& s, bool worst) {
    std::string w = absl::StrFormat("%+.2f, %s at %d", s.value, rows[s.row].name, rows[s.row].size);
    if (worst) w += absl::StrFormat(", salt %d", all[s.row].salted.at("leftright").min_salt);
    return w;
  };
  auto verdict = [](double v) { return v >= 0 ? "met" : "NOT met"; };
  double best_other = 0;
  std::string best_name;
  for (const auto& [name, value] : others) {
    if (value > best_other) best_other = value, best_name = name;
  }
  std::printf("\nTargets, judged on leftright's mean over the salts and again on its worst salt (each "
              "cell's lowest):\n");
  std::printf("- every row at or above the best of LRU, ARC, S3-FIFO and Caffeine minus 2 points: "
              "on the mean %s (smallest margin %s); on the worst salt %s (smallest margin %s)\n",
              verdict(peer_mean.value), where(peer_mean, false).c_str(), verdict(peer_worst.value),
              where(peer_worst, true).c_str());
  std::printf("- never below LRU: on the mean %s (smallest lead %s); on the worst salt %s (smallest "
              "lead %s)\n",
              verdict(lru_mean.value), where(lru_mean, false).c_str(), verdict(lru_worst.value),
              where(lru_worst, true).c_str());
  std::printf("- mean at least 1 point above every other column's mean: on the mean %s (%.2f vs %s "
              "%.2f: %+.2f); on the worst salts (the mean of each cell's lowest, against the same "
              "columns) %s (%.2f: %+.2f)\n",
              verdict(ours - best_other - 1.0), ours, best_name.c_str(), best_other, ours - best_other,
              verdict(ours_worst - best_other - 1.0), ours_worst, ours_worst - best_other);
  for (const auto& [name, value] : others) {
    std::printf("  - vs %s: %+.2f (worst salts %+.2f)\n", name.c_str(), ours - value, ours_worst - value);
  }
}

// The cache bounded by weight beside the one bounded by entries, at salt 0.
void print_weighted(const std::vector<cells>& all) {
  std::printf("\nBounded by weight (max_weight = size x 64; salt 0), beside max_entries = size at salt 0:\n\n");
  std::printf("| trace | size | by entries | by weight, 64 each | by weight, 1-127 by key |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: |\n");
  auto at0 = [](const cells& c, const char* policy) { return c.by_salt.at(policy).at(0); };
  for (std::size_t i = 0; i < all.size(); ++i) {
    std::printf("| %s | %d | %.2f | %.2f | %.2f |\n", rows[i].name, static_cast<int>(rows[i].size),
                at0(all[i], "leftright"), at0(all[i], "leftright_weight"), at0(all[i], "leftright_weights"));
  }
  auto mean = [&](const char* policy) {
    return mean_over_rows(all, [&](const table_row&, const cells& c) { return at0(c, policy); });
  };
  std::printf("| **mean** | | %.2f | %.2f | %.2f |\n", mean("leftright"), mean("leftright_weight"),
              mean("leftright_weights"));
}

// One replay of the table: a policy over a row's trace under one salt, its hit ratio (%) into
// `out`.
struct replay_job {
  std::size_t row;
  const char* policy;
  std::uint64_t salt;
  double cost;  // an estimate, to start the long ones first
  double* out;
};

void run_jobs(std::vector<replay_job>& jobs, const std::vector<const std::vector<std::uint64_t>*>& keys,
              int threads) {
  std::stable_sort(jobs.begin(), jobs.end(),
                   [](const replay_job& a, const replay_job& b) { return a.cost > b.cost; });
  std::atomic<std::size_t> next{0}, done{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  auto work = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      const replay_job& j = jobs[i];
      try {
        const std::vector<std::uint64_t>& trace = *keys[j.row];
        std::uint64_t hits = *replay_hits(j.policy, trace, rows[j.row].size, j.salt);
        *j.out = trace.empty() ? 0.0 : 100.0 * double(hits) / double(trace.size());
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
      std::size_t n = done.fetch_add(1) + 1;
      if (n * 10 / jobs.size() != (n - 1) * 10 / jobs.size()) {
        std::fprintf(stderr, "leftright_cachesim: %zu/%zu replays\n", n, jobs.size());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
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

int print_table(const std::string& dir, const table_options& options) {
  if (options.salts < 1 || options.big_salts < 0 || options.jobs < 1) {
    std::fprintf(stderr, "leftright_cachesim: --salts and --jobs must be at least 1, --big_salts at least 0\n");
    return 2;
  }
  for (const table_row& row : rows) {
    if (!std::filesystem::exists(std::filesystem::path(dir) / row.file)) {
      std::fprintf(stderr, "leftright_cachesim: %s/%s not found.\n%s", dir.c_str(), row.file,
                   where_to_get_traces());
      return 1;
    }
  }
  std::map<std::string, std::vector<std::uint64_t>> traces;  // file -> keys
  for (const table_row& row : rows) {
    if (traces.contains(row.file)) continue;
    std::string path = (std::filesystem::path(dir) / row.file).string();
    traces[row.file] = read_trace(path, *format_from_path(path));
  }
  std::vector<cells> all(row_count);
  std::vector<const std::vector<std::uint64_t>*> keys(row_count);
  std::vector<replay_job> jobs;
  for (std::size_t i = 0; i < row_count; ++i) {
    keys[i] = &traces.at(rows[i].file);
    const double length = double(keys[i]->size());
    for (const char* policy : fixed_policies) {
      jobs.push_back({i, policy, 0, length, &all[i].fixed[policy]});
    }
    for (const char* policy : salted_policies) {
      std::vector<double>& by_salt = all[i].by_salt[policy];
      by_salt.assign(std::size_t(salts_for(rows[i], options)), 0.0);
      // The real cache costs a few times the policy alone.
      const double cost = std::string_view(policy) == "leftright" ? 4 * length : length;
      for (std::size_t salt = 0; salt < by_salt.size(); ++salt) {
        jobs.push_back({i, policy, salt, cost, &by_salt[salt]});
      }
    }
  }
  for (std::size_t i = 0; i < row_count; ++i) {
    for (const char* policy : weighted_policies) {
      all[i].by_salt[policy].assign(1, 0.0);
      jobs.push_back({i, policy, 0, 4 * double(keys[i]->size()), &all[i].by_salt[policy][0]});
    }
  }
  run_jobs(jobs, keys, options.jobs);
  for (cells& c : all) {
    for (const auto& [policy, by_salt] : c.by_salt) c.salted[policy] = spread_of(by_salt);
  }

  std::printf("| trace | size | LRU | ARC | S3-FIFO (10%%) | Caffeine 2.6.2 (README) | "
              "W-TinyLFU 1%% (sim): mean (min–max) | leftright: mean (min–max) | OPT | salts | "
              "vs best peer - 2: mean (worst salt) | vs LRU: mean (worst salt) |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (std::size_t i = 0; i < row_count; ++i) std::printf("%s\n", row_line(rows[i], all[i]).c_str());
  auto fixed_mean = [&](const char* policy) {
    return mean_over_rows(all, [&](const table_row&, const cells& c) { return c.at(policy); });
  };
  auto salted_mean = [&](const char* policy) {
    spread s;
    s.mean = mean_over_rows(all, [&](const table_row&, const cells& c) { return c.salted.at(policy).mean; });
    s.min = mean_over_rows(all, [&](const table_row&, const cells& c) { return c.salted.at(policy).min; });
    s.max = mean_over_rows(all, [&](const table_row&, const cells& c) { return c.salted.at(policy).max; });
    return s;
  };
  std::printf("| **mean** | | %.2f | %.2f | %.2f | %.2f | %s | %s | %.2f | | | |\n", fixed_mean("lru"),
              fixed_mean("arc"), fixed_mean("s3fifo"),
              mean_over_rows(all, [](const table_row& r, const cells&) { return r.caffeine; }),
              range(salted_mean("wtinylfu"), false).c_str(), range(salted_mean("leftright"), true).c_str(),
              fixed_mean("opt"));
  print_verdicts(all);
  print_weighted(all);
  return 0;
}

}  // namespace leftright::cachesim
