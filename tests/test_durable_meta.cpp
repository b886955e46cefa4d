// SPDX-License-Identifier: Apache-2.0
// Metadata in a durable map: a batch that sets it logs it in the batch's own record (so a crash
// keeps both or neither), a checkpoint writes the published metadata into its snapshot, and
// recovery (writable and read-only) restores the metadata of the last batch that set one. Files
// written with metadata and without refuse a map of the other kind.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/sim_fs.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

namespace st = leftright::detail::storage;

/// A label as a user publishes one: the upstream revision and where it came from.
using label = std::pair<std::uint64_t, std::string>;

struct labelled_traits : leftright::default_traits {
  using meta_type = label;
};

template <class K, class V>
using labelled_writer = leftright::durable_writer<K, V, leftright::default_hash<K>, leftright::default_eq<K>,
                                                  labelled_traits>;

template <class K, class V>
auto open_labelled(const leftright::durable_options& o) {
  return leftright::open_map<K, V, leftright::default_hash<K>, leftright::default_eq<K>, labelled_traits>(o);
}

leftright::durable_options options_at(const std::filesystem::path& p) {
  leftright::durable_options o;
  o.path = p;
  o.durability = leftright::durability::sync;
  return o;
}

using lrtest::key_of;

}  // namespace

TEMPLATE_TEST_CASE("a durable map recovers the metadata of the last batch that set one", "[durable][meta]",
                   std::uint64_t, std::string) {
  using K = TestType;
  using V = TestType;  // u64/u64 takes the in-place log path; strings the codec path
  lrtest::temp_dir dir("durable-meta");
  const auto o = options_at(dir.path() / "m");
  const auto recovered = [&] {
    auto [w, r] = open_labelled<K, V>(o);
    const auto g = r.read();
    CHECK(w.meta() == g.meta());  // the writer starts from what readers see
    return std::make_pair(g.meta(), g.size());
  };
  const auto recovered_read_only = [&] {
    auto ro = leftright::open_map_read_only<K, V, leftright::default_hash<K>, leftright::default_eq<K>,
                                            labelled_traits>(o);
    auto r = ro.make_reader();
    const auto g = r.read();
    return std::make_pair(g.meta(), g.size());
  };
  {
    auto [w, r] = open_labelled<K, V>(o);
    CHECK(r.read().meta() == label{});
    w.insert_or_assign(key_of<K>(1), key_of<V>(10));
    w.set_meta({1, "upstream"});
    w.publish();
    w.insert_or_assign(key_of<K>(2), key_of<V>(20));  // no label: keeps the last one
    w.publish();
  }
  CHECK(recovered() == std::make_pair(label{1, "upstream"}, std::size_t{2}));
  CHECK(recovered_read_only() == std::make_pair(label{1, "upstream"}, std::size_t{2}));
  {
    auto [w, r] = open_labelled<K, V>(o);
    w.set_meta({2, "relabelled"});  // a batch of metadata alone
    w.publish();
    w.set_meta({99, "discarded"});
    w.discard();
    w.erase(key_of<K>(1));
    w.set_meta({3, "within"});
    w.publish_within(std::chrono::milliseconds(1));  // logged as publish() logs
  }
  CHECK(recovered() == std::make_pair(label{3, "within"}, std::size_t{1}));
  {
    auto [w, r] = open_labelled<K, V>(o);
    w.checkpoint();  // the label goes into the snapshot; the log it covers is removed
  }
  CHECK(lrtest::segments(o.path).size() == 1);
  {
    auto [w, r] = open_labelled<K, V>(o);
    CHECK(w.recovery().snapshot_version > 0);
    CHECK(w.recovery().records_replayed == 0);
    CHECK(r.read().meta() == label{3, "within"});  // from the snapshot alone
    w.insert_or_assign(key_of<K>(4), key_of<V>(40));
    w.set_meta({4, "after the snapshot"});
    w.publish();
    w.checkpoint();
    w.insert_or_assign(key_of<K>(5), key_of<V>(50));
    w.publish();
  }
  CHECK(recovered() == std::make_pair(label{4, "after the snapshot"}, std::size_t{3}));
  CHECK(recovered_read_only() == std::make_pair(label{4, "after the snapshot"}, std::size_t{3}));
}

TEST_CASE("files written with metadata and without refuse a map of the other kind", "[durable][meta]") {
  lrtest::temp_dir dir("durable-meta");
  const auto plain = options_at(dir.path() / "plain");
  const auto with = options_at(dir.path() / "labelled");
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(plain);
    w.insert_or_assign(1, 1);
    w.publish();
    w.checkpoint();
  }
  {
    auto [w, r] = open_labelled<std::uint64_t, std::uint64_t>(with);
    w.insert_or_assign(1, 1);
    w.set_meta({1, "x"});
    w.publish();
  }
  try {
    open_labelled<std::uint64_t, std::uint64_t>(plain);
    FAIL("a map with metadata opened files written without");
  } catch (const leftright::storage_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("u64+meta:pair<u64,str>"));
  }
  try {
    leftright::open_map<std::uint64_t, std::uint64_t>(with);
    FAIL("a map without metadata opened files written with");
  } catch (const leftright::storage_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("u64+meta:pair<u64,str>"));
  }
}

