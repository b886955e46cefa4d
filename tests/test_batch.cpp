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
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <catch2/catch.hpp>
#include <leftright/detail/replication/batch_bridge.hpp>
#include <leftright/detail/storage/batch.hpp>
#include <leftright/detail/storage/replay.hpp>
#include <leftright/map.hpp>
#include <leftright/replication_error.hpp>
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

/// The message of the storage_error f throws ("" if none).
template <class F>
std::string storage_message(F&& f) {
  try {
    f();
  } catch (const leftright::storage_error& e) {
    return e.what();
  }
  return {};
}

/// How often s holds part.
std::size_t occurrences(const std::string& s, const std::string& part) {
  std::size_t n = 0;
  for (std::size_t at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) ++n;
  return n;
}

TEST_CASE("batch: a malformed payload's message says which operation, where, and how many bytes are left over",
          "[batch][decode]") {
  using string_table = absl::flat_hash_map<std::string, std::string>;
  // Three operations: erase "k", clear, and one with tag 9 (at byte 11).
  const std::string bad_tag("\x03\0\0\0" "\x03\x01\0\0\0k" "\x04" "\x09", 12);
  CHECK(storage_message([&] {
          string_table t;
          st::apply_batch<std::string, std::string>(t, bytes(bad_tag));
        }) == "leftright: decode: unknown operation tag 9 in operation 3 of 3, at byte offset 11");

  std::string good;  // built-in integers: refused by the codec path's walk, with its message
  {
    using ops = ops_for<std::uint64_t, std::uint64_t>;
    std::vector<ops::op> batch;
    batch.emplace_back(std::in_place_type<ops::assign_op>, std::uint64_t{1}, std::uint64_t{2});
    batch.emplace_back(ops::erase_op{3});
    st::encode_batch<ops>(batch, good);
  }
  REQUIRE(good.size() == 4 + 17 + 9);
  std::string bad_builtin = good;
  bad_builtin[4 + 17] = '\x09';
  const auto apply_u64 = [](const std::string& p) {
    return storage_message([&] {
      absl::flat_hash_map<std::uint64_t, std::uint64_t> t;
      st::apply_batch<std::uint64_t, std::uint64_t>(t, bytes(p));
    });
  };
  CHECK(apply_u64(bad_builtin) == "leftright: decode: unknown operation tag 9 in operation 2 of 2, at byte offset 21");
  CHECK(apply_u64(good + "xy") ==
        "leftright: decode: trailing bytes after the batch's 2 operations: 2 bytes from byte offset 30");
  CHECK(apply_u64(good + "x") ==
        "leftright: decode: trailing bytes after the batch's 2 operations: 1 byte from byte offset 30");

  // Metadata with a byte too many (its encoding: "hello", 9 bytes, then "y").
  const std::string meta = leftright::encode_to_string(std::string("hello")) + "y";
  CHECK(storage_message([&] { (void)st::decode_meta<std::string>(bytes(meta)); }) ==
        "leftright: decode: trailing bytes after the metadata: 1 byte from byte offset 9 of its encoding");
}

TEST_CASE("batch: a logged record that does not decode is reported with one \"leftright:\"", "[batch][decode]") {
  const std::string bad_tag("\x03\0\0\0" "\x03\x01\0\0\0k" "\x04" "\x09", 12);
  absl::flat_hash_map<std::string, std::string> t;
  leftright::no_meta meta;
  const st::wal_record rec{5, 64, 5, bytes(bad_tag)};
  const std::string m = storage_message(
      [&] { st::apply_record<std::string, std::string>(t, meta, rec, std::filesystem::path("/d/wal/seg")); });
  CHECK(m == "leftright: recover '/d/wal/seg': record 5 at offset 64 has a valid checksum but does not decode: "
             "unknown operation tag 9 in operation 3 of 3, at byte offset 11");
}

/// A mapping of bytes in memory (a snapshot file, as read_snapshot maps it).
class memory_mapping final : public st::mapping {
 public:
  explicit memory_mapping(std::string bytes) : b_(std::move(bytes)) {}
  std::byte* data() noexcept override { return reinterpret_cast<std::byte*>(b_.data()); }
  std::size_t size() const noexcept override { return b_.size(); }
  void sync(std::size_t, std::size_t) override {}

 private:
  std::string b_;
};

