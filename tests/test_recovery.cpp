// SPDX-License-Identifier: Apache-2.0
// Recovery's shortcuts (durable_map.hpp, open_map) give what the long way gives:
//   - a clean reopen continues in the empty segment the previous open started (same file, no new
//     one), and what is published into it afterwards reopens; a segment with anything but zeros
//     after its header is not continued in (it is replaced, with a fresh salt);
//   - batches and snapshots of built-in integers, read in place, make the same table as a model
//     applying the same operations; damaged ones are refused with the general path's errors;
//   - the entries reserved before a replay are capped by what the records' bytes can hold.
// No atomics in this file.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using lrtest::temp_dir;

namespace {

namespace st = leftright::detail::storage;
namespace fs = std::filesystem;

leftright::durable_options options(const fs::path& dir) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::sync;
  o.segment_size = std::size_t{1} << 16;
  o.checkpoint_bytes = 0;
  return o;
}

using lrtest::segments;

/// A segment's salt (fresh for each segment roll() creates).
std::uint64_t salt_of(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  char b[24];
  REQUIRE(f.read(b, sizeof b));
  return leftright::detail::load_le<std::uint64_t>(b + 16);
}

template <class Map>
void publish_range(Map& w, std::uint64_t from, std::uint64_t to) {
  for (std::uint64_t k = from; k < to; ++k) {
    w.insert_or_assign(k, k * 3);
    w.publish();
  }
}

/// A batch payload, as encode_batch writes it, for ops of (tag, key, value).
template <class K, class V>
std::string payload(const std::vector<std::tuple<st::op_tag, K, V>>& ops) {
  std::string out;
  leftright::byte_writer w(out);
  w.put_u32(static_cast<std::uint32_t>(ops.size()));
  for (const auto& [tag, k, v] : ops) {
    w.put_u8(static_cast<std::uint8_t>(tag));
    if (tag == st::op_tag::clear) continue;
    leftright::encode(k, w);
    if (tag != st::op_tag::erase) leftright::encode(v, w);
  }
  return out;
}

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

}  // namespace

TEST_CASE("a clean reopen continues in the empty segment the last open started", "[durable][recovery]") {
  temp_dir tmp("recovery");
  const fs::path dir = tmp.path() / "map";
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    publish_range(w, 0, 3);  // versions 1..3, in wal-1
  }
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    CHECK(w.version() == 3);  // wal-1 holds records: a new segment, wal-4, was started
  }
  const std::vector<std::string> expected{st::segment_name(1), st::segment_name(4)};
  REQUIRE(segments(dir) == expected);
  const std::uint64_t fresh = salt_of(dir / st::segment_name(4));

  SECTION("an empty one is continued in") {
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
      CHECK(w.version() == 3);
      CHECK(w.recovery().note.empty());
      CHECK(segments(dir) == expected);
      CHECK(salt_of(dir / st::segment_name(4)) == fresh);  // the same segment, not a new one
      publish_range(w, 3, 6);                             // versions 4..6, into it
    }
    CHECK(segments(dir) == expected);
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    CHECK(w.version() == 6);
    CHECK(r.size() == 6);
    for (std::uint64_t k = 0; k < 6; ++k) CHECK(r.get(k) == std::optional<std::uint64_t>(k * 3));
    CHECK(segments(dir) == std::vector<std::string>{st::segment_name(1), st::segment_name(4), st::segment_name(7)});
  }

  SECTION("one with a stray byte after its header is replaced") {
    {
      std::fstream f(dir / st::segment_name(4), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(st::segment_header_size + 5000));
      f.put('\x5a');
    }
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
      CHECK(w.version() == 3);
      CHECK(w.recovery().tail_truncated);
      CHECK(segments(dir) == expected);
      CHECK(salt_of(dir / st::segment_name(4)) != fresh);  // removed and created again
      publish_range(w, 3, 5);
    }
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    CHECK(w.version() == 5);
    CHECK(r.size() == 5);
  }

  SECTION("a checkpoint's fresh segment is continued in too") {
    {
      auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
      w.checkpoint();  // the current segment (wal-4) is empty and starts at 4: kept
    }
    CHECK(segments(dir) == std::vector<std::string>{st::segment_name(4)});
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir));
    CHECK(w.version() == 3);
    CHECK(w.recovery().snapshot_version == 3);
    CHECK(salt_of(dir / st::segment_name(4)) == fresh);
    CHECK(r.size() == 3);
  }
}

