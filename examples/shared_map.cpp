// SPDX-License-Identifier: Apache-2.0
// examples/shared_map.cpp: a small routing service on a leftright::shared_map.
//
// The scenario: a service routes requests by host name to a backend. Request threads come and
// go (a pool that grows and shrinks: each worker handles a few requests and exits) and look the
// route up with routes.get(host), no handle in sight. Several admin threads change routes at the
// same time: one moves hosts between backends one call at a time, one swaps a whole tenant's
// routes in one update() (all or nothing), one retires hosts; the first two also count their
// changes in one entry with compute() (a read-modify-write no other writer can come between).
// Their overlapping calls are combined into one publish each. At the end the program prints what
// the writers' combining did and checks that no request ever saw a tenant half swapped and that
// no count was lost.
//
// Usage: leftright_shared_map_example [requests-per-worker] (default 2000)
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <leftright/leftright.hpp>

namespace {

using routes_t = leftright::shared_map<std::string, std::string>;

std::string host(int i) { return "host" + std::to_string(i) + ".example"; }
std::string tenant_host(int t, int i) { return "t" + std::to_string(t) + "-" + std::to_string(i) + ".example"; }

/// A request worker: handles n requests, then exits (its reader is released with it).
void worker(const routes_t& routes, int id, int n, std::atomic<long>& hits, std::atomic<long>& torn) {
  long found = 0;
  for (int r = 0; r < n; ++r) {
    if (routes.get(host((id * 31 + r) % 200))) ++found;
    if (r % 64 == 0) {
      // A tenant's routes are swapped together: one snapshot shows them all on one backend.
      auto snapshot = routes.read();
      const std::string* first = snapshot.find(tenant_host(r % 4, 0));
      for (int i = 1; i < 8 && first != nullptr; ++i) {
        const std::string* other = snapshot.find(tenant_host(r % 4, i));
        if (other == nullptr || *other != *first) torn.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  hits.fetch_add(found, std::memory_order_relaxed);
}

/// Adds one to the count of route changes, atomically: two admins count at once, and a get()
/// followed by an insert_or_assign() would lose some of their counts.
void count_change(routes_t& routes) {
  routes.compute("admin.changes", [](const std::string* n) { return std::to_string(n ? std::stol(*n) + 1 : 1); });
}

/// Admin: moves hosts between backends, one write call each.
void mover(routes_t& routes, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    routes.insert_or_assign(host(i % 200), "backend-" + std::to_string(i % 7));
    count_change(routes);
  }
}

/// Admin: moves a whole tenant to another backend, atomically.
void tenant_swapper(routes_t& routes, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    routes.update([i](routes_t::batch& b) {
      for (int h = 0; h < 8; ++h) b.insert_or_assign(tenant_host(i % 4, h), "pool-" + std::to_string(i));
    });
    count_change(routes);
  }
}

/// Admin: retires a few hosts; fire-and-forget (post), then waits for them once (sync).
void retirer(routes_t& routes, int rounds) {
  for (int i = 0; i < rounds; ++i) routes.post([i](routes_t::batch& b) { b.erase(host(150 + i % 50)); });
  routes.sync();
}

}  // namespace

int main(int argc, char** argv) {
  const int per_worker = argc > 1 ? std::atoi(argv[1]) : 2000;
  routes_t routes;  // in memory; routes_t routes(leftright::durable_options{"/var/lib/routes"}) logs it
  routes.update([](routes_t::batch& b) {
    for (int i = 0; i < 200; ++i) b.insert_or_assign(host(i), "backend-0");
    for (int t = 0; t < 4; ++t) {
      for (int h = 0; h < 8; ++h) b.insert_or_assign(tenant_host(t, h), "pool-start");
    }
  });

  std::atomic<long> hits{0}, torn{0};
  std::vector<std::thread> admins;
  constexpr int moves = 3000, swaps = 1000;
  admins.emplace_back(mover, std::ref(routes), moves);
  admins.emplace_back(tenant_swapper, std::ref(routes), swaps);
  admins.emplace_back(retirer, std::ref(routes), 500);

  // The request pool: waves of short-lived workers, at most 4 alive at once.
  int workers = 0;
  for (int wave = 0; wave < 16; ++wave) {
    std::vector<std::thread> pool;
    for (int i = 0; i < 4; ++i) pool.emplace_back(worker, std::cref(routes), workers++, per_worker, std::ref(hits), std::ref(torn));
    for (auto& t : pool) t.join();
  }
  for (auto& t : admins) t.join();

  const leftright::shared_map_stats s = routes.stats();
  std::printf("workers: %d (at most 4 alive at once), reader slots: %zu, live readers: %zu\n", workers,
              routes.reader_slots(), routes.live_readers());
  std::printf("lookups: %ld hits of %ld; torn tenant snapshots: %ld\n", hits.load(), long(workers) * per_worker,
              torn.load());
  std::printf("writes: %llu in %llu publishes (largest group %llu), version %llu\n",
              static_cast<unsigned long long>(s.writes), static_cast<unsigned long long>(s.publishes),
              static_cast<unsigned long long>(s.largest_group), static_cast<unsigned long long>(routes.version()));
  const long counted = std::stol(routes.get("admin.changes").value_or("0"));
  std::printf("route changes counted: %ld of %d; lost counts: %ld\n", counted, moves + swaps, moves + swaps - counted);
  return torn.load() == 0 && counted == moves + swaps ? 0 : 1;
}
