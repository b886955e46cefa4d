// SPDX-License-Identifier: Apache-2.0
// Stress: readers registering and leaving while the writer publishes.
//   1. Threads loop making readers (from a factory, by copy, by copy-assignment, by move), read
//      once or twice and drop them, while the writer alternates publish() and try_publish().
//      Every read must see a whole batch (batch b is version b, all 64 keys equal to b), versions
//      never go back per thread, and the registry's slot count stays bounded by the number of
//      readers alive at once, not by the thousands created.
//   2. The writer blocked in publish(), waiting for a guard held by the main thread: another
//      thread registers readers and reads meanwhile (no deadlock; it sees the last published
//      version, and publish() cannot have returned). A guard that thread takes during the wait
//      must not delay that publish (it was not recorded at the previous swap), but the next
//      try_publish must refuse because of it.
//   3. The writer destroyed while reader threads read: readers, factories, copies and a guard
//      held across the destruction stay valid and keep showing the last published batch.
//   4. Thread readers (make_thread_reader) come and go, some in threads that exit at once, while
//      the writer, reading through a thread reader of its own, publishes solo whenever no other
//      thread holds a reader (case C9): every read whole, the writer's own reads current.
// Tests 1 and 3 run with uint64_t values and with lrtest::large values (the shared layout,
// whose nodes the writer frees by reference count, also from its destructor), in both traits.
// Bounded by counts; a watchdog turns a deadlock into a prompt abort. Worker threads record
// failures in a mutex-protected log, asserted after join().
//
// Atomic labels in this file ([T1] is test_support.hpp's):
//   [T2] readers_left (test 1): relaxed; only tells the writer when to stop publishing. The
//        readers' results reach the main thread through join().
//   [T3] publish_started / publish_returned (test 2): release by the writer thread, acquire by
//        the others: a returned version seen means that publish completed (its batch visible).
//   [T4] b_holding / main_checked (test 2): release/acquire handshakes; each orders the
//        signalling thread's guard operations before what the waiting thread does next.
//   [T5] final_published / holding / writer_gone (test 3): release after the last publish,
//        after taking the held guard, after the writer's destruction; acquire by the other
//        side: every read that starts after seeing final_published must show that version.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::failure_log;
using lrtest::watchdog;

namespace {

constexpr std::uint64_t key_count = 64;



/// Entries above max_inline_entry bytes take the shared layout (one node per entry, both copies
/// point at it, freed by writer-only reference counts).
using big = lrtest::large<std::uint64_t>;
static_assert(sizeof(std::pair<const std::uint64_t, big>) >
                  leftright::default_traits::max_inline_entry,
              "big must exercise the shared layout");

template <class V>
V value_of(std::uint64_t batch) {
  if constexpr (std::is_same_v<V, big>) {
    return big(static_cast<long>(batch));
  } else {
    return batch;
  }
}
inline std::uint64_t batch_of(std::uint64_t v) { return v; }
inline std::uint64_t batch_of(const big& v) { return v.inner; }

template <class V, class Traits>
struct churn_config {
  using value = V;
  using traits = Traits;
};
using u64_seq_cst = churn_config<std::uint64_t, lrtest::seq_cst_traits>;
using u64_asymmetric = churn_config<std::uint64_t, lrtest::asymmetric_traits>;
using big_seq_cst = churn_config<big, lrtest::seq_cst_traits>;
using big_asymmetric = churn_config<big, lrtest::asymmetric_traits>;

template <class V, class Traits>
using map_of = decltype(leftright::make_map<std::uint64_t, V, absl::Hash<std::uint64_t>,
                                            std::equal_to<std::uint64_t>, Traits>());
template <class V, class Traits>
map_of<V, Traits> new_map() {
  return leftright::make_map<std::uint64_t, V, absl::Hash<std::uint64_t>,
                             std::equal_to<std::uint64_t>, Traits>();
}

/// Queues batch b: every key set to b.
template <class Writer>
void queue_batch(Writer& w, std::uint64_t b) {
  using V = typename Writer::reader::guard::mapped_type;
  for (std::uint64_t k = 0; k < key_count; ++k) w.insert_or_assign(k, value_of<V>(b));
}

/// Checks one guard: a whole batch equal to its version (0: empty), and no older than the last
/// version this thread saw. Returns the guard's version.
template <class Guard>
std::uint64_t check_guard(const Guard& g, std::uint64_t& last_version, failure_log& log,
                          const char* where) {
  const std::uint64_t ver = g.version();
  if (ver < last_version) log.add(where, ": version went back from ", last_version, " to ", ver);
  last_version = std::max(last_version, ver);
  if (ver == 0) {
    if (!g.empty()) log.add(where, ": version 0 has ", g.size(), " entries");
    return ver;
  }
  if (g.size() != key_count) log.add(where, ": version ", ver, " has ", g.size(), " entries");
  for (std::uint64_t k = 0; k < key_count; ++k) {
    const auto* p = g.find(k);
    if (p == nullptr) {
      log.add(where, ": version ", ver, ": key ", k, " missing");
    } else if (batch_of(*p) != ver) {
      log.add(where, ": version ", ver, ": key ", k, " holds batch ", batch_of(*p));
    }
  }
  return ver;
}

/// Spins (yielding) until pred() holds.
template <class Pred>
void await(Pred pred) {
  while (!pred()) std::this_thread::yield();
}

}  // namespace

