// SPDX-License-Identifier: Apache-2.0
// leftright: cache, a bounded, expiring, loading cache that any thread reads and writes, built on
// shared_map.
//
// Reads. get() is a shared_map read (a per-thread map_reader, one guard, one lookup, a copy of
// the value) plus what the policy needs: on a hit, the key (an integer key as it is, another
// key's hash) written to the thread's own ring of recent accesses, whose position counts the
// thread's hits; on a miss, the thread's own miss counter (detail/cache_buffers.hpp). The writer
// hashes the integer keys when it drains the rings, off the read path.
// get()'s common case, a hit on an entry that never expires, is kept small enough for the
// compiler to inline into the caller (as shared_map::get is): the clock is read out of line, only
// for an entry that can expire, and the value is returned straight from the entry. (Measured
// with GCC 12, issue 17: built through a local std::optional, the result was assembled in memory
// and reloaded whole, a store-forwarding stall on every hit, and get() with its lookup and its
// guard stayed out of line; the ring's own stores cost a few percent.)
// A reader writes no line another thread writes and never waits. An entry that can expire holds
// its deadline, and get() compares it with the ticker: an expired entry is a miss whether or not
// the writer has removed it yet. get_all() is get() over many keys in one read (one snapshot),
// each hit recorded and each miss counted as get()'s.
//
// Writes. put(), invalidate() and run_pending() take the cache's writer lock, and under it: drain
// every thread's ring into the eviction policy (detail/cache_policy.hpp, adaptive W-TinyLFU),
// remove the entries whose deadline has passed, let the policy pick the victims the new entry
// displaces, and publish all of it as one shared_map update: the new entry and the erases of the
// victims become visible together, so after any write returns the cache holds at most
// max_entries entries (max_weight of weight). The policy knows entries by hash; the writer keeps
// the index from hash to key (and deadline, and weight) that turns its decisions into erases.
// Two resident keys never share a hash: the second one's put replaces the first (counted as an
// eviction; with 64-bit hashes it does not happen in practice).
// A write's plan is an ordered list of erases and assignments, applied in that order by the one
// update. put_all() adds every entry's put to one plan (the policy deciding on each in turn), so
// an entry may be put and then evicted by the same plan: the map never holds it, the listener
// hears of it with the value put (the plan keeps, by hash, where each of its own values is).
// compute() runs its function inside a write, under the writer lock, after the maintenance: what
// the function reads (the write's snapshot of the map) is what its result replaces, as no other
// write can run between them. The function's calls that would take the writer lock again throw
// (a thread-local list of the caches whose function runs on the thread: detail::cache_function_scope).
//
// Loads. get_or_load() coalesces concurrent misses of one key: the first caller runs the loader
// (in its own thread, with no lock held) and puts the value; the others wait on that load and get
// its value or its exception (or the exception of copying the value to them: they are released
// whatever happens). A failed load caches nothing. An explicit write of the key made while the
// loader runs wins over the load, as in Caffeine and moka: a load registers itself under the
// writer lock before it looks again and calls the loader (load_marks_), put(), put_all(),
// compute() and invalidate() of its key count a write in that record, invalidate_if() and
// invalidate_all() count one for every load (bulk_invalidations_), and the load stores its value,
// under the writer lock, only if no write was counted since it registered. The value is returned
// to the loading caller and its waiters either way. get_all_or_load() is the same for many keys
// at once: it claims the loads of the keys it missed that no one is loading (the others it waits
// for, after its own are done), registers them, calls its bulk loader once for them, stores what
// it returned in one write, and hands each claimed load its value, or "not found" (a caller
// waiting on such a key then asks its own loader).
//
// Refreshes (cache_options::refresh_after_write, as Caffeine's refreshAfterWrite). Each entry
// holds when it becomes due for refresh, as it holds its deadline; get_or_load()'s hit checks
// it (get() does not: it never refreshes). The first caller to find an entry due registers a
// refresh of the key (a table under the load mutex, beside the loads in flight: one refresh per
// key at a time, none while a load of the key runs) and takes, under the writer lock, the stamp
// of the write that put the entry. The refresh runs the caller's loader, on the caller's thread
// or on the refresh executor, and puts the value through the writer only if the entry still
// carries that stamp: an entry invalidated, replaced (a put, a load), evicted or expired
// meanwhile is not brought back. Misses do not wait for a refresh: a refresh may sit in an
// executor's queue for long, and a miss is a caller with no value to return meanwhile.
//
// Expiry after access (cache_options::expire_after_access, as Caffeine's expireAfterAccess). A
// reader writes nothing the writer reads but its ring, so a read cannot move a deadline itself:
// the writer learns of reads when it drains the rings (every write's maintenance), dates each by
// the drain before (the latest time it is known to have followed: never late), keeps for each
// entry the time of the last read it saw and the deadline its write gave it, and publishes a moved
// deadline (the entry again, value copied) once less than half of expire_after_access is left,
// so that a hot entry is republished about twice a period, not at every read. get_or_load()'s hit
// on an entry in that last half runs a maintenance (keep_alive(), a few a period per cache), so
// that a cache read through it moves its deadlines without writes; get() stays wait-free and
// leaves its reads to the next maintenance.
//
// Atomics in this file: the load and refresh counters, and the time of the next keep-alive.
//   [K1] fetch_add / load  relaxed  counts only, publishing no other data (as cache_buffers.hpp's
//                                   [B6]); a joined thread's adds happen-before the joiner's
//                                   stats() through the join
//   [K2] load / CAS        relaxed  elects the one hit that runs a keep-alive maintenance for a
//                                   while (or for a deadline); nothing is published with it (the
//                                   maintenance takes the writer lock), and a stale load only
//                                   loses or wins that election
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "detail/cache_buffers.hpp"
#include "detail/cache_policy.hpp"
#include "detail/shared_map_readers.hpp"
#include "detail/thread_scope.hpp"
#include "shared_map.hpp"

namespace leftright {

struct cache_options {
  /// Most entries kept (0: no bound by count). Not together with max_weight.
  std::size_t max_entries = 0;
  /// Most total weight kept (0: no bound by weight); needs a weigher. At most 2^62, so that
  /// the weights the policy sums (the bound, and one entry more while it evicts) cannot wrap.
  std::uint64_t max_weight = 0;
  /// How long an entry lives after its put (0: entries do not expire). put(k, v, ttl) overrides it.
  std::chrono::nanoseconds expire_after_write{0};
  /// How long an entry lives after it was last read or written (0: no such bound; as Caffeine's
  /// expireAfterAccess): an idle session, a connection not used for a while. With
  /// expire_after_write (or a put's ttl) too, the entry goes at whichever comes first. Reads stay
  /// wait-free and write nothing shared, so the deadline a reader compares with is the writer's:
  /// a hit is recorded in the thread's ring, as for the policy, and a write's maintenance
  /// (any write, run_pending()) that finds an entry read since its deadline was set, and that
  /// deadline less than half of expire_after_access away, moves it to the read's time plus
  /// expire_after_access (the entry is published again, with its value, not reported). A ring
  /// holds no times: a read is dated by the maintenance before the one that sees it, the latest
  /// time it is known to have followed. So an entry is never served more than
  /// expire_after_access after its last read or write, and a read keeps its entry if
  /// maintenances run often enough, and one in the second half of the entry's time left: a hit of
  /// get_or_load() on such an entry runs one (about four a period of expire_after_access for the
  /// cache, and one more for an entry that would expire before the next; none for an entry its
  /// write deadline caps, nor from inside a function the cache runs; its errors left to the next
  /// write); get(), get_all(), get_many()
  /// do not, so a cache read only through them needs writes or a run_pending() at least every
  /// expire_after_access / 4 (a timer) for their reads to count. An entry may thus go early (a
  /// read not yet seen, dated early, or dropped from a full ring: a miss, never a stale value),
  /// never late (but for a get_or_load() hit's own call time). A durable cache reopened
  /// keeps each entry's deadline as it was at most (the write deadline that capped it is not
  /// stored).
  std::chrono::nanoseconds expire_after_access{0};
  /// The clock, in nanoseconds. Empty: std::chrono::steady_clock for an in-memory cache, and
  /// std::chrono::system_clock for a durable one (its deadlines outlive a reboot). Tests pass a
  /// fake one.
  /// Called by every thread that reads an entry that can expire: it must be thread-safe.
  std::function<std::int64_t()> ticker{};
  /// How long a write waits for a thread stuck in a long read of the cache's map (a get() whose
  /// value copy blocks): as shared_map_options::max_reader_wait (0: as long as it takes; at most
  /// 8 copies held for stuck readers, then writes wait again).
  std::chrono::nanoseconds max_reader_wait{0};
  /// How long after its write an entry becomes due for refresh (0: never; as Caffeine's
  /// refreshAfterWrite). A due entry is still a hit for get_or_load(key, loader), which returns
  /// it and starts one refresh of the key with that loader: loader(key)'s value then replaces
  /// the entry as a put does (a new write time and expiry), unless the entry was invalidated,
  /// replaced, evicted or expired meanwhile (then the value is dropped). A refresh that throws
  /// leaves the old value (counted in load_failures); the next due call tries again. get(),
  /// get_all() and peek() never refresh, and an expired entry is a miss however it got there.
  std::chrono::nanoseconds refresh_after_write{0};
  /// Where refreshes run. Empty: on the thread of the get_or_load() that found the entry due,
  /// before it returns, and that call returns the refreshed value (or, if the refresh threw, the
  /// old one); other callers meanwhile get the old value without waiting. Set: each refresh is
  /// submitted as a task, and the call returns the old value at once. The task does not throw,
  /// and may outlive the cache (a thread pool that outlives it is the usual case): destroying
  /// the cache waits for the tasks running then (do not destroy it from a loader's thread while
  /// its loader waits for that thread), and a task run or destroyed after it does nothing. A
  /// task destroyed unrun ends its refresh: the next due call starts another. An executor that
  /// throws: no refresh, the call still returns the old value.
  std::function<void(std::function<void()>)> refresh_executor{};
};

struct cache_stats {
  std::uint64_t hits = 0;            ///< get()/get_or_load() calls that found a live entry
  std::uint64_t misses = 0;          ///< ...that found none, or an expired one
  std::uint64_t load_successes = 0;  ///< loader calls that returned a value
  std::uint64_t load_failures = 0;   ///< loader calls that threw
  std::uint64_t evictions = 0;       ///< entries removed to keep the bound
  std::uint64_t eviction_weight = 0;  ///< their weight (1 each without a weigher)
  std::uint64_t expirations = 0;     ///< entries removed after their deadline
  std::uint64_t dropped_accesses = 0;  ///< hit records the policy never saw (a full ring)
  std::uint64_t refreshes = 0;  ///< refreshes run (each also a load: a success or a failure)
  /// Time spent in loader calls (get_or_load's, get_all_or_load's, refreshes'), failed ones too,
  /// in ticker nanoseconds (cache_options::ticker).
  std::uint64_t load_time_ns = 0;
  /// load_time_ns / (load_successes + load_failures): the mean time a load keeps its caller
  /// waiting (Caffeine's averageLoadPenalty); 0 before any load.
  double average_load_penalty_ns() const {
    const std::uint64_t loads = load_successes + load_failures;
    return loads == 0 ? 0.0 : static_cast<double>(load_time_ns) / static_cast<double>(loads);
  }
  /// hits / (hits + misses); 1 before any lookup.
  double hit_ratio() const {
    const std::uint64_t lookups = hits + misses;
    return lookups == 0 ? 1.0 : static_cast<double>(hits) / static_cast<double>(lookups);
  }
};

/// Why an entry left the cache (the removal listener's third argument).
enum class removal_cause {
  invalidated,  ///< invalidate(), invalidate_if(), invalidate_all()
  replaced,     ///< a put() of its key replaced its value
  evicted,      ///< the size bound (or a weight larger than the bound)
  expired,      ///< its deadline passed
};

/// What a loader returns to give the loaded value an expiry of its own (a DNS answer's TTL, an
/// HTTP response's max-age): get_or_load() puts it as put(key, value, ttl).
template <class Value>
struct with_ttl {
  Value value;
  std::chrono::nanoseconds ttl;
};

namespace detail {
template <class T, class Value>
inline constexpr bool is_with_ttl = std::is_same_v<std::remove_cvref_t<T>, with_ttl<Value>>;

/// What the cache stores under each key: the value, its deadline and when it becomes due for
/// refresh (ticker nanoseconds). With expire_after_access, the deadline's parity says whether
/// reads can still move it (cache::marked()).
template <class Value>
struct cache_entry {
  static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();
  Value value;
  std::int64_t expires = never;
  std::int64_t refresh_at = never;
};

/// A cache's compute() or for_each() function running on this thread: the cache holds its writer
/// lock (compute) or a read (for_each) meanwhile, so a call of it that would take the lock or
/// write must throw, not wait for itself (cache::refuse_inside_function() asks inside()).
struct cache_function_tag {};
using cache_function_scope = thread_scope<cache_function_tag>;
}  // namespace detail

/// A durable cache's entries in its log and snapshots: the value, then its deadline and refresh
/// time (two i64, in the durable cache's clock: see cache's durable constructor).
template <encodable Value>
struct codec<detail::cache_entry<Value>> {
  static std::string name() { return "cache_entry<" + std::string(codec<Value>::name()) + ">/1"; }
  static void encode(const detail::cache_entry<Value>& e, byte_writer& w) {
    codec<Value>::encode(e.value, w);
    codec<std::int64_t>::encode(e.expires, w);
    codec<std::int64_t>::encode(e.refresh_at, w);
  }
  static detail::cache_entry<Value> decode(byte_reader& r) {
    Value value = codec<Value>::decode(r);  // one statement a field: the wire order
    const std::int64_t expires = codec<std::int64_t>::decode(r);
    const std::int64_t refresh_at = codec<std::int64_t>::decode(r);
    return detail::cache_entry<Value>{std::move(value), expires, refresh_at};
  }
};

/// A bounded, expiring, loading cache. Every member: any thread. Neither copyable nor movable.
/// Precondition: no thread calls it while it is destroyed.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class cache {
  using entry = detail::cache_entry<Value>;
  using map_type = shared_map<Key, entry, Hash, Eq, Traits>;
  using reader_type = typename map_type::reader_type;

