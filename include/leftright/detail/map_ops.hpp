// SPDX-License-Identifier: Apache-2.0
// leftright: how the map stores its entries in each copy, and how each operation is applied.
//
// Two layouts, chosen at compile time by the size of an entry:
//  - inline: each copy is an absl::flat_hash_map<Key, Value>; every entry exists twice. Fastest
//    lookups (one probe, no indirection); right for small entries.
//  - shared: each copy is an absl::flat_hash_set of pointers to heap nodes holding
//    std::pair<const Key, Value>, and both copies point at the *same* nodes, so a large value is
//    stored once. A node is freed when the last holder drops it: each copy and each queued
//    operation holds one reference, counted by the writer alone (readers never touch the
//    count). A copy drops its reference only when the writer applies an operation to it, which
//    happens after the readers of that copy drained, so no reader can still see a freed node.
//
// Every operation is addressed by key, or is a pure predicate over entries, so applying the log
// to two equal tables gives equal tables whatever order each iterates in.
//
// Growth happens here, never inside Abseil. Abseil's resize (20220623) sets the new capacity
// before it allocates; if the allocation throws, the table keeps its old arrays with the new
// capacity, and destroying, copying or walking it is undefined (a crash, in practice). So before
// every insert a copy is made to have room (make_room): at most room_limit(capacity) entries,
// which keeps Abseil's own growth path to dropping tombstones in place, without allocating. When
// more room is needed, a new table is made with the (bucket_count, ...) constructor, which
// allocates before anything exists to be destroyed half-made, and the entries move over
// (rebuild_for). The same holds for copies of a table (inline_ops::copy, node_table's copy
// constructor) and for size requests, which are
// checked against the largest table Abseil's size arithmetic can describe (capacity_for) and
// rejected with std::length_error rather than reaching Abseil's abort.
//
// And an entry is never constructed inside a table by a constructor that can throw: Abseil marks
// the slot full before it constructs the entry, and a throw leaves a full slot holding garbage.
// The inline layout copies a key and value first and moves them in (it is chosen only where
// Key's and Value's moves cannot throw); the shared layout stores pointers.
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "allocator.hpp"
#include "config.hpp"