TEMPLATE_TEST_CASE("readers come and go while the writer publishes; slots are reused",
                   "[stress][churn]", u64_seq_cst, u64_asymmetric, big_seq_cst, big_asymmetric) {
  using V = typename TestType::value;
  using Traits = typename TestType::traits;
  constexpr int threads = 4;
  constexpr int iterations = 800;
  // Per thread at most 3 readers alive at once: a, b, and the temporary copy that b = a makes
  // before it releases b's old slot.
  constexpr std::size_t alive_per_thread = 3;
  watchdog dog(std::chrono::seconds(120), "reader churn");
  auto m = new_map<V, Traits>();
  auto& [w, r] = m;
  const auto factory = r.factory();
  failure_log log;
  std::atomic<int> readers_left{threads};  // [T2]
  std::vector<long> created(threads, 0);

  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::uint64_t last = 0;
      long n = 0;
      for (int i = 0; i < iterations; ++i) {
        auto a = factory.make_reader();  // registers
        ++n;
        check_guard(a.read(), last, log, "factory reader");
        {
          auto b = a;  // a copy is a new registered reader
          ++n;
          check_guard(b.read(), last, log, "copied reader");
          if (i % 3 == 0) {
            b = a;  // copy-assignment: registers a new slot, releases b's old one
            ++n;
            check_guard(b.read(), last, log, "copy-assigned reader");
          }
          if (i % 5 == 0) {
            auto c = std::move(b);  // a move keeps the slot
            const auto g1 = c.read();
            const auto g2 = c.read();  // nested: the same snapshot
            const std::uint64_t v1 = check_guard(g1, last, log, "moved reader");
            if (g2.version() != v1) log.add("nested guard: version ", g2.version(), " != ", v1);
          }
        }
        if (i % 7 == 0) {
          auto d = a.factory().make_reader();  // a factory from a reader
          ++n;
          if (d.sync_mode() != a.sync_mode()) log.add("sync_mode differs between readers");
          check_guard(d.read(), last, log, "reader's factory reader");
        }
        // Outside any guard: on a machine with fewer cores than threads, a reader preempted
        // inside a guard stalls the writer's next publish for a time slice.
        std::this_thread::yield();
      }
      created[static_cast<std::size_t>(t)] = n;
      readers_left.fetch_sub(1, std::memory_order_relaxed);  // [T2] relaxed: only stops the writer
    });
  }

  // The writer: this thread. Alternates publish() and try_publish(); a refused batch stays
  // queued and goes out with the next call, so batch b is always published as version b.
  // An exception is recorded, not propagated, so the workers are still joined.
  long publishes = 0, tries = 0, refusals = 0;
  try {
    for (long i = 0; readers_left.load(std::memory_order_relaxed) > 0; ++i) {  // [T2] relaxed
      const std::uint64_t next = w.version() + 1;
      if (w.pending() == 0) queue_batch(w, next);
      if (i % 2 == 0) {
        const std::uint64_t v = w.publish();
        if (v != next) log.add("publish returned ", v, ", expected ", next);
        ++publishes;
      } else if (w.try_publish()) {
        ++tries;
      } else {
        ++refusals;
        if (w.version() != next - 1 || w.pending() != key_count) log.add("refusal changed state");
      }
    }
  } catch (const std::exception& e) {
    log.add("the writer threw: ", e.what());
    await([&] { return readers_left.load(std::memory_order_relaxed) == 0; });  // [T2] relaxed
  }
  for (std::thread& th : workers) th.join();

  long total_created = 0;
  for (long n : created) total_created += n;
  const std::size_t slots = w.reader_slots();
  INFO("publishes " << publishes << ", try_publish successes " << tries << ", refusals " << refusals
                    << ", readers created " << total_created << ", slots " << slots);
  INFO(log.summary());
  CHECK(log.count() == 0);
  // Deterministic: every iteration makes a, b, and sometimes b = a and d.
  constexpr long per_thread = 2L * iterations + (iterations + 2) / 3 + (iterations + 6) / 7;
  CHECK(total_created == threads * per_thread);
  // Slots are reused: bounded by readers alive at once (plus r), not by readers created.
  CHECK(slots <= threads * alive_per_thread + 1);
  CHECK(r.version() == w.version());
}

