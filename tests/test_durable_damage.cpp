// SPDX-License-Identifier: Apache-2.0
// Damaged files and hostile environments for the durable map (DESIGN.md section 3): whatever is
// done to the files, open_map() either recovers the state after some prefix of the published
// batches, exactly, or throws storage_error. Never a crash, a signal, another exception type, or
// content that is no prefix.
//
// The base: a map of <uint64_t, std::string> written in durability::sync with 8 KiB segments,
// 290 batches, checkpoints after batches 100 and 200 (so: snap-...c8.dat, then a few segments
// holding records 201..290). Every test works on a copy of it.
//   - random trials (seeded, LEFTRIGHT_SEED replays): truncate a file, flip bits (a segment
//     header, the last record, any record, the used part of a segment, the snapshot header, data
//     or trailer, anywhere), zero a range, append bytes, remove a file, or two of these; then open
//     IN A CHILD PROCESS, which exits 0 (opened, content == the model after the recovered version)
//     or 1 (storage_error; its what() goes to stderr). Anything else fails the test.
//   - deterministic cases: (a) a damaged last record is a torn tail: cut, the rest recovered,
//     and later recoveries stack; (b) a damaged middle record of a synced log is refused, naming
//     the file and offset; (c) a truncated snapshot is refused, naming it; (d) bytes appended past
//     the end change nothing; (e) other key or value types are refused; (f) one open map per
//     directory, in this process and from another one; (g) a path that is a regular file, or an
//     unwritable directory (as root: in a child that becomes nobody), is refused.
//   - disk full without root: a child sets RLIMIT_FSIZE to 1 MiB (SIGXFSZ ignored, so writes
//     fail with EFBIG instead of killing it), opens a sync map with 256 KiB segments and publishes
//     batches of ~4 KiB values until something throws: a storage_error, after which failed() is
//     true, publish() and checkpoint() throw storage_error, and readers show exactly the last
//     batch whose publish() returned; reopened by the parent without the limit, the map holds
//     exactly those batches. Three ways to hit the limit: a snapshot (explicit checkpoint()), a
//     record too large for any segment (posix_fallocate), and an automatic checkpoint inside
//     publish() (that publish() returns, its batch is published; the writer is failed() and the
//     next call throws).
//   - a damaged header of the last segment, with records after it, must be refused.
//
// Children never return into Catch2: they leave through _exit() (no Catch2 macros in them).
// The base map, the workload, the random damage, the children and the disk-full child live in
// tests/support/ (damage_base.hpp, file_damage.hpp, child_process.hpp, disk_full.hpp).
// No atomics in this file.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "support/child_process.hpp"
#include "support/damage_base.hpp"
#include "support/disk_full.hpp"
#include "support/file_damage.hpp"
#include "support/model_map.hpp"
#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

using namespace lrtest;
using namespace lrtest::damage;
using lrtest::disk_full::check_disk_full;
using lrtest::disk_full::run_disk_full;

TEST_CASE("damage: the undamaged base opens with every batch", "[durable][damage]") {
  base_copy c;
  require_opens_at(c.dir, base_batches);
  const child_result res = run_in_child([&](int fd) { return open_and_check(c.dir, fd); });
  INFO(res.describe());
  CHECK(res.exited(0));
}

TEST_CASE("damage: random truncations, bit flips, zeroed ranges, appended and removed files",
          "[durable][damage]") {
  const std::uint64_t seed = lrtest::test_seed();
  std::mt19937_64 rng(seed);
  constexpr int max_trials = 250;
  const auto budget = std::chrono::seconds(8);
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::string> bad;
  int trials = 0, opened = 0, refused = 0, cut = 0;
  for (; trials < max_trials && std::chrono::steady_clock::now() - started < budget; ++trials) {
    base_copy c;
    std::string what = damage_at_random(c.files(), rng);
    if (rng() % 6 == 0) {
      try {
        what += "; then " + damage_at_random(c.files(), rng);
      } catch (const std::exception& e) {  // e.g. the first damage removed the file it picked
        what += "; (no second damage: " + std::string(e.what()) + ")";
      }
    }
    const child_result res = run_in_child([&](int fd) { return open_and_check(c.dir, fd); });
    if (res.exited(0)) {
      ++opened;
      if (res.out.find("tail cut") != std::string::npos) ++cut;
    } else if (res.exited(1)) {
      ++refused;
    } else {
      bad.push_back("trial " + std::to_string(trials) + ": " + what + " -> " + res.describe());
    }
  }
  WARN(trials << " damage trials: " << opened << " opened at a prefix (" << cut << " with a cut tail), "
              << refused << " refused with storage_error");
  std::string all;
  for (const auto& b : bad) all += b + "\n";
  INFO(all);
  CHECK(bad.empty());
  CHECK(trials > 0);
}

