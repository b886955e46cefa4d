// SPDX-License-Identifier: Apache-2.0
// leftright: shared_map, the map any thread may read and write without handles.
//
// Reads: each thread that reads the map gets a map_reader of its own on its first read (made
// by the map's reader_factory::make_thread_reader: a thread that is the only one reading then
// publishes with no membarrier and its reads do not fence) and keeps it until it exits or the
// map dies, whichever comes first; later reads find it through a one-entry thread-local cache
// of (the map's address, the reader's slot and core), so a read costs what map_reader::get
// costs plus one compare with a thread-local.
// See detail/shared_map_readers.hpp.
//
// Writes: flat combining on the map's single writer (a map_writer, or a durable_writer for a
// durable map). A writing thread queues its batch, then either becomes the combiner (applies every
// queued caller's batch to the writer, publishes them as one version — one log record and, in
// durability::sync, one sync — and wakes the callers with that version) or waits for the combiner
// that took its batch. See detail/shared_map_queue.hpp and docs/shared_map.md.
//
// Failure isolation: publish() gives the strong guarantee (a throw leaves the batch queued and
// nothing visible), so when a group's publish throws, the combiner discards it and publishes the
// two halves of the group separately, recursively: every caller whose operations apply is
// published and returns normally, and a caller whose operations throw gets the exception alone.
// A storage failure is not one caller's: it fails the whole group and every later write.
//
// Atomics in this file: the statistics counters.
//   [S1] counter update  relaxed  one combiner at a time writes them (the queue's mutex orders
//                                 combiners); a load and a store, as a plain counter would be
//   [S2] counter load    relaxed  a statistic; a slightly old value is fine
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "detail/shared_map_queue.hpp"
#include "detail/shared_map_readers.hpp"
#include "durable_map.hpp"
#include "map.hpp"

namespace leftright {

struct shared_map_options {
  /// How long a writer that will publish may wait for more writers to join its group before it
  /// publishes (0: publish at once, with whatever is queued by then).
  std::chrono::microseconds max_delay{0};
  /// How long a group's publish waits for readers still inside the copy it must write (a thread
  /// stuck in a long read()): 0, as long as they take (map_writer::publish()); more, at most
  /// that long, then those readers keep their copy and the writers go on
  /// (map_writer::publish_within(), which costs one copy of the map per such publish). A reader
  /// stuck in one read holds a copy for each publish that finds it inside, up to
  /// max_held_copies; past that, publishes wait for it again, as they do without the option.
  std::chrono::nanoseconds max_reader_wait{0};
  /// With max_reader_wait: most copies held for stuck readers at once (map_writer::
  /// set_held_copy_limit; each is one more map's memory).
  std::size_t max_held_copies = 8;
};

/// What the writers of a shared_map have done so far. Every field only grows.
struct shared_map_stats {
  std::uint64_t writes = 0;         ///< write calls run (failed ones and posted ones included)
  std::uint64_t failed_writes = 0;  ///< of those, calls that got an exception instead of a version
  std::uint64_t operations = 0;     ///< operations published
  std::uint64_t publishes = 0;      ///< versions made: one per group, more when a group was split
  std::uint64_t groups = 0;         ///< groups a combiner took (write calls and control calls)
  std::uint64_t largest_group = 0;  ///< most write calls published in one version
  std::uint64_t splits = 0;         ///< publishes that threw and were retried in halves
  /// Of the publishes, those that were solo: made on the one thread reading the map (or with no
  /// reader), so with no membarrier and no fence asked of readers (map_writer::solo_swaps).
  std::uint64_t solo_publishes = 0;
};

/// A map every thread may read and write. Neither copyable nor movable: share it by reference.
/// Reads are wait-free after a thread's first read of the map (which registers its reader);
/// writes are combined (see the top of this file). A durable shared_map logs each group as one
/// record, as durable_writer::publish() does.
/// Precondition: no thread calls the map while it is being destroyed, and every read_guard of it
/// has ended. A thread that merely used the map earlier needs to do nothing.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class shared_map {
 public:
  using key_type = Key;
  using mapped_type = Value;
  using reader_type = map_reader<Key, Value, Hash, Eq, Traits>;
  using guard = read_guard<Key, Value, Hash, Eq, Traits>;
  class batch;

