// SPDX-License-Identifier: Apache-2.0
// Soak: readers, a writer, checkpoints and kill -9 restarts of a durable map, in a loop, for as
// long as asked (scripts/soak runs it under ThreadSanitizer or ASan). Not a unit test: a short
// bounded run of it is the CTest test `soak_smoke`.
//
// Two roles in one binary:
//   - The supervisor (the default) stays single-threaded. Each round it starts a child with
//     posix_spawn() of /proc/self/exe --child (a fresh process image, not a fork() of a process
//     that sanitizer runtimes may have given threads), reads the child's messages from a pipe,
//     and SIGKILLs it at a seeded random moment: usually 0.2-3 s after the child reported that
//     it opened the map, one round in eight 0-150 ms after the spawn (inside recovery). Then it
//     reopens the directory itself (durability none: no threads) and checks it.
//   - The child opens the map (the durability mode rotates per round: sync, async, none), starts
//     reader threads and runs the writer: batch b = version + 1, + 2, ... forever. After each
//     publish() returns it writes the version to the pipe: the acknowledged version. It also
//     checkpoints now and then (explicit checkpoint(), plus a small checkpoint_bytes for
//     automatic ones), and a small segment_size makes the log roll often.
//
// The state after v batches is a pure function of v (expected_present / value_for below), so
// neither side keeps a model: batch b writes all keys of group b % groups (value: b and the key,
// padded to a length that varies), erases group (b + erase_shift) % groups, and every
// clear_every-th batch starts with clear(); one more key holds the version. Every bulk_every-th
// batch also writes bulk_keys keys (a log record larger than a segment: it gets a segment of its
// own), which the batch bulk_every / 2 later erases again.
//
// What is checked:
//   - readers, inside one read_guard at version V: the version key says V, size() is the
//     expected size at V, and the groups looked at hold exactly the expected values at V (a torn
//     batch shows as a group whose keys disagree, or a size that no version has); a reader's
//     versions never go backwards; a guard held across publishes keeps its snapshot;
//   - the writer: publish() returns the next version;
//   - the supervisor, after each kill: the child died of SIGKILL (a sanitizer report or an
//     exception ends it otherwise); it reopened at the version the supervisor recovered last
//     time (recovery is deterministic); the recovered version V is >= every acknowledged version
//     (kill -9 loses nothing published, in every mode) and at most one beyond (nothing that was
//     not handed to publish()); recovery().version == V; the whole map equals the state at V.
// Checks alternate between the directory itself and a copy of it, so that half the children
// recover from the raw crashed state. A copy of each crashed state is kept until the next
// round; on a failure it is kept for good (failure-N/), with the seed. The run directory is
// removed at the end only if nothing failed.
//
// A line of figures every --interval (default 60 s) and at the end.
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <absl/strings/match.h>
#include <absl/time/time.h>
#include <leftright/durable_map.hpp>

#include "support/child_process.hpp"
#include "support/durability_name.hpp"

namespace soak {

namespace fs = std::filesystem;
using leftright::durability;
using clock_type = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------------
// The workload: the state after v batches, as a pure function of v.

constexpr std::uint64_t groups = 61;
constexpr std::uint64_t group_keys = 12;
constexpr std::uint64_t erase_shift = 30;    // batch b erases group (b + 30) % groups
constexpr std::uint64_t clear_every = 997;   // batch b starts with clear() when b % 997 == 0
constexpr std::uint64_t version_key = std::uint64_t{1} << 40;
constexpr std::uint64_t bulk_every = 509;    // batch b writes the bulk keys when b % 509 == 0
constexpr std::uint64_t bulk_erase = 254;    // ... and erases them when b % 509 == 254
constexpr std::uint64_t bulk_keys = 3000;
constexpr std::uint64_t bulk_base = std::uint64_t{1} << 32;

using map_key = std::uint64_t;
using map_value = std::string;

std::uint64_t group_key(std::uint64_t g, std::uint64_t i) { return g * group_keys + i; }

/// The value batch b stores under key k: "b/k" padded with 'x' to 8..55 characters. Unique per
/// (b, k), so a value under the wrong key or from the wrong batch cannot pass.
constexpr std::size_t max_value = 64;
std::size_t put_decimal(char* out, std::uint64_t x) {
  char digits[20];
  std::size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + x % 10);
    x /= 10;
  } while (x != 0);
  for (std::size_t i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  return n;
}
std::size_t format_value(char (&buf)[max_value], std::uint64_t b, std::uint64_t k) {
  std::size_t n = put_decimal(buf, b);  // at most 20 digits
  buf[n++] = '/';
  n += put_decimal(buf + n, k);         // at most 41 characters so far
  const std::size_t want = 8 + static_cast<std::size_t>((b * 7 + k) % 48);
  while (n < want) buf[n++] = 'x';
  return n;
}
map_value value_for(std::uint64_t b, std::uint64_t k) {
  char buf[max_value];
  return map_value(buf, format_value(buf, b, k));
}
bool is_value(const map_value& s, std::uint64_t b, std::uint64_t k) {
  char buf[max_value];
  return std::string_view(s) == std::string_view(buf, format_value(buf, b, k));
}

