// SPDX-License-Identifier: Apache-2.0
// leftright: a concurrent hash map for read-mostly workloads. One writer, any number of readers;
// reads are wait-free and cost about what a lookup in an unsynchronized absl::flat_hash_map
// costs. The writer queues operations and publish() makes a batch visible to every reader at
// once. See detail/left_right.hpp for the protocol.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "traits.hpp"
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
class reader_ref;

namespace detail {

template <class Reader, class Key, class Value, class Hash, class Eq, class Traits>
class reader_reads;

/// Hashes any string-like argument as the std::string_view it converts to; transparent, so a
/// lookup by string_view or by a literal builds no std::string. Equal to absl::Hash<std::string>
/// on equal text (Abseil hashes both through string_view).
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return absl::Hash<std::string_view>{}(s); }
};
/// Compares any two string-like arguments as std::string_views; transparent.
struct string_eq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};

template <class Key>
struct default_functors {
  using hash = absl::Hash<Key>;
  using eq = std::equal_to<Key>;
};
template <class Alloc>
struct default_functors<std::basic_string<char, std::char_traits<char>, Alloc>> {
  using hash = string_hash;
  using eq = string_eq;
};
template <>
struct default_functors<std::string_view> {
  using hash = string_hash;
  using eq = string_eq;
};

/// The std::invalid_argument of a batched call whose output span does not match its keys.
[[noreturn, gnu::noinline, gnu::cold]] inline void throw_batch_spans(std::size_t keys, std::size_t out,
                                                                     const char* call) {
  throw std::invalid_argument(std::string("leftright: ") + call + ": out.size() (" + std::to_string(out) +
                              ") must equal keys.size() (" + std::to_string(keys) + ")");
}
/// Throws std::invalid_argument unless the spans of a batched call have one size (out of line,
/// so that a flattened batched lookup does not carry the message's construction).
inline void check_batch_spans(std::size_t keys, std::size_t out, const char* call) {
  if (keys != out) [[unlikely]] throw_batch_spans(keys, out, call);
}

/// A contiguous range of keys that is not already a std::span (those take the span overloads).
template <class R>
concept key_range = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                    !requires { R::extent; };

/// Whether a K other than Key may be passed where a Key is looked up or erased: Hash and Eq are
/// transparent and a Key can be made from it.
template <class Key, class K, class Hash, class Eq>
concept heterogeneous_key = !std::is_same_v<std::remove_cvref_t<K>, Key> &&
                            requires { typename Hash::is_transparent; typename Eq::is_transparent; } &&
                            std::is_constructible_v<Key, const K&>;

}  // namespace detail

/// The hash a map of Key gets unless told otherwise: absl::Hash<Key>, or for std::string and
/// std::string_view keys a transparent one, so that get, contains, find and erase take a
/// std::string_view or a literal without building a std::string (as absl::flat_hash_map does).
template <class Key>
using default_hash = typename detail::default_functors<Key>::hash;
/// The key equality a map of Key gets unless told otherwise: std::equal_to<Key>, or a transparent
/// one for std::string and std::string_view keys (see default_hash).
template <class Key>
using default_eq = typename detail::default_functors<Key>::eq;

namespace detail {

template <class Key, class Value, class Hash, class Eq, class Traits>
using map_table = typename map_ops_for<Key, Value, Hash, Eq, Traits>::table;

template <class Key, class Value, class Hash, class Eq, class Traits>
using map_reader_impl =
    lr_reader<map_table<Key, Value, Hash, Eq, Traits>, Traits::sync, typename meta_of<Traits>::type>;

template <class Key, class Value, class Hash, class Eq, class Traits>
using map_core = lr_core<map_table<Key, Value, Hash, Eq, Traits>, typename meta_of<Traits>::type>;

}  // namespace detail

