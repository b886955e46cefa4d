// SPDX-License-Identifier: Apache-2.0
// examples/cache.cpp: a read-heavy in-process cache on a leftright map.
//
// The scenario: a service keeps user profiles in memory, keyed by a 64-bit id. Request threads
// (the readers) look profiles up all the time, most of them for a few popular users (Zipf-like
// popularity); a single update thread (the writer) applies a stream of changes (new or changed
// profiles, deleted accounts) and publishes them in batches. Each reader thread has its own
// map_reader, made from a reader_factory; lookups never lock and never wait for the writer.
//
// It prints a line per second and a summary: reads/s (in total and per thread), the hit rate,
// updates/s and publishes/s, how long publish() takes, and how stale the readers were:
//   - version lag: for every 64th read, the newest version whose publish() had returned when the
//     read was done, minus the version of the snapshot the read used (0 = up to date). A reader
//     inside a read is never 2 behind: the writer's second publish after the snapshot waits for it.
//   - first sighting: when a reader first sees a version, the time from that version's publish()
//     returning to that moment (steady_clock). Negative when a reader saw the new version before
//     publish() had returned: the swap happens inside publish(), before its membarrier and
//     bookkeeping. Large positive values mean the readers were not running (too few CPUs).
//     The writer records each version's return time in a ring; the first reader to see a version
//     claims it, so each version is timed once, by the reader that saw it first.
// Every read also checks the profile it found (id and checksum), so a torn or half-built value
// would show up as "torn"; the program exits 1 if it ever sees one.
//
// Usage: leftright_cache_example [--seconds S] [--readers R] [--batch N] [--keys K] [--skew Z]
//                                [--rate U]          (--help for details; Abseil flags)
//
// ---------------------------------- Atomics in this file ---------------------------------------
// None of them hands over the cached data: the map's publish() and read() do that (see
// include/leftright/detail/left_right.hpp). These carry statistics and the stop signal, and
// std::thread::join() orders everything the final summary reads.
//   [E1] stop flag                  relaxed   a request to stop; no data travels with it
//   [E2] SIGINT flag                relaxed   as [E1]; lock-free, so a signal handler may store it
//   [C1] per-thread counter stores  relaxed   one writing thread per counter; a statistic
//   [C2] reporter's counter loads   relaxed   a statistic; a slightly old value is fine
//   [H1] histogram bucket updates   relaxed   as [C1]: a plain load + store by the one owner
//   [H2] histogram snapshot loads   relaxed   as [C2]
//   [V1] writer stores "published"  relaxed   a statistic; readers only subtract versions
//   [V2] reader loads "published"   relaxed   a statistic; an older value only lowers the lag
//   [P1] ring slot: version = 0     relaxed   marks the slot as being rewritten; [P2] orders it
//   [P2] ring slot: return time     release   pairs with [L2]: whoever reads this time sees [P1]
//   [P3] ring slot: version = v     release   pairs with [L1]: whoever sees v sees [P2]'s time
//   [L1] reader loads slot version  acquire   pairs with [P3]
//   [L2] reader loads return time   acquire   pairs with [P2]; keeps [L3] after it
//   [L3] reader re-loads version    relaxed   ordered after [L2] by [L2]'s acquire
//   [F1] claim a first sighting     relaxed   an RMW: exactly one reader wins whatever the order
// -----------------------------------------------------------------------------------------------

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
#include <absl/strings/str_format.h>
#include <leftright/leftright.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

/// Padding between data written by different threads.
constexpr std::size_t cache_line = 64;
/// Every sample_every-th read measures the version lag; counters are published at that pace too.
constexpr unsigned sample_every = 64;

// ------------------------------------------------------------------------------------------------
// The cached record. An entry (key and profile) is 72 bytes, more than
// default_traits::max_inline_entry (64), so the map keeps each profile once, in a node both copies
// point to, instead of once per copy.

struct user_profile {
  std::uint64_t id = 0;        ///< equals its key
  std::uint64_t revision = 0;  ///< the writer's update number that wrote it (0 = preloaded)
  std::string display_name;
  std::uint32_t country = 0;
  std::uint32_t score = 0;
  std::uint64_t check = 0;     ///< checksum of the fields above: lets a reader detect a torn value
};

/// splitmix64's finalizer: a cheap, good 64-bit mixer.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t checksum(const user_profile& p) noexcept {
  return mix(p.id ^ mix(p.revision) ^ ((std::uint64_t{p.score} << 32) | p.country) ^
             p.display_name.size());
}

user_profile make_profile(std::uint64_t id, std::uint64_t revision) {
  user_profile p;
  p.id = id;
  p.revision = revision;
  p.display_name = "user-" + std::to_string(id);
  const std::uint64_t h = mix(id * 31 + revision);
  p.country = static_cast<std::uint32_t>(h % 250);
  p.score = static_cast<std::uint32_t>(h >> 40);
  p.check = checksum(p);
  return p;
}