TEMPLATE_TEST_CASE("batches of built-in integers, read in place, apply as a model does", "[recovery][decode]",
                   (std::pair<std::uint64_t, std::uint64_t>), (std::pair<std::int32_t, std::int16_t>),
                   (std::pair<std::uint8_t, std::int64_t>)) {
  using K = typename TestType::first_type;
  using V = typename TestType::second_type;
  const std::uint64_t seed = lrtest::test_seed();
  std::mt19937_64 rng(seed);
  absl::flat_hash_map<K, V> t;
  std::map<K, V> model;
  for (int b = 0; b < 200; ++b) {
    std::vector<std::tuple<st::op_tag, K, V>> ops;
    const int n = static_cast<int>(rng() % 50);
    for (int i = 0; i < n; ++i) {
      const auto k = static_cast<K>(rng() % 64 - 16);  // small range: overwrites, negative keys
      const auto v = static_cast<V>(rng());
      const int kind = static_cast<int>(rng() % 100);
      const st::op_tag tag = kind < 45   ? st::op_tag::insert_or_assign
                             : kind < 75 ? st::op_tag::insert
                             : kind < 99 ? st::op_tag::erase
                                         : st::op_tag::clear;
      ops.emplace_back(tag, k, v);
      switch (tag) {
        case st::op_tag::insert_or_assign: model[k] = v; break;
        case st::op_tag::insert: model.emplace(k, v); break;
        case st::op_tag::erase: model.erase(k); break;
        case st::op_tag::clear: model.clear(); break;
        case st::op_tag::set_meta: break;  // not drawn here: test_durable_meta.cpp
      }
    }
    leftright::detail::storage::apply_batch<K, V>(t, bytes(payload<K, V>(ops)));
    REQUIRE(t.size() == model.size());
    for (const auto& [k, v] : model) {
      INFO("seed " << seed << " batch " << b);
      REQUIRE(t.contains(k));
      REQUIRE(t.at(k) == v);
    }
  }
}

TEST_CASE("damaged batches of built-in integers are refused as the general path refuses them", "[recovery][decode]") {
  using ops_t = std::vector<std::tuple<st::op_tag, std::uint64_t, std::uint64_t>>;
  const std::string good = payload<std::uint64_t, std::uint64_t>(
      ops_t{{st::op_tag::insert_or_assign, 1, 2}, {st::op_tag::erase, 3, 0}, {st::op_tag::clear, 0, 0}});
  const auto refused = [](const std::string& p, const char* says) {
    absl::flat_hash_map<std::uint64_t, std::uint64_t> t;
    try {
      leftright::detail::storage::apply_batch<std::uint64_t, std::uint64_t>(t, bytes(p));
      FAIL("accepted");
    } catch (const leftright::storage_error& e) {
      CHECK(e.operation() == "decode");
      CHECK(std::string(e.what()).find(says) != std::string::npos);
    }
  };
  refused(good.substr(0, good.size() - 1), "truncated");
  refused(good + "x", "trailing bytes");
  refused(good.substr(0, 2), "truncated");
  std::string bad_tag = good;
  bad_tag[4] = '\x09';
  refused(bad_tag, "unknown operation tag 9");
  std::string more = good;
  leftright::detail::store_le<std::uint32_t>(more.data(), 4);  // one more operation than there are
  refused(more, "truncated");
  std::string fewer = good;
  leftright::detail::store_le<std::uint32_t>(fewer.data(), 2);
  refused(fewer, "trailing bytes");
}

TEST_CASE("snapshots of built-in integers, read in place, load as written; damaged ones are refused",
          "[recovery][decode]") {
  std::string data;
  leftright::byte_writer w(data);
  for (std::int32_t k = -50; k < 50; ++k) {
    leftright::encode<std::int32_t>(k, w);
    leftright::encode<std::uint16_t>(static_cast<std::uint16_t>(k * 7), w);
  }
  st::snapshot_view view;
  view.entries = 100;
  view.data = bytes(data);
  absl::flat_hash_map<std::int32_t, std::uint16_t> t;
  leftright::detail::storage::load_snapshot<std::int32_t, std::uint16_t>(t, view, "snap");
  REQUIRE(t.size() == 100);
  for (std::int32_t k = -50; k < 50; ++k) CHECK(t.at(k) == static_cast<std::uint16_t>(k * 7));

  for (const std::uint64_t entries : {std::uint64_t{99}, std::uint64_t{101}}) {
    view.entries = entries;
    absl::flat_hash_map<std::int32_t, std::uint16_t> u;
    CHECK_THROWS_AS((leftright::detail::storage::load_snapshot<std::int32_t, std::uint16_t>(u, view, "snap")),
                    leftright::storage_error);
  }
}

