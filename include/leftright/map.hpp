// leftright: a concurrent hash map for read-mostly workloads. One writer, any number of readers;
// reads are wait-free and cost about what a lookup in an unsynchronized absl::flat_hash_map
// costs. The writer queues operations and publish() makes a batch visible to every reader at
// once. See detail/left_right.hpp for the protocol.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "detail/left_right.hpp"
#include "detail/map_ops.hpp"

namespace leftright {

template <class Key, class Value, class Hash, class Eq, class Traits>
class map_writer;
template <class Key, class Value, class Hash, class Eq, class Traits>
class map_reader;
template <class Key, class Value, class Hash, class Eq, class Traits>
class reader_factory;
template <class Key, class Value, class Hash, class Eq, class Traits>
class durable_writer;

namespace detail {

template <class Key, class Value, class Hash, class Eq, class Traits>
using map_table = typename map_ops_for<Key, Value, Hash, Eq, Traits>::table;

template <class Key, class Value, class Hash, class Eq, class Traits>
using map_reader_impl = lr_reader<map_table<Key, Value, Hash, Eq, Traits>, Traits::sync>;

}  // namespace detail

/// A consistent snapshot of the map: everything published up to version(), nothing after.
/// Move-only. Holding it keeps the writer's *second* publish from now waiting (the first one
/// never waits for it), so keep it short. Must not outlive the map_reader it came from.
/// Thread-safety: the thread that owns the reader.
template <class Key, class Value, class Hash = absl::Hash<Key>, class Eq = std::equal_to<Key>,
          class Traits = default_traits>
class read_guard {
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  using table = typename ops::table;
  using impl = detail::map_reader_impl<Key, Value, Hash, Eq, Traits>;

 public:
  using key_type = Key;
  using mapped_type = Value;
  using value_type = std::pair<const Key, Value>;
  using const_iterator = typename ops::const_iterator;
  using iterator = const_iterator;

  read_guard(read_guard&& other) noexcept : slot_(std::exchange(other.slot_, nullptr)), copy_(other.copy_) {}
  read_guard& operator=(read_guard&& other) noexcept {
    if (this != &other) {
      reset();
      slot_ = std::exchange(other.slot_, nullptr);
      copy_ = other.copy_;
    }
    return *this;
  }
  read_guard(const read_guard&) = delete;
  read_guard& operator=(const read_guard&) = delete;
  ~read_guard() { reset(); }

  /// The value stored under key, or nullptr. Valid while this guard lives.
  /// K: Key, or any type the underlying absl map accepts for lookup with Hash and Eq.
  /// Progress: wait-free. Cost: one hash-map lookup.
  template <class K>
  const Value* find(const K& key) const {
    return ops::find(copy_->value, key);
  }
  template <class K>
  bool contains(const K& key) const {
    return ops::contains(copy_->value, key);
  }
  std::size_t size() const noexcept { return copy_->value.size(); }
  bool empty() const noexcept { return copy_->value.empty(); }
  /// The version this snapshot shows (0 = the empty initial state).
  std::uint64_t version() const noexcept { return copy_->version; }
  /// Iterates const std::pair<const Key, Value>& in an unspecified order.
  const_iterator begin() const { return copy_->value.begin(); }
  const_iterator end() const { return copy_->value.end(); }

 private:
  friend class map_reader<Key, Value, Hash, Eq, Traits>;
  read_guard(const impl& reader) noexcept : read_guard(reader.enter()) {}
  explicit read_guard(typename impl::entry e) noexcept : slot_(e.slot), copy_(e.copy) {}
  /// Leaves the guard's part of the read (a moved-from guard has none). Leaves the fields as
  /// they are: the destructor and the move assignment (which overwrites them) are the only callers.
  void reset() noexcept {
    if (slot_ != nullptr) [[likely]] impl::leave(slot_);
  }

  detail::reader_slot* slot_;  ///< the reader's slot; nullptr once moved from
  const detail::versioned<table>* copy_;
};

/// A reader of the map: a registered slot. Copyable; a copy is a new, separately registered
/// reader (copy one per thread). A reader is used by one thread at a time.
template <class Key, class Value, class Hash = absl::Hash<Key>, class Eq = std::equal_to<Key>,
          class Traits = default_traits>
class map_reader {
  using table = detail::map_table<Key, Value, Hash, Eq, Traits>;
  using impl = detail::map_reader_impl<Key, Value, Hash, Eq, Traits>;

 public:
  using guard = read_guard<Key, Value, Hash, Eq, Traits>;