namespace leftright::detail {

/// Whether a copy assignment into a T reuses the memory T already holds, and T owns nothing else
/// (what lr_writer may keep of spent keys, to copy new keys into).
template <class T>
struct reuses_capacity : std::false_type {};
template <class C, class Tr, class A>
struct reuses_capacity<std::basic_string<C, Tr, A>> : std::true_type {};
template <class T, class A>
struct reuses_capacity<std::vector<T, A>> : std::bool_constant<std::is_trivially_copyable_v<T>> {};
/// The largest key storage kept for reuse, in bytes: a rare huge key is not worth pinning.
inline constexpr std::size_t max_spare_bytes = 256;

/// Tables at least this large are read with prefetching in batched reads, and written with it
/// (every batch: see writer_prefetch_min_ops): smaller ones sit in the L1/L2 caches, where a
/// prefetch is pure cost.
/// (The writer's prefetch, measured by write_pair on this project's 2-core Xeon, 260 MiB L3:
/// a 16M-entry map, in DRAM, overwritten at 0.57x the limit's rate against 0.49-0.51x without;
/// 1M entries, in L3, within the noise either way, 0.45-0.48x; distances 8 to 16 alike.)
inline constexpr std::size_t prefetch_min_entries = 16384;
/// Batches of at least this many operations prefetch prefetch_distance operations ahead as they
/// are applied (in both applications, on a table of prefetch_min_entries or more). A smaller
/// batch has every operation's lines prefetched in both copies before it is applied
/// (lr_writer::prefetch_small_batch): its loop would end before prefetches ahead paid back.
inline constexpr std::size_t writer_prefetch_min_ops = 64;
/// How many keys ahead a loop over many keys starts loading a key's lines: enough misses in
/// flight to cover a DRAM latency, few enough that the lines are still in L1 when their key comes.
inline constexpr std::size_t prefetch_distance = 16;

// ------------------------------------------------------------------------------------------
// Table sizing and growth, outside Abseil (see the header comment). Set: an absl flat table.

/// Abseil's smallest capacity above one group (16 slots): from there on, its growth path drops
/// tombstones in place while the table is at most 25/32 full.
inline constexpr std::size_t min_capacity = 31;

/// The entries a table of `capacity` slots may hold with room for one more insert that Abseil
/// makes without allocating: none up to 16 slots, else a little under 25/32 of them (computed
/// without overflow).
constexpr std::size_t room_limit(std::size_t capacity) noexcept {
  return capacity <= 16 ? 0 : capacity / 2 + capacity / 4 + capacity / 32;
}

/// Abseil's largest valid capacity for Set (MaxValidCapacity: a power of two minus one, at most
/// a quarter of the address space in slots, so that its size arithmetic cannot overflow).
template <class Set>
constexpr std::size_t max_capacity() noexcept {
  return std::numeric_limits<std::size_t>::max() >>
         std::countl_zero(std::numeric_limits<std::size_t>::max() / 4 / sizeof(typename Set::value_type));
}

/// The most entries a Set can be asked to hold.
template <class Set>
constexpr std::size_t max_entries() noexcept {
  return room_limit(max_capacity<Set>());
}

/// The capacity a Set gets to hold n entries (0 for none). Throws std::length_error above
/// max_entries<Set>(), before anything reaches Abseil (which would abort).
template <class Set>
std::size_t capacity_for(std::size_t n) {
  if (n > max_entries<Set>()) [[unlikely]] {
    throw std::length_error("leftright: room for " + std::to_string(n) +
                            " entries requested; a table of this entry type holds at most " +
                            std::to_string(max_entries<Set>()));
  }
  if (n == 0) return 0;
  std::size_t cap = min_capacity;
  while (room_limit(cap) < n) cap = cap * 2 + 1;  // stops at max_capacity<Set>() at the latest
  return cap;
}

/// Makes t a table with room for n entries (at least its own), moving its entries into a new
/// one (to grow it, or to shrink it). A throw from the allocation leaves t untouched; a throw
/// while moving (the hash) leaves t valid but missing entries: the caller restores it
/// (lr_writer repairs the write copy from the read copy).
/// Cost: one allocation, and a hash and a move per entry.
template <class Set>
[[gnu::noinline]] void rebuild_for(Set& t, std::size_t n) {
  Set fresh(capacity_for<Set>(std::max(n, t.size())), t.hash_function(), t.key_eq(), t.get_allocator());
  for (auto it = t.begin(); it != t.end();) fresh.insert(t.extract(it++));
  t.swap(fresh);
}

/// The entries to make room for when a full table of `capacity` slots grows: the next capacity's
/// worth (twice the slots, as Abseil grows), at least one more than `size`.
constexpr std::size_t growth_target(std::size_t size, std::size_t capacity) noexcept {
  return std::max(size + 1, room_limit(2 * capacity + 1));
}

/// Ensures t can take one more entry without Abseil allocating: the writer's check before every
/// insert. Cost: a compare of the size against the capacity's limit; an amortized rebuild_for.
template <class Set>
inline void make_room(Set& t) {
  if (t.size() >= room_limit(t.bucket_count())) [[unlikely]] {
    rebuild_for(t, growth_target(t.size(), t.bucket_count()));
  }
}

/// The reserve operation: room for n entries, through rebuild_for.
template <class Set>
void reserve_room(Set& t, std::size_t n) {
  if (n > room_limit(t.bucket_count())) rebuild_for(t, n);
}

/// Whether operations carry their key's hash from the first application to the second (both
/// layouts): where the hasher is trivially copyable (a table's hash_function() returns a copy;
/// a heavy hasher would cost more to copy than the hash saves).
template <class Hash>
inline constexpr bool carries_hash_v = std::is_trivially_copyable_v<Hash>;

/// The operations common to both layouts' logs.
template <class Key, class Value>
struct common_ops {
  struct erase_op {
    Key key;
  };
  /// Everything behind one pointer: a rare op must not make every op in the log bigger (the
  /// variant is as large as its largest member), and a std::function moved inside a variant
  /// draws a false -Wmaybe-uninitialized from GCC 12.
  struct erase_if_op {
    struct state {
      std::function<bool(const Key&, const Value&)> pred;
      bool record = false;       ///< note the erased keys at the first application (for a log)
      std::vector<Key> erased{};  ///< the keys erased by the first application, if record
    };
    std::shared_ptr<state> s;
  };
  struct clear_op {};
  struct reserve_op {
    std::size_t n;
  };