/// A consistent snapshot of the map: everything published up to version(), nothing after.
/// Move-only. Holding it keeps the writer's *second* publish from now waiting (the first one
/// never waits for it), so keep it short. Must not outlive the map_reader it came from.
/// Thread-safety: the thread that owns the reader.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
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
  /// Progress: wait-free. Cost: one hash-map lookup. Always inlined, as get() is: left to GCC
  /// 12, a shared_map's get() in the YCSB benchmark called find() out of line, and one thread's
  /// B workload ran 5-10% slower against std::shared_mutex (bench/results/notes.md, 2026-12-07).
  template <class K>
  [[gnu::always_inline]] inline const Value* find(const K& key) const {
    return ops::find(copy_->value, key);
  }
  template <class K>
  [[gnu::always_inline]] inline bool contains(const K& key) const {
    return ops::contains(copy_->value, key);
  }

  /// out[i] = find(keys[i]) for every i, all in this guard's snapshot: a multi-get that pays
  /// for the read protocol once, not per key. Keys may repeat. Throws std::invalid_argument
  /// unless out.size() == keys.size(). Progress: wait-free. Cost: one lookup per key.
  template <class K>
  [[gnu::flatten]] void find_many(std::span<const K> keys, std::span<const Value*> out) const {  // see for_each_looked_up
    detail::check_batch_spans(keys.size(), out.size(), "find_many");
    for_each_looked_up(keys, [&](std::size_t i, const table& t) { out[i] = ops::find(t, keys[i]); });
  }
  /// find_many() over any contiguous range of keys (a std::vector, a std::array, ...).
  template <detail::key_range R>
  void find_many(const R& keys, std::span<const Value*> out) const {
    find_many(std::span<const std::ranges::range_value_t<R>>(keys), out);
  }
  /// f(i, find(keys[i])) for each i < keys.size(), in order, on this guard's snapshot: find_many()
  /// without the array of pointers, for a caller that uses each value as its key is looked up
  /// (nothing is stored and read back: on a 1K map, GCC 12, 1.06-1.13x the scalar loop's rate
  /// where find_many() gives 0.74-0.81x). f(std::size_t, const Value*) gets nullptr for a key
  /// not present; the pointer is valid while this guard lives. Keys may repeat. Prefetches as
  /// find_many(). If f throws, the exception propagates (the keys after it are not looked up).
  template <class K, class F>
  [[gnu::flatten]] void find_each(std::span<const K> keys, F&& f) const {
    for_each_looked_up(keys, [&](std::size_t i, const table& t) { f(i, ops::find(t, keys[i])); });
  }
  /// find_each() over any contiguous range of keys.
  template <detail::key_range R, class F>
  void find_each(const R& keys, F&& f) const {
    find_each(std::span<const std::ranges::range_value_t<R>>(keys), std::forward<F>(f));
  }
  /// out[i] = contains(keys[i]); returns how many are present. As find_many().
  template <class K>
  [[gnu::flatten]] std::size_t contains_many(std::span<const K> keys, std::span<bool> out) const {
    detail::check_batch_spans(keys.size(), out.size(), "contains_many");
    std::size_t found = 0;
    for_each_looked_up(keys, [&](std::size_t i, const table& t) { found += (out[i] = ops::contains(t, keys[i])); });
    return found;
  }
  template <detail::key_range R>
  std::size_t contains_many(const R& keys, std::span<bool> out) const {
    return contains_many(std::span<const std::ranges::range_value_t<R>>(keys), out);
  }

  std::size_t size() const noexcept { return copy_->value.size(); }
  bool empty() const noexcept { return copy_->value.empty(); }
  /// The version this snapshot shows (0 = the empty initial state).
  std::uint64_t version() const noexcept { return copy_->version; }
  /// The metadata of this snapshot: the last set_meta() published at or before version()
  /// (Traits::meta_type; default-constructed until one is). Valid while this guard lives.
  const typename detail::meta_of<Traits>::type& meta() const noexcept { return copy_->meta; }
  /// Iterates const std::pair<const Key, Value>& in an unspecified order.
  const_iterator begin() const { return copy_->value.begin(); }
  const_iterator end() const { return copy_->value.end(); }

 private:
  friend class map_reader<Key, Value, Hash, Eq, Traits>;
  friend class reader_ref<Key, Value, Hash, Eq, Traits>;
  template <class R, class K, class V, class H, class E, class T>
  friend class detail::reader_reads;
  read_guard(const impl& reader) noexcept : read_guard(reader.enter()) {}

  /// Calls look(i, table) for each i < keys.size(), in order, on this guard's snapshot; on a
  /// large table (detail::prefetch_min_entries), each key's lines are prefetched
  /// detail::prefetch_distance keys before its turn. Always inlined into the batched calls,
  /// which are flattened: absl's whole lookup is then inlined into their loop. (Left to GCC 12,
  /// the loop called absl's find and its iterator comparison out of line for every key: 0.3-0.6x
  /// the scalar loop's rate on a 1K map. flatten must sit on the outermost function: on an
  /// inner one that is inlined early, or on one IPA-SRA clones, GCC drops it.)
  template <class K, class Look>
  [[gnu::always_inline]] inline void for_each_looked_up(std::span<const K> keys, Look&& look) const {
    using detail::prefetch_distance;
    const table& t = copy_->value;
    const std::size_t n = keys.size();
    if (n < 4 || t.size() < detail::prefetch_min_entries) {
      for (std::size_t i = 0; i < n; ++i) look(i, t);
      return;
    }
    for (std::size_t i = 0; i < std::min(n, prefetch_distance); ++i) ops::prefetch(t, keys[i]);
    for (std::size_t i = 0; i < n; ++i) {
      if (i + prefetch_distance < n) ops::prefetch(t, keys[i + prefetch_distance]);
      look(i, t);
    }
  }
  /// map_reader::get_many's loop: each value copied into out as its key is looked up (no
  /// intermediate pointers), in the flattened, prefetching loop of find_many. Returns how many
  /// were found; if a copy throws, out holds what was copied before it.
  template <class K>
  [[gnu::flatten]] std::size_t copy_many(std::span<const K> keys, std::span<std::optional<Value>> out) const {
    std::size_t found = 0;
    for_each_looked_up(keys, [&](std::size_t i, const table& t) {
      if (const Value* v = ops::find(t, keys[i])) {
        out[i] = *v;
        ++found;
      } else {
        out[i].reset();
      }
    });
    return found;
  }
  explicit read_guard(typename impl::entry e) noexcept : slot_(e.slot), copy_(e.copy) {}
  /// Leaves the guard's part of the read (a moved-from guard has none). Leaves the fields as
  /// they are: the destructor and the move assignment (which overwrites them) are the only callers.
  void reset() noexcept {
    if (slot_ != nullptr) [[likely]] impl::leave(slot_);
  }

  detail::reader_slot* slot_;  ///< the reader's slot; nullptr once moved from
  const detail::versioned<table, typename detail::meta_of<Traits>::type>* copy_;
};

