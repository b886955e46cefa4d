// SPDX-License-Identifier: Apache-2.0
// Randomized model test (after evmap's): a seeded random sequence of writer operations, checked
// against two std::map models.
//   pending   - updated on every queued operation: what readers will see after the next publish
//               (discard() resets it to the published model);
//   published - updated only when a publish succeeds: what every read must show, exactly.
// After every step a reader iterates a guard and must see exactly the published model, with the
// version equal to the number of publishes so far. Sometimes a guard is held across a publish:
// it must keep showing the old model (and so must a nested guard on the same reader) while a
// fresh reader sees the new one; and a try_publish() while that guard is still recorded must
// refuse and change nothing. Both copies are compared at every publish (verify_copies in both
// traits: the writer throws std::logic_error if they differ).
//
// Single-threaded: no atomics here. The seed is printed; LEFTRIGHT_SEED=<seed> replays it.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::make;

namespace {

template <class K, class V, class Traits>
struct model_config {
  using key = K;
  using value = V;
  using traits = Traits;
};
using u64_u64_seq_cst = model_config<std::uint64_t, std::uint64_t, lrtest::seq_cst_traits>;
using u64_u64_asymmetric = model_config<std::uint64_t, std::uint64_t, lrtest::asymmetric_traits>;
using string_string_seq_cst = model_config<std::string, std::string, lrtest::seq_cst_traits>;
using string_string_asymmetric = model_config<std::string, std::string, lrtest::asymmetric_traits>;
using int_string_seq_cst = model_config<int, std::string, lrtest::seq_cst_traits>;
using int_string_asymmetric = model_config<int, std::string, lrtest::asymmetric_traits>;
// Entries above max_inline_entry bytes: the shared layout (one node per entry, both copies point
// at it, freed by writer-only reference counts).
using big = lrtest::large<std::uint64_t>;
using u64_big_seq_cst = model_config<std::uint64_t, big, lrtest::seq_cst_traits>;
using string_big_asymmetric = model_config<std::string, big, lrtest::asymmetric_traits>;
constexpr std::size_t max_inline = leftright::default_traits::max_inline_entry;
static_assert(sizeof(std::pair<const std::uint64_t, big>) > max_inline &&
                  sizeof(std::pair<const std::string, big>) > max_inline,
              "the big configurations must exercise the shared layout");

constexpr long key_space = 64;     // small, so operations collide
constexpr long value_space = 1000;
constexpr int steps = 3000;

/// The integer a key or value was made from (the inverse of lrtest::make). Pure.
template <class T>
long num(const T& x) {
  if constexpr (std::is_same_v<T, std::string>) {
    return std::stol(x.substr(1));  // "k<digits>xxx..."
  } else if constexpr (requires { x.inner; }) {
    return num(x.inner);  // lrtest::large
  } else {
    return static_cast<long>(x);
  }
}

/// Printable form of a key or value, for failure messages.
template <class T>
std::string show(const T& x) {
  if constexpr (std::is_same_v<T, std::string>) {
    return '"' + x + '"';
  } else {
    return std::to_string(num(x));
  }
}

/// Empty if the guard shows exactly `expect` (through iteration, size() and find()), else a
/// description of the first difference.
template <class Guard, class Model>
std::string difference(const Guard& g, const Model& expect) {
  std::ostringstream out;
  Model seen;
  std::size_t iterated = 0;
  for (const auto& [k, v] : g) {
    ++iterated;
    if (!seen.emplace(k, v).second) {
      out << "key " << show(k) << " iterated twice";
      return out.str();
    }
  }
  if (iterated != g.size()) {
    out << "iterated " << iterated << " entries but size() is " << g.size();
    return out.str();
  }
  for (const auto& [k, v] : expect) {
    const auto it = seen.find(k);
    if (it == seen.end()) {
      out << "key " << show(k) << " missing (model has value " << show(v) << ")";
      return out.str();
    }
    if (!(it->second == v)) {
      out << "key " << show(k) << " has value " << show(it->second) << ", model has " << show(v);
      return out.str();
    }
    const auto* found = g.find(k);
    if (found == nullptr || !(*found == v)) {
      out << "find(" << show(k) << ") disagrees with iteration";
      return out.str();
    }
  }
  for (const auto& [k, v] : seen) {
    if (expect.find(k) == expect.end()) {
      out << "key " << show(k) << " (value " << show(v) << ") present but not in the model";
      return out.str();
    }
  }
  return {};
}

}  // namespace

