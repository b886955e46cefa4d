// SPDX-License-Identifier: Apache-2.0
// leftright benchmarks: keys, key arrays and the shared map fixtures every scenario uses.
//
// Keys: std::uint64_t keys are splitmix64(i), a bijection, so key i never collides with key j;
// std::string keys are the 16 hex digits of the same number (16 bytes: past libstdc++'s 15-byte
// small-string buffer, so each key is a heap block, as most real string keys are). Entry i
// holds value i. Miss keys are the keys of indices >= the map's size.
//
// Fixtures: each (map, key type, size) is built once per process, on first use, and shared by
// every benchmark (they are leaked on purpose: no destruction-order questions at exit). Write
// benchmarks only overwrite the values of keys already present, so a fixture's set of keys, and
// its table's shape, never change.
#pragma once

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"
#include "measure.hpp"

namespace lrbench {

inline constexpr std::size_t small_n = std::size_t{1} << 10;  // "1K": cache-resident
inline constexpr std::size_t large_n = std::size_t{1} << 20;  // "1M": far beyond the caches
/// "16M": a map that lives in DRAM. A 1M-entry uint64_t table (16 MiB + control bytes) fits in
/// a 32 MiB L3; 16M entries take 0.5 GiB per table, far beyond any last-level cache.
inline constexpr std::size_t dram_n = std::size_t{1} << 24;
/// Lookups per benchmark iteration; also the span of one guard in the "guard16" form.
inline constexpr std::size_t block = 16;

inline constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

template <class Key>
Key make_key(std::uint64_t i);
template <>
inline std::uint64_t make_key<std::uint64_t>(std::uint64_t i) {
  return splitmix64(i);
}
template <>
inline std::string make_key<std::string>(std::uint64_t i) {
  static constexpr char digits[] = "0123456789abcdef";
  std::uint64_t x = splitmix64(i);
  std::string s(16, '0');
  for (std::size_t j = 0; j < 16; ++j, x >>= 4) s[15 - j] = digits[x & 0xf];
  return s;
}

template <class Key>
inline constexpr std::string_view key_name = "u64";
template <>
inline constexpr std::string_view key_name<std::string> = "str16";

/// 1024 -> "1K", 65536 -> "64K", 1 << 20 -> "1M".
inline std::string size_name(std::size_t n) {
  if (n >= (std::size_t{1} << 20) && n % (std::size_t{1} << 20) == 0) return std::to_string(n >> 20) + "M";
  if (n >= 1024 && n % 1024 == 0) return std::to_string(n >> 10) + "K";
  return std::to_string(n);
}

/// keys[i] = make_key(i) for i < N: the entries of every fixture of size N.
template <class Key, std::size_t N>
const std::vector<Key>& present_keys() {
  static const std::vector<Key> keys = [] {
    std::vector<Key> v;
    v.reserve(N);
    for (std::size_t i = 0; i < N; ++i) v.push_back(make_key<Key>(i));
    return v;
  }();
  return keys;
}

/// The lookup sequence for a map of N entries: max(N, 16K) keys (a multiple of block), every
/// present key about equally often, MissPercent of them absent keys, shuffled with a fixed seed.
template <class Key, std::size_t N, unsigned MissPercent>
const std::vector<Key>& lookup_keys() {
  static const std::vector<Key> keys = [] {
    const std::size_t len = std::max<std::size_t>(N, 16384);
    const std::size_t misses = len * MissPercent / 100;
    std::vector<Key> v;
    v.reserve(len);
    for (std::size_t i = 0; i < len - misses; ++i) v.push_back(make_key<Key>(i % N));
    for (std::size_t i = 0; i < misses; ++i) v.push_back(make_key<Key>(N + i));
    std::mt19937_64 rng(42 + N + MissPercent);
    std::shuffle(v.begin(), v.end(), rng);
    return v;
  }();
  return keys;
}

/// The overwrite sequence for a map of N entries: its keys in a shuffled order.
template <class Key, std::size_t N>
const std::vector<Key>& write_keys() {
  static const std::vector<Key> keys = [] {
    std::vector<Key> v = present_keys<Key, N>();
    std::mt19937_64 rng(7 + N);
    std::shuffle(v.begin(), v.end(), rng);
    return v;
  }();
  return keys;
}

/// The shared fixture: Map filled with present_keys<Key, N>(), built once.
template <class Map, class Key, std::size_t N>
Map& fixture() {
  static Map& m = *new Map(present_keys<Key, N>());
  return m;
}

/// Where thread t of a benchmark starts in a key array, so threads do not walk in lockstep.
inline std::size_t thread_start(const benchmark::State& state, std::size_t len) {
  const std::size_t t = static_cast<std::size_t>(state.thread_index());
  const std::size_t n = static_cast<std::size_t>(state.threads());
  return (len / n * t) / block * block;
}

/// The read-only workloads of the lookup scenarios (lookup, lookup_pair), in their order:
/// f.template operator()<N, MissPercent, Guard16>() for each.
template <class F>
void for_each_read_workload(F&& f) {
  f.template operator()<small_n, 0, false>();
  f.template operator()<small_n, 10, false>();
  f.template operator()<large_n, 0, false>();
  f.template operator()<large_n, 10, false>();
  f.template operator()<small_n, 0, true>();
  f.template operator()<large_n, 0, true>();
}

/// Sets the label: the adapter's note, plus the scenario's.
template <class Map>
void set_label(benchmark::State& state, const Map& m, const std::string& extra = {}) {
  std::string l = m.label();
  if (!extra.empty()) l += (l.empty() ? "" : " ") + extra;
  if (!l.empty()) state.SetLabel(l);
}

/// YCSB's ZipfianGenerator (Gray et al.): ranks 0..n-1, rank 0 the most popular.
class zipfian {
 public:
  explicit zipfian(std::uint64_t n, double theta = 0.99) : n_(n), theta_(theta) {
    for (std::uint64_t i = 1; i <= n; ++i) zetan_ += 1.0 / std::pow(static_cast<double>(i), theta);
    const double zeta2 = 1.0 + 1.0 / std::pow(2.0, theta);
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) / (1.0 - zeta2 / zetan_);
  }
  template <class Rng>
  std::uint64_t operator()(Rng& rng) const {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < 1.0 + std::pow(0.5, theta_)) return 1;
    const auto r = static_cast<std::uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return r < n_ ? r : n_ - 1;
  }

 private:
  std::uint64_t n_;
  double theta_, zetan_ = 0, alpha_ = 0, eta_ = 0;
};