TEST_CASE("batch: a snapshot's entries that do not decode are reported by entry, with one \"leftright:\"",
          "[batch][decode]") {
  // 42 bytes: metadata "hello" (13 with its length), entry 1: 1 -> "one" (15), entry 2: 2 -> a
  // string of 100 bytes of which 2 are there.
  std::string data;
  leftright::byte_writer w(data);
  st::append_meta(w, std::string("hello"));
  leftright::encode(std::uint64_t{1}, w);
  leftright::encode(std::string("one"), w);
  leftright::encode(std::uint64_t{2}, w);
  w.put_u32(100);
  w.put_bytes("tw", 2);
  const std::filesystem::path path("/d/snap");
  const auto load = [&](st::snapshot_view view) {
    return storage_message([&] {
      std::string m;
      st::take_snapshot_meta(view, m, path);
      CHECK(m == "hello");
      absl::flat_hash_map<std::uint64_t, std::string> t;
      st::load_snapshot<std::uint64_t, std::string>(t, view, path);
    });
  };
  // Bytes checked alone: offsets count from the entries (after the metadata).
  CHECK(load(st::snapshot_view{nullptr, 7, 2, bytes(data)}) ==
        "leftright: read snapshot '/d/snap': entry 2 of 2 (from byte offset 15 of the entries) does not decode: "
        "truncated input: reading string bytes needs 100 bytes, 2 remain (98 missing) at byte offset 27");
  // In a mapped file whose data starts at byte 50: file offsets.
  auto file = std::make_shared<memory_mapping>(std::string(50, 'h') + data + std::string(24, 't'));
  const st::snapshot_view mapped{file, 7, 2, std::span<const std::byte>(file->data() + 50, data.size())};
  CHECK(load(mapped) ==
        "leftright: read snapshot '/d/snap': entry 2 of 2 (from file offset 78) does not decode: "
        "truncated input: reading string bytes needs 100 bytes, 2 remain (98 missing) at byte offset 90");
  // One entry and bytes after it.
  CHECK(load(st::snapshot_view{file, 7, 1, mapped.data}) ==
        "leftright: read snapshot '/d/snap': 14 bytes after the last entry, from file offset 78");
  // Metadata that does not decode (a length past the end).
  std::string bad_meta = data;
  leftright::detail::store_le<std::uint32_t>(bad_meta.data(), 200);
  CHECK(load(st::snapshot_view{nullptr, 7, 2, bytes(bad_meta)}) ==
        "leftright: read snapshot '/d/snap': the metadata (its u32 length at byte offset 0 of the snapshot data) "
        "does not decode: truncated input: reading metadata needs 200 bytes, 38 remain (162 missing) "
        "at byte offset 4");
}

TEST_CASE("batch: a replication snapshot image is checked for its magic first", "[batch][decode]") {
  namespace rp = leftright::detail::replication;
  const auto message = [](const std::string& image, auto types) {
    using K = typename decltype(types)::first_type;
    using V = typename decltype(types)::second_type;
    try {
      rp::for_each_snapshot_entry<K, V>(std::as_bytes(std::span(image.data(), image.size())), [](K&&, V&&) {});
    } catch (const leftright::replication_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  using u64s = std::pair<std::uint64_t, std::uint64_t>;
  // A log message sent to the wrong subject: one insert_or_assign of 5 -> 7.
  const std::string not_image("\x01\0\0\0\x01\x05\0\0\0\0\0\0\0\x07\0\0\0\0\0\0\0", 21);
  CHECK(message(not_image, u64s{}) ==
        "leftright: decode snapshot: not a snapshot image (it does not start with \"lrsnap1\"; 21 bytes)");
  CHECK(message(std::string("lrsn"), u64s{}) ==
        "leftright: decode snapshot: not a snapshot image (it does not start with \"lrsnap1\"; 4 bytes)");

  std::string image;
  rp::encode_snapshot<std::uint64_t, std::uint64_t, leftright::no_meta>(
      std::map<std::uint64_t, std::uint64_t>{{1, 2}, {3, 4}}, image);
  std::map<std::uint64_t, std::uint64_t> back;
  CHECK(rp::for_each_snapshot_entry<std::uint64_t, std::uint64_t>(
            bytes(image), [&](std::uint64_t&& k, std::uint64_t&& v) { back.emplace(k, v); }) == 2);
  CHECK(back == std::map<std::uint64_t, std::uint64_t>{{1, 2}, {3, 4}});
  CHECK(message(image, std::pair<std::uint64_t, std::string>{}) ==
        "leftright: decode snapshot: not a snapshot of this map's types (it holds u64, u64; this map is u64, str)");
  CHECK(message(image + "z", u64s{}) == "leftright: decode snapshot: trailing bytes after the last entry: 1 byte "
                                        "from byte offset " + std::to_string(image.size()));
  CHECK(message(image.substr(0, image.size() - 1), u64s{}) ==
        "leftright: decode snapshot: truncated input: reading u64 needs 8 bytes, 7 remain (1 missing) at byte offset " +
            std::to_string(image.size() - 8));
}

}  // namespace LEFTRIGHT_TEST_FILE
