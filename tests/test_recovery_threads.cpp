// SPDX-License-Identifier: Apache-2.0
// Recovery that builds the map's two copies side by side (durable_options::recovery_threads,
// storage::recovery_tables): each step applied to both tables at once, on two threads.
//   - a map recovered with 2 threads holds what one recovered with 1 holds, from a snapshot and
//     from the log (clears and erases among the records), for built-in integers (the slot-order
//     path, one sorted buffer for both tables) and for strings (each table decodes on its own);
//     both copies hold it (each is checked: a publish moves readers to the other);
//   - the read-only open does the same; the layout whose copies share values builds one table;
//   - 0 chooses by size (a small map: one thread; a snapshot of 64K entries: two; a log of as
//     many replayed without a snapshot: one; on two cores, the thresholds are 64K entries from a
//     snapshot and 4M from a log); above 2 is refused (EINVAL);
//   - a log splits the tables by the entries it is expected to leave: its distinct keys, not
//     its operations (a long log of overwrites of a few keys replays into one table);
//   - a step that throws on both threads throws once, after both have returned.
// Runs under ThreadSanitizer (the two builders share the files' bytes and the sorted buffer).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

namespace fs = std::filesystem;
namespace st = leftright::detail::storage;

leftright::durable_options options(const fs::path& dir, unsigned threads,
                                   std::size_t segment_size = std::size_t{1} << 18) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::none;
  o.segment_size = segment_size;
  o.checkpoint_bytes = 0;
  o.recovery_threads = threads;
  return o;
}

using lrtest::key_of;

/// The layout and the recovering table of a u64 -> u64 map with the default traits.
using u64_ops = leftright::detail::map_ops_for<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                               std::equal_to<std::uint64_t>, leftright::default_traits>;
using u64_table = st::recovery_table<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                     std::equal_to<std::uint64_t>, leftright::default_traits>;

/// Writes a history into dir: batches of random inserts, overwrites and erases over 20,000
/// keys, a clear in the third batch, a checkpoint after `snapshot_after` batches (0: none),
/// then more batches. Returns the model of what was published.
template <class K>
std::map<K, std::uint64_t> write_history(const fs::path& dir, int batches, int snapshot_after, std::uint64_t seed,
                                         std::size_t segment_size = std::size_t{1} << 18) {
  std::mt19937_64 rng(seed);
  std::map<K, std::uint64_t> model;
  auto [w, r] = leftright::open_map<K, std::uint64_t>(options(dir, 1, segment_size));
  for (int b = 0; b < batches; ++b) {
    for (int i = 0; i < 3000; ++i) {
      const K k = key_of<K>(rng() % 20000);
      const std::uint64_t v = rng();
      lrtest::random_write(w, model, rng, k, v);
    }
    if (b == 2) {  // before the snapshot: what a snapshot holds must survive into the map
      w.clear();
      model.clear();
      w.insert_or_assign(key_of<K>(1), 1);
      model[key_of<K>(1)] = 1;
    }
    w.publish();
    if (b + 1 == snapshot_after) w.checkpoint();
  }
  return model;
}

/// Checks that a recovered table holds exactly model.
void require_holds(const u64_table& table, const std::map<std::uint64_t, std::uint64_t>& model) {
  REQUIRE(table.size() == model.size());
  for (const auto& [k, v] : model) {
    const auto it = table.find(k);
    REQUIRE(it != table.end());
    REQUIRE(it->second == v);
  }
}

/// Checks that the copy r reads now, and the other one (after a publish moves readers to it),
/// both hold model.
template <class Writer, class Reader, class Model>
void check_both_copies(Writer& w, Reader& r, Model model) {
  for (int copy = 0; copy < 2; ++copy) {
    INFO("copy " << copy);
    REQUIRE(r.size() == model.size());
    for (const auto& [k, v] : model) REQUIRE(r.get(k) == std::optional<std::uint64_t>(v));
    // A new key in each copy's turn: the publish swaps the copies readers see.
    const auto extra = key_of<typename Model::key_type>(1000000 + static_cast<std::uint64_t>(copy));
    w.insert_or_assign(extra, 7);
    model[extra] = 7;
    w.publish();
  }
}

}  // namespace