/// The last batch in 1..v congruent to r modulo groups; 0 if none.
std::uint64_t last_congruent(std::uint64_t v, std::uint64_t r) {
  const std::uint64_t d = (v % groups + groups - r) % groups;
  return d >= v ? 0 : v - d;
}

/// The batch whose values group g holds at version v; 0: the group is absent.
std::uint64_t expected_group(std::uint64_t g, std::uint64_t v) {
  const std::uint64_t written = last_congruent(v, g);
  const std::uint64_t erased = last_congruent(v, (g + groups - erase_shift) % groups);
  const std::uint64_t cleared = v - v % clear_every;  // 0: never
  // A clear comes first in its batch, so a write in the clearing batch survives it.
  return written != 0 && written > erased && written >= cleared ? written : 0;
}

/// The batch whose values the bulk keys hold at version v; 0: they are absent.
std::uint64_t expected_bulk(std::uint64_t v) {
  const std::uint64_t written = v - v % bulk_every;
  const std::uint64_t erased = v % bulk_every >= bulk_erase ? v - v % bulk_every + bulk_erase
                               : v >= bulk_every            ? v - v % bulk_every - bulk_every + bulk_erase
                                                            : 0;
  const std::uint64_t cleared = v - v % clear_every;
  return written != 0 && written > erased && written >= cleared ? written : 0;
}

std::size_t expected_size(std::uint64_t v) {
  std::size_t n = v == 0 ? 0 : 1;
  if (expected_bulk(v) != 0) n += bulk_keys;
  for (std::uint64_t g = 0; g < groups; ++g) {
    if (expected_group(g, v) != 0) n += group_keys;
  }
  return n;
}

/// Queues batch b on the writer. One in three batches writes its group by erase() + insert()
/// instead of insert_or_assign(): the same result through other operations.
template <class Writer>
void queue_batch(Writer& w, std::uint64_t b) {
  if (b % clear_every == 0) w.clear();
  const std::uint64_t g = b % groups;
  for (std::uint64_t i = 0; i < group_keys; ++i) {
    const std::uint64_t k = group_key(g, i);
    if (b % 3 == 0) {
      w.erase(k);
      w.insert(k, value_for(b, k));
    } else {
      w.insert_or_assign(k, value_for(b, k));
    }
  }
  const std::uint64_t e = (b + erase_shift) % groups;
  for (std::uint64_t i = 0; i < group_keys; ++i) w.erase(group_key(e, i));
  if (b % bulk_every == 0) {
    for (std::uint64_t i = 0; i < bulk_keys; ++i) w.insert_or_assign(bulk_base + i, value_for(b, bulk_base + i));
  } else if (b % bulk_every == bulk_erase) {
    for (std::uint64_t i = 0; i < bulk_keys; ++i) w.erase(bulk_base + i);
  }
  w.insert_or_assign(version_key, value_for(b, version_key));
}

/// Empty if group g in the snapshot is exactly what version v holds; else what differs.
template <class Guard>
std::string check_group(const Guard& s, std::uint64_t g, std::uint64_t v) {
  const std::uint64_t b = expected_group(g, v);
  for (std::uint64_t i = 0; i < group_keys; ++i) {
    const std::uint64_t k = group_key(g, i);
    const map_value* p = s.find(k);
    if (b == 0 && p != nullptr) {
      return "version " + std::to_string(v) + ": key " + std::to_string(k) + " of absent group " +
             std::to_string(g) + " holds '" + *p + "'";
    }
    if (b != 0 && p == nullptr) {
      return "version " + std::to_string(v) + ": key " + std::to_string(k) + " missing (group " +
             std::to_string(g) + " of batch " + std::to_string(b) + ")";
    }
    if (b != 0 && !is_value(*p, b, k)) {
      return "version " + std::to_string(v) + ": key " + std::to_string(k) + " holds '" + *p +
             "', expected '" + value_for(b, k) + "'";
    }
  }
  return {};
}