  /// The writer's prefetching (lr_writer's Apply::prefetch_ahead): how many operations ahead a
  /// batch of n on a table of `entries` starts loading an operation's lines; 0 for none.
  static std::size_t prefetch_ahead(std::size_t entries, std::size_t n) {
    return entries >= prefetch_min_entries && n >= writer_prefetch_min_ops ? prefetch_distance : 0;
  }
  /// The one key an operation of the log writes, or nullptr (erase_if, clear and reserve).
  template <class Op>
  static const Key* key_of(const Op& o) {
    return std::visit(
        [](const auto& x) -> const Key* {
          if constexpr (requires { x.key; }) {
            return &x.key;
          } else {
            return nullptr;
          }
        },
        o);
  }
};

// ------------------------------------------------------------------------------------------
// The inline layout.

template <class Key, class Value, class Hash, class Eq, bool HugePages>
struct inline_ops : common_ops<Key, Value> {
  using table = absl::flat_hash_map<Key, Value, Hash, Eq,
                                    table_allocator_t<std::pair<const Key, Value>, HugePages>>;
  using const_iterator = typename table::const_iterator;
  using base = common_ops<Key, Value>;

  /// hash: the key's hash in the tables, computed at the first application and kept for the
  /// second (see put).
  struct assign_op {
    // A constructor, not aggregate initialization: emplace builds the op with parentheses, which
    // clang accepts for aggregates only from version 16.
    template <class K, class V>
    assign_op(K&& k, V&& v) : key(std::forward<K>(k)), value(std::forward<V>(v)) {}
    Key key;
    Value value;
    std::size_t hash = 0;
  };
  struct insert_op {
    // A constructor, not aggregate initialization: emplace builds the op with parentheses, which
    // clang accepts for aggregates only from version 16.
    template <class K, class V>
    insert_op(K&& k, V&& v) : key(std::forward<K>(k)), value(std::forward<V>(v)) {}
    Key key;
    Value value;
    std::size_t hash = 0;
  };
  using op = std::variant<assign_op, insert_op, typename base::erase_op, typename base::erase_if_op,
                          typename base::clear_op, typename base::reserve_op>;

  static constexpr bool carries_hash = carries_hash_v<Hash>;