  /// An empty in-memory map (version 0). Throws std::invalid_argument for a negative max_delay
  /// or max_reader_wait.
  shared_map() : shared_map(shared_map_options{}) {}
  explicit shared_map(const shared_map_options& options)
      : shared_map(make_map<Key, Value, Hash, Eq, Traits>(), checked(options)) {}
  /// Opens (and recovers) a durable map, as open_map(). Throws storage_error on failure, and
  /// std::invalid_argument for options as above (before anything is opened).
  explicit shared_map(const durable_options& durable, const shared_map_options& options = {})
      : shared_map(open_checked(durable, options), options) {}

  shared_map(const shared_map&) = delete;
  shared_map& operator=(const shared_map&) = delete;
  /// Releases every thread's reader of this map (no thread is waited for), then the writer (a
  /// durable map syncs its log and closes, as durable_writer's destructor).
  ~shared_map() { home_->close(&id_); }

  // ---- Reads. Thread-safety: any thread. Progress: wait-free after the thread's first read of
  // this map (a mutex, and an allocation at a new high of live readers). Memory ordering: every
  // write call that returned before the read started happens-before it. ----

  /// A copy of the value under key, or nullopt. Costs a lookup and a copy. Always inlined, as
  /// map_reader::get: left out of line (GCC 12 did so in a benchmark's translation unit), the
  /// std::optional is returned through memory and its two halves reloaded as words, a
  /// store-forwarding stall that made a lookup on a 1K map take half again as long.
  template <class K>
  [[gnu::always_inline]] inline std::optional<Value> get(const K& key) const {
    return local_reader().get(key);
  }
  template <class K>
  [[gnu::always_inline]] inline bool contains(const K& key) const {
    return local_reader().contains(key);
  }
  /// As map_reader::get_many: every key from one snapshot, one guard for the whole call.
  template <class K>
  std::size_t get_many(std::span<const K> keys, std::span<std::optional<Value>> out) const {
    return local_reader().get_many(keys, out);
  }
  template <detail::key_range R>
  std::size_t get_many(const R& keys, std::span<std::optional<Value>> out) const {
    return local_reader().get_many(keys, out);
  }
  std::size_t size() const { return local_reader().size(); }
  bool empty() const { return local_reader().empty(); }
  /// The newest version this thread can see (0: nothing published yet).
  std::uint64_t version() const { return local_reader().version(); }
  /// A factory of map_readers of this map, for a thread that wants a handle of its own (its
  /// reads then skip the thread-local lookup) or for a layer built on this map. A reader it
  /// makes keeps the map's copies alive, as any map_reader does.
  reader_factory<Key, Value, Hash, Eq, Traits> factory() const { return factory_; }
  /// A snapshot of one version, unchanged while the guard lives. The guard is used by this
  /// thread only and must end before the map is destroyed and before this thread exits; keep it
  /// short (it holds up the writer's second publish from now, and so every writer). While it
  /// lives, this thread's writes to this map (and sync(), checkpoint(), reader_slots()) throw
  /// std::logic_error: they would wait for a publish that waits for the guard. Read, end the
  /// guard, then write.
  guard read() const { return local_reader().read(); }

  // ---- Writes. Thread-safety: any thread. Progress: blocking; waits for at most the group
  // being published when it was called, then for its own (one publish, one sync in
  // durability::sync). Each returns once its operations are published (and, for a durable map
  // in durability::sync, on stable storage) with the version that made them visible. Memory
  // ordering: the operations happen-before every read that starts after the call returns.
  // Exceptions: what applying this call's own operations threw (a copy, the hash, an
  // allocation), with nothing of them visible; storage_error if the log failed (then every later
  // write throws it too; reads keep working). ----

