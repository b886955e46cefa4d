// SPDX-License-Identifier: Apache-2.0
// Replication through NATS JetStream, against the local baselines in the same run:
//  - replicated_publish / durable_publish: the latency of a leader's publish (batches of 1, 64
//    and 1024 overwrites of u64 keys) beside a durable map's publish in sync mode and in none mode;
//  - replicated_publish_acks: a leader's publish that waits for 1 or 2 of its 2 followers to
//    apply the batch (replication_options::acks);
//  - follower_visibility: the time from a leader's publish until a follower's readers see it;
//    follower_visibility_fanout: the same with 1, 2 or 8 followers attached, until all of them do;
//  - follower_apply_pair: a follower's apply rate against an in-process map_writer's on the same
//    4,000 batches (of 64 or 1024 u64 overwrites), paired: every iteration runs both phases;
//  - follower_bootstrap: a fresh follower of a 1M-entry map, from a snapshot or from the log alone.
// Latency benchmarks report p50 and p99 of their iterations (microseconds) as counters; rates
// are entries per second. Its own executable (it links libnats) and its own nats-server on
// 127.0.0.1, in a temporary store:
//   leftright_bench_replication --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// (--benchmark_filter=follower_apply for one group; bench/README.md says what each one does).
#include <leftright/durable_map.hpp>
#include <leftright/replicated_map.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "measure.hpp"
#include "scratch.hpp"
#include "support/replication_support.hpp"