 public:
  using key_type = Key;
  using mapped_type = Value;
  using weigher_type = std::function<std::uint64_t(const Key&, const Value&)>;
  /// Called after an entry left the cache, in the thread whose call removed it, after that call's
  /// update is visible and with no lock of the cache held (it may call the cache).
  using removal_listener = std::function<void(const Key&, const Value&, removal_cause)>;

  /// Throws std::invalid_argument for both bounds at once, a bound by weight without a weigher
  /// or a weigher without one, a max_weight above 2^62, or a negative expire_after_write, expire_after_access,
  /// max_reader_wait or refresh_after_write.
  explicit cache(const cache_options& options = {}) : cache(options, weigher_type{}) {}
  template <class Weigher>
  cache(const cache_options& options, Weigher weigher)
      : options_(checked(options, bool(weigher_type(weigher)))),
        weigher_(weigher_of(std::move(weigher))),
        map_(map_options(options_)) {
    make_policy();
  }
  /// A durable cache: its entries live in a durable shared_map in durable.path (opened and
  /// recovered as open_map() does; every write returns once it is as durable as
  /// durable.durability says), so that a restart finds them again. On open the writer's state is
  /// rebuilt from the recovered entries: entries whose deadline passed while the cache was closed
  /// are removed (counted in expirations), and if the map holds more than the bound (a cache
  /// reopened with a smaller one) the policy's victims are removed (counted in evictions), in
  /// one update. The policy's history (frequencies, its window) is not kept: the reopened cache
  /// starts it anew. Deadlines and refresh times are stored as the ticker gives them, so a
  /// durable cache's default ticker is the wall clock (std::chrono::system_clock, nanoseconds
  /// since 1970), not steady_clock, whose origin moves at a reboot: an entry put with a ttl of
  /// an hour is gone after a restart two hours later. A ticker of your own must likewise mean the
  /// same across restarts. Key and Value need codecs (<leftright/codec.hpp>). Throws
  /// storage_error as open_map() does, std::invalid_argument as the in-memory constructors.
  explicit cache(const durable_options& durable, const cache_options& options = {})
      : cache(durable, options, weigher_type{}) {}
  template <class Weigher>
  cache(const durable_options& durable, const cache_options& options, Weigher weigher)
      : options_(checked(options, bool(weigher_type(weigher)))),
        weigher_(weigher_of(std::move(weigher))),
        wall_clock_(true),
        map_(durable, map_options(options_)) {
    make_policy();
    restore();
  }
  cache(const cache&) = delete;
  cache& operator=(const cache&) = delete;
  ~cache() {
    refresh_gate_->close();  // no refresh task inside from here on
    home_->close(&id_);
  }

  // ---- Reads. Progress: wait-free after the thread's first read (which registers it). ----

  /// A copy of the live value under key, or nullopt (absent or expired). Records the access for
  /// the policy and counts a hit or a miss.
  template <class K>
  std::optional<Value> get(const K& key) const {
    const thread_state& t = local();
    auto g = t.reader.read();
    const entry* e = g.find(key);
    if (e == nullptr || (e->expires != entry::never && expired_now(e->expires))) [[unlikely]] {
      t.misses.add();
      return std::nullopt;
    }
    t.ring.record(access_record(key));  // counts the hit too
    return e->value;
  }
  /// The live entries among keys (any range of keys, or of what get() accepts for a key), as
  /// get() finds them but all from one snapshot (one read for the whole call): a (key, value)
  /// for each key found, in the order of keys (a key repeated, once per time). Nothing is loaded.
  /// Each lookup is recorded and counted as get()'s is. Progress: wait-free, as get(), but for
  /// the allocations of the result; a long key list holds one snapshot as long (writes wait for
  /// it, see cache_options::max_reader_wait).
  template <class Range>
  std::vector<std::pair<Key, Value>> get_all(const Range& keys) const {
    std::vector<std::pair<Key, Value>> out;
    if constexpr (std::ranges::sized_range<const Range>) out.reserve(std::ranges::size(keys));
    const thread_state& t = local();
    auto g = t.reader.read();
    for (const auto& k : keys) {
      if (const entry* e = counted_lookup(t, g.find(k), k)) out.emplace_back(Key(k), e->value);
    }
    return out;
  }
  /// out[i] = get(keys[i]) for every i, all from one snapshot (one read for the whole call, the
  /// keys looked up through read_guard::find_each, which prefetches), each lookup recorded and
  /// counted as get()'s; returns how many were found. Keys may repeat. Nothing is allocated: the
  /// form for a caller that keeps its buffers (get_all() returns a new vector). out.size() must
  /// equal keys.size() (std::invalid_argument otherwise). Progress: wait-free.
  template <class K>
  std::size_t get_many(std::span<const K> keys, std::span<std::optional<Value>> out) const {
    detail::check_batch_spans(keys.size(), out.size(), "get_many");
    const thread_state& t = local();
    std::size_t found = 0;
    t.reader.read().find_each(keys, [&](std::size_t i, const entry* found_entry) {
      if (const entry* e = counted_lookup(t, found_entry, keys[i])) {
        out[i] = e->value;
        ++found;
      } else {
        out[i].reset();
      }
    });
    return found;
  }
  /// get_many() over any contiguous range of keys.
  template <detail::key_range R>
  std::size_t get_many(const R& keys, std::span<std::optional<Value>> out) const {
    return get_many(std::span<const std::ranges::range_value_t<R>>(keys), out);
  }
  /// get() without recording the access or counting it.
  template <class K>
  std::optional<Value> peek(const K& key) const {
    auto g = local().reader.read();
    const entry* e = g.find(key);
    if (e == nullptr || expired(*e)) return std::nullopt;
    return e->value;
  }
  /// How long key's live entry has left before its deadline, by the cache's ticker: nullopt if
  /// the key is absent or its entry expired, std::chrono::nanoseconds::max() if it has no
  /// deadline (Caffeine's getExpiresAfter; for a session cookie's Max-Age, say). The deadline
  /// as published: with expire_after_access, reads the writer has not seen yet may move it later
  /// (it is at most 1 ns early, see that option); eviction or a write may remove the entry
  /// before it. As peek(): not recorded, not counted. Progress: as get().
  template <class K>
  std::optional<std::chrono::nanoseconds> expires_in(const K& key) const {
    auto g = local().reader.read();
    const entry* e = g.find(key);
    if (e == nullptr) return std::nullopt;
    if (e->expires == entry::never) return std::chrono::nanoseconds::max();
    const std::int64_t t = now();
    if (t >= e->expires) return std::nullopt;
    return std::chrono::nanoseconds(e->expires - t);
  }
  /// Entries held now, expired ones not yet removed included (run_pending() removes them).
  std::size_t size() const { return local().reader.size(); }
  /// Calls f(key, value) for every live entry (one past its deadline is skipped), all from one
  /// snapshot: one read for the whole call, so f sees every write that returned before the call
  /// wholly or not at all, and nothing made meanwhile (Caffeine's and moka's iterators are only
  /// weakly consistent). In no particular order; not recorded as accesses, not counted. f may
  /// read this cache (get(), peek(), get_all(), get_many(), size()); any other call of it from f
  /// throws std::logic_error, as a write would wait for the read f runs in. What f throws
  /// propagates and ends the walk. Progress: wait-free, but for f; writes wait for the walk to
  /// end (see cache_options::max_reader_wait).
  template <class F>
  void for_each(F&& f) const {
    static_assert(std::is_invocable_v<F&, const Key&, const Value&>,
                  "leftright: for_each needs f(const Key&, const Value&)");
    auto g = local().reader.read();
    const detail::cache_function_scope scope(this);
    std::optional<std::int64_t> t;  // the clock, read once, at the first entry that can expire
    for (const auto& [k, e] : g) {
      if (e.expires != entry::never) {
        if (!t) t = now();
        if (*t >= e.expires) continue;
      }
      std::invoke(f, k, e.value);
    }
  }

  // ---- Loads. ----

  /// The live value under key; on a miss, loader(key)'s value, which is then put (a loader that
  /// returns with_ttl<Value> puts it with that ttl), unless a write made while the loader ran
  /// wins over it (as in Caffeine and moka): a put(), put_all(), compute() or invalidate() of
  /// key, or any invalidate_if() or invalidate_all(). Then the value is returned, to the callers
  /// waiting on the load too, but not stored. Concurrent misses of one key run one loader: the
  /// other callers wait for it and get its value, or the exception it threw (then nothing is
  /// cached, and the next call loads again). Loads of different keys run in parallel. A loader
  /// that calls get_or_load() for the same key on the same thread gets std::logic_error (two
  /// loaders waiting on each other's keys deadlock, as with any lock; do not).
  /// With cache_options::refresh_after_write, a hit on an entry due for refresh starts a refresh
  /// of the key with loader, unless one is in flight (or a load of the key is): see that option
  /// for what the call returns and where the refresh runs. A refresh is not a load for the
  /// callers that miss meanwhile: they load on their own, as above (and the refresh's value is
  /// then dropped). Submitted to refresh_executor, the refresh holds a copy of loader (moved from
  /// an rvalue); a loader that cannot be copied (an lvalue of a move-only type) refreshes on the
  /// calling thread, as with no executor.
  template <class Loader>
  Value get_or_load(const Key& key, Loader&& loader) {
    static_assert(std::is_invocable_r_v<Value, Loader&, const Key&> ||
                      detail::is_with_ttl<std::invoke_result_t<Loader&, const Key&>, Value>,
                  "leftright: get_or_load needs loader(const Key&) -> Value or with_ttl<Value>");
    bool due = false;
    std::int64_t deadline = entry::never;
    std::optional<Value> v = find_live(key, due, deadline);
    if (!v) [[unlikely]] return load(key, loader);
    if (deadline != entry::never && access_bound() != 0) [[unlikely]] keep_alive(key, deadline);
    if (due) [[unlikely]] return refresh(key, *std::move(v), std::forward<Loader>(loader));
    return *std::move(v);
  }
  /// get_all() that loads what it misses with one call of a bulk loader (a multi-get in front of a
  /// store that answers many keys in one query). The live entries among keys are read from one
  /// snapshot, each lookup counted as get()'s. The keys missed are loaded as get_or_load() loads
  /// one: those another caller is loading now are waited for, and the rest go, each once, to one
  /// call of loader(std::span<const Key>), which returns the entries it found (a range of
  /// std::pair<Key, Value>: a std::vector, a std::map; entries of keys it was not asked for are
  /// ignored; a with_ttl<Value> for a value gives that entry its own expiry, as for get_or_load()).
  /// Each is stored as get_or_load() stores a loaded value (with the default expiry, or its own),
  /// all in one write, unless a write of its key made while the loader ran wins over it (the value
  /// is then returned but not stored). A key the loader did not return stays absent: nothing is
  /// cached or returned for it, and a get_or_load() of it that waited on this load runs its own
  /// loader. Returns (key, value) for each key found or loaded, in the order of keys (a key
  /// repeated, once per time). If the loader throws, nothing is stored, and this call and the
  /// callers waiting on its keys get the exception; a load of another caller's that this call
  /// waited for and that failed is rethrown too. A key another caller's bulk load did not find is
  /// asked of this call's loader after that load ends (a second call). A loader that asks this
  /// cache to load a key it is loading gets std::logic_error. Each loader call is counted as one
  /// load (a success or a failure).
  template <class Range, class BulkLoader>
  std::vector<std::pair<Key, Value>> get_all_or_load(const Range& keys, BulkLoader&& loader) {
    static_assert(std::is_invocable_v<BulkLoader&, std::span<const Key>>,
                  "leftright: get_all_or_load needs loader(std::span<const Key>) -> a range of pairs (key, value)");
    bulk_results missed;
    std::vector<std::optional<Value>> found;
    std::vector<Key> order;
    lookup_all(keys, order, found, missed);
    if (!missed.empty()) load_all(missed, loader);
    return found_or_loaded(std::move(order), std::move(found), missed);
  }