TEST_CASE("the entries reserved before a replay are capped by what the records can hold", "[recovery]") {
  std::string huge_count(4 + 17, '\0');
  leftright::detail::store_le<std::uint32_t>(huge_count.data(), 0xffffffffu);  // a damaged but checksummed count
  std::string honest(4 + 3 * 17, '\0');
  leftright::detail::store_le<std::uint32_t>(honest.data(), 3);
  const std::string empty;
  std::vector<st::wal_record> recs{{1, 0, 0, bytes(huge_count)}, {2, 0, 0, bytes(honest)}, {3, 0, 0, bytes(empty)}};
  CHECK(leftright::detail::storage::logged_operations(recs, 17) == 1 + 3);
  CHECK(leftright::detail::storage::logged_operations(recs, 2) == 8 + 3);
}

TEST_CASE("operations applied in slot order leave the table they leave in arrival order", "[recovery][slot-order]") {
  using leftright::detail::keyed_op;
  using op = std::tuple<keyed_op, std::uint64_t, std::uint64_t>;
  const std::uint64_t seed = lrtest::test_seed();
  std::mt19937_64 rng(seed);
  // Few keys, many operations: every key sees a run of assigns, inserts and erases whose order
  // decides its final value.
  const auto make_ops = [&rng](std::size_t n, std::uint64_t keys) {
    std::vector<op> ops;
    for (std::size_t i = 0; i < n; ++i) {
      const auto kind = static_cast<unsigned>(rng() % 10);
      const keyed_op o = kind < 5 ? keyed_op::insert_or_assign : kind < 8 ? keyed_op::insert : keyed_op::erase;
      ops.emplace_back(o, rng() % keys, rng());
    }
    return ops;
  };
  const auto source = [](const std::vector<op>& ops) {
    return [&ops](auto&& f) {
      for (const auto& [o, k, v] : ops) f(o, k, v);
    };
  };
  const auto check = [&](std::size_t reserve, std::size_t n, std::uint64_t keys) {
    INFO("seed " << seed << ", reserve " << reserve << ", " << n << " operations on " << keys << " keys");
    const std::vector<op> ops = make_ops(n, keys);
    absl::flat_hash_map<std::uint64_t, std::uint64_t> expect, got;
    for (const auto& [o, k, v] : ops) leftright::detail::apply_keyed(expect, o, k, v);
    got.reserve(reserve);
    std::size_t calls = 0;
    leftright::detail::apply_in_slot_order(got, [&](auto&& f) {
      ++calls;
      source(ops)(f);
    });
    CHECK(got == expect);
    return calls;
  };
  // Grouped: a table of many regions, many operations (the source is read twice, count and copy).
  CHECK(check(std::size_t{1} << 20, 200000, 50000) == 2);
  CHECK(check(std::size_t{1} << 18, 100000, 1000) == 2);  // long runs per key
  // The table grows while they apply (not reserved for them): still the same entries.
  CHECK(check(std::size_t{1} << 14, 100000, 80000) == 2);
  // Too few operations to group, or too small a table: applied in order.
  CHECK(check(std::size_t{1} << 20, 1000, 500) == 2);
  CHECK(check(0, 5000, 500) == 1);
}

TEST_CASE("a long log and a snapshot of built-in integers recover as a model says", "[durable][recovery][slot-order]") {
  temp_dir tmp("recovery-slot-order");
  const fs::path dir = tmp.path() / "map";
  const std::uint64_t seed = lrtest::test_seed();
  std::mt19937_64 rng(seed);
  std::map<std::uint64_t, std::uint64_t> model;
  leftright::durable_options o = options(dir);
  o.durability = leftright::durability::none;
  o.segment_size = std::size_t{1} << 20;
  const auto batches = [&](auto& w, int count, bool with_clear) {
    for (int b = 0; b < count; ++b) {
      for (int i = 0; i < 3000; ++i) {
        const std::uint64_t k = rng() % 20000, v = rng();
        lrtest::random_write(w, model, rng, k, v);
        if (with_clear && b == count / 2 && i == 1500) {
          w.clear();
          model.clear();
        }
      }
      w.publish();
    }
  };
  const auto same = [&](auto& r) {
    INFO("seed " << seed);
    REQUIRE(r.size() == model.size());
    for (const auto& [k, v] : model) REQUIRE(r.get(k) == std::optional<std::uint64_t>(v));
  };
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    batches(w, 12, true);  // a clear in the middle of the log splits the slot-order runs
  }
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    CHECK(w.recovery().records_replayed == 12);
    same(r);
    w.checkpoint();
    batches(w, 6, false);
  }
  auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
  CHECK(w.recovery().snapshot_version == 12);
  CHECK(w.recovery().records_replayed == 6);
  same(r);
}

}  // namespace LEFTRIGHT_TEST_FILE
