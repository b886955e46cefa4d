// SPDX-License-Identifier: Apache-2.0
// Unit tests of the map's operations and of what readers see around publish().
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::make;

TEMPLATE_TEST_CASE("version 0 is the empty initial state; each publish makes the next version",
                   "[map]", lrtest::seq_cst_traits, lrtest::asymmetric_traits) {
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                    std::equal_to<std::uint64_t>, TestType>();
  CHECK(r.version() == 0);
  CHECK(w.version() == 0);
  CHECK(r.empty());
  CHECK(r.size() == 0);
  CHECK_FALSE(r.get(1).has_value());
  for (std::uint64_t v = 1; v <= 5; ++v) {
    CHECK(w.publish() == v);  // also an empty batch makes a version
    CHECK(r.version() == v);
    CHECK(w.version() == v);
  }
}

/// Every entry in the shared layout (one node both copies point to), however small: what a map
/// of values that own heap memory (long strings) uses to hold them once.
struct shared_layout_traits : lrtest::seq_cst_traits {
  static constexpr std::size_t max_inline_entry = 0;
};

template <class K, class V, class Traits = lrtest::seq_cst_traits>
struct kv {
  using first_type = K;
  using second_type = V;
  using traits = Traits;
};
using kv_types = std::tuple<kv<std::uint64_t, std::uint64_t>, kv<std::string, std::string>, kv<int, std::string>,
                            kv<std::string, std::uint64_t>, kv<std::uint64_t, std::string, shared_layout_traits>,
                            kv<std::string, std::string, shared_layout_traits>>;

TEMPLATE_LIST_TEST_CASE("every operation takes effect only at publish, all at once", "[map]",
                        kv_types) {
  using K = typename TestType::first_type;
  using V = typename TestType::second_type;
  using traits = typename TestType::traits;
  static_assert(leftright::map_writer<K, V, absl::Hash<K>, std::equal_to<K>, traits>::shares_values ==
                    std::is_same_v<traits, shared_layout_traits>,
                "max_inline_entry = 0 must select the shared layout");
  auto [w, r] = leftright::make_map<K, V, absl::Hash<K>, std::equal_to<K>, traits>();

  SECTION("insert_or_assign sets and overwrites") {
    w.insert_or_assign(make<K>(1), make<V>(10));
    w.insert_or_assign(make<K>(2), make<V>(20));
    CHECK(w.pending() == 2);
    CHECK_FALSE(r.contains(make<K>(1)));
    CHECK(w.publish() == 1);
    CHECK(w.pending() == 0);
    CHECK(r.get(make<K>(1)) == make<V>(10));
    CHECK(r.get(make<K>(2)) == make<V>(20));
    w.insert_or_assign(make<K>(1), make<V>(11));
    CHECK(r.get(make<K>(1)) == make<V>(10));
    w.publish();
    CHECK(r.get(make<K>(1)) == make<V>(11));
    CHECK(r.size() == 2);
  }
  SECTION("insert sets only if absent when applied, in queue order") {
    w.insert(make<K>(1), make<V>(10));
    w.insert(make<K>(1), make<V>(99));  // key present by the time this one applies
    w.publish();
    CHECK(r.get(make<K>(1)) == make<V>(10));
    w.erase(make<K>(1));
    w.insert(make<K>(1), make<V>(12));  // absent again after the erase queued before it
    w.publish();
    CHECK(r.get(make<K>(1)) == make<V>(12));
    // Also right on the second copy: publish again and the replay must agree (verify_copies).
    w.publish();
    CHECK(r.get(make<K>(1)) == make<V>(12));
  }
  SECTION("erase removes if present, and is a no-op otherwise") {
    for (long i = 0; i < 10; ++i) w.insert_or_assign(make<K>(i), make<V>(i));
    w.publish();
    w.erase(make<K>(3));
    w.erase(make<K>(1000));
    CHECK(r.contains(make<K>(3)));
    w.publish();
    CHECK_FALSE(r.contains(make<K>(3)));
    CHECK(r.size() == 9);
    w.publish();
    CHECK(r.size() == 9);
  }
  SECTION("erase_if runs a pure predicate on both copies") {
    for (long i = 0; i < 100; ++i) w.insert_or_assign(make<K>(i), make<V>(i));
    w.publish();
    const V limit = make<V>(50);
    w.erase_if([&](const K&, const V& v) { return v < limit; });
    w.publish();
    auto g = r.read();
    for (const auto& [k, v] : g) CHECK_FALSE(v < limit);
    const std::size_t left = g.size();
    CHECK(left < 100);
    CHECK(left > 0);
  }
  SECTION("clear removes everything; later ops in the batch still apply") {
    for (long i = 0; i < 10; ++i) w.insert_or_assign(make<K>(i), make<V>(i));
    w.publish();
    w.clear();
    w.insert_or_assign(make<K>(7), make<V>(70));
    w.publish();
    CHECK(r.size() == 1);
    CHECK(r.get(make<K>(7)) == make<V>(70));
    w.publish();
    CHECK(r.size() == 1);
  }
  SECTION("reserve changes no content") {
    w.insert_or_assign(make<K>(1), make<V>(1));
    w.reserve(1000);
    w.publish();
    w.publish();
    CHECK(r.size() == 1);
    CHECK(r.get(make<K>(1)) == make<V>(1));
  }
  SECTION("discard drops the queued batch") {
    w.insert_or_assign(make<K>(1), make<V>(1));
    w.publish();
    w.insert_or_assign(make<K>(2), make<V>(2));
    w.erase(make<K>(1));
    CHECK(w.pending() == 2);
    w.discard();
    CHECK(w.pending() == 0);
    CHECK(w.publish() == 2);
    CHECK(r.contains(make<K>(1)));
    CHECK_FALSE(r.contains(make<K>(2)));
  }
}