  /// Applies an assign (Assign) or an insert to t. An op on a key already present (an
  /// overwrite: the common case) is one inlined lookup with the hash already known, where
  /// insert_or_assign and try_emplace each compute the hash and call out to absl's general
  /// find-or-insert. Only a key not present pays a second probe, in the call that inserts it.
  /// A wrong hash could only cost time: a miss falls through to that call, which hashes anew.
  template <bool Assign, class K, class V>
  static void put(table& t, K&& key, V&& value, std::size_t hash) {
    auto it = carries_hash ? find_inlined(t, key, hash) : t.find(key);
    if (it != t.end()) {
      if constexpr (Assign) it->second = std::forward<V>(value);
      return;
    }
    insert_new(t, std::forward<K>(key), std::forward<V>(value));
  }
  /// Inserts a key known to be absent. Whatever may throw happens before the table changes: the
  /// growth (make_room), and the copies of an lvalue key and value. The entry is then built in
  /// its slot by moves, which cannot throw (the inline layout requires it): Abseil marks the slot
  /// full before it constructs the entry, so a throw there would leave garbage in a full slot.
  template <class K, class V>
  static void insert_new(table& t, K&& key, V&& value) {
    if constexpr (std::is_lvalue_reference_v<K> || std::is_lvalue_reference_v<V>) {
      Key k(std::forward<K>(key));
      Value v(std::forward<V>(value));
      make_room(t);
      t.try_emplace(std::move(k), std::move(v));
    } else {
      make_room(t);
      t.try_emplace(std::move(key), std::move(value));
    }
  }
  /// absl's find(key, hash), kept out of put() so that only it is flattened: GCC inlines it into
  /// some callers and not others (the durable writer's), and an overwrite is little more.
  template <class K>
  [[gnu::flatten]] static typename table::iterator find_inlined(table& t, const K& key, std::size_t hash) {
    return t.find(key, hash);
  }
  /// Keys worth keeping once their operation is spent (lr_writer::emplace_reusing): a string or
  /// a vector of trivially copyable elements, whose copy assignment reuses the capacity it has
  /// and which owns nothing but that memory.
  static constexpr bool recycles = reuses_capacity<Key>::value;
  using spare_key = Key;
  /// Moves the key out of an operation just applied the second time into spare, if it has
  /// storage worth reusing: more than an empty key's (a key moved into the table has none) and
  /// at most max_spare_bytes of it.
  static void salvage(op& o, std::vector<Key>& spare) {
    Key* k = nullptr;
    if (auto* x = std::get_if<assign_op>(&o)) [[likely]] {
      k = &x->key;
    } else if (auto* y = std::get_if<insert_op>(&o)) {
      k = &y->key;
    } else {
      return;
    }
    const std::size_t cap = k->capacity();
    if (cap > Key().capacity() && cap * sizeof(typename Key::value_type) <= max_spare_bytes) {
      spare.push_back(std::move(*k));
    }
  }
  template <class X>
  static void put_first(table& t, X& x) {
    if constexpr (carries_hash) x.hash = t.hash_function()(x.key);
    put<std::is_same_v<X, assign_op>>(t, x.key, x.value, x.hash);
  }
  template <class X>
  static void put_second(table& t, X& x) {
    put<std::is_same_v<X, assign_op>>(t, std::move(x.key), std::move(x.value), x.hash);
  }

  // The read path: absl's lookup inlined (always_inline + flatten, and flatten on the batched
  // calls). GCC 12 inlines absl's find only while its budget for the translation unit lasts
  // ("--param inline-unit-growth limit reached" in a large one): past it, every lookup paid a
  // call of find and of its iterator comparison, 3x the inlined loop's time on a small map.
  template <class K>
  [[gnu::always_inline, gnu::flatten]] static inline const Value* find(const table& t, const K& key) {
    auto it = t.template find<K>(key);
    return it == t.end() ? nullptr : &it->second;
  }
  template <class K>
  [[gnu::always_inline, gnu::flatten]] static inline bool contains(const table& t, const K& key) {
    return t.template contains<K>(key);
  }
  /// The entry under key, or nullptr (the writer's reads of its own writes need the key too).
  template <class K>
  static const std::pair<const Key, Value>* find_entry(const table& t, const K& key) {
    auto it = t.template find<K>(key);
    return it == t.end() ? nullptr : &*it;
  }
  /// Starts loading the table's lines where key would be (a later lookup of it then finds them
  /// in cache). Costs a hash (and under GCC a call: see LEFTRIGHT_PREFETCH_CALL; without it a
  /// batched loop built by GCC 12 prefetched nothing).
  template <class K>
  LEFTRIGHT_PREFETCH_CALL static void prefetch(const table& t, const K& key) {
    t.template prefetch<K>(key);
  }
  /// Whether a and b are the same key, by the table's equality.
  template <class K>
  static bool same_key(const table& t, const Key& a, const K& b) {
    return t.key_eq()(a, b);
  }
  /// The writer's prefetching (see lr_writer's Apply): the lines of o's key, ahead of its turn.
  static std::size_t prefetch_ahead(const table& t, std::size_t n) { return base::prefetch_ahead(t.size(), n); }
  LEFTRIGHT_PREFETCH_OP static void prefetch_op(const table& t, const op& o) {
    if (const Key* k = base::key_of(o)) prefetch(t, *k);
  }