/// Empty if bulk keys first..first+count-1 in the snapshot are what version v holds.
template <class Guard>
std::string check_bulk(const Guard& s, std::uint64_t v, std::uint64_t first, std::uint64_t count) {
  const std::uint64_t b = expected_bulk(v);
  for (std::uint64_t i = first; i < first + count && i < bulk_keys; ++i) {
    const std::uint64_t k = bulk_base + i;
    const map_value* p = s.find(k);
    if (b == 0 ? p != nullptr : p == nullptr || !is_value(*p, b, k)) {
      return "version " + std::to_string(v) + ": bulk key " + std::to_string(k) + " holds '" +
             (p ? *p : std::string("(absent)")) + "', expected " +
             (b == 0 ? std::string("(absent)") : "'" + value_for(b, k) + "'");
    }
  }
  return {};
}

/// Empty if the snapshot's version key and size fit its version; else what differs.
template <class Guard>
std::string check_header(const Guard& s, std::uint64_t v) {
  const map_value* p = s.find(version_key);
  if (v == 0 ? p != nullptr : p == nullptr || !is_value(*p, v, version_key)) {
    return "version " + std::to_string(v) + ": version key holds '" + (p ? *p : std::string("(absent)")) + "'";
  }
  const std::size_t want = expected_size(v);
  if (s.size() != want) {
    return "version " + std::to_string(v) + ": " + std::to_string(s.size()) + " entries, expected " +
           std::to_string(want);
  }
  return {};
}

/// Empty if the snapshot is exactly the state at its version.
template <class Guard>
std::string check_all(const Guard& s) {
  const std::uint64_t v = s.version();
  std::string e = check_header(s, v);
  for (std::uint64_t g = 0; g < groups && e.empty(); ++g) e = check_group(s, g, v);
  if (e.empty()) e = check_bulk(s, v, 0, bulk_keys);
  return e;
}

// ---------------------------------------------------------------------------------------------
// Messages from the child: lrtest::report {kind, value} (tests/support/child_process.hpp), 16
// bytes each, so every write() to the pipe is atomic (< PIPE_BUF) and a kill never leaves half a
// message. Reader threads write failures directly.
enum : std::uint64_t {
  msg_opened = 1,       // value: the version the map reopened at
  msg_published = 2,    // value: a version whose publish() returned
  msg_reads = 3,        // value: reads so far (cumulative)
  msg_checkpoints = 4,  // value: checkpoints so far (cumulative, explicit and automatic)
  msg_failure = 5,      // value: 1 (the details went to stderr)
};
constexpr int child_fd = 3;

void send(std::uint64_t kind, std::uint64_t value) { lrtest::send_record(child_fd, lrtest::report{kind, value}); }

using lrtest::durability_name;

constexpr std::size_t segment_size = 64 << 10;        // rolls every ~70 batches
constexpr std::uint64_t checkpoint_bytes = 384 << 10;  // an automatic checkpoint every ~400 batches

leftright::durable_options options_for(const fs::path& dir, durability mode, ms sync_interval) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = mode;
  o.sync_interval = sync_interval;
  o.segment_size = segment_size;
  o.checkpoint_bytes = checkpoint_bytes;
  return o;
}

// ---------------------------------------------------------------------------------------------
// The child.

struct child_args {
  fs::path dir;
  durability mode = durability::sync;
  std::uint64_t seed = 0;
  int readers = 2;
};

/// Failures seen in the child's threads: each is sent to the supervisor and the first few are
/// printed.
std::atomic<std::uint64_t> child_failures{0};

template <class... Parts>
void child_fail(const Parts&... parts) {
  // [S1] relaxed: a counter; it only limits how much is printed.
  const std::uint64_t n = child_failures.fetch_add(1, std::memory_order_relaxed);
  if (n < 10) {
    std::string s = "soak child " + std::to_string(::getpid()) + ": FAILURE: ";
    (s += ... += std::string(parts));
    s += '\n';
    std::fputs(s.c_str(), stderr);
  }
  if (n < 1000) send(msg_failure, 1);
}

/// Read counts, one cache line per reader thread so that counting costs no shared line.
struct alignas(64) read_counter {
  std::atomic<std::uint64_t> n{0};
};