TEST_CASE("a guard shows one consistent snapshot: find, contains, size, iteration", "[map][guard]") {
  auto [w, r] = leftright::make_map<std::string, std::string>();
  std::map<std::string, std::string> expect;
  for (int i = 0; i < 50; ++i) {
    w.insert_or_assign("key" + std::to_string(i), "value" + std::to_string(i));
    expect["key" + std::to_string(i)] = "value" + std::to_string(i);
  }
  w.publish();
  auto g = r.read();
  CHECK(g.version() == 1);
  CHECK(g.size() == 50);
  CHECK_FALSE(g.empty());
  REQUIRE(g.find(std::string("key7")) != nullptr);
  CHECK(*g.find(std::string("key7")) == "value7");
  CHECK(g.find(std::string("nope")) == nullptr);
  CHECK(g.contains(std::string("key49")));
  std::map<std::string, std::string> seen;
  for (const std::pair<const std::string, std::string>& kv : g) seen.insert(kv);
  CHECK(seen == expect);
}

namespace {
struct transparent_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return absl::Hash<std::string_view>{}(s); }
};
struct transparent_eq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
}  // namespace

TEST_CASE("lookups accept any key type the absl map accepts", "[map]") {
  auto [w, r] = leftright::make_map<std::string, int, transparent_hash, transparent_eq>();
  w.insert_or_assign("alpha", 1);
  w.publish();
  std::string_view key = "alpha";
  CHECK(r.get(key) == 1);
  CHECK(r.contains(key));
  CHECK(r.read().find(std::string_view("beta")) == nullptr);
  const char* c = "alpha";
  CHECK(r.get(c) == 1);
}