TEST_CASE("damage (a): a damaged last record is a torn tail: cut, the rest recovered", "[durable][damage]") {
  base_copy c;
  const auto recs = records_of(c.last_segment());
  const record_info last = recs.back();
  REQUIRE(last.seq == base_batches);
  xor_byte(c.last_segment(), last.offset + record_header + last.len / 2, 0x5a);
  {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(c.dir));
    INFO("note: " << w.recovery().note);
    CHECK(w.recovery().tail_truncated);
    CHECK(w.recovery().note.find(base().segments.back()) != std::string::npos);
    CHECK_FALSE(w.recovery().note.ends_with("; "));  // findings are separated, not ended, by "; "
    REQUIRE(w.version() == base_batches - 1);
    CHECK(w.recovery().snapshot_version == base_snapshot);
    const std::string diff = lrtest::compare_to_model(r, model_at(base_batches - 1));
    INFO(diff);
    REQUIRE(diff.empty());
  }
  // The damaged segment is no longer the last: a second recovery reads it up to the cut and goes
  // on; new batches go to a fresh segment, and a third recovery has them all.
  {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(c.dir));
    INFO("note: " << w.recovery().note);
    REQUIRE(w.version() == base_batches - 1);
    write_batches(w, base_batches + 5, 0);
  }
  require_opens_at(c.dir, base_batches + 5);
}

TEST_CASE("damage (b): a damaged middle record of a synced log is refused, naming file and offset",
          "[durable][damage]") {
  base_copy c;
  const auto& segs = base().segments;
  std::size_t which = 0;
  std::uint64_t off = 0;
  std::string expect_in_what;
  SECTION("the payload of a middle record of the last segment") {
    which = segs.size() - 1;
    const auto recs = records_of(c.segment(which));
    off = recs[recs.size() / 2].offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + record_header + 3, 0x01));
    expect_in_what = "offset " + std::to_string(off);
  }
  SECTION("the header (seq field) of the first record of the last segment") {
    which = segs.size() - 1;
    off = records_of(c.segment(which)).front().offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + 16, 0x80));
    expect_in_what = "offset " + std::to_string(off);
  }
  SECTION("a middle record of the first segment (not the last one)") {
    which = 0;
    const auto recs = records_of(c.segment(which));
    off = recs[recs.size() / 2].offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + record_header + 1, 0x10));
    expect_in_what = "offset " + std::to_string(off);
  }
  SECTION("the last record of the first segment: the next segment starts after it (a hole)") {
    which = 0;
    off = records_of(c.segment(which)).back().offset;
    REQUIRE_NOTHROW(xor_byte(c.segment(which), off + record_header, 0x04));
    expect_in_what = "offset " + std::to_string(off);
  }
  const auto before = names_in(c.dir);
  const storage_error e = open_error(c.dir);
  INFO("what(): " << e.what());
  CHECK(std::string(e.what()).find(segs[which]) != std::string::npos);
  CHECK(std::string(e.what()).find(expect_in_what) != std::string::npos);
  // Refusing repairs nothing: every file is still there for a human to look at.
  CHECK(names_in(c.dir) == before);
}

