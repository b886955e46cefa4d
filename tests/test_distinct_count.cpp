// SPDX-License-Identifier: Apache-2.0
// detail::distinct_count, the estimate recovery sizes a log's table by: close to the true count
// of distinct keys from a handful to millions, whatever the repeats; upper() at or above it.
// LEFTRIGHT_TEST_ONE_THREAD: every case runs on one thread.
#include <cmath>
#include <cstdint>
#include <random>

#include <catch2/catch.hpp>

#include "leftright/detail/distinct_count.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using leftright::detail::distinct_count;

TEST_CASE("distinct_count: estimates distinct keys within a few percent, repeats not counted", "[distinct_count]") {
  for (const std::uint64_t n : {0ULL, 1ULL, 10ULL, 1000ULL, 5000ULL, 20000ULL, 300000ULL, 4000000ULL}) {
    INFO(n << " distinct keys");
    distinct_count once, thrice;
    for (std::uint64_t k = 0; k < n; ++k) once.add(k);
    for (int r = 0; r < 3; ++r) {
      for (std::uint64_t k = 0; k < n; ++k) thrice.add(k * 7919 + 3);  // other keys, each three times
    }
    const double tolerance = 0.04 * static_cast<double>(n) + 2;  // 2.5 standard errors, and a small count's slack
    CHECK(std::abs(once.estimate() - static_cast<double>(n)) <= tolerance);
    CHECK(std::abs(thrice.estimate() - static_cast<double>(n)) <= tolerance);
    CHECK(once.upper() >= n);
    CHECK(thrice.upper() >= n);
    CHECK(static_cast<double>(once.upper()) <= 1.12 * static_cast<double>(n) + 80);  // not far above
  }
}

TEST_CASE("distinct_count: random 64-bit keys, and a few keys among many operations", "[distinct_count]") {
  std::mt19937_64 rng(42);
  distinct_count wide;
  for (int i = 0; i < 1'000'000; ++i) wide.add(rng());  // distinct with overwhelming probability
  CHECK(std::abs(wide.estimate() - 1e6) <= 0.04e6);
  distinct_count overwrites;  // a log of a million overwrites of 1,000 keys
  for (int i = 0; i < 1'000'000; ++i) overwrites.add(rng() % 1000);
  CHECK(overwrites.upper() >= 1000);
  CHECK(overwrites.upper() <= 1200);
}

}  // namespace LEFTRIGHT_TEST_FILE
