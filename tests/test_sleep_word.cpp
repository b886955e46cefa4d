// SPDX-License-Identifier: Apache-2.0
// detail/sleep_word.hpp, the combining queue's way to sleep on a word: a sleep ends once the word
// moves (no wake-up lost, however the sleep and the bump interleave), a sleep whose word has
// already moved does not start, and a sleep with a timeout ends by itself. Each case bounds its
// waits: a wake-up lost, or a timeout ignored, fails the case instead of hanging it (a sleep
// here never lasts longer than the bound the case gives it).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include <catch2/catch.hpp>
#include <leftright/detail/sleep_word.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using namespace std::chrono_literals;
using leftright::detail::sleep_words;

/// Runs sleep() on a thread of its own; true if it returned within 30 s. If it did not, bumps
/// word (so that the thread ends) and returns false.
template <class Sleep>
bool returns_within_bound(sleep_words& words, std::atomic<std::uint32_t>& word, Sleep sleep) {
  std::atomic<bool> returned{false};
  std::thread t([&] {
    sleep();
    returned.store(true, std::memory_order_release);  // release: pairs with the acquire below
  });
  // acquire: see above
  const bool ended = lrtest::yields_until([&] { return returned.load(std::memory_order_acquire); });
  if (!ended) words.bump(word);
  t.join();
  return ended;
}

}  // namespace

TEST_CASE("sleep_words: a sleep on a word that has moved returns at once", "[sleep_word]") {
  sleep_words words;
  std::atomic<std::uint32_t> word{5};
  // No timeout: a sleep that started would last until the test's bump after 30 s.
  CHECK(returns_within_bound(words, word, [&] { words.wait(word, 4); }));
  CHECK(word.load() == 5);
}

TEST_CASE("sleep_words: a sleep with a timeout ends by itself", "[sleep_word]") {
  sleep_words words;
  std::atomic<std::uint32_t> word{0};
  CHECK(returns_within_bound(words, word, [&] { words.wait(word, 0, 1ms); }));  // nobody bumps the word
  CHECK(word.load() == 0);
}

TEST_CASE("sleep_words: two threads taking turns lose no wake-up", "[sleep_word]") {
  // Ping-pong: each thread waits for the word to reach its turn, without a timeout on the
  // sleep itself, then bumps it. A lost wake-up would leave both asleep; the test's thread
  // notices the turns stop and ends them (a bump for nobody) before failing.
  constexpr std::uint32_t turns = 20000;
  sleep_words words;
  std::atomic<std::uint32_t> word{0};
  std::atomic<bool> stop{false};
  const auto player = [&](std::uint32_t parity) {
    for (;;) {
      const std::uint32_t w = word.load(std::memory_order_seq_cst);  // [W1] as the queue reads it
      if (w >= turns || stop.load(std::memory_order_relaxed)) return;  // relaxed: a plain flag, the bump wakes
      if (w % 2 == parity) {
        words.bump(word);
      } else {
        words.wait(word, w);
      }
    }
  };
  std::thread a(player, 0u), b(player, 1u);
  const bool finished = lrtest::yields_until([&] { return word.load(std::memory_order_seq_cst) >= turns; });  // [W1]
  if (!finished) {
    stop.store(true, std::memory_order_relaxed);  // relaxed: the bump below wakes the sleeper
    words.bump(word);
  }
  a.join();
  b.join();
  CHECK(finished);
  CHECK(word.load() >= turns);
}

TEST_CASE("sleep_words: a bump wakes every sleeper on the word", "[sleep_word]") {
  constexpr int sleepers = 8;
  sleep_words words;
  std::atomic<std::uint32_t> word{0};
  std::atomic<int> asleep{0}, woken{0};
  std::thread ts[sleepers];
  for (std::thread& t : ts) {
    t = std::thread([&] {
      asleep.fetch_add(1, std::memory_order_relaxed);  // relaxed: a count the test waits for
      while (word.load(std::memory_order_seq_cst) == 0) words.wait(word, 0);  // [W1]
      woken.fetch_add(1, std::memory_order_relaxed);  // relaxed: a count
    });
  }
  // relaxed: counts, below too
  REQUIRE(lrtest::yields_until([&] { return asleep.load(std::memory_order_relaxed) == sleepers; }));
  words.bump(word);  // one bump, whether each thread is asleep yet or not
  const bool all = lrtest::yields_until([&] { return woken.load(std::memory_order_relaxed) == sleepers; });
  if (!all) {
    for (int i = 0; i < 1000; ++i) words.bump(word);  // unreachable when correct: let them end
  }
  for (std::thread& t : ts) t.join();
  CHECK(all);
}

}  // namespace LEFTRIGHT_TEST_FILE
