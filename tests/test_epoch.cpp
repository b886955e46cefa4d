// The reader registry (detail/epoch.hpp): slot layout, reuse, and epochs that never go back.
#include <cstdint>
#include <set>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/detail/epoch.hpp>

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
  reader_registry reg;
  reader_slot* a = reg.acquire(false);
  reader_slot* b = reg.acquire(true);
  CHECK(a != b);
  CHECK(b->asymmetric);
  CHECK(reg.capacity() == 2);
  // [T1] relaxed: single-threaded test.
  a->epoch.store(41, std::memory_order_relaxed);
  a->epoch.store(42, std::memory_order_relaxed);  // [T1]
  reg.release(a);
  reader_slot* c = reg.acquire(true);
  CHECK(c == a);
  CHECK(c->asymmetric);
  CHECK(c->nested == 0);
  CHECK(c->epoch.load(std::memory_order_relaxed) == 42);  // [T1]
  CHECK(reg.capacity() == 2);
  reg.release(b);
  reg.release(c);
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
