// SPDX-License-Identifier: Apache-2.0
// Stress: no reader ever sees a torn batch. One writer publishes batches; batch b sets the same
// 64 keys to b and is published as version b (the b-th publish of a fresh map). Reader threads
// check, inside each guard, that
//   - version 0 is the empty map, and a guard of version v >= 1 holds all 64 keys, all equal to
//     each other (no torn batch) and equal to v (batch b is version b, exactly);
//   - the versions one reader observes never go backwards;
// and in the get() variant (one guard per key) that every value a thread reads is >= every value
// it read before (each read starts after the previous one, so it sees the same or a later
// version), that a key never disappears once seen, and that no value is out of range.
// Variants: the writer uses publish(); or try_publish() with a fallback to publish() after K
// consecutive refusals (a refusal must change nothing); or publish() and then try_settle(), with
// automatic readers asked to fence or not in a cycle that takes every switch (detail/
// left_right.hpp, case C8) as well as left to the publish rate. All three traits types; values of type
// uint64_t, std::string (on the heap) and lrtest::large (the shared layout: one node per entry,
// shared by both copies, freed by writer-only reference counts; ASan sees a premature free).
//
// Bounded by a batch count or a short time, whichever ends first; pass/fail does not depend on
// how far it got. Worker threads record failures in a mutex-protected log, asserted after join().
//
// Atomic labels in this file ([T1] is test_support.hpp's):
//   [T2] done flag: relaxed, only ends the readers' loops; their results reach the main thread
//        through join().
#include <algorithm>
#include <array>
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
constexpr std::uint64_t max_batches = 20000;
constexpr auto time_budget = std::chrono::milliseconds(250);  // per run
constexpr int reader_threads = 3;
constexpr int try_limit = 8;  // consecutive try_publish refusals before falling back to publish



/// Entries above max_inline_entry bytes take the shared layout (one node per entry, both copies
/// point at it, freed by writer-only reference counts).
using big = lrtest::large<std::uint64_t>;
static_assert(sizeof(std::pair<const std::uint64_t, big>) >
                  leftright::default_traits::max_inline_entry,
              "big must exercise the shared layout");

template <class V>
V value_of(std::uint64_t batch) {
  if constexpr (std::is_same_v<V, std::string>) {
    return std::to_string(batch) + std::string(24, '.');  // long enough to live on the heap
  } else if constexpr (std::is_same_v<V, big>) {
    return big(static_cast<long>(batch));
  } else {
    return batch;
  }
}
template <class V>
std::uint64_t batch_of(const V& v) {
  if constexpr (std::is_same_v<V, std::string>) {
    return std::stoull(v);
  } else if constexpr (std::is_same_v<V, big>) {
    return v.inner;
  } else {
    return v;
  }
}

template <class V, class Traits>
struct torn_config {
  using value = V;
  using traits = Traits;
};
using u64_seq_cst = torn_config<std::uint64_t, lrtest::seq_cst_traits>;
using u64_asymmetric = torn_config<std::uint64_t, lrtest::asymmetric_traits>;
using string_seq_cst = torn_config<std::string, lrtest::seq_cst_traits>;
using string_asymmetric = torn_config<std::string, lrtest::asymmetric_traits>;
using big_seq_cst = torn_config<big, lrtest::seq_cst_traits>;
using big_asymmetric = torn_config<big, lrtest::asymmetric_traits>;
using lrtest::automatic_traits;
using u64_automatic = torn_config<std::uint64_t, automatic_traits>;
using string_automatic = torn_config<std::string, automatic_traits>;
using big_automatic = torn_config<big, automatic_traits>;

enum class writer_mode { publish, try_publish, switching };
enum class reader_mode { guard, get };

/// Checks one guard: a whole batch, equal to its version, and no older than the last one seen.
/// Two passes (lookups, then iteration) and a final re-check, so the guard is held long enough
/// for a writer that wrongly wrote this copy meanwhile to show up as a torn or changed batch.
template <class Guard>
void check_guard(const Guard& g, std::uint64_t& last_version, failure_log& log) {
  using V = typename Guard::mapped_type;
  const std::uint64_t ver = g.version();
  if (ver < last_version) log.add("version went back from ", last_version, " to ", ver);
  last_version = std::max(last_version, ver);
  if (ver == 0) {
    if (!g.empty()) log.add("version 0 has ", g.size(), " entries");
    return;
  }
  if (g.size() != key_count) log.add("version ", ver, " has ", g.size(), " entries");
  const V* first = g.find(std::uint64_t{0});
  if (first == nullptr) {
    log.add("version ", ver, ": key 0 missing");
    return;
  }
  const V expected = *first;  // a copy: the batch this guard must show throughout
  if (batch_of(expected) != ver) log.add("version ", ver, " holds batch ", batch_of(expected));
  for (std::uint64_t k = 1; k < key_count; ++k) {
    const V* p = g.find(k);
    if (p == nullptr) {
      log.add("version ", ver, ": key ", k, " missing");
    } else if (!(*p == expected)) {
      log.add("torn batch in version ", ver, ": key 0 = ", batch_of(expected), ", key ", k, " = ",
              batch_of(*p));
    }
  }
  std::uint64_t iterated = 0;
  for (const auto& [k, v] : g) {
    ++iterated;
    if (!(v == expected)) {
      log.add("torn batch in version ", ver, " (iterating): key 0 = ", batch_of(expected), ", key ",
              k, " = ", batch_of(v));
    }
  }
  if (iterated != key_count) log.add("version ", ver, ": iterated ", iterated, " entries");
  if (g.version() != ver || !(*first == expected)) {
    log.add("version ", ver, " changed while the guard was held");
  }
}

