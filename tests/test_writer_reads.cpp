// SPDX-License-Identifier: Apache-2.0
// The writer reads its own writes: map_writer::find and contains give the state the next
// publish() will make visible, checked against a model updated on every operation (and the
// readers against one updated at publish), over random operation sequences in both layouts.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

struct wide {
  std::array<std::uint64_t, 10> w{};
  explicit wide(std::uint64_t x = 0) { w.fill(x); }
  bool operator==(const wide&) const = default;
};

}  // namespace

TEMPLATE_TEST_CASE("the writer sees its queued operations; readers see them at publish", "[writer_reads]",
                   std::uint64_t, wide) {
  using V = TestType;
  const std::uint64_t seed = GENERATE(1, 2, 3);
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  auto [w, r] = leftright::make_map<std::uint64_t, V>();
  std::map<std::uint64_t, std::uint64_t> now, published;  // key -> the value's seed
  const auto pick = [&] { return rng() % 40; };
  for (int step = 0; step < 4000; ++step) {
    const std::uint64_t k = pick(), v = rng() % 1000;
    switch (rng() % 20) {
      case 0: w.clear(); now.clear(); break;
      case 1: {
        const std::uint64_t m = 2 + rng() % 5;
        w.erase_if([m](const std::uint64_t& key, const V&) { return key % m == 0; });
        std::erase_if(now, [m](const auto& kv) { return kv.first % m == 0; });
        break;
      }
      case 2: w.reserve(rng() % 100); break;
      case 3: case 4: case 5: w.erase(k); now.erase(k); break;
      case 6: case 7: case 8: case 9: w.insert(k, V(v)); now.emplace(k, v); break;
      case 10:
        w.publish();
        published = now;
        break;
      default: w.insert_or_assign(k, V(v)); now[k] = v; break;
    }
    const std::uint64_t probe = pick();
    const auto it = now.find(probe);
    const V* seen = w.find(probe);
    REQUIRE((seen != nullptr) == (it != now.end()));
    if (seen != nullptr) REQUIRE(*seen == V(it->second));
    REQUIRE(w.contains(probe) == (it != now.end()));
    const auto pit = published.find(probe);
    REQUIRE(r.get(probe) == (pit == published.end() ? std::nullopt : std::optional<V>(V(pit->second))));
  }
}

TEST_CASE("a read-modify-write counter needs no second map", "[writer_reads]") {
  auto m = leftright::make_map<std::string, int>();
  auto& w = m.first;  // named references: clang 14 cannot capture a structured binding
  auto& r = m.second;
  const auto increment = [&w] {
    const int* c = w.find("hits");
    w.insert_or_assign("hits", (c ? *c : 0) + 1);
  };
  for (int i = 0; i < 10; ++i) {
    increment();
    if (i % 3 == 0) w.publish();  // at i = 0, 3, 6, 9
  }
  increment();  // queued only
  CHECK(*w.find(std::string_view("hits")) == 11);
  CHECK(r.get("hits") == 10);
  w.discard();
  CHECK(*w.find("hits") == 10);
}

}  // namespace LEFTRIGHT_TEST_FILE
