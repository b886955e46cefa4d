// SPDX-License-Identifier: Apache-2.0
// Injected storage errors on the simulated file system: EIO, ENOSPC, EFBIG and short writes on
// the nth write, fdatasync, msync, fallocate, rename, directory sync and create, for every n the
// workload reaches. Each must make the writer fail-stop (every later publish, checkpoint and
// flush throws), and no batch whose publish() returned may be missing after a crash that loses
// everything unsynced. A lying disk, last, shows that the checker would catch a lost batch.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "support/sim_workload.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using namespace simw;
using leftright::durability;

struct outcome {
  bool error = false;      ///< a storage_error reached the caller (or failed() became true)
  std::string violation;   ///< what broke a promise, if anything
};

/// Publishes (with automatic checkpoints), checkpoints and flushes until the first error, then
/// checks that the writer refuses everything from there on.
outcome run_with_fault(const std::shared_ptr<sim::file_system>& fsys, const config& c, history& h) {
  outcome out;
  std::mt19937_64 rng(77);
  std::optional<map_t> m;
  try {
    m.emplace(leftright::open_map<key, value>(options(fsys, c)));
  } catch (const leftright::storage_error&) {
    out.error = true;  // the open itself failed: nothing was acknowledged
    return out;
  }
  for (int i = 0; i < 40 && !out.error; ++i) {
    try {
      if (i == 15 || i == 25) {
        make_durable(*m, h, /*checkpoint=*/i == 15);
      } else {
        publish_random(*m, h, rng, c, 12);
      }
      // An automatic checkpoint that failed after a publish: the publish stands, the writer stops.
      out.error = m->first.failed();
    } catch (const leftright::storage_error&) {
      out.error = true;
      if (!m->first.failed()) out.violation = "a storage_error left the writer usable";
    }
  }
  if (out.error && out.violation.empty()) {
    // Fail-stop: nothing more is acknowledged, whatever is asked.
    m->first.insert_or_assign(1, "after");
    auto refuses = [](auto&& f) {
      try {
        f();
        return false;
      } catch (const leftright::storage_error&) {
        return true;
      }
    };
    if (!refuses([&] { m->first.publish(); })) out.violation = "publish() succeeded after a failure";
    if (!refuses([&] { m->first.checkpoint(); })) out.violation = "checkpoint() succeeded after a failure";
    if (!refuses([&] { m->first.flush(); })) out.violation = "flush() succeeded after a failure";
    if (!refuses([&] { (void)m->first.try_publish(); })) out.violation = "try_publish() succeeded after a failure";
    if (m->second.version() != h.acked) out.violation = "readers see a version that was not acknowledged";
  }
  return out;
}

void sweep(durability mode) {
  config c;
  c.mode = mode;
  c.checkpoint_bytes = 12000;  // automatic checkpoints too
  // How often the workload makes each kind of call when nothing fails.
  std::map<sim::call, std::uint64_t> counts;
  const sim::call kinds[] = {sim::call::write,  sim::call::sync,     sim::call::msync, sim::call::fallocate,
                             sim::call::rename, sim::call::dir_sync, sim::call::create};
  for (const sim::call k : kinds) {
    // Count by injecting beyond reach and seeing which n still fire: binary search is overkill;
    // the counts are small, so walk n up until a fault no longer fires.
    std::uint64_t n = 1;
    for (;; ++n) {
      auto fsys = std::make_shared<sim::file_system>();
      fsys->inject(k, n, sim::fault::eio);
      history h;
      run_with_fault(fsys, c, h);
      if (fsys->faults_fired() == 0) break;
    }
    counts[k] = n - 1;
  }
  CHECK(counts[sim::call::msync] > 0);
  CHECK(counts[sim::call::rename] > 0);

  std::uint64_t runs = 0;
  for (const sim::call k : kinds) {
    const std::vector<sim::fault> faults =
        k == sim::call::write ? std::vector<sim::fault>{sim::fault::eio, sim::fault::enospc, sim::fault::efbig,
                                                        sim::fault::short_write}
                              : std::vector<sim::fault>{sim::fault::eio, sim::fault::enospc, sim::fault::efbig};
    for (const sim::fault f : faults) {
      for (std::uint64_t n = 1; n <= counts[k]; ++n) {
        INFO("durability " << name(mode) << ": fault " << static_cast<int>(f) << " on " << sim::name(k) << " call "
                           << n << " of " << counts[k]);
        auto fsys = std::make_shared<sim::file_system>();
        fsys->inject(k, n, f);
        history h;
        const outcome o = run_with_fault(fsys, c, h);
        REQUIRE(fsys->faults_fired() == 1);
        CHECK(o.error);
        if (!o.violation.empty()) FAIL(o.violation);
        // Power loss now: every acknowledged batch the mode promised must be there.
        for (const auto how : {sim::crash_mode::drop_all, sim::crash_mode::keep_all}) {
          history hc = h;
          std::optional<map_t> m;
          const std::string v = open_and_check(fsys->copy()->crash(n, how), c, hc, m);
          if (!v.empty()) FAIL(v);
        }
        ++runs;
      }
    }
  }
  std::printf("test_sim_faults (%s): %llu runs with one injected error each\n", name(mode),
              static_cast<unsigned long long>(runs));
}

}  // namespace

TEST_CASE("injected errors make the writer fail-stop and lose nothing acknowledged: sync", "[sim]") {
  sweep(durability::sync);
}
TEST_CASE("injected errors make the writer fail-stop and lose nothing acknowledged: none", "[sim]") {
  sweep(durability::none);
}

TEST_CASE("after a failed sync of the log, every later one fails too", "[sim]") {
  // The kernel reports a failed write-back once and may mark the pages clean: a retry could
  // succeed with the records never written (durability::async's syncer fails, then the writer
  // rolls a segment, which syncs the one it leaves), and later records would claim them durable.
  auto fsys = std::make_shared<sim::file_system>();
  const auto w = log_with_unsynced_record(fsys);
  fsys->inject(sim::call::msync, 1, sim::fault::eio);
  CHECK_THROWS_AS(w->sync(), leftright::storage_error);
  REQUIRE(fsys->faults_fired() == 1);
  w->append(3, record_payload());  // in the page cache; never acknowledged as durable
  CHECK_THROWS_AS(w->sync(), leftright::storage_error);
  CHECK_THROWS_AS(w->roll(4), leftright::storage_error);  // leaving a segment syncs it
  CHECK(fsys->faults_fired() == 1);  // no fault injected since: the failure sticks
}

TEST_CASE("a lying disk loses acknowledged batches, and the checker says so", "[sim]") {
  auto fsys = std::make_shared<sim::file_system>();
  config c;
  c.mode = durability::sync;
  history h;
  std::optional<map_t> m;
  REQUIRE(open_and_check(fsys, c, h, m).empty());
  fsys->set_lying(true);  // from here on, every sync is acknowledged and does nothing
  std::mt19937_64 rng(5);
  for (int i = 0; i < 5; ++i) step(*m, h, rng, c);
  REQUIRE(h.promised >= 1);
  auto image = fsys->crash(1, sim::crash_mode::drop_all);
  m.reset();
  const std::string v = open_and_check(image, c, h, m);
  INFO(v);
  CHECK(v.find("was promised durable") != std::string::npos);
}

}  // namespace LEFTRIGHT_TEST_FILE