/// A reader thread in reader_mode::guard: checks whole guards until done; returns how many.
template <class Reader>
long read_guards(const Reader& rd, failure_log& log, const std::atomic<bool>& done) {
  long n = 0;
  std::uint64_t last_version = 0;
  do {
    const auto g = rd.read();
    check_guard(g, last_version, log);
    ++n;
    // Outside the guard: on a machine with fewer cores than threads, a reader preempted
    // inside a guard stalls the writer's next publish for a time slice.
    if (n % 8 == 0) std::this_thread::yield();
  } while (!done.load(std::memory_order_relaxed));  // [T2] relaxed: only ends the loop
  return n;
}

/// A reader thread in reader_mode::get: every key read with get(), in another order each round,
/// until done; no key's batch may go back, nor fall behind a batch already read. Returns the
/// rounds.
template <class Reader>
long read_keys(const Reader& rd, int thread, failure_log& log, const std::atomic<bool>& done) {
  long n = 0;
  std::array<std::uint64_t, key_count> last{};  // per key, 0 = not seen yet
  std::uint64_t max_seen = 0;                   // over all keys
  do {
    // A different key order each round, so no key is always read first.
    // An odd stride: a permutation of the keys.
    const std::uint64_t stride = 2 * static_cast<std::uint64_t>(n % 16) + 1;
    for (std::uint64_t i = 0; i < key_count; ++i) {
      const std::uint64_t k = (i * stride + static_cast<std::uint64_t>(thread)) % key_count;
      const auto v = rd.get(k);
      if (!v.has_value()) {
        if (max_seen != 0) log.add("key ", k, " missing after batch ", max_seen, " was seen");
        continue;
      }
      const std::uint64_t b = batch_of(*v);
      if (b == 0 || b > max_batches) log.add("key ", k, " holds impossible batch ", b);
      if (b < last[k]) log.add("key ", k, " went back from batch ", last[k], " to ", b);
      if (b < max_seen) log.add("key ", k, " read batch ", b, " after batch ", max_seen);
      last[k] = std::max(last[k], b);
      max_seen = std::max(max_seen, b);
    }
    const std::uint64_t ver = rd.version();
    if (ver < max_seen) log.add("version() ", ver, " after batch ", max_seen, " was read");
    ++n;
    std::this_thread::yield();
  } while (!done.load(std::memory_order_relaxed));  // [T2] relaxed: only ends the loop
  return n;
}

/// How the writer's try_publish calls went (writer_mode::try_publish).
struct try_counts {
  long refusals = 0;
  long fallbacks = 0;
};

/// Publishes batch b, queued on w, the way wmode says, and checks the version it got.
template <class Writer>
void publish_batch(Writer& w, std::uint64_t b, writer_mode wmode, failure_log& log, try_counts& tries) {
  if (wmode == writer_mode::publish) {
    const std::uint64_t v = w.publish();
    if (v != b) log.add("publish of batch ", b, " returned version ", v);
  } else if (wmode == writer_mode::switching) {
    // on, on, off, off, the rate's choice: every transition, and runs without a membarrier.
    constexpr std::optional<bool> cycle[] = {true, true, false, false, std::nullopt};
    w.force_reader_fencing(cycle[b % 5]);
    const std::uint64_t v = w.publish();
    if (v != b) log.add("publish of batch ", b, " returned version ", v);
    if (w.try_settle() && w.version() != b) log.add("a settle changed the version to ", w.version());
  } else {
    for (int refused = 0;; ++refused) {
      if (w.try_publish()) break;
      ++tries.refusals;
      if (w.version() != b - 1 || w.pending() != key_count) {
        log.add("a refused try_publish changed the writer: version ", w.version(), ", pending ", w.pending(),
                " (batch ", b, ")");
      }
      if (refused + 1 == try_limit) {
        const std::uint64_t v = w.publish();
        if (v != b) log.add("fallback publish of batch ", b, " returned version ", v);
        ++tries.fallbacks;
        break;
      }
      std::this_thread::yield();
    }
  }
  if (w.version() != b) log.add("after batch ", b, " the writer reports version ", w.version());
}