  std::uint64_t insert_or_assign(Key key, Value value) {
    request r;
    r.ops.insert_or_assign(std::move(key), std::move(value));
    return submit(r);
  }
  /// Sets key to value only if key is absent when the operation is applied.
  std::uint64_t insert(Key key, Value value) {
    request r;
    r.ops.insert(std::move(key), std::move(value));
    return submit(r);
  }
  std::uint64_t erase(const Key& key) {
    request r;
    r.ops.erase(key);
    return submit(r);
  }
  std::uint64_t clear() {
    request r;
    r.ops.clear();
    return submit(r);
  }
  /// f(batch&) queues operations that become visible in one version, all or none, in the order
  /// queued and not interleaved with any other call's. f runs in the calling thread before
  /// anything is queued: if it throws, nothing of it is applied and the exception propagates.
  template <class F>
  std::uint64_t update(F&& f) {
    static_assert(std::is_invocable_v<F&&, batch&>, "leftright: update needs f(shared_map::batch&)");
    request r;
    std::forward<F>(f)(r.ops);
    return submit(r);
  }
  /// Read-modify-write of one key, atomic with respect to every other write (a counter, an append
  /// to a list, a compare-and-set): f(const Value* current) -> std::optional<Value> gets key's
  /// value in the state this call applies to (every write published before it and its group's
  /// earlier ones; nullptr if absent) and returns what key holds after: a value, or nullopt to
  /// erase it (or leave it absent). Its update is published as any other write's. f runs on the
  /// thread that combines the group, perhaps another caller's, with the writer held (see
  /// batch::compute for what it may and may not do); if it throws, this call throws that and
  /// nothing of it is applied.
  template <class F>
  std::uint64_t compute(Key key, F f) {
    static_assert(std::is_invocable_r_v<std::optional<Value>, F&, const Value*>,
                  "leftright: compute needs f(const Value*) -> std::optional<Value>");
    request r;
    r.ops.compute(std::move(key), std::move(f));
    return submit(r);
  }

  /// update() for fire-and-forget producers: queues f's operations and returns at once if a
  /// combiner is running (it or the next one publishes them); otherwise this thread publishes
  /// them (and whatever else is queued) before returning. Where the running combiner's own
  /// write is done and it publishes posted batches only, this waits as update() does (for that
  /// group, then its own), so that no caller publishes others' batches indefinitely. A
  /// thread's posted and waited-for writes are applied in the order it made them. A posted
  /// batch that throws is dropped alone; the next sync() rethrows the first such exception.
  template <class F>
  void post(F&& f) {
    static_assert(std::is_invocable_v<F&&, batch&>, "leftright: post needs f(shared_map::batch&)");
    refuse_reentry("post()");
    auto r = std::make_unique<request>();
    std::forward<F>(f)(r->ops);
    auto run = runner();
    queue_.post(std::move(r), run);
  }

  /// Returns once everything queued before it (also posted batches) is published and, for a
  /// durable map, on stable storage (a flush of the log in durability::none and async).
  /// Exceptions: the first exception of a posted batch since the last sync(); storage_error.
  void sync() {
    control([this] {
      backend_->flush();
      if (posted_error_) std::rethrow_exception(std::exchange(posted_error_, nullptr));
    });
  }

  /// Durable maps: durable_writer::checkpoint() (a snapshot; the log it covers is removed), after
  /// everything queued before it is published. Progress: blocking, O(size); writers wait for it.
  /// Throws std::logic_error for an in-memory map; storage_error as checkpoint().
  void checkpoint() {
    control([this] { backend_->checkpoint(); });
  }
  /// Durable maps: durable_writer::backup(to) (a copy of the published state in a new map
  /// directory, which open_map() opens at that version), after everything queued before it is
  /// published; returns the version copied. Progress: blocking, O(size); writers wait for it.
  /// Throws std::logic_error for an in-memory map; storage_error as backup() (the map goes on).
  std::uint64_t backup(const std::filesystem::path& to) {
    std::uint64_t v = 0;
    control([this, &to, &v] { v = backend_->backup(to); });
    return v;
  }
  /// What open_map() found and did (a durable map); version 0 and empty for an in-memory map.
  const recovery_report& recovery() const noexcept { return recovery_; }
  bool durable() const noexcept { return durable_; }

