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
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "adapters.hpp"

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

/// The q-quantile (0..1) of samples already sorted ascending, nearest rank.
inline double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto idx = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(idx, sorted.size() - 1)];
}

}  // namespace lrbench