TEST_CASE("make_map passes capacity, hash and equality to both copies", "[map]") {
  struct mod_hash {
    std::size_t operator()(int x) const { return absl::Hash<int>{}(x % 10); }
  };
  struct mod_eq {
    bool operator()(int a, int b) const { return a % 10 == b % 10; }
  };
  auto [w, r] = leftright::make_map<int, int, mod_hash, mod_eq>(1000, mod_hash{}, mod_eq{});
  w.insert_or_assign(3, 1);
  w.insert_or_assign(13, 2);  // equal to 3 under mod_eq
  w.publish();
  w.publish();
  CHECK(r.size() == 1);
  CHECK(r.get(23) == 2);
}

TEST_CASE("verify_copies catches an operation that is not deterministic", "[map][verify]") {
  auto [w, r] = leftright::make_map<int, int, absl::Hash<int>, std::equal_to<int>,
                                    lrtest::seq_cst_traits>();
  for (int i = 0; i < 10; ++i) w.insert_or_assign(i, i);
  w.publish();
  w.publish();
  // Impure: true on its first ten calls only, so it erases everything from the first copy it
  // runs on and nothing from the second.
  auto calls = std::make_shared<int>(0);
  w.erase_if([calls](const int&, const int&) { return (*calls)++ < 10; });
  w.publish();
  CHECK(r.empty());
  w.insert_or_assign(100, 100);
  CHECK_THROWS_AS(w.publish(), std::logic_error);  // the replay left the copies different
  CHECK_FALSE(w.poisoned());                       // the write copy was restored from the read one
  CHECK(w.pending() == 1);
  CHECK(w.publish() == 4);
  CHECK(w.publish() == 5);  // and now they agree again
  CHECK(r.size() == 1);
  CHECK(r.get(100) == 100);
}

TEST_CASE("values without operator== work; verification is skipped for them", "[map][verify]") {
  struct no_eq {
    int x;
  };
  auto [w, r] = leftright::make_map<int, no_eq, absl::Hash<int>, std::equal_to<int>,
                                    lrtest::seq_cst_traits>();
  w.insert_or_assign(1, no_eq{7});
  w.publish();
  w.publish();
  CHECK(r.get(1).value().x == 7);
}

namespace {
struct amortized_traits : leftright::default_traits {
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::amortized;
};
}  // namespace

TEST_CASE("amortized copy checks catch a divergence within size() operations", "[map][verify]") {
  auto [w, r] = leftright::make_map<int, int, absl::Hash<int>, std::equal_to<int>, amortized_traits>();
  for (int i = 0; i < 10; ++i) w.insert_or_assign(i, i);
  w.publish();
  w.publish();
  auto calls = std::make_shared<int>(0);
  w.erase_if([calls](const int& k, const int&) { return k == 0 && (*calls)++ == 0; });
  w.publish();  // erased 0 from one copy only
  int publishes = 0;
  bool caught = false;
  while (!caught && publishes < 12) {
    ++publishes;
    try {
      w.publish();
    } catch (const std::logic_error&) {
      caught = true;
    }
  }
  CHECK(caught);
  CHECK(publishes <= 10);  // each publish counts at least one operation; the map has 9 entries
}

namespace {
/// Counts its calls through a pointer, so it stays trivially copyable (the kind of hasher whose
/// hash an operation carries from its first application to its second).
struct counting_hash {
  std::size_t* calls;
  std::size_t operator()(std::uint64_t x) const {
    ++*calls;
    return absl::Hash<std::uint64_t>{}(x);
  }
};
/// A hasher that is not trivially copyable (its seed is a string): operations do not carry its
/// hash, and must still give the same copies.
struct string_seeded_hash {
  std::string seed = "seed";
  std::size_t operator()(std::uint64_t x) const { return absl::HashOf(seed, x); }
};
struct unchecked_traits : leftright::default_traits {
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::off;
};
struct unchecked_shared_traits : unchecked_traits {
  static constexpr std::size_t max_inline_entry = 0;
};
}  // namespace

