// SPDX-License-Identifier: Apache-2.0
// The reader registry (detail/epoch.hpp): slot layout, reuse, and epochs that never go back.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstdint>
#include <set>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/detail/epoch.hpp>
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using leftright::detail::cache_line;
using leftright::detail::reader_registry;
using leftright::detail::reader_slot;

TEST_CASE("every slot sits on a cache line of its own", "[registry]") {
  reader_registry reg;
  std::vector<reader_slot*> slots;
  for (int i = 0; i < 16; ++i) slots.push_back(reg.acquire(false));
  for (reader_slot* s : slots) CHECK(reinterpret_cast<std::uintptr_t>(s) % cache_line == 0);
  for (reader_slot* s : slots) reg.release(s);
}

TEST_CASE("released slots are reused, and their epoch is never reset", "[registry]") {
  using leftright::detail::epoch_word;
  reader_registry reg;
  reader_slot* a = reg.acquire(false);
  reader_slot* b = reg.acquire(true);
  CHECK(a != b);
  CHECK_FALSE(a->asymmetric());
  CHECK(b->asymmetric());
  CHECK(reg.capacity() == 2);
  // [T1] relaxed: single-threaded test. Two reads done (generation 2), outside, fenced.
  const std::uint64_t done = 2 * epoch_word::generation_unit;
  a->epoch.store(done + epoch_word::fenced, std::memory_order_relaxed);
  reg.release(a);
  reader_slot* c = reg.acquire(true);
  CHECK(c == a);
  CHECK(c->asymmetric());  // the fenced bit follows the new owner ...
  CHECK(c->epoch.load(std::memory_order_relaxed) == done);  // [T1] ... the generation goes on
  CHECK(reg.capacity() == 2);
  reg.release(b);
  reg.release(c);
}

TEST_CASE("a recorded read is left only when its last guard is gone, or the generation moved", "[registry]") {
  using leftright::detail::epoch_word;
  constexpr std::uint64_t g = epoch_word::generation_unit;
  constexpr std::uint64_t one = epoch_word::guard_unit;
  const std::uint64_t seen = 5 * g + one;  // inside, one guard alive
  CHECK(epoch_word::inside(seen));
  CHECK_FALSE(epoch_word::left_since(seen, seen));
  CHECK_FALSE(epoch_word::left_since(seen + one, seen));                 // a nested guard came
  CHECK_FALSE(epoch_word::left_since(seen + one - one, seen));           // and left again
  CHECK(epoch_word::left_since(seen - one, seen));                       // the read ended
  CHECK(epoch_word::left_since(seen - one + epoch_word::enter_read, seen));        // a later read
  CHECK(epoch_word::left_since(seen - one + epoch_word::enter_read + one, seen));  // a later one, nested
  CHECK_FALSE(epoch_word::left_since(seen | epoch_word::fenced, seen));  // the mode bit is not a move
  const std::uint64_t top = ~std::uint64_t{0} - (g - 1) + one;           // the last generation, inside
  CHECK(epoch_word::left_since(top - one + epoch_word::enter_read, top));  // the generation wraps to 0
  CHECK(((top - one + epoch_word::enter_read) >> 30) == 0);
  CHECK_FALSE(epoch_word::inside(epoch_word::fenced));
  CHECK(epoch_word::can_nest(seen));
  CHECK_FALSE(epoch_word::can_nest(seen | epoch_word::count_mask));
}

TEST_CASE("for_each visits every slot ever registered, live or free", "[registry]") {
  reader_registry reg;
  std::vector<reader_slot*> live;
  for (int i = 0; i < 10; ++i) live.push_back(reg.acquire(false));
  reg.release(live[3]);
  reg.release(live[7]);
  std::set<reader_slot*> seen;
  reg.for_each([&](reader_slot& s) { seen.insert(&s); });
  CHECK(seen == std::set<reader_slot*>(live.begin(), live.end()));
  for (int i = 0; i < 10; ++i) {
    if (i != 3 && i != 7) reg.release(live[static_cast<std::size_t>(i)]);
  }
}

}  // namespace LEFTRIGHT_TEST_FILE