using profile_writer = leftright::map_writer<std::uint64_t, user_profile>;
using profile_reader = leftright::map_reader<std::uint64_t, user_profile>;
using profile_factory = leftright::reader_factory<std::uint64_t, user_profile>;

/// A small, fast random source for the writer.
struct splitmix {
  std::uint64_t state;
  std::uint64_t operator()() noexcept { return mix(state++); }
};

// ------------------------------------------------------------------------------------------------
// Command line.

struct options {
  double seconds = 3;
  unsigned readers = 2;
  std::uint64_t batch = 256;
  std::uint64_t keys = 100'000;
  double skew = 0.99;  ///< Zipf exponent of the readers' key popularity; 0 = uniform
  double rate = 0;     ///< updates/s the writer aims at; 0 = as fast as it can
};

}  // namespace

// The flags (Abseil's flags library: --help, --name=value or --name value, errors for values
// that do not parse). read_options() checks their ranges.
ABSL_FLAG(double, seconds, 3, "how long to run, in seconds (fractions allowed; at most 1e6)");
ABSL_FLAG(unsigned, readers, std::max(2u, std::thread::hardware_concurrency()),
          "reader threads, 1 to 1024 (default: the hardware threads, at least 2)");
ABSL_FLAG(std::uint64_t, batch, 256, "updates per publish(), 1 to 10000000");
ABSL_FLAG(std::uint64_t, keys, 100'000, "distinct user ids, 1 to 10000000");
ABSL_FLAG(double, skew, 0.99, "Zipf exponent of key popularity for reads, 0 (uniform) to 10");
ABSL_FLAG(double, rate, 0, "updates/s the writer aims at (0: as fast as it can)");

namespace {

/// Parses the command line into options; prints what is wrong and exits 2 on a value out of
/// range or an argument that is not a flag (Abseil's parser exits on a flag it cannot parse).
options read_options(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A read-heavy cache: reader threads look up user profiles in a leftright map while one\n"
      "writer thread applies updates and publishes them in batches. Ctrl-C stops early and\n"
      "prints the summary.\n  usage: leftright_cache_example [--seconds S] [--readers R] "
      "[--batch N] [--keys K] [--skew Z] [--rate U]");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "cache.cpp"); };
  usage.version_string = [] { return std::string("leftright ") + LEFTRIGHT_VERSION_STRING + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  const std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  options o;
  o.seconds = absl::GetFlag(FLAGS_seconds);
  o.readers = absl::GetFlag(FLAGS_readers);
  o.batch = absl::GetFlag(FLAGS_batch);
  o.keys = absl::GetFlag(FLAGS_keys);
  o.skew = absl::GetFlag(FLAGS_skew);
  o.rate = absl::GetFlag(FLAGS_rate);
  const char* bad = nullptr;
  if (rest.size() > 1) bad = "no arguments other than flags";
  else if (!(o.seconds > 0 && o.seconds <= 1e6)) bad = "--seconds in (0, 1e6]";
  else if (o.readers < 1 || o.readers > 1024) bad = "--readers in [1, 1024]";
  else if (o.batch < 1 || o.batch > 10'000'000) bad = "--batch in [1, 10000000]";
  else if (o.keys < 1 || o.keys > 10'000'000) bad = "--keys in [1, 10000000]";
  else if (!(o.skew >= 0 && o.skew <= 10)) bad = "--skew in [0, 10]";
  else if (!(o.rate >= 0 && std::isfinite(o.rate))) bad = "--rate finite and >= 0";
  if (bad != nullptr) {
    std::fprintf(stderr, "leftright_cache_example: expected %s (--help for the flags)\n", bad);
    std::exit(2);
  }
  return o;
}

// ------------------------------------------------------------------------------------------------
// Statistics.

/// A histogram of signed integers in log-spaced buckets: exact for |x| < 16, within 1/8 above
/// (|x| up to 2^41; larger values count in the last bucket). Written by one thread, which may be
/// read by others at any time through counts().
class histogram {
  static constexpr int per_sign = 16 + (41 - 4) * 8;  // 16 exact buckets, 8 per octave above

 public:
  static constexpr int size = 2 * per_sign;  // negatives (descending |x|), then 0 and positives

  /// The bucket counts, in ascending order of value; what the reporter adds and subtracts.
  struct counts {
    std::array<std::uint64_t, size> n{};
    std::int64_t max = INT64_MIN;  ///< exact; for a difference of two totals, the later total's