// Solo swaps (detail/left_right.hpp, case C9): the writer reads through a thread reader of its
// own and no handle reader is left, so its swaps skip the membarrier whenever no other thread
// holds a reader; the workers make thread readers (some in threads that exit at once) and read,
// so swaps keep switching between solo and not while registrations race with them.
TEMPLATE_TEST_CASE("thread readers come and go while a writer reading through its own publishes solo",
                   "[stress][churn]", u64_seq_cst, u64_asymmetric, big_asymmetric) {
  using V = typename TestType::value;
  using Traits = typename TestType::traits;
  constexpr int threads = 3;
  constexpr int iterations = 600;
  watchdog dog(std::chrono::seconds(120), "thread reader churn");
  auto m = new_map<V, Traits>();
  auto& [w, r] = m;
  const auto factory = r.factory();
  { auto gone = std::move(r); }  // no handle reader: the writer's swaps may be solo
  auto own = w.make_thread_reader();
  failure_log log;
  std::atomic<int> readers_left{threads};  // [T2]
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      std::uint64_t last = 0;
      for (int i = 0; i < iterations; ++i) {
        if (i % 10 == 0) {
          // A thread that lives for one read: its reader is released at its exit.
          std::thread([&, last]() mutable {
            auto once = factory.make_thread_reader();
            check_guard(once.read(), last, log, "short-lived thread's reader");
          }).join();
        } else {
          auto a = factory.make_thread_reader();
          check_guard(a.read(), last, log, "thread reader");
          if (i % 3 == 0) check_guard(a.read(), last, log, "thread reader, again");
        }
        std::this_thread::yield();  // outside any guard (see the test above)
      }
      readers_left.fetch_sub(1, std::memory_order_relaxed);  // [T2] relaxed: only stops the writer
    });
  }
  long publishes = 0;
  std::uint64_t own_last = 0;
  try {
    while (readers_left.load(std::memory_order_relaxed) > 0) {  // [T2] relaxed
      const std::uint64_t next = w.version() + 1;
      queue_batch(w, next);
      if (w.publish() != next) log.add("publish did not return ", next);
      ++publishes;
      if (check_guard(own.read(), own_last, log, "the writer's own reader") != next) {
        log.add("the writer's own reader missed version ", next);
      }
      if (publishes % 4 == 0) w.try_settle();
    }
  } catch (const std::exception& e) {
    log.add("the writer threw: ", e.what());
    await([&] { return readers_left.load(std::memory_order_relaxed) == 0; });  // [T2] relaxed
  }
  for (std::thread& th : workers) th.join();
  INFO("publishes " << publishes << ", solo swaps " << w.solo_swaps());
  INFO(log.summary());
  CHECK(log.count() == 0);
  if (w.sync_mode() == leftright::reader_sync::seq_cst) CHECK(w.solo_swaps() == 0);
}

