// SPDX-License-Identifier: Apache-2.0
// examples/dns_cache.cpp: a TTL cache in front of a slow resolver, on leftright::cache.
//
// The scenario: request threads resolve host names all the time, a few names far more often
// than the rest. The resolver is slow (a few milliseconds a lookup) and its answers carry a
// time to live. The cache keeps each answer for its TTL (put with a per-entry ttl, through
// get_or_load's loader), so a name is resolved once per TTL however many threads miss on it at
// the same moment: a thundering herd of misses reaches the resolver once.
//
// It prints the lookups, the resolver calls, the hit ratio and the cache's counters, and exits 1
// if the resolver was ever called twice for one name within one TTL (coalescing failed).
//
// Usage: leftright_dns_cache_example [lookups-per-thread] (default 20000)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <leftright/cache.hpp>

namespace {

using namespace std::chrono_literals;

struct answer {
  std::string address;
  std::chrono::milliseconds ttl;
};

/// A slow resolver that counts its calls per name.
class resolver {
 public:
  answer resolve(const std::string& name) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++calls_[name];
    }
    std::this_thread::sleep_for(2ms);  // the network
    const std::size_t h = std::hash<std::string>{}(name);
    return {"10.0." + std::to_string(h % 256) + "." + std::to_string((h >> 8) % 256), 60s};
  }
  /// The most calls any one name got.
  int most_calls_per_name() const {
    std::lock_guard<std::mutex> lock(mu_);
    int most = 0;
    for (const auto& [name, n] : calls_) most = std::max(most, n);
    return most;
  }
  std::size_t calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::size_t n = 0;
    for (const auto& [name, c] : calls_) n += static_cast<std::size_t>(c);
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> calls_;
};

}  // namespace

int main(int argc, char** argv) {
  const long per_thread = argc > 1 ? std::atol(argv[1]) : 20000;
  if (per_thread <= 0) {
    std::fprintf(stderr, "usage: %s [lookups-per-thread > 0]\n", argv[0]);
    return 2;
  }
  resolver upstream;
  leftright::cache<std::string, std::string> dns({.max_entries = 10'000});

  const auto lookup = [&](const std::string& name) {
    return dns.get_or_load(name, [&](const std::string& n) {
      answer a = upstream.resolve(n);
      // The answer's own TTL: the cache keeps it that long.
      return leftright::with_ttl<std::string>{std::move(a.address), a.ttl};
    });
  };

  constexpr int threads = 8;
  std::atomic<long> bad{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::uint64_t x = static_cast<std::uint64_t>(t) * 7919 + 1;
      for (long i = 0; i < per_thread; ++i) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const std::uint64_t a = (x >> 33) % 500, b = (x >> 13) % 500;
        const std::string name = "svc" + std::to_string(std::min(a, b)) + ".internal";  // skewed
        if (lookup(name).rfind("10.0.", 0) != 0) bad.fetch_add(1, std::memory_order_relaxed);  // a count
      }
    });
  }
  for (auto& t : pool) t.join();

  const leftright::cache_stats s = dns.stats();
  std::printf("lookups        %ld on %d threads\n", per_thread * threads, threads);
  std::printf("resolver calls %zu (most for one name: %d)\n", upstream.calls(), upstream.most_calls_per_name());
  std::printf("hit ratio      %.2f%% (hits %llu, misses %llu)\n", 100 * s.hit_ratio(),
              static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses));
  std::printf("loads          %llu ok, %llu failed; entries %zu\n", static_cast<unsigned long long>(s.load_successes),
              static_cast<unsigned long long>(s.load_failures), dns.size());
  std::printf("bad answers    %ld\n", bad.load());
  // The run is far shorter than the 60 s TTL (unless the machine is very slow): one call per name.
  return bad.load() == 0 && upstream.most_calls_per_name() == 1 ? 0 : 1;
}