/// The lookup sequence of a cache of N entries: 256K keys (a multiple of block), key i drawn
/// with Zipfian popularity (theta 0.99) over the N present keys, rank r being make_key(r); all
/// hits. Fixed seed.
template <class Key, std::size_t N>
const std::vector<Key>& zipf_keys() {
  static const std::vector<Key> keys = [] {
    const zipfian z(N);
    std::mt19937_64 rng(99 + N);
    std::vector<Key> v;
    v.reserve(std::size_t{1} << 18);
    for (std::size_t i = 0; i < (std::size_t{1} << 18); ++i) v.push_back(make_key<Key>(z(rng)));
    return v;
  }();
  return keys;
}

// ------------------------------------------------------------------------------------------
// Paired phases (the *_pair scenarios): every iteration runs the same work twice, through a
// baseline and through the subject, one phase after the other, the order alternating, every
// thread of the benchmark in the same phase (a barrier before each); the figure is the median
// over the iterations of (baseline phase time / subject phase time), the subject's rate as a
// fraction of the baseline's. A burst of noise on a shared machine then spoils a few pairs,
// not the ratio.
// ------------------------------------------------------------------------------------------

/// The barrier every thread of a paired benchmark meets before each phase: made by
/// setup_pair_barrier (the benchmark's Setup) for its thread count, dropped by its Teardown.
inline std::unique_ptr<std::barrier<>> pair_barrier;
inline void setup_pair_barrier(const benchmark::State& state) {
  pair_barrier = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(state.threads()));
}
inline void teardown_pair_barrier(const benchmark::State&) { pair_barrier.reset(); }

/// Runs the benchmark's iterations as pairs: base() and subject() (each one phase, the same
/// work), the order alternating, pair_barrier before each; next() after each pair. The pairs'
/// figure (measure.hpp) is the subject's rate as a fraction of the baseline's.
template <class Base, class Subject, class Next>
alternating_pairs run_pairs(benchmark::State& state, Base&& base, Subject&& subject, Next&& next) {
  const auto timed = [](auto& phase) {
    pair_barrier->arrive_and_wait();
    const auto t0 = std::chrono::steady_clock::now();
    phase();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  alternating_pairs pairs;
  for (auto _ : state) {
    pairs.run([&] { return timed(base); }, [&] { return timed(subject); });
    next();
  }
  return pairs;
}

/// One phase of lookups: count keys of `keys` from index `from` on, a block at a time, wrapping
/// at the end (from, count and keys.size() multiples of block), each result kept from the
/// optimizer.
template <class Key, class Get>
void lookup_phase(const std::vector<Key>& keys, std::size_t from, std::size_t count, Get&& get) {
  const std::size_t len = keys.size();
  std::size_t i = from;
  for (std::size_t done = 0; done < count; done += block) {
    const Key* k = &keys[i];
    for (std::size_t j = 0; j < block; ++j) benchmark::DoNotOptimize(get(k[j]));
    i += block;
    if (i == len) i = 0;
  }
}

/// The q-quantile (0..1) of samples already sorted ascending, nearest rank.
inline double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto idx = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(idx, sorted.size() - 1)];
}

}  // namespace lrbench
