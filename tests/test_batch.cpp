// SPDX-License-Identifier: Apache-2.0
// The batch codec (detail/storage/batch.hpp):
//   - built-in integer batches written in place are byte for byte what the codec path writes;
//     erase_if is logged as the erases its first application recorded, reserve not at all;
//   - for_each_op() replays a payload through a map_writer's public members (as a follower of a
//     replicated map does) to the state a model reaches with the same operations, for keys that
//     take the codec path and for keys read in place;
//   - a malformed payload is refused (storage_error "decode"); a built-in integer one delivers
//     nothing before the refusal.
// No atomics in this file.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/detail/storage/batch.hpp>
#include <leftright/map.hpp>
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

namespace st = leftright::detail::storage;

template <class K, class V>
using ops_for = leftright::detail::map_ops_for<K, V, leftright::default_hash<K>, leftright::default_eq<K>,
                                              leftright::default_traits>;

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

/// Replays a payload's operations through a writer's public members, as a follower does.
template <class Writer>
struct replay {
  Writer& w;
  template <class K, class V>
  void assign(K&& k, V&& v) {
    w.insert_or_assign(std::forward<K>(k), std::forward<V>(v));
  }
  template <class K, class V>
  void insert(K&& k, V&& v) {
    w.insert(std::forward<K>(k), std::forward<V>(v));
  }
  template <class K>
  void erase(K&& k) {
    w.erase(std::forward<K>(k));
  }
  void clear() { w.clear(); }
};

/// A random batch of the logged kinds (and a reserve, which logs nothing), applied to model.
template <class K, class V, class MakeKey>
std::vector<typename ops_for<K, V>::op> random_batch(std::mt19937_64& rng, std::map<K, V>& model, MakeKey key) {
  using ops = ops_for<K, V>;
  std::vector<typename ops::op> batch;
  for (int i = 0; i < 64; ++i) {
    const K k = key(rng() % 32);
    const V v = static_cast<V>(rng());
    switch (rng() % 20) {
      case 0: batch.emplace_back(typename ops::clear_op{}), model.clear(); break;
      case 1: batch.emplace_back(typename ops::reserve_op{8}); break;
      case 2: case 3: case 4: case 5: case 6: batch.emplace_back(typename ops::erase_op{k}), model.erase(k); break;
      case 7: case 8: case 9: case 10:
        batch.emplace_back(std::in_place_type<typename ops::insert_op>, k, v), model.emplace(k, v);
        break;
      default: batch.emplace_back(std::in_place_type<typename ops::assign_op>, k, v), model[k] = v; break;
    }
  }
  return batch;
}

/// Encodes batches, replays each through a writer with for_each_op, and checks the published
/// state against the model after every batch.
template <class K, class V, class MakeKey>
void check_replay(MakeKey key) {
  const auto seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::map<K, V> model;
  auto [w, r] = leftright::make_map<K, V>();
  replay<decltype(w)> visitor{w};
  std::string payload;
  for (int b = 0; b < 50; ++b) {
    st::encode_batch<ops_for<K, V>>(random_batch<K, V>(rng, model, key), payload);
    st::for_each_op<K, V>(bytes(payload), visitor);
    w.publish();
    REQUIRE(r.size() == model.size());
    for (const auto& [k, v] : model) REQUIRE(r.get(k) == v);
  }
}

}  // namespace

TEST_CASE("for_each_op replays a batch through a writer as a model applies it", "[batch]") {
  SECTION("string keys (the codec path)") {
    check_replay<std::string, std::uint32_t>([](std::uint64_t i) { return "key-" + std::to_string(i); });
  }
  SECTION("built-in integers (read in place)") {
    check_replay<std::uint64_t, std::int16_t>([](std::uint64_t i) { return i * 7919; });
  }
}

TEST_CASE("built-in integer batches written in place are the codec path's bytes", "[batch]") {
  using ops = ops_for<std::uint32_t, std::int64_t>;
  std::mt19937_64 rng(7);
  std::map<std::uint32_t, std::int64_t> model;
  auto batch = random_batch<std::uint32_t, std::int64_t>(rng, model, [](std::uint64_t i) {
    return static_cast<std::uint32_t>(i);
  });
  using pred_state = ops::erase_if_op::state;
  auto recorded = std::make_shared<pred_state>(pred_state{[](const std::uint32_t&, const std::int64_t&) { return true; }});
  recorded->erased = {5, 6, 7};  // as the first application records them
  batch.emplace_back(ops::erase_if_op{recorded});
  std::string general;
  st::encode_batch<ops>(batch, general);
  const auto [size, count] = st::builtin_batch_size<ops>(batch);
  std::string in_place(size, '\0');
  st::write_builtin_batch<ops>(batch, count, reinterpret_cast<std::byte*>(in_place.data()));
  CHECK(in_place == general);
  // The erase_if's three erases are logged; the reserves are not.
  std::size_t logged = 0;
  for (const auto& o : batch) logged += !std::holds_alternative<ops::reserve_op>(o);
  CHECK(count == logged - 1 + 3);
  CHECK(leftright::detail::load_le<std::uint32_t>(general.data()) == count);
}

TEST_CASE("malformed payloads are refused; built-in ones before any operation is delivered", "[batch]") {
  struct counting {
    int delivered = 0;
    void assign(std::uint64_t, std::uint64_t) { ++delivered; }
    void insert(std::uint64_t, std::uint64_t) { ++delivered; }
    void erase(std::uint64_t) { ++delivered; }
    void clear() { ++delivered; }
  };
  std::string good;
  {
    using ops = ops_for<std::uint64_t, std::uint64_t>;
    std::vector<ops::op> batch;
    batch.emplace_back(std::in_place_type<ops::assign_op>, std::uint64_t{1}, std::uint64_t{2});
    batch.emplace_back(ops::erase_op{3});
    st::encode_batch<ops>(batch, good);
  }
  counting ok;
  st::for_each_op<std::uint64_t, std::uint64_t>(bytes(good), ok);
  CHECK(ok.delivered == 2);
  std::string bad_tag = good;
  bad_tag[4 + 1 + 16] = '\x09';  // the second operation's tag
  for (const std::string& bad : {bad_tag, good + "x", good.substr(0, good.size() - 1)}) {
    counting v;
    CHECK_THROWS_AS((st::for_each_op<std::uint64_t, std::uint64_t>(bytes(bad), v)), leftright::storage_error);
    CHECK(v.delivered == 0);
  }
  CHECK(st::check_builtin_batch<std::uint64_t, std::uint64_t>(bytes(bad_tag)) == st::batch_check::bad);
  CHECK(st::check_builtin_batch<std::uint64_t, std::uint64_t>(bytes(good)) == st::batch_check::keyed);
}

}  // namespace LEFTRIGHT_TEST_FILE
