// SPDX-License-Identifier: Apache-2.0
// Small measuring helpers the benchmark executables share (bench_replication.cpp, which is an
// executable of its own, includes this and not workload.hpp).
#pragma once

#include <time.h>

#include <algorithm>
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
/// other left in the caches. The figure is the median over pairs of baseline time / variant time.
class alternating_pairs {
 public:
  /// Runs both phases (each returns its time, in seconds) and records their ratio.
  template <class Baseline, class Variant>
  void run(Baseline&& baseline, Variant&& variant) {
    double t_baseline = 0;
    double t_variant = 0;
    if (baseline_first_) {
      t_baseline = baseline();
      t_variant = variant();
    } else {
      t_variant = variant();
      t_baseline = baseline();
    }
    baseline_first_ = !baseline_first_;
    ratios_.push_back(t_baseline / t_variant);
  }
  /// The median of the ratios recorded (0 for none).
  double median() const { return median_of(ratios_); }
  std::size_t pairs() const { return ratios_.size(); }

 private:
  bool baseline_first_ = true;
  std::vector<double> ratios_;
};

}  // namespace lrbench