TEMPLATE_TEST_CASE("a writer blocked in publish() blocks no reader, and waits only for the "
                   "readers recorded at the previous swap",
                   "[stress][churn]", lrtest::seq_cst_traits, lrtest::asymmetric_traits) {
  watchdog dog(std::chrono::seconds(120), "blocked writer");
  auto m = new_map<std::uint64_t, TestType>();
  auto& w = m.first;  // not a binding: the writer thread's lambda captures it (clang 14 cannot)
  auto& r = m.second;
  const auto factory = r.factory();
  failure_log log;

  queue_batch(w, 1);
  REQUIRE(w.publish() == 1);
  auto ra = factory.make_reader();
  std::optional<decltype(ra.read())> ga(ra.read());  // thread A (this one) holds version 1
  queue_batch(w, 2);
  REQUIRE(w.publish() == 2);  // does not wait for ga; records it (ga is inside the retired copy)
  queue_batch(w, 3);
  REQUIRE_FALSE(w.try_publish());  // ga is recorded and still inside
  REQUIRE(w.version() == 2);
  REQUIRE(w.pending() == key_count);

  std::atomic<bool> publish_started{false};         // [T3]
  std::atomic<std::uint64_t> publish_returned{0};  // [T3] 0: not yet
  std::atomic<bool> b_holding{false};              // [T4]
  std::atomic<bool> main_checked{false};           // [T4]

  // The writer moves to its own thread for the blocking publish (one thread at a time uses it).
  std::thread writer([&] {
    publish_started.store(true, std::memory_order_release);  // [T3] release
    std::uint64_t v = 0;
    try {
      v = w.publish();  // waits for ga
    } catch (const std::exception& e) {
      log.add("the blocked publish threw: ", e.what());
      v = 1000;  // still release B, which waits for a returned publish
    }
    publish_returned.store(v, std::memory_order_release);  // [T3] release
  });

  // Thread B: registers and reads while the writer waits.
  long b_reads = 0;
  std::thread b([&] {
    await([&] { return publish_started.load(std::memory_order_acquire); });  // [T3] acquire
    // Not needed for correctness, only to make it likely the writer is inside its wait loop.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::uint64_t last = 0;
    for (int i = 0; i < 300; ++i) {
      auto rd = factory.make_reader();
      auto copy = rd;
      const auto g = copy.read();
      if (check_guard(g, last, log, "B while blocked") != 2) {
        log.add("B saw version ", g.version(), " while publish 3 was blocked");
      }
      if (rd.get(std::uint64_t{5}) != std::optional<std::uint64_t>(2)) log.add("B: get(5) != 2");
      ++b_reads;
    }
    // [T3] acquire: a returned publish here would have ignored ga.
    if (publish_returned.load(std::memory_order_acquire) != 0) {
      log.add("publish returned while a recorded guard was still held");
    }
    // Take a guard during the wait: the blocked publish did not record it, so must not wait for it.
    auto rb = factory.make_reader();
    {
      const auto gb = rb.read();
      if (check_guard(gb, last, log, "B's held guard") != 2) log.add("gb not version 2");
      b_holding.store(true, std::memory_order_release);  // [T4] release
      // [T3] acquire: pairs with the writer's release; then batch 3 is visible to new reads.
      await([&] { return publish_returned.load(std::memory_order_acquire) != 0; });
      if (check_guard(gb, last, log, "B's held guard after publish 3") != 2) {
        log.add("gb changed under B's feet");
      }
      std::uint64_t fresh_last = 0;
      const auto fresh = factory.make_reader();
      if (check_guard(fresh.read(), fresh_last, log, "fresh after publish 3") != 3) {
        log.add("a fresh reader after publish 3 does not see version 3");
      }
      // [T4] acquire: pairs with the main thread's release after its try_publish check.
      await([&] { return main_checked.load(std::memory_order_acquire); });
    }
    ++b_reads;
  });

  // [T4] acquire: pairs with B's release; B's guard is now taken.
  await([&] { return b_holding.load(std::memory_order_acquire); });
  // [T3] acquire: ga is still held, so publish 3 cannot have returned.
  const bool returned_early = publish_returned.load(std::memory_order_acquire) != 0;
  std::uint64_t a_last = 0;
  const std::uint64_t a_version = check_guard(*ga, a_last, log, "A's guard");
  ga.reset();  // A leaves: the blocked publish may go on
  writer.join();
  // [T3] acquire (after join the order is already given; the load just reads the value).
  const std::uint64_t returned = publish_returned.load(std::memory_order_acquire);
  // The writer is back on this thread. gb was inside at publish 3's swap: recorded.
  queue_batch(w, 4);
  bool refused_for_gb = false;
  try {
    refused_for_gb = !w.try_publish();
  } catch (const std::exception& e) {
    log.add("try_publish threw: ", e.what());
  }
  const std::uint64_t version_after_refusal = w.version();
  main_checked.store(true, std::memory_order_release);  // [T4] release: B may drop gb now
  b.join();
  const bool published_after_b = w.try_publish();  // gb has left

  INFO(log.summary());
  CHECK(log.count() == 0);
  CHECK_FALSE(returned_early);
  CHECK(a_version == 1);
  CHECK(returned == 3);
  CHECK(refused_for_gb);
  CHECK(version_after_refusal == 3);
  CHECK(b_reads == 301);
  CHECK(published_after_b);
  CHECK(w.version() == 4);
  CHECK(r.get(std::uint64_t{63}) == std::optional<std::uint64_t>(4));
}