  /// First application, by copy: the op stays in the log for the other copy.
  static void first(table& t, op& o) {
    if (auto* x = std::get_if<assign_op>(&o)) [[likely]] {  // the common op, without the visit
      put_first(t, *x);
      return;
    }
    std::visit(
        [&t](auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, assign_op> || std::is_same_v<X, insert_op>) {
            put_first(t, x);
          } else if constexpr (std::is_same_v<X, typename base::erase_if_op>) {
            if (!x.s->record) return common(t, x);
            x.s->erased.clear();
            const auto& pred = x.s->pred;
            for (auto it = t.begin(); it != t.end();) {
              if (pred(it->first, it->second)) {
                x.s->erased.push_back(it->first);
                t.erase(it++);
              } else {
                ++it;
              }
            }
          } else {
            common(t, x);
          }
        },
        o);
  }
  /// Second and last application, by move.
  static void second(table& t, op&& o) {
    if (auto* x = std::get_if<assign_op>(&o)) [[likely]] {
      put_second(t, *x);
      return;
    }
    std::visit(
        [&t](auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, assign_op> || std::is_same_v<X, insert_op>) {
            put_second(t, x);
          } else {
            common(t, x);
          }
        },
        o);
  }
  /// For Traits::verify_copies; only where values can be compared.
  static bool equal(const table& a, const table& b)
    requires std::equality_comparable<Value>
  {
    return a == b;
  }

  static void common(table& t, const typename base::erase_op& x) { t.erase(x.key); }
  static void common(table& t, const typename base::erase_if_op& x) {
    const auto& pred = x.s->pred;
    absl::erase_if(t, [&pred](const typename table::value_type& kv) { return pred(kv.first, kv.second); });
  }
  static void common(table& t, const typename base::clear_op&) { t.clear(); }
  static void common(table& t, const typename base::reserve_op& x) { reserve_room(t, x.n); }

  /// The bucket count to construct a table with room for n entries (std::length_error if no
  /// table can hold them).
  static std::size_t buckets_for(std::size_t n) { return capacity_for<table>(n); }
  /// A copy of src, made in a table allocated up front (Abseil's copy constructor grows a table
  /// it then destroys half-made if the growth throws). Each entry is copied, then moved in.
  static table copy(const table& src) {
    table t(buckets_for(src.size()), src.hash_function(), src.key_eq(), src.get_allocator());
    for (const auto& [key, value] : src) insert_new(t, key, value);
    return t;
  }
  /// Makes dst equal to src (lr_writer's repair of the write copy). dst is emptied first, so that
  /// the copy needs less memory; if the copy throws, dst stays empty (valid, but not src).
  static void restore(table& dst, const table& src) {
    dst.clear();
    table fresh = copy(src);
    dst.swap(fresh);
  }
};

// ------------------------------------------------------------------------------------------
// The shared layout.

/// A heap entry shared by both copies. refs is touched by the writer only (and by whoever
/// destroys the last handle of the map, which happens-after every writer action through the
/// shared_ptr's reference count). hash: its key's hash in both copies' hasher, computed once,
/// before the node exists (node_table::make_node): the sets hash a node by it and never call the
/// user's hash on a node, so a hash that throws cannot throw inside the set's insert, after the
/// pointer is placed (Abseil's debug builds hash the key again there, in an assertion), nor in a
/// rehash.
template <class Key, class Value>
struct shared_node {
  using key_type = Key;
  using value_type = Value;
  template <class K, class V>
  shared_node(std::size_t h, K&& k, V&& v) : kv(std::forward<K>(k), std::forward<V>(v)), hash(h) {}
  std::pair<const Key, Value> kv;
  std::size_t hash;
  std::size_t refs = 0;
};

template <class Key, class Value>
inline void retain(shared_node<Key, Value>* n) noexcept {
  ++n->refs;
}
template <class Key, class Value>
inline void release(shared_node<Key, Value>* n) noexcept {
  if (--n->refs == 0) delete n;
}

/// An owning reference to a node, held by a queued operation.
template <class Key, class Value>
class node_ref {
 public:
  using node = shared_node<Key, Value>;
  node_ref() = default;
  explicit node_ref(node* n) noexcept : n_(n) { retain(n_); }
  node_ref(const node_ref& o) noexcept : n_(o.n_) {
    if (n_) retain(n_);
  }
  node_ref(node_ref&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
  node_ref& operator=(node_ref o) noexcept {
    std::swap(n_, o.n_);
    return *this;
  }
  ~node_ref() {
    if (n_) release(n_);
  }
  node* get() const noexcept { return n_; }
  explicit operator bool() const noexcept { return n_ != nullptr; }

 private:
  node* n_ = nullptr;
};

/// One copy in the shared layout: a set of node pointers, hashed and compared by the node's key,
/// holding one reference to each node in it.
template <class Key, class Value, class Hash, class Eq, bool HugePages>
class node_table {
 public:
  using node = shared_node<Key, Value>;

