// SPDX-License-Identifier: Apache-2.0
// A configuration map on many processes: one leader publishes a new configuration (a generation
// number and the feature flags of that generation) every 200 ms; followers print each version
// they move to, their lag, and whether every read was of one whole generation.
//
//   nats-server -js &                                    # an engine on nats://127.0.0.1:4222
//   leftright_replicated_config leader   nats://127.0.0.1:4222 10 &
//   leftright_replicated_config follower nats://127.0.0.1:4222 10 &
//   leftright_replicated_config follower nats://127.0.0.1:4222 10
#include <leftright/replicated_map.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr int flags = 8;

leftright::replication_options options(const char* url) {
  leftright::replication_options o;
  o.url = url;
  o.name = "config";
  o.snapshot_every = 50;  // a new follower starts from a snapshot at most 50 versions old
  o.keep_log = 50;
  // No take_over: a leader run again after one that finished opens at once (a writer destroyed
  // gives its lease up); after one that was killed, it is refused (lease_held) until that
  // lease expires (10 s).
  return o;
}

int lead(const char* url, double seconds) {
  auto [w, r] = leftright::open_leader<std::string, std::string>(options(url));
  std::printf("leader: opened at version %llu\n", static_cast<unsigned long long>(w.version()));
  const auto until = clock_type::now() + std::chrono::duration<double>(seconds);
  for (std::uint64_t gen = w.version() + 1; clock_type::now() < until; ++gen) {
    // One batch = one generation: every flag carries the generation it was written in.
    w.insert_or_assign("generation", std::to_string(gen));
    for (int i = 0; i < flags; ++i) {
      w.insert_or_assign("flag." + std::to_string(i), std::to_string(gen) + ((gen + i) % 3 == 0 ? ":on" : ":off"));
    }
    try {
      std::printf("leader: published version %llu\n", static_cast<unsigned long long>(w.publish()));
    } catch (const leftright::replication_error& e) {
      std::printf("leader: %s (nothing published; retrying)\n", e.what());
      w.discard();
      --gen;
    }
    if (gen % 10 == 0) {
      try {  // each follower's newest report (about once a second): how far behind it is
        for (const auto& f : w.followers()) {
          std::printf("leader: follower %s at version %llu (%llu behind)\n", f.id.c_str(),
                      static_cast<unsigned long long>(f.version),
                      static_cast<unsigned long long>(w.version() - std::min(f.version, w.version())));
        }
      } catch (const leftright::replication_error& e) {
        std::printf("leader: %s (followers not known now)\n", e.what());
      }
    }
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return 0;
}

/// Whether a read shows one whole generation: every flag written with the generation key.
template <class Guard>
bool whole(const Guard& g) {
  const std::string* gen = g.find(std::string("generation"));
  if (gen == nullptr) return g.size() == 0;
  for (int i = 0; i < flags; ++i) {
    const std::string* f = g.find("flag." + std::to_string(i));
    if (f == nullptr || f->substr(0, f->find(':')) != *gen) return false;
  }
  return true;
}

int follow(const char* url, double seconds) {
  auto [f, r] = leftright::open_follower<std::string, std::string>(options(url));
  f.on_rebootstrap([](std::uint64_t from, std::uint64_t to) {
    std::printf("follower: behind the log: re-bootstrapped from %llu to %llu\n",
                static_cast<unsigned long long>(from), static_cast<unsigned long long>(to));
  });
  const auto until = clock_type::now() + std::chrono::duration<double>(seconds);
  std::uint64_t shown = 0, torn = 0;
  while (clock_type::now() < until) {
    f.wait_for(shown + 1, std::chrono::milliseconds(500));
    auto g = r.read();
    if (!whole(g)) ++torn;
    if (g.version() != shown) {
      shown = g.version();
      std::printf("follower %d: version %llu, lag %llu, %s\n", static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(shown), static_cast<unsigned long long>(f.lag()),
                  f.connected() ? "connected" : "disconnected (serving the last version)");
      std::fflush(stdout);
    }
  }
  std::printf("follower %d: torn reads: %llu\n", static_cast<int>(::getpid()), static_cast<unsigned long long>(torn));
  return torn == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s leader|follower <nats url> [seconds]\n", argv[0]);
    return 2;
  }
  const std::string role = argv[1];
  const double seconds = argc > 3 ? std::atof(argv[3]) : 10.0;
  try {
    if (role == "leader") return lead(argv[2], seconds);
    if (role == "follower") return follow(argv[2], seconds);
  } catch (const leftright::replication_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown role '%s'\n", role.c_str());
  return 2;
}