TEMPLATE_TEST_CASE("an overwrite hashes its key once for both copies", "[map]", unchecked_traits,
                   unchecked_shared_traits) {
  std::size_t calls = 0;
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t, counting_hash, std::equal_to<std::uint64_t>,
                                    TestType>(0, counting_hash{&calls});
  constexpr std::uint64_t n = 100;
  for (std::uint64_t k = 0; k < n; ++k) w.insert_or_assign(k, k);
  w.publish();
  w.publish();  // both copies hold every key
  calls = 0;
  for (std::uint64_t k = 0; k < n; ++k) w.insert_or_assign(k, k + 1000);
  w.publish();  // the first application: one hash per operation
  CHECK(calls == n);
  w.publish();  // the second application, on the other copy: found by the hash carried over
  CHECK(calls == n);
  calls = 0;
  for (std::uint64_t k = 0; k < n; ++k) {
    INFO("key " << k);
    REQUIRE(r.get(k) == k + 1000);
  }
  CHECK(calls == n);  // each lookup hashes once: the counter counts what it should
  // A key that is new pays for its insertion in each copy, but stays correct.
  w.insert_or_assign(n, 7);
  w.insert(n + 1, 8);
  w.insert(0, 9);  // present: unchanged
  w.publish();
  w.publish();
  CHECK(r.size() == n + 2);
  CHECK(r.get(n) == 7);
  CHECK(r.get(n + 1) == 8);
  CHECK(r.get(0) == 1000);
}

TEMPLATE_TEST_CASE("a batch on a large table loads each key's lines ahead of both applications", "[map]",
                   unchecked_traits, unchecked_shared_traits) {
  // The prefetch hashes its key (absl's prefetch takes no hash), so the hash calls show it.
  std::size_t calls = 0;
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t, counting_hash, std::equal_to<std::uint64_t>,
                                    TestType>(0, counting_hash{&calls});
  const std::uint64_t n = leftright::detail::prefetch_min_entries + 100;
  const std::uint64_t big_batch = 10 * leftright::detail::writer_prefetch_min_ops;
  for (std::uint64_t k = 0; k < n; ++k) w.insert_or_assign(k, k);
  w.publish();
  w.publish();  // both copies hold every key
  calls = 0;
  for (std::uint64_t k = 0; k < big_batch; ++k) w.insert_or_assign(k * 7 % n, k + 1000);
  w.publish();  // first application: a prefetch and a put per operation
  CHECK(calls == 2 * big_batch);
  calls = 0;
  w.publish();  // second: a prefetch per operation, the put finding its key by the carried hash
  CHECK(calls == big_batch);
  // Below writer_prefetch_min_ops operations, every operation is prefetched before the batch is
  // applied, in both copies at once: the write copy's and the read copy's (which gets the
  // replay at the next publish).
  const std::uint64_t small_batch = leftright::detail::writer_prefetch_min_ops - 1;
  calls = 0;
  for (std::uint64_t k = 0; k < small_batch; ++k) w.insert_or_assign(k, k + 5000);
  w.publish();
  CHECK(calls == 3 * small_batch);  // two prefetches and a put per operation
  calls = 0;
  w.publish();  // the owed replay: prefetched into this copy at the last publish, applied by the carried hash
  CHECK(calls == 0);
  for (std::uint64_t k = 0; k < small_batch; ++k) REQUIRE(r.get(k) == k + 5000);
  for (std::uint64_t k = small_batch; k < big_batch; ++k) REQUIRE(r.get(k * 7 % n) == k + 1000);
}