  /// Reader slots of the map: the high-water mark of live per-thread readers (a thread's reader
  /// is released when it exits, and its slot reused). Waits for the group in progress.
  std::size_t reader_slots() const {
    std::size_t n = 0;
    control([this, &n] { n = backend_->reader_slots(); });
    return n;
  }
  /// Write (and sync/checkpoint) calls queued and not yet taken by a combiner: the next group,
  /// as it stands. Any thread. Cost: a mutex.
  std::size_t queued_writes() const { return queue_.queued(); }
  /// Per-thread readers alive now. Cost: a mutex.
  std::size_t live_readers() const { return home_->live(); }

  /// Counters of the writers' work. Any thread; wait-free; each field may be slightly old.
  shared_map_stats stats() const noexcept {
    const auto ld = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };  // [S2]
    return {ld(counters_.writes),    ld(counters_.failed_writes), ld(counters_.operations),
            ld(counters_.publishes), ld(counters_.groups),        ld(counters_.largest_group),
            ld(counters_.splits),    ld(counters_.solo_publishes)};
  }

 private:
  using group = detail::combining_queue::group;
  struct request;
  struct counters {
    std::atomic<std::uint64_t> writes{0}, failed_writes{0}, operations{0}, publishes{0}, groups{0},
        largest_group{0}, splits{0}, solo_publishes{0};
    /// [S1] relaxed: only the combiner writes (see the top of the file).
    static void add(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
      a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    static void raise(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
      if (n > a.load(std::memory_order_relaxed)) a.store(n, std::memory_order_relaxed);  // [S1]
    }
  };
  struct backend;
  template <class W>
  struct backend_of;

  static const shared_map_options& checked(const shared_map_options& o) {
    if (o.max_delay.count() < 0) throw std::invalid_argument("leftright::shared_map: max_delay is negative");
    if (o.max_reader_wait.count() < 0) {
      throw std::invalid_argument("leftright::shared_map: max_reader_wait is negative");
    }
    return o;
  }
  /// open_map(durable) once the options are checked: a bad option opens (and recovers) nothing.
  static auto open_checked(const durable_options& durable, const shared_map_options& o) {
    checked(o);
    return open_map<Key, Value, Hash, Eq, Traits>(durable);
  }

  template <class W>
  shared_map(std::pair<W, reader_type> made, const shared_map_options& options)
      : factory_(made.second.factory()),
        // A waiting writer spins before it sleeps only where a publish makes no system call: an
        // asymmetric publish's membarrier interrupts every core running one of the process's
        // threads, a spinning writer's too (on this project's 2-core VM, two threads writing 5%
        // of their operations went from 2.0 to 1.0 M operations/s with it, and with seq_cst
        // readers from 4.4 to 14.5 M). With reader_sync::automatic that changes with the
        // publish rate: run_group updates it after each group.
        queue_(options.max_delay, made.first.readers_fence()) {
    if constexpr (std::is_same_v<W, durable_writer<Key, Value, Hash, Eq, Traits>>) {
      recovery_ = made.first.recovery();
      durable_ = true;
    }
    backend_ = std::make_unique<backend_of<W>>(std::move(made.first), counters_, options);
  }

  // ---- The per-thread reader. ----

  using reader_ref_type = reader_ref<Key, Value, Hash, Eq, Traits>;
  [[gnu::always_inline]] inline reader_ref_type local_reader() const {
    return detail::cached_or<reader_ref_type>(&id_, [this] { return local_reader_slow(); });
  }
  [[gnu::noinline]] reader_ref_type local_reader_slow() const;
  /// Refuses a call (std::logic_error) that would wait for this thread itself: made from inside
  /// a group this thread combines (a compute's function, an erase_if predicate), or while this
  /// thread holds a read() guard of the map.
  void refuse_reentry(const char* call) const {
    if (detail::combining_scope::inside(&id_)) {
      throw std::logic_error(std::string("leftright: shared_map: ") + call +
                             " from inside a function the map's combiner runs (compute, erase_if) would wait for "
                             "the group that runs it; return the change from the function instead");
    }
    refuse_inside_read(call);
  }
  /// Throws std::logic_error if this thread is inside a read of this map (a read() guard alive):
  /// the call's group, or a later one, would publish twice while the guard pins the copy the
  /// second publish must write, and wait for it, while this thread waits for that publish.
  /// Looks the thread's reader up without making one (a thread that only writes has none).
  void refuse_inside_read(const char* call) const {
    const reader_ref_type r = detail::cached_or<reader_ref_type>(&id_, [this] {
      using node = detail::thread_reader_node_of<reader_type>;
      detail::thread_reader_node* n = detail::find_local_node(id_);
      return n != nullptr ? static_cast<node*>(n)->reader.ref() : reader_ref_type{};
    });
    if (r.reading()) {
      throw std::logic_error(std::string("leftright: shared_map: ") + call +
                             " on a thread that holds a read() guard of the same map would wait for that guard "
                             "forever; end the guard first");
    }
  }

  // ---- Combining. ----

  std::uint64_t submit(request& r) {
    refuse_reentry("a write");
    auto run = runner();
    queue_.submit(r, run);
    if (r.error) std::rethrow_exception(r.error);
    return r.version;
  }
  /// Runs f with the writer held, after everything queued before it; rethrows what f threw.
  template <class F>
  void control(F f) const {
    refuse_reentry("sync(), checkpoint(), backup() or reader_slots()");
    request r;
    r.control = std::move(f);
    auto run = runner();
    queue_.submit(r, run);
    if (r.error) std::rethrow_exception(r.error);
  }
  auto runner() const {
    return [this](group g) noexcept { run_group(g); };
  }
  void run_group(group g) const noexcept;
  void run_control(request& r) const noexcept;

  const std::uint64_t id_ = detail::next_shared_map_id();
  const std::shared_ptr<detail::reader_home> home_ = std::make_shared<detail::reader_home>();
  reader_factory<Key, Value, Hash, Eq, Traits> factory_;
  recovery_report recovery_;
  bool durable_ = false;
  // The combiner's state: used only by the thread that holds the combiner's role.
  mutable std::unique_ptr<backend> backend_;
  mutable std::exception_ptr posted_error_;  ///< the first failure of a posted batch since sync()
  mutable detail::combining_queue queue_;
  mutable counters counters_;
};