namespace {

using lrbench::median_of;
using lrbench::process_cpu_seconds;
using u64 = std::uint64_t;
using clock_type = std::chrono::steady_clock;

/// The server every benchmark of this run shares (started on first use).
leftright_test::nats_server& server() {
  static leftright_test::nats_server s;
  return s;
}

/// A fresh map name per benchmark run (streams are per name).
std::string fresh_name(const char* what) {
  static std::atomic<int> n{0};
  // relaxed: a unique number; nothing else is ordered by it.
  return std::string(what) + "-" + std::to_string(n.fetch_add(1, std::memory_order_relaxed));
}

/// Options for a map of its own on the benchmarks' server, named after what (purge_log: the
/// leader trims its log after a snapshot).
leftright::replication_options map_options(const std::string& what, bool purge_log = false) {
  leftright::replication_options o;
  o.url = server().url();
  o.name = fresh_name(what.c_str());
  o.purge_log = purge_log;
  return o;
}

/// Sets p50 and p99 (microseconds) from the iterations' latencies.
void report_percentiles(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
}

template <class Writer>
void queue_batch(Writer& w, u64 batch, u64& next) {
  for (u64 i = 0; i < batch; ++i, ++next) w.insert_or_assign(next % 100'000, next);
}

/// The timed loop of the publish scenarios: each iteration queues a batch of `batch`
/// overwrites, then times w.publish() through until(version) (what the scenario waits for after
/// it: nothing, one follower, every follower; an error message from it ends the run), and
/// reports the percentiles of those times.
template <class Writer, class Until>
void time_publishes(benchmark::State& state, Writer& w, u64 batch, Until&& until) {
  std::vector<double> us;
  u64 next = 0;
  for (auto _ : state) {
    queue_batch(w, batch, next);
    const auto t0 = clock_type::now();
    if (const char* error = until(w.publish())) {
      state.SkipWithError(error);
      break;
    }
    us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  report_percentiles(state, us);
}

/// For time_publishes: publish() alone.
constexpr auto published = [](u64 v) -> const char* {
  benchmark::DoNotOptimize(v);
  return nullptr;
};

void BM_replicated_publish(benchmark::State& state) {
  const u64 batch = static_cast<u64>(state.range(0));
  const auto o = map_options("publish");
  auto [w, r] = leftright::open_leader<u64, u64>(o);
  time_publishes(state, w, batch, published);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_replicated_publish)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();

/// A durable map's publish, in sync mode (range(1) == 1: msync before publish returns) or none
/// (range(1) == 0: the record is in the page cache, as nats-server 2.9 has it when it acks).
void BM_durable_publish(benchmark::State& state) {
  const u64 batch = static_cast<u64>(state.range(0));
  const lrbench::scratch_dir dir("replication-baseline");  // not /tmp: it may be a tmpfs
  {
    leftright::durable_options o;
    o.path = dir.path().string();
    o.durability = state.range(1) == 1 ? leftright::durability::sync : leftright::durability::none;
    auto [w, r] = leftright::open_map<u64, u64>(o);
    time_publishes(state, w, batch, published);
  }
  state.SetLabel("fs=" + lrbench::fs_type(dir.path()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_durable_publish)->ArgsProduct({{1, 64, 1024}, {1, 0}})->ArgNames({"batch", "sync"})->UseRealTime();

/// From the leader's publish() call until a follower's readers see that version.
void BM_follower_visibility(benchmark::State& state) {
  const u64 batch = static_cast<u64>(state.range(0));
  const auto o = map_options("visible");
  auto [w, r] = leftright::open_leader<u64, u64>(o);
  auto [f, fr] = leftright::open_follower<u64, u64>(o);
  time_publishes(state, w, batch, [&f = f](u64 v) -> const char* {
    return f.wait_for(v, std::chrono::seconds(10)) ? nullptr : "the follower did not catch up in 10 s";
  });
}
BENCHMARK(BM_follower_visibility)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();

/// From the leader's publish() call until the readers of every one of N followers (range(0):
/// 1, 2, 8) see that version; batches of range(1) overwrites. Each follower has its own
/// connection and applying thread, as N processes would.
void BM_follower_visibility_fanout(benchmark::State& state) {
  const auto followers = static_cast<std::size_t>(state.range(0));
  const u64 batch = static_cast<u64>(state.range(1));
  const auto o = map_options("fanout");
  auto [w, r] = leftright::open_leader<u64, u64>(o);
  std::vector<leftright::follower<u64, u64>> fs;
  std::vector<leftright::map_reader<u64, u64>> readers;
  for (std::size_t i = 0; i < followers; ++i) {
    auto [f, fr] = leftright::open_follower<u64, u64>(o);
    fs.push_back(std::move(f));
    readers.push_back(std::move(fr));
  }
  time_publishes(state, w, batch, [&fs](u64 v) -> const char* {
    for (auto& f : fs) {
      if (!f.wait_for(v, std::chrono::seconds(10))) return "a follower did not catch up in 10 s";
    }
    return nullptr;
  });
}
BENCHMARK(BM_follower_visibility_fanout)
    ->ArgsProduct({{1, 2, 8}, {64}})
    ->ArgNames({"followers", "batch"})
    ->UseRealTime();

/// A leader's publish() with replication_options::acks: it returns once `acks` (range(1)) of
/// the 2 followers attached have applied the batch; batches of range(0) overwrites. Beside
/// replicated_publish (the engine alone) and follower_visibility (the leader, then one
/// follower's readers) in the same run.
void BM_replicated_publish_acks(benchmark::State& state) {
  const u64 batch = static_cast<u64>(state.range(0));
  auto o = map_options("acks");
  auto [f1, r1] = leftright::open_follower<u64, u64>(o);
  auto [f2, r2] = leftright::open_follower<u64, u64>(o);
  o.acks = static_cast<std::size_t>(state.range(1));
  auto [w, r] = leftright::open_leader<u64, u64>(o);
  time_publishes(state, w, batch, published);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_replicated_publish_acks)->ArgsProduct({{1, 64, 1024}, {1, 2}})->ArgNames({"batch", "acks"})->UseRealTime();

/// The apply-rate comparison's sequence: 4,000 batches over 100,000 keys, all present beforehand
/// (every operation an overwrite). Enough batches that the follower's start (a consumer made on
/// the engine, then the log's range asked: about 5 ms here) does not dominate its rate.
constexpr u64 apply_batches = 4'000;
constexpr u64 apply_keys = 100'000;

/// Queues batch b of the sequence: `batch` overwrites, key (b * batch + i) % apply_keys.
template <class Writer>
void queue_apply_batch(Writer& w, u64 batch, u64 b) {
  for (u64 i = 0; i < batch; ++i) {
    const u64 n = b * batch + i;
    w.insert_or_assign(n % apply_keys, n);
  }
}

/// Inserts every key of the sequence, published in batches of 1024.
template <class Writer>
void prefill_apply_keys(Writer& w) {
  for (u64 k = 0; k < apply_keys; ++k) {
    w.insert_or_assign(k, u64{0});
    if ((k + 1) % 1024 == 0) w.publish();
  }
  w.publish();
}

/// What the phases that read the log themselves let the client hold for them: the whole log.
/// The client's default, 64 MiB, is less than the 4,000 messages of batches of 1,024 (70 MB), and
/// past it the client drops what arrives (NextMsg: "Slow Consumer").
constexpr std::int64_t whole_log_bytes = std::int64_t{1} << 30;

/// Reads the log's messages from version first to last in order, as a follower receives them,
/// calling take(sequence, msg_ptr&&) for each; returns an empty string, or what went wrong. The
/// engine closes a connection whose unsent bytes pass its max_pending (64 MiB: "Slow Consumer
/// Detected" in its log), which a reader of the whole log at batches of 1,024 can reach while its
/// client waits for a core (one run in five, before this); what was sent meanwhile is lost to a
/// consumer without acks. So, as the follower does, this reads on from the next version afresh
/// after a gap or a 2 s silence, up to five times (counted in rereads).
template <class Take>
std::string read_log(const leftright::replication_options& o, u64 first, u64 last, Take&& take, u64& rereads) {
  u64 next = first;
  natsStatus last_status = NATS_OK;
  for (int attempt = 0; attempt < 5 && next <= last; ++attempt) {
    if (attempt > 0) ++rereads;
    leftright::detail::replication::channel ch(o.url, o.name, o.timeout, o.lease_ttl);
    auto sub = ch.subscribe_log(next, whole_log_bytes);
    while (next <= last) {
      natsMsg* m = nullptr;
      last_status = natsSubscription_NextMsg(&m, sub.get(), 2'000);
      if (last_status != NATS_OK) break;
      leftright::detail::replication::msg_ptr msg(m);
      const u64 seq = leftright::detail::replication::channel::position_of(m).sequence;  // as the follower reads it
      if (seq != next) break;
      take(seq, std::move(msg));
      ++next;
    }
  }
  if (next > last) return {};
  return std::string("reading the log stopped at version ") + std::to_string(next) + ", five times (last: " +
         natsStatus_GetText(last_status) + ")";
}

/// What a follower's thread does with log messages it already holds: each decoded and queued on
/// the writer (the follower's own decoding, detail::replication::apply_visitor), published in
/// runs of 4,096 operations as a follower behind the log publishes them.
template <class Writer>
void decode_and_apply(Writer& w, const std::vector<leftright::detail::replication::msg_ptr>& msgs) {
  leftright::detail::replication::apply_visitor<Writer> visit{w};
  for (const auto& m : msgs) {
    leftright::detail::replication::for_each_logged_op<u64, u64>(leftright::detail::replication::message_bytes(m.get()),
                                                                 visit);
    if (w.pending() >= 4096) w.publish();
  }
  w.publish();
}

/// How long one phase took, and this process's CPU time meanwhile, for how many entries.
struct phase_timing {
  double seconds = 0;
  double cpu_seconds = 0;
  double entries = 0;
};

/// Times body(), which returns an empty string or what went wrong, into t (entries: as given).
template <class Body>
std::string timed_phase(phase_timing& t, double entries, Body&& body) {
  const auto t0 = clock_type::now();
  const double cpu0 = process_cpu_seconds();
  std::string error = body();
  t.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  t.cpu_seconds = process_cpu_seconds() - cpu0;
  t.entries = entries;
  return error;
}

/// follower_apply_pair's set-up and its four phases. The leader's log holds the prefill, a
/// snapshot, then versions first..last, the apply sequence's batches; the in-process map (local)
/// and the decoding phase's map (decoding) hold the prefill. Each phase returns an empty
/// string, or what went wrong.
class apply_pair {
 public:
  explicit apply_pair(u64 batch)
      : batch_(batch), o_(map_options("apply", /*purge_log=*/true)), leader_(leftright::open_leader<u64, u64>(o_)) {
    auto& lw = leader_.first;
    prefill_apply_keys(lw);
    lw.snapshot();
    first_ = lw.version() + 1;  // the first log message after the snapshot
    for (u64 b = 0; b < apply_batches; ++b) {
      queue_apply_batch(lw, batch_, b);
      last_ = lw.publish();
    }
    prefill_apply_keys(local_.first);
    prefill_apply_keys(decoding_.first);
  }

  /// The entries of the whole apply sequence.
  double entries() const { return static_cast<double>(apply_batches * batch_); }
  /// The log read afresh by the delivery and decoding phases (read_log), all iterations.
  u64 rereads() const { return rereads_; }

  /// The in-process writer: the batches queued and published one by one.
  void run_local(phase_timing& t) {
    timed_phase(t, entries(), [this] {
      for (u64 b = 0; b < apply_batches; ++b) {
        queue_apply_batch(local_.first, batch_, b);
        local_.first.publish();
      }
      return std::string();
    });
  }

  /// A fresh follower, timed from the end of its first run of log messages until it shows the
  /// last version. One whose first run, or this thread's wait for it, took half the log is
  /// opened again (at batches of 64 the whole log is about 10 ms of applying, and this thread may
  /// wait that long for a core). The follower's thread stops when it is destroyed, untimed.
  std::string run_follower(phase_timing& t) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto opened = leftright::open_follower<u64, u64>(o_);  // not a structured binding: Clang 14 cannot capture one
      auto& f = opened.first;
      if (!f.wait_for(f.version() + 1, std::chrono::seconds(60))) return "a fresh follower applied nothing in 60 s";
      const u64 from = f.version();  // the first run of log messages applied
      if (last_ - from < apply_batches / 2) continue;
      return timed_phase(t, static_cast<double>((last_ - from) * batch_), [&] {
        return f.wait_for(last_, std::chrono::seconds(60)) ? std::string() : "the follower did not catch up in 60 s";
      });
    }
    return "the follower's first run took half the log, five times";
  }

  /// The engine's delivery of the log to a subscriber that only takes each message, timed from
  /// the first one.
  std::string run_delivery(phase_timing& t) {
    clock_type::time_point t0;
    std::string e = read_log(o_, first_, last_, [&](u64 seq, leftright::detail::replication::msg_ptr&&) {
      if (seq == first_) t0 = clock_type::now();
    }, rereads_);
    t.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    t.entries = static_cast<double>((last_ - first_) * batch_);
    return e;
  }

  /// The follower's own decoding and applying of the log's messages, received first (untimed).
  std::string run_decode(phase_timing& t) {
    std::vector<leftright::detail::replication::msg_ptr> delivered;
    std::string e = read_log(o_, first_, last_, [&](u64, leftright::detail::replication::msg_ptr&& m) {
      delivered.push_back(std::move(m));
    }, rereads_);
    if (!e.empty()) return e;
    return timed_phase(t, static_cast<double>((last_ - first_ + 1) * batch_), [&] {
      decode_and_apply(decoding_.first, delivered);
      return std::string();
    });
  }

 private:
  const u64 batch_;
  const leftright::replication_options o_;
  /// The leader, kept open while the phases run (its lease, its streams).
  std::pair<leftright::replicated_writer<u64, u64>, leftright::map_reader<u64, u64>> leader_;
  u64 first_ = 0;
  u64 last_ = 0;
  std::pair<leftright::map_writer<u64, u64>, leftright::map_reader<u64, u64>> local_ = leftright::make_map<u64, u64>();
  std::pair<leftright::map_writer<u64, u64>, leftright::map_reader<u64, u64>> decoding_ =
      leftright::make_map<u64, u64>();
  u64 rereads_ = 0;
};

/// A follower's apply rate against an in-process map_writer's, on the same apply_batches batches
/// of range(0) overwrites. Set-up: the leader publishes the 100,000 keys, takes a snapshot (the
/// log below it is purged), then publishes the batches; the in-process map (make_map) gets the
/// same 100,000 keys. Every iteration runs two phases, the order alternating: in-process, the
/// batches queued and published one by one; follower, a fresh open_follower (it loads the
/// snapshot, untimed), timed from the first version it shows past the snapshot until
/// wait_for(the leader's last version): the log messages after that version decoded, applied
/// and published in runs. Its subscription's start (a consumer made on the engine, the log's
/// range asked: about 5 ms, a fixed cost of every start, and a sixth of the phase at batches
/// of 64) is not timed: this is the rate of applying. A third phase, after the in-process one,
/// measures what bounds the follower from outside it: the engine's delivery of the same log
/// messages to a subscriber that only takes each one as the follower does (its position read,
/// nothing decoded or applied), timed as the follower is, from its first message. A fourth
/// measures the follower's own thread apart from the engine: the same messages, received first
/// (untimed), decoded and applied as the follower does (decode_and_apply). Counters (each the
/// median over the iterations): entries/s of each phase; `ratio`, follower / in-process within
/// each iteration (target: >= 0.5); `delivery_ratio`, delivery / in-process, the most `ratio`
/// could be on this machine with this engine; `decode_ratio`, the fourth phase / in-process, the
/// most it could be were the engine and the client's reader on cores of their own;
/// `in_process_cpu_ns` and `follower_cpu_ns`, this process's CPU time per entry in each phase
/// (all its threads: for the follower, its own, the nats.c reader's and the library's garbage
/// collector's; nats-server's is not counted): what the follower's side costs, apart from the
/// time its threads waited for a core. Both move with
/// whatever else the machine runs: compare builds over several alternating runs.
void BM_follower_apply_pair(benchmark::State& state) {
  apply_pair pair(static_cast<u64>(state.range(0)));
  std::vector<double> local_rate, follower_rate, ratio, delivery_rate, delivery_ratio, decode_ratio, local_cpu,
      follower_cpu;
  bool follower_first = false;
  for (auto _ : state) {
    phase_timing local, follower, delivery, decode;
    std::string error;
    if (follower_first) {
      error = pair.run_follower(follower);
      if (error.empty()) pair.run_local(local);
    } else {
      pair.run_local(local);
      error = pair.run_follower(follower);
    }
    if (error.empty()) error = pair.run_delivery(delivery);
    if (error.empty()) error = pair.run_decode(decode);
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    follower_first = !follower_first;
    local_rate.push_back(local.entries / local.seconds);
    follower_rate.push_back(follower.entries / follower.seconds);
    ratio.push_back(follower_rate.back() / local_rate.back());
    delivery_rate.push_back(delivery.entries / delivery.seconds);
    delivery_ratio.push_back(delivery_rate.back() / local_rate.back());
    decode_ratio.push_back(decode.entries / decode.seconds / local_rate.back());
    local_cpu.push_back(local.cpu_seconds * 1e9 / local.entries);
    follower_cpu.push_back(follower.cpu_seconds * 1e9 / follower.entries);
  }
  state.counters["in_process_per_s"] = median_of(local_rate);
  state.counters["follower_per_s"] = median_of(follower_rate);
  state.counters["ratio"] = median_of(ratio);
  state.counters["delivery_per_s"] = median_of(delivery_rate);
  state.counters["delivery_ratio"] = median_of(delivery_ratio);
  state.counters["decode_ratio"] = median_of(decode_ratio);
  state.counters["in_process_cpu_ns"] = median_of(local_cpu);
  state.counters["follower_cpu_ns"] = median_of(follower_cpu);
  state.counters["log_rereads"] = static_cast<double>(pair.rereads());
}
BENCHMARK(BM_follower_apply_pair)->Arg(64)->Arg(1024)->ArgName("batch")->Iterations(8)->UseRealTime();

/// A fresh follower of a map of 1,000,000 entries (u64 -> u64), written by the leader as 1,000
/// batches of 1,000 inserts: with range(0) == 1 the leader then takes a snapshot (the log below
/// it is purged) and the follower loads it; with 0 there is no snapshot and the follower applies
/// the 1,000 log messages. Timed: open_follower() (connect, read the pointer, load) until
/// wait_for(the leader's version) returns; the follower's stop is not (manual time).
/// entries_per_s: the median over the iterations.
void BM_follower_bootstrap(benchmark::State& state) {
  const bool from_snapshot = state.range(0) == 1;
  constexpr u64 entries = 1'000'000;
  constexpr u64 per_batch = 1'000;
  const auto o = map_options(from_snapshot ? "boot-snap" : "boot-log", from_snapshot);
  auto [w, r] = leftright::open_leader<u64, u64>(o);
  u64 v = 0;
  for (u64 k = 0; k < entries; ++k) {
    w.insert_or_assign(k, k);
    if ((k + 1) % per_batch == 0) v = w.publish();
  }
  if (from_snapshot) w.snapshot();
  std::vector<double> rate;
  for (auto _ : state) {
    const auto t0 = clock_type::now();
    auto [f, fr] = leftright::open_follower<u64, u64>(o);
    if (!f.wait_for(v, std::chrono::seconds(120))) {
      state.SkipWithError("the follower did not reach the leader's version in 120 s");
      break;
    }
    const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    state.SetIterationTime(s);
    rate.push_back(static_cast<double>(entries) / s);
  }
  state.counters["entries_per_s"] = median_of(rate);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * entries));
}
BENCHMARK(BM_follower_bootstrap)
    ->Arg(1)
    ->Arg(0)
    ->ArgName("snapshot")
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
