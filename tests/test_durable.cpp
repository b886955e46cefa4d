// SPDX-License-Identifier: Apache-2.0
// The durable map: round trips in every mode and for every built-in codec, checkpoints, what is
// and is not persisted, and the recovery report.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/mapping_sync_fs.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace fs = std::filesystem;

namespace {


leftright::durable_options options(const fs::path& p, leftright::durability d) {
  leftright::durable_options o;
  o.path = p / "map";
  o.durability = d;
  o.sync_interval = std::chrono::milliseconds(5);
  o.segment_size = 1 << 16;  // small segments: exercise rolling
  return o;
}

template <class Reader>
auto contents(Reader& r) {
  using guard_t = decltype(r.read());
  std::map<std::decay_t<decltype(std::declval<typename guard_t::value_type>().first)>,
           std::decay_t<decltype(std::declval<typename guard_t::value_type>().second)>>
      m;
  for (const auto& [k, v] : r.read()) m.emplace(k, v);
  return m;
}

enum class color : std::uint8_t { red = 1, green = 2, blue = 3 };

template <class T>
T value_of(long i);
template <>
std::string value_of<std::string>(long i) {
  i = std::labs(i);
  return std::string(static_cast<std::size_t>(i % 50), 'a' + static_cast<char>(i % 26)) + '\0' + "z";
}
template <>
std::uint64_t value_of<std::uint64_t>(long i) {
  return static_cast<std::uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
}
template <>
std::vector<std::uint32_t> value_of<std::vector<std::uint32_t>>(long i) {
  i = std::labs(i);
  return std::vector<std::uint32_t>(static_cast<std::size_t>(i % 7), static_cast<std::uint32_t>(i));
}
template <>
std::pair<double, std::string> value_of<std::pair<double, std::string>>(long i) {
  return {static_cast<double>(i) / 3.0, std::to_string(i)};
}
template <>
std::tuple<std::int16_t, color, float> value_of<std::tuple<std::int16_t, color, float>>(long i) {
  return {static_cast<std::int16_t>(-i), static_cast<color>(1 + i % 3), static_cast<float>(i) * 0.5f};
}
template <>
std::int32_t value_of<std::int32_t>(long i) {
  return static_cast<std::int32_t>(-i * 1000);
}

}  // namespace

using durable_kv = std::tuple<std::pair<std::uint64_t, std::string>, std::pair<std::string, std::uint64_t>,
                              std::pair<std::int32_t, std::vector<std::uint32_t>>,
                              std::pair<std::uint64_t, std::pair<double, std::string>>,
                              std::pair<std::string, std::tuple<std::int16_t, color, float>>>;

TEMPLATE_LIST_TEST_CASE("what was published reopens, in every mode and for every built-in codec",
                        "[durable]", durable_kv) {
  using K = typename TestType::first_type;
  using V = typename TestType::second_type;
  const auto mode = GENERATE(leftright::durability::none, leftright::durability::async,
                             leftright::durability::sync);
  lrtest::temp_dir dir("durable");
  std::map<K, V> model;
  {
    auto [w, r] = leftright::open_map<K, V>(options(dir.path(), mode));
    CHECK(w.version() == 0);
    CHECK(w.recovery().version == 0);
    for (long b = 1; b <= 30; ++b) {
      for (long i = 0; i < 20; ++i) {
        const long k = (b * 7 + i * 13) % 97;
        w.insert_or_assign(value_of<K>(k), value_of<V>(b * 100 + i));
        model[value_of<K>(k)] = value_of<V>(b * 100 + i);
      }
      w.erase(value_of<K>(b % 97));
      model.erase(value_of<K>(b % 97));
      w.insert(value_of<K>(b % 5), value_of<V>(-b));  // only if absent
      model.emplace(value_of<K>(b % 5), value_of<V>(-b));
      CHECK(w.publish() == static_cast<std::uint64_t>(b));
    }
    CHECK(contents(r) == model);
  }
  auto [w, r] = leftright::open_map<K, V>(options(dir.path(), mode));
  CHECK(w.version() == 30);
  CHECK(w.recovery().version == 30);
  CHECK(w.recovery().records_replayed == 30);
  CHECK_FALSE(w.recovery().tail_truncated);
  CHECK(r.version() == 30);
  CHECK(contents(r) == model);
}

