// SPDX-License-Identifier: Apache-2.0
// durable_writer::backup and shared_map::backup: a copy of the published state in a new map
// directory that open_map() recovers at that version (entries and metadata), written aside and
// renamed into place, so that it appears whole or not at all, also across a crash at any
// file-system call; a failed backup leaves the map usable.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <catch2/catch.hpp>
#include <leftright/cache.hpp>
#include <leftright/leftright.hpp>

#include "support/sim_fs.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using label = std::pair<std::uint64_t, std::string>;
struct labelled_traits : leftright::default_traits {
  using meta_type = label;
};
using K = std::uint64_t;
using V = std::string;
using hash_t = leftright::default_hash<K>;
using eq_t = leftright::default_eq<K>;
using model = std::map<K, V>;

auto open_labelled(const leftright::durable_options& o) {
  return leftright::open_map<K, V, hash_t, eq_t, labelled_traits>(o);
}

leftright::durable_options options_at(const std::filesystem::path& p,
                                      std::shared_ptr<leftright::detail::storage::file_system> fsys = nullptr) {
  leftright::durable_options o;
  o.path = p;
  o.durability = leftright::durability::sync;
  o.segment_size = 16 << 10;
  o.file_system = std::move(fsys);
  return o;
}

/// Publishes batches 1..n of a fixed history into w (and m), each labelled with its number.
template <class W>
void publish_history(W& w, model& m, int from, int to) {
  for (int b = from; b <= to; ++b) {
    for (int i = 0; i < 5; ++i) {
      const K k = static_cast<K>((b * 7 + i * 13) % 40);
      const V v = "b" + std::to_string(b) + "-" + std::to_string(i);
      w.insert_or_assign(k, v);
      m[k] = v;
    }
    if (b % 4 == 0) {
      w.erase(static_cast<K>(b % 40));
      m.erase(static_cast<K>(b % 40));
    }
    w.set_meta({static_cast<std::uint64_t>(b), "batch"});
    w.publish();
  }
}

template <class Reader>
model contents(const Reader& r) {
  model out;
  for (const auto& [k, v] : r.read()) out.emplace(k, v);
  return out;
}

}  // namespace

TEST_CASE("a backup opens at the version it copied, with its entries and metadata", "[durable][backup]") {
  lrtest::temp_dir dir("durable-backup");
  model m;
  auto [w, r] = open_labelled(options_at(dir.path() / "map"));
  publish_history(w, m, 1, 30);
  w.checkpoint();  // the backup copies the published state, whatever the log holds
  publish_history(w, m, 31, 37);
  const model at_backup = m;
  CHECK(w.backup(dir.path() / "copies" / "one") == 37);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "copies" / "one.partial"));
  publish_history(w, m, 38, 45);  // the map goes on; the backup does not change
  CHECK(contents(r) == m);
  {
    auto [bw, br] = open_labelled(options_at(dir.path() / "copies" / "one"));
    CHECK(bw.version() == 37);
    CHECK(br.read().meta() == label{37, "batch"});
    CHECK(contents(br) == at_backup);
    // A backup opened is a map: it writes on from its version.
    model forked = at_backup;
    publish_history(bw, forked, 100, 101);
    CHECK(bw.version() == 39);
  }
  auto [again, ar] = open_labelled(options_at(dir.path() / "copies" / "one"));
  CHECK(again.version() == 39);
  CHECK(ar.read().meta() == label{101, "batch"});
}

TEST_CASE("a backup onto an existing map, or a left-over partial one, is refused; the map goes on",
          "[durable][backup]") {
  lrtest::temp_dir dir("durable-backup-refused");
  model m;
  auto [w, r] = open_labelled(options_at(dir.path() / "map"));
  publish_history(w, m, 1, 3);
  CHECK_THROWS_AS(w.backup(dir.path() / "map"), leftright::storage_error);  // itself
  std::filesystem::create_directories(dir.path() / "b.partial");
  CHECK_THROWS_WITH(w.backup(dir.path() / "b"), Catch::Matchers::Contains("remove it"));
  std::filesystem::remove(dir.path() / "b.partial");
  CHECK(w.backup(dir.path() / "b") == 3);
  CHECK_THROWS_AS(w.backup(dir.path() / "b"), leftright::storage_error);  // a backup there already
  CHECK_FALSE(w.failed());
  publish_history(w, m, 4, 5);
  CHECK(w.version() == 5);
  CHECK(contents(r) == m);
}