  // ---- Writes. Progress: blocking (the writer lock, and one shared_map update). Each returns
  // once its effect is visible to every read that starts afterwards. One that throws (a copy,
  // a weigher, a predicate, an allocation) has no effect, except an exception from the removal
  // listener, which the write that called it throws after taking effect (get_or_load(): its
  // caller, while the callers waiting on the same load get the value). ----

  /// Sets key to value, with the default expiry; may evict other entries to keep the bound.
  void put(Key key, Value value) { put_until(std::move(key), std::move(value), default_deadline()); }
  /// As put(), expiring after ttl (ttl <= 0: the put only removes what key held).
  void put(Key key, Value value, std::chrono::nanoseconds ttl) {
    put_until(std::move(key), std::move(value), deadline_after(ttl));
  }
  /// Puts every (key, value) of entries (any range of pairs: a std::vector of std::pair, a
  /// std::map, ...) as one write: one maintenance pass, the policy deciding on each entry in
  /// order as if it were put alone, and one shared_map update, so that a read sees all of its
  /// effect or none of it. A key repeated keeps its last value; an entry may evict one put
  /// before it by the same call (the bound holds when it returns), and the removal listener hears
  /// of that one with the value put. The weigher runs before the writer lock is taken. Throws what
  /// copying an entry, the weigher or an allocation throws: then nothing is put (the writer's
  /// state is rebuilt from the map, losing the policy's history, after a failure under the lock).
  template <class Range>
  void put_all(const Range& entries) {
    put_all_until(batch_of(entries), default_deadline());
  }
  /// As put_all(), every entry expiring after ttl (ttl <= 0: the call only removes those keys).
  template <class Range>
  void put_all(const Range& entries, std::chrono::nanoseconds ttl) {
    put_all_until(batch_of(entries), deadline_after(ttl));
  }
  /// Removes key's entry, if any.
  void invalidate(const Key& key) {
    write([&](plan& p) {
      supersede_load(key);
      if (auto it = find_resident(key); it != index_.end()) remove(p, it, removal_cause::invalidated);
    });
  }
  /// Removes every entry for which pred(const Key&, const Value&) is true; if pred throws, none
  /// (the exception propagates). A load in flight meanwhile does not store its value (pred
  /// cannot judge it yet; see get_or_load()). pred runs under the writer lock, as compute()'s
  /// function does: it may read the cache, and a call of it that takes the lock throws
  /// std::logic_error (so does a weigher's). Cost: O(size).
  template <class Pred>
  void invalidate_if(Pred pred) {
    write([&](plan& p) {
      for (const auto& [k, e] : snapshot(p)) {
        if (pred(k, e.value)) remove(p, index_.find(hash_of(k)), removal_cause::invalidated);
      }
      // A load in flight has no entry for pred to judge yet: it is not stored (as after
      // invalidate_all(), which is this call).
      ++bulk_invalidations_;
    });
  }
  /// Removes every entry.
  void invalidate_all() {
    invalidate_if([](const Key&, const Value&) { return true; });
  }
  /// invalidate() of each of keys (any range of Key), all in one write (as Caffeine's
  /// invalidateAll(keys)): a reader sees all of them gone or none. A load of any of them in
  /// flight does not store its value. Keys absent or repeated are fine. Cost: O(keys).
  template <class Range>
    requires std::ranges::input_range<const Range> &&
             std::convertible_to<std::ranges::range_reference_t<const Range>, const Key&>
  void invalidate_all(const Range& keys) {
    write([&](plan& p) {
      for (const auto& k : keys) {
        const Key& key = k;
        supersede_load(key);
        if (auto it = find_resident(key); it != index_.end()) remove(p, it, removal_cause::invalidated);
      }
    });
  }
  /// Reads and writes key's entry as one write, which no other write of the cache interleaves
  /// (as Caffeine's asMap().compute, moka's and_compute_with): an increment, an append, a
  /// compare-and-set loses no other thread's update, where get() then put() may.
  /// f(const Value* current) -> std::optional<Value> gets key's live entry (nullptr if absent or
  /// past its deadline) and decides what key holds next. A value is put as put(key, value) puts
  /// it: weighed, admitted or not by the policy (which may evict others for it), expiring after
  /// the default expiry counted from f's return, and the value it replaces reported replaced.
  /// nullopt removes the entry as invalidate() does (reported invalidated), or leaves key absent.
  /// Returns what key holds afterwards: f's value, or nullopt (f's, or a value not admitted).
  /// f runs on the calling thread, under the writer lock (every write of the cache waits for it:
  /// keep it short), after the write's maintenance. It may read the cache (get(), get_all(),
  /// get_many(), peek(), size(), a hit of get_or_load()); a call that takes the writer lock (a
  /// write, compute(), a load or a refresh by get_or_load(), stats(), weighted_size(),
  /// set_removal_listener()) throws std::logic_error rather than wait for itself. (f waiting on
  /// another thread that writes to the cache deadlocks, as with any lock: do not.)
  /// If f throws, the exception propagates and key's entry stays as it was (the maintenance
  /// still takes effect, as after run_pending()). Otherwise a load of key in flight does not
  /// store its value, whatever f returned (a write that wins over it, as put() and invalidate():
  /// see get_or_load()). Counts no hit or miss; evictions and expirations as put() does. A
  /// durable cache logs it as the put or invalidate it is. Throws as put() otherwise.
  template <class F>
  std::optional<Value> compute(const Key& key, F&& f) {
    return compute_write(key, f, std::nullopt);
  }
  /// As compute(), a value f returns expiring after ttl (ttl <= 0: it only removes what key
  /// held, as put(key, value, ttl)).
  template <class F>
  std::optional<Value> compute(const Key& key, F&& f, std::chrono::nanoseconds ttl) {
    return compute_write(key, f, ttl);
  }
  /// Applies the recorded accesses to the policy and removes expired entries now (writes do it
  /// too). After it returns, size() <= max_entries and the weight <= max_weight.
  void run_pending() {
    write([](plan&) {});
  }

  /// Changes the bound (max_entries, or max_weight for a cache bound by weight) to maximum, as
  /// Caffeine's policy().eviction().setMaximum(): a smaller one removes, in one write, the
  /// entries the policy picks to fit it (each counted and reported as evicted); a larger one lets
  /// the cache grow. The policy keeps what it knows of the entries (their frequencies, and which
  /// segment holds each); its window's share and its ghost's trials start anew. After it
  /// returns, every write keeps the new bound. options() still gives the bound the cache was
  /// made with, and a durable cache reopens with the bound its options give; maximum() gives the
  /// one in effect. Throws std::logic_error for a cache made without a bound, and
  /// std::invalid_argument for 0 or, for a bound by weight, above 2^62; if it throws otherwise
  /// (an allocation, a copy for the removal listener), the bound is unchanged.
  void set_maximum(std::uint64_t maximum) {
    if (capacity(options_) == 0) {
      throw std::logic_error("leftright::cache: set_maximum() of a cache made without max_entries or max_weight");
    }
    if (maximum == 0) throw std::invalid_argument("leftright::cache: set_maximum(0) (a bounded cache stays bounded)");
    if (options_.max_weight != 0 && maximum > max_weight_limit) {
      throw std::invalid_argument("leftright::cache: set_maximum() above 2^62 for a bound by weight");
    }
    write([&](plan& p) {
      p.new_bound = maximum;
      for (std::uint64_t h : policy_->set_capacity(maximum)) evict(p, h);
    });
  }
  /// The n entries (at most) the policy holds coldest, the next to be evicted first, as Caffeine's
  /// policy().eviction().coldest(n): (key, value) pairs in that order, taken after a write's
  /// maintenance (the threads' recorded hits applied, the expired entries removed). The order is
  /// the policy's (its lists, and its frequency estimates between the window and probation), not
  /// an exact ranking. To see what a smaller bound would drop, or what to let go first. Throws
  /// std::logic_error for a cache made without a bound. Blocking, as a write; O(n).
  std::vector<std::pair<Key, Value>> coldest(std::size_t n) { return in_eviction_order(n, false); }
  /// The n entries (at most) the policy holds hottest, the last it would evict first (protected's
  /// most recent first), as Caffeine's hottest(n): what to copy to warm another cache.
  std::vector<std::pair<Key, Value>> hottest(std::size_t n) { return in_eviction_order(n, true); }
  /// The bound in effect: max_entries or max_weight, as set_maximum() last set it (0: no bound).
  /// Takes the writer lock.
  std::uint64_t maximum() const {
    const std::unique_lock<std::mutex> lock = lock_writer();
    return bound_;
  }

  /// Sets the removal listener (empty: none). Writes after it returns call it.
  void set_removal_listener(removal_listener listener) {
    const std::unique_lock<std::mutex> lock = lock_writer();
    listener_ = std::move(listener);
  }

  // ---- Statistics. ----

  /// The counters so far. Each field may be slightly old while other threads run; after they
  /// have been joined, hits + misses is the number of lookups they made.
  cache_stats stats() const {
    cache_stats s;
    s.hits = totals_->get(totals_->hits);
    s.misses = totals_->get(totals_->misses);
    s.dropped_accesses = totals_->get(totals_->dropped);
    home_->for_each([&](const detail::thread_reader_node& n) {
      const auto& t = static_cast<const thread_state&>(n);
      s.hits += t.ring.recorded();
      s.misses += t.misses.get();
      s.dropped_accesses += t.ring_dropped;
    });
    s.load_successes = load_successes_.load(std::memory_order_relaxed);  // [K1]
    s.load_failures = load_failures_.load(std::memory_order_relaxed);    // [K1]
    s.load_time_ns = load_time_ns_.load(std::memory_order_relaxed);      // [K1]
    s.refreshes = refreshes_.load(std::memory_order_relaxed);            // [K1]
    const std::unique_lock<std::mutex> lock = lock_writer();
    s.evictions = evictions_;
    s.eviction_weight = eviction_weight_;
    s.expirations = expirations_;
    return s;
  }
  /// The total weight held (entries count 1 each without a weigher). Takes the writer lock.
  std::uint64_t weighted_size() const {
    const std::unique_lock<std::mutex> lock = lock_writer();
    std::uint64_t w = 0;
    for (const auto& [h, r] : index_) w += r.weight;
    return w;
  }
  /// The options the cache was made with.
  const cache_options& options() const noexcept { return options_; }

  // ---- Durable caches (the durable constructor). ----

  /// Returns once every write that returned is on stable storage, also in durability::none and
  /// async (as shared_map::sync(); nothing to wait for in an in-memory cache). Throws
  /// storage_error.
  void sync() {
    refuse_inside_function();  // inside for_each, it would wait behind a write that waits for the walk
    map_.sync();
  }
  /// Writes a snapshot of the entries and removes the log it covers (as shared_map::checkpoint()).
  /// Throws std::logic_error for an in-memory cache; storage_error.
  void checkpoint() {
    if (!map_.durable()) throw std::logic_error("leftright: checkpoint() of an in-memory cache");
    refuse_inside_function();
    map_.checkpoint();
  }
  /// Copies the entries, with their deadlines, to a new map directory that a durable cache of
  /// these types opens (as shared_map::backup(): written aside and renamed into place, after the
  /// writes that returned before it). Returns the map version copied. Throws std::logic_error
  /// for an in-memory cache; storage_error (the cache goes on).
  std::uint64_t backup(const std::filesystem::path& to) {
    if (!map_.durable()) throw std::logic_error("leftright: backup() of an in-memory cache");
    refuse_inside_function();
    return map_.backup(to);
  }
  /// What the open found and did (version 0 and empty for an in-memory cache).
  const recovery_report& recovery() const noexcept { return map_.recovery(); }
  bool durable() const noexcept { return map_.durable(); }

 private:
  /// A reading thread's state (see detail/cache_buffers.hpp), owned by home_.
  struct thread_state final : detail::thread_reader_node {
    thread_state(reader_type r, std::shared_ptr<detail::cache_totals> t)
        : reader(std::move(r)), totals(std::move(t)) {}
    ~thread_state() override {
      totals->add(totals->hits, ring.recorded());
      totals->add(totals->misses, misses.get());
      totals->add(totals->dropped, ring_dropped + ring.undrained());  // the policy never sees these
    }
    reader_type reader;
    mutable detail::access_ring ring;
    mutable detail::owned_counter misses;  // (the hits are the ring's records)
    std::uint64_t ring_dropped = 0;  ///< written by the drainer, under home_'s mutex
    std::shared_ptr<detail::cache_totals> totals;
  };