TEMPLATE_LIST_TEST_CASE("large mixed batches on a large table publish exactly the model", "[map]", kv_types) {
  // Batches long enough, on a table large enough, for the writer to prefetch ahead
  // (detail::prefetch_ahead): every operation is applied once and in order, in both copies.
  using K = typename TestType::first_type;
  using V = typename TestType::second_type;
  auto [w, r] = leftright::make_map<K, V, absl::Hash<K>, std::equal_to<K>, typename TestType::traits>();
  const long keys = static_cast<long>(leftright::detail::prefetch_min_entries) * 5 / 2;  // half of them present
  std::map<K, V> model;
  for (long i = 0; i < keys; i += 2) {
    w.insert_or_assign(make<K>(i), make<V>(i));
    model.insert_or_assign(make<K>(i), make<V>(i));
  }
  w.publish();
  std::mt19937_64 rng(lrtest::test_seed());
  for (int round = 0; round < 8; ++round) {
    const std::size_t batch = leftright::detail::writer_prefetch_min_ops + rng() % 3000;
    for (std::size_t j = 0; j < batch; ++j) {
      const long k = static_cast<long>(rng() % static_cast<std::uint64_t>(keys));
      const long v = static_cast<long>(rng() % 100000);
      switch (rng() % 8) {
        case 0:
          w.insert(make<K>(k), make<V>(v));
          model.try_emplace(make<K>(k), make<V>(v));
          break;
        case 1:
        case 2:
          w.erase(make<K>(k));
          model.erase(make<K>(k));
          break;
        default:
          w.insert_or_assign(make<K>(k), make<V>(v));
          model.insert_or_assign(make<K>(k), make<V>(v));
      }
    }
    w.publish();  // the new batch in one copy, last round's replayed in the other (copies compared)
    INFO("round " << round << ", batch " << batch);
    REQUIRE(r.size() == model.size());
    for (long k = 0; k < keys; ++k) {
      const auto it = model.find(make<K>(k));
      const std::optional<V> got = r.get(make<K>(k));
      REQUIRE(got.has_value() == (it != model.end()));
      if (got) REQUIRE(*got == it->second);
    }
  }
}

TEST_CASE("a hasher that is not trivially copyable gives the same results", "[map]") {
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t, string_seeded_hash, std::equal_to<std::uint64_t>,
                                    lrtest::seq_cst_traits>(0, string_seeded_hash{"another seed"});
  for (std::uint64_t k = 0; k < 50; ++k) w.insert_or_assign(k, k);
  w.publish();
  for (std::uint64_t k = 0; k < 50; k += 2) w.insert_or_assign(k, k + 100);
  w.insert(1, 0);   // present: unchanged
  w.insert(50, 5);  // absent: inserted
  w.publish();
  w.publish();  // replayed; seq_cst_traits compares the copies at every publish
  CHECK(r.size() == 51);
  CHECK(r.get(0) == 100);
  CHECK(r.get(1) == 1);
  CHECK(r.get(50) == 5);
}

namespace {
/// Counts the heap blocks strings of this allocator take; refuses them while fail_blocks is set.
inline std::size_t string_blocks = 0;
inline bool fail_blocks = false;
template <class T>
struct counting_allocator {
  using value_type = T;
  counting_allocator() = default;
  template <class U>
  counting_allocator(const counting_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (fail_blocks) throw std::bad_alloc();
    ++string_blocks;
    return std::allocator<T>{}.allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>{}.deallocate(p, n); }
  friend bool operator==(const counting_allocator&, const counting_allocator&) { return true; }
};
using counted_string = std::basic_string<char, std::char_traits<char>, counting_allocator<char>>;
}  // namespace

TEST_CASE("keys passed as lvalues are copied into the storage of operations applied before", "[map]") {
  auto [w, r] = leftright::make_map<counted_string, int, absl::Hash<counted_string>, std::equal_to<counted_string>,
                                    lrtest::seq_cst_traits>();
  constexpr int n = 100;
  std::vector<counted_string> keys;
  for (int i = 0; i < n; ++i) keys.emplace_back("a key long enough for the heap " + std::to_string(1000 + i));
  for (int i = 0; i < n; ++i) w.insert_or_assign(keys[i], i);
  w.publish();
  w.publish();  // applied to both copies: spent, their keys moved into the second copy
  for (int i = 0; i < n; ++i) w.insert_or_assign(keys[i], i + 1);
  w.publish();
  w.publish();  // overwrites: spent, their keys still in them
  string_blocks = 0;
  for (int i = 0; i < n; ++i) w.insert_or_assign(keys[n - 1 - i], -i);  // the same lengths, other order
  CHECK(string_blocks == 0);
  w.publish();
  w.publish();
  for (int i = 0; i < n; ++i) {
    INFO("key " << i);
    REQUIRE(r.get(keys[n - 1 - i]) == -i);
  }
  // insert, and a key longer than any spent one's storage: still right, whatever it allocates.
  counted_string longer(200, 'z');
  w.insert(longer, 7);
  w.insert(keys[0], 8);  // present: unchanged
  w.publish();
  w.publish();
  CHECK(r.get(longer) == 7);
  CHECK(r.get(keys[0]) == -(n - 1));
  CHECK(r.size() == static_cast<std::size_t>(n + 1));
}