TEST_CASE("damage: a damaged last record that the segment's successor record says was durable is refused",
          "[durable][damage]") {
  // A restart that writes nothing ends the newest segment with a successor record naming every
  // recovered version durable, and starts an empty segment after it. Damage to that segment's
  // last record is then no torn tail: it was acknowledged, and cutting it would lose it.
  base_copy c;
  require_opens_at(c.dir, base_batches);  // the restart
  REQUIRE(names_in(c.dir, "wal-").size() == base().segments.size() + 1);
  const auto recs = records_of(c.last_segment());
  REQUIRE(recs.back().seq == base_batches);
  const std::uint64_t off = recs.back().offset;
  xor_byte(c.last_segment(), off + record_header + recs.back().len / 2, 0x5a);
  const auto before = names_in(c.dir);
  const storage_error e = open_error(c.dir);
  INFO("what(): " << e.what());
  CHECK(std::string(e.what()).find(base().segments.back()) != std::string::npos);
  CHECK(std::string(e.what()).find("offset " + std::to_string(off)) != std::string::npos);
  CHECK(std::string(e.what()).find("says it was durable") != std::string::npos);
  CHECK(names_in(c.dir) == before);  // refusing repairs nothing
}

TEST_CASE("damage (c): a truncated or corrupt snapshot is refused, naming it", "[durable][damage]") {
  base_copy c;
  const std::uint64_t size = fs::file_size(c.snapshot());
  SECTION("half of it") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), size / 2)); }
  SECTION("one byte short") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), size - 1)); }
  SECTION("its header only") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), 40)); }
  SECTION("empty") { REQUIRE_NOTHROW(fs::resize_file(c.snapshot(), 0)); }
  SECTION("a bit flipped in its data") { REQUIRE_NOTHROW(xor_byte(c.snapshot(), size / 2, 0x08)); }
  const storage_error e = open_error(c.dir);
  INFO("what(): " << e.what());
  CHECK(std::string(e.what()).find(base().snapshot) != std::string::npos);
}

TEST_CASE("damage (d): bytes appended past the end of log segments change nothing", "[durable][damage]") {
  base_copy c;
  std::mt19937_64 rng(7);
  std::vector<unsigned char> garbage(3000);
  for (auto& x : garbage) x = static_cast<unsigned char>(rng() | 1);
  SECTION("zeros after every segment") {
    for (std::size_t i = 0; i < base().segments.size(); ++i) {
      REQUIRE_NOTHROW(append_bytes(c.segment(i), std::vector<unsigned char>(65536)));
    }
  }
  SECTION("garbage after the last segment") { REQUIRE_NOTHROW(append_bytes(c.last_segment(), garbage)); }
  SECTION("garbage after the first segment") { REQUIRE_NOTHROW(append_bytes(c.segment(0), garbage)); }
  require_opens_at(c.dir, base_batches);
}

TEST_CASE("damage (e): reopening with other key or value types is refused", "[durable][damage]") {
  temp_dir tmp("types");
  const fs::path log_only = tmp.path() / "log-only";
  {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(log_only));
    write_batches(w, 10, 0);
  }
  base_copy c;
  for (const fs::path& dir : {c.dir, log_only}) {
    INFO("directory " << dir << (dir == log_only ? " (log only)" : " (snapshot and log)"));
    const auto before = names_in(dir);
    auto refuse = [&](auto opened_as) {
      using map_types = decltype(opened_as);
      try {
        auto m = leftright::open_map<typename map_types::first_type, typename map_types::second_type>(options_for(dir));
        FAIL("opened with other types at version " << m.first.version());
      } catch (const storage_error& e) {
        INFO("what(): " << e.what());
        // It names what is there.
        CHECK(std::string(e.what()).find("'u64'") != std::string::npos);
        CHECK(std::string(e.what()).find("'str'") != std::string::npos);
      }
    };
    refuse(std::pair<std::uint64_t, std::uint64_t>{});
    refuse(std::pair<std::string, std::string>{});
    refuse(std::pair<std::uint32_t, std::string>{});
    refuse(std::pair<std::int64_t, std::string>{});
    CHECK(names_in(dir) == before);
  }
  // The refusals changed nothing: the right types still find everything.
  require_opens_at(c.dir, base_batches);
  require_opens_at(log_only, 10);
}

