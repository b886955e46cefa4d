// SPDX-License-Identifier: Apache-2.0
// Every crash point of a recorded workload, explored exhaustively on the simulated file system:
// a small fixed sequence (publishes that roll segments, a checkpoint, a flush, a close, a
// recovery, more publishes) is run once per file-system call, crashing inside that call, with
// each way of losing what was not durable; then every call of the recovery from that image is
// crashed in turn, and the map must still come back as a prefix holding everything promised.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>

#include "support/sim_workload.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using namespace simw;
using leftright::durability;

/// Opens inside the workload: a crash there propagates as the storage_error it is.
void reopen(const std::shared_ptr<sim::file_system>& fsys, const config& c, history& h, std::optional<map_t>& m) {
  const std::string f = open_and_check(fsys, c, h, m);
  if (f.empty()) return;
  if (fsys->dead()) throw leftright::storage_error({}, "open", EIO, "simulated crash");
  throw std::logic_error(f);
}

/// The recorded workload. Runs to the end, or throws what the crash throws.
void workload(const std::shared_ptr<sim::file_system>& fsys, const config& c, history& h) {
  std::mt19937_64 rng(20261121);
  std::optional<map_t> m;
  reopen(fsys, c, h, m);
  auto publish = [&] { publish_random(*m, h, rng, c, 12); };
  for (int i = 0; i < 10; ++i) publish();  // rolls segments (8 KiB each)
  make_durable(*m, h, /*checkpoint=*/true);
  for (int i = 0; i < 6; ++i) publish();
  make_durable(*m, h, /*checkpoint=*/false);
  for (int i = 0; i < 3; ++i) publish();
  m.reset();  // a clean close syncs (a destructor cannot report a failure: check the fs)
  if (fsys->dead()) throw leftright::storage_error({}, "close", EIO, "simulated crash");
  h.promised = h.acked;
  reopen(fsys, c, h, m);
  for (int i = 0; i < 4; ++i) publish();
  m.reset();
  if (fsys->dead()) throw leftright::storage_error({}, "close", EIO, "simulated crash");
  h.promised = h.acked;
}

struct totals {
  std::uint64_t crash_points = 0, recovery_crash_points = 0, reopenings = 0;
};

void explore(durability mode, totals& t) {
  config c;
  c.mode = mode;
  // How many calls the workload makes when nothing goes wrong.
  std::uint64_t calls = 0;
  {
    auto fsys = std::make_shared<sim::file_system>();
    history h;
    workload(fsys, c, h);
    calls = fsys->calls();
  }
  REQUIRE(calls > 50);
  const sim::crash_mode modes[] = {sim::crash_mode::drop_all, sim::crash_mode::keep_all, sim::crash_mode::random,
                                   sim::crash_mode::random};
  for (std::uint64_t n = 1; n <= calls; ++n) {
    for (std::size_t mi = 0; mi < std::size(modes); ++mi) {
      const std::uint64_t seed = n * 31 + mi;
      INFO("durability " << name(mode) << ", crash inside call " << n << " of " << calls << ", crash mode "
                         << mi << ", seed " << seed);
      auto fsys = std::make_shared<sim::file_system>();
      fsys->crash_at(n, seed, modes[mi]);
      history h;
      try {
        workload(fsys, c, h);
      } catch (const leftright::storage_error&) {
      }
      REQUIRE(fsys->dead());  // every call up to `calls` is reached
      const auto image = fsys->image();
      ++t.crash_points;

      // The recovery, undisturbed; and counted.
      std::uint64_t recovery_calls = 0;
      {
        auto copy = image->copy();
        history hc = h;
        std::optional<map_t> m;
        const std::string f = open_and_check(copy, c, hc, m);
        if (!f.empty()) FAIL(f);
        recovery_calls = copy->calls();
        ++t.reopenings;
      }
      // Crashes inside the recovery (its first call to its last), the survivor recovered again.
      if (mi == 1) continue;  // keep_all of a recovery changes nothing a crash could lose
      for (std::uint64_t r = 1; r <= recovery_calls; ++r) {
        INFO("then a crash inside recovery call " << r << " of " << recovery_calls);
        auto copy = image->copy();
        copy->crash_at(r, seed ^ (r << 20), modes[mi]);
        try {
          auto m = leftright::open_map<key, value>(options(copy, c));
        } catch (const leftright::storage_error&) {
        }
        REQUIRE(copy->dead());
        history hc = h;
        std::optional<map_t> m;
        const std::string f = open_and_check(copy->image(), c, hc, m);
        if (!f.empty()) FAIL(f);
        ++t.recovery_crash_points;
        ++t.reopenings;
      }
    }
  }
}

void run(durability mode) {
  totals t;
  explore(mode, t);
  std::printf("test_sim_crash_points (%s): %llu crash points, %llu crash points inside recovery, %llu reopenings checked\n",
              name(mode), static_cast<unsigned long long>(t.crash_points),
              static_cast<unsigned long long>(t.recovery_crash_points),
              static_cast<unsigned long long>(t.reopenings));
}

}  // namespace

TEST_CASE("every crash point of a recorded workload recovers: durability::sync", "[sim]") { run(durability::sync); }
TEST_CASE("every crash point of a recorded workload recovers: durability::none", "[sim]") { run(durability::none); }

}  // namespace LEFTRIGHT_TEST_FILE