 private:
  struct hasher {
    using is_transparent = void;
    Hash h;
    std::size_t operator()(const node* n) const noexcept { return n->hash; }
    template <class K>
      requires(!std::is_convertible_v<const K&, const node*>)
    std::size_t operator()(const K& k) const {
      return h(k);
    }
  };
  struct key_eq {
    using is_transparent = void;
    Eq e;
    bool operator()(const node* a, const node* b) const { return e(a->kv.first, b->kv.first); }
    template <class K>
      requires(!std::is_convertible_v<const K&, const node*>)
    bool operator()(const node* a, const K& k) const {
      return e(a->kv.first, k);
    }
    template <class K>
      requires(!std::is_convertible_v<const K&, const node*>)
    bool operator()(const K& k, const node* a) const {
      return e(a->kv.first, k);
    }
  };
  using set = absl::flat_hash_set<node*, hasher, key_eq, table_allocator_t<node*, HugePages>>;

 public:
  /// Iterates const std::pair<const Key, Value>& through the node pointers.
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::pair<const Key, Value>;
    using difference_type = std::ptrdiff_t;
    using reference = const value_type&;
    using pointer = const value_type*;
    const_iterator() = default;
    explicit const_iterator(typename set::const_iterator it) : it_(it) {}
    reference operator*() const { return (*it_)->kv; }
    pointer operator->() const { return &(*it_)->kv; }
    const_iterator& operator++() {
      ++it_;
      return *this;
    }
    const_iterator operator++(int) {
      auto old = *this;
      ++it_;
      return old;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) { return a.it_ == b.it_; }

   private:
    typename set::const_iterator it_;
  };

  /// A table with `buckets` slots (0, or buckets_for(n) for room for n entries).
  node_table(std::size_t buckets, const Hash& h, const Eq& e) : set_(buckets, hasher{h}, key_eq{e}) {}
  /// All or nothing: the set is allocated up front (not by Abseil's copy, see rebuild_for), filled
  /// with pointers (which cannot throw: each node carries its hash), and then takes its references.
  node_table(const node_table& o)
      : set_(buckets_for(o.size()), o.set_.hash_function(), o.set_.key_eq(), o.set_.get_allocator()) {
    for (node* n : o.set_) set_.insert(n);
    for (node* n : set_) retain(n);
  }
  node_table& operator=(const node_table& o) {
    node_table tmp(o);  // may throw; *this untouched
    set_.swap(tmp.set_);
    return *this;
  }
  void swap(node_table& o) noexcept { set_.swap(o.set_); }

  /// The bucket count to construct a table with room for n entries (std::length_error if no
  /// table can hold them).
  static std::size_t buckets_for(std::size_t n) { return capacity_for<set>(n); }
  ~node_table() { clear(); }

  std::size_t size() const noexcept { return set_.size(); }
  bool empty() const noexcept { return set_.empty(); }
  const_iterator begin() const { return const_iterator(set_.begin()); }
  const_iterator end() const { return const_iterator(set_.end()); }

  template <class K>
  [[gnu::always_inline, gnu::flatten]] inline const node* find(const K& key) const {  // as inline_ops::find
    auto it = set_.find(key);
    return it == set_.end() ? nullptr : *it;
  }
  /// The key equality both copies use.
  Eq key_equality() const { return set_.key_eq().e; }
  template <class K>
  LEFTRIGHT_PREFETCH_CALL void prefetch(const K& key) const {  // as inline_ops::prefetch
    set_.prefetch(key);
  }
  /// A node holding (k, v) and its key's hash, with no reference taken yet. If the hash or a
  /// constructor throws, nothing is allocated or changed.
  template <class K, class V>
  node* make_node(K&& k, V&& v) const {
    const std::size_t h = set_.hash_function().h(std::as_const(k));
    return new node(h, std::forward<K>(k), std::forward<V>(v));
  }

