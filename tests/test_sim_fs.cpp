// SPDX-License-Identifier: Apache-2.0
// The simulated file system itself: what a crash keeps and loses, injected errors, locks.
// The crash tests of the durable map are only as good as this model, so it is tested first.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "support/sim_fs.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

using leftright::storage_error;
namespace st = leftright::detail::storage;

std::vector<std::byte> bytes(std::size_t n, char c) { return std::vector<std::byte>(n, std::byte(c)); }

void write(st::file& f, std::size_t off, std::size_t n, char c) {
  const auto b = bytes(n, c);
  f.write_at(b.data(), b.size(), off);
}

std::vector<std::byte> read_all(sim::file_system& fsys, const std::string& p) { return fsys.contents(p); }

/// A directory /d with file /d/f holding 8 KiB of 'a', all of it durable.
std::shared_ptr<sim::file_system> durable_file() {
  auto fsys = std::make_shared<sim::file_system>();
  fsys->create_directories("/d");
  fsys->sync_directory("/");
  auto f = fsys->open("/d/f", st::open_mode::create_new);
  write(*f, 0, 8192, 'a');
  f->sync();
  fsys->sync_directory("/d");
  return fsys;
}

}  // namespace

TEST_CASE("sim: synced data survives a crash, unsynced data may not", "[sim]") {
  auto fsys = durable_file();
  auto f = fsys->open("/d/f", st::open_mode::read_write);
  write(*f, 100, 10, 'b');

  SECTION("drop_all loses the unsynced write") {
    auto img = fsys->copy()->crash(1, sim::crash_mode::drop_all);
    CHECK(read_all(*img, "/d/f") == bytes(8192, 'a'));
  }
  SECTION("keep_all keeps it (a process crash: the page cache survives)") {
    auto img = fsys->copy()->crash(1, sim::crash_mode::keep_all);
    auto got = read_all(*img, "/d/f");
    CHECK(got[100] == std::byte('b'));
    CHECK(got[109] == std::byte('b'));
    CHECK(got[110] == std::byte('a'));
  }
  SECTION("a synced write survives drop_all") {
    f->sync();
    auto img = fsys->crash(1, sim::crash_mode::drop_all);
    CHECK(read_all(*img, "/d/f")[105] == std::byte('b'));
  }
}

TEST_CASE("sim: a random crash keeps, drops or tears each dirty page at sector boundaries", "[sim]") {
  auto fsys = durable_file();
  auto f = fsys->open("/d/f", st::open_mode::read_write);
  write(*f, 0, 8192, 'b');  // both pages dirty
  bool saw_old = false, saw_new = false, saw_torn = false;
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    auto got = read_all(*fsys->copy()->crash(seed), "/d/f");
    REQUIRE(got.size() == 8192);
    for (std::size_t page = 0; page < 2; ++page) {
      int sectors_new = 0;
      for (std::size_t sec = 0; sec < 8; ++sec) {
        const std::size_t at = page * 4096 + sec * 512;
        // A sector is atomic: all old or all new.
        const bool is_new = got[at] == std::byte('b');
        for (std::size_t i = at; i < at + 512; ++i) REQUIRE((got[i] == std::byte('b')) == is_new);
        sectors_new += is_new ? 1 : 0;
      }
      saw_old |= sectors_new == 0;
      saw_new |= sectors_new == 8;
      saw_torn |= sectors_new > 0 && sectors_new < 8;
    }
  }
  CHECK(saw_old);
  CHECK(saw_new);
  CHECK(saw_torn);
}

