// SPDX-License-Identifier: Apache-2.0
// examples/cache_demo.cpp: leftright::cache live: reader threads serve requests through
// get_or_load() (a miss loads from a slow "database"), an admin thread invalidates entries now and
// then, and the main thread prints a line per second: reads/s, the hit ratio of that second,
// loads/s, evictions/s and expirations/s, and the entries held. Run by `scripts/demo --cache`.
//
// Usage: leftright_cache_demo [--seconds S] [--threads T] [--capacity C] [--keys K] [--ttl_ms M]
//                             (--help for details; Abseil flags)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <leftright/cache.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

ABSL_FLAG(double, seconds, 3, "how long to run, in seconds, (0, 1e6]");
ABSL_FLAG(unsigned, threads, 2, "reader threads, 1 to 256");
ABSL_FLAG(std::uint64_t, capacity, 10'000, "max_entries of the cache, 1 to 10000000");
ABSL_FLAG(std::uint64_t, keys, 30'000, "distinct keys requested (skewed: a few are popular), 1 to 100000000");
ABSL_FLAG(std::uint64_t, ttl_ms, 1000, "expire_after_write in milliseconds (0: never)");

namespace {

/// The slow backing store: a round trip of about 50 microseconds per load.
std::uint64_t load_from_database(std::uint64_t key) {
  std::this_thread::sleep_for(std::chrono::microseconds(50));
  return key * 2;  // the value: twice the key (checked by the readers)
}

/// A skewed key: the smallest of three uniform draws (key 0 the most popular).
std::uint64_t next_key(std::uint64_t& x, std::uint64_t keys) {
  x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  return std::min({(x >> 40) % keys, (x >> 20) % keys, (x >> 2) % keys});
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("leftright::cache live: reads/s, hit ratio, loads/s, evictions/s");
  absl::ParseCommandLine(argc, argv);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const unsigned threads = absl::GetFlag(FLAGS_threads);
  const std::uint64_t capacity = absl::GetFlag(FLAGS_capacity), keys = absl::GetFlag(FLAGS_keys);
  const std::uint64_t ttl_ms = absl::GetFlag(FLAGS_ttl_ms);
  if (!(seconds > 0 && seconds <= 1e6) || threads < 1 || threads > 256 || capacity < 1 ||
      capacity > 10'000'000 || keys < 1 || keys > 100'000'000) {
    std::fprintf(stderr, "leftright_cache_demo: a flag is out of range (--help)\n");
    return 2;
  }
  leftright::cache<std::uint64_t, std::uint64_t> cache(
      {.max_entries = capacity, .expire_after_write = std::chrono::milliseconds(ttl_ms)});

  // Written by the main thread, read by the others: relaxed is enough for a stop flag (nothing
  // is handed over with it; join() orders the rest).
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0}, wrong{0};  // counts only: relaxed
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::uint64_t x = t + 1, n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t k = next_key(x, keys);
        if (cache.get_or_load(k, load_from_database) != k * 2) wrong.fetch_add(1, std::memory_order_relaxed);
        if (++n % 256 == 0) reads.fetch_add(256, std::memory_order_relaxed);
      }
    });
  }
  pool.emplace_back([&] {  // the admin: an invalidation every millisecond
    std::uint64_t x = 99;
    while (!stop.load(std::memory_order_relaxed)) {
      cache.invalidate(next_key(x, keys));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });

  std::printf("%8s %12s %9s %10s %12s %13s %9s\n", "second", "reads/s", "hit %", "loads/s", "evictions/s",
              "expirations/s", "entries");
  leftright::cache_stats before = cache.stats();
  std::uint64_t reads_before = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int second = 1; std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds); ++second) {
    const double interval = std::min(1.0, seconds - (second - 1));
    std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    const leftright::cache_stats now = cache.stats();
    const std::uint64_t r = reads.load(std::memory_order_relaxed);
    const double lookups = static_cast<double>((now.hits + now.misses) - (before.hits + before.misses));
    std::printf("%8d %12.0f %8.2f%% %10.0f %12.0f %13.0f %9zu\n", second, static_cast<double>(r - reads_before) / interval,
                lookups > 0 ? 100.0 * static_cast<double>(now.hits - before.hits) / lookups : 0.0,
                static_cast<double>(now.load_successes - before.load_successes) / interval,
                static_cast<double>(now.evictions - before.evictions) / interval,
                static_cast<double>(now.expirations - before.expirations) / interval, cache.size());
    before = now;
    reads_before = r;
  }
  stop.store(true, std::memory_order_relaxed);
  for (auto& t : pool) t.join();
  const leftright::cache_stats s = cache.stats();
  std::printf("summary: %llu lookups, hit ratio %.2f%%, %llu loads, %llu evictions, %llu expirations, "
              "%llu wrong values, %zu entries (capacity %llu)\n",
              static_cast<unsigned long long>(s.hits + s.misses), 100 * s.hit_ratio(),
              static_cast<unsigned long long>(s.load_successes), static_cast<unsigned long long>(s.evictions),
              static_cast<unsigned long long>(s.expirations), static_cast<unsigned long long>(wrong.load()),
              cache.size(), static_cast<unsigned long long>(capacity));
  return wrong.load() == 0 && cache.size() <= capacity ? 0 : 1;
}