TEST_CASE("a backup's target is checked before anything is written; nothing is left behind", "[durable][backup]") {
  namespace fs = std::filesystem;
  lrtest::temp_dir dir("durable-backup-target");
  model m;
  auto [w, r] = open_labelled(options_at(dir.path() / "map"));
  publish_history(w, m, 1, 3);
  auto& writer = w;  // for the lambda (a structured binding cannot be captured before C++20's clang 16)
  const auto refused = [&](const fs::path& to) -> leftright::storage_error {
    try {
      writer.backup(to);
    } catch (const leftright::storage_error& e) {
      return e;
    }
    FAIL("backup to '" << to.string() << "' succeeded");
    throw std::logic_error("not reached");
  };
  // A backup rerun to the name of the last one: refused at once, and no partial copy is left to
  // block the next one once the old backup is removed.
  REQUIRE(w.backup(dir.path() / "nightly") == 3);
  const leftright::storage_error again = refused(dir.path() / "nightly");
  CHECK(again.code().value() == EEXIST);
  CHECK_THAT(again.what(), Catch::Matchers::Contains("not empty"));
  CHECK_FALSE(fs::exists(dir.path() / "nightly.partial"));
  fs::remove_all(dir.path() / "nightly");
  CHECK(w.backup(dir.path() / "nightly") == 3);
  // A file where the copy should go.
  std::ofstream(dir.path() / "a-file") << "abc";
  CHECK(refused(dir.path() / "a-file").code().value() == EEXIST);
  CHECK_FALSE(fs::exists(dir.path() / "a-file.partial"));
  // No target, the map's own directory, a directory inside it.
  CHECK(refused("").code().value() == EINVAL);
  CHECK(refused(dir.path() / "map").code().value() == EINVAL);
  CHECK(refused(dir.path() / "map" / "inner").code().value() == EINVAL);
  CHECK(refused(dir.path() / "map" / ".." / "map" / "inner").code().value() == EINVAL);
  CHECK_FALSE(fs::exists(dir.path() / "map" / "inner.partial"));
  // An empty directory is taken (the copy replaces it), and a sibling whose name starts as the
  // map's is not inside it.
  fs::create_directory(dir.path() / "empty");
  CHECK(w.backup(dir.path() / "empty") == 3);
  CHECK(w.backup(dir.path() / "map-copy") == 3);
  CHECK_FALSE(w.failed());
  publish_history(w, m, 4, 5);
  CHECK(contents(r) == m);
}

TEST_CASE("sim: a backup whose write fails removes its partial copy; the next one succeeds", "[durable][backup][sim]") {
  auto fsys = std::make_shared<sim::file_system>();
  model m;
  auto [w, r] = open_labelled(options_at("/data/map", fsys));
  publish_history(w, m, 1, 4);
  for (const sim::call c : {sim::call::write, sim::call::sync, sim::call::create, sim::call::rename}) {
    INFO("the backup's first call of kind " << static_cast<int>(c) << " fails");
    const std::uint64_t fired = fsys->faults_fired();
    fsys->inject(c, 1, sim::fault::eio);
    CHECK_THROWS_AS(w.backup("/data/backup"), leftright::storage_error);
    CHECK(fsys->faults_fired() == fired + 1);
    CHECK_FALSE(fsys->exists("/data/backup.partial"));
    CHECK_FALSE(fsys->exists("/data/backup"));
    CHECK_FALSE(w.failed());
  }
  CHECK(w.backup("/data/backup") == 4);
  auto [bw, br] = open_labelled(options_at("/data/backup", fsys));
  CHECK(contents(br) == m);
}

TEST_CASE("a backup to a path written with a trailing separator is the directory it names", "[durable][backup]") {
  // The partial copy was <to>/.partial, inside the backup's own directory, which the rename
  // into place could then never replace: every such backup failed.
  lrtest::temp_dir dir("durable-backup-slash");
  model m;
  auto [w, r] = open_labelled(options_at(dir.path() / "map"));
  publish_history(w, m, 1, 3);
  const std::filesystem::path to = dir.path() / "copies" / "one";
  CHECK(w.backup(to.string() + "/") == 3);
  CHECK_FALSE(std::filesystem::exists(to / ".partial"));
  CHECK_FALSE(std::filesystem::exists(to.string() + ".partial"));
  auto [bw, br] = open_labelled(options_at(to));
  CHECK(bw.version() == 3);
  CHECK(contents(br) == m);
}