  /// What the writer knows of a resident entry.
  struct resident {
    Key key;
    std::int64_t expires;  ///< the deadline published (never: none)
    std::uint64_t weight;
    std::uint64_t stamp;  ///< which write put it (a refresh replaces only the entry it refreshed)
    /// expire_after_access: the deadline its write gave it (expires never passes it), the time of
    /// the last read or write the writer knows of, and when its deadline is to move (never: no
    /// read since it was set; else in extensions_).
    std::int64_t write_expires = entry::never;
    std::int64_t accessed = 0;
    std::int64_t extend_at = entry::never;
  };
  using index_type = absl::flat_hash_map<std::uint64_t, resident>;

  /// One write's effect: the erases and the new entries, in the order decided, published as one
  /// update, and the removals to report afterwards.
  struct plan {
    struct op {
      Key key;
      std::optional<entry> value;  ///< nullopt: erase key
    };
    std::vector<op> ops;
    /// put_all() with a listener: the entries this plan puts, by hash (their index in ops), so
    /// that an entry put and then displaced by the same plan is reported with its value.
    bool tracks_pending = false;
    absl::flat_hash_map<std::uint64_t, std::size_t> pending;
    struct removal {
      Key key;
      Value value;
      removal_cause cause;
    };
    std::vector<removal> removed;
    bool reporting = false;  ///< a listener is set: collect the removals
    std::int64_t refresh_at = entry::never;  ///< when the entries this plan puts become due
    std::optional<typename reader_type::guard> snapshot;  ///< the map before this write
    std::optional<std::uint64_t> new_bound;  ///< set_maximum(): the bound once published
    /// The first stamp this plan gives: a resident with a smaller one was in the map before it.
    std::uint64_t first_stamp = 0;
    /// The counters before this plan: a plan dropped (abandon()) publishes none of the removals
    /// it counted, which the next write finds and counts again.
    std::uint64_t evictions_before = 0, eviction_weight_before = 0, expirations_before = 0;
  };

  struct load_state;

  /// The largest max_weight (see cache_options::max_weight).
  static constexpr std::uint64_t max_weight_limit = std::uint64_t{1} << 62;

  static const cache_options& checked(const cache_options& o, bool has_weigher) {
    if (o.max_entries != 0 && o.max_weight != 0)
      throw std::invalid_argument("leftright::cache: max_entries and max_weight are exclusive");
    if (o.max_weight != 0 && !has_weigher)
      throw std::invalid_argument("leftright::cache: max_weight needs a weigher");
    if (o.max_weight == 0 && has_weigher)
      throw std::invalid_argument("leftright::cache: a weigher needs max_weight");
    // An entry heavier than the bound is never kept, so the policy's sums stay below twice it.
    if (o.max_weight > max_weight_limit)
      throw std::invalid_argument("leftright::cache: max_weight is above 2^62 (sums of weights would overflow)");
    if (o.expire_after_write.count() < 0)
      throw std::invalid_argument("leftright::cache: expire_after_write is negative");
    if (o.expire_after_access.count() < 0)
      throw std::invalid_argument("leftright::cache: expire_after_access is negative");
    if (o.max_reader_wait.count() < 0)
      throw std::invalid_argument("leftright::cache: max_reader_wait is negative");
    if (o.refresh_after_write.count() < 0)
      throw std::invalid_argument("leftright::cache: refresh_after_write is negative");
    return o;
  }
  static shared_map_options map_options(const cache_options& o) {
    shared_map_options m;
    m.max_reader_wait = o.max_reader_wait;
    return m;
  }
  void make_policy() {
    if (bound_ != 0) policy_.emplace(bound_, policy_options(options_));
  }
  static std::uint64_t capacity(const cache_options& o) {
    return o.max_weight != 0 ? o.max_weight : static_cast<std::uint64_t>(o.max_entries);
  }
  // A bound by weight: the policy sizes its sketch, samples, trials and ghost by the entries the
  // bound holds, which it estimates from the residents' mean weight.
  static detail::cache_policy_options policy_options(const cache_options& o) {
    detail::cache_policy_options p;
    p.weighted = o.max_weight != 0;
    return p;
  }

  // ---- Reading-thread machinery. ----

  const thread_state& local() const {
    return *detail::cached_or<const thread_state*>(&id_, [this] { return &local_slow(); });
  }
  [[gnu::noinline]] const thread_state& local_slow() const {
    thread_state& t = detail::local_node<thread_state>(id_, home_, [this] {
      return std::make_unique<thread_state>(map_.factory().make_reader(), totals_);
    });
    detail::cache_node(&id_, t, static_cast<const thread_state*>(&t));
    return t;
  }
  template <class K>
  std::uint64_t hash_of(const K& key) const {
    return static_cast<std::uint64_t>(hash_(key));
  }
  /// What a hit writes to the ring: an integer key itself (hashed by the writer at the drain),
  /// another key's hash.
  static constexpr bool records_keys = std::is_integral_v<Key> && sizeof(Key) <= sizeof(std::uint64_t);
  template <class K>
  std::uint64_t access_record(const K& key) const {
    if constexpr (records_keys) return static_cast<std::uint64_t>(static_cast<Key>(key));
    else return hash_of(key);
  }
  std::uint64_t policy_hash(std::uint64_t record) const {
    if constexpr (records_keys) return hash_of(static_cast<Key>(record));
    else return record;
  }

  // ---- Time. ----

