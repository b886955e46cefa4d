// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the tests: traits for each reader mode, an instance-counting value, a value
// whose copies can be made to throw, a bounded wait (yields_until), a seeded random source that
// prints its seed, a failure log for worker threads, a temporary directory, a watchdog, and the
// log segments of a map directory.
// The other helpers of tests/support/: model_map.hpp (the model a map is compared against),
// child_process.hpp (one child process and its pipe), file_damage.hpp (bytes of files changed on
// purpose, and a log segment's records found by the format), sim_fs.hpp and sim_workload.hpp (the
// simulated file system and its workloads), shared_map_support.hpp, replication_support.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <thread>
#include <cerrno>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <system_error>
#include <algorithm>
#include <vector>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <leftright/detail/storage/format.hpp>
#include <leftright/map.hpp>

namespace lrtest {

/// Readers with seq_cst enter/leave; copies compared at every publish.
struct seq_cst_traits : leftright::default_traits {
  static constexpr leftright::reader_sync sync = leftright::reader_sync::seq_cst;
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::every_publish;
};
/// Readers with the asymmetric barrier where the kernel has it (seq_cst otherwise, and under
/// ThreadSanitizer); copies compared at every publish.
struct asymmetric_traits : leftright::default_traits {
  static constexpr leftright::reader_sync sync = leftright::reader_sync::asymmetric;
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::every_publish;
};
/// reader_sync::automatic (asymmetric while publishes are rare, readers fencing while they are
/// frequent, where the kernel has membarrier); copies compared at every publish.
struct automatic_traits : leftright::default_traits {
  static constexpr leftright::reader_sync sync = leftright::reader_sync::automatic;
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::every_publish;
};
/// A uint64_t -> uint64_t map (writer, reader) with the given traits.
template <class Traits>
auto make_u64_map() {
  return leftright::make_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>, std::equal_to<std::uint64_t>,
                             Traits>();
}
/// A burst on a uint64_t map: key 1 set to i + 1, i + 2, ..., one publish each, back to back (far
/// above 8 a millisecond on any machine that runs the suite), until the rate rule asks readers
/// to fence or i reaches limit. Returns the last value published.
template <class Writer>
std::uint64_t publish_until_fencing(Writer& w, std::uint64_t i, std::uint64_t limit) {
  while (!w.readers_fence() && i < limit) {
    w.insert_or_assign(1, ++i);
    w.publish();
  }
  return i;
}

/// Counts live instances, so a test can assert that nothing leaked or was destroyed twice.
struct counted {
  static inline std::atomic<long> live{0};
  long v = 0;
  counted() { live.fetch_add(1, std::memory_order_relaxed); }  // [T1] relaxed: a plain counter
  explicit counted(long x) : v(x) { live.fetch_add(1, std::memory_order_relaxed); }  // [T1]
  counted(const counted& o) : v(o.v) { live.fetch_add(1, std::memory_order_relaxed); }  // [T1]
  counted(counted&& o) noexcept : v(o.v) { live.fetch_add(1, std::memory_order_relaxed); }  // [T1]
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) noexcept = default;
  ~counted() {
    // [T1] relaxed: a plain counter; a second destruction shows as a negative count.
    live.fetch_sub(1, std::memory_order_relaxed);
    v = -999;  // a use after destruction shows up as a wrong value
  }
  friend bool operator==(const counted& a, const counted& b) { return a.v == b.v; }
};

/// A value whose copy constructor throws once the budget of allowed copies is spent
/// (budget < 0: never throws; refuse_once: only the first refused copy throws). Moves never throw.
/// Single-threaded tests only.
struct fragile {
  static inline long copy_budget = -1;
  static inline bool refuse_once = false;
  long v = 0;
  fragile() = default;
  explicit fragile(long x) : v(x) {}
  fragile(const fragile& o) : v(o.v) {
    if (copy_budget == 0) {
      if (refuse_once) copy_budget = -1;
      throw std::runtime_error("fragile: copy refused");
    }
    if (copy_budget > 0) --copy_budget;
  }
  fragile(fragile&& o) noexcept : v(o.v) {}
  fragile& operator=(const fragile& o) {
    fragile tmp(o);
    v = tmp.v;
    return *this;
  }
  fragile& operator=(fragile&&) noexcept = default;
  friend bool operator==(const fragile& a, const fragile& b) { return a.v == b.v; }
};