/// Readers (reader_threads of them, in rmode) check every snapshot while this thread writes
/// batches, each setting every key to the batch's number, for time_budget or max_batches.
template <class V, class Traits>
void run_torn_batch(writer_mode wmode, reader_mode rmode) {
  watchdog dog(std::chrono::seconds(120), "stress_torn_batch");
  auto [w, r] = leftright::make_map<std::uint64_t, V, absl::Hash<std::uint64_t>,
                                    std::equal_to<std::uint64_t>, Traits>();
  const auto factory = r.factory();
  failure_log log;
  std::atomic<bool> done{false};  // [T2]
  std::vector<long> reads(reader_threads, 0);

  std::vector<std::thread> readers;
  for (int t = 0; t < reader_threads; ++t) {
    readers.emplace_back([&, t] {
      const auto rd = factory.make_reader();
      reads[static_cast<std::size_t>(t)] = rmode == reader_mode::guard ? read_guards(rd, log, done)
                                                                       : read_keys(rd, t, log, done);
    });
  }

  // The writer: this thread.
  // An exception (say, verify_copies finding the copies differ) is recorded, not propagated,
  // so the readers are still stopped and joined.
  const auto deadline = std::chrono::steady_clock::now() + time_budget;
  std::uint64_t batches = 0;
  try_counts tries;
  try {
    for (std::uint64_t b = 1; b <= max_batches && std::chrono::steady_clock::now() < deadline; ++b) {
      for (std::uint64_t k = 0; k < key_count; ++k) w.insert_or_assign(k, value_of<V>(b));
      publish_batch(w, b, wmode, log, tries);
      batches = b;
    }
  } catch (const std::exception& e) {
    log.add("the writer threw after batch ", batches, ": ", e.what());
  }
  done.store(true, std::memory_order_relaxed);  // [T2] relaxed: only ends the readers' loops
  for (std::thread& th : readers) th.join();

  std::ostringstream rounds;
  for (long n : reads) rounds << ' ' << n;
  INFO("batches " << batches << ", try_publish refusals " << tries.refusals << ", fallbacks " << tries.fallbacks
                  << ", reader rounds:" << rounds.str());
  INFO(log.summary());
  CHECK(log.count() == 0);
  CHECK(batches >= 1);
  for (long n : reads) CHECK(n >= 1);
  // After the run the state is the last batch, for old and new readers alike.
  CHECK(r.version() == batches);
  CHECK(factory.make_reader().get(std::uint64_t{key_count - 1}).value() == value_of<V>(batches));
  // r and one per thread at most (a thread may finish before a late one registers); the check
  // reader above reused a freed slot.
  CHECK(w.reader_slots() <= 1 + reader_threads);
}

}  // namespace

TEMPLATE_TEST_CASE("readers never see a torn batch (publish)", "[stress][torn]", u64_seq_cst,
                   u64_asymmetric, string_seq_cst, string_asymmetric, big_seq_cst, big_asymmetric) {
  run_torn_batch<typename TestType::value, typename TestType::traits>(writer_mode::publish,
                                                                      reader_mode::guard);
}

TEMPLATE_TEST_CASE("readers never see a torn batch (try_publish, falling back to publish)",
                   "[stress][torn]", u64_seq_cst, u64_asymmetric, string_seq_cst,
                   string_asymmetric, big_seq_cst, big_asymmetric) {
  run_torn_batch<typename TestType::value, typename TestType::traits>(writer_mode::try_publish,
                                                                      reader_mode::guard);
}

TEMPLATE_TEST_CASE("readers never see a torn batch (publish, settle, switching the readers' fence)",
                   "[stress][torn]", u64_automatic, string_automatic, big_automatic, u64_asymmetric) {
  run_torn_batch<typename TestType::value, typename TestType::traits>(writer_mode::switching,
                                                                      reader_mode::guard);
  run_torn_batch<typename TestType::value, typename TestType::traits>(writer_mode::switching,
                                                                      reader_mode::get);
}

TEMPLATE_TEST_CASE("single-key gets see values that never go back", "[stress][torn]", u64_seq_cst,
                   u64_asymmetric, string_seq_cst, string_asymmetric, big_seq_cst, big_asymmetric) {
  run_torn_batch<typename TestType::value, typename TestType::traits>(writer_mode::publish,
                                                                      reader_mode::get);
  run_torn_batch<typename TestType::value, typename TestType::traits>(writer_mode::try_publish,
                                                                      reader_mode::get);
}

}  // namespace LEFTRIGHT_TEST_FILE
