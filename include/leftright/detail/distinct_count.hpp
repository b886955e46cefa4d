// SPDX-License-Identifier: Apache-2.0
// leftright: an estimate of how many distinct keys a stream holds, in 4 KiB whatever its length
// (HyperLogLog: Flajolet, Fusy, Gandouet, Meunier, 2007, with the linear-counting correction for
// small counts). Recovery sizes a table for a log with it: a log of 16M inserts needs room for
// 16M entries, a log of 16M overwrites of a thousand keys room for a thousand, and counting the
// operations alone cannot tell the two apart.
//
// Accuracy: 4096 registers give a standard error of 1.04 / sqrt(4096), about 1.6%; upper()
// adds four of those (6.5%) and a small constant, so a table reserved for it rarely grows.
// Keys are mixed by a fixed 64-bit finalizer (splitmix64's): the estimate is the same from run to
// run.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace leftright::detail {

class distinct_count {
 public:
  static constexpr int index_bits = 12;
  static constexpr std::size_t registers = std::size_t{1} << index_bits;

  /// Adds one occurrence of the key whose bits are x (an integer key, or a key's 64-bit hash).
  void add(std::uint64_t x) noexcept {
    const std::uint64_t h = mix(x);
    const std::size_t i = static_cast<std::size_t>(h >> (64 - index_bits));
    // The rank: the position of the first 1 in the remaining bits (1-based); the sentinel bit
    // bounds it when they are all 0.
    const std::uint64_t rest = (h << index_bits) | (std::uint64_t{1} << (index_bits - 1));
    const auto rank = static_cast<std::uint8_t>(std::countl_zero(rest) + 1);
    if (rank > reg_[i]) reg_[i] = rank;
  }

  /// The estimate of the distinct keys added.
  double estimate() const noexcept {
    constexpr double m = static_cast<double>(registers);
    constexpr double alpha = 0.7213 / (1.0 + 1.079 / m);
    double sum = 0;
    std::size_t zeros = 0;
    for (const std::uint8_t r : reg_) {
      sum += std::ldexp(1.0, -static_cast<int>(r));
      zeros += r == 0;
    }
    const double raw = alpha * m * m / sum;
    if (raw <= 2.5 * m && zeros != 0) return m * std::log(m / static_cast<double>(zeros));  // linear counting
    return raw;
  }

  /// Adds what other counted: afterwards this estimates the distinct keys added to either
  /// (exactly what adding all of other's keys here would have given: each register keeps the
  /// larger rank).
  void merge(const distinct_count& other) noexcept {
    for (std::size_t i = 0; i < registers; ++i) reg_[i] = std::max(reg_[i], other.reg_[i]);
  }

  /// An estimate that the true count rarely exceeds: estimate() plus four standard errors and 64.
  std::size_t upper() const noexcept { return static_cast<std::size_t>(estimate() * 1.065) + 64; }

 private:
  static constexpr std::uint64_t mix(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::array<std::uint8_t, registers> reg_{};
};

}  // namespace leftright::detail