TEST_CASE("sim: names are durable once their directory is synced", "[sim]") {
  auto fsys = durable_file();
  {
    auto g = fsys->open("/d/g", st::open_mode::create_new);
    write(*g, 0, 10, 'g');
    g->sync();  // the data is durable, the name is not
  }
  SECTION("an unsynced create can vanish") {
    auto img = fsys->copy()->crash(1, sim::crash_mode::drop_all);
    CHECK_FALSE(img->exists("/d/g"));
    CHECK(img->exists("/d/f"));
  }
  SECTION("a directory sync makes it durable") {
    fsys->sync_directory("/d");
    auto img = fsys->crash(1, sim::crash_mode::drop_all);
    REQUIRE(img->exists("/d/g"));
    CHECK(read_all(*img, "/d/g") == bytes(10, 'g'));
  }
  SECTION("a rename is atomic: the old name or the new one, never both, never neither") {
    fsys->sync_directory("/d");    // g is durable
    fsys->rename("/d/g", "/d/f");  // replaces f; not durable yet
    bool saw_old = false, saw_new = false;
    for (std::uint64_t seed = 0; seed < 32; ++seed) {
      auto img = fsys->copy()->crash(seed);
      REQUIRE(img->exists("/d/f"));
      const bool renamed = !img->exists("/d/g");
      CHECK(read_all(*img, "/d/f")[0] == std::byte(renamed ? 'g' : 'a'));
      (renamed ? saw_new : saw_old) = true;
    }
    CHECK(saw_old);
    CHECK(saw_new);
  }
  SECTION("an unsynced remove can be undone") {
    fsys->remove("/d/f");
    CHECK_FALSE(fsys->exists("/d/f"));
    auto img = fsys->crash(1, sim::crash_mode::drop_all);
    CHECK(img->exists("/d/f"));
  }
  SECTION("a new directory needs its parent synced") {
    fsys->create_directories("/e/f");
    fsys->sync_directory("/e");  // /e/f is durable inside /e, but /e itself is not
    auto img = fsys->crash(1, sim::crash_mode::drop_all);
    CHECK_THROWS_AS(img->list("/e/f"), storage_error);
  }
}

TEST_CASE("sim: an unsynced size change may be undone", "[sim]") {
  auto fsys = durable_file();
  auto f = fsys->open("/d/f", st::open_mode::read_write);
  f->allocate(3 * 4096);
  CHECK(f->size() == 3 * 4096);
  CHECK(fsys->copy()->crash(1, sim::crash_mode::drop_all)->open("/d/f", st::open_mode::read_only)->size() == 8192);
  CHECK(fsys->copy()->crash(1, sim::crash_mode::keep_all)->open("/d/f", st::open_mode::read_only)->size() ==
        3 * 4096);
  f->sync();
  CHECK(fsys->crash(1, sim::crash_mode::drop_all)->open("/d/f", st::open_mode::read_only)->size() == 3 * 4096);
}

TEST_CASE("sim: mappings share the page cache; msync makes a range durable", "[sim]") {
  auto fsys = durable_file();
  auto f = fsys->open("/d/f", st::open_mode::read_write);
  auto m = f->map(8192, true);
  std::memset(m->data() + 5000, 'm', 8);
  char c = 0;
  REQUIRE(f->read_at(&c, 1, 5003) == 1);
  CHECK(c == 'm');  // visible to reads at once
  CHECK(read_all(*fsys->copy()->crash(1, sim::crash_mode::drop_all), "/d/f")[5000] == std::byte('a'));
  m->sync(5000, 8);
  CHECK(read_all(*fsys->copy()->crash(1, sim::crash_mode::drop_all), "/d/f")[5007] == std::byte('m'));
  CHECK_THROWS_AS(f->map(3 * 4096, true), std::logic_error);  // past the end: a SIGBUS for real
}

