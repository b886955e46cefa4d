// SPDX-License-Identifier: Apache-2.0
// A full disk without root, for test_durable_damage.cpp: a forked child sets RLIMIT_FSIZE to
// 1 MiB (SIGXFSZ ignored, so that a write past it fails with EFBIG instead of killing the child),
// opens a sync map with 256 KiB segments and publishes batches of ~4 KiB values until something
// throws, then probes the failed writer; the parent reopens the directory without the limit.
//
// Contract:
//   - run_disk_full(plan) runs the child (which must exit 0: it reports what it saw as lines
//     "name value" on the pipe, parsed into child_facts) and then reopens; it REQUIREs the child's
//     exit, and returns the facts and the reopened state for the caller to check.
//   - check_disk_full(outcome, where) checks what every disk-full case must hold: a
//     storage_error for EFBIG thrown by `where` ("publish" or "checkpoint"), after which
//     failed() is true, publish() and checkpoint() throw storage_error, readers show exactly the
//     last batch whose publish() returned, and the reopened map holds exactly those batches.
// The child uses no Catch2 and leaves through _exit() (child_process.hpp). No atomics in this
// file.
#pragma once

#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <leftright/durable_map.hpp>

#include "child_process.hpp"
#include "model_map.hpp"
#include "test_support.hpp"