TEST_CASE("checkpoint, more log, reopen; checkpoints remove the log they cover", "[durable]") {
  lrtest::temp_dir dir("durable");
  const auto o = options(dir.path(), leftright::durability::sync);
  std::map<std::uint64_t, std::string> model;
  auto publish_batch = [&](auto& w, std::uint64_t b) {
    for (std::uint64_t i = 0; i < 50; ++i) {
      w.insert_or_assign(b * 1000 + i, std::string(100, static_cast<char>('a' + b % 26)));
      model[b * 1000 + i] = std::string(100, static_cast<char>('a' + b % 26));
    }
    w.erase_if([b](const std::uint64_t& k, const std::string&) { return k % 1000 == b % 50; });
    std::erase_if(model, [b](const auto& kv) { return kv.first % 1000 == b % 50; });
    w.publish();
  };
  auto count_files = [&](const char* prefix) {
    int n = 0;
    for (const auto& e : fs::directory_iterator(o.path)) n += e.path().filename().string().rfind(prefix, 0) == 0;
    return n;
  };
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
    for (std::uint64_t b = 1; b <= 40; ++b) publish_batch(w, b);
    CHECK(count_files("wal-") > 1);  // 64 KiB segments: the log rolled
    w.checkpoint();
    CHECK(count_files("snap-") == 1);
    CHECK(count_files("wal-") == 1);  // only the fresh segment after the checkpoint
    for (std::uint64_t b = 41; b <= 60; ++b) publish_batch(w, b);
    CHECK(w.checkpoints() == 1);
  }
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
    CHECK(w.recovery().snapshot_version == 40);
    CHECK(w.recovery().records_replayed == 20);
    CHECK(w.version() == 60);
    CHECK(contents(r) == model);
    w.checkpoint();
    w.checkpoint();  // nothing new: still fine
    for (std::uint64_t b = 61; b <= 62; ++b) publish_batch(w, b);
  }
  auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
  CHECK(w.recovery().snapshot_version == 60);
  CHECK(w.recovery().records_replayed == 2);
  CHECK(count_files("snap-") == 1);
  CHECK(contents(r) == model);
}

TEST_CASE("an automatic checkpoint bounds the log", "[durable]") {
  lrtest::temp_dir dir("durable");
  auto o = options(dir.path(), leftright::durability::none);
  o.checkpoint_bytes = 1 << 18;
  std::map<std::uint64_t, std::uint64_t> model;
  {
    auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    for (std::uint64_t b = 1; b <= 300; ++b) {
      for (std::uint64_t i = 0; i < 100; ++i) {
        w.insert_or_assign(i * 7 + b % 3, b);
        model[i * 7 + b % 3] = b;
      }
      w.publish();
    }
    CHECK(w.checkpoints() >= 2);
  }
  auto [w, r] = leftright::open_map<std::uint64_t, std::uint64_t>(o);
  CHECK(w.version() == 300);
  CHECK(w.recovery().snapshot_version > 0);
  CHECK(contents(r) == model);
}

TEST_CASE("an automatic checkpoint counts the log a reopen found: a map reopened often still checkpoints",
          "[durable]") {
  // The count of log bytes since the last checkpoint started at zero on every open, so a map
  // reopened before each run wrote checkpoint_bytes never checkpointed: its log, and the time
  // to recover it, grew without bound.
  lrtest::temp_dir dir("durable");
  auto o = options(dir.path(), leftright::durability::none);
  o.checkpoint_bytes = 256 << 10;
  std::map<int, std::string> model;
  std::uint64_t checkpoints = 0;
  for (int run = 0; run < 4; ++run) {  // each run logs about 100 KiB, well under the threshold
    auto [w, r] = leftright::open_map<int, std::string>(o);
    for (int i = 0; i < 25; ++i) {
      const std::string v(4000, static_cast<char>('a' + run));
      w.insert_or_assign(run * 100 + i, v);
      model[run * 100 + i] = v;
      w.publish();
    }
    checkpoints += w.checkpoints();
  }
  CHECK(checkpoints >= 1);
  auto [w, r] = leftright::open_map<int, std::string>(o);
  CHECK(w.version() == 100);
  CHECK(w.recovery().snapshot_version > 0);
  CHECK(contents(r) == model);
}