namespace detail {

/// The reads map_reader and reader_ref both offer, written once over Reader's read().
template <class Reader, class Key, class Value, class Hash, class Eq, class Traits>
class reader_reads {
 public:
  /// A copy of the value under key, or nullopt. Wait-free; costs a lookup and a copy.
  /// Always inlined (a guard, a lookup, a copy): called out of line, as GCC left it inside
  /// shared_map::get in a large translation unit, a lookup on a small map cost a quarter more.
  template <class K>
  [[gnu::always_inline]] inline std::optional<Value> get(const K& key) const {
    read_guard<Key, Value, Hash, Eq, Traits> g = self().read();
    if (const Value* v = g.find(key)) return *v;
    return std::nullopt;
  }
  template <class K>
  [[gnu::always_inline]] inline bool contains(const K& key) const {
    return self().read().contains(key);
  }
  /// Copies out the values of keys, all from one snapshot (one guard for the whole call):
  /// out[i] = get(keys[i]) as of that snapshot. Returns how many were found. Keys may repeat.
  /// Throws std::invalid_argument unless out.size() == keys.size() (before reading anything);
  /// if copying a value throws, out holds what was copied so far and the exception propagates.
  /// Progress: wait-free. Cost: one lookup and, for a hit, one copy per key.
  template <class K>
  std::size_t get_many(std::span<const K> keys, std::span<std::optional<Value>> out) const {
    detail::check_batch_spans(keys.size(), out.size(), "get_many");
    return self().read().copy_many(keys, out);
  }
  /// get_many() over any contiguous range of keys.
  template <detail::key_range R>
  std::size_t get_many(const R& keys, std::span<std::optional<Value>> out) const {
    return get_many(std::span<const std::ranges::range_value_t<R>>(keys), out);
  }
  std::size_t size() const noexcept { return self().read().size(); }
  bool empty() const noexcept { return self().read().empty(); }
  /// The version of the state a read starting now sees.
  std::uint64_t version() const noexcept { return self().read().version(); }