namespace {
/// A value whose move throws while throw_on_move is set.
inline bool throw_on_move = false;
struct touchy {
  int v = 0;
  touchy(int x) : v(x) {}  // NOLINT: implicit, as an int
  touchy(const touchy&) = default;
  touchy(touchy&& o) : v(o.v) {
    if (throw_on_move) throw std::runtime_error("touchy move");
  }
  touchy& operator=(const touchy&) = default;
  touchy& operator=(touchy&&) = default;
  friend bool operator==(const touchy&, const touchy&) = default;
};
}  // namespace

TEST_CASE("a key copy or a value move that throws queues nothing, and reused storage stays usable", "[map]") {
  auto [w, r] = leftright::make_map<counted_string, touchy, absl::Hash<counted_string>, std::equal_to<counted_string>,
                                    lrtest::seq_cst_traits>();
  const counted_string a = "a key long enough for the heap, number one";
  const counted_string b = "a key long enough for the heap, number two";
  w.insert_or_assign(a, 1);
  w.insert_or_assign(b, 2);
  w.publish();
  w.publish();
  w.insert_or_assign(a, 3);
  w.insert_or_assign(b, 4);
  w.publish();
  w.publish();  // two spent overwrites: their keys' storage is kept for reuse

  // A key longer than any kept storage must allocate; the allocation fails.
  const counted_string longer(300, 'x');
  fail_blocks = true;
  CHECK_THROWS_AS(w.insert_or_assign(longer, 5), std::bad_alloc);
  fail_blocks = false;
  CHECK(w.pending() == 0);

  // The value's move throws after the key was copied into kept storage.
  throw_on_move = true;
  CHECK_THROWS_AS(w.insert_or_assign(a, 6), std::runtime_error);
  CHECK_THROWS_AS(w.insert(b, 7), std::runtime_error);
  throw_on_move = false;
  CHECK(w.pending() == 0);

  // The kept storage (possibly emptied by the failed moves) still serves new keys correctly.
  w.insert_or_assign(a, 8);
  w.insert_or_assign(b, 9);
  w.insert_or_assign(longer, 10);
  w.publish();
  w.publish();
  CHECK(r.get(a) == touchy(8));
  CHECK(r.get(b) == touchy(9));
  CHECK(r.get(longer) == touchy(10));
  CHECK(r.size() == 3);
}

namespace {
/// A value too large to be stored inline (the shared layout).
struct wide_value {
  std::array<char, 120> bytes{};
  int n = 0;
  explicit wide_value(int x = 0) : n(x) {}
  bool operator==(const wide_value& o) const { return n == o.n; }
};
}  // namespace

