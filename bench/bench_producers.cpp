// SPDX-License-Identifier: Apache-2.0
// Scenario: many producers, one durable store (the SQLite pain: writers queue on one lock, and
// the usual workaround, synchronous=OFF, gives up durability). N producer threads (1, 2, 8, 32,
// 128) each commit small records (8-byte key, 64-byte value), one write call (one transaction)
// at a time, each to a key of its own, every commit timed on its own.
//
//   leftright/sync, leftright/none  a durable shared_map: concurrent calls are combined, one
//                                   publish, one log record and (sync) one msync per group
//   sqlite_wal/full|normal|off      SQLite in WAL mode, one connection per producer thread,
//                                   busy_timeout 10 s, one INSERT OR REPLACE per transaction
//                                   (autocommit); full is durable like our sync, off not at all
//   lmdb/sync                       LMDB, one write transaction per commit (fsync'ed)
//
// Files go to a fresh directory under $LEFTRIGHT_BENCH_DIR (see durable_adapters.hpp).
// Name: producers/<system>/<mode>/iterations:<k>/real_time/threads:<N>  (k commits per thread)
// Counters: commits_per_s = commits of all producers over the run's wall time (from all ready
// to all done; the figure to read: items_per_second is Google Benchmark's, over the threads'
// average time); p50_us, p99_us = commit latency
// over every commit of the run; errors = commits that failed (SQLITE_BUSY after the timeout,
// any exception), each retried; publishes_per_commit (ours: in sync mode, syncs per commit).
//
// producers_pair/leftright/sync/threads:<N>: N producers against one on the same map, paired
// in one run (bm_producers_pair). ratio = median over pairs of (N producers' commits/s) / (one
// producer's); one_commits_per_s and n_commits_per_s = the medians of each phase's rate.
#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <leftright/shared_map.hpp>

#include "durable_adapters.hpp"
#include "measure.hpp"
#include "workload.hpp"

namespace lrbench {
namespace {

constexpr std::size_t record_value_bytes = 64;

// ---- The stores: open(dir, mode); a per-thread connection with commit(key, value) -> errors. --

struct lr_producer_store {
  static constexpr std::string_view name = "leftright";
  using map_t = leftright::shared_map<std::uint64_t, std::string>;
  lr_producer_store(const fs::path& dir, std::string_view mode) : m(options(dir, mode)) {}
  static leftright::durable_options options(const fs::path& dir, std::string_view mode) {
    leftright::durable_options o;
    o.path = dir / "map";
    o.durability = mode == "sync" ? leftright::durability::sync : leftright::durability::none;
    return o;
  }
  struct connection {
    map_t& m;
    unsigned commit(std::uint64_t k, const std::string& v) {
      m.insert_or_assign(k, v);
      return 0;
    }
  };
  connection connect() { return {m}; }
  map_t m;
};

#if LEFTRIGHT_BENCH_WITH_SQLITE
struct sqlite_producer_store {
  static constexpr std::string_view name = "sqlite_wal";
  sqlite_producer_store(const fs::path& dir, std::string_view mode) : path((dir / "db.sqlite").string()) {
    sync = mode == "full" ? "FULL" : mode == "normal" ? "NORMAL" : "OFF";
    connection c(*this);  // creates the database and its table, and sets WAL mode (persistent)
    c.exec("PRAGMA journal_mode=WAL");
    c.exec("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  }
  class connection {
   public:
    explicit connection(const sqlite_producer_store& s) {
      if (sqlite3_open_v2(s.path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                          nullptr) != SQLITE_OK) {
        const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        throw std::runtime_error("sqlite3_open_v2: " + msg);
      }
      sqlite3_busy_timeout(db_, 10000);
      exec(("PRAGMA synchronous=" + std::string(s.sync)).c_str());
    }
    connection(connection&& o) noexcept : db_(std::exchange(o.db_, nullptr)), put_(std::exchange(o.put_, nullptr)) {}
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection() {
      sqlite3_finalize(put_);
      sqlite3_close(db_);
    }
    void exec(const char* sql) {
      char* err = nullptr;
      if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        const std::string msg = err ? err : "?";
        sqlite3_free(err);
        throw std::runtime_error(std::string(sql) + ": " + msg);
      }
    }
    /// One autocommit INSERT OR REPLACE; SQLITE_BUSY (after busy_timeout) counted and retried.
    unsigned commit(std::uint64_t k, const std::string& v) {
      if (put_ == nullptr && sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)", -1, &put_,
                                                nullptr) != SQLITE_OK) {
        throw std::runtime_error(std::string("sqlite3_prepare_v2: ") + sqlite3_errmsg(db_));
      }
      unsigned errors = 0;
      for (;;) {
        sqlite3_bind_int64(put_, 1, static_cast<sqlite3_int64>(k));
        sqlite3_bind_blob(put_, 2, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
        const int rc = sqlite3_step(put_);
        sqlite3_reset(put_);
        if (rc == SQLITE_DONE) return errors;
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) throw std::runtime_error(std::string("sqlite3_step: ") + sqlite3_errmsg(db_));
        ++errors;
      }
    }