 private:
  const Reader& self() const noexcept { return static_cast<const Reader&>(*this); }
};

}  // namespace detail

/// A reader of the map: a registered slot. Copyable; a copy is a new, separately registered
/// reader (copy one per thread). A reader is used by one thread at a time.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class map_reader : public detail::reader_reads<map_reader<Key, Value, Hash, Eq, Traits>, Key, Value, Hash, Eq, Traits> {
  static_assert(map_traits<Traits>, "leftright: Traits must meet leftright::map_traits (derive it from default_traits)");
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  using table = detail::map_table<Key, Value, Hash, Eq, Traits>;
  using impl = detail::map_reader_impl<Key, Value, Hash, Eq, Traits>;

 public:
  using guard = read_guard<Key, Value, Hash, Eq, Traits>;

  /// Pins the current published state until the guard is destroyed.
  /// Thread-safety: the thread using this reader. Progress: wait-free, no shared line written.
  /// Memory ordering: every operation of every publish() that returned before this call, and of
  ///                  the publish that made the returned version, happens-before reads through
  ///                  the guard. Nested guards on one reader see the outermost one's snapshot.
  guard read() const& noexcept { return guard(impl_); }
  /// Deleted: a guard from a temporary reader would outlive the reader (and its slot, which the
  /// next reader registered takes over). Keep the reader in a variable.
  guard read() const&& = delete;

  /// This reader's reads as two pointers (see reader_ref), valid while this reader lives, is
  /// not moved from and not assigned to. Deleted on a temporary reader, as read() is.
  reader_ref<Key, Value, Hash, Eq, Traits> ref() const& noexcept {
    return reader_ref<Key, Value, Hash, Eq, Traits>(impl_.get_ref());
  }
  reader_ref<Key, Value, Hash, Eq, Traits> ref() const&& = delete;

  /// Whether a guard of this reader is alive: its thread is inside a read, and so holds up
  /// every publish after the next (a writer on that thread must not publish until it ends).
  /// Thread-safety: the thread using this reader. Progress: wait-free, one load of its own line.
  bool reading() const noexcept { return impl_.get_ref().inside(); }

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
  explicit map_reader(std::shared_ptr<detail::map_core<Key, Value, Hash, Eq, Traits>> core,
                      std::uint64_t owner = detail::slot_owner::any_thread)
      : impl_(std::move(core), owner) {}

  impl impl_;
};

/// A map_reader's reads without the reader object: what a read needs of it (two pointers),
/// copied freely, made by map_reader::ref(). For code that keeps its readers out of reach (one
/// per thread, in a table) and wants a read to start without loading the reader's address first:
/// shared_map keeps one per thread in a thread-local. It owns nothing: it is valid while its
/// map_reader lives, is not moved from and is not assigned to, and is used by the thread using
/// that reader, as the reader itself is. A default-constructed one must not be read through.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class reader_ref : public detail::reader_reads<reader_ref<Key, Value, Hash, Eq, Traits>, Key, Value, Hash, Eq, Traits> {
  using impl = detail::map_reader_impl<Key, Value, Hash, Eq, Traits>;

 public:
  using guard = read_guard<Key, Value, Hash, Eq, Traits>;

  reader_ref() = default;
  /// As map_reader::read(): the guard must not outlive the map_reader.
  guard read() const noexcept { return guard(ref_.enter()); }
  /// As map_reader::reading(); false for a default-constructed ref.
  bool reading() const noexcept { return ref_.inside(); }

 private:
  friend class map_reader<Key, Value, Hash, Eq, Traits>;
  explicit reader_ref(typename impl::ref r) noexcept : ref_(r) {}

  typename impl::ref ref_;
};