    std::uint64_t total() const noexcept {
      std::uint64_t t = 0;
      for (std::uint64_t c : n) t += c;
      return t;
    }
    counts& operator+=(const counts& o) noexcept {
      for (int i = 0; i < size; ++i) n[i] += o.n[i];
      max = std::max(max, o.max);
      return *this;
    }
    counts& operator-=(const counts& o) noexcept {
      for (int i = 0; i < size; ++i) n[i] -= o.n[i];
      return *this;
    }
    /// The value at quantile q (0..1), approximated by its bucket's middle; nullopt if empty.
    std::optional<double> quantile(double q) const noexcept {
      const std::uint64_t t = total();
      if (t == 0) return std::nullopt;
      const auto target = std::max<std::uint64_t>(
          1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(t))));
      std::uint64_t seen = 0;
      int i = 0;
      while (i < size - 1 && seen + n[i] < target) seen += n[i++];
      // A bucket's middle can overshoot the exact maximum; never report more than that.
      return max == INT64_MIN ? value_of(i) : std::min(value_of(i), static_cast<double>(max));
    }
    /// How many values were below zero, and how many were exactly zero.
    std::uint64_t negatives() const noexcept {
      std::uint64_t neg = 0;
      for (int i = 0; i < per_sign; ++i) neg += n[i];
      return neg;
    }
    std::uint64_t zeros() const noexcept { return n[per_sign]; }
  };

  histogram() = default;
  histogram(const histogram&) = delete;
  histogram& operator=(const histogram&) = delete;

  /// Owner thread only.
  void add(std::int64_t x) noexcept {
    const std::uint64_t mag = x < 0 ? 0 - static_cast<std::uint64_t>(x) : static_cast<std::uint64_t>(x);
    const int b = x < 0 ? per_sign - 1 - bucket(mag) : per_sign + bucket(mag);
    // [H1] relaxed: only the owner writes this counter, so a load and a store (no RMW) count
    //      exactly; other threads read a statistic and need no ordering with anything.
    n_[b].store(n_[b].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // [H1] relaxed: as above, for the exact maximum.
    if (x > max_.load(std::memory_order_relaxed)) max_.store(x, std::memory_order_relaxed);
  }

  /// Any thread: a copy of the counts (each bucket individually current; a statistic).
  counts snapshot() const noexcept {
    counts c;
    // [H2] relaxed: a statistic; buckets may be a few adds apart from each other.
    for (int i = 0; i < size; ++i) c.n[i] = n_[i].load(std::memory_order_relaxed);
    // [H2] relaxed: as above.
    c.max = max_.load(std::memory_order_relaxed);
    return c;
  }

 private:
  static int bucket(std::uint64_t mag) noexcept {
    if (mag < 16) return static_cast<int>(mag);
    const int e = static_cast<int>(std::bit_width(mag)) - 1;  // 4 and up
    if (e > 40) return per_sign - 1;
    const int sub = static_cast<int>((mag >> (e - 3)) & 7);
    return 16 + (e - 4) * 8 + sub;
  }
  static double magnitude_of(int b) noexcept {
    if (b < 16) return b;
    const int e = (b - 16) / 8 + 4;
    const int sub = (b - 16) % 8;
    const double width = std::ldexp(1.0, e - 3);
    return (8 + sub) * width + width / 2;
  }
  static double value_of(int i) noexcept {
    return i < per_sign ? -magnitude_of(per_sign - 1 - i) : magnitude_of(i - per_sign);
  }

  std::array<std::atomic<std::uint64_t>, size> n_{};
  std::atomic<std::int64_t> max_{INT64_MIN};
};

/// What one reader thread counts. Its own cache lines: only that thread writes them.
struct alignas(cache_line) reader_stats {
  std::atomic<std::uint64_t> reads{0};
  std::atomic<std::uint64_t> hits{0};
  std::atomic<std::uint64_t> torn{0};        ///< values that failed their check: must stay 0
  std::atomic<std::uint64_t> unresolved{0};  ///< first sightings that could not be timed
  std::atomic<std::uint64_t> sink{0};        ///< keeps the lookups' results alive
  histogram lag;                             ///< versions behind, every 64th read
  histogram first_seen;                      ///< ns from publish() returning to first sighting
};

struct alignas(cache_line) writer_stats {
  std::atomic<std::uint64_t> updates{0};
  std::atomic<std::uint64_t> erases{0};
  std::atomic<std::uint64_t> publishes{0};
  histogram publish_ns;  ///< publish() call to return
};

/// When each recent version's publish() returned, written by the writer, read by readers. A slot
/// is a tiny seqlock made of atomics: [P1] version = 0, [P2] time, [P3] version = v.
class publish_ring {
 public:
  static constexpr std::size_t size = 4096;  // versions a first sighting may lag and still be timed

  enum class lookup { pending, found, gone };