  /// Pins the current published state until the guard is destroyed.
  /// Thread-safety: the thread using this reader. Progress: wait-free, no shared line written.
  /// Memory ordering: every operation of every publish() that returned before this call, and of
  ///                  the publish that made the returned version, happens-before reads through
  ///                  the guard. Nested guards on one reader see the outermost one's snapshot.
  guard read() const noexcept { return guard(impl_); }

  /// A copy of the value under key, or nullopt. Wait-free; costs a lookup and a copy.
  template <class K>
  std::optional<Value> get(const K& key) const {
    guard g = read();
    if (const Value* v = g.find(key)) return *v;
    return std::nullopt;
  }
  template <class K>
  bool contains(const K& key) const {
    return read().contains(key);
  }
  std::size_t size() const noexcept { return read().size(); }
  bool empty() const noexcept { return read().empty(); }
  /// The version of the state a read starting now sees.
  std::uint64_t version() const noexcept { return read().version(); }

  /// Which barrier this map's readers use (fixed when the map was made).
  reader_sync sync_mode() const noexcept {
    return impl_.slot()->asymmetric() ? reader_sync::asymmetric : reader_sync::seq_cst;
  }
  /// A factory for more readers of the same map.
  reader_factory<Key, Value, Hash, Eq, Traits> factory() const {
    return reader_factory<Key, Value, Hash, Eq, Traits>(impl_.core());
  }

 private:
  friend class map_writer<Key, Value, Hash, Eq, Traits>;
  friend class reader_factory<Key, Value, Hash, Eq, Traits>;
  explicit map_reader(std::shared_ptr<detail::lr_core<table>> core) : impl_(std::move(core)) {}

  impl impl_;
};

/// Makes readers. Copyable and thread-safe: hand copies to threads, each makes its own reader.
/// Keeps the map alive like a reader does.
template <class Key, class Value, class Hash = absl::Hash<Key>, class Eq = std::equal_to<Key>,
          class Traits = default_traits>
class reader_factory {
  using table = detail::map_table<Key, Value, Hash, Eq, Traits>;

 public:
  /// Registers a new reader. Thread-safety: any thread. Cost: a mutex; an allocation the
  /// first time the number of live readers reaches a new high.
  map_reader<Key, Value, Hash, Eq, Traits> make_reader() const {
    return map_reader<Key, Value, Hash, Eq, Traits>(core_);
  }

 private:
  friend class map_writer<Key, Value, Hash, Eq, Traits>;
  friend class map_reader<Key, Value, Hash, Eq, Traits>;
  explicit reader_factory(std::shared_ptr<detail::lr_core<table>> core) : core_(std::move(core)) {}

  std::shared_ptr<detail::lr_core<table>> core_;
};

/// The single writer of a map. Move-only. Operations are queued and take effect for readers
/// only at publish(). All members: Thread-safety: the one thread using the writer at a time.
template <class Key, class Value, class Hash = absl::Hash<Key>, class Eq = std::equal_to<Key>,
          class Traits = default_traits>
class map_writer {
  static_assert(std::is_copy_constructible_v<Key> && std::is_copy_constructible_v<Value>,
                "leftright: keys and values must be copy-constructible: each operation is "
                "applied to two copies of the map");
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  using table = typename ops::table;
  using op = typename ops::op;
  using impl = detail::lr_writer<table, op, ops, Traits>;

 public:
  using reader = map_reader<Key, Value, Hash, Eq, Traits>;
  using factory_type = reader_factory<Key, Value, Hash, Eq, Traits>;

  /// True if entries are stored once, in nodes both copies share (entries larger than
  /// Traits::max_inline_entry bytes); false if each copy holds its entries inline.
  static constexpr bool shares_values = std::is_same_v<
      ops, detail::shared_ops<Key, Value, Hash, Eq, Traits::huge_pages>>;