TEMPLATE_TEST_CASE("both copies built side by side hold what one copy holds", "[durable][recovery][threads]",
                   std::uint64_t, std::string) {
  using K = TestType;
  const std::uint64_t seed = lrtest::test_seed();
  INFO("seed " << seed);
  const int snapshot_after = GENERATE(0, 6);  // from the log alone; a snapshot and a log after it
  INFO("snapshot after " << snapshot_after << " batches");
  lrtest::temp_dir tmp("recovery-threads");
  const fs::path dir = tmp.path() / "map";
  const auto model = write_history<K>(dir, 14, snapshot_after, seed);
  {
    auto [w, r] = leftright::open_map<K, std::uint64_t>(options(dir, 2));
    CHECK(w.recovery().threads == 2);
    CHECK(w.recovery().snapshot_version == static_cast<std::uint64_t>(snapshot_after));
    CHECK(w.recovery().records_replayed == static_cast<std::uint64_t>(14 - snapshot_after));
    check_both_copies(w, r, model);
  }
  // What the last open published reopens, now with one thread: the same as two would give.
  auto [w, r] = leftright::open_map<K, std::uint64_t>(options(dir, 1));
  CHECK(w.recovery().threads == 1);
  auto more = model;
  more[key_of<K>(1000000)] = 7;
  more[key_of<K>(1000001)] = 7;
  check_both_copies(w, r, more);
}

TEST_CASE("a read-only open builds both copies side by side too", "[durable][recovery][threads]") {
  const std::uint64_t seed = lrtest::test_seed();
  INFO("seed " << seed);
  lrtest::temp_dir tmp("recovery-threads-ro");
  const fs::path dir = tmp.path() / "map";
  const auto model = write_history<std::uint64_t>(dir, 10, 4, seed);
  auto ro = leftright::open_map_read_only<std::uint64_t, std::uint64_t>(options(dir, 2));
  CHECK(ro.recovery().threads == 2);
  auto r = ro.make_reader();
  REQUIRE(r.size() == model.size());
  for (const auto& [k, v] : model) REQUIRE(r.get(k) == std::optional<std::uint64_t>(v));
}

namespace {
/// Every entry in the layout whose two copies share one stored value.
struct shared_traits : leftright::default_traits {
  static constexpr std::size_t max_inline_entry = 8;
};
}  // namespace

TEST_CASE("a map whose copies share their values builds one table and copies it", "[durable][recovery][threads]") {
  lrtest::temp_dir tmp("recovery-threads-shared");
  const fs::path dir = tmp.path() / "map";
  using map_key = std::uint64_t;
  {
    auto [w, r] = leftright::open_map<map_key, std::uint64_t, absl::Hash<map_key>, std::equal_to<map_key>,
                                      shared_traits>(options(dir, 2));
    for (std::uint64_t k = 0; k < 3000; ++k) w.insert_or_assign(k, k * 5);
    w.publish();
    w.checkpoint();
    w.erase(7);
    w.publish();
  }
  auto [w, r] =
      leftright::open_map<map_key, std::uint64_t, absl::Hash<map_key>, std::equal_to<map_key>, shared_traits>(
          options(dir, 2));
  CHECK(w.recovery().threads == 1);
  std::map<map_key, std::uint64_t> model;
  for (std::uint64_t k = 0; k < 3000; ++k) model[k] = k * 5;
  model.erase(7);
  check_both_copies(w, r, model);
}

TEST_CASE("recovery_threads: 0 chooses by size, above 2 is refused", "[durable][recovery][threads]") {
  lrtest::temp_dir tmp("recovery-threads-auto");
  const fs::path dir = tmp.path() / "map";
  const auto model = write_history<std::uint64_t>(dir, 3, 2, lrtest::test_seed());
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir, 0));
    CHECK(w.recovery().threads == 1);  // a few thousand entries: below the 64K that take two
    REQUIRE(r.size() == model.size());
  }
  for (const unsigned bad : {3u, 64u}) {
    try {
      leftright::open_map<std::uint64_t, std::uint64_t>(options(dir, bad));
      FAIL("recovery_threads = " << bad << " was accepted");
    } catch (const leftright::storage_error& e) {
      CHECK(e.code().value() == EINVAL);
      CHECK(std::string(e.what()).find("recovery_threads") != std::string::npos);
    }
    CHECK_THROWS_AS((leftright::open_map_read_only<std::uint64_t, std::uint64_t>(options(dir, bad))),
                    leftright::storage_error);
  }
}

TEST_CASE("recovery_threads 0: a large snapshot loads on two threads, a large log alone replays on one",
          "[durable][recovery][threads]") {
  lrtest::temp_dir tmp("recovery-threads-log-alone");
  const fs::path dir = tmp.path() / "map";
  static constexpr std::uint64_t n = 70000;  // past the 64K from which a snapshot takes two
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir, 1));
    for (std::uint64_t k = 0; k < n; ++k) w.insert_or_assign(k, k * 3);
    w.publish();
  }
  const auto check_all = [](const auto& w, const auto& r) {
    REQUIRE(r.size() == n);
    for (std::uint64_t k = 0; k < n; k += 97) REQUIRE(r.get(k) == std::optional<std::uint64_t>(k * 3));
    (void)w;
  };
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir, 0));
    CHECK(w.recovery().snapshot_entries == 0);
    CHECK(w.recovery().threads == 1);  // the log alone: one table, copied
    check_all(w, r);
    w.checkpoint();
  }
  auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(dir, 0));
  CHECK(w.recovery().snapshot_entries == n);
  CHECK(w.recovery().threads == (std::thread::hardware_concurrency() >= 2 ? 2u : 1u));
  check_all(w, r);
  check_both_copies(w, r, [] {
    std::map<std::uint64_t, std::uint64_t> m;
    for (std::uint64_t k = 0; k < n; ++k) m[k] = k * 3;
    return m;
  }());
}