// ------------------------------------------------------------------------------------------------

/// The operations of one update() or post() call, applied in the order queued, all in one
/// version. Filled by the calling thread only.
template <class Key, class Value, class Hash, class Eq, class Traits>
class shared_map<Key, Value, Hash, Eq, Traits>::batch {
 public:
  void insert_or_assign(Key key, Value value) { ops_.emplace_back(assign_op{std::move(key), std::move(value)}); }
  void insert(Key key, Value value) { ops_.emplace_back(insert_op{std::move(key), std::move(value)}); }
  void erase(Key key) { ops_.emplace_back(erase_op{std::move(key)}); }
  /// Removes every entry for which pred(const Key&, const Value&) is true. pred must be a pure
  /// function of its arguments and copy-constructible (as map_writer::erase_if).
  template <class Pred>
  void erase_if(Pred pred) {
    static_assert(std::is_invocable_r_v<bool, const Pred&, const Key&, const Value&>,
                  "leftright: erase_if needs pred(const Key&, const Value&) -> bool");
    ops_.emplace_back(erase_if_op{std::function<bool(const Key&, const Value&)>(std::move(pred))});
  }
  void clear() { ops_.emplace_back(clear_op{}); }
  /// Sets key from its value as the operations before this one leave it (the published state,
  /// the group's earlier writes, this batch's earlier operations): f(const Value* current) ->
  /// std::optional<Value> returns what key holds after, a value or nullopt to erase it (or leave
  /// it absent). Applied by the combiner with the writer held, between the operations queued
  /// before and after it: atomic with respect to every other write. f must be copy-constructible,
  /// short (every writer of the map waits for it), and a function of `current` alone: it may be
  /// called more than once (a group that threw is retried in halves; the result of its last call
  /// is the one applied), on another caller's thread; `current` is valid only during the call.
  /// Whatever else f does is not part of the map's version: it is neither undone when the call
  /// fails nor kept from repeating. Reads of the map from f see the published state, not
  /// `current`'s. A write, sync(), checkpoint() or backup() of this map from f, or from a function
  /// of any group its thread is combining, throws std::logic_error (it would wait for a group its
  /// own thread runs). f may write another shared_map (its own publish, not undone with this one),
  /// but that orders the two: a map written from this map's functions must not write this map
  /// from its own, or two combiners can wait for each other for ever, as two locks taken in
  /// opposite orders.
  /// If f throws, the call that queued this batch throws that and nothing of the batch is applied.
  /// Cost: the writer's read of its own writes (map_writer::find: a look through the group's
  /// queued operations, then one lookup), f, and the write it returns.
  template <class F>
  void compute(Key key, F f) {
    static_assert(std::is_invocable_r_v<std::optional<Value>, F&, const Value*>,
                  "leftright: compute needs f(const Value*) -> std::optional<Value>");
    ops_.emplace_back(compute_op{std::move(key), std::function<std::optional<Value>(const Value*)>(std::move(f))});
  }
  /// Operations queued so far.
  std::size_t size() const noexcept { return ops_.size(); }
  bool empty() const noexcept { return ops_.empty(); }