TEST_CASE("unpublished and discarded operations are never persisted", "[durable]") {
  lrtest::temp_dir dir("durable");
  const auto o = options(dir.path(), leftright::durability::sync);
  {
    auto [w, r] = leftright::open_map<std::string, std::string>(o);
    w.insert_or_assign("kept", "1");
    w.publish();
    w.insert_or_assign("discarded", "2");
    w.discard();
    w.publish();  // an empty batch: still a version
    w.insert_or_assign("queued", "3");
    w.clear();
  }  // destroyed with two queued operations
  auto [w, r] = leftright::open_map<std::string, std::string>(o);
  CHECK(w.version() == 2);
  CHECK(r.get("kept") == "1");
  CHECK_FALSE(r.contains("discarded"));
  CHECK_FALSE(r.contains("queued"));
  CHECK(r.size() == 1);
}

TEST_CASE("clear and insert replay in order", "[durable]") {
  lrtest::temp_dir dir("durable");
  const auto o = options(dir.path(), leftright::durability::sync);
  {
    auto [w, r] = leftright::open_map<int, int>(o);
    for (int i = 0; i < 10; ++i) w.insert_or_assign(i, i);
    w.publish();
    w.clear();
    w.insert(3, 30);
    w.insert(3, 31);
    w.publish();
  }
  auto [w, r] = leftright::open_map<int, int>(o);
  CHECK(r.size() == 1);
  CHECK(r.get(3) == 30);
}

TEST_CASE("large values (stored once, shared by both copies) survive a reopen", "[durable][shared]") {
  using big = std::vector<std::uint64_t>;
  lrtest::temp_dir dir("durable");
  const auto o = options(dir.path(), leftright::durability::none);
  {
    auto [w, r] = leftright::open_map<std::string, big>(o);
    for (int i = 0; i < 100; ++i) w.insert_or_assign("k" + std::to_string(i), big(128, static_cast<std::uint64_t>(i)));
    w.publish();
    w.checkpoint();
    w.insert_or_assign("k5", big(3, 5));
    w.publish();
  }
  auto [w, r] = leftright::open_map<std::string, big>(o);
  CHECK(r.size() == 100);
  CHECK(r.get("k5") == big(3, 5));
  CHECK(r.get("k99") == big(128, 99));
}

TEST_CASE("readers of a durable map outlive its writer; the directory can then be reopened",
          "[durable]") {
  lrtest::temp_dir dir("durable");
  const auto o = options(dir.path(), leftright::durability::async);
  auto opened = leftright::open_map<int, int>(o);
  auto r = std::move(opened.second);
  {
    auto w = std::move(opened.first);
    w.insert_or_assign(1, 1);
    w.publish();
    w.flush();
  }
  CHECK(r.get(1) == 1);
  auto [w2, r2] = leftright::open_map<int, int>(o);
  CHECK(r2.get(1) == 1);
  CHECK(r.get(1) == 1);  // the old reader still reads its own memory
}

namespace {
/// Counts the syncs of the log's mappings (the async syncer's, a flush's), and fails every one
/// once armed, as a disk that stopped writing.
struct watched_sync_fs final : lrtest::mapping_sync_fs {
  using mapping_sync_fs::mapping_sync_fs;
  std::atomic<int> syncs{0};       ///< [T1] seq_cst: read by the test thread while the syncer counts
  std::atomic<bool> armed{false};  ///< [T2] seq_cst: set by the test thread, read by the syncer
  void sync_mapping(leftright::detail::storage::mapping& m, std::size_t off, std::size_t len) override {
    if (armed) throw leftright::storage_error("log", "msync", EIO, "injected");  // [T2]
    ++syncs;  // [T1]
    m.sync(off, len);
  }
};
}  // namespace