  std::int64_t now() const {
    if (options_.ticker) return options_.ticker();
    if (wall_clock_) return since_origin(std::chrono::system_clock::now());
    return since_origin(std::chrono::steady_clock::now());
  }
  template <class TimePoint>
  static std::int64_t since_origin(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  bool expired(const entry& e) const { return e.expires != entry::never && expired_now(e.expires); }
  /// coldest() and hottest(): the policy's order of its resident hashes, turned into entries.
  std::vector<std::pair<Key, Value>> in_eviction_order(std::size_t n, bool hottest) {
    if (capacity(options_) == 0) {
      throw std::logic_error("leftright::cache: coldest()/hottest() of a cache made without max_entries or max_weight");
    }
    std::vector<std::pair<Key, Value>> out;
    write([&](plan& p) {
      for (const std::uint64_t h : policy_->eviction_order(n, hottest)) {
        const auto it = index_.find(h);
        if (it == index_.end()) continue;
        if (const entry* e = snapshot(p).find(it->second.key)) out.emplace_back(it->second.key, e->value);
      }
    });
    return out;
  }
  /// What a lookup of key found, e, if it is live, with the access recorded (which counts the
  /// hit); nullptr, with a miss counted, if it is absent or expired. The bookkeeping of
  /// get_all() and get_many(); get() spells it out, for its own inlining.
  template <class K>
  const entry* counted_lookup(const thread_state& t, const entry* e, const K& key) const {
    if (e == nullptr || expired(*e)) {
      t.misses.add();
      return nullptr;
    }
    t.ring.record(access_record(key));
    return e;
  }
  /// now() >= deadline; out of line, so that get()'s common case (an entry that never expires)
  /// stays small enough to inline.
  [[gnu::noinline]] bool expired_now(std::int64_t deadline) const { return now() >= deadline; }
  std::int64_t default_deadline() const {
    return options_.expire_after_write.count() == 0 ? entry::never : deadline_after(options_.expire_after_write);
  }
  /// now + ttl, saturating; a ttl <= 0 gives a deadline already past.
  std::int64_t deadline_after(std::chrono::nanoseconds ttl) const {
    const std::int64_t t = now();
    const std::int64_t d = ttl.count();
    if (d <= 0) return std::numeric_limits<std::int64_t>::min();
    return t > entry::never - d ? entry::never - 1 : t + d;
  }
  /// When an entry written now becomes due for refresh.
  std::int64_t refresh_deadline() const {
    return options_.refresh_after_write.count() == 0 ? entry::never : deadline_after(options_.refresh_after_write);
  }

  // ---- The writer. ----

  /// Runs decide(plan&) under the writer lock after the maintenance every write does (the
  /// recorded accesses, the expired entries), publishes the plan, then reports its removals. If
  /// any of it throws, nothing of the plan is published (make_plan, publish). An exception from
  /// the removal listener propagates too, the write having taken effect.
  template <class Decide>
  void write(Decide&& decide) {
    if (std::exception_ptr e = write_then_report(decide)) std::rethrow_exception(e);
  }
  /// As write(), but an exception from the removal listener is returned, not thrown.
  template <class Decide>
  [[nodiscard]] std::exception_ptr write_then_report(Decide& decide) {
    plan p;
    removal_listener listener;
    {
      const std::unique_lock<std::mutex> lock = lock_writer();
      // Declared after the lock, so destroyed before it is released, on every path (a throw
      // included): the snapshot is a guard of writer_reader_, which only the lock's holder may
      // use. Released after the unlock, it would still pin the old copy when the next writer
      // nests its own guard on it, and that writer's publish would wait for itself.
      const snapshot_release release{p};
      // What the cache calls under the lock (a predicate, a weigher, compute's f) may read it;
      // a call of it that would take the lock again throws instead (refuse_inside_function()).
      const detail::cache_function_scope scope(this);
      p.reporting = bool(listener_);
      p.refresh_at = refresh_deadline();
      p.first_stamp = stamps_ + 1;
      p.evictions_before = evictions_;
      p.eviction_weight_before = eviction_weight_;
      p.expirations_before = expirations_;
      make_plan(p, decide);
      publish(p);
      if (p.new_bound) bound_ = *p.new_bound;  // (failed, the writer's state is rebuilt with the old one)
      listener = listener_;
    }
    try {
      if (listener) {
        for (const auto& r : p.removed) listener(r.key, r.value, r.cause);
      }
    } catch (...) {
      return std::current_exception();
    }
    return nullptr;
  }

  /// Takes the writer lock, unless a compute() function of this cache runs on this thread
  /// (refuse_inside_function()).
  std::unique_lock<std::mutex> lock_writer() const {
    refuse_inside_function();
    return std::unique_lock<std::mutex>(write_mu_);
  }
  /// Throws std::logic_error on a thread running a compute() function of this cache: the thread
  /// holds the writer lock, which the call would take again (std::mutex would deadlock, or
  /// worse) or wait on another thread to take (a load in flight stores under it).
  void refuse_inside_function() const {
    if (detail::cache_function_scope::inside(this)) {
      throw std::logic_error(
          "leftright::cache: a function the cache runs (compute's, for_each's, a predicate, a weigher) called "
          "its cache for more than a read (it runs under the writer lock, or inside a read a write would wait for)");
    }
  }

  /// A write's plan: a resync a failed one left due (the write throws if it fails again), the
  /// maintenance, then decide(p). If any of it throws part-way (a predicate, a weigher, a copy,
  /// an allocation), the index and the policy are ahead of the map, which has not changed: the
  /// plan is dropped, they are rebuilt from the map (resync), and the exception propagates.
  template <class Decide>
  void make_plan(plan& p, Decide& decide) {
    if (resync_due_) rebuild_index();
    try {
      erase_strays(p);
      drain_accesses();
      extend_due(p);
      expire_due(p);
      decide(p);
    } catch (...) {
      abandon(p);
      throw;
    }
  }
  /// Drops a plan that is not to be published, and brings the writer's state (its counters
  /// too) back to the map's.
  void abandon(plan& p) noexcept {
    p.ops.clear();
    p.removed.clear();
    evictions_ = p.evictions_before;
    eviction_weight_ = p.eviction_weight_before;
    expirations_ = p.expirations_before;
    resync(p.first_stamp);
  }

  /// An explicit put (put()): it also wins over a load of key in flight.
  void put_until(Key key, Value value, std::int64_t expires) {
    write([&](plan& p) {
      supersede_load(key);
      put_one(p, std::move(key), std::move(value), expires, [&] { return weigh(key, value); });
    });
  }
  std::uint64_t weigh(const Key& key, const Value& value) const { return weigher_ ? weigher_(key, value) : 1; }
  /// The weigher as the cache calls it. One that returns a signed number is checked: a negative
  /// one (or a NaN) throws std::invalid_argument from the put that weighs it, which then puts
  /// nothing (converted, it was a weight near 2^64 that the bound refused, counted as evicted).
  template <class Weigher>
  static weigher_type weigher_of(Weigher w) {
    using R = std::remove_cvref_t<std::invoke_result_t<Weigher&, const Key&, const Value&>>;
    if constexpr (std::is_arithmetic_v<R> && std::is_signed_v<R>) {
      if (!weigher_type(w)) return {};  // an empty std::function stays empty: no weigher
      return [w = std::move(w)](const Key& k, const Value& v) -> std::uint64_t {
        const R r = w(k, v);
        if (!(r >= R{0})) {
          throw std::invalid_argument("leftright::cache: the weigher returned " + std::to_string(r) +
                                      " for an entry: a weight is 0 or more");
        }
        return static_cast<std::uint64_t>(r);
      };
    } else {
      return weigher_type(std::move(w));
    }
  }

  /// compute()'s write: f's decision on key, stored (store_computed), winning over a load of key
  /// in flight. ttl: the put's, nullopt for the default expiry. What f throws is kept out of the
  /// write (make_plan() would drop the maintenance and rebuild the writer's state, losing the
  /// policy's history, for a write that changes nothing of key) and thrown once the write is done.
  template <class F>
  std::optional<Value> compute_write(const Key& key, F& f, std::optional<std::chrono::nanoseconds> ttl) {
    static_assert(std::is_invocable_r_v<std::optional<Value>, F&, const Value*>,
                  "leftright: compute needs f(const Value*) -> std::optional<Value>");
    std::optional<Value> held;
    std::exception_ptr failed;
    auto decide = [&](plan& p) {
      const Value* current = live_value(p, key);
      std::optional<Value> next;
      try {
        next = call_compute_function(f, current);
      } catch (...) {
        failed = std::current_exception();
        return;
      }
      supersede_load(key);
      held = store_computed(p, key, std::move(next), ttl);
    };
    const std::exception_ptr listener_failed = write_then_report(decide);
    if (failed) std::rethrow_exception(failed);
    if (listener_failed) std::rethrow_exception(listener_failed);
    return held;
  }
  /// Key's live value as this write found it (in its snapshot), or nullptr. An entry past its
  /// deadline that the maintenance left (the clock passed it since) is removed, as expired.
  const Value* live_value(plan& p, const Key& key) {
    const auto it = find_resident(key);
    if (it == index_.end()) return nullptr;
    if (it->second.expires != entry::never && now() >= it->second.expires) {
      remove(p, it, removal_cause::expired);
      return nullptr;
    }
    const entry* e = snapshot(p).find(key);
    return e != nullptr ? &e->value : nullptr;
  }
  /// f(current), with this thread marked as running a compute() function of this cache.
  template <class F>
  std::optional<Value> call_compute_function(F& f, const Value* current) const {
    const detail::cache_function_scope scope(this);
    return std::invoke(f, current);
  }
  /// Applies f's decision: next put as put() puts it (expiring after ttl, or by default), or
  /// key's entry removed as invalidate() removes it. Returns what key holds afterwards.
  std::optional<Value> store_computed(plan& p, const Key& key, std::optional<Value> next,
                                      std::optional<std::chrono::nanoseconds> ttl) {
    if (!next) {
      remove(p, find_resident(key), removal_cause::invalidated);
      return std::nullopt;
    }
    const std::int64_t expires = ttl ? deadline_after(*ttl) : default_deadline();
    put_one(p, Key(key), Value(*next), expires, [&] { return weigh(key, *next); });
    if (find_resident(key) == index_.end()) return std::nullopt;  // not admitted, or a ttl <= 0
    return next;
  }

  /// put_all()'s entries, copied and weighed (outside the writer lock).
  struct batch_item {
    Key key;
    Value value;
    std::uint64_t weight;
  };
  template <class Range>
  std::vector<batch_item> batch_of(const Range& entries) const {
    std::vector<batch_item> items;
    if constexpr (std::ranges::sized_range<const Range>) items.reserve(std::ranges::size(entries));
    for (const auto& [k, v] : entries) {
      Key key(k);
      Value value(v);
      const std::uint64_t w = weigh(key, value);
      items.push_back({std::move(key), std::move(value), w});
    }
    return items;
  }
  void put_all_until(std::vector<batch_item> items, std::int64_t expires) {
    write([&](plan& p) {
      p.tracks_pending = p.reporting;
      p.ops.reserve(p.ops.size() + items.size());
      for (batch_item& i : items) {
        supersede_load(i.key);
        put_one(p, std::move(i.key), std::move(i.value), expires, [w = i.weight] { return w; });
      }
    });
  }

  /// One put's effect, added to the plan: the erases (a colliding key, the victims) and then the
  /// new entry. weight() is called once, unless the put only removes (a ttl <= 0).
  template <class Weight>
  void put_one(plan& p, Key&& key, Value&& value, std::int64_t expires, Weight&& weight_of) {
    const std::uint64_t h = hash_of(key);
    auto it = index_.find(h);
    if (it != index_.end() && !eq_(it->second.key, key)) {  // another key with this hash
      remove(p, it, removal_cause::evicted);
      it = index_.end();
    }
    if (expires == std::numeric_limits<std::int64_t>::min()) {  // a ttl <= 0
      if (it != index_.end()) remove(p, it, removal_cause::expired);
      return;
    }
    const std::uint64_t weight = weight_of();
    const bool was_resident = it != index_.end();
    if (!admit(p, h, weight, was_resident)) {  // not kept: the value put is evicted at once
      report(p, key, value, removal_cause::evicted);
      return;
    }
    if (it != index_.end()) retire(p, it, removal_cause::replaced);
    const std::int64_t written = access_bound() ? now() : 0;
    const std::int64_t published = marked(bounded_by_access(expires, written), expires);
    if (published != entry::never) deadlines_.insert({published, h});
    index_.insert_or_assign(h, resident{key, published, weight, ++stamps_, expires, written});
    if (p.tracks_pending) p.pending.insert_or_assign(h, p.ops.size());
    p.ops.push_back({std::move(key), entry{std::move(value), published, p.refresh_at}});
  }

  /// Tells the policy of the entry (hash h) being put; erases the victims it picks. False if the
  /// entry is not to be kept (heavier than the bound, or its growth left it the policy's victim):
  /// the new value is counted as evicted (the caller reports it), and the value it would replace
  /// is erased as replaced, as a put that kept its value would have reported it. (Reported as
  /// evicted instead, the listener never heard of the value put, and heard of one eviction with
  /// the value the put had replaced.)
  bool admit(plan& p, std::uint64_t h, std::uint64_t weight, bool resident_now) {
    if (!policy_) return true;
    const auto decided = policy_->on_insert(h, weight);
    for (std::uint64_t victim : decided.victims) evict(p, victim);
    if (decided.admitted) return true;
    count_eviction(weight);
    if (resident_now) {
      if (const auto it = index_.find(h); it != index_.end()) drop(p, it, removal_cause::replaced);
    }
    return false;
  }
  /// Erases the entry the policy dropped (hash h).
  void evict(plan& p, std::uint64_t h) {
    auto it = index_.find(h);
    if (it == index_.end()) return;
    count_eviction(it->second.weight);
    drop(p, it, removal_cause::evicted);
  }
  void count_eviction(std::uint64_t weight) {
    ++evictions_;
    eviction_weight_ += weight;
  }

  /// Removes a resident entry on the cache's own decision (invalidation, expiry, collision).
  void remove(plan& p, typename index_type::iterator it, removal_cause cause) {
    if (it == index_.end()) return;
    if (policy_) policy_->on_remove(it->first);
    if (cause == removal_cause::evicted) count_eviction(it->second.weight);
    if (cause == removal_cause::expired) ++expirations_;
    drop(p, it, cause);
  }
  /// Erases the entry from the map (in the plan) and from the writer's index.
  void drop(plan& p, typename index_type::iterator it, removal_cause cause) {
    retire(p, it, cause);
    if (p.tracks_pending) p.pending.erase(it->first);
    p.ops.push_back({std::move(it->second.key), std::nullopt});
    index_.erase(it);
  }
  /// Forgets the entry's deadline and reports its removal (its value from the snapshot).
  void retire(plan& p, typename index_type::iterator it, removal_cause cause) {
    if (it->second.expires != entry::never) deadlines_.erase({it->second.expires, it->first});
    if (it->second.extend_at != entry::never) extensions_.erase({it->second.extend_at, it->first});
    if (p.reporting) {
      if (p.tracks_pending) {  // put by this plan: its value is not in the map yet
        if (const auto at = p.pending.find(it->first); at != p.pending.end()) {
          report(p, it->second.key, p.ops[at->second].value->value, cause);
          return;
        }
      }
      if (const entry* e = snapshot(p).find(it->second.key)) report(p, it->second.key, e->value, cause);
    }
  }
  void report(plan& p, const Key& key, const Value& value, removal_cause cause) {
    if (p.reporting) p.removed.push_back({key, value, cause});
  }
  /// Ends a write's snapshot (see write_then_report()).
  struct snapshot_release {
    plan& p;
    ~snapshot_release() { p.snapshot.reset(); }
  };
  /// The map as this write found it (no other write runs meanwhile), held until the write ends
  /// (under the writer lock: snapshot_release).
  const typename reader_type::guard& snapshot(plan& p) {
    if (!p.snapshot) p.snapshot.emplace(writer_reader().read());
    return *p.snapshot;
  }

  template <class K>
  typename index_type::iterator find_resident(const K& key) {
    auto it = index_.find(hash_of(key));
    return it != index_.end() && eq_(it->second.key, key) ? it : index_.end();
  }

  /// Feeds every thread's recorded accesses to the policy.
  /// With expire_after_access, each read drained is dated by the drain before this one: a ring
  /// holds no times, and that is the latest time a read it holds is known to have followed, so
  /// a moved deadline is never later than expire_after_access after the read itself (the entry
  /// may go early, never late).
  void drain_accesses() {
    const std::int64_t read_since = last_drain_;
    if (access_bound() != 0) last_drain_ = std::max(last_drain_, now());
    home_->for_each([&](detail::thread_reader_node& n) {
      auto& t = static_cast<thread_state&>(n);
      t.ring.drain([&](std::uint64_t r) {
        const std::uint64_t h = policy_hash(r);
        if (policy_) policy_->record_access(h);
        if (access_bound()) touch(h, read_since);
      });
      t.ring_dropped = t.ring.dropped();
    });
  }

  // ---- Expiry after access (cache_options::expire_after_access). ----

  /// expire_after_access in ticker nanoseconds (0: off).
  std::int64_t access_bound() const { return options_.expire_after_access.count(); }
  /// The deadline of an entry with write deadline `expires`, last read or written at t.
  std::int64_t bounded_by_access(std::int64_t expires, std::int64_t t) const {
    const std::int64_t d = access_bound();
    if (d == 0) return expires;
    return std::min(expires, t > entry::never - d ? entry::never - 1 : t + d);
  }
  /// The deadline to publish for an entry due at `deadline` whose write deadline is
  /// `write_deadline` (expire_after_access): its parity tells a reader whether a read can still
  /// move it (odd) or not (even: it is the write deadline), so that get_or_load() runs no
  /// keep-alive for an entry no maintenance can keep (keep_alive()). Made at most 1 ns earlier to
  /// carry that: never later.
  std::int64_t marked(std::int64_t deadline, std::int64_t write_deadline) const {
    if (access_bound() == 0 || deadline == entry::never) return deadline;
    if (deadline >= write_deadline) return deadline & ~std::int64_t{1};
    return (deadline & 1) != 0 ? deadline : deadline - 1;
  }
  /// Notes a read of the resident entry with hash h, seen by the maintenance at t: if its deadline
  /// can move, it moves once less than half of expire_after_access is left (extend_due()).
  void touch(std::uint64_t h, std::int64_t t) {
    const auto it = index_.find(h);
    if (it == index_.end()) return;  // a hash not resident (evicted since, or a collision's loser)
    resident& r = it->second;
    r.accessed = std::max(r.accessed, t);
    if (r.extend_at != entry::never) return;
    if (marked(bounded_by_access(r.write_expires, r.accessed), r.write_expires) <= r.expires) return;
    const std::int64_t half = access_bound() / 2;
    r.extend_at = r.expires < std::numeric_limits<std::int64_t>::min() + half ? r.expires : r.expires - half;
    extensions_.insert({r.extend_at, h});
  }
  /// Publishes the moved deadline of each entry read whose time to move has come (and that has
  /// not expired: an entry past its deadline stays gone for the readers, expire_due() removes
  /// it), with its value as the map holds it. Not a put: no report, no new stamp, no policy call.
  void extend_due(plan& p) {
    if (extensions_.empty()) return;
    const std::int64_t t = now();
    while (!extensions_.empty() && extensions_.begin()->first <= t) {
      const std::uint64_t h = extensions_.begin()->second;
      extensions_.erase(extensions_.begin());
      const auto it = index_.find(h);
      if (it == index_.end()) continue;  // not expected: retire() forgets an entry's extension
      resident& r = it->second;
      r.extend_at = entry::never;
      if (r.expires <= t) continue;
      const entry* e = snapshot(p).find(r.key);
      if (e == nullptr) continue;  // not expected: the index is the map's
      const std::int64_t moved = marked(bounded_by_access(r.write_expires, r.accessed), r.write_expires);
      if (moved <= r.expires) continue;
      p.ops.push_back({r.key, entry{e->value, moved, e->refresh_at}});
      deadlines_.erase({r.expires, h});
      deadlines_.insert({moved, h});
      r.expires = moved;
    }
  }
  /// Removes the entries whose deadline has passed.
  void expire_due(plan& p) {
    const std::int64_t t = now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= t) {
      const auto [deadline, h] = *deadlines_.begin();
      auto it = index_.find(h);
      if (it == index_.end() || it->second.expires != deadline) {  // not expected; never loop on it
        deadlines_.erase(deadlines_.begin());
        continue;
      }
      remove(p, it, removal_cause::expired);
    }
  }