 private:
  friend class shared_map;
  struct assign_op {
    Key key;
    Value value;
  };
  struct insert_op {
    Key key;
    Value value;
  };
  struct erase_op {
    Key key;
  };
  struct erase_if_op {
    std::function<bool(const Key&, const Value&)> pred;
  };
  struct clear_op {};
  struct compute_op {
    Key key;
    std::function<std::optional<Value>(const Value*)> f;
  };

  /// Queues the operations on the writer w: by copy, so that they can be queued again if the
  /// publish throws, or by move when this is the last try.
  template <class W>
  void apply_to(W& w, bool move) {
    for (auto& o : ops_) {
      std::visit([&w, move](auto& op) { apply_one(w, op, move); }, o);
    }
  }
  template <class W, class Op>
  static void apply_one(W& w, Op& op, bool move) {
    if constexpr (std::is_same_v<Op, assign_op> || std::is_same_v<Op, insert_op>) {
      constexpr bool assign = std::is_same_v<Op, assign_op>;
      if (move) {
        if constexpr (assign) w.insert_or_assign(std::move(op.key), std::move(op.value));
        else w.insert(std::move(op.key), std::move(op.value));
      } else {
        if constexpr (assign) w.insert_or_assign(std::as_const(op.key), op.value);
        else w.insert(std::as_const(op.key), op.value);
      }
    } else if constexpr (std::is_same_v<Op, erase_op>) {
      w.erase(op.key);
    } else if constexpr (std::is_same_v<Op, erase_if_op>) {
      w.erase_if(op.pred);
    } else if constexpr (std::is_same_v<Op, compute_op>) {
      const Value* now = w.find(op.key);  // valid until the next call on w
      const bool present = now != nullptr;
      std::optional<Value> next = op.f(now);
      if (next) {
        if (move) w.insert_or_assign(std::move(op.key), std::move(*next));
        else w.insert_or_assign(std::as_const(op.key), std::move(*next));
      } else if (present) {
        w.erase(op.key);
      }
    } else {
      w.clear();
    }
  }

  std::vector<std::variant<assign_op, insert_op, erase_op, erase_if_op, clear_op, compute_op>> ops_;
};

template <class Key, class Value, class Hash, class Eq, class Traits>
struct shared_map<Key, Value, Hash, Eq, Traits>::request final : detail::combine_request {
  batch ops;
  std::function<void()> control;  ///< set: a control call, run with the writer held
  std::uint64_t version = 0;      ///< set by the combiner: the version that published ops
  std::exception_ptr error;       ///< set by the combiner: what this call throws
};

/// The map's single writer, held by the combiner; the durable one is made (and its codecs
/// required) only by the durable constructor.
template <class Key, class Value, class Hash, class Eq, class Traits>
struct shared_map<Key, Value, Hash, Eq, Traits>::backend {
  virtual ~backend() = default;
  /// Publishes the batches of rs (write requests, in queue order) as one version, or, if that
  /// throws, isolates the calls that throw. Records each request's version or error.
  virtual void publish(group rs) noexcept = 0;
  virtual void flush() = 0;
  virtual void checkpoint() = 0;
  virtual std::uint64_t backup(const std::filesystem::path& to) = 0;
  virtual std::size_t reader_slots() const = 0;
  /// Whether the next publish makes no membarrier (map_writer::readers_fence).
  virtual bool readers_fence() const noexcept = 0;
};