  /// Writer only: version v's publish() returned at ns.
  void record(std::uint64_t v, std::int64_t ns) noexcept {
    slot& s = slots_[v % size];
    // [P1] relaxed: marks the slot as being rewritten; the release store [P2] orders it before
    //      the new time, so a reader whose [L2] sees the new time sees 0 (or later) at [L3].
    s.version.store(0, std::memory_order_relaxed);
    // [P2] release: pairs with [L2]; see [P1].
    s.returned_ns.store(ns, std::memory_order_release);
    // [P3] release: pairs with [L1]: a reader that sees v also sees [P2]'s time (or a later one,
    //      which its [L3] then detects).
    s.version.store(v, std::memory_order_release);
  }

  /// Any reader: when version v's publish() returned. pending: not recorded yet (the writer is
  /// still inside publish(), or between its return and record()); gone: overwritten by v + size.
  lookup find(std::uint64_t v, std::int64_t& ns) const noexcept {
    const slot& s = slots_[v % size];
    // [L1] acquire: pairs with [P3]; if it reads v, [P2]'s time for v is visible to [L2].
    const std::uint64_t v1 = s.version.load(std::memory_order_acquire);
    // [L2] acquire: pairs with [P2]; if it reads a later writer's time, that writer's [P1] is
    //      visible to [L3]. Also keeps [L3] from moving above it.
    const std::int64_t t = s.returned_ns.load(std::memory_order_acquire);
    // [L3] relaxed: ordered after [L2] by its acquire; a changed version means t is not v's.
    const std::uint64_t v2 = s.version.load(std::memory_order_relaxed);
    if (v1 == v) {
      if (v2 != v) return lookup::gone;
      ns = t;
      return lookup::found;
    }
    return (v1 == 0 || v1 < v) ? lookup::pending : lookup::gone;
  }

  /// Any reader: true for exactly one caller per version (the first to see it, approximately).
  bool claim(std::uint64_t v) noexcept {
    std::atomic<std::uint64_t>& c = slots_[v % size].claimed;
    // [F1] relaxed: RMWs on one variable are totally ordered, so one reader moves it to v; no
    //      other data depends on who won.
    std::uint64_t seen = c.load(std::memory_order_relaxed);
    while (seen < v) {
      // [F1] relaxed: see above.
      if (c.compare_exchange_weak(seen, v, std::memory_order_relaxed)) return true;
    }
    return false;
  }

 private:
  struct alignas(cache_line) slot {
    std::atomic<std::uint64_t> version{0};
    std::atomic<std::int64_t> returned_ns{0};
    std::atomic<std::uint64_t> claimed{0};
  };
  std::unique_ptr<slot[]> slots_ = std::make_unique<slot[]>(size);
};

/// State every thread shares.
struct shared_state {
  clock_type::time_point start = clock_type::now();
  alignas(cache_line) std::atomic<bool> stop{false};
  /// The newest version whose publish() has returned (stored after record()).
  alignas(cache_line) std::atomic<std::uint64_t> published{0};
  publish_ring ring;

  std::int64_t now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - start).count();
  }
};

std::atomic<bool> interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "a signal handler may only use lock-free atomics");

void on_sigint(int) {
  // [E2] relaxed: only a request; the reporter polls it.
  interrupted.store(true, std::memory_order_relaxed);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
}

// ------------------------------------------------------------------------------------------------
// The key stream: 2^20 keys drawn in advance from the popularity distribution, shared read-only
// by all readers, each walking it from its own offset (cheaper per read than drawing).

constexpr std::size_t key_stream_size = std::size_t{1} << 20;