TEST_CASE("recovery_threads 0 on two cores: two tables from a snapshot of 64K entries, from a log of 4M",
          "[durable][recovery][threads]") {
  leftright::durable_options o;
  const st::two_tables chosen = st::two_tables_for<u64_ops, u64_table>(o);
  if (std::thread::hardware_concurrency() >= 2) {
    CHECK(chosen.from_snapshot == std::size_t{1} << 16);
    CHECK(chosen.from_log == std::size_t{1} << 22);
  } else {
    CHECK(chosen.from_snapshot == SIZE_MAX);
    CHECK(chosen.from_log == SIZE_MAX);
  }
  o.recovery_threads = 1;
  CHECK(st::two_tables_for<u64_ops, u64_table>(o).from_log == SIZE_MAX);
  o.recovery_threads = 2;
  CHECK(st::two_tables_for<u64_ops, u64_table>(o).from_log == 0);
}

TEST_CASE("a log splits the tables by the distinct keys it inserts, not by its operations",
          "[durable][recovery][threads]") {
  lrtest::temp_dir tmp("recovery-threads-distinct");
  const fs::path many = tmp.path() / "many-keys";  // 6,000 operations on 6,000 keys
  const fs::path few = tmp.path() / "few-keys";    // 6,000 operations on 10 keys
  std::map<std::uint64_t, std::uint64_t> many_model, few_model;
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(many, 1));
    for (std::uint64_t k = 0; k < 6000; ++k) {
      w.insert_or_assign(k, k + 1);
      many_model[k] = k + 1;
      if (k % 1000 == 999) w.publish();
    }
  }
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(options(few, 1));
    for (std::uint64_t i = 0; i < 6000; ++i) {
      w.insert_or_assign(i % 10, i);
      few_model[i % 10] = i;
      if (i % 1000 == 999) w.publish();
    }
  }
  // A log expected to leave 4,000 entries or more goes into two tables.
  const auto recover = [](const fs::path& dir, const std::map<std::uint64_t, std::uint64_t>& model) {
    auto fsys = st::default_file_system();
    const std::string key_codec = leftright::codec_name<std::uint64_t>();
    const std::string value_codec = st::value_codec_name<std::uint64_t, leftright::no_meta>();
    const st::recovery_source src{*fsys, dir, /*writable=*/false, key_codec, value_codec, {SIZE_MAX, 4000}};
    u64_table t;
    leftright::no_meta meta;
    st::recovery_tables<u64_table, leftright::no_meta> ts(t, meta);
    leftright::recovery_report rep;
    st::recover_directory<std::uint64_t, std::uint64_t>(ts, src, rep);
    const std::size_t count = ts.count();
    require_holds(t, model);
    if (const std::optional<u64_table> second = ts.take_second()) require_holds(*second, model);
    return count;
  };
  CHECK(recover(many, many_model) == 2);
  CHECK(recover(few, few_model) == 1);  // 6,000 operations, but 10 keys: one table and a copy
}