TEMPLATE_TEST_CASE("readers, factories and guards outlive a writer destroyed while they read",
                   "[stress][churn][lifetime]", u64_seq_cst, u64_asymmetric, big_seq_cst,
                   big_asymmetric) {
  using V = typename TestType::value;
  using Traits = typename TestType::traits;
  constexpr int threads = 3;
  constexpr std::uint64_t batches = 1000;
  constexpr int reads_after = 300;  // each thread's reads after it saw the writer gone
  watchdog dog(std::chrono::seconds(120), "writer destroyed");
  using writer_type = typename map_of<V, Traits>::first_type;
  auto m = new_map<V, Traits>();
  std::optional<writer_type> w(std::move(m.first));
  auto r = std::move(m.second);
  const auto factory = r.factory();
  failure_log log;
  std::atomic<std::uint64_t> final_published{0};  // [T5] 0: still publishing
  std::atomic<bool> holding{false};                // [T5]
  std::atomic<bool> writer_gone{false};            // [T5]

  queue_batch(*w, 1);
  w->publish();

  std::vector<std::thread> readers;
  for (int t = 0; t < threads; ++t) {
    readers.emplace_back([&, t] {
      auto rd = factory.make_reader();
      std::uint64_t last = 0;
      auto held_reader = factory.make_reader();  // declared first: outlives its guard
      std::optional<decltype(rd.read())> held;    // thread 0 holds one across the destruction
      int after = 0;
      for (long i = 0; after < reads_after; ++i) {
        const bool gone = writer_gone.load(std::memory_order_acquire);  // [T5] acquire
        const std::uint64_t fin = final_published.load(std::memory_order_acquire);  // [T5] acquire
        const std::uint64_t v = check_guard(rd.read(), last, log, "reader");
        if (fin != 0 && v != fin) log.add("read version ", v, " after the final ", fin);
        if (i % 10 == 0) {
          auto copy = rd;  // copies and new readers, also after the writer is gone
          auto fresh = factory.make_reader();
          const std::uint64_t vc = check_guard(copy.read(), last, log, "copy");
          const std::uint64_t vf = check_guard(fresh.read(), last, log, "fresh");
          if (fin != 0 && (vc != fin || vf != fin)) log.add("copy/fresh saw an old version");
        }
        if (t == 0 && fin != 0 && !held) {
          held.emplace(held_reader.read());  // version fin; no publish follows to wait for it
          holding.store(true, std::memory_order_release);  // [T5] release: pairs with main
        }
        if (gone) {
          if (held) {
            std::uint64_t held_last = 0;
            if (check_guard(*held, held_last, log, "held across destruction") != fin) {
              log.add("the guard held across the writer's destruction changed");
            }
            if (after + 1 == reads_after) held.reset();
          }
          ++after;
        }
        // Outside any guard but `held`: on a machine with fewer cores than threads, a reader
        // preempted inside a guard stalls the writer's next publish for a time slice.
        std::this_thread::yield();
      }
    });
  }

  try {
    for (std::uint64_t b = 2; b <= batches; ++b) {
      queue_batch(*w, b);
      if (w->publish() != b) log.add("publish of batch ", b, " returned another version");
    }
  } catch (const std::exception& e) {
    log.add("the writer threw: ", e.what());
  }
  queue_batch(*w, batches + 1);  // queued, never published: dies with the writer
  // [T5] release: the last publish happened-before any read that sees this.
  final_published.store(batches, std::memory_order_release);
  // [T5] acquire: pairs with thread 0's release; its guard is taken.
  await([&] { return holding.load(std::memory_order_acquire); });
  auto main_guard = r.read();
  w.reset();  // the writer is destroyed while the readers read and two guards are held
  writer_gone.store(true, std::memory_order_release);  // [T5] release
  std::uint64_t main_last = 0;
  const std::uint64_t main_version = check_guard(main_guard, main_last, log, "main guard");
  for (std::thread& th : readers) th.join();

  INFO(log.summary());
  CHECK(log.count() == 0);
  CHECK(main_version == batches);
  // Handles made before and after the destruction all still work.
  auto late = factory.make_reader();
  CHECK(late.version() == batches);
  CHECK(late.get(std::uint64_t{0}) == std::optional<V>(value_of<V>(batches)));
  CHECK(r.version() == batches);  // nested in main_guard: its snapshot, the same
  auto copy = r;
  CHECK(copy.size() == key_count);
  CHECK(copy.get(std::uint64_t{key_count - 1}) == std::optional<V>(value_of<V>(batches)));
}

}  // namespace LEFTRIGHT_TEST_FILE
