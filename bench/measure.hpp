// SPDX-License-Identifier: Apache-2.0
// Small measuring helpers the benchmark executables share (bench_replication.cpp, which is an
// executable of its own, includes this and not workload.hpp).
#pragma once

#include <time.h>

#include <algorithm>
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

}  // namespace lrbench