template <class Key, class Value, class Hash, class Eq, class Traits>
template <class W>
struct shared_map<Key, Value, Hash, Eq, Traits>::backend_of final : backend {
  static constexpr bool is_durable = std::is_same_v<W, durable_writer<Key, Value, Hash, Eq, Traits>>;

  backend_of(W writer, counters& c, std::chrono::nanoseconds reader_wait)
      : w(std::move(writer)), stats(c), max_reader_wait(reader_wait) {}
  backend_of(W writer, counters& c, const shared_map_options& o) : backend_of(std::move(writer), c, o.max_reader_wait) {
    w.set_held_copy_limit(o.max_held_copies);
  }

  void publish(group rs) noexcept override {
    if (!usable()) return fail(rs, refusal());
    const bool last_try = rs.size() == 1;
    try {
      std::uint64_t n = 0;
      for (combine_request_ptr c : rs) {
        as_request(c).ops.apply_to(w, last_try);
        n += as_request(c).ops.size();
      }
      const std::uint64_t solo_before = w.solo_swaps();
      const std::uint64_t v = max_reader_wait.count() > 0 ? w.publish_within(max_reader_wait) : w.publish();
      for (combine_request_ptr c : rs) as_request(c).version = v;
      counters::add(stats.publishes, 1);
      counters::add(stats.operations, n);
      counters::raise(stats.largest_group, rs.size());
      if (w.solo_swaps() != solo_before) counters::add(stats.solo_publishes, 1);
      // A settle is a swap: worth it while swaps cost no membarrier (readers fence, or this one
      // was solo), not otherwise.
      if (w.readers_fence() || w.solo_swaps() != solo_before) settle();
    } catch (...) {
      w.discard();
      if (!usable()) return fail(rs, writer_failure(std::current_exception()));
      if (last_try) return fail(rs, std::current_exception());
      counters::add(stats.splits, 1);
      publish(rs.first(rs.size() / 2));
      publish(rs.subspan(rs.size() / 2));
    }
  }
  /// Gives every request of rs the exception e.
  void fail(group rs, std::exception_ptr e) noexcept {
    for (combine_request_ptr c : rs) as_request(c).error = e;
    counters::add(stats.failed_writes, rs.size());
  }
  /// What the callers of a group get when the writer became unusable while publishing it: e if
  /// it is the storage failure itself, otherwise (a caller's exception, after which the writer
  /// failed to take its batch back, or was poisoned) the writer's refusal, which says why. No
  /// caller gets another caller's exception.
  std::exception_ptr writer_failure(std::exception_ptr e) noexcept {
    try {
      std::rethrow_exception(e);
    } catch (const storage_error&) {
      return e;
    } catch (...) {
      return refusal();
    }
  }
  /// The exception the unusable writer refuses every publish with (storage_error once a durable
  /// writer failed, std::logic_error once a writer is poisoned). Precondition: !usable().
  std::exception_ptr refusal() noexcept {
    try {
      w.publish();
    } catch (...) {
      return std::current_exception();
    }
    return std::make_exception_ptr(std::logic_error("leftright: the writer refused a publish and then took one"));
  }
  /// Moves the readers back to the copy they read before this publish, if none is still in it
  /// (map_writer::try_settle): a shared_map publishes every group at once, so its readers would
  /// otherwise alternate between the two copies and the CPU caches hold both copies' hot lines
  /// (YCSB B over 1M entries, one thread: 1.4-2.5x the operations/s). Only while readers fence
  /// or the publish was solo (case C9: a one-thread map): with asymmetric readers the second
  /// swap's membarrier costs more than it saves. The group
  /// is published already: a settle whose replay throws has made the copies equal
  /// again (or poisoned the writer, which the next publish reports), so nothing is lost with its
  /// exception but the locality.
  /// A settle that finds a reader still in that copy says other threads are reading now: then
  /// each settle costs their cores a swap's cache-line transfers and mostly fails, so the next
  /// settle_skip groups do not try (two threads each writing 5% of their operations: 1.05-1.07x
  /// the operations/s without settles, where one thread loses 10-14% without them).
  void settle() noexcept {
    if (settle_skips_left > 0) {
      --settle_skips_left;
      return;
    }
    try {
      if (!w.try_settle()) settle_skips_left = settle_skip;
    } catch (...) {
    }
  }
  static constexpr unsigned settle_skip = 16;
  unsigned settle_skips_left = 0;  ///< groups left before the next settle is tried (combiner only)
  void flush() override {
    if constexpr (is_durable) w.flush();
  }
  void checkpoint() override {
    if constexpr (is_durable) {
      w.checkpoint();
    } else {
      throw std::logic_error("leftright: checkpoint() of an in-memory shared_map");
    }
  }
  std::uint64_t backup(const std::filesystem::path& to) override {
    if constexpr (is_durable) {
      return w.backup(to);
    } else {
      throw std::logic_error("leftright: backup() of an in-memory shared_map (" + to.string() + ")");
    }
  }
  std::size_t reader_slots() const override { return w.reader_slots(); }
  bool readers_fence() const noexcept override { return w.readers_fence(); }

