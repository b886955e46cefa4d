// SPDX-License-Identifier: Apache-2.0
// Seeded random workloads of a durable map on the simulated file system, crashed again and
// again: at a random call inside a publish, a checkpoint, a segment roll, a close or a recovery,
// or between operations, with every unsynced page kept, dropped or torn. After each crash the
// reopened map must equal the model's state after some prefix of the attempted batches, and
// hold at least every batch its durability mode promised. A failing scenario prints its seed;
// LEFTRIGHT_SIM_SEED=<seed> replays just that one.
#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>

#include "support/sim_workload.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using namespace simw;
using leftright::durability;

struct scenario_stats {
  std::uint64_t crashes = 0, crashes_inside = 0, crashes_in_recovery = 0, batches = 0, checks = 0;
};

/// One scenario: a configuration drawn from the seed, rounds of work each ended by a crash.
std::string run_scenario(std::uint64_t seed, scenario_stats& stats) {
  std::mt19937_64 rng(seed);
  config c;
  const durability modes[] = {durability::sync, durability::none, durability::async};
  c.mode = modes[rng() % 3];
  c.checkpoint_bytes = rng() % 2 == 0 ? 0 : 6000 + rng() % 20000;
  c.segment_size = 8192 + 4096 * (rng() % 3);
  // The async syncer makes calls from its own thread at times of its own: a crash inside one of
  // them would race with the writer's stores into the mapping, so async maps crash between
  // operations only.
  const bool crash_inside = c.mode != durability::async;
  auto fsys = std::make_shared<sim::file_system>();
  history h;
  std::optional<map_t> m;

  for (int round = 0; round < 6; ++round) {
    // Reopen, perhaps crashing inside the recovery first.
    if (round > 0 && crash_inside && rng() % 3 == 0) {
      fsys->crash_at(1 + rng() % 40, rng());
      try {
        m.emplace(leftright::open_map<key, value>(options(fsys, c)));
      } catch (const leftright::storage_error& e) {
        if (!fsys->dead()) return std::string("recovery failed: ") + e.what();
      }
      const bool in_recovery = fsys->dead();
      m.reset();  // if the recovery finished first, its close may still meet the crash
      fsys = fsys->dead() ? fsys->image() : fsys->crash(rng(), sim::crash_mode::keep_all);
      stats.crashes_in_recovery += in_recovery ? 1 : 0;
    }
    if (std::string f = open_and_check(fsys, c, h, m); !f.empty()) {
      return "round " + std::to_string(round) + ", mode " + name(c.mode) + ": " + f;
    }
    ++stats.checks;

    // Work, until the armed crash or the end of the round.
    if (crash_inside) fsys->crash_at(1 + rng() % 300, rng());
    const int steps = 1 + static_cast<int>(rng() % 40);
    try {
      for (int i = 0; i < steps; ++i) {
        step(*m, h, rng, c);
        ++stats.batches;
      }
      if (rng() % 4 == 0) {
        m.reset();  // a clean close makes everything durable (if the crash does not hit it)
        if (!fsys->dead()) h.promised = h.acked;
      }
    } catch (const leftright::storage_error& e) {
      if (!fsys->dead()) return std::string("unexpected error: ") + e.what();
    }
    stats.crashes_inside += fsys->dead() ? 1 : 0;  // crash_at fired inside a call
    auto image = fsys->dead() ? fsys->image() : fsys->crash(rng());
    m.reset();  // the old writer closes against a dead file system: it can do no harm
    fsys = image;
    ++stats.crashes;
  }
  if (std::string f = open_and_check(fsys, c, h, m); !f.empty()) return "final reopen: " + f;
  return {};
}

}  // namespace

TEST_CASE("random workloads survive repeated crashes on the simulated file system", "[sim][stress]") {
  std::vector<std::uint64_t> seeds;
  if (auto one = replay_seed()) {
    seeds.push_back(*one);
  } else {
    const std::uint64_t base = lrtest::test_seed();
    for (std::uint64_t i = 0; i < 120; ++i) seeds.push_back(base + i);
  }
  scenario_stats stats;
  for (const std::uint64_t seed : seeds) {
    const std::string f = run_scenario(seed, stats);
    if (!f.empty()) {
      FAIL("scenario seed " << seed << ": " << f << "\n  replay: LEFTRIGHT_SIM_SEED=" << seed
                            << " tests/stress_sim_crash");
    }
  }
  std::printf("stress_sim_crash: %zu scenarios, %llu crashes (%llu inside a call, %llu inside recovery), %llu steps, %llu reopenings checked\n",
              seeds.size(), static_cast<unsigned long long>(stats.crashes),
              static_cast<unsigned long long>(stats.crashes_inside),
              static_cast<unsigned long long>(stats.crashes_in_recovery),
              static_cast<unsigned long long>(stats.batches), static_cast<unsigned long long>(stats.checks));
  if (seeds.size() > 1) {
    // Over many scenarios the armed crashes do land inside calls, also inside recoveries: the
    // crash points the test exists for were reached, not only crashes between operations.
    CHECK(stats.crashes_inside > 0);
    CHECK(stats.crashes_in_recovery > 0);
  }
}

}  // namespace LEFTRIGHT_TEST_FILE