TEST_CASE("sim: injected errors", "[sim]") {
  auto fsys = durable_file();
  auto f = fsys->open("/d/f", st::open_mode::read_write);

  SECTION("the nth write fails with the errno asked for") {
    fsys->inject(sim::call::write, 2, sim::fault::enospc);
    write(*f, 0, 10, 'x');
    try {
      write(*f, 0, 10, 'y');
      FAIL("no error");
    } catch (const storage_error& e) {
      CHECK(e.code().value() == ENOSPC);
      CHECK(e.path() == "/d/f");
    }
    write(*f, 0, 10, 'z');  // only the nth
    CHECK(fsys->faults_fired() == 1);
  }
  SECTION("a short write writes part, then fails") {
    fsys->inject(sim::call::write, 1, sim::fault::short_write);
    CHECK_THROWS_AS(write(*f, 0, 100, 'y'), storage_error);
    const auto got = read_all(*fsys, "/d/f");
    CHECK(got[49] == std::byte('y'));
    CHECK(got[50] == std::byte('a'));
  }
  SECTION("a failed sync loses its pages, and a later sync does not bring them back") {
    write(*f, 0, 10, 'y');
    fsys->inject(sim::call::sync, 1, sim::fault::eio);
    CHECK_THROWS_AS(f->sync(), storage_error);
    f->sync();  // "succeeds": the kernel marked the pages clean
    CHECK(read_all(*fsys->copy()->crash(1, sim::crash_mode::keep_all), "/d/f")[0] == std::byte('a'));
    write(*f, 0, 10, 'z');  // rewritten: dirty again, and written this time
    f->sync();
    CHECK(read_all(*fsys->crash(1, sim::crash_mode::drop_all), "/d/f")[0] == std::byte('z'));
  }
  SECTION("fallocate, msync, rename, directory sync and create fail too") {
    fsys->inject(sim::call::fallocate, 1, sim::fault::efbig);
    CHECK_THROWS_AS(f->allocate(1 << 20), storage_error);
    auto m = f->map(4096, true);
    fsys->inject(sim::call::msync, 1, sim::fault::eio);
    CHECK_THROWS_AS(m->sync(0, 10), storage_error);
    fsys->inject(sim::call::rename, 1, sim::fault::eio);
    CHECK_THROWS_AS(fsys->rename("/d/f", "/d/g"), storage_error);
    CHECK(fsys->exists("/d/f"));
    fsys->inject(sim::call::dir_sync, 1, sim::fault::eio);
    CHECK_THROWS_AS(fsys->sync_directory("/d"), storage_error);
    fsys->inject(sim::call::create, 1, sim::fault::enospc);
    CHECK_THROWS_AS(fsys->open("/d/h", st::open_mode::create_new), storage_error);
    CHECK_FALSE(fsys->exists("/d/h"));
    CHECK(fsys->faults_fired() == 5);
  }
  SECTION("a lying disk acknowledges syncs and keeps nothing") {
    fsys->set_lying(true);
    write(*f, 0, 10, 'y');
    f->sync();
    CHECK(read_all(*fsys->crash(1, sim::crash_mode::drop_all), "/d/f")[0] == std::byte('a'));
  }
}

TEST_CASE("sim: crash_at crashes inside the nth call; the old file system is gone", "[sim]") {
  auto fsys = durable_file();
  auto f = fsys->open("/d/f", st::open_mode::read_write);
  fsys->crash_at(3, 7, sim::crash_mode::keep_all);
  write(*f, 0, 1, 'x');  // call 1
  write(*f, 1, 1, 'y');  // call 2
  CHECK(fsys->image() == nullptr);
  CHECK_THROWS_AS(write(*f, 2, 1, 'z'), storage_error);  // call 3: the crash
  REQUIRE(fsys->image() != nullptr);
  CHECK(fsys->dead());
  const auto got = read_all(*fsys->image(), "/d/f");
  CHECK(got[1] == std::byte('y'));
  CHECK(got[2] == std::byte('a'));  // the crashing call did nothing
  CHECK_THROWS_AS(f->sync(), storage_error);
  CHECK_THROWS_AS(fsys->list("/d"), storage_error);
}

TEST_CASE("sim: one lock per directory", "[sim]") {
  auto fsys = durable_file();
  auto l = fsys->lock_directory("/d");
  CHECK_THROWS_AS(fsys->lock_directory("/d"), storage_error);
  l.reset();
  CHECK_NOTHROW(fsys->lock_directory("/d"));
}

TEST_CASE("sim: opening what is not there, or is there already", "[sim]") {
  auto fsys = durable_file();
  CHECK_THROWS_AS(fsys->open("/d/nope", st::open_mode::read_only), storage_error);
  CHECK_THROWS_AS(fsys->open("/nodir/f", st::open_mode::create_new), storage_error);
  CHECK_THROWS_AS(fsys->open("/d/f", st::open_mode::create_new), storage_error);
  CHECK_THROWS_AS(fsys->open("/d", st::open_mode::read_only), storage_error);
  CHECK_THROWS_AS(fsys->create_directories("/d/f/x"), storage_error);
  CHECK(fsys->list("/d") == std::vector<std::string>{"f"});
}

}  // namespace LEFTRIGHT_TEST_FILE