TEST_CASE("damage (f): one open map per directory, in this process and from another", "[durable][damage]") {
  temp_dir tmp("lock");
  const fs::path dir = tmp.path() / "map";
  auto opened_in_child = [&] { return run_in_child([&](int fd) { return open_and_check(dir, fd); }); };
  auto first = leftright::open_map<key_type, value_type>(options_for(dir));
  {
    auto& w = first.first;
    write_batches(w, 3, 0);
    const storage_error e = open_error(dir);
    INFO("what(): " << e.what());
    CHECK(e.operation() == "lock");
    CHECK(std::string(e.what()).find("in use") != std::string::npos);
    // The refused open released nothing (an fcntl lock would be dropped by its close): the
    // writer goes on, and the directory is still locked.
    write_batches(w, 4, 0);
    CHECK(first.second.version() == 4);
    CHECK_THROWS_AS((leftright::open_map<key_type, value_type>(options_for(dir))), storage_error);
    const child_result res = opened_in_child();
    INFO(res.describe());
    CHECK(res.exited(1));
    CHECK(res.out.find("in use") != std::string::npos);
  }
  // The first writer is gone (its reader lives on, still showing version 4): the directory
  // opens, here and in a child.
  { auto gone = std::move(first.first); }
  CHECK(first.second.version() == 4);
  require_opens_at(dir, 4);
  const child_result res = opened_in_child();
  INFO(res.describe());
  CHECK(res.exited(0));
  CHECK(res.out.find("version 4") != std::string::npos);
  CHECK(first.second.version() == 4);
}

TEST_CASE("damage (g): a path that is a file, or an unwritable directory, is refused", "[durable][damage]") {
  temp_dir tmp("paths");
  const fs::path file = tmp.path() / "plain-file";
  write_bytes(file, {1, 2, 3});
  SECTION("the path is a regular file") {
    const storage_error e = open_error(file);
    INFO("what(): " << e.what());
    CHECK(std::string(e.what()).find("plain-file") != std::string::npos);
    CHECK(read_bytes(file) == std::vector<unsigned char>{1, 2, 3});
  }
  SECTION("the path is below a regular file") {
    const storage_error e = open_error(file / "map");
    INFO("what(): " << e.what());
    CHECK(std::string(e.what()).find("plain-file") != std::string::npos);
  }
  SECTION("a durability that is none of the three") {
    // Designated, as a user writes the options (every member has an initializer: no warning).
    const leftright::durable_options o{.path = tmp.path() / "map", .durability = static_cast<leftright::durability>(7)};
    try {
      auto opened = leftright::open_map<key_type, value_type>(o);
      FAIL("open_map succeeded at version " << opened.first.version());
    } catch (const storage_error& e) {
      CHECK(e.code().value() == EINVAL);
      CHECK(std::string(e.what()).find("durability is 7") != std::string::npos);
    }
    CHECK_FALSE(fs::exists(tmp.path() / "map"));  // refused before anything is made
  }
  SECTION("the path is empty") { CHECK_THROWS_AS((leftright::open_map<key_type, value_type>(leftright::durable_options{})), storage_error); }
  SECTION("an unwritable directory") {
    const fs::path ro = tmp.path() / "read-only";
    fs::create_directory(ro);
    const auto r_x = fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                     fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec;
    fs::permissions(ro, r_x);
    if (::geteuid() != 0) {
      const storage_error lock_error = open_error(ro);
      CHECK(lock_error.code().value() == EACCES);  // cannot create LOCK
      CHECK(std::string(lock_error.what()).find("open_map_read_only") != std::string::npos);  // the way out
      CHECK(open_error(ro / "map").code().value() == EACCES);  // cannot create the directory
    } else {
      // Root ignores permissions: try as nobody, in a child that drops its privileges.
      fs::permissions(tmp.path(), r_x | fs::perms::owner_write);
      const child_result res = run_in_child([&](int fd) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
          put(fd, "cannot become nobody");
          return 5;
        }
        for (const fs::path& p : {ro, ro / "map"}) {
          try {
            auto m = leftright::open_map<key_type, value_type>(options_for(p));
            put(fd, "opened " + p.string());
            return 2;
          } catch (const storage_error& e) {
            put(fd, std::string(e.what()) + "\n");
            if (e.code().value() != EACCES) return 4;
            // The LOCK file's refusal names the way out: a read-only open.
            if (p == ro && std::string(e.what()).find("open_map_read_only") == std::string::npos) return 6;
          }
        }
        return 1;
      });
      INFO(res.describe());
      if (res.exited(5)) {
        WARN("running as root and cannot drop privileges: unwritable directory not tested");
        SUCCEED("skipped");
      } else {
        CHECK(res.exited(1));
      }
    }
    fs::permissions(ro, fs::perms::owner_all);
  }
}