   private:
    sqlite3* db_ = nullptr;
    sqlite3_stmt* put_ = nullptr;
  };
  connection connect() { return connection(*this); }
  std::string path;
  const char* sync = "FULL";
};
#endif

#if LEFTRIGHT_BENCH_WITH_LMDB
struct lmdb_producer_store {
  static constexpr std::string_view name = "lmdb";
  lmdb_producer_store(const fs::path& dir, std::string_view) {
    check(mdb_env_create(&env), "mdb_env_create");
    check(mdb_env_set_mapsize(env, std::size_t{1} << 30), "mdb_env_set_mapsize");
    check(mdb_env_open(env, dir.c_str(), 0, 0644), "mdb_env_open");
    MDB_txn* txn = nullptr;
    check(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, nullptr, 0, &dbi), "mdb_dbi_open");
    check(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  lmdb_producer_store(const lmdb_producer_store&) = delete;
  lmdb_producer_store& operator=(const lmdb_producer_store&) = delete;
  ~lmdb_producer_store() { mdb_env_close(env); }
  struct connection {
    lmdb_producer_store& s;
    unsigned commit(std::uint64_t k, const std::string& v) {
      MDB_txn* txn = nullptr;
      check(mdb_txn_begin(s.env, nullptr, 0, &txn), "mdb_txn_begin");
      MDB_val key{sizeof k, &k}, val{v.size(), const_cast<char*>(v.data())};
      if (int rc = mdb_put(txn, s.dbi, &key, &val, 0); rc != 0) {
        mdb_txn_abort(txn);
        check(rc, "mdb_put");
      }
      check(mdb_txn_commit(txn), "mdb_txn_commit");
      return 0;
    }
  };
  connection connect() { return {*this}; }
  static void check(int rc, const char* what) {
    if (rc != 0) throw std::runtime_error(std::string(what) + ": " + mdb_strerror(rc));
  }
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
};
#endif

// ---- One run: the store and what its threads gather, made by Setup, dropped by Teardown. ----

struct run_data {
  std::unique_ptr<scratch_dir> dir;
  std::shared_ptr<void> store;
  std::unique_ptr<std::barrier<>> start, done;
  std::chrono::steady_clock::time_point t0;  // written by thread 0 between the start barriers
  std::mutex mu;
  std::vector<double> samples;  // guarded by mu
  std::uint64_t errors = 0;     // guarded by mu
  leftright::shared_map_stats before{};
};
std::unique_ptr<run_data> current_run;

template <class Store, std::size_t Mode>
void setup_run(const benchmark::State& state);
void teardown_run(const benchmark::State&) { current_run.reset(); }

template <class Store>
std::vector<std::string_view> modes_of() {
  if constexpr (std::is_same_v<Store, lr_producer_store>) return {"sync", "none"};
#if LEFTRIGHT_BENCH_WITH_SQLITE
  if constexpr (std::is_same_v<Store, sqlite_producer_store>) return {"full", "normal", "off"};
#endif
  return {"sync"};
}

template <class Store, std::size_t Mode>
void setup_run(const benchmark::State& state) {
  const std::string_view mode = modes_of<Store>()[Mode];
  auto r = std::make_unique<run_data>();
  r->dir = std::make_unique<scratch_dir>("producers-" + std::string(Store::name) + "-" + std::string(mode));
  auto s = std::make_shared<Store>(r->dir->path(), mode);
  if constexpr (std::is_same_v<Store, lr_producer_store>) r->before = s->m.stats();
  r->store = s;
  r->start = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(state.threads()));
  r->done = std::make_unique<std::barrier<>>(static_cast<std::ptrdiff_t>(state.threads()));
  current_run = std::move(r);
}

/// Thread 0, after every thread's commits: the run's latency quantiles, errors, publishes.
template <class Store>
void report(benchmark::State& state, run_data& r, double seconds) {
  state.counters["commits_per_s"] = static_cast<double>(r.samples.size()) / seconds;
  std::sort(r.samples.begin(), r.samples.end());
  state.counters["p50_us"] = quantile(r.samples, 0.50) / 1e3;
  state.counters["p99_us"] = quantile(r.samples, 0.99) / 1e3;
  state.counters["errors"] = static_cast<double>(r.errors);
  if constexpr (std::is_same_v<Store, lr_producer_store>) {
    const auto after = static_cast<Store*>(r.store.get())->m.stats();
    const double writes = static_cast<double>(after.writes - r.before.writes);
    state.counters["publishes_per_commit"] = writes > 0 ? static_cast<double>(after.publishes - r.before.publishes) / writes : 0;
    state.counters["largest_group"] = static_cast<double>(after.largest_group);
  }
  state.SetLabel("fs=" + fs_type(r.dir->path()));
}

template <class Store>
void bm_producers(benchmark::State& state) {
  run_data& r = *current_run;
  auto& store = *static_cast<Store*>(r.store.get());
  std::vector<double> samples;
  std::uint64_t errors = 0;
  std::optional<decltype(store.connect())> conn;
  try {
    conn.emplace(store.connect());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    ++errors;
  }
  // The run's wall time: from every producer ready (connection open) to every producer done,
  // taken by thread 0 (Google Benchmark's own real time averages the threads' times, which
  // flatters runs whose threads are scheduled one after another).
  r.start->arrive_and_wait();
  if (state.thread_index() == 0) r.t0 = std::chrono::steady_clock::now();
  r.start->arrive_and_wait();
  try {
    std::string value(record_value_bytes, 'v');
    const std::uint64_t base = static_cast<std::uint64_t>(state.thread_index()) << 40;
    std::uint64_t i = 0;
    samples.reserve(static_cast<std::size_t>(state.max_iterations));
    for (auto _ : state) {
      ++i;
      std::memcpy(value.data(), &i, sizeof i);
      const auto t0 = std::chrono::steady_clock::now();
      errors += conn->commit(base | i, value);
      samples.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    ++errors;
  }
  {
    std::lock_guard<std::mutex> lock(r.mu);
    r.samples.insert(r.samples.end(), samples.begin(), samples.end());
    r.errors += errors;
  }
  r.done->arrive_and_wait();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - r.t0).count();
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) report<Store>(state, r, seconds);
}