/// Makes readers. Copyable and thread-safe: hand copies to threads, each makes its own reader.
/// Keeps the map alive like a reader does.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class reader_factory {
  using table = detail::map_table<Key, Value, Hash, Eq, Traits>;

 public:
  /// Registers a new reader. Thread-safety: any thread. Cost: a mutex; an allocation the
  /// first time the number of live readers reaches a new high.
  map_reader<Key, Value, Hash, Eq, Traits> make_reader() const {
    return map_reader<Key, Value, Hash, Eq, Traits>(core_);
  }
  /// Registers a reader that only the calling thread reads through, for as long as it lives
  /// (it may be destroyed on another thread; a copy is an ordinary reader). A publish made on
  /// that same thread while every registered reader is such a reader of it needs nothing from
  /// the other cores: no membarrier, and its readers do not fence (a thread that both writes
  /// and reads, as a shared_map used by one thread). Reading through it on another thread is
  /// undefined behaviour (a debug build asserts). Thread-safety: any thread. Cost: as
  /// make_reader().
  map_reader<Key, Value, Hash, Eq, Traits> make_thread_reader() const {
    return map_reader<Key, Value, Hash, Eq, Traits>(core_, detail::thread_tag());
  }

 private:
  friend class map_writer<Key, Value, Hash, Eq, Traits>;
  friend class map_reader<Key, Value, Hash, Eq, Traits>;
  explicit reader_factory(std::shared_ptr<detail::map_core<Key, Value, Hash, Eq, Traits>> core)
      : core_(std::move(core)) {}

  std::shared_ptr<detail::map_core<Key, Value, Hash, Eq, Traits>> core_;
};