TEST_CASE("damage: a damaged header of the last segment, with durable records after it, is refused",
          "[durable][damage]") {
  // A segment's header page is written and fdatasync'ed before any record goes into the segment
  // (wal_writer::roll), so a header that does not check out while records follow it is damage a
  // crash cannot explain: open_map must throw (and keep the file), not delete the segment and
  // with it every acknowledged batch in it.
  base_copy c;
  const auto records = records_of(c.last_segment()).size();
  REQUIRE(records >= 3);
  SECTION("a flipped bit in the salt") { REQUIRE_NOTHROW(xor_byte(c.last_segment(), 16, 0x01)); }
  SECTION("a flipped bit in the header's crc") { REQUIRE_NOTHROW(xor_byte(c.last_segment(), header_page - 2, 0x20)); }
  const auto damaged = read_bytes(c.last_segment());
  try {
    auto [w, r] = leftright::open_map<key_type, value_type>(options_for(c.dir));
    FAIL_CHECK("opened at version " << w.version() << " of " << base_batches << ", dropping " << records
                                    << " synced batches; note: " << w.recovery().note);
  } catch (const storage_error& e) {
    INFO("what(): " << e.what());
    CHECK(std::string(e.what()).find(base().segments.back()) != std::string::npos);
  }
  // The damaged file must still be there, as it was (not replaced by a fresh segment that
  // recovery started under the same name).
  REQUIRE(fs::exists(c.last_segment()));
  const bool unchanged = read_bytes(c.last_segment()) == damaged;
  CHECK(unchanged);
}

TEST_CASE("disk full (RLIMIT_FSIZE): a checkpoint that cannot write its snapshot stops the writer",
          "[durable][damage][diskfull]") {
  // Snapshots grow with the map; the one written after batch 160 passes 1 MiB (pwrite: EFBIG).
  disk_full::plan plan;
  plan.checkpoint_every = 32;
  const disk_full::outcome o = run_disk_full(plan);
  check_disk_full(o, "checkpoint");
}

TEST_CASE("disk full (RLIMIT_FSIZE): a log segment that cannot be allocated fails publish()",
          "[durable][damage][diskfull]") {
  // One batch is a ~1.2 MiB record: its segment cannot be preallocated (posix_fallocate: EFBIG),
  // so publish() fails before readers can see the batch. Batch 20 leaves a segment holding
  // batches 1..19; batch 1 replaces the still empty segment that open_map() started.
  for (const std::uint64_t huge_at : {std::uint64_t{20}, std::uint64_t{1}}) {
    INFO("the huge batch is batch " << huge_at);
    disk_full::plan plan;
    plan.huge_at = huge_at;
    const disk_full::outcome o = run_disk_full(plan);
    check_disk_full(o, "publish");
    CHECK(o.facts.num("published") == huge_at - 1);
    CHECK(o.facts.str("what").find("posix_fallocate") != std::string::npos);
  }
}

TEST_CASE("disk full (RLIMIT_FSIZE): an automatic checkpoint that fails inside publish()",
          "[durable][damage][diskfull]") {
  // An automatic checkpoint (checkpoint_bytes) runs inside publish(), after the batch was logged
  // and made visible. When it fails, that publish() still returns (its batch is published), the
  // writer is failed(), and the next publish() throws storage_error saying why.
  disk_full::plan plan;
  plan.checkpoint_bytes = 300 << 10;
  const disk_full::outcome o = run_disk_full(plan);
  check_disk_full(o, "publish");
}

}  // namespace LEFTRIGHT_TEST_FILE
