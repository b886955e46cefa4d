// SPDX-License-Identifier: Apache-2.0
// reader_sync::automatic: readers skip their fence while publishes are rare and fence while they
// are frequent (detail/left_right.hpp, case C8). What the writer reports, what forcing does, the
// rate rule, and reads across every kind of switch.
#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {
using lrtest::automatic_traits;
using lrtest::make_u64_map;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using rate = leftright::detail::fencing_rate;
}  // namespace

TEST_CASE("the rate rule: fence from 8 swaps a millisecond, stop at 2 or fewer, keep the mode between",
          "[fencing]") {
  CHECK(rate::after(8, milliseconds(1), false));
  CHECK(rate::after(80, milliseconds(10), false));
  CHECK(rate::after(1000, microseconds(1500), false));
  CHECK_FALSE(rate::after(7, milliseconds(1), false));
  CHECK(rate::after(7, milliseconds(1), true));  // between: stays
  CHECK(rate::after(3, milliseconds(1), true));
  CHECK_FALSE(rate::after(2, milliseconds(1), true));
  CHECK_FALSE(rate::after(1, std::chrono::hours(5), true));  // a publish after a quiet spell
  CHECK_FALSE(rate::after(30, milliseconds(20), true));      // 1.5 a millisecond
  CHECK(rate::after(100, milliseconds(20), true));           // 5 a millisecond: stays
  CHECK_FALSE(rate::after(100, milliseconds(20), false));
}

TEST_CASE("which modes fence: seq_cst always, asymmetric never, automatic as asked", "[fencing]") {
  auto [ws, rs] = make_u64_map<lrtest::seq_cst_traits>();
  CHECK(ws.readers_fence());
  ws.force_reader_fencing(false);  // no effect
  ws.publish();
  CHECK(ws.readers_fence());

  auto [wa, ra] = make_u64_map<lrtest::asymmetric_traits>();
  const bool membarrier = leftright::detail::membarrier_available();
  CHECK(wa.readers_fence() == !membarrier);
  wa.force_reader_fencing(true);  // no effect
  wa.publish();
  CHECK(wa.readers_fence() == !membarrier);

  auto [w, r] = make_u64_map<automatic_traits>();
  CHECK(w.sync_mode() == (membarrier ? leftright::reader_sync::asymmetric : leftright::reader_sync::seq_cst));
  CHECK(w.readers_fence() == !membarrier);  // nothing published yet: readers do not fence
  w.force_reader_fencing(true);
  CHECK(w.readers_fence() == !membarrier);  // from the next publish on
  w.insert_or_assign(1, 1);
  w.publish();
  CHECK(w.readers_fence());
  CHECK(r.get(1) == 1);
  w.force_reader_fencing(false);
  w.insert_or_assign(1, 2);
  w.publish();
  CHECK(w.readers_fence() == !membarrier);
  CHECK(r.get(1) == 2);
}

TEST_CASE("readers fence during a burst of publishes and stop by themselves once it is over", "[fencing]") {
  if (!leftright::detail::membarrier_available()) {
    SUCCEED("no membarrier here (or ThreadSanitizer): automatic readers always fence");
    return;
  }
  auto [w, r] = make_u64_map<automatic_traits>();
  // A burst, until the rate rule asks readers to fence (bounded, in case it never does).
  const std::uint64_t i = lrtest::publish_until_fencing(w, 0, 100000);
  REQUIRE(w.readers_fence());
  CHECK(r.get(1) == i);
  // Quiet: no publish. Once fencing_rate::quiet has passed since the last publish, a fencing
  // reader takes the tag off at its next check (every 1024 of its fenced entries). The loop
  // waits for the monotonic clock to pass that point by reading; what it asserts does not
  // depend on how fast it gets there. True if every read saw want.
  const auto read_through_quiet = [&r = r](std::uint64_t want) {
    const auto quiet_from = std::chrono::steady_clock::now() + leftright::detail::fencing_rate::quiet;
    bool same = true;
    while (std::chrono::steady_clock::now() <= quiet_from) same = same && r.get(1) == want;
    for (int n = 0; n < 2048; ++n) same = same && r.get(1) == want;
    return same;
  };
  CHECK(read_through_quiet(i));
  CHECK_FALSE(w.readers_fence());
  // The next publish finds the tag gone (its exchange sees it) and goes on from there.
  w.insert_or_assign(1, i + 1);
  w.publish();
  CHECK(r.get(1) == i + 1);
  auto fresh = w.make_reader();
  CHECK(fresh.get(1) == i + 1);
  // Forced fencing is never relaxed by readers.
  w.force_reader_fencing(true);
  w.insert_or_assign(1, i + 2);
  w.publish();
  CHECK(read_through_quiet(i + 2));
  CHECK(w.readers_fence());
  // Back to the rate's choice: after one publish and a quiet spell, readers relax again (the
  // publish reads the clock, whatever the last swaps under the override skipped).
  w.force_reader_fencing(std::nullopt);
  w.insert_or_assign(1, i + 3);
  w.publish();
  CHECK(read_through_quiet(i + 3));
  CHECK_FALSE(w.readers_fence());
}

TEST_CASE("reads stay whole across every switch of the readers' mode, settles and nested guards", "[fencing]") {
  auto [w, r] = make_u64_map<automatic_traits>();
  auto late = std::optional<decltype(w.make_reader())>();
  // Each publish: the two keys equal, the version's value. Modes cycle through every
  // transition: off->on, on->on (no membarrier), on->off, off->off, and the rate's own choice.
  const std::vector<std::optional<bool>> modes{true, true, false, false, true, std::nullopt, true, false};
  w.insert_or_assign(1, 0);
  w.insert_or_assign(2, 0);
  w.publish();
  for (std::uint64_t i = 1; i <= 200; ++i) {
    auto outer = r.read();  // a guard held across this publish: keeps its snapshot
    const std::uint64_t seen = outer.version();
    w.force_reader_fencing(modes[i % modes.size()]);
    w.insert_or_assign(1, i);
    w.insert_or_assign(2, i);
    const std::uint64_t v = w.publish();
    {
      auto nested = r.read();  // nested in outer: the same snapshot, whatever the mode now
      CHECK(nested.version() == seen);
      REQUIRE(nested.find(std::uint64_t{1}) != nullptr);
      CHECK(*nested.find(std::uint64_t{1}) == i - 1);
      CHECK(*nested.find(std::uint64_t{2}) == i - 1);
    }
    { auto done = std::move(outer); }
    if (i % 3 == 0) CHECK(w.try_settle());
    if (i == 50) late.emplace(w.make_reader());  // registered mid-way
    CHECK(r.version() == v);
    CHECK(r.get(1) == i);
    CHECK(r.get(2) == i);
    if (late) CHECK(late->get(1) == i);
  }
}

}  // namespace LEFTRIGHT_TEST_FILE