TEST_CASE("a batch's metadata is its payload's last operation, walked by visitors that take it",
          "[durable][meta][batch]") {
  using ops = leftright::detail::map_ops_for<std::uint64_t, std::uint64_t, leftright::default_hash<std::uint64_t>,
                                             leftright::default_eq<std::uint64_t>, labelled_traits>;
  std::vector<typename ops::op> batch;
  batch.emplace_back(std::in_place_type<typename ops::assign_op>, std::uint64_t{7}, std::uint64_t{70});
  const label l{5, "five"};
  std::string with, without;
  st::encode_batch<ops>(batch, with, &l);
  st::encode_batch<ops>(batch, without);
  const auto bytes = [](const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); };
  CHECK(st::check_builtin_batch<std::uint64_t, std::uint64_t>(bytes(without)) == st::batch_check::keyed);
  CHECK(st::check_builtin_batch<std::uint64_t, std::uint64_t>(bytes(with)) == st::batch_check::unkeyed);

  absl::flat_hash_map<std::uint64_t, std::uint64_t> t;
  label got;
  st::apply_batch<std::uint64_t, std::uint64_t>(t, bytes(with), &got);
  CHECK(got == l);
  CHECK(t.at(7) == 70);

  // A visitor without meta() skips it; a metadata length past the payload does not decode.
  struct counter {
    int ops = 0;
    void assign(std::uint64_t, std::uint64_t) { ++ops; }
    void insert(std::uint64_t, std::uint64_t) { ++ops; }
    void erase(std::uint64_t) { ++ops; }
    void clear() { ++ops; }
  } c;
  st::for_each_op<std::uint64_t, std::uint64_t>(bytes(with), c);
  CHECK(c.ops == 1);
  std::string cut = with;
  cut.pop_back();
  CHECK(st::check_builtin_batch<std::uint64_t, std::uint64_t>(bytes(cut)) == st::batch_check::bad);
  CHECK_THROWS_AS((st::apply_batch<std::uint64_t, std::uint64_t>(t, bytes(cut), &got)), leftright::storage_error);
  std::string longer = with;
  longer.push_back('\0');  // the metadata decodes, but the payload has a byte after it
  CHECK_THROWS_AS((st::apply_batch<std::uint64_t, std::uint64_t>(t, bytes(longer), &got)),
                  leftright::storage_error);
}

TEST_CASE("every crash point keeps a batch's metadata with its entries", "[durable][meta][sim]") {
  // Batch i inserts key i and labels the state {i, ...}: whatever a crash keeps, the recovered
  // label names exactly the entries recovered, and every acknowledged batch is there.
  const auto workload = [](const std::shared_ptr<sim::file_system>& fsys, std::uint64_t& acked) {
    leftright::durable_options o;
    o.path = "/data/map";
    o.durability = leftright::durability::sync;
    o.segment_size = 8192;
    o.file_system = fsys;
    auto [w, r] = open_labelled<std::uint64_t, std::string>(o);
    for (std::uint64_t i = 1; i <= 12; ++i) {
      w.insert_or_assign(i, std::string(300, 'v'));  // rolls segments
      w.set_meta({i, "batch " + std::to_string(i)});
      w.publish();
      acked = i;
      if (i == 6) w.checkpoint();
    }
  };
  std::uint64_t calls = 0;
  {
    auto fsys = std::make_shared<sim::file_system>();
    std::uint64_t acked = 0;
    workload(fsys, acked);
    calls = fsys->calls();
    REQUIRE(acked == 12);
  }
  REQUIRE(calls > 20);
  std::uint64_t checked = 0;
  for (std::uint64_t n = 1; n <= calls; ++n) {
    for (const auto mode : {sim::crash_mode::drop_all, sim::crash_mode::random}) {
      INFO("crash inside call " << n << " of " << calls);
      auto fsys = std::make_shared<sim::file_system>();
      fsys->crash_at(n, n * 7 + 1, mode);
      std::uint64_t acked = 0;
      try {
        workload(fsys, acked);
      } catch (const leftright::storage_error&) {
      }
      REQUIRE(fsys->dead());
      leftright::durable_options o;
      o.path = "/data/map";
      o.file_system = fsys->image()->copy();
      std::optional<std::pair<labelled_writer<std::uint64_t, std::string>,
                              leftright::map_reader<std::uint64_t, std::string, leftright::default_hash<std::uint64_t>,
                                                    leftright::default_eq<std::uint64_t>, labelled_traits>>>
          m;
      try {
        m.emplace(open_labelled<std::uint64_t, std::string>(o));
      } catch (const leftright::storage_error&) {
        // Only a crash before the first segment was durable leaves nothing to open.
        REQUIRE(acked == 0);
        continue;
      }
      const auto g = m->second.read();
      const std::uint64_t n_entries = g.size();
      CHECK(n_entries >= acked);
      CHECK(g.meta().first == n_entries);
      if (n_entries > 0) CHECK(g.meta().second == "batch " + std::to_string(n_entries));
      ++checked;
    }
  }
  CHECK(checked > calls);
}

}  // namespace LEFTRIGHT_TEST_FILE
