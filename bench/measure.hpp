// SPDX-License-Identifier: Apache-2.0
// Small measuring helpers the benchmark executables share (bench_replication.cpp, which is an
// executable of its own, includes this and not workload.hpp).
#pragma once

#include <time.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace lrbench {

/// This process's CPU time (all its threads), in seconds.
inline double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// The median of v (the upper one of an even count); 0 for none.
inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Pairs of timed phases, a baseline's and a variant's, the order alternating from one pair to
/// the next (baseline first, then variant first, ...), so that neither always runs on what the
/// other left in the caches. Where the second phase of a pair does gain from the first (they
/// share a structure, or keys), the pairs of each order form a cluster of their own, and a median
/// over all of them lands at the edge of one cluster. So the figure is the geometric mean of the
/// two orders' medians of baseline time / variant time, in which such an order effect cancels;
/// order_effect() shows its size.
class alternating_pairs {
 public:
  /// Runs both phases (each returns its time, in seconds) and records their ratio.
  template <class Baseline, class Variant>
  void run(Baseline&& baseline, Variant&& variant) {
    double t_baseline = 0;
    double t_variant = 0;
    if (baseline_first()) {
      t_baseline = baseline();
      t_variant = variant();
    } else {
      t_variant = variant();
      t_baseline = baseline();
    }
    record(t_baseline, t_variant);
  }
  /// Whether the next pair runs the baseline first (for callers that time the phases themselves).
  bool baseline_first() const { return by_order_[0].size() == by_order_[1].size(); }
  /// Records a pair run in the order baseline_first() gave.
  void record(double t_baseline, double t_variant) {
    by_order_[baseline_first() ? 0 : 1].push_back(t_baseline / t_variant);
    baseline_seconds_ += t_baseline;
    variant_seconds_ += t_variant;
  }

  /// The geometric mean of the medians of the baseline-first and the variant-first pairs'
  /// ratios (the one order's median after a single pair; 0 for none).
  double ratio() const {
    if (by_order_[1].empty()) return median_of(by_order_[0]);
    return std::sqrt(median_of(by_order_[0]) * median_of(by_order_[1]));
  }
  /// The baseline-first pairs' median over the variant-first pairs' (1: no order effect; above 1,
  /// the variant gains from running second). 0 before both orders have run.
  double order_effect() const {
    const double second = median_of(by_order_[1]);
    return second == 0 ? 0.0 : median_of(by_order_[0]) / second;
  }
  std::size_t pairs() const { return by_order_[0].size() + by_order_[1].size(); }
  double baseline_seconds() const { return baseline_seconds_; }
  double variant_seconds() const { return variant_seconds_; }

 private:
  std::vector<double> by_order_[2];  // [0]: baseline-first pairs' ratios, [1]: variant-first
  double baseline_seconds_ = 0;
  double variant_seconds_ = 0;
};

/// The counters of a paired benchmark: its ratio, pairs and order effect, averaged over the
/// threads that report them.
inline void set_pair_counters(benchmark::State& state, const alternating_pairs& p) {
  constexpr auto avg = benchmark::Counter::kAvgThreads;
  state.counters["ratio"] = benchmark::Counter(p.ratio(), avg);
  state.counters["pairs"] = benchmark::Counter(static_cast<double>(p.pairs()), avg);
  state.counters["order_effect"] = benchmark::Counter(p.order_effect(), avg);
}

}  // namespace lrbench