  /// Puts n (from make_node) under its key, replacing (and releasing) any node there. Strong
  /// guarantee. An overwrite, the common case, is one lookup with the node's hash; a new key
  /// finds room first, then the insert hashes and places nothing but the node's own fields.
  void put(node* n) {
    if (auto it = set_.find(n->kv.first, n->hash); it != set_.end()) return replace(it, n);
    make_room();           // may throw (an allocation); nothing changed then
    set_.insert(n);        // room made: allocates nothing; hashes n by n->hash
    retain(n);
  }
  template <class K>
  void erase(const K& key) {
    auto it = set_.find(key);
    if (it == set_.end()) return;
    node* n = *it;
    set_.erase(it);
    release(n);
  }
  template <class Pred>
  void erase_if(Pred& pred) {
    for (auto it = set_.begin(); it != set_.end();) {
      node* n = *it;
      if (pred(n->kv.first, n->kv.second)) {
        set_.erase(it++);
        release(n);
      } else {
        ++it;
      }
    }
  }
  void clear() noexcept {
    for (node* n : set_) release(n);
    set_.clear();
  }
  /// Room for n entries; strong guarantee (the pointers are copied into a new set, see grow).
  void reserve(std::size_t n) {
    if (n > room_limit(set_.bucket_count())) grow(n);
  }

  /// Both copies hold the very same nodes after a replay: compare pointers, not values.
  friend bool same_nodes(const node_table& a, const node_table& b) {
    if (a.size() != b.size()) return false;
    for (node* n : a.set_) {
      auto it = b.set_.find(n);
      if (it == b.set_.end() || *it != n) return false;
    }
    return true;
  }

 private:
  /// Puts n in the slot of the node with its key. Same key, so same hash and same place:
  /// replacing the pointer in place keeps the set valid. The slot is a node* the set
  /// constructed as non-const; const_cast is sound.
  static void replace(typename set::iterator it, node* n) noexcept {
    retain(n);
    node*& slot = const_cast<node*&>(*it);
    release(std::exchange(slot, n));
  }

  /// make_room for a set of pointers: copied, not moved, into the new set, so a throw (the
  /// allocation) leaves this one as it was, holding its references.
  void make_room() {
    if (set_.size() >= room_limit(set_.bucket_count())) [[unlikely]] {
      grow(growth_target(set_.size(), set_.bucket_count()));
    }
  }
  [[gnu::noinline]] void grow(std::size_t n) {
    set fresh(buckets_for(std::max(n, set_.size())), set_.hash_function(), set_.key_eq(), set_.get_allocator());
    for (node* p : set_) fresh.insert(p);
    set_.swap(fresh);
  }

  set set_;
};

template <class Key, class Value, class Hash, class Eq, bool HugePages>
struct shared_ops : common_ops<Key, Value> {
  using table = node_table<Key, Value, Hash, Eq, HugePages>;
  using const_iterator = typename table::const_iterator;
  using base = common_ops<Key, Value>;
  using node = shared_node<Key, Value>;

  /// fresh: the node the first application made (with its key's hash); the second puts the same
  /// node in the other copy. Made anew at every first application, so a retried batch starts
  /// clean.
  struct assign_op {
    // A constructor, not aggregate initialization: emplace builds the op with parentheses, which
    // clang accepts for aggregates only from version 16.
    template <class K, class V>
    assign_op(K&& k, V&& v) : key(std::forward<K>(k)), value(std::forward<V>(v)) {}
    Key key;
    Value value;
    node_ref<Key, Value> fresh = {};
  };
  struct insert_op {
    // A constructor, not aggregate initialization: emplace builds the op with parentheses, which
    // clang accepts for aggregates only from version 16.
    template <class K, class V>
    insert_op(K&& k, V&& v) : key(std::forward<K>(k)), value(std::forward<V>(v)) {}
    Key key;
    Value value;
    node_ref<Key, Value> fresh = {};  // empty if the key was present at the first application
  };
  using op = std::variant<assign_op, insert_op, typename base::erase_op, typename base::erase_if_op,
                          typename base::clear_op, typename base::reserve_op>;

