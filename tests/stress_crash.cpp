// SPDX-License-Identifier: Apache-2.0
// Stress: kill -9 a real writer process at random moments and recover, again and again, in the
// same directory. What is checked (DESIGN.md section 3, durable_map.hpp "What survives what"):
//   - nothing published is lost: a SIGKILL keeps the page cache, so in every durability mode the
//     recovered version is >= every version a child reported after its publish() returned;
//   - nothing unpublished appears: at most one batch beyond the last report (the one whose
//     publish() returned just before the kill, or whose record was complete when it came);
//   - the recovered content is exactly the state after `recovered version` batches (a prefix of
//     the deterministic batch sequence; never a torn batch, never a hole);
//   - recovery is deterministic: the next child reopens at the version the parent found.
//
// One round: fork() a child that opens the map (recovering the previous child's crash), then
// publishes batch b = version + 1, + 2, ... forever (make_batch below; every 50th batch also
// checkpoint()s), writing each version to a pipe after publish() returns. The parent reads the
// pipe, SIGKILLs the child after a seeded random delay (1-50 ms after the child reported that it
// reopened; one round in five 0-20 ms after fork(), so that kills also land inside the child's
// own recovery; checkpoints and segment rolls get hit along the way), reaps it, and reopens the directory to
// check it: in place on even rounds, on a copy on odd rounds (so the next child recovers from the
// raw crashed state itself, and crashes stack up without a clean reopen in between).
//
// The child is a fresh process that only runs the writer: the test binary starts no threads
// (Catch2 does not; durability::async starts its syncer thread in the child, after fork()). The
// child never returns into Catch2: it leaves through _exit(), and reports failures through its
// exit code (2: an exception, 3: publish() returned an unexpected version); the parent asserts it
// died of SIGKILL. Bounded by a round count and a per-mode time budget; the seed is printed
// (LEFTRIGHT_SEED=<seed> replays the same delays).
//
// Last, one in-process async run (no crash): publishes racing the background syncer thread, then a
// reopen that must hold every batch; it is there for ThreadSanitizer builds, which cannot see into
// the killed children.
//
// No atomics in this file.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/child_process.hpp"
#include "support/durability_name.hpp"
#include "support/model_map.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::temp_dir;

namespace {

namespace fs = std::filesystem;
using leftright::durability;

constexpr std::uint64_t key_space = 512;
constexpr int keys_per_batch = 8;
constexpr std::uint64_t checkpoint_every = 50;
constexpr std::size_t segment_size = 12 << 10;  // small: segments roll every ~40 batches
constexpr int max_delay_ms = 50;

/// The i-th key batch b writes (8 distinct keys per batch; batches overlap).
std::uint64_t batch_key(std::uint64_t b, int i) {
  return (b * 37 + static_cast<std::uint64_t>(i) * 61) % key_space;
}

/// Queues batch b on sink (a durable_writer or the model): the same operations in the same order.
/// Mostly insert_or_assign(key, b); every 5th batch uses insert() (no overwrite) for half of
/// its keys; erases a key batch b-3 wrote; every 10th batch an erase_if over the whole map whose
/// result depends on the state at that point of the batch; every 211th batch starts with clear().
template <class Sink>
void make_batch(std::uint64_t b, Sink& sink) {
  if (b % 211 == 0) sink.clear();
  for (int i = 0; i < keys_per_batch; ++i) {
    if (b % 5 == 0 && i % 2 == 1) {
      sink.insert(batch_key(b, i), b);
    } else {
      sink.insert_or_assign(batch_key(b, i), b);
    }
  }
  if (b > 3) sink.erase(batch_key(b - 3, static_cast<int>(b % keys_per_batch)));
  if (b % 10 == 7) {
    sink.erase_if([m = b % 11](const std::uint64_t& k, const std::uint64_t& v) { return (k + v) % 11 == m; });
  }
}

/// The expected state: advance_to(v) replays make_batch up to batch v.
struct model : lrtest::model_map<std::uint64_t, std::uint64_t> {
  void advance_to(std::uint64_t v) {
    model_map::advance_to(v, [](std::uint64_t b, model_map& s) { make_batch(b, s); });
  }
};

leftright::durable_options options_for(const fs::path& dir, durability mode) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = mode;
  o.sync_interval = std::chrono::milliseconds(2);
  o.segment_size = segment_size;
  o.checkpoint_bytes = 0;  // only the explicit checkpoints: they land on known batches
  return o;
}