  /// Queues: set key to value (insert or overwrite). Cost: appends to the log. A key passed as
  /// an lvalue is copied into the log, into the storage of an operation applied earlier where
  /// the key type can reuse it (a std::string key then costs no allocation).
  void insert_or_assign(const Key& key, Value value) {
    impl_.template emplace_reusing<typename ops::assign_op>(key, std::move(value));
  }
  void insert_or_assign(Key&& key, Value value) {
    impl_.template emplace<typename ops::assign_op>(std::move(key), std::move(value));
  }
  /// Queues: set key to value only if key is absent when the batch is applied.
  void insert(const Key& key, Value value) {
    impl_.template emplace_reusing<typename ops::insert_op>(key, std::move(value));
  }
  void insert(Key&& key, Value value) {
    impl_.template emplace<typename ops::insert_op>(std::move(key), std::move(value));
  }
  /// Queues: remove key if present.
  void erase(const Key& key) { impl_.append(typename ops::erase_op{key}); }
  /// Queues: remove every entry for which pred(const Key&, const Value&) is true. pred must be a
  /// pure function of its arguments (it runs once on each copy, at different times) and
  /// copy-constructible.
  template <class Pred>
  void erase_if(Pred pred) {
    static_assert(std::is_invocable_r_v<bool, const Pred&, const Key&, const Value&>,
                  "leftright: erase_if needs pred(const Key&, const Value&) -> bool");
    using state = typename ops::erase_if_op::state;
    impl_.append(typename ops::erase_if_op{std::make_shared<state>(state{std::move(pred)})});
  }
  /// Queues: remove every entry.
  void clear() { impl_.append(typename ops::clear_op{}); }
  /// Queues: make room for n entries in each copy (applied in order with the other operations).
  /// Throws std::length_error, queuing nothing, if n is more entries than a table of this type
  /// can describe; a table too large for memory fails at publish() instead (std::bad_alloc,
  /// with the strong guarantee of publish()). Cost: appends to the log.
  void reserve(std::size_t n) {
    ops::buckets_for(n);  // the size check alone
    impl_.append(typename ops::reserve_op{n});
  }

  /// Operations queued and not yet published.
  std::size_t pending() const noexcept { return impl_.pending(); }
  /// Drops every queued operation (rollback). Readers never saw them.
  void discard() noexcept { impl_.discard(); }

  /// Makes every queued operation visible to readers, atomically, and returns the new version
  /// (1, 2, ... ; each call makes one, also for an empty batch).
  /// Progress: blocking; first waits for the readers that were inside at the previous publish
  ///           (those may still read the copy this call writes), then applies the batch.
  /// Cost: the waiting, plus the last batch applied by move and this batch by copy, plus one
  ///       membarrier when readers are asymmetric.
  /// Memory ordering: operations queued before publish() happen-before every read that
  ///                  observes the returned version.
  /// Exceptions: strong guarantee. If applying throws (a copy, the hash, an allocation),
  ///             nothing is published, the batch stays queued, the copies stay equal, and the
  ///             exception propagates. If even restoring the write copy fails, the writer is
  ///             poisoned(): this and every later publish throw std::logic_error.
  std::uint64_t publish() { return impl_.publish(); }

  /// publish(), but only if no reader has to be waited for; otherwise returns false and changes
  /// nothing (the batch stays queued). Progress: never waits for readers.
  bool try_publish() { return impl_.try_publish(); }

  /// The last published version (what a read starting now sees).
  std::uint64_t version() const noexcept { return impl_.version(); }
  /// True after a publish failed and the write copy could not be restored.
  bool poisoned() const noexcept { return impl_.poisoned(); }
  /// Which barrier this map's readers use (fixed when the map was made).
  reader_sync sync_mode() const noexcept {
    return impl_.core()->asymmetric ? reader_sync::asymmetric : reader_sync::seq_cst;
  }

  /// Reader slots allocated so far: the high-water mark of concurrently live readers (slots of
  /// destroyed readers are reused). Cost: a mutex.
  std::size_t reader_slots() const { return impl_.core()->registry.capacity(); }

  /// A new registered reader. Thread-safety: any thread holding the writer; see reader_factory.
  reader make_reader() const { return reader(impl_.core()); }
  /// A factory to hand to other threads.
  factory_type factory() const { return factory_type(impl_.core()); }

  /// Internal: adopts a freshly made core (use make_map() or open_map()).
  explicit map_writer(std::shared_ptr<detail::lr_core<table>> core) : impl_(std::move(core)) {}

 private:
  friend class durable_writer<Key, Value, Hash, Eq, Traits>;
  impl impl_;
};

/// Makes an empty map (version 0) and returns its writer and a first reader.
/// capacity: entries to make room for in each copy; hash, eq: the functors both copies use.
/// Throws std::length_error if capacity is more entries than a table of this type can
/// describe, std::bad_alloc if the tables do not fit in memory.
template <class Key, class Value, class Hash = absl::Hash<Key>, class Eq = std::equal_to<Key>,
          class Traits = default_traits>
std::pair<map_writer<Key, Value, Hash, Eq, Traits>, map_reader<Key, Value, Hash, Eq, Traits>>
make_map(std::size_t capacity = 0, const Hash& hash = Hash(), const Eq& eq = Eq()) {
  using table = detail::map_table<Key, Value, Hash, Eq, Traits>;
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  auto core = std::make_shared<detail::lr_core<table>>(detail::resolve(Traits::sync),
                                                       ops::buckets_for(capacity), hash, eq);
  map_writer<Key, Value, Hash, Eq, Traits> w(core);
  map_reader<Key, Value, Hash, Eq, Traits> r = w.make_reader();
  return {std::move(w), std::move(r)};
}

}  // namespace leftright