TEMPLATE_TEST_CASE("string keys take string_view and literals by default, in both layouts", "[map]", int,
                   wide_value) {
  using V = TestType;
  static_assert(std::is_same_v<leftright::default_hash<std::uint64_t>, absl::Hash<std::uint64_t>>);
  static_assert(std::is_same_v<leftright::default_eq<std::uint64_t>, std::equal_to<std::uint64_t>>);
  auto [w, r] = leftright::make_map<std::string, V>();
  STATIC_REQUIRE(decltype(w)::shares_values == std::is_same_v<V, wide_value>);
  const std::string long_key(40, 'k');  // longer than any small-string buffer
  w.insert_or_assign("alpha", V(1));
  w.insert_or_assign(long_key, V(2));
  w.publish();

  const std::string_view alpha = "alpha";
  CHECK(r.get(alpha) == V(1));
  CHECK(r.get("alpha") == V(1));
  CHECK(r.get(std::string_view(long_key)) == V(2));
  CHECK(r.contains(alpha));
  CHECK_FALSE(r.contains(std::string_view("beta")));
  {
    const auto g = r.read();
    REQUIRE(g.find(std::string_view(long_key)) != nullptr);
    CHECK(*g.find(std::string_view(long_key)) == V(2));
    CHECK(g.find("beta") == nullptr);
  }
  w.erase(alpha);
  w.erase(std::string_view("not there"));
  w.publish();
  CHECK_FALSE(r.contains(alpha));
  CHECK(r.get(std::string_view(long_key)) == V(2));
  CHECK(r.size() == 1);
}

namespace {
template <class R>
concept reads_from_temporary = requires { std::declval<R>().read(); };
template <class R>
concept reads_from_lvalue = requires(const R& r) { r.read(); };
}  // namespace

TEST_CASE("a guard cannot be taken from a temporary reader", "[map]") {
  using reader = leftright::map_reader<int, int>;
  // `auto g = w.make_reader().read();` would keep a guard on a slot its reader has released.
  STATIC_REQUIRE_FALSE(reads_from_temporary<reader>);
  STATIC_REQUIRE(reads_from_lvalue<reader>);
  // Calls that end their guard before returning stay usable on a temporary.
  auto [w, r] = leftright::make_map<int, int>();
  w.insert_or_assign(1, 2);
  w.publish();
  CHECK(w.make_reader().get(1) == 2);
}

template <class R>
concept refs_from_temporary = requires { std::declval<R>().ref(); };

TEMPLATE_TEST_CASE("a reader_ref reads what its reader reads, through the reader's slot", "[map][ref]",
                   lrtest::seq_cst_traits, lrtest::asymmetric_traits, leftright::default_traits) {
  using ref_type = leftright::reader_ref<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                         std::equal_to<std::uint64_t>, TestType>;
  STATIC_REQUIRE(std::is_trivially_copyable_v<ref_type>);
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                    std::equal_to<std::uint64_t>, TestType>();
  STATIC_REQUIRE_FALSE(refs_from_temporary<decltype(r)>);
  const ref_type ref = r.ref();
  CHECK(ref.version() == 0);
  CHECK(ref.empty());
  for (std::uint64_t k = 1; k <= 100; ++k) w.insert_or_assign(k, k * 3);
  w.publish();
  const ref_type copy = ref;  // copies freely: the same reader
  CHECK(copy.version() == r.version());
  CHECK(copy.size() == 100);
  CHECK(copy.get(7) == std::optional<std::uint64_t>(21));
  CHECK_FALSE(copy.get(101).has_value());
  CHECK(copy.contains(100));
  const std::array<std::uint64_t, 4> keys{5, 500, 5, 99};
  std::array<std::optional<std::uint64_t>, 4> out;
  CHECK(copy.get_many(keys, out) == 3);
  CHECK(out[0] == 15u);
  CHECK_FALSE(out[1].has_value());
  CHECK(out[3] == 297u);
  {
    // One slot: a guard through the ref nested in one through the reader sees the reader's
    // snapshot, not the version published in between.
    auto outer = r.read();
    w.insert_or_assign(1, 0);
    w.publish();
    auto inner = ref.read();
    CHECK(inner.version() == outer.version());
    CHECK(*inner.find(std::uint64_t{1}) == 3);
  }
  CHECK(ref.get(1) == 0u);
  CHECK(ref.version() == 2);
}

}  // namespace LEFTRIGHT_TEST_FILE