TEST_CASE("durability::async: a sync_interval too long for the clock's nanoseconds waits, not spins",
          "[durable]") {
  // The background syncer waited with wait_for(sync_interval), whose deadline, in nanoseconds,
  // overflowed for an interval past about 292 years: each wait ended at once, and the thread
  // synced the log as soon as anything was in it, a core kept busy for the life of the map.
  lrtest::temp_dir dir("durable-async-long");
  auto fsys = std::make_shared<watched_sync_fs>(leftright::detail::storage::default_file_system());
  auto o = options(dir.path(), leftright::durability::async);
  o.sync_interval = std::chrono::hours(24 * 365 * 1000);
  o.file_system = fsys;
  auto [w, r] = leftright::open_map<int, int>(o);
  w.insert_or_assign(1, 1);
  w.publish();  // in the page cache: the syncer's to sync, a thousand years from now
  // Gives a syncer that does not wait the time to sync it (the old one did so at once). The
  // result does not depend on the bound: a syncer that waits never syncs within it.
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (fsys->syncs == 0 && std::chrono::steady_clock::now() < until) {  // [T1]
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(fsys->syncs == 0);  // [T1]
  w.flush();
  CHECK(fsys->syncs > 0);  // [T1]
  CHECK(r.get(1) == 1);
}

TEST_CASE("durability::async: failed() says so once the background sync failed, before any call",
          "[durable]") {
  lrtest::temp_dir dir("durable-async-failed");
  auto fsys = std::make_shared<watched_sync_fs>(leftright::detail::storage::default_file_system());
  auto o = options(dir.path(), leftright::durability::async);  // syncs every 5 ms
  o.file_system = fsys;
  auto [w, r] = leftright::open_map<int, int>(o);
  w.insert_or_assign(1, 1);
  w.publish();
  fsys->armed = true;  // [T2]
  w.insert_or_assign(2, 2);
  w.publish();  // in the page cache: the syncer's to sync, and its sync fails
  // A health check polls failed() and makes no other call: it must see the failure (it saw
  // none until the next call, which then failed).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!w.failed() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(w.failed());
  w.insert_or_assign(3, 3);
  CHECK_THROWS_WITH(w.publish(), Catch::Matchers::Contains("background sync failed"));
  CHECK(r.get(2) == 2);  // reads go on
  CHECK_FALSE(r.get(3).has_value());
}

TEST_CASE("try_publish logs only what it publishes", "[durable]") {
  lrtest::temp_dir dir("durable");
  const auto o = options(dir.path(), leftright::durability::sync);
  {
    auto [w, r] = leftright::open_map<int, int>(o);
    w.insert_or_assign(1, 1);
    w.publish();
    auto g = r.read();
    w.insert_or_assign(2, 2);
    CHECK(w.try_publish());  // g reads the current copy
    w.insert_or_assign(3, 3);
    CHECK_FALSE(w.try_publish());  // now g is in the copy to write: nothing published or logged
  }
  auto [w, r] = leftright::open_map<int, int>(o);
  CHECK(w.version() == 2);
  CHECK(r.contains(2));
  CHECK_FALSE(r.contains(3));
}

TEST_CASE("a child made by fork() does not keep the directory locked", "[durable]") {
  // A pre-fork server: the parent opens the map, forks a worker, later closes the map; the
  // worker lives on. The directory must then open again.
  lrtest::temp_dir tmp("fork");
  leftright::durable_options o;
  o.path = tmp.path() / "map";
  auto m = std::make_optional(leftright::open_map<std::uint64_t, std::uint64_t>(o));
  m->first.insert_or_assign(1, 10);
  REQUIRE(m->first.publish() == 1);

  int release[2], started[2];
  REQUIRE(::pipe(release) == 0);
  REQUIRE(::pipe(started) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the worker: says it runs, then waits until told, touching nothing of the map
    // fork() has returned here, so the fork handlers that let go of the lock have run.
    const ssize_t said = ::write(started[1], "s", 1);
    char c;
    const ssize_t got = ::read(release[0], &c, 1);
    ::_exit(said == 1 && got == 1 ? 0 : 1);
  }
  ::close(release[0]);
  ::close(started[1]);
  char c;
  REQUIRE(::read(started[0], &c, 1) == 1);  // the worker runs (the lock's copy is let go as it starts)
  ::close(started[0]);
  m.reset();  // the parent closes its map while the worker still runs
  std::uint64_t reopened_at = 0;
  std::string error;
  try {
    auto again = leftright::open_map<std::uint64_t, std::uint64_t>(o);
    reopened_at = again.second.version();
  } catch (const leftright::storage_error& e) {
    error = e.what();
  }
  const ssize_t sent = ::write(release[1], "x", 1);
  ::close(release[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(sent == 1);
  CHECK(WIFEXITED(status));
  INFO("reopen: " << error);
  CHECK(reopened_at == 1);
}

}  // namespace LEFTRIGHT_TEST_FILE