/// A value too large to store inline (map entries above default_traits::max_inline_entry bytes
/// are stored once, shared by both copies): a T plus a kilobyte of payload.
template <class T>
struct large {
  T inner;
  char payload[1024] = {};
  large() = default;
  explicit large(long x) : inner(x) { payload[0] = static_cast<char>(x); }
  friend bool operator==(const large& a, const large& b) {
    return a.inner == b.inner && a.payload[0] == b.payload[0];
  }
};

/// Waits, yielding the processor, until pred() holds; false if it did not within 30 s, a bound
/// only a broken implementation reaches (for waits that end in microseconds when all is well).
/// The bound on a wait, never a timing assertion.
template <class Pred>
bool yields_until(Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

/// A seed from LEFTRIGHT_SEED if set, else random; printed so a failure can be replayed.
inline std::uint64_t test_seed() {
  std::uint64_t seed;
  if (const char* s = std::getenv("LEFTRIGHT_SEED")) {
    seed = std::strtoull(s, nullptr, 10);
  } else {
    seed = std::random_device{}();
    seed = (seed << 32) ^ std::random_device{}();
  }
  UNSCOPED_INFO("seed " << seed << " (replay with LEFTRIGHT_SEED=" << seed << ")");
  WARN("seed " << seed);
  return seed;
}

/// Keys and values of each tested type made from an integer.
template <class T>
T make(long i) {
  if constexpr (std::is_same_v<T, std::string>) {
    std::string s = "k";
    s += std::to_string(i);
    s.append(static_cast<std::size_t>(i % 23), 'x');
    return s;
  } else {
    return static_cast<T>(i);
  }
}

/// Failures found by worker threads (Catch2 assertions are not thread-safe); the main thread
/// asserts on count() after join().
class failure_log {
 public:
  template <class... Parts>
  void add(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    std::lock_guard<std::mutex> lock(mu_);
    if (first_.size() < 10) first_.push_back(out.str());
    ++count_;
  }
  long count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::string summary() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string s = std::to_string(count_) + " failures";
    for (const std::string& f : first_) s += "\n  " + f;
    return s;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> first_;
  long count_ = 0;
};

/// A fresh directory /tmp/leftright-<tag>-XXXXXX, removed with everything in it at scope exit.
class temp_dir {
 public:
  explicit temp_dir(const char* tag) {
    std::string templ = std::string("/tmp/leftright-") + tag + "-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    path_ = templ;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

/// Aborts the test binary with a message if a scope (a stress test) runs longer than a limit:
/// a deadlock fails loudly instead of hanging CI.
class watchdog {
 public:
  watchdog(std::chrono::seconds limit, const char* what)
      : thread_([this, limit, what] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: '%s' did not finish within %lld s (deadlock?)\n", what,
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

/// The log segment files in a map's directory (wal-*.log), in version order.
inline std::vector<std::string> segments(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (leftright::detail::storage::parse_hex_name(n, "wal-", ".log")) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// A key of type K made from an integer: the integer itself, or "key-<i>" for strings.
template <class K>
K key_of(std::uint64_t i) {
  if constexpr (std::is_same_v<K, std::string>) {
    return "key-" + std::to_string(i);
  } else {
    return static_cast<K>(i);
  }
}

/// One random write on key k with value v, to the writer w and to its model (a std::map): an
/// insert_or_assign half the time, an insert 30%, an erase 20%.
template <class Writer, class Model, class K>
void random_write(Writer& w, Model& model, std::mt19937_64& rng, const K& k, std::uint64_t v) {
  const auto kind = rng() % 10;
  if (kind < 5) {
    w.insert_or_assign(k, v);
    model[k] = v;
  } else if (kind < 8) {
    w.insert(k, v);
    model.emplace(k, v);
  } else {
    w.erase(k);
    model.erase(k);
  }
}

}  // namespace lrtest