namespace lrtest::disk_full {

namespace fs = std::filesystem;
using leftright::storage_error;

inline constexpr rlim_t file_size_limit = rlim_t{1} << 20;
inline constexpr std::size_t big_value_bytes = 4000;

using model = model_map<std::uint64_t, std::string>;

inline std::string big_value(std::uint64_t b, int i) {
  std::string v = std::to_string(b) + "/" + std::to_string(i) + ":";
  v.resize(big_value_bytes, static_cast<char>('a' + (b + static_cast<std::uint64_t>(i)) % 26));
  return v;
}
/// Batch b: two new ~4 KiB values (the map keeps growing), an erase every 4th batch; batch
/// `huge_at` (if nonzero) instead holds 300 of them (~1.2 MiB: one record larger than the file
/// size limit).
template <class Sink>
void make_big_batch(std::uint64_t b, Sink& sink, std::uint64_t huge_at) {
  const int n = b == huge_at ? 300 : 2;
  for (int i = 0; i < n; ++i) sink.insert_or_assign(b * 1000 + static_cast<std::uint64_t>(i), big_value(b, i));
  if (b % 4 == 0) sink.erase((b - 3) * 1000);
}
inline model model_at(std::uint64_t v, std::uint64_t huge_at) {
  model m;
  m.advance_to(v, [huge_at](std::uint64_t b, model& s) { make_big_batch(b, s, huge_at); });
  return m;
}

struct plan {
  std::uint64_t checkpoint_every = 0;  // explicit checkpoint() after batches that are multiples
  std::uint64_t checkpoint_bytes = 0;  // automatic checkpoints
  std::uint64_t huge_at = 0;           // the batch that is larger than the limit
};

/// What the child saw. Text lines "name value", parsed by the parent.
struct child_facts {
  std::map<std::string, std::string> f;
  std::uint64_t num(const std::string& k) const {
    auto it = f.find(k);
    return it == f.end() ? UINT64_MAX : std::stoull(it->second);
  }
  std::string str(const std::string& k) const {
    auto it = f.find(k);
    return it == f.end() ? std::string("<missing>") : it->second;
  }
};
inline child_facts parse_facts(const std::string& out) {
  child_facts parsed;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    const auto sp = line.find(' ');
    if (sp != std::string::npos) parsed.f[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return parsed;
}

/// The first failure the child met: which call threw (where), what (kind, what), and the last
/// batch whose publish() returned.
struct first_failure {
  std::uint64_t published = 0;
  std::string where = "nowhere", kind = "none", what;
  bool unexpected_version = false;
};

/// Records the exception in flight as f's failure in `where` (call inside a catch block).
inline void note_failure(first_failure& f, const char* where) {
  f.where = where;
  try {
    throw;
  } catch (const storage_error& e) {
    f.kind = "storage_error", f.what = e.what();
  } catch (const std::exception& e) {
    f.kind = "other", f.what = e.what();
  }
}

/// Publishes big batches (checkpointing as the plan says) until a call throws.
template <class Writer>
first_failure write_until_failure(Writer& w, const plan& p) {
  first_failure f;
  for (std::uint64_t b = 1; b <= 2000 && f.kind == "none"; ++b) {
    make_big_batch(b, w, p.huge_at);
    try {
      if (w.publish() != b) {
        f.unexpected_version = true;
        return f;
      }
      f.published = b;
    } catch (const std::exception&) {
      note_failure(f, "publish");
      break;
    }
    if (p.checkpoint_every != 0 && b % p.checkpoint_every == 0) {
      try {
        w.checkpoint();
      } catch (const std::exception&) {
        note_failure(f, "checkpoint");
      }
    }
  }
  return f;
}

/// Calls call() on the failed writer and says how it went: "returned", "storage_error" or
/// "other: <what>".
template <class Call>
std::string outcome_of(Call&& call) {
  try {
    call();
    return "returned";
  } catch (const storage_error&) {
    return "storage_error";
  } catch (const std::exception& e) {
    return std::string("other: ") + e.what();
  }
}

/// Writes what the child saw as "name value" lines: the failure, the readers' state, and how
/// the failed writer answers a later publish() and checkpoint().
template <class Writer, class Reader>
std::string probe(Writer& w, const Reader& r, const first_failure& f, const plan& p) {
  std::ostringstream out;
  out << "published " << f.published << "\n"
      << "where " << f.where << "\n"
      << "kind " << f.kind << "\n"
      << "what " << f.what << "\n"
      << "failed " << w.failed() << "\n"
      << "reader_version " << r.version() << "\n"
      << "writer_version " << w.version() << "\n";
  // The readers must show exactly the last batch whose publish() returned.
  out << "reader_diff " << compare_to_model(r, model_at(f.published, p.huge_at)) << "\n";
  // Every later publish and checkpoint must be refused with a storage_error.
  w.insert_or_assign(1, "after the failure");
  out << "later_publish " << outcome_of([&] { w.publish(); }) << "\n";
  out << "later_checkpoint " << outcome_of([&] { w.checkpoint(); }) << "\n";
  out << "reader_version_after " << r.version() << "\n";
  return out.str();
}

/// The child: limit the file size, write until something throws, then probe the failed writer.
inline int child(const fs::path& dir, const plan& p, int fd) {
  rlimit rl{};
  ::getrlimit(RLIMIT_FSIZE, &rl);
  rl.rlim_cur = file_size_limit;
  if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) {
    put(fd, "setup setrlimit failed\n");
    return 4;
  }
  ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG instead of killing us

  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::sync;
  o.segment_size = 256 << 10;
  o.checkpoint_bytes = p.checkpoint_bytes;
  auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
  const first_failure f = write_until_failure(w, p);
  if (f.unexpected_version) {
    put(fd, "setup unexpected version\n");
    return 4;
  }
  std::fprintf(stderr, "disk-full child: %s threw %s: %s\n", f.where.c_str(), f.kind.c_str(), f.what.c_str());
  put(fd, probe(w, r, f, p));
  return 0;
}

/// What the child saw, and what the parent found when it reopened without the limit.
struct outcome {
  child_facts facts;
  std::uint64_t reopened_version = 0;
  std::string reopened_diff_vs_published;
};

/// Runs the child, then reopens without the limit.
inline outcome run_disk_full(const plan& p) {
  temp_dir tmp("diskfull");
  const fs::path dir = tmp.path() / "map";
  const child_result res = run_in_child([&](int fd) { return child(dir, p, fd); });
  INFO(res.describe());
  REQUIRE(res.exited(0));
  outcome out;
  out.facts = parse_facts(res.out);
  leftright::durable_options o;
  o.path = dir;
  o.segment_size = 256 << 10;
  o.checkpoint_bytes = 0;
  auto [w, r] = leftright::open_map<std::uint64_t, std::string>(o);
  out.reopened_version = w.version();
  const std::uint64_t published = out.facts.num("published");
  if (published != UINT64_MAX) out.reopened_diff_vs_published = compare_to_model(r, model_at(published, p.huge_at));
  return out;
}

inline void check_disk_full(const outcome& o, const char* expected_where) {
  const auto& f = o.facts;
  INFO("child facts: published " << f.str("published") << ", " << f.str("where") << " threw "
                                 << f.str("kind") << ": " << f.str("what"));
  REQUIRE(f.str("kind") == "storage_error");
  CHECK(f.str("where") == expected_where);
  CHECK(f.str("what").find("File too large") != std::string::npos);  // EFBIG
  CHECK(f.num("failed") == 1);
  CHECK(f.str("later_publish") == "storage_error");
  CHECK(f.str("later_checkpoint") == "storage_error");
  // Readers keep the last successfully published state.
  CHECK(f.num("reader_version") == f.num("published"));
  CHECK(f.num("reader_version_after") == f.num("published"));
  CHECK(f.str("reader_diff").empty());
  // Reopened without the limit: exactly the batches whose publish() returned.
  CHECK(o.reopened_version == f.num("published"));
  CHECK(o.reopened_diff_vs_published.empty());
}

}  // namespace lrtest::disk_full