  /// False once the writer refuses every publish (a storage failure, or a poisoned writer): then
  /// the group's callers all get the exception, and splitting it would not help.
  bool usable() const noexcept {
    if constexpr (is_durable) return !w.failed();
    else return !w.poisoned();
  }

  using combine_request_ptr = detail::combine_request*;
  static request& as_request(combine_request_ptr c) noexcept { return static_cast<request&>(*c); }

  W w;
  counters& stats;
  const std::chrono::nanoseconds max_reader_wait;
};

// ------------------------------------------------------------------------------------------------

template <class Key, class Value, class Hash, class Eq, class Traits>
typename shared_map<Key, Value, Hash, Eq, Traits>::reader_ref_type
shared_map<Key, Value, Hash, Eq, Traits>::local_reader_slow() const {
  using node = detail::thread_reader_node_of<reader_type>;
  node& n = detail::local_node<node>(id_, home_,
                                     [this] { return std::make_unique<node>(factory_.make_thread_reader()); });
  const reader_ref_type r = n.reader.ref();
  detail::cache_node(&id_, n, r);
  return r;
}

template <class Key, class Value, class Hash, class Eq, class Traits>
void shared_map<Key, Value, Hash, Eq, Traits>::run_group(group g) const noexcept {
  const auto is_control = [](detail::combine_request* c) { return bool(static_cast<request*>(c)->control); };
  // Marks this thread as combining for this map while it runs the group, on top of the maps it
  // combines already (a compute's function may write another shared_map, combined here too).
  const detail::combining_scope scope(&id_);
  counters::add(counters_.groups, 1);
  counters::add(counters_.writes, static_cast<std::uint64_t>(std::count_if(g.begin(), g.end(),
                                                                           [&](auto* c) { return !is_control(c); })));
  for (std::size_t i = 0; i < g.size();) {
    if (is_control(g[i])) {
      run_control(*static_cast<request*>(g[i]));
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    while (j < g.size() && !is_control(g[j])) ++j;
    backend_->publish(g.subspan(i, j - i));
    // Failures of posted batches go to the next sync(): noted before the group's next control
    // request runs, which may be that sync().
    for (detail::combine_request* c : g.subspan(i, j - i)) {
      const request& r = *static_cast<request*>(c);
      if (r.posted && r.error && !posted_error_) posted_error_ = r.error;
    }
    i = j;
  }
  queue_.set_spin(backend_->readers_fence());
}

template <class Key, class Value, class Hash, class Eq, class Traits>
void shared_map<Key, Value, Hash, Eq, Traits>::run_control(request& r) const noexcept {
  try {
    r.control();
  } catch (...) {
    r.error = std::current_exception();
  }
}

}  // namespace leftright