  /// Publishes the plan as one update (nothing if it is empty). If that throws (an allocation, a
  /// copy), the writer's index and policy are rebuilt from the map as it is, and the exception
  /// propagates.
  void publish(plan& p) {
    if (p.ops.empty()) return;
    try {
      map_.update([&](typename map_type::batch& b) {
        for (const auto& o : p.ops) {
          if (o.value) b.insert_or_assign(o.key, *o.value);
          else b.erase(o.key);
        }
      });
    } catch (...) {
      abandon(p);
      throw;
    }
  }
  /// Rebuilds the index, the deadlines and the policy from the published map (after a failed
  /// write; the policy's history is lost, nothing else). If that fails too (an allocation, a
  /// weigher), the rebuild is left due: the next write makes it first, or throws.
  /// stamps_before: the first stamp of the failed plan (its own residents are not the map's).
  void resync(std::uint64_t stamps_before) noexcept;
  /// resync()'s work; throws with resync_due_ set.
  void rebuild_index(std::uint64_t stamps_before = std::numeric_limits<std::uint64_t>::max());
  /// What a resync keeps of the index it rebuilds (expire_after_access): by hash, the write
  /// deadline that caps an entry and the time of its last read known, for each resident the map
  /// holds as the index had it (put before the failed plan), so that its deadline can still move
  /// and is never moved later than its reads allow.
  struct kept_access {
    std::int64_t write_expires;
    std::int64_t accessed;
  };
  using kept_deadlines = absl::flat_hash_map<std::uint64_t, kept_access>;
  /// Enters every entry of the published map into the writer's index, deadlines and policy.
  /// With a plan (a durable cache's open), what may not stay is erased in it instead: entries
  /// past their deadline, the policy's victims (a map larger than the bound), a second key with
  /// a resident key's hash. Without one (a resync), the map kept the bound: each entry is
  /// restored to the policy without an eviction, which nothing could publish; one the policy
  /// cannot hold (its weight now above the bound) is left to the next write, in strays_.
  void index_map(plan* p, const kept_deadlines* kept = nullptr);
  /// Erases the entries a resync could not keep (strays_), counted and reported as evictions.
  void erase_strays(plan& p) {
    if (strays_.empty()) return;
    for (const Key& k : strays_) {
      if (const entry* e = snapshot(p).find(k)) {
        count_eviction(weigh(k, e->value));
        report(p, k, e->value, removal_cause::evicted);
      }
      p.ops.push_back({k, std::nullopt});
    }
    strays_.clear();  // (a write that fails now rebuilds them from the map)
  }
  /// A durable cache's open: index_map() and its erases published as one update.
  void restore() {
    write([&](plan& p) { index_map(&p); });
  }

  /// The writer's own reader, made on first use (under write_mu_).
  const reader_type& writer_reader() {
    if (!writer_reader_) writer_reader_.emplace(map_.factory().make_reader());
    return *writer_reader_;
  }

  // ---- Loading. ----

  /// get(key) for get_or_load(): the same lookup, recorded and counted the same way; due is set
  /// if the live entry found is due for refresh, deadline to its deadline.
  std::optional<Value> find_live(const Key& key, bool& due, std::int64_t& deadline) const {
    const thread_state& t = local();
    auto g = t.reader.read();
    const entry* e = g.find(key);
    if (e == nullptr || expired(*e)) {
      t.misses.add();
      return std::nullopt;
    }
    t.ring.record(access_record(key));  // counts the hit too
    due = e->refresh_at != entry::never && expired_now(e->refresh_at);
    deadline = e->expires;
    return e->value;
  }
  /// get_or_load()'s hit on key's entry with deadline (expire_after_access): if less than half of
  /// expire_after_access is left, runs a maintenance that dates this read now (its drain would
  /// date it by the drain before) and moves the deadline (touch(), extend_due()). At most one such maintenance a quarter of
  /// expire_after_access for the cache (keep_alive_after_), but for an entry that would expire
  /// before the next: its hit runs one anyway, once per deadline (an entry whose deadline that
  /// maintenance cannot move, capped by its write deadline, is not tried again: tried_deadlines_).
  /// None while this thread runs a function of this cache under its lock or read (it would
  /// throw). What the maintenance throws is left to the next write (a storage error) or dropped
  /// (a removal listener's): the caller has its value.
  void keep_alive(const Key& key, std::int64_t deadline) {
    if ((deadline & 1) == 0) return;  // capped by its write deadline: no read can move it (marked())
    const std::int64_t t = now();
    const std::int64_t d = access_bound();
    if (deadline - d / 2 > t || detail::cache_function_scope::inside(this)) return;
    std::int64_t after = keep_alive_after_.load(std::memory_order_relaxed);  // [K2]
    if (t < after) {
      if (deadline > after) return;  // the next keep-alive comes in time
      std::atomic<std::int64_t>& tried =
          tried_deadlines_[static_cast<std::size_t>(static_cast<std::uint64_t>(deadline) * 0x9e3779b97f4a7c15ULL >> 60)]
              .deadline;
      std::int64_t last = tried.load(std::memory_order_relaxed);  // [K2]
      if (last == deadline) return;
      if (!tried.compare_exchange_strong(last, deadline, std::memory_order_relaxed)) return;  // [K2]
    } else if (!keep_alive_after_.compare_exchange_strong(after, t + d / 4, std::memory_order_relaxed)) {  // [K2]
      return;
    }
    try {
      const std::uint64_t h = hash_of(key);
      write([&](plan& p) {
        touch(h, t);  // read at t, to within this call (the clock is read after the lookup)
        extend_due(p);
      });
    } catch (...) {
    }
  }

  /// A loader's value, and the ttl it gave with it (with_ttl).
  struct loaded {
    Value value;
    std::optional<std::chrono::nanoseconds> ttl;
  };
  /// loader(key), counted as a load success or failure; throws what the loader throws.
  /// Adds the time from its making to its end to stats().load_time_ns (a loader call's scope).
  struct load_timer {
    cache& c;
    const std::int64_t start = c.now();
    ~load_timer() {
      const std::int64_t spent = c.now() - start;
      c.load_time_ns_.fetch_add(spent > 0 ? static_cast<std::uint64_t>(spent) : 0, std::memory_order_relaxed);  // [K1]
    }
  };
  template <class Loader>
  loaded call_loader(const Key& key, Loader& loader) {
    std::optional<loaded> got;
    const load_timer timer{*this};
    try {
      if constexpr (detail::is_with_ttl<std::invoke_result_t<Loader&, const Key&>, Value>) {
        with_ttl<Value> l = std::invoke(loader, key);
        got.emplace(loaded{std::move(l.value), l.ttl});
      } else {
        got.emplace(loaded{std::invoke(loader, key), std::nullopt});
      }
    } catch (...) {
      load_failures_.fetch_add(1, std::memory_order_relaxed);  // [K1]
      throw;
    }
    load_successes_.fetch_add(1, std::memory_order_relaxed);  // [K1]
    return *std::move(got);
  }
  std::int64_t deadline_of(const loaded& l) const { return l.ttl ? deadline_after(*l.ttl) : default_deadline(); }

  template <class Loader>
  Value load(const Key& key, Loader& loader);


  // A load's record under the writer lock (load_marks_): the explicit writes counted since it
  // registered decide whether its value is stored.
  struct load_mark {
    std::uint64_t loads = 0;   ///< loads of the key registered (one, but for a load replaced)
    std::uint64_t writes = 0;  ///< explicit writes of the key while any was registered
  };
  /// What a load saw when it registered.
  struct load_ticket {
    std::uint64_t writes;
    std::uint64_t bulk;
  };
  /// Registers a load of key (takes the writer lock).
  load_ticket begin_load_mark(const Key& key) {
    const std::unique_lock<std::mutex> lock = lock_writer();
    load_mark& m = load_marks_[key];
    ++m.loads;
    return {m.writes, bulk_invalidations_};
  }
  /// Ends a load's registration; under the writer lock. True if a write that wins over the load
  /// was counted since it registered. A mark whose erase throws (a throwing hash) stays, its
  /// count of loads one too high: harmless, as a load compares only the writes counted since it
  /// registered.
  bool end_load_mark(const Key& key, const load_ticket& t) noexcept {
    bool superseded = bulk_invalidations_ != t.bulk;
    try {
      if (const auto it = load_marks_.find(key); it != load_marks_.end()) {
        superseded = superseded || it->second.writes != t.writes;
        if (--it->second.loads == 0) load_marks_.erase(it);
      }
    } catch (...) {  // (a throwing hash): keep the value out, to be safe
      superseded = true;
    }
    return superseded;
  }
  /// An explicit write of key, under the writer lock: a load of key in flight will not store.
  void supersede_load(const Key& key) {
    if (load_marks_.empty()) return;
    if (const auto it = load_marks_.find(key); it != load_marks_.end()) ++it->second.writes;
  }
  /// A load's store: put(key, l) unless a write counted since the load registered wins over it.
  /// Ends the registration (ended is set once it has). Returns an exception from the removal
  /// listener, as write_then_report().
  [[nodiscard]] std::exception_ptr store_loaded(const Key& key, const loaded& l, const load_ticket& t, bool& ended) {
    const std::int64_t expires = deadline_of(l);
    auto decide = [&](plan& p) {
      ended = true;
      if (end_load_mark(key, t)) return;
      put_one(p, Key(key), Value(l.value), expires, [&] { return weigh(key, l.value); });
    };
    return write_then_report(decide);
  }