std::vector<std::uint64_t> make_key_stream(std::uint64_t keys, double skew) {
  std::vector<std::uint64_t> out(key_stream_size);
  std::mt19937_64 rng(20240611);
  if (skew == 0) {
    std::uniform_int_distribution<std::uint64_t> pick(0, keys - 1);
    for (auto& k : out) k = pick(rng);
    return out;
  }
  // Zipf: key i (0 = the most popular) has weight 1 / (i+1)^skew.
  std::vector<double> cdf(keys);
  double sum = 0;
  for (std::uint64_t i = 0; i < keys; ++i) {
    sum += 1.0 / std::pow(static_cast<double>(i + 1), skew);
    cdf[i] = sum;
  }
  std::uniform_real_distribution<double> pick(0, sum);
  for (auto& k : out) {
    const auto it = std::lower_bound(cdf.begin(), cdf.end(), pick(rng));
    k = std::min<std::uint64_t>(static_cast<std::uint64_t>(it - cdf.begin()), keys - 1);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// The reader threads.

/// A reader's first sightings waiting for the writer to record their version's return time.
class pending_sightings {
 public:
  void add(std::uint64_t v, std::int64_t seen_ns, std::uint64_t& unresolved) noexcept {
    if (count_ == items_.size()) {  // full: the oldest is hopeless by now
      ++unresolved;
      std::move(items_.begin() + 1, items_.end(), items_.begin());
      --count_;
    }
    items_[count_++] = {v, seen_ns};
  }
  void resolve(const publish_ring& ring, histogram& first_seen, std::uint64_t& unresolved) noexcept {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      std::int64_t returned = 0;
      switch (ring.find(items_[i].version, returned)) {
        case publish_ring::lookup::found:
          first_seen.add(items_[i].seen_ns - returned);
          break;
        case publish_ring::lookup::gone:
          ++unresolved;
          break;
        case publish_ring::lookup::pending:
          items_[kept++] = items_[i];
          break;
      }
    }
    count_ = kept;
  }
  std::size_t size() const noexcept { return count_; }

 private:
  struct item {
    std::uint64_t version;
    std::int64_t seen_ns;
  };
  std::array<item, 16> items_{};
  std::size_t count_ = 0;
};

void run_reader(const profile_factory& factory, const std::vector<std::uint64_t>& key_stream,
                unsigned index, shared_state& shared, reader_stats& stats) {
  const profile_reader reader = factory.make_reader();  // this thread's own registered reader
  std::size_t pos = mix(index) % key_stream_size;
  std::uint64_t reads = 0, hits = 0, torn = 0, sink = 0, unresolved = 0;
  std::uint64_t last_seen = reader.version();  // versions out before we started are not timed
  pending_sightings pending;

  for (;;) {
    for (unsigned j = 0; j < sample_every; ++j) {
      const std::uint64_t key = key_stream[pos];
      pos = (pos + 1) % key_stream_size;

      const auto snapshot = reader.read();  // pins one published version until end of scope
      if (const user_profile* p = snapshot.find(key)) {
        ++hits;
        sink += p->score;
        if (p->id != key || p->check != checksum(*p)) ++torn;
      }
      const std::uint64_t v = snapshot.version();
      if (v != last_seen) [[unlikely]] {  // a version this thread has not seen before
        last_seen = v;
        if (shared.ring.claim(v)) pending.add(v, shared.now_ns(), unresolved);
      }
      if (j == 0) {
        // [V2] relaxed: a statistic; an older value can only make the lag look smaller.
        const std::uint64_t latest = shared.published.load(std::memory_order_relaxed);
        // Negative when this snapshot's publish() has not returned yet (or [V1] not yet seen).
        stats.lag.add(static_cast<std::int64_t>(latest - v));
      }
    }
    reads += sample_every;
    pending.resolve(shared.ring, stats.first_seen, unresolved);
    // [C1] relaxed: this thread is the only writer of its counters; the reporter reads a statistic.
    stats.reads.store(reads, std::memory_order_relaxed);
    stats.hits.store(hits, std::memory_order_relaxed);      // [C1]
    stats.torn.store(torn, std::memory_order_relaxed);      // [C1]
    // [E1] relaxed: a request to stop, no data comes with it; we finish within 64 reads.
    if (shared.stop.load(std::memory_order_relaxed)) break;
  }
  pending.resolve(shared.ring, stats.first_seen, unresolved);
  unresolved += pending.size();
  stats.unresolved.store(unresolved, std::memory_order_relaxed);  // [C1]
  stats.sink.store(sink, std::memory_order_relaxed);              // [C1]
}

// ------------------------------------------------------------------------------------------------
// The writer thread.

/// Reads keep ~80% of the keys present: 1 update in 5 is an erase.
bool is_erase(std::uint64_t r) noexcept { return r % 5 == 0; }

void run_writer(profile_writer& writer, const options& opt, shared_state& shared,
                writer_stats& stats) {
  splitmix rng{0x5eed};
  std::uint64_t revision = 0, updates = 0, erases = 0, publishes = 0;
  const auto paced_from = clock_type::now();

  // [E1] relaxed: as in run_reader; join() orders what this thread wrote before the summary.
  while (!shared.stop.load(std::memory_order_relaxed)) {
    for (std::uint64_t i = 0; i < opt.batch; ++i) {
      const std::uint64_t key = rng() % opt.keys;
      if (is_erase(rng())) {
        writer.erase(key);
        ++erases;
      } else {
        writer.insert_or_assign(key, make_profile(key, ++revision));
      }
    }
    updates += opt.batch;

    const auto called = clock_type::now();
    const std::uint64_t v = writer.publish();
    const auto returned = clock_type::now();
    shared.ring.record(v, std::chrono::duration_cast<std::chrono::nanoseconds>(returned - shared.start).count());
    // [V1] relaxed: a statistic for the readers' version lag; nothing is read through it.
    shared.published.store(v, std::memory_order_relaxed);
    stats.publish_ns.add(std::chrono::duration_cast<std::chrono::nanoseconds>(returned - called).count());
    ++publishes;
    // [C1] relaxed: this thread is the only writer of its counters; the reporter reads a statistic.
    stats.updates.store(updates, std::memory_order_relaxed);
    stats.erases.store(erases, std::memory_order_relaxed);        // [C1]
    stats.publishes.store(publishes, std::memory_order_relaxed);  // [C1]

    if (opt.rate > 0) {  // pace: sleep until the updates so far are due, checking for stop
      const auto due = paced_from + std::chrono::duration_cast<clock_type::duration>(
                                        std::chrono::duration<double>(static_cast<double>(updates) / opt.rate));
      // [E1] relaxed: as above.
      while (clock_type::now() < due && !shared.stop.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_until(std::min(due, clock_type::now() + std::chrono::milliseconds(50)));
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Reporting.

/// Everything the reporter sums up at one moment.
struct totals {
  double at = 0;  ///< seconds since start
  std::uint64_t reads = 0, hits = 0, torn = 0, updates = 0, erases = 0, publishes = 0;
  std::vector<std::uint64_t> reads_per_reader;
  histogram::counts lag, first_seen;
};

totals collect(const shared_state& shared, const reader_stats* rs, unsigned readers,
               const writer_stats& ws) {
  totals t;
  t.at = std::chrono::duration<double>(clock_type::now() - shared.start).count();
  for (unsigned i = 0; i < readers; ++i) {
    // [C2] relaxed: statistics; after join() they are final.
    const std::uint64_t r = rs[i].reads.load(std::memory_order_relaxed);
    t.reads_per_reader.push_back(r);
    t.reads += r;
    t.hits += rs[i].hits.load(std::memory_order_relaxed);  // [C2]
    t.torn += rs[i].torn.load(std::memory_order_relaxed);  // [C2]
    t.lag += rs[i].lag.snapshot();
    t.first_seen += rs[i].first_seen.snapshot();
  }
  t.updates = ws.updates.load(std::memory_order_relaxed);      // [C2]
  t.erases = ws.erases.load(std::memory_order_relaxed);        // [C2]
  t.publishes = ws.publishes.load(std::memory_order_relaxed);  // [C2]
  return t;
}

/// 1234567 -> "1.23M".
std::string si(double x) {
  if (x >= 1e9) return absl::StrFormat("%.2fG", x / 1e9);
  if (x >= 1e6) return absl::StrFormat("%.2fM", x / 1e6);
  if (x >= 1e3) return absl::StrFormat("%.1fk", x / 1e3);
  return absl::StrFormat("%.0f", x);
}

/// A duration in ns -> "+4.1us", "-120ns", "2.3ms"; signed adds a '+' to positive values.
std::string duration(double ns, bool signed_ = false) {
  const char* plus = signed_ && ns > 0 ? "+" : "";
  const double a = std::abs(ns);
  if (a < 1e3) return absl::StrFormat("%s%.0fns", plus, ns);
  if (a < 1e6) return absl::StrFormat("%s%.*fus", plus, a < 1e4 ? 1 : 0, ns / 1e3);
  if (a < 1e9) return absl::StrFormat("%s%.*fms", plus, a < 1e7 ? 1 : 0, ns / 1e6);
  return absl::StrFormat("%s%.2fs", plus, ns / 1e9);
}

std::string quantile_or_dash(const histogram::counts& c, double q, bool as_duration) {
  const auto v = c.quantile(q);
  if (!v) return "-";
  return as_duration ? duration(*v, true) : absl::StrFormat("%.0f", *v);
}

double ratio(std::uint64_t a, std::uint64_t b) {
  return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
}

void print_interval(const totals& now, const totals& before, unsigned readers) {
  const double dt = now.at - before.at;
  const std::uint64_t reads = now.reads - before.reads;
  histogram::counts lag = now.lag;
  lag -= before.lag;
  histogram::counts seen = now.first_seen;
  seen -= before.first_seen;
  const std::string lags = quantile_or_dash(lag, 0.5, false) + "/" + quantile_or_dash(lag, 0.99, false) +
                           "/" + quantile_or_dash(lag, 1.0, false);
  const std::string seens = quantile_or_dash(seen, 0.5, true) + "/" + quantile_or_dash(seen, 0.99, true);
  std::printf("%6.1fs %9s %10s %6.2f %10s %11s %15s %19s\n", now.at,
              si(static_cast<double>(reads) / dt).c_str(),
              si(static_cast<double>(reads) / dt / readers).c_str(),
              100 * ratio(now.hits - before.hits, reads),
              si(static_cast<double>(now.updates - before.updates) / dt).c_str(),
              si(static_cast<double>(now.publishes - before.publishes) / dt).c_str(), lags.c_str(),
              seens.c_str());
  std::fflush(stdout);
}

const char* sync_name(leftright::reader_sync s) {
  switch (s) {
    case leftright::reader_sync::asymmetric:
      return "asymmetric (membarrier per publish, plain loads and stores per read)";
    case leftright::reader_sync::seq_cst:
      return "seq_cst (a locked instruction per read)";
    case leftright::reader_sync::automatic:
      break;
  }
  return "automatic";
}

/// The run's setting and the columns of the lines print_interval prints.
void print_header(const options& opt, std::uint64_t preloaded_profiles, leftright::reader_sync sync) {
  char reads_desc[32] = "uniform";
  if (opt.skew != 0) std::snprintf(reads_desc, sizeof reads_desc, "Zipf s=%g", opt.skew);
  std::printf("leftright cache example: %llu user ids (%llu preloaded), reads %s, %u reader "
              "thread%s, 1 writer\n",
              static_cast<unsigned long long>(opt.keys), static_cast<unsigned long long>(preloaded_profiles),
              reads_desc, opt.readers, opt.readers == 1 ? "" : "s");
  std::printf("writer: batches of %llu updates (80%% insert_or_assign, 20%% erase), %s; "
              "running %gs\n",
              static_cast<unsigned long long>(opt.batch),
              opt.rate > 0 ? (si(opt.rate) + " updates/s").c_str() : "as fast as it can",
              opt.seconds);
  std::printf("reader sync: %s\n", sync_name(sync));
  if (opt.readers + 1 > std::thread::hardware_concurrency()) {
    std::printf("note: %u busy threads on %u hardware threads: readers and the writer take turns on\n"
                "      the CPUs, which shows in publish() times and first sightings\n",
                opt.readers + 1, std::thread::hardware_concurrency());
  }
  std::printf("\nlag: versions a read was behind the newest publish() that had returned (every %uth read;\n"
              "     negative: it saw a publish() still in progress)\n"
              "first seen: when the first reader saw a version, minus when its publish() returned\n",
              sample_every);
  std::printf("\n%7s %9s %10s %6s %10s %11s %15s %19s\n", "time", "reads/s", "per reader", "hit%",
              "updates/s", "publishes/s", "lag p50/p99/max", "first seen p50/p99");
  std::fflush(stdout);
}

/// Prints a line a second (print_interval) until opt.seconds have passed since shared.start or
/// Ctrl-C.
void report_each_second(const options& opt, const shared_state& shared, const reader_stats* rstats,
                        const writer_stats& wstats) {
  const auto end = shared.start + std::chrono::duration_cast<clock_type::duration>(
                                      std::chrono::duration<double>(opt.seconds));
  totals last = collect(shared, rstats, opt.readers, wstats);
  for (int tick = 1;; ++tick) {
    const auto next = std::min(end, shared.start + std::chrono::seconds(tick));
    // [E2] relaxed: polled every 50 ms; no data comes with it.
    while (clock_type::now() < next && !interrupted.load(std::memory_order_relaxed)) {
      std::this_thread::sleep_until(std::min(next, clock_type::now() + std::chrono::milliseconds(50)));
    }
    if (interrupted.load(std::memory_order_relaxed)) return;  // [E2]
    totals now = collect(shared, rstats, opt.readers, wstats);
    if (now.at - last.at >= 0.5) {  // a last fraction of a second only goes into the summary
      print_interval(now, last, opt.readers);
      last = std::move(now);
    }
    if (next == end) return;
  }
}

/// The summary's lines on the readers' rate and hit rate.
void print_read_summary(const totals& all, double secs, unsigned readers) {
  std::printf("  reads        %s in total, %s/s; per reader thread:", si(static_cast<double>(all.reads)).c_str(),
              si(static_cast<double>(all.reads) / secs).c_str());
  for (unsigned i = 0; i < readers; ++i) {
    if (i % 8 == 0 && i != 0) std::printf("\n                                             ");
    std::printf(" %s", si(static_cast<double>(all.reads_per_reader[i]) / secs).c_str());
  }
  std::printf("\n  hit rate     %.2f%% of lookups found a profile\n", 100 * ratio(all.hits, all.reads));
}

/// The summary's lines on the writer: its updates and publishes, and how long a publish() took.
void print_write_summary(const totals& all, double secs, std::uint64_t batch, const histogram::counts& publish_ns,
                         leftright::reader_sync sync) {
  std::printf("  updates      %s (%s/s; %.0f%% erases) in %s publishes (%s/s, %llu per batch)\n",
              si(static_cast<double>(all.updates)).c_str(),
              si(static_cast<double>(all.updates) / secs).c_str(), 100 * ratio(all.erases, all.updates),
              si(static_cast<double>(all.publishes)).c_str(),
              si(static_cast<double>(all.publishes) / secs).c_str(), static_cast<unsigned long long>(batch));
  if (publish_ns.total() != 0) {
    std::printf("  publish()    p50 %s, p99 %s, max %s (call to return: wait for readers, apply the\n"
                "               batch twice, swap%s)\n",
                duration(*publish_ns.quantile(0.5)).c_str(), duration(*publish_ns.quantile(0.99)).c_str(),
                duration(static_cast<double>(publish_ns.max)).c_str(),
                sync == leftright::reader_sync::asymmetric ? ", membarrier" : "");
  }
}

/// The summary's lines on how stale the readers were: the version lag and the first sightings.
void print_staleness_summary(const totals& all, std::uint64_t unresolved) {
  if (const std::uint64_t sampled = all.lag.total(); sampled != 0) {
    const std::uint64_t current = all.lag.zeros(), ahead = all.lag.negatives();
    std::printf("  version lag  p50 %s, p99 %s, max %lld over %s sampled reads (every %uth read):\n"
                "               %s behind the newest publish() that had returned, %s saw a publish()\n"
                "               still in progress, the rest exactly up to date\n",
                quantile_or_dash(all.lag, 0.5, false).c_str(), quantile_or_dash(all.lag, 0.99, false).c_str(),
                static_cast<long long>(all.lag.max), si(static_cast<double>(sampled)).c_str(), sample_every,
                si(static_cast<double>(sampled - current - ahead)).c_str(),
                si(static_cast<double>(ahead)).c_str());
  }
  const std::uint64_t timed = all.first_seen.total();
  std::printf("  first seen   %s of %s versions published while running were seen by a reader; %s timed\n",
              si(static_cast<double>(timed + unresolved)).c_str(),
              si(static_cast<double>(all.publishes)).c_str(), si(static_cast<double>(timed)).c_str());
  if (timed != 0) {
    std::printf("               vs publish() returning: p50 %s, p99 %s, max %s; %.1f%% seen before it returned\n",
                duration(*all.first_seen.quantile(0.5), true).c_str(),
                duration(*all.first_seen.quantile(0.99), true).c_str(),
                duration(static_cast<double>(all.first_seen.max), true).c_str(),
                100 * ratio(all.first_seen.negatives(), timed));
  }
}

}  // namespace

// The essay: build and preload the map, start the readers and the writer, report each second,
// stop them, summarise. Exits 1 if any read saw a torn profile.
int main(int argc, char** argv) {
  const options opt = read_options(argc, argv);
  std::signal(SIGINT, on_sigint);

  const std::vector<std::uint64_t> key_stream = make_key_stream(opt.keys, opt.skew);
  shared_state shared;

  // The map, sized for every key in each copy; preloaded with ~80% of the keys as version 1.
  auto [writer, first_reader] = leftright::make_map<std::uint64_t, user_profile>(opt.keys);
  for (std::uint64_t k = 0; k < opt.keys; ++k) {
    if (!is_erase(mix(k ^ 0xcafe))) writer.insert_or_assign(k, make_profile(k, 0));
  }
  const std::uint64_t preloaded = writer.publish();
  print_header(opt, first_reader.size(), writer.sync_mode());

  // The clock starts now: the preload is not part of the run.
  shared.start = clock_type::now();
  shared.ring.record(preloaded, shared.now_ns());
  shared.published.store(preloaded, std::memory_order_relaxed);  // [V1] relaxed: no thread yet

  // Threads: the readers, each with a reader of its own made from a factory, and the writer.
  auto rstats = std::make_unique<reader_stats[]>(opt.readers);
  writer_stats wstats;
  std::vector<std::thread> threads;
  const profile_factory factory = writer.factory();
  for (unsigned i = 0; i < opt.readers; ++i) {
    threads.emplace_back(run_reader, factory, std::cref(key_stream), i, std::ref(shared),
                         std::ref(rstats[i]));
  }
  threads.emplace_back(run_writer, std::ref(writer), std::cref(opt), std::ref(shared),
                       std::ref(wstats));

  report_each_second(opt, shared, rstats.get(), wstats);

  // [E1] relaxed: threads stop within one batch; join() then orders all their writes before ours.
  shared.stop.store(true, std::memory_order_relaxed);
  const double secs = std::chrono::duration<double>(clock_type::now() - shared.start).count();
  for (auto& t : threads) t.join();
  const totals all = collect(shared, rstats.get(), opt.readers, wstats);
  std::uint64_t unresolved = 0;
  for (unsigned i = 0; i < opt.readers; ++i) {
    unresolved += rstats[i].unresolved.load(std::memory_order_relaxed);  // [C2] after join()
  }

  std::printf("\nsummary: %.2f s%s\n", secs,
              interrupted.load(std::memory_order_relaxed) ? " (interrupted)" : "");  // [E2]
  print_read_summary(all, secs, opt.readers);
  print_write_summary(all, secs, opt.batch, wstats.publish_ns.snapshot(), writer.sync_mode());
  print_staleness_summary(all, unresolved);
  std::printf("  consistency  %llu torn values (each lookup checks its profile's id and checksum)\n",
              static_cast<unsigned long long>(all.torn));
  std::printf("  map          %llu profiles at version %llu, %zu reader slots\n",
              static_cast<unsigned long long>(first_reader.size()),
              static_cast<unsigned long long>(first_reader.version()), writer.reader_slots());
  return all.torn == 0 ? 0 : 1;
}