template <class Factory>
void reader_main(Factory factory, int id, std::uint64_t opened_at, read_counter& count) {
  auto r = factory.make_reader();
  std::uint64_t last = opened_at;  // this thread's versions never go backwards
  for (std::uint64_t n = 1;; ++n) {
    {
      auto s = r.read();
      const std::uint64_t v = s.version();
      if (v < last) child_fail("reader ", std::to_string(id), " went back from version ", std::to_string(last), " to ", std::to_string(v));
      last = v;
      std::string e = n % 256 == 0 ? check_all(s) : check_header(s, v);
      if (e.empty() && n % 256 != 0) e = check_group(s, (n * 7 + static_cast<std::uint64_t>(id)) % groups, v);
      if (e.empty() && n % 256 != 0) e = check_bulk(s, v, n * 8 % bulk_keys, 8);
      if (!e.empty()) child_fail("reader ", std::to_string(id), ": ", e);
      if (id == 1 && n % 1024 == 0) {
        // Hold the guard while the writer publishes (its second publish waits for us): the
        // snapshot must not change under it.
        std::this_thread::sleep_for(std::chrono::microseconds(500));
        if (s.version() != v) child_fail("reader 1: a held guard changed version");
        e = check_all(s);
        if (!e.empty()) child_fail("reader 1, guard held across publishes: ", e);
      }
    }
    // [S2] relaxed: a statistic, read by the writer thread for its reports.
    count.n.store(n, std::memory_order_relaxed);
    if (id == 0 && n % 4096 == 0) r = factory.make_reader();  // reader churn: register anew
    // Two cores: give the writer room now and then (a reader preempted inside a guard holds up
    // publish() for a time slice).
    if (n % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

[[noreturn]] void child_main(const child_args& a) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the supervisor
  if (::getppid() == 1) ::_exit(4);
  int code = 0;
  try {
    std::mt19937_64 rng(a.seed);
    const ms sync_interval(1 + static_cast<long>(rng() % 20));
    auto [w, r0] = leftright::open_map<map_key, map_value>(options_for(a.dir, a.mode, sync_interval));
    const std::uint64_t opened_at = w.version();
    if (w.recovery().version != opened_at) child_fail("recovery().version ", std::to_string(w.recovery().version), " != version ", std::to_string(opened_at));
    {
      auto s = r0.read();
      const std::string e = check_all(s);
      if (!e.empty()) child_fail("state after recovery: ", e);
    }
    send(msg_opened, opened_at);

    std::vector<std::unique_ptr<read_counter>> counts;
    std::vector<std::thread> readers;
    for (int i = 0; i < a.readers; ++i) {
      counts.push_back(std::make_unique<read_counter>());
      readers.emplace_back(reader_main<decltype(w.factory())>, w.factory(), i, opened_at, std::ref(*counts.back()));
    }
    // Never joined: the supervisor kills this process.
    for (auto& t : readers) t.detach();

    std::uint64_t next_checkpoint = opened_at + 50 + rng() % 400;
    std::uint64_t checkpoints_sent = 0;
    auto next_report = clock_type::now();
    for (std::uint64_t b = opened_at + 1;; ++b) {
      queue_batch(w, b);
      std::uint64_t v = 0;
      if (b % 5 == 0 && w.try_publish()) {
        v = w.version();
      } else {
        v = w.publish();
      }
      if (v != b) {
        child_fail("batch ", std::to_string(b), " published as version ", std::to_string(v));
        code = 3;
        break;
      }
      send(msg_published, b);
      if (b >= next_checkpoint) {
        w.checkpoint();
        next_checkpoint = b + 50 + rng() % 400;
      }
      if (const auto now = clock_type::now(); now >= next_report) {
        next_report = now + ms(50);
        std::uint64_t reads = 0;
        // [S2] relaxed: a statistic.
        for (const auto& c : counts) reads += c->n.load(std::memory_order_relaxed);
        send(msg_reads, reads);
        if (w.checkpoints() != checkpoints_sent) send(msg_checkpoints, checkpoints_sent = w.checkpoints());
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "soak child %d: exception: %s\n", static_cast<int>(::getpid()), e.what());
    code = 2;
  } catch (...) {
    code = 2;
  }
  std::fflush(stderr);
  ::_exit(code);
}

// ---------------------------------------------------------------------------------------------
// The supervisor.

struct settings {
  std::chrono::milliseconds duration{60000};
  std::chrono::milliseconds interval{60000};
  fs::path parent;  // the run directory is made inside it
  std::uint64_t seed = 0;
  int readers = 2;
};

struct totals {
  std::uint64_t batches = 0;      // acknowledged publishes
  std::uint64_t reads = 0;
  std::uint64_t restarts = 0;     // children killed and recovered
  std::uint64_t checkpoints = 0;
  std::uint64_t failures = 0;
  std::uint64_t tails = 0;        // recoveries that cut a torn record
  std::uint64_t ahead = 0;        // recoveries that found the batch after the last acknowledged one
  std::uint64_t early = 0;        // kills before the child reported that it had opened
  std::uint64_t stalls = 0;       // children that ran > 2 s after opening and published nothing
  std::uint64_t recovered_last = 0;
  std::uint64_t recovered_min = UINT64_MAX;  // of the current interval
};

std::string hms(clock_type::duration d) {
  const long s = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

/// One line of figures: totals, plus what the running child reported so far (live).
void print_line(const char* tag, clock_type::duration elapsed, totals& t, std::uint64_t live_batches = 0,
                std::uint64_t live_reads = 0, std::uint64_t live_checkpoints = 0) {
  const std::uint64_t rmin = t.recovered_min == UINT64_MAX ? t.recovered_last : t.recovered_min;
  std::printf("[soak] %s %s  batches %llu  reads %llu  restarts %llu  recovered %llu/%llu (min/last)  "
              "checkpoints %llu  tails %llu  failures %llu\n",
              tag, hms(elapsed).c_str(), static_cast<unsigned long long>(t.batches + live_batches),
              static_cast<unsigned long long>(t.reads + live_reads), static_cast<unsigned long long>(t.restarts),
              static_cast<unsigned long long>(rmin), static_cast<unsigned long long>(t.recovered_last),
              static_cast<unsigned long long>(t.checkpoints + live_checkpoints), static_cast<unsigned long long>(t.tails),
              static_cast<unsigned long long>(t.failures));
  std::fflush(stdout);
  t.recovered_min = UINT64_MAX;
}

struct round_result {
  bool opened = false;
  std::uint64_t opened_at = 0;
  std::uint64_t last_ack = 0;
  std::uint64_t acks = 0;
  std::uint64_t reads = 0, checkpoints = 0, failures = 0;  // reported by the child
  lrtest::exit_status status;
  bool hung = false;  // never reported opening within the limit
};

/// Adds one report of the child to res; an "opened" report moves the deadline (unless the kill
/// counts from the spawn).
void take_report(const lrtest::report& m, round_result& res, bool from_spawn, ms delay,
                 clock_type::time_point& deadline) {
  switch (m.kind) {
    case msg_opened:
      res.opened = true;
      res.opened_at = m.value;
      if (!from_spawn) deadline = clock_type::now() + delay;
      break;
    case msg_published:
      res.last_ack = std::max(res.last_ack, m.value);
      ++res.acks;
      break;
    case msg_reads: res.reads = std::max(res.reads, m.value); break;
    case msg_checkpoints: res.checkpoints = std::max(res.checkpoints, m.value); break;
    case msg_failure: ++res.failures; break;
    default: break;
  }
}

/// Spawns a child on dir, runs it until the kill, reaps it. periodic() is called whenever it is
/// due while waiting (at least once a second).
template <class Periodic>
round_result run_child(const fs::path& dir, durability mode, std::uint64_t child_seed, int readers,
                       bool from_spawn, ms delay, Periodic&& periodic) {
  round_result res;
  lrtest::child_process child = lrtest::child_process::spawn(
      "/proc/self/exe",
      {"leftright_soak", "--child", "--dir", dir.string(), "--mode", durability_name(mode), "--seed",
       std::to_string(child_seed), "--readers", std::to_string(readers)},
      child_fd);
  // A child that has not opened the map after a minute is counted as hung (recovery stuck).
  auto deadline = clock_type::now() + (from_spawn ? delay : ms(60000));
  std::string buf;
  auto parse = [&] {
    lrtest::take_records<lrtest::report>(
        buf, [&](const lrtest::report& m) { take_report(m, res, from_spawn, delay, deadline); });
  };
  bool gone = false;  // the pipe reached its end before the deadline: the child ended by itself
  for (auto now = clock_type::now(); now < deadline; now = clock_type::now()) {
    periodic(now, res);
    const auto got = child.read_some(buf, std::min(deadline, now + ms(1000)));
    if (got == lrtest::child_process::read_state::end) {
      gone = true;
      break;
    }
    parse();
  }
  res.hung = !res.opened && !from_spawn && !gone;
  res.status = child.kill_and_wait(SIGKILL);  // also fine if it already exited
  child.read_to_end(buf);
  parse();
  return res;
}

void replace_copy(const fs::path& from, const fs::path& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
}

/// One round's kill schedule: drawn from the run's seed, so that --seed replays it.
struct round_plan {
  durability mode;
  bool from_spawn;  ///< the kill counts from the spawn, not from the child's open (one round in eight)
  ms delay;
  std::uint64_t child_seed;
};

round_plan plan_round(std::uint64_t round, std::mt19937_64& rng) {
  constexpr durability modes[] = {durability::sync, durability::async, durability::none};
  round_plan p{modes[round % 3], rng() % 8 == 0, ms(0), 0};
  p.delay = ms(p.from_spawn ? static_cast<long>(rng() % 151) : 200 + static_cast<long>(rng() % 2801));
  p.child_seed = rng();
  return p;
}

/// What the rounds so far established: every later recovery must find at least this.
struct history {
  std::uint64_t recovered = 0;  ///< what the last check found: the next child must open there
  std::uint64_t ever_ack = 0;   ///< the highest version any child acknowledged
};

/// Adds the child's figures to t and, to problems, what its own reports and its end show wrong.
void judge_child(const round_result& res, const round_plan& plan, const history& h, totals& t,
                 std::vector<std::string>& problems) {
  t.batches += res.acks;
  t.reads += res.reads;
  t.checkpoints += res.checkpoints;
  if (res.failures > 0) problems.push_back(std::to_string(res.failures) + " failures reported by the child");
  if (!res.status.killed_by(SIGKILL)) {
    problems.push_back("the child " + res.status.describe() + " (not our SIGKILL; a sanitizer report or an exception above?)");
  }
  if (res.hung) problems.push_back("the child did not open the map within 60 s");
  if (res.opened && res.opened_at != h.recovered) {
    problems.push_back("the child reopened at version " + std::to_string(res.opened_at) + ", the last check found " +
                       std::to_string(h.recovered));
  }
  if (!res.opened) ++t.early;
  if (res.opened && res.acks == 0 && plan.delay >= ms(2000)) ++t.stalls;
}

/// Where a run keeps its directories: the map, a copy of its last crashed state, and the copy
/// that odd rounds reopen instead of the map (so the next child opens what the crash left in
/// half the rounds, and what a check's open left in the others).
struct run_paths {
  fs::path run, map_dir, crashed, check_copy;
  explicit run_paths(const fs::path& r) : run(r), map_dir(r / "map"), crashed(r / "last-crash"), check_copy(r / "check") {}
};

/// What reopening a crashed map found.
struct recovery_check {
  std::uint64_t version;  ///< the version recovered (h.recovered when the round had nothing to recover)
  std::string note;       ///< recovery()'s note, or why nothing was recovered
  bool fatal = false;     ///< the directory could not be opened: nothing more to soak
};

/// Keeps a copy of the crashed map, reopens it (or, in odd rounds, a copy of it) in none mode,
/// and adds to problems what breaks the history: a lost acknowledged batch, a version going
/// back or skipping ahead, a state whose entries fail their checks.
recovery_check check_recovery(const run_paths& paths, std::uint64_t round, const round_result& res, const history& h,
                              totals& t, std::vector<std::string>& problems) {
  recovery_check c{h.recovered, {}};
  // Killed before its first open made the directory (a slow start, under a sanitizer): there
  // is nothing to recover, and nothing was acknowledged.
  if (!res.opened && h.ever_ack == 0 && !fs::exists(paths.map_dir)) {
    c.note = "killed before the map's directory was made";
    return c;
  }
  try {
    replace_copy(paths.map_dir, paths.crashed);
    fs::path where = paths.map_dir;
    if (round % 2 == 1) {
      replace_copy(paths.map_dir, paths.check_copy);
      where = paths.check_copy;
    }
    auto [w, r] = leftright::open_map<map_key, map_value>(options_for(where, durability::none, ms(1000)));
    const std::uint64_t v = c.version = w.version();
    const auto& rep = w.recovery();
    c.note = rep.note;
    if (rep.tail_truncated) ++t.tails;
    if (rep.version != v) problems.push_back("recovery().version " + std::to_string(rep.version) + " != version " + std::to_string(v));
    if (v < h.ever_ack) {
      problems.push_back("recovered version " + std::to_string(v) + " < acknowledged version " + std::to_string(h.ever_ack) +
                         ": a published batch was lost");
    }
    if (v < h.recovered) problems.push_back("recovered version " + std::to_string(v) + " < the previous recovery's " + std::to_string(h.recovered));
    const std::uint64_t baseline = std::max(h.recovered, h.ever_ack);
    if (v > baseline + 1) {
      problems.push_back("recovered version " + std::to_string(v) + " > last acknowledged " + std::to_string(baseline) +
                         " + 1: batches that were never handed to publish()");
    }
    if (v == baseline + 1) ++t.ahead;
    auto s = r.read();
    if (s.version() != v) problems.push_back("reader version " + std::to_string(s.version()) + " != writer version " + std::to_string(v));
    if (std::string e = check_all(s); !e.empty()) problems.push_back("recovered state: " + e);
  } catch (const std::exception& e) {
    problems.push_back(std::string("reopening failed: ") + e.what());
    c.fatal = true;
  }
  return c;
}

/// Prints a failed round's problems and keeps its crashed state (of the first five failures).
void report_failure(const run_paths& paths, int kept, std::uint64_t seed, std::uint64_t round, const round_plan& plan,
                    const history& h, const recovery_check& c, const std::vector<std::string>& problems) {
  fs::path keep = paths.run / ("failure-" + std::to_string(kept));
  try {
    if (kept <= 5) replace_copy(paths.crashed, keep);
  } catch (const std::exception&) {
    keep.clear();
  }
  std::printf("[soak] FAILURE in round %llu (durability %s, child seed %llu, kill %lld ms after %s; "
              "acknowledged %llu, recovered %llu; %s)\n",
              static_cast<unsigned long long>(round), durability_name(plan.mode),
              static_cast<unsigned long long>(plan.child_seed), static_cast<long long>(plan.delay.count()),
              plan.from_spawn ? "spawn" : "opening", static_cast<unsigned long long>(h.ever_ack),
              static_cast<unsigned long long>(c.version), c.note.c_str());
  for (const auto& p : problems) std::printf("[soak]   %s\n", p.c_str());
  std::printf("[soak]   seed %llu; crashed state kept in %s\n", static_cast<unsigned long long>(seed),
              kept <= 5 ? keep.c_str() : "(no: more than 5 failures)");
  std::fflush(stdout);
}

void print_totals(const totals& t, std::uint64_t recovered, std::uint64_t seed) {
  std::printf("[soak] totals: %llu batches, %llu reads, %llu restarts (%llu killed during recovery), %llu checkpoints, "
              "%llu torn tails cut, %llu recoveries found the unacknowledged last batch, %llu stalls, %llu failures; "
              "final version %llu; seed %llu\n",
              static_cast<unsigned long long>(t.batches), static_cast<unsigned long long>(t.reads),
              static_cast<unsigned long long>(t.restarts), static_cast<unsigned long long>(t.early),
              static_cast<unsigned long long>(t.checkpoints), static_cast<unsigned long long>(t.tails),
              static_cast<unsigned long long>(t.ahead), static_cast<unsigned long long>(t.stalls),
              static_cast<unsigned long long>(t.failures), static_cast<unsigned long long>(recovered),
              static_cast<unsigned long long>(seed));
}

/// The supervisor: rounds of a child killed on the seed's schedule, each followed by a check of
/// what recovery finds, until the duration is up or the map cannot be reopened. Returns 0 if no
/// round found a problem (the run directory is then removed), 1 otherwise, 2 without a directory.
int supervise(const settings& cfg) {
  std::error_code ec;
  fs::create_directories(cfg.parent, ec);
  std::string templ = (cfg.parent / ("leftright-soak-" + std::to_string(cfg.seed) + "-XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr) {
    std::fprintf(stderr, "soak: cannot make a directory in %s: %s\n", cfg.parent.c_str(), std::strerror(errno));
    return 2;
  }
  const run_paths paths{fs::path(templ)};
  std::printf("[soak] seed %llu, directory %s, %d readers, duration %lld s, lines every %lld s\n",
              static_cast<unsigned long long>(cfg.seed), paths.run.c_str(), cfg.readers,
              static_cast<long long>(cfg.duration.count() / 1000), static_cast<long long>(cfg.interval.count() / 1000));
  std::fflush(stdout);

  std::mt19937_64 rng(cfg.seed);
  totals t;
  const auto started = clock_type::now();
  auto next_line = started + cfg.interval;
  auto periodic = [&](clock_type::time_point now, const round_result& live) {
    if (now >= next_line) {
      print_line("at", now - started, t, live.acks, live.reads, live.checkpoints);
      next_line += cfg.interval;
    }
  };
  history h;
  int kept = 0;
  bool fatal = false;
  for (std::uint64_t round = 0; clock_type::now() - started < cfg.duration && !fatal; ++round) {
    const round_plan plan = plan_round(round, rng);
    const round_result res =
        run_child(paths.map_dir, plan.mode, plan.child_seed, cfg.readers, plan.from_spawn, plan.delay, periodic);
    std::vector<std::string> problems;
    judge_child(res, plan, h, t, problems);
    h.ever_ack = std::max(h.ever_ack, res.last_ack);
    const recovery_check c = check_recovery(paths, round, res, h, t, problems);
    fatal = c.fatal;
    ++t.restarts;
    t.recovered_last = c.version;
    t.recovered_min = std::min(t.recovered_min, c.version);
    h.recovered = c.version;
    if (!problems.empty()) {
      t.failures += problems.size();
      report_failure(paths, ++kept, cfg.seed, round, plan, h, c, problems);
    }
  }

  print_line("final", clock_type::now() - started, t);
  print_totals(t, h.recovered, cfg.seed);
  if (t.failures == 0) {
    fs::remove_all(paths.run, ec);
    std::printf("[soak] PASS\n");
  } else {
    std::printf("[soak] FAIL: directory kept: %s (replay the kill schedule with --seed %llu)\n", paths.run.c_str(),
                static_cast<unsigned long long>(cfg.seed));
  }
  std::fflush(stdout);
  return t.failures == 0 ? 0 : 1;
}

}  // namespace soak

// The command line: Abseil's flags library (--help; durations as 90s, 30m, 2h, 500ms).
ABSL_FLAG(absl::Duration, duration, absl::Seconds(60), "how long to run");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(60), "time between two lines of figures");
ABSL_FLAG(std::string, dir, ".", "the directory to make the run directory in");
ABSL_FLAG(std::optional<std::uint64_t>, seed, std::nullopt,
          "the seed of the kill schedule (default: a random one, printed)");
ABSL_FLAG(int, readers, 2, "reader threads in each child, at least 1");
ABSL_FLAG(bool, child, false, "internal: run as the supervisor's child");
ABSL_FLAG(std::string, mode, "sync", "internal, with --child: the durability mode, sync, async or none");

namespace soak {

[[noreturn]] void bad_usage(const char* what) {
  std::fprintf(stderr, "leftright_soak: %s (--help for the flags)\n", what);
  std::exit(2);
}

std::chrono::milliseconds to_ms(absl::Duration d) { return std::chrono::milliseconds(absl::ToInt64Milliseconds(d)); }

/// Parses the command line into the supervisor's settings and the child's arguments; exits 2
/// with a message on a value out of range (Abseil's parser exits on one that does not parse).
void read_flags(int argc, char** argv, settings& cfg, child_args& child) {
  absl::SetProgramUsageMessage(
      "Readers, a writer, checkpoints and kill -9 restarts of a durable map, for as long as asked.\n"
      "  usage: leftright_soak [--duration D] [--interval D] [--dir PARENT] [--seed N] [--readers N]");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "soak.cpp"); };
  absl::SetFlagsUsageConfig(usage);
  if (absl::ParseCommandLine(argc, argv).size() > 1) bad_usage("no arguments other than flags");
  cfg.duration = to_ms(absl::GetFlag(FLAGS_duration));
  cfg.interval = to_ms(absl::GetFlag(FLAGS_interval));
  if (cfg.duration.count() < 0) bad_usage("--duration must not be negative");
  if (cfg.interval.count() <= 0) bad_usage("--interval must be positive");
  cfg.parent = child.dir = absl::GetFlag(FLAGS_dir);
  const std::optional<std::uint64_t> seed = absl::GetFlag(FLAGS_seed);
  cfg.seed = child.seed = seed ? *seed : (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  cfg.readers = child.readers = absl::GetFlag(FLAGS_readers);
  if (cfg.readers < 1) bad_usage("--readers must be at least 1");
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "none") child.mode = durability::none;
  else if (mode == "async") child.mode = durability::async;
  else if (mode == "sync") child.mode = durability::sync;
  else bad_usage("--mode is sync, async or none");
}

}  // namespace soak

int main(int argc, char** argv) {
  using namespace soak;
  settings cfg;
  child_args child;
  read_flags(argc, argv, cfg, child);
  if (absl::GetFlag(FLAGS_child)) child_main(child);
  try {
    return supervise(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "soak: %s\n", e.what());
    return 2;
  }
}