TEMPLATE_TEST_CASE("model: readers see exactly the published model, and only at publish", "[model]",
                   u64_u64_seq_cst, u64_u64_asymmetric, string_string_seq_cst,
                   string_string_asymmetric, int_string_seq_cst, int_string_asymmetric,
                   u64_big_seq_cst, string_big_asymmetric) {
  using K = typename TestType::key;
  using V = typename TestType::value;
  using Traits = typename TestType::traits;
  using model = std::map<K, V>;

  const std::uint64_t seed = lrtest::test_seed();
  std::mt19937_64 rng(seed);
  auto pick = [&rng](long n) { return std::uniform_int_distribution<long>(0, n - 1)(rng); };

  auto m = leftright::make_map<K, V, absl::Hash<K>, std::equal_to<K>, Traits>();
  auto& w = m.first;  // not a binding: random_op captures it (clang 14 cannot capture one)
  auto& r = m.second;
  auto r2 = r;  // a second registered reader, copied from the first
  model pending;
  model published;
  std::size_t queued = 0;      // operations queued since the last publish or discard
  std::uint64_t version = 0;   // publishes so far
  long publishes = 0, try_publishes = 0, held = 0, refused = 0, discards = 0, clears = 0;

  // Queues one random content operation on the writer and applies it to the pending model.
  auto random_op = [&](long roll) {
    const K k = make<K>(pick(key_space));
    const V v = make<V>(pick(value_space));
    if (roll < 350) {
      w.insert_or_assign(k, v);
      pending.insert_or_assign(k, v);
    } else if (roll < 520) {
      w.insert(k, v);
      pending.try_emplace(k, v);
    } else if (roll < 700) {
      w.erase(k);
      pending.erase(k);
    } else if (roll < 750) {
      // Pure predicates: on value parity, a value threshold, or the key's residue.
      std::function<bool(const K&, const V&)> pred;
      const long kind = pick(3);
      const long a = pick(kind == 1 ? value_space / 3 : 7);
      if (kind == 0) {
        pred = [a](const K&, const V& val) { return num(val) % 2 == a % 2; };
      } else if (kind == 1) {
        pred = [a](const K&, const V& val) { return num(val) < a; };
      } else {
        pred = [a](const K& key, const V&) { return num(key) % 7 == a; };
      }
      w.erase_if(pred);
      std::erase_if(pending, [&pred](const auto& kv) { return pred(kv.first, kv.second); });
    } else if (roll < 756) {
      w.clear();
      pending.clear();
      ++clears;
    } else {
      w.reserve(static_cast<std::size_t>(pick(200)));  // no content change
    }
    ++queued;
  };

  auto published_now = [&] {
    published = pending;
    queued = 0;
    ++version;
  };

  for (int step = 0; step < steps; ++step) {
    const long roll = pick(1000);
    INFO("step " << step << ", roll " << roll << ", version " << version);
    if (roll < 780) {
      random_op(pick(780));
    } else if (roll < 790) {
      w.discard();  // rollback: readers never saw the batch
      pending = published;
      queued = 0;
      ++discards;
    } else if (roll < 880) {
      REQUIRE(w.publish() == version + 1);
      published_now();
      ++publishes;
    } else if (roll < 940) {
      REQUIRE(w.try_publish());  // no guard alive: nothing to wait for
      published_now();
      ++try_publishes;
    } else if (roll < 980) {
      // A guard held across one publish keeps its snapshot; a fresh reader sees the new state.
      auto& holder = pick(2) == 0 ? r : r2;
      auto& other = &holder == &r ? r2 : r;
      const auto old_guard = holder.read();
      const model old_model = published;
      const std::uint64_t old_version = version;
      if (pick(2) == 0) random_op(pick(780));
      REQUIRE(w.publish() == version + 1);  // never waits for a guard taken after the last one
      published_now();
      ++held;
      CHECK(old_guard.version() == old_version);
      CHECK(difference(old_guard, old_model).empty());
      {
        const auto nested = holder.read();  // same reader: the outermost guard's snapshot
        CHECK(nested.version() == old_version);
        CHECK(difference(nested, old_model).empty());
      }
      auto fresh = pick(2) == 0 ? holder.factory().make_reader() : w.factory().make_reader();
      CHECK(fresh.version() == version);
      CHECK(difference(fresh.read(), published).empty());
      CHECK(other.version() == version);
      CHECK(difference(other.read(), published).empty());
    } else {
      // The held guard was recorded at the publish: try_publish must refuse and change nothing,
      // and succeed once the guard is gone.
      {
        auto& holder = pick(2) == 0 ? r : r2;
        const auto old_guard = holder.read();
        const model old_model = published;
        REQUIRE(w.publish() == version + 1);
        published_now();
        random_op(pick(780));
        const model before_refusal = published;
        REQUIRE_FALSE(w.try_publish());
        ++refused;
        CHECK(w.version() == version);
        CHECK(w.pending() == queued);
        CHECK(difference(old_guard, old_model).empty());
        auto fresh = w.make_reader();
        CHECK(fresh.version() == version);
        CHECK(difference(fresh.read(), before_refusal).empty());
      }
      REQUIRE(w.try_publish());
      published_now();
      ++try_publishes;
    }

    // After every step: the writer's counters and the reader's full view.
    REQUIRE(w.version() == version);
    REQUIRE(w.pending() == queued);
    REQUIRE(r.version() == version);
    REQUIRE(r.size() == published.size());
    REQUIRE(r.empty() == published.empty());
    {
      const auto g = r.read();
      REQUIRE(g.version() == version);
      const std::string diff = difference(g, published);
      INFO(diff);
      REQUIRE(diff.empty());
    }
    const K probe = make<K>(pick(key_space));
    const auto it = published.find(probe);
    if (it == published.end()) {
      REQUIRE_FALSE(r2.get(probe).has_value());
      REQUIRE_FALSE(r2.contains(probe));
    } else {
      REQUIRE(r2.get(probe) == it->second);
      REQUIRE(r2.contains(probe));
    }
  }

  // Drain: publish what is queued, then once more so the second copy replays the last batch
  // (verify_copies compares them) and both are complete.
  REQUIRE(w.publish() == version + 1);
  published_now();
  REQUIRE(w.publish() == version + 1);
  published_now();
  CHECK(difference(r.read(), published).empty());
  {
    const auto fresh = w.make_reader();
    CHECK(difference(fresh.read(), published).empty());
  }
  // r, r2 and at most one transient fresh reader were ever alive together.
  CHECK(w.reader_slots() <= 3);
  // The run exercised what it claims to (counts depend only on the seed).
  INFO("publishes " << publishes << ", try_publishes " << try_publishes << ", held " << held
                    << ", refused " << refused << ", discards " << discards << ", clears "
                    << clears);
  CHECK(publishes + try_publishes + held > 100);
}

}  // namespace LEFTRIGHT_TEST_FILE