TEST_CASE("a long log is estimated on two threads as on one: the same operations and distinct keys",
          "[durable][recovery][threads]") {
  // 14 batches over 20,000 keys in segments of 64 KiB: about fifteen segments, eight after a
  // snapshot. Asked to read on two threads from the first segment on, the helper takes newer ones.
  const int snapshot_after = GENERATE(0, 6);  // the log alone; a snapshot part-way through it
  INFO("snapshot after " << snapshot_after << " batches");
  lrtest::temp_dir tmp("recovery-threads-estimate");
  const fs::path dir = tmp.path() / "map";
  write_history<std::uint64_t>(dir, 14, snapshot_after, lrtest::test_seed(), std::size_t{64} << 10);
  auto fsys = st::default_file_system();
  const std::string key_codec = leftright::codec_name<std::uint64_t>();
  const std::string value_codec = st::value_codec_name<std::uint64_t, leftright::no_meta>();
  std::string note;
  const st::inventory inv = st::take_inventory(*fsys, dir, false, key_codec, value_codec, note);
  const st::segment_list segs(inv.segments.begin(), inv.segments.end());
  REQUIRE(segs.size() >= 6);
  const std::uint64_t expect = snapshot_after + 1;
  const auto estimate = [&](bool two_threads_allowed, std::size_t from_bytes) {
    const st::recovery_source src{*fsys, dir, /*writable=*/false, key_codec, value_codec,
                                  two_threads_allowed ? st::two_tables{SIZE_MAX, 4000} : st::two_tables{}, from_bytes};
    return st::estimate_log<std::uint64_t, std::uint64_t>(src, segs, expect);
  };
  const st::log_estimate one = estimate(false, 0);
  const st::log_estimate two = estimate(true, 0);
  // 3,000 random writes a batch, and a clear and an insert in the third (write_history), for
  // each batch after the snapshot; the log leaves out some (an erase of an absent key, ...).
  const std::size_t batches_logged = static_cast<std::size_t>(14 - snapshot_after);
  CHECK(one.operations >= batches_logged * 3000 * 3 / 4);
  CHECK(one.operations <= batches_logged * 3000 + 2);
  CHECK(one.read_ahead == 0);
  CHECK(two.read_ahead >= 1);
  CHECK(two.operations == one.operations);
  REQUIRE(one.distinct_keys.has_value());
  REQUIRE(two.distinct_keys.has_value());
  CHECK(*two.distinct_keys == *one.distinct_keys);  // each register the larger of both threads'
  // Inserts of random keys out of 20,000: thousands of them, never much more than 20,000.
  CHECK(*one.distinct_keys >= 5000);
  CHECK(*one.distinct_keys <= 22000);
  // Two threads allowed but no segment large enough: the same again.
  const st::log_estimate unsplit = estimate(true, SIZE_MAX);
  CHECK(unsplit.read_ahead == 0);
  CHECK(unsplit.operations == one.operations);
}

TEST_CASE("a long log replayed with its next segments read ahead on a second thread holds the history",
          "[durable][recovery][threads]") {
  // Segments of 64 KiB, each read ahead (read_ahead_from 0) while the one before is applied.
  const int snapshot_after = GENERATE(0, 6);
  const bool writable = GENERATE(false, true);
  INFO("snapshot after " << snapshot_after << " batches, writable " << writable);
  const std::uint64_t seed = lrtest::test_seed();
  lrtest::temp_dir tmp("recovery-threads-ahead");
  const fs::path dir = tmp.path() / "map";
  const auto model = write_history<std::uint64_t>(dir, 14, snapshot_after, seed, std::size_t{64} << 10);
  auto fsys = st::default_file_system();
  const std::string key_codec = leftright::codec_name<std::uint64_t>();
  const std::string value_codec = st::value_codec_name<std::uint64_t, leftright::no_meta>();
  const st::recovery_source src{*fsys, dir, writable, key_codec, value_codec, {SIZE_MAX, 0}, 0};
  u64_table t;
  leftright::no_meta meta;
  st::recovery_tables<u64_table, leftright::no_meta> ts(t, meta);
  leftright::recovery_report rep;
  st::recover_directory<std::uint64_t, std::uint64_t>(ts, src, rep);
  CHECK(rep.version == 14);
  CHECK(rep.segments_read >= 6);
  CHECK(rep.segments_read_ahead == rep.segments_read - 1);  // all but the first
  REQUIRE(ts.count() == 2);
  require_holds(t, model);
  const std::optional<u64_table> second = ts.take_second();
  REQUIRE(second.has_value());
  require_holds(*second, model);
}

TEST_CASE("a step that fails on both tables throws once, after both have returned", "[recovery][threads]") {
  // A snapshot of string keys whose last entry is cut short: each table's decoder meets it.
  std::string data;
  leftright::byte_writer bw(data);
  for (int i = 0; i < 500; ++i) {
    leftright::encode<std::string>("k" + std::to_string(i), bw);
    leftright::encode<std::uint64_t>(static_cast<std::uint64_t>(i), bw);
  }
  data.resize(data.size() - 3);
  st::snapshot_view view;
  view.entries = 500;
  view.data = std::as_bytes(std::span(data.data(), data.size()));
  absl::flat_hash_map<std::string, std::uint64_t> t;
  leftright::no_meta meta;
  st::recovery_tables<decltype(t), leftright::no_meta> ts(t, meta);
  ts.split();
  REQUIRE(ts.count() == 2);
  CHECK_THROWS_AS((st::load_snapshot<std::string, std::uint64_t>(ts, view, "snap")), leftright::storage_error);
  // Both tables were built up to the damage, each on its own thread, and joined.
  CHECK(ts.table(0).size() == 499);
  CHECK(ts.table(1).size() == 499);

  // One table failing alone (the second): its exception, once the first has finished.
  int calls = 0;
  CHECK_THROWS_WITH(ts.each([&calls](std::size_t i) {
    if (i == 1) throw std::runtime_error("second");
    ++calls;  // only table 0's call writes it
  }),
                    "second");
  CHECK(calls == 1);
}

}  // namespace LEFTRIGHT_TEST_FILE