// The child's reports (lrtest::report, 16 bytes: atomic in the pipe, so a kill never leaves
// half of one): it opened at `value`, or published version `value`.
constexpr std::uint64_t msg_opened = 1;
constexpr std::uint64_t msg_published = 2;

/// The child: open (recovering), then publish batches until killed. Returns (its exit code) only
/// on a failure: 2, an exception; 3, publish() returned an unexpected version.
int child_main(const fs::path& dir, durability mode, int fd) {
  try {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options_for(dir, mode));
    lrtest::send_record(fd, lrtest::report{msg_opened, w.version()});
    for (std::uint64_t b = w.version() + 1;; ++b) {
      make_batch(b, w);
      if (b % 7 == 0) {
        // try_publish() cannot be refused here (the one reader is never inside a read).
        if (!w.try_publish()) w.publish();
      } else {
        w.publish();
      }
      if (w.version() != b || r.version() != b) {
        std::fprintf(stderr, "child: batch %llu published as version %llu (reader: %llu)\n",
                     static_cast<unsigned long long>(b), static_cast<unsigned long long>(w.version()),
                     static_cast<unsigned long long>(r.version()));
        return 3;
      }
      lrtest::send_record(fd, lrtest::report{msg_published, b});
      if (b % checkpoint_every == 0) w.checkpoint();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child: exception: %s\n", e.what());
  } catch (...) {
  }
  return 2;
}

struct round_result {
  bool reopened = false;  // it reported "opened"
  std::uint64_t opened_at = 0;
  std::uint64_t last_reported = 0;     // the highest published version it reported
  std::uint64_t reports = 0;
  lrtest::exit_status status;
};

/// Forks a child, lets it run, kills it with SIGKILL and reaps it. The delay counts from the
/// child's "opened" message, or (from_fork) from the fork() itself, so that the kill may land
/// inside the child's recovery.
round_result run_child(const fs::path& dir, durability mode, std::chrono::milliseconds delay,
                       bool from_fork) {
  using clock = lrtest::child_process::clock;
  round_result res;
  lrtest::child_process child = lrtest::child_process::fork([&](int fd) { return child_main(dir, mode, fd); });
  // A child that never reports "opened" is killed after this (and the test fails below if it
  // was not just slow: opened_at is then checked on the next round's reopen anyway).
  clock::time_point deadline = clock::now() + (from_fork ? delay : std::chrono::milliseconds(10000));
  std::string buf;
  auto parse = [&] {
    lrtest::take_records<lrtest::report>(buf, [&](const lrtest::report& m) {
      if (m.kind == msg_opened) {
        res.reopened = true;
        res.opened_at = m.value;
        if (!from_fork) deadline = clock::now() + delay;
      } else if (m.kind == msg_published) {
        res.last_reported = std::max(res.last_reported, m.value);
        ++res.reports;
      }
    });
  };
  while (child.read_some(buf, deadline) == lrtest::child_process::read_state::data) parse();
  res.status = child.kill_and_wait(SIGKILL);  // also fine if it already exited
  child.read_to_end(buf);
  parse();
  CHECK(buf.empty());  // no half report
  return res;
}