/// The single writer of a map. Move-only. Operations are queued and take effect for readers
/// only at publish(). All members: Thread-safety: the one thread using the writer at a time.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class map_writer {
  static_assert(map_traits<Traits>, "leftright: Traits must meet leftright::map_traits (derive it from default_traits)");
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
  /// Traits::max_inline_entry bytes, or whose key or value may throw when moved); false if each
  /// copy holds its entries inline.
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
  /// Queues: remove the key equal to `key` (a std::string_view for a std::string key, say): where
  /// Hash and Eq are transparent, as they are by default for string keys. The operation holds
  /// a Key made from it.
  template <class K>
    requires detail::heterogeneous_key<Key, K, Hash, Eq>
  void erase(const K& key) {
    impl_.append(typename ops::erase_op{Key(key)});
  }
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

  /// The writer's read of its own writes: the value under key in the state the next publish()
  /// will make visible (the published state with every queued operation applied), or nullptr.
  /// For read-modify-write updates (a counter, an append) without a second map.
  /// Valid until the next call on the writer. Thread-safety: the writer's thread.
  /// Cost: a look at every queued operation (O(pending()), newest first, stopping at the last
  /// assign, erase or clear of the key), then at most one lookup in the published state.
  template <class K>
  const Value* find(const K& key) const {
    return find_queued(key).value;
  }
  /// Whether find(key) would find a value. Same cost.
  template <class K>
  bool contains(const K& key) const {
    return find_queued(key).value != nullptr;
  }

  /// Queues metadata for the next publish: readers see it with that batch's entries and never
  /// with another's (Traits::meta_type: a revision, a timestamp, a schema version). The last
  /// set_meta() before a publish wins; discard() drops it; later publishes keep it until the next.
  /// A durable map logs it in that batch's record and writes it into snapshots (through
  /// leftright::codec<Traits::meta_type>), so recovery restores it with the entries it labels.
  /// Cost: a copy of m into each copy of the map at publish.
  void set_meta(typename detail::meta_of<Traits>::type m) { impl_.set_meta(std::move(m)); }
  /// The metadata the next publish() will make visible (the writer reads its own writes).
  const typename detail::meta_of<Traits>::type& meta() const noexcept { return impl_.meta(); }

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

  /// Moves the readers back to the copy they read before the last publish, once no reader is
  /// left in it: that copy first receives the last batch (the replay the next publish would
  /// otherwise do), then readers switch to it. They see the same version and entries; nothing
  /// new is published. Returns false, changing nothing, if a reader is still inside that copy or
  /// nothing was published since the last settle.
  /// Why: each publish moves readers to the other copy. A map published every few operations
  /// (a write call that returns once published, as shared_map's) has them alternate between the
  /// two, and the CPU caches then hold the hot entries of both; settling after each publish
  /// keeps readers on one copy.
  /// Progress: never waits for readers. Cost: the last batch applied by move (moved from the next
  /// publish, which then has none to replay), one more swap (a membarrier when readers are
  /// asymmetric). Exceptions: if the replay throws, the copy is repaired as after a failed
  /// publish() (or the writer poisoned) and the exception propagates; readers saw nothing.
  bool try_settle() { return impl_.try_settle(); }

  /// As publish(), but waits at most max_wait for the readers still inside the copy it must
  /// write. Past that, those readers keep that copy, frozen as they saw it (held_copies() counts
  /// it), and the writer goes on with a fresh copy made from the published state. Returns the
  /// new version. A held copy is freed at a later publish (or release_held_copies()) once each
  /// of its readers has left the read it was in.
  /// Progress: waits at most max_wait plus the time to copy the map; but as publish() (waiting
  ///           until the readers leave) if held_copies() is at its limit
  ///           (set_held_copy_limit), if the copy cannot be made (an exception from a copy or an
  ///           allocation: nothing is lost, the exception is dropped and the publish waits), or
  ///           after a publish failed to allocate its record of the readers inside.
  /// Cost: as publish(); after the bound, one copy of the map (O(size) time, one more map's
  ///       memory while it is held). A reader that stays inside holds one copy per
  ///       publish_within() that found it inside (the writer cannot tell which of them it
  ///       reads, see detail/left_right.hpp case C7), but is not waited for again.
  /// Memory ordering and exceptions: as publish().
  std::uint64_t publish_within(std::chrono::nanoseconds max_wait) { return impl_.publish_within(max_wait); }
  /// Copies held by readers that publish_within() stopped waiting for, not yet freed.
  /// Thread-safety: writer only. Cost: none.
  std::size_t held_copies() const noexcept { return impl_.held_copies(); }
  /// Frees the held copies whose readers have all left; returns how many are still held. Every
  /// publish does this first. Thread-safety: writer only. Cost: a load per holding reader.
  std::size_t release_held_copies() noexcept { return impl_.release_held_copies(); }
  /// At most n copies held at once (default 8): a publish_within() that would hold one more waits
  /// for the readers instead, as publish() does. Thread-safety: writer only.
  void set_held_copy_limit(std::size_t n) noexcept { impl_.set_held_copy_limit(n); }

  /// Says when a publish() waits too long for a reader: once it has waited `after` for one
  /// reader that is still inside a read it was found in at an earlier publish, publish() calls
  /// report(stall) (and again every `after` while the wait lasts), from its own thread. Empty
  /// report: a line on stderr. after <= 0: no report. Default: after 10 s, to stderr.
  /// The report may throw: publish() then throws it having changed nothing (the batch stays
  /// queued), a way to give up on a reader that never leaves.
  /// Cost: none until a wait sleeps; then a clock read per sleep.
  void set_stall_report(std::chrono::nanoseconds after, std::function<void(const reader_stall&)> report = {}) {
    impl_.set_stall_report(after, std::move(report));
  }

  /// The last published version (what a read starting now sees).
  std::uint64_t version() const noexcept { return impl_.version(); }
  /// True after a publish failed and the write copy could not be restored.
  bool poisoned() const noexcept { return impl_.poisoned(); }
  /// Which barrier this map's readers use (fixed when the map was made): asymmetric also for
  /// reader_sync::automatic, whose readers fence only while the writer asks (readers_fence()).
  reader_sync sync_mode() const noexcept {
    return impl_.core()->asymmetric ? reader_sync::asymmetric : reader_sync::seq_cst;
  }
  /// Whether readers fence on entry now, so that a publish needs no membarrier: always with
  /// seq_cst readers, never with asymmetric ones; with reader_sync::automatic (where membarrier
  /// works), while publishes come often: from about 8 per millisecond on, until a publish finds
  /// them down to 2 or fewer (a membarrier costs the writer 0.25-10 us and interrupts every
  /// core running one of the process's threads; a fence costs a read a locked instruction). The
  /// choice is made at each publish; after a burst, readers stop fencing by themselves once no
  /// publish has come for 2 ms.
  /// Thread-safety: writer only. Cost: none.
  bool readers_fence() const noexcept { return impl_.readers_fence(); }
  /// Swaps (publishes and settles) made without a membarrier and without asking readers to
  /// fence because every registered reader was a thread reader of the publishing thread
  /// (reader_factory::make_thread_reader). Always 0 with seq_cst readers. Thread-safety: writer
  /// only. Cost: none.
  std::uint64_t solo_swaps() const noexcept { return impl_.solo_swaps(); }
  /// reader_sync::automatic: from the next publish on, readers fence (true) or do not (false),
  /// whatever the publish rate; nullopt gives the choice back to the rate. For a writer that
  /// knows its pattern (a bulk load coming, a map that will not change for hours). No effect
  /// with the other modes. Thread-safety: writer only.
  void force_reader_fencing(std::optional<bool> fence) noexcept { impl_.force_reader_fencing(fence); }

  /// Reader slots allocated so far: the high-water mark of concurrently live readers (slots of
  /// destroyed readers are reused). Cost: a mutex.
  std::size_t reader_slots() const { return impl_.core()->registry.capacity(); }

  /// A new registered reader. Thread-safety: any thread holding the writer; see reader_factory.
  reader make_reader() const { return reader(impl_.core()); }
  /// A new reader for the calling thread only; see reader_factory::make_thread_reader.
  reader make_thread_reader() const { return reader(impl_.core(), detail::thread_tag()); }
  /// A factory to hand to other threads.
  factory_type factory() const { return factory_type(impl_.core()); }

  /// Internal: adopts a freshly made core (use make_map() or open_map()).
  explicit map_writer(std::shared_ptr<detail::map_core<Key, Value, Hash, Eq, Traits>> core) : impl_(std::move(core)) {}

 protected:
  /// For writers built on this one (the durable writer, a replicated writer): what a batch is
  /// made of, and publish() with a hook that sees each batch at two points (see
  /// detail::lr_writer::publish_with: before_apply(version, ops), before_swap(version, ops),
  /// abort() noexcept). The hook's contract is the whole of what such a writer may rely on.
  using ops_type = ops;
  using op_type = op;
  template <detail::publish_hook<op> Hook>
  std::uint64_t publish_with(Hook&& hook) {
    return impl_.publish_with(hook);
  }
  template <detail::publish_hook<op> Hook>
  bool try_publish_with(Hook&& hook) {
    return impl_.try_publish_with(hook);
  }
  /// publish_within() with the hook of publish_with(); before_apply comes after the fresh copy,
  /// if one is made.
  template <detail::publish_hook<op> Hook>
  std::uint64_t publish_within_with(Hook&& hook, std::chrono::nanoseconds max_wait) {
    return impl_.publish_within_with(hook, max_wait);
  }
  /// The operations queued for the next publish, oldest first.
  const std::vector<op>& queued() const noexcept { return impl_.queued(); }
  /// Queues erase_if(pred) noting, at its first application, the keys it erases (in the op's
  /// state, `erased`), so that a hook's before_swap can log them as erases.
  template <class Pred>
  void erase_if_noting_keys(Pred pred) {
    static_assert(std::is_invocable_r_v<bool, const Pred&, const Key&, const Value&>,
                  "leftright: erase_if needs pred(const Key&, const Value&) -> bool");
    using state = typename ops::erase_if_op::state;
    impl_.append(typename ops::erase_if_op{std::make_shared<state>(state{std::move(pred), true})});
  }
  /// The next successful publish makes version v, not version() + 1, where v is larger: for a
  /// replica jumping forward to a newer snapshot of its source (versions never go down).
  void skip_to(std::uint64_t v) noexcept { impl_.skip_to(v); }
  /// The published state (what a read starting now sees), for the writer's own reads: a
  /// checkpoint writes it out. Valid until the next publish.
  const table& published() const noexcept { return impl_.published(); }
  /// The metadata set_meta() queued for the next publish, or nullptr (what a hook logs with the
  /// batch), and the metadata of the published state (what a checkpoint writes with it).
  const typename detail::meta_of<Traits>::type* queued_meta() const noexcept { return impl_.queued_meta(); }
  const typename detail::meta_of<Traits>::type& published_meta() const noexcept { return impl_.published_meta(); }

 private:
  /// What find_queued() found: the key and value, each in the published state or in a queued
  /// operation; both null if absent.
  struct found_entry {
    const Key* key = nullptr;
    const Value* value = nullptr;
  };

  /// find() with the key it found (erase_if's predicate takes both). Two passes over the queue:
  /// back to the last operation that settles the key whatever came before (an assign or erase of
  /// it, a clear), then forward through what may change it from there (an insert of it, which
  /// applies only where it is absent, and erase_if). Copies nothing.
  template <class K>
  found_entry find_queued(const K& key) const {
    const std::vector<op>& q = impl_.queued();
    const table& t = impl_.published();
    const auto is_key = [&](const Key& k) { return ops::same_key(t, k, key); };
    std::size_t from = q.size();
    for (; from > 0; --from) {
      const op& o = q[from - 1];
      if (std::holds_alternative<typename ops::clear_op>(o)) break;
      if (const auto* x = std::get_if<typename ops::assign_op>(&o); x != nullptr && is_key(x->key)) break;
      if (const auto* x = std::get_if<typename ops::erase_op>(&o); x != nullptr && is_key(x->key)) break;
    }
    // Where the forward pass starts: what operation from - 1 settled, or the published state.
    found_entry f;
    if (from == 0) {
      if (const auto* e = ops::find_entry(t, key)) f = {&e->first, &e->second};
    } else if (const auto* x = std::get_if<typename ops::assign_op>(&q[from - 1])) {
      f = {&x->key, &x->value};
    }
    for (std::size_t i = from; i < q.size(); ++i) {
      if (const auto* x = std::get_if<typename ops::insert_op>(&q[i])) {
        if (f.value == nullptr && is_key(x->key)) f = {&x->key, &x->value};
      } else if (const auto* y = std::get_if<typename ops::erase_if_op>(&q[i])) {
        if (f.value != nullptr && y->s->pred(*f.key, *f.value)) f = {};
      }
    }
    return f;
  }

  impl impl_;
};

/// Makes an empty map (version 0) and returns its writer and a first reader.
/// capacity: entries to make room for in each copy; hash, eq: the functors both copies use.
/// Throws std::length_error if capacity is more entries than a table of this type can
/// describe, std::bad_alloc if the tables do not fit in memory.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
std::pair<map_writer<Key, Value, Hash, Eq, Traits>, map_reader<Key, Value, Hash, Eq, Traits>>
make_map(std::size_t capacity = 0, const Hash& hash = Hash(), const Eq& eq = Eq()) {
  using ops = detail::map_ops_for<Key, Value, Hash, Eq, Traits>;
  auto core = std::make_shared<detail::map_core<Key, Value, Hash, Eq, Traits>>(Traits::sync,
                                                       ops::buckets_for(capacity), hash, eq);
  map_writer<Key, Value, Hash, Eq, Traits> w(core);
  map_reader<Key, Value, Hash, Eq, Traits> r = w.make_reader();
  return {std::move(w), std::move(r)};
}

}  // namespace leftright