  // Bulk loads (get_all_or_load). The distinct keys missed, each with what was found for it.
  using bulk_results = absl::flat_hash_map<Key, std::optional<Value>, Hash, Eq>;
  /// The ttls a bulk loader gave its entries (with_ttl<Value>), by key; the others expire by default.
  using bulk_ttls = absl::flat_hash_map<Key, std::chrono::nanoseconds, Hash, Eq>;
  /// A key this call loads, and the load's state that callers of get_or_load() wait on.
  struct claimed_load {
    Key key;
    std::shared_ptr<load_state> state;
  };
  /// get_all()'s one snapshot, keeping every key (order), what was found at each position
  /// (found), and the distinct keys missed (missed).
  template <class Range>
  void lookup_all(const Range& keys, std::vector<Key>& order, std::vector<std::optional<Value>>& found,
                  bulk_results& missed) const {
    if constexpr (std::ranges::sized_range<const Range>) {
      order.reserve(std::ranges::size(keys));
      found.reserve(std::ranges::size(keys));
    }
    const thread_state& t = local();
    auto g = t.reader.read();
    for (const auto& k : keys) {
      order.emplace_back(k);
      if (const entry* e = counted_lookup(t, g.find(k), k)) {
        found.emplace_back(e->value);
      } else {
        found.emplace_back();
        missed.try_emplace(order.back());
      }
    }
  }
  /// Fills missed: loads its keys in rounds (load_round) until none is left to try again.
  template <class BulkLoader>
  void load_all(bulk_results& missed, BulkLoader& loader) {
    refuse_inside_function();  // as load(): a load stores under the writer lock, and its waiters wait for that
    std::vector<Key> keys;
    keys.reserve(missed.size());
    for (const auto& [key, unused] : missed) keys.push_back(key);
    std::exception_ptr listener_error;
    while (!keys.empty()) keys = load_round(keys, missed, loader, listener_error);
    if (listener_error) std::rethrow_exception(listener_error);
  }
  /// Claims the keys no one is loading, loads them with one call of loader (and stores what it
  /// returns), hands the outcome to the callers waiting on them, then waits for the loads of the
  /// other keys (this call's own are finished first, so two bulk loads waiting on each other's
  /// keys cannot deadlock). Returns the keys to try again: those another caller's bulk load did
  /// not find (as a get_or_load() would, this call asks its own loader for them).
  template <class BulkLoader>
  std::vector<Key> load_round(const std::vector<Key>& keys, bulk_results& missed, BulkLoader& loader,
                              std::exception_ptr& listener_error) {
    std::vector<claimed_load> mine;
    std::vector<std::pair<Key, std::shared_ptr<load_state>>> theirs;
    claim_loads(keys, missed, mine, theirs);
    std::exception_ptr error;
    try {
      if (std::exception_ptr e = run_bulk_load(mine, missed, loader)) listener_error = e;
    } catch (...) {
      error = std::current_exception();
    }
    finish_loads(mine, missed, error);
    if (error) std::rethrow_exception(error);
    std::vector<Key> again;
    for (auto& [key, st] : theirs) {
      if (std::optional<Value> v = st->wait()) missed[key] = std::move(v);
      else again.push_back(key);
    }
    return again;
  }
  /// Under the load mutex: each key becomes this call's load (mine), or one to wait for
  /// (theirs). On a throw, the loads claimed so far are finished with it and released.
  void claim_loads(const std::vector<Key>& keys, const bulk_results& missed, std::vector<claimed_load>& mine,
                   std::vector<std::pair<Key, std::shared_ptr<load_state>>>& theirs) {
    try {
      std::lock_guard<std::mutex> lock(load_mu_);
      for (const Key& key : keys) {
        auto [it, fresh] = loads_.try_emplace(key);
        if (fresh || it->second->finished()) {
          try {
            it->second = std::make_shared<load_state>();
            mine.push_back({key, it->second});
          } catch (...) {
            loads_.erase(it);
            throw;
          }
        } else if (it->second->loader == std::this_thread::get_id()) {
          throw std::logic_error("leftright::cache: a loader called get_all_or_load() for a key it is loading");
        } else {
          theirs.emplace_back(key, it->second);
        }
      }
    } catch (...) {
      finish_loads(mine, missed, std::current_exception());
      throw;
    }
  }
  /// This call's loads: registered (as a load of one key is), looked for again, the rest asked
  /// of loader in one call, and stored in one write. Returns the removal listener's exception.
  template <class BulkLoader>
  [[nodiscard]] std::exception_ptr run_bulk_load(const std::vector<claimed_load>& mine, bulk_results& missed,
                                                 BulkLoader& loader) {
    std::vector<load_ticket> tickets;
    tickets.reserve(mine.size());
    bool ended = false;  // the registrations have ended (in the store's write)
    try {
      for (const claimed_load& c : mine) tickets.push_back(begin_load_mark(c.key));
      std::vector<Key> ask;
      std::vector<char> asked(mine.size());
      for (std::size_t i = 0; i < mine.size(); ++i) {
        // Its miss may have raced with a write or the end of another load of the key: look again.
        // A value found so is returned (and handed to the waiters), not stored again.
        if (std::optional<Value> v = peek(mine[i].key)) {
          missed[mine[i].key] = std::move(v);
        } else {
          ask.push_back(mine[i].key);
          asked[i] = 1;
        }
      }
      std::exception_ptr listener_error;
      if (!ask.empty()) {
        bulk_ttls ttls;
        call_bulk_loader(ask, loader, missed, ttls);
        listener_error = store_bulk(mine, asked, tickets, missed, ttls, ended);
      }
      end_load_marks(mine, tickets, ended);
      return listener_error;
    } catch (...) {
      end_load_marks(mine, tickets, ended);
      throw;
    }
  }
  /// loader(ask), its entries for keys asked put into missed (and the ttl of each entry given as a
  /// with_ttl<Value> into ttls); counted as one load. An entry for a key missed but not asked (one
  /// another caller is loading, or a key an earlier round did not find) is ignored: its value
  /// may predate a write that the load registered for it later does not count.
  template <class BulkLoader>
  void call_bulk_loader(const std::vector<Key>& ask, BulkLoader& loader, bulk_results& missed, bulk_ttls& ttls) {
    const absl::flat_hash_set<Key, Hash, Eq> asked(ask.begin(), ask.end());
    const load_timer timer{*this};
    try {
      auto&& got = std::invoke(loader, std::span<const Key>(ask));
      for (auto&& [k, v] : got) {
        if (!asked.contains(k)) continue;
        const auto it = missed.find(k);
        if (it == missed.end() || it->second) continue;
        if constexpr (detail::is_with_ttl<decltype(v), Value>) {
          it->second.emplace(std::move(v.value));
          ttls.insert_or_assign(it->first, v.ttl);
        } else {
          it->second.emplace(std::move(v));
        }
      }
    } catch (...) {
      load_failures_.fetch_add(1, std::memory_order_relaxed);  // [K1]
      throw;
    }
    load_successes_.fetch_add(1, std::memory_order_relaxed);  // [K1]
  }
  /// A bulk load's store, one write: each key asked of the loader whose load no write superseded
  /// is put as store_loaded() puts one (the registrations all end first, so none is left behind
  /// if a put throws). Sets ended once they have. Returns the removal listener's exception.
  [[nodiscard]] std::exception_ptr store_bulk(const std::vector<claimed_load>& mine, const std::vector<char>& asked,
                                              const std::vector<load_ticket>& tickets, const bulk_results& missed,
                                              const bulk_ttls& ttls, bool& ended) {
    auto decide = [&](plan& p) {
      std::vector<char> keep(mine.size());
      for (std::size_t i = 0; i < mine.size(); ++i) keep[i] = !end_load_mark(mine[i].key, tickets[i]);
      ended = true;
      p.tracks_pending = p.reporting;
      for (std::size_t i = 0; i < mine.size(); ++i) {
        const auto it = missed.find(mine[i].key);
        if (!asked[i] || !keep[i] || it == missed.end() || !it->second) continue;
        const Key& key = it->first;
        const Value& value = *it->second;
        const auto ttl = ttls.find(key);
        const std::int64_t expires = ttl != ttls.end() ? deadline_after(ttl->second) : default_deadline();
        put_one(p, Key(key), Value(value), expires, [&] { return weigh(key, value); });
      }
    };
    return write_then_report(decide);
  }
  /// Ends the registrations of this call's loads, unless the store's write has.
  void end_load_marks(const std::vector<claimed_load>& mine, const std::vector<load_ticket>& tickets,
                      bool ended) noexcept {
    if (ended || tickets.empty()) return;
    try {
      std::lock_guard<std::mutex> lock(write_mu_);
      for (std::size_t i = 0; i < tickets.size(); ++i) (void)end_load_mark(mine[i].key, tickets[i]);
    } catch (...) {  // (the lock: a system error) the marks stay, harmless as end_load_mark says
    }
  }
  /// Releases this call's loads and hands each its outcome: error, or what missed holds for its
  /// key (nullopt: the loader did not return it; a caller waiting on it then loads it itself).
  void finish_loads(const std::vector<claimed_load>& mine, const bulk_results& missed,
                    std::exception_ptr error) noexcept {
    for (const claimed_load& c : mine) {
      try {
        std::lock_guard<std::mutex> lock(load_mu_);
        loads_.erase(c.key);
      } catch (...) {  // a throwing hash: the entry stays, finished, and the next load replaces it
      }
      if (error) {
        c.state->finish(std::nullopt, error);
        continue;
      }
      try {
        const auto it = missed.find(c.key);
        c.state->finish(it != missed.end() ? it->second : std::nullopt, nullptr);
      } catch (...) {  // a throwing hash
        c.state->finish(std::nullopt, std::current_exception());
      }
    }
  }
  /// get_all_or_load()'s result: the entries found or loaded, in the order of the keys.
  static std::vector<std::pair<Key, Value>> found_or_loaded(std::vector<Key> order,
                                                            std::vector<std::optional<Value>> found,
                                                            const bulk_results& missed) {
    std::vector<std::pair<Key, Value>> out;
    out.reserve(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
      if (found[i]) {
        out.emplace_back(std::move(order[i]), *std::move(found[i]));
      } else if (const auto it = missed.find(order[i]); it != missed.end() && it->second) {
        out.emplace_back(std::move(order[i]), *it->second);
      }
    }
    return out;
  }

  // Refreshes. A refresh is registered in refreshes_in_flight_ (under load_mu_) from its start
  // until its put is done or dropped, so that one runs per key at a time; it replaces only the
  // entry it found due, known by its stamp (resident::stamp), taken under the writer lock.
  template <class L>
  struct refresh_job;
  /// A refresh's registration (under load_mu_). ended: its end could not erase it (a throwing
  /// hash), so the next refresh of its key replaces it instead of waiting for it for good.
  struct refresh_mark {
    bool ended = false;
  };
  /// What the refresh tasks submitted to refresh_executor share with their cache: whether it
  /// lives, and how many tasks are inside it. The cache's destructor closes the gate and waits
  /// for those inside; a task that comes later does nothing: the cache, and its refresh's
  /// registration, are gone.
  struct refresh_gate {
    std::mutex mu;
    std::condition_variable left;
    bool open = true;
    std::size_t inside = 0;
    /// Enters while the cache lives; false once it is being destroyed.
    bool enter() {
      std::lock_guard<std::mutex> lock(mu);
      if (open) ++inside;
      return open;
    }
    void leave() {
      {
        std::lock_guard<std::mutex> lock(mu);
        --inside;
      }
      left.notify_all();  // the gate outlives the cache: each task holds it
    }
    void close() {
      std::unique_lock<std::mutex> lock(mu);
      open = false;
      left.wait(lock, [this] { return inside == 0; });
    }
  };
  /// A registered refresh: the stamp of the entry it replaces, and its registration.
  struct refresh_ticket {
    std::uint64_t stamp;
    std::shared_ptr<refresh_mark> mark;
  };
  template <class Loader>
  Value refresh(const Key& key, Value old, Loader&& loader);
  std::optional<refresh_ticket> begin_refresh(const Key& key);
  void end_refresh(const Key& key, const std::shared_ptr<refresh_mark>& mark) noexcept {
    std::lock_guard<std::mutex> lock(load_mu_);
    try {
      if (const auto it = refreshes_in_flight_.find(key); it != refreshes_in_flight_.end() && it->second == mark) {
        refreshes_in_flight_.erase(it);
      }
    } catch (...) {  // a throwing hash: the registration stays, ended, and the next one replaces it
      mark->ended = true;
    }
  }
  template <class Loader>
  std::optional<Value> refresh_here(const Key& key, const refresh_ticket& ticket, Loader& loader);
  void put_if_unchanged(const Key& key, std::uint64_t stamp, const loaded& l);

  const std::uint64_t id_ = detail::next_shared_map_id();
  const cache_options options_;
  const weigher_type weigher_;
  const bool wall_clock_ = false;  ///< no ticker: the wall clock (a durable cache), not steady_clock
  [[no_unique_address]] Hash hash_{};
  [[no_unique_address]] Eq eq_{};
  map_type map_;
  const std::shared_ptr<detail::reader_home> home_ = std::make_shared<detail::reader_home>();
  const std::shared_ptr<detail::cache_totals> totals_ = std::make_shared<detail::cache_totals>();

  // The writer's state, under write_mu_.
  mutable std::mutex write_mu_;
  std::optional<detail::cache_policy> policy_;
  std::uint64_t bound_ = capacity(options_);  ///< the policy's capacity (0: none); set_maximum()
  index_type index_;
  absl::btree_set<std::pair<std::int64_t, std::uint64_t>> deadlines_;
  /// (when, hash) of the entries read whose deadline is to move then (expire_after_access).
  absl::btree_set<std::pair<std::int64_t, std::uint64_t>> extensions_;
  /// When the last drain of the rings began (expire_after_access: see drain_accesses()).
  std::int64_t last_drain_ = now();
  /// keep_alive(): the ticker time before which no hit runs another maintenance.
  std::atomic<std::int64_t> keep_alive_after_{std::numeric_limits<std::int64_t>::min()};
  /// keep_alive(): deadlines a keep-alive ran for out of turn (direct-mapped by deadline).
  struct tried_slot {
    std::atomic<std::int64_t> deadline{std::numeric_limits<std::int64_t>::min()};  // (none is that early)
  };
  std::array<tried_slot, 16> tried_deadlines_{};
  std::optional<reader_type> writer_reader_;
  removal_listener listener_;
  std::uint64_t evictions_ = 0;
  std::uint64_t eviction_weight_ = 0;
  std::uint64_t expirations_ = 0;
  std::uint64_t stamps_ = 0;  ///< the last resident::stamp given
  /// The loads in flight (registered before they look again and call the loader), by key.
  absl::flat_hash_map<Key, load_mark, Hash, Eq> load_marks_;
  std::uint64_t bulk_invalidations_ = 0;  ///< invalidate_if() and invalidate_all() calls so far
  bool resync_due_ = false;   ///< a resync failed: the index and the policy may not match the map
  std::vector<Key> strays_;   ///< in the map, left out of the index by a resync: the next write erases them