/// Commits of the one producer in a pair's solo phase, and of each producer in its N phase.
constexpr int pair_solo_commits = 128;
constexpr int pair_commits_per_producer = 64;

/// Paired: each iteration runs two phases on the same map, the order alternating: thread 0
/// alone commits pair_solo_commits while the others wait, then every thread commits
/// pair_commits_per_producer (or the other way round); thread 0 times each phase from the
/// barrier that starts it to the one that ends it. The figure is the N-phase rate over the solo
/// one, the two orders' medians' geometric mean (measure.hpp). Unpaired, the two rates come from runs seconds to minutes
/// apart, while this disk's sync latency moves by half within minutes (one producer ran at
/// 4.6k-8.6k commits/s within one session), and with it the ratio of two separate runs.
void bm_producers_pair(benchmark::State& state) {
  run_data& r = *current_run;
  auto conn = static_cast<lr_producer_store*>(r.store.get())->connect();
  const bool lead = state.thread_index() == 0;
  std::string value(record_value_bytes, 'v');
  const std::uint64_t base = static_cast<std::uint64_t>(state.thread_index()) << 40;
  std::uint64_t i = 0;
  std::string error;  // a commit that threw: this thread commits no more, but still meets the barriers
  const auto phase = [&](bool all) {
    r.start->arrive_and_wait();
    const auto t0 = std::chrono::steady_clock::now();
    const int commits = all ? pair_commits_per_producer : lead ? pair_solo_commits : 0;
    try {
      for (int c = 0; c < commits && error.empty(); ++c) {
        ++i;
        std::memcpy(value.data(), &i, sizeof i);
        conn.commit(base | i, value);
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    r.done->arrive_and_wait();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // The one producer's phase is the baseline; each phase's time is per commit, so that the ratio
  // is the N-phase rate over the solo one. Every thread keeps the pairs (in step), thread 0 reports.
  alternating_pairs pairs;
  std::vector<double> solo_rates, all_rates;
  const double all_commits = static_cast<double>(state.threads()) * pair_commits_per_producer;
  for (auto _ : state) {
    const bool solo_first = pairs.baseline_first();
    const double t_first = phase(!solo_first);
    const double t_second = phase(solo_first);
    const double t_solo = solo_first ? t_first : t_second;
    const double t_all = solo_first ? t_second : t_first;
    pairs.record(t_solo / pair_solo_commits, t_all / all_commits);
    solo_rates.push_back(pair_solo_commits / t_solo);
    all_rates.push_back(all_commits / t_all);
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
  } else if (lead) {
    state.counters["ratio"] = pairs.ratio();
    state.counters["order_effect"] = pairs.order_effect();
    state.counters["one_commits_per_s"] = median_of(solo_rates);
    state.counters["n_commits_per_s"] = median_of(all_rates);
    state.counters["pairs"] = static_cast<double>(pairs.pairs());
  }
  state.SetItemsProcessed(state.iterations() * (pair_commits_per_producer + (lead ? pair_solo_commits : 0)));
}

template <class Store>
void add_store() {
  const auto modes = modes_of<Store>();
  for (std::size_t m = 0; m < modes.size(); ++m) {
    for (int n : {1, 2, 8, 32, 128}) {
      const std::string name = "producers/" + std::string(Store::name) + "/" + std::string(modes[m]);
      auto* b = benchmark::RegisterBenchmark(name.c_str(), &bm_producers<Store>);
      // 400 commits in all, and at least 64 per producer: with 16 each, 32 producers made a
      // run of some 18 groups, in which the first groups and the last ones (producers finish
      // unevenly, the last groups small) weighed on the rate; 32 producers over one, 8 runs
      // each: 4.5-10.3x with 16, 7.3-11.2x with 64 (medians 8.1x and 8.5x).
      b->Threads(n)->UseRealTime()->Iterations(std::max(64, 400 / n))->Teardown(teardown_run);
      switch (m) {
        case 0: b->Setup(setup_run<Store, 0>); break;
        case 1: b->Setup(setup_run<Store, 1>); break;
        default: b->Setup(setup_run<Store, 2>); break;
      }
    }
  }
}

[[maybe_unused]] const bool registered = [] {
  add_store<lr_producer_store>();
  benchmark::RegisterBenchmark("producers_pair/leftright/sync", &bm_producers_pair)
      ->Threads(32)
      ->UseRealTime()
      ->Iterations(15)
      ->Setup(setup_run<lr_producer_store, 0>)
      ->Teardown(teardown_run);
#if LEFTRIGHT_BENCH_WITH_SQLITE
  add_store<sqlite_producer_store>();
#endif
#if LEFTRIGHT_BENCH_WITH_LMDB
  add_store<lmdb_producer_store>();
#endif
  return true;
}();

}  // namespace
}  // namespace lrbench