void run_crash_rounds(durability mode, int rounds, std::chrono::seconds budget) {
  const std::uint64_t seed = lrtest::test_seed();
  std::mt19937_64 rng(seed);
  temp_dir tmp("crash");
  const fs::path dir = tmp.path() / "map";
  const fs::path copy = tmp.path() / "copy";

  model expected;
  std::uint64_t recovered = 0;       // what the last check found (the next child opens there)
  std::uint64_t ever_reported = 0;   // the highest version any child reported as published
  int tails = 0, early_kills = 0, done = 0;
  const auto started = std::chrono::steady_clock::now();

  for (int round = 0; round < rounds && std::chrono::steady_clock::now() - started < budget; ++round) {
    // Mostly 1-50 ms after the child reopened; one round in five 0-20 ms after fork(), which
    // often lands inside the child's recovery (the disk's fsyncs make it take a few ms).
    const bool from_fork = rng() % 5 == 0;
    const int delay_ms = from_fork ? static_cast<int>(rng() % 21) : 1 + static_cast<int>(rng() % max_delay_ms);
    INFO("mode " << lrtest::durability_name(mode) << ", round " << round << ", delay " << delay_ms << " ms after "
                 << (from_fork ? "fork" : "reopening"));
    const round_result res = run_child(dir, mode, std::chrono::milliseconds(delay_ms), from_fork);

    // The child must have died of our SIGKILL, not of an error of its own.
    INFO("child " << res.status.describe());
    REQUIRE(res.status.killed_by(SIGKILL));
    if (res.reopened) {
      // Recovery is deterministic: the child reopened where the last check (or, on odd rounds,
      // the check of an identical copy) found the map.
      CHECK(res.opened_at == recovered);
    } else {
      ++early_kills;
    }
    ever_reported = std::max(ever_reported, res.last_reported);
    const std::uint64_t baseline = std::max(recovered, res.last_reported);

    // Check: in place on even rounds; on odd rounds on a copy, so that the next child recovers
    // from the crashed directory itself.
    const bool on_copy = round % 2 == 1;
    fs::path check_dir = dir;
    if (on_copy) {
      std::error_code ec;
      fs::remove_all(copy, ec);
      fs::copy(dir, copy, fs::copy_options::recursive);
      check_dir = copy;
    }
    std::uint64_t v = 0;
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options_for(check_dir, durability::none));
      v = w.version();
      INFO("recovered version " << v << ", last reported " << res.last_reported << " (opened at "
                                << res.opened_at << ", " << res.reports
                                << " reports), note: " << w.recovery().note);
      CHECK(w.recovery().version == v);
      CHECK(r.version() == v);
      // Nothing published was lost ...
      REQUIRE(v >= ever_reported);
      REQUIRE(v >= recovered);
      // ... and nothing appeared that had not at least been handed to publish().
      REQUIRE(v <= baseline + 1);
      expected.advance_to(v);
      const std::string diff = lrtest::compare_to_model(r, expected);
      INFO("difference: " << diff);
      REQUIRE(diff.empty());
      if (w.recovery().tail_truncated) ++tails;
    }
    recovered = v;
    ++done;
  }
  const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  WARN("crash rounds, durability " << lrtest::durability_name(mode) << ": " << done << " rounds in " << secs
                                   << " s, final version " << recovered << ", " << tails
                                   << " torn tails, " << early_kills << " kills before the child reopened");
  CHECK(done > 0);
}

}  // namespace

TEST_CASE("kill -9 at random moments: sync mode recovers every published batch", "[stress][crash]") {
  run_crash_rounds(durability::sync, 30, std::chrono::seconds(10));
}

TEST_CASE("kill -9 at random moments: none mode recovers every published batch", "[stress][crash]") {
  run_crash_rounds(durability::none, 30, std::chrono::seconds(10));
}

TEST_CASE("kill -9 at random moments: async mode recovers every published batch", "[stress][crash]") {
  run_crash_rounds(durability::async, 15, std::chrono::seconds(6));
}

TEST_CASE("async mode in process: publishes race the background sync; a reopen has every batch",
          "[stress][crash]") {
  // Not a crash: the in-process half of the async story, so that a ThreadSanitizer build sees the
  // writer's appends and rolls next to the syncer thread's msyncs (the forked children above are
  // killed before a sanitizer could report at exit).
  temp_dir tmp("async");
  const fs::path dir = tmp.path() / "map";
  constexpr std::uint64_t batches = 600;
  {
    auto opts = options_for(dir, durability::async);
    opts.sync_interval = std::chrono::milliseconds(1);
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(opts);
    for (std::uint64_t b = 1; b <= batches; ++b) {
      make_batch(b, w);
      REQUIRE(w.publish() == b);
      if (b % 200 == 0) w.checkpoint();
    }
    w.flush();
    CHECK_FALSE(w.failed());
  }
  auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options_for(dir, durability::none));
  REQUIRE(w.version() == batches);
  model expected;
  expected.advance_to(batches);
  const std::string diff = lrtest::compare_to_model(r, expected);
  INFO(diff);
  CHECK(diff.empty());
}

}  // namespace LEFTRIGHT_TEST_FILE