  template <class K>
  static const Value* find(const table& t, const K& key) {
    const node* n = t.find(key);
    return n == nullptr ? nullptr : &n->kv.second;
  }
  template <class K>
  static bool contains(const table& t, const K& key) {
    return t.find(key) != nullptr;
  }
  template <class K>
  static const std::pair<const Key, Value>* find_entry(const table& t, const K& key) {
    const node* n = t.find(key);
    return n == nullptr ? nullptr : &n->kv;
  }
  /// Starts loading the set's lines where key's node pointer would be (not the node itself,
  /// which takes that pointer to find).
  template <class K>
  static void prefetch(const table& t, const K& key) {
    t.prefetch(key);
  }
  template <class K>
  static bool same_key(const table& t, const Key& a, const K& b) {
    return t.key_equality()(a, b);
  }
  /// As inline_ops: the lines of the set where o's key's node pointer is.
  static std::size_t prefetch_ahead(const table& t, std::size_t n) { return base::prefetch_ahead(t.size(), n); }
  LEFTRIGHT_PREFETCH_OP static void prefetch_op(const table& t, const op& o) {
    if (const Key* k = base::key_of(o)) prefetch(t, *k);
  }

  static void first(table& t, op& o) {
    std::visit(
        [&t](auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, assign_op>) {
            x.fresh = node_ref<Key, Value>(t.make_node(x.key, x.value));
            t.put(x.fresh.get());
          } else if constexpr (std::is_same_v<X, insert_op>) {
            x.fresh = {};
            if (t.find(x.key) == nullptr) {
              x.fresh = node_ref<Key, Value>(t.make_node(x.key, x.value));
              t.put(x.fresh.get());
            }
          } else if constexpr (std::is_same_v<X, typename base::erase_if_op>) {
            if (!x.s->record) return common(t, x);
            x.s->erased.clear();
            const auto& pred = x.s->pred;
            auto recording = [&](const Key& k, const Value& v) {
              if (!pred(k, v)) return false;
              x.s->erased.push_back(k);
              return true;
            };
            t.erase_if(recording);
          } else {
            common(t, x);
          }
        },
        o);
  }
  static void second(table& t, op&& o) {
    std::visit(
        [&t](auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, assign_op>) {
            if (x.fresh) t.put(x.fresh.get());  // the node's hash, from the first application
          } else if constexpr (std::is_same_v<X, insert_op>) {
            if (x.fresh) t.put(x.fresh.get());
          } else {
            common(t, x);
          }
        },
        o);
  }
  static bool equal(const table& a, const table& b) { return same_nodes(a, b); }

  static void common(table& t, const typename base::erase_op& x) { t.erase(x.key); }
  static void common(table& t, const typename base::erase_if_op& x) { t.erase_if(x.s->pred); }
  static void common(table& t, const typename base::clear_op&) { t.clear(); }
  static void common(table& t, const typename base::reserve_op& x) { t.reserve(x.n); }

  static std::size_t buckets_for(std::size_t n) { return table::buckets_for(n); }
  /// See inline_ops::copy and restore.
  static table copy(const table& src) { return table(src); }
  static void restore(table& dst, const table& src) {
    dst.clear();
    table fresh(src);
    dst.swap(fresh);
  }
};

/// The layout for an entry type: shared above Traits::max_inline_entry bytes, and where a move
/// of Key or Value may throw (the inline layout builds entries in their slots by moves, see
/// inline_ops::insert_new; the shared layout only stores pointers).
template <class Key, class Value>
inline constexpr bool inline_movable_v =
    std::is_nothrow_move_constructible_v<Key> && std::is_nothrow_move_constructible_v<Value>;
template <class Key, class Value, class Hash, class Eq, class Traits>
using map_ops_for =
    std::conditional_t<(sizeof(std::pair<const Key, Value>) > Traits::max_inline_entry) ||
                           !inline_movable_v<Key, Value>,
                       shared_ops<Key, Value, Hash, Eq, Traits::huge_pages>,
                       inline_ops<Key, Value, Hash, Eq, Traits::huge_pages>>;

}  // namespace leftright::detail