TEST_CASE("a backup opened read-only excludes a writable open of it, as a map's own directory does",
          "[durable][backup]") {
  // A backup had no LOCK file, and a read-only open of a directory without one locks nothing
  // (it writes nothing, so it cannot make one): a writable open then went ahead under it.
  lrtest::temp_dir dir("durable-backup-lock");
  model m;
  auto [w, r] = open_labelled(options_at(dir.path() / "map"));
  publish_history(w, m, 1, 3);
  const std::filesystem::path to = dir.path() / "copy";
  REQUIRE(w.backup(to) == 3);
  {
    auto ro = leftright::open_map_read_only<K, V, hash_t, eq_t, labelled_traits>(options_at(to));
    CHECK(ro.version() == 3);
    CHECK_THROWS_AS(open_labelled(options_at(to)), leftright::storage_error);
  }
  auto [bw, br] = open_labelled(options_at(to));  // once the read-only map is gone
  CHECK(bw.version() == 3);
  CHECK(contents(br) == m);
}

TEST_CASE("sim: a backup cut by a crash at any file-system call is absent or whole", "[durable][backup][sim]") {
  const auto run_until_backup = [](const std::shared_ptr<sim::file_system>& fsys, model& m) {
    auto made = open_labelled(options_at("/data/map", fsys));
    publish_history(made.first, m, 1, 12);
    return made;
  };
  // Crash at the n-th file-system call from the backup's start, for n = 0, 1, ... until the
  // backup returns before the crash (then the crash comes right after it).
  int whole = 0, absent = 0;
  bool finished = false;
  for (std::uint64_t n = 0; !finished; ++n) {
    REQUIRE(n < 200);
    for (std::uint64_t seed : {1u, 2u}) {
      INFO("crash at call " << n << " of the backup, seed " << seed);
      auto fsys = std::make_shared<sim::file_system>();
      model at_backup;
      std::shared_ptr<leftright::detail::storage::file_system> image;
      std::optional<std::uint64_t> returned;
      {
        auto [w, r] = run_until_backup(fsys, at_backup);
        fsys->crash_at(n, seed);
        try {
          returned = w.backup("/data/backup");
        } catch (const leftright::storage_error&) {
        }
        image = fsys->image();
        if (!image) image = fsys->crash(seed);
      }
      auto img = std::static_pointer_cast<sim::file_system>(image);
      if (img->exists("/data/backup")) {
        auto [bw, br] = open_labelled(options_at("/data/backup", img));
        CHECK(bw.version() == 12);
        CHECK(br.read().meta() == label{12, "batch"});
        CHECK(contents(br) == at_backup);
        ++whole;
      } else {
        CHECK_FALSE(returned.has_value());  // a backup that returned is durable
        ++absent;
      }
      if (returned) {
        CHECK(*returned == 12);
        finished = true;
      }
      // The map itself is unharmed.
      auto [mw, mr] = open_labelled(options_at("/data/map", img));
      CHECK(mw.version() == 12);
      CHECK(contents(mr) == at_backup);
    }
  }
  CHECK(whole > 0);
  CHECK(absent > 10);
}

TEST_CASE("shared_map::backup copies a durable map after the writes queued before it", "[durable][backup][shared_map]") {
  lrtest::temp_dir dir("shared-backup");
  {
    leftright::shared_map<K, V> m(options_at(dir.path() / "map"));
    m.insert_or_assign(1, "one");
    m.post([](auto& b) { b.insert_or_assign(2, "two"); });
    CHECK(m.backup(dir.path() / "copy") == 2);
    m.erase(1);
  }
  leftright::shared_map<K, V> copy(options_at(dir.path() / "copy"));
  CHECK(copy.version() == 2);
  CHECK(copy.get(1) == std::optional<V>("one"));
  CHECK(copy.get(2) == std::optional<V>("two"));
  leftright::shared_map<K, V> in_memory;
  CHECK_THROWS_AS(in_memory.backup(dir.path() / "nothing"), std::logic_error);
}

TEST_CASE("a durable cache's backup opens as a cache with its entries", "[durable][backup][cache]") {
  lrtest::temp_dir dir("cache-backup");
  {
    leftright::cache<K, V> c(options_at(dir.path() / "cache"), leftright::cache_options{.max_entries = 10});
    c.put(1, "one");
    c.put(2, "two");
    c.backup(dir.path() / "copy");
    c.invalidate(1);
  }
  leftright::cache<K, V> copy(options_at(dir.path() / "copy"), leftright::cache_options{.max_entries = 10});
  CHECK(copy.get(1) == std::optional<V>("one"));
  CHECK(copy.get(2) == std::optional<V>("two"));
  leftright::cache<K, V> in_memory;
  CHECK_THROWS_AS(in_memory.backup(dir.path() / "nothing"), std::logic_error);
}

}  // namespace LEFTRIGHT_TEST_FILE