  // Loads in flight, under load_mu_.
  std::mutex load_mu_;
  absl::flat_hash_map<Key, std::shared_ptr<load_state>, Hash, Eq> loads_;
  absl::flat_hash_map<Key, std::shared_ptr<refresh_mark>, Hash, Eq> refreshes_in_flight_;
  std::shared_ptr<refresh_gate> refresh_gate_ = std::make_shared<refresh_gate>();
  std::atomic<std::uint64_t> load_successes_{0}, load_failures_{0}, refreshes_{0}, load_time_ns_{0};
};

// ------------------------------------------------------------------------------------------------

/// One load in flight: the thread running it, and its outcome for the callers waiting on it.
template <class Key, class Value, class Hash, class Eq, class Traits>
struct cache<Key, Value, Hash, Eq, Traits>::load_state {
  const std::thread::id loader = std::this_thread::get_id();
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  std::optional<Value> value;
  std::exception_ptr error;

  /// Hands the outcome to the waiters and wakes them. Never throws, so that no waiter is left
  /// asleep: if copying the value fails, the waiters get that exception instead. Called by the
  /// loader, which holds a reference to this state throughout (load()'s st): a waiter that
  /// returns cannot destroy done_cv under notify_all().
  void finish(const std::optional<Value>& v, std::exception_ptr e) noexcept {
    {
      std::lock_guard<std::mutex> lock(mu);
      try {
        if (!e) value = v;
      } catch (...) {
        e = std::current_exception();
      }
      error = std::move(e);
      done = true;
    }
    done_cv.notify_all();
  }
  /// Whether finish() has run.
  bool finished() {
    std::lock_guard<std::mutex> lock(mu);
    return done;
  }
  /// The load's value; nullopt if it was a bulk load that did not find the key.
  std::optional<Value> wait() {
    std::unique_lock<std::mutex> lock(mu);
    done_cv.wait(lock, [&] { return done; });
    if (error) std::rethrow_exception(error);
    return value;
  }
};

template <class Key, class Value, class Hash, class Eq, class Traits>
template <class Loader>
Value cache<Key, Value, Hash, Eq, Traits>::load(const Key& key, Loader& loader) {
  refuse_inside_function();  // a load stores under the writer lock, and its waiters wait for that
  std::shared_ptr<load_state> st;
  for (;;) {
    bool mine = false;
    {
      std::lock_guard<std::mutex> lock(load_mu_);
      auto [it, fresh] = loads_.try_emplace(key);
      // A finished load still listed (its erase below failed: a throwing hash) is started anew.
      if (fresh || it->second->finished()) {
        try {
          it->second = std::make_shared<load_state>();
        } catch (...) {
          loads_.erase(it);
          throw;
        }
        mine = true;
      } else if (it->second->loader == std::this_thread::get_id()) {
        throw std::logic_error("leftright::cache: a loader called get_or_load() for the key it is loading");
      }
      st = it->second;
    }
    if (mine) break;
    // Another caller's load: its value, unless it was a bulk load that did not find the key,
    // which this caller's loader is then asked for.
    if (std::optional<Value> v = st->wait()) return *std::move(v);
  }
  // This thread loads. Its miss may have raced with the end of another load of the key: look
  // again before calling the loader.
  // It registers first (under the writer lock), so that a write before that is seen by the look
  // and one after it is counted against the load.
  std::optional<Value> v;
  std::exception_ptr error;
  std::exception_ptr listener_error;  // the put took effect: the waiters get the value, this caller the error
  std::optional<load_ticket> ticket;
  bool ended = false;  // the registration has ended (in the store's write)
  try {
    ticket = begin_load_mark(key);
    v = peek(key);
    if (!v) {
      loaded l = call_loader(key, loader);
      listener_error = store_loaded(key, l, *ticket, ended);
      v.emplace(std::move(l.value));
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (ticket && !ended) {  // found, failed, or the store's write failed before its decision
    try {
      const std::unique_lock<std::mutex> lock = lock_writer();
      (void)end_load_mark(key, *ticket);
    } catch (...) {  // (the lock: a system error) the mark stays, harmless as end_load_mark says
    }
  }
  try {
    std::lock_guard<std::mutex> lock(load_mu_);
    loads_.erase(key);
  } catch (...) {  // a throwing hash: the entry stays, finished, and the next load replaces it
  }
  st->finish(v, error);
  if (error) std::rethrow_exception(error);
  if (listener_error) std::rethrow_exception(listener_error);
  return *std::move(v);
}

/// A refresh submitted to cache_options::refresh_executor: the task holds it (shared, so that
/// the task is copyable whatever the loader is). Run once, it refreshes; destroyed unrun (an
/// executor that refused it, or dropped it), it ends the refresh, which the next due call
/// starts again.
template <class Key, class Value, class Hash, class Eq, class Traits>
template <class L>
struct cache<Key, Value, Hash, Eq, Traits>::refresh_job {
  cache* owner;  ///< used only inside the gate: the cache lives while a task is inside
  std::shared_ptr<refresh_gate> gate;
  Key key;
  refresh_ticket ticket;
  L loader;
  bool ran = false;  // the executor orders a task's run before its destruction

  refresh_job(cache* c, const Key& k, refresh_ticket t, L&& l)
      : owner(c), gate(c->refresh_gate_), key(k), ticket(std::move(t)), loader(std::move(l)) {}
  refresh_job(const refresh_job&) = delete;
  refresh_job& operator=(const refresh_job&) = delete;
  ~refresh_job() {
    if (ran || !gate->enter()) return;
    owner->end_refresh(key, ticket.mark);
    gate->leave();
  }
  void run() noexcept {
    if (ran) return;
    ran = true;
    if (!gate->enter()) return;  // the cache is gone, and the refresh's registration with it
    try {
      (void)owner->refresh_here(key, ticket, loader);
    } catch (...) {  // the put's allocation failed: the old value stays, as after a failed load
    }
    gate->leave();
  }
};

template <class Key, class Value, class Hash, class Eq, class Traits>
template <class Loader>
Value cache<Key, Value, Hash, Eq, Traits>::refresh(const Key& key, Value old, Loader&& loader) {
  const std::optional<refresh_ticket> ticket = begin_refresh(key);
  if (!ticket) return old;  // one is in flight, or the entry changed since this caller found it
  using L = std::decay_t<Loader>;
  if constexpr (std::is_constructible_v<L, Loader&&>) {
    if (options_.refresh_executor) {
      std::shared_ptr<refresh_job<L>> job;
      try {
        job = std::make_shared<refresh_job<L>>(this, key, *ticket, L(std::forward<Loader>(loader)));
      } catch (...) {  // copying the loader or the key threw: no refresh
        end_refresh(key, ticket->mark);
        return old;
      }
      try {
        options_.refresh_executor([job] { job->run(); });
      } catch (...) {  // refused: job, unrun, ends the refresh when the last copy goes
      }
      return old;
    }
  }
  // This caller refreshes, and returns the refreshed value (the old one if the loader threw).
  if (std::optional<Value> v = refresh_here(key, *ticket, loader)) return *std::move(v);
  return old;
}

/// Registers a refresh of key, unless a refresh or a load of key is in flight, or key's entry is
/// gone or no longer due (put again since the caller found it due). Returns the stamp of the
/// entry to replace and the registration, or nullopt (nothing registered).
template <class Key, class Value, class Hash, class Eq, class Traits>
auto cache<Key, Value, Hash, Eq, Traits>::begin_refresh(const Key& key) -> std::optional<refresh_ticket> {
  std::shared_ptr<refresh_mark> mark;
  {
    std::lock_guard<std::mutex> lock(load_mu_);
    if (loads_.contains(key)) return std::nullopt;
    auto [it, fresh] = refreshes_in_flight_.try_emplace(key);
    if (!fresh && !it->second->ended) return std::nullopt;  // one in flight
    try {
      it->second = std::make_shared<refresh_mark>();
    } catch (...) {
      if (fresh) refreshes_in_flight_.erase(it);
      throw;
    }
    mark = it->second;
  }
  std::optional<std::uint64_t> stamp;
  try {
    const std::unique_lock<std::mutex> lock = lock_writer();
    if (const auto it = find_resident(key); it != index_.end()) {
      const auto g = writer_reader().read();  // the map as the index has it
      const entry* e = g.find(key);
      if (e != nullptr && e->refresh_at != entry::never && now() >= e->refresh_at) stamp = it->second.stamp;
    }
  } catch (...) {
    end_refresh(key, mark);
    throw;
  }
  if (!stamp) {
    end_refresh(key, mark);
    return std::nullopt;
  }
  return refresh_ticket{*stamp, std::move(mark)};
}

/// Runs a registered refresh on this thread: loader(key), then the put if the entry is still the
/// one refreshed, then the end of the registration. The loaded value, or nullopt if the loader
/// threw (counted; the old value stays). Throws what the put throws (the registration ends).
template <class Key, class Value, class Hash, class Eq, class Traits>
template <class Loader>
std::optional<Value> cache<Key, Value, Hash, Eq, Traits>::refresh_here(const Key& key, const refresh_ticket& ticket,
                                                                        Loader& loader) {
  struct ender {
    cache* c;
    const Key& k;
    const std::shared_ptr<refresh_mark>& mark;
    ~ender() { c->end_refresh(k, mark); }
  } end{this, key, ticket.mark};
  refreshes_.fetch_add(1, std::memory_order_relaxed);  // [K1]
  std::optional<loaded> got;
  try {
    got.emplace(call_loader(key, loader));
  } catch (...) {
    return std::nullopt;
  }
  put_if_unchanged(key, ticket.stamp, *got);
  return std::move(got->value);
}

/// The refresh's put: as put(), if key's entry is still the one written by the write stamped
/// stamp; otherwise (invalidated, replaced, evicted or expired since) the value is dropped. The
/// write's maintenance runs first, so an entry that has expired by now is not refreshed.
template <class Key, class Value, class Hash, class Eq, class Traits>
void cache<Key, Value, Hash, Eq, Traits>::put_if_unchanged(const Key& key, std::uint64_t stamp, const loaded& l) {
  const std::int64_t expires = deadline_of(l);
  write([&](plan& p) {
    const auto it = find_resident(key);
    if (it == index_.end() || it->second.stamp != stamp) return;
    put_one(p, Key(key), Value(l.value), expires, [&] { return weigh(key, l.value); });
  });
}

template <class Key, class Value, class Hash, class Eq, class Traits>
void cache<Key, Value, Hash, Eq, Traits>::resync(std::uint64_t stamps_before) noexcept {
  try {
    rebuild_index(stamps_before);
  } catch (...) {  // left due (resync_due_): the next write rebuilds first, or fails with it
  }
}

template <class Key, class Value, class Hash, class Eq, class Traits>
void cache<Key, Value, Hash, Eq, Traits>::rebuild_index(std::uint64_t stamps_before) {
  resync_due_ = true;
  kept_deadlines kept;
  if (access_bound() != 0) {
    for (const auto& [h, r] : index_) {
      if (r.stamp < stamps_before) kept.insert({h, kept_access{r.write_expires, r.accessed}});
    }
  }
  index_.clear();
  deadlines_.clear();
  extensions_.clear();
  strays_.clear();
  policy_.reset();
  make_policy();  // from bound_, so that a rebuild retried after a failed one has the bound
  index_map(nullptr, &kept);
  resync_due_ = false;
}

template <class Key, class Value, class Hash, class Eq, class Traits>
void cache<Key, Value, Hash, Eq, Traits>::index_map(plan* p, const kept_deadlines* kept) {
  const std::int64_t t = now();
  auto g = writer_reader().read();
  for (const auto& [k, e] : g) {
    const std::uint64_t h = hash_of(k);
    if (p != nullptr) {  // an open: what may not stay is erased
      const bool collides = index_.contains(h);  // (two resident keys never share a hash)
      if (collides || (e.expires != entry::never && t >= e.expires)) {
        if (collides) count_eviction(weigh(k, e.value));
        else ++expirations_;
        p->ops.push_back({k, std::nullopt});
        continue;
      }
    }
    const std::uint64_t weight = weigh(k, e.value);
    if (p == nullptr && policy_ && !policy_->restore(h, weight)) {  // a resync: see above
      strays_.push_back(k);
      continue;
    }
    // The write deadline that caps e.expires is not in the map: an entry opened keeps its
    // deadline at most, its reads known from now on; a resync takes both from the index it
    // rebuilds, if that had the entry as the map has it.
    kept_access known{e.expires, std::numeric_limits<std::int64_t>::min()};
    if (kept != nullptr) {
      if (const auto it = kept->find(h); it != kept->end()) known = it->second;
    }
    index_.insert_or_assign(h, resident{k, e.expires, weight, ++stamps_, known.write_expires, known.accessed});
    if (e.expires != entry::never) deadlines_.insert({e.expires, h});
    if (!policy_ || p == nullptr) continue;
    const auto decided = policy_->on_insert(h, weight);
    for (std::uint64_t victim : decided.victims) evict(*p, victim);
    if (!decided.admitted) evict(*p, h);
  }
}

}  // namespace leftright
