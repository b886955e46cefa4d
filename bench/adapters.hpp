// SPDX-License-Identifier: Apache-2.0
// leftright benchmarks: the maps under test, each behind the same small adapter, so that every
// scenario (bench_<scenario>.cpp) is written once and run against all of them.
//
// The adapter interface (Key is std::uint64_t or std::string, values are value_t):
//   static constexpr std::string_view name;  // the map's name in benchmark names and tables
//   static constexpr bool has_guard;         // one read guard can cover several lookups
//   static constexpr bool batches_writes;    // write_batch() amortises synchronisation over its ops
//   explicit Adapter(const std::vector<Key>& keys);  // fills keys[i] -> i; readable on return
//   static void register_thread();           // once per thread that reads or writes (liburcu)
//   class reader {                           // one per reading thread
//     explicit reader(Adapter&);
//     value_t get(const Key&);               // one guard (lock, epoch, RCU section) per lookup
//     template <class F> void batch(F&& f);  // f(get) with one guard around all of f's lookups
//   };
//   template <class F> void write_batch(F&& body);  // body(put), put(const Key&, value_t);
//                                                   // the ops are visible to readers on return
//   void settle();                           // waits for deferred work (RCU callbacks)
//   std::string label() const;               // a note for the benchmark's label
// get() returns the value, or miss_value when the key is absent.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/synchronization/mutex.h"
#include <leftright/map.hpp>
#include <leftright/shared_map.hpp>

#if LEFTRIGHT_BENCH_WITH_TBB
#include <oneapi/tbb/concurrent_hash_map.h>
#endif
#if LEFTRIGHT_BENCH_WITH_CUCKOO
#include <libcuckoo/cuckoohash_map.hh>
#endif
#if LEFTRIGHT_BENCH_WITH_URCU
// _LGPL_SOURCE (set by CMake) inlines liburcu's read-side fast paths, as a user after speed would.
#include <urcu/urcu-memb.h>
// The hash table header must come after the flavour's.
#include <urcu/rculfhash.h>
#endif

namespace lrbench {

using value_t = std::uint64_t;
/// What get() returns for an absent key (no key is ever stored with this value).
inline constexpr value_t miss_value = ~value_t{0};

/// Every map hashes with absl::Hash, so the comparison is about the structures, not the hashes.
template <class Key>
using hash_t = absl::Hash<Key>;
/// The absl maps here (the limit, the lock-based peers) get the allocator ours uses by default,
/// which asks for transparent huge pages for large tables: the limit is then the same table
/// with the same pages, and the ratios to it measure the reading protocol alone.
template <class Key>
using plain_table = absl::flat_hash_map<Key, value_t, hash_t<Key>, std::equal_to<Key>,
                                        leftright::detail::table_allocator<std::pair<const Key, value_t>>>;

/// The value under k in an absl table t, or miss_value: absl's lookup inlined whatever the
/// translation unit's inlining budget (GCC 12 stops inlining absl's find past it, and then the
/// same lookup ran at 0.3x in one scenario and 1x in the next), as the library's read path has
/// it (leftright::detail::inline_ops::find). Every map here built on an absl table looks up
/// through it.
template <class Table, class Key>
[[gnu::always_inline, gnu::flatten]] inline value_t absl_lookup(const Table& t, const Key& k) {
  auto it = t.find(k);
  return it == t.end() ? miss_value : it->second;
}

/// The value's address under k in an absl table t, or nullptr: absl_lookup's lookup, for a loop
/// that hands out pointers as find_many does.
template <class Table, class Key>
[[gnu::always_inline, gnu::flatten]] inline const value_t* absl_find(const Table& t, const Key& k) {
  auto it = t.find(k);
  return it == t.end() ? nullptr : &it->second;
}

/// Fills a leftright::shared_map with keys[i] -> i in one update, then publishes an empty one,
/// which replays the fill into the other copy: both copies full, as the handle-free scenarios
/// (shared_pair, ycsb, cache_pair) read it.
template <class SharedMap, class Key>
void fill_shared(SharedMap& m, const std::vector<Key>& keys) {
  m.update([&keys](typename SharedMap::batch& b) {
    for (std::size_t i = 0; i < keys.size(); ++i) b.insert_or_assign(keys[i], value_t{i});
  });
  m.update([](typename SharedMap::batch&) {});
}

// ------------------------------------------------------------------------------------------
// The limit: one unsynchronized absl::flat_hash_map. Correct only while nobody writes it.
// ------------------------------------------------------------------------------------------
template <class Key>
class limit_map {
 public:
  static constexpr std::string_view name = "limit";
  static constexpr bool has_guard = false;
  static constexpr bool batches_writes = false;

  explicit limit_map(const std::vector<Key>& keys) {
    for (std::size_t i = 0; i < keys.size(); ++i) m_.insert_or_assign(keys[i], value_t{i});
  }
  static void register_thread() {}

  class reader {
   public:
    explicit reader(const limit_map& m) : m_(&m.m_) {}
    value_t get(const Key& k) const { return absl_lookup(*m_, k); }
    template <class F>
    void batch(F&& f) const {
      f([this](const Key& k) { return get(k); });
    }
    /// absl's prefetch, as the library calls it (GCC 12 deletes a call of it it did not inline:
    /// see LEFTRIGHT_PREFETCH_CALL).
    LEFTRIGHT_PREFETCH_CALL void prefetch(const Key& k) const { m_->prefetch(k); }

   private:
    const plain_table<Key>* m_;
  };

  /// Single-threaded use only (the writer benchmark's baseline).
  template <class F>
  void write_batch(F&& body) {
    body([this](const Key& k, value_t v) { put(m_, k, v); });
  }
  void settle() {}
  std::string label() const { return {}; }
  /// The table itself, for loops that read it their own way (the batched-lookup limit).
  const plain_table<Key>& table() const { return m_; }

 private:
  /// One overwrite with all of absl's find-or-insert inlined, whatever else the binary holds:
  /// left to itself, GCC inlines absl's out-of-line part into some scenarios and not others
  /// (its budget is per translation unit), which moved the limit's write rate by about 12%
  /// when unrelated code changed. The baseline is its fastest form, in every build.
  [[gnu::always_inline, gnu::flatten]] static inline void put(plain_table<Key>& m, const Key& k, value_t v) {
    m.insert_or_assign(k, v);
  }

  plain_table<Key> m_;
};

// ------------------------------------------------------------------------------------------
// The epoch floor: the limit's table read through the least any per-read epoch protocol can do
// (a reader-owned counter on its own cache line: load it, store it odd, compiler barrier, load
// the table pointer, look up, store it even). No nesting, no fallback, no writer: it answers how
// far below the limit a map must stay on this machine when every lookup marks itself in and out,
// which is what a left-right reader (ours, or any other) does. Lookup scenario only.
// ------------------------------------------------------------------------------------------
template <class Key>
class epoch_floor_map {
 public:
  static constexpr std::string_view name = "epoch_floor";
  static constexpr bool has_guard = true;
  static constexpr bool batches_writes = false;

  explicit epoch_floor_map(const std::vector<Key>& keys) {
    for (std::size_t i = 0; i < keys.size(); ++i) m_.insert_or_assign(keys[i], value_t{i});
    table_.store(&m_, std::memory_order_relaxed);  // before any reader exists
  }
  static void register_thread() {}

  class reader {
   public:
    explicit reader(const epoch_floor_map& m) : table_(&m.table_) {}
    value_t get(const Key& k) const {
      const std::uint64_t e = enter();
      const plain_table<Key>* t = table_->load(std::memory_order_acquire);  // see enter()
      const value_t v = absl_lookup(*t, k);
      leave(e);
      return v;
    }
    template <class F>
    void batch(F&& f) const {
      const std::uint64_t e = enter();
      const plain_table<Key>* t = table_->load(std::memory_order_acquire);  // see enter()
      f([t](const Key& k) { return absl_lookup(*t, k); });
      leave(e);
    }

   private:
    /// Marks the reader inside; the caller then loads the table pointer with acquire (pairing
    /// with the release a writer's pointer swap would be).
    std::uint64_t enter() const {
      // relaxed: only this reader stores its epoch.
      const std::uint64_t e = slot_->epoch.load(std::memory_order_relaxed);
      // relaxed + compiler barrier: as ours in asymmetric mode (a writer would pair a membarrier).
      slot_->epoch.store(e + 1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      return e;
    }
    void leave(std::uint64_t e) const {
      // release: the reads above happen-before a writer seeing the even value.
      slot_->epoch.store(e + 2, std::memory_order_release);
    }
    struct alignas(64) slot {
      std::atomic<std::uint64_t> epoch{0};
    };
    const std::atomic<const plain_table<Key>*>* table_;
    std::unique_ptr<slot> slot_ = std::make_unique<slot>();
  };

  std::string label() const { return {}; }

 private:
  plain_table<Key> m_;
  alignas(64) std::atomic<const plain_table<Key>*> table_{nullptr};
};

// ------------------------------------------------------------------------------------------
// std::shared_mutex around an absl map. The lock and the table sit on separate cache lines, so
// the readers' lock traffic does not also evict the table header.
// ------------------------------------------------------------------------------------------
template <class Key>
class shared_mutex_map {
 public:
  static constexpr std::string_view name = "shared_mutex";
  static constexpr bool has_guard = true;
  static constexpr bool batches_writes = true;

  explicit shared_mutex_map(const std::vector<Key>& keys) {
    for (std::size_t i = 0; i < keys.size(); ++i) m_.insert_or_assign(keys[i], value_t{i});
  }
  static void register_thread() {}

  class reader {
   public:
    explicit reader(shared_mutex_map& m) : m_(&m) {}
    value_t get(const Key& k) const {
      std::shared_lock<std::shared_mutex> lock(m_->mu_);
      return find(k);
    }
    template <class F>
    void batch(F&& f) const {
      std::shared_lock<std::shared_mutex> lock(m_->mu_);
      f([this](const Key& k) { return find(k); });
    }

   private:
    value_t find(const Key& k) const { return absl_lookup(m_->m_, k); }
    shared_mutex_map* m_;
  };

  template <class F>
  void write_batch(F&& body) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    body([this](const Key& k, value_t v) { m_.insert_or_assign(k, v); });
  }
  void settle() {}
  std::string label() const { return {}; }

 private:
  alignas(64) std::shared_mutex mu_;
  alignas(64) plain_table<Key> m_;
};

// ------------------------------------------------------------------------------------------
// absl::Mutex in reader mode (ReaderMutexLock) around an absl map.
// ------------------------------------------------------------------------------------------
template <class Key>
class absl_mutex_map {
 public:
  static constexpr std::string_view name = "absl_mutex";
  static constexpr bool has_guard = true;
  static constexpr bool batches_writes = true;

  explicit absl_mutex_map(const std::vector<Key>& keys) {
    absl::MutexLock lock(&mu_);
    for (std::size_t i = 0; i < keys.size(); ++i) m_.insert_or_assign(keys[i], value_t{i});
  }
  static void register_thread() {}

  class reader {
   public:
    explicit reader(absl_mutex_map& m) : m_(&m) {}
    value_t get(const Key& k) const {
      absl::ReaderMutexLock lock(&m_->mu_);
      return find(k);
    }
    template <class F>
    void batch(F&& f) const {
      absl::ReaderMutexLock lock(&m_->mu_);
      f([this](const Key& k) { return find(k); });
    }

   private:
    value_t find(const Key& k) const ABSL_SHARED_LOCKS_REQUIRED(m_->mu_) { return absl_lookup(m_->m_, k); }
    absl_mutex_map* m_;
  };

  template <class F>
  void write_batch(F&& body) {
    absl::MutexLock lock(&mu_);
    body([this](const Key& k, value_t v) ABSL_NO_THREAD_SAFETY_ANALYSIS { m_.insert_or_assign(k, v); });
  }
  void settle() {}
  std::string label() const { return {}; }

 private:
  alignas(64) absl::Mutex mu_;
  alignas(64) plain_table<Key> m_ ABSL_GUARDED_BY(mu_);
};

#if LEFTRIGHT_BENCH_WITH_TBB
// ------------------------------------------------------------------------------------------
// oneTBB concurrent_hash_map: a lock per bucket and a reader-writer lock per element; an
// accessor holds the element's lock, so there is no guard spanning several lookups.
// ------------------------------------------------------------------------------------------
template <class Key>
class tbb_map {
  struct hash_compare {
    std::size_t hash(const Key& k) const { return hash_t<Key>{}(k); }
    bool equal(const Key& a, const Key& b) const { return a == b; }
  };
  using table = tbb::concurrent_hash_map<Key, value_t, hash_compare>;

 public:
  static constexpr std::string_view name = "tbb_chm";
  static constexpr bool has_guard = false;
  static constexpr bool batches_writes = false;

  explicit tbb_map(const std::vector<Key>& keys) {
    for (std::size_t i = 0; i < keys.size(); ++i) put(keys[i], value_t{i});
  }
  static void register_thread() {}

  class reader {
   public:
    explicit reader(tbb_map& m) : m_(&m.m_) {}
    value_t get(const Key& k) const {
      typename table::const_accessor a;
      return m_->find(a, k) ? a->second : miss_value;
    }
    template <class F>
    void batch(F&& f) const {
      f([this](const Key& k) { return get(k); });
    }

   private:
    table* m_;
  };

  template <class F>
  void write_batch(F&& body) {
    body([this](const Key& k, value_t v) { put(k, v); });
  }
  void settle() {}
  std::string label() const { return {}; }

 private:
  void put(const Key& k, value_t v) {
    typename table::accessor a;
    m_.insert(a, k);
    a->second = v;
  }
  table m_;
};
#endif

#if LEFTRIGHT_BENCH_WITH_CUCKOO
// ------------------------------------------------------------------------------------------
// libcuckoo cuckoohash_map: striped spinlocks, two buckets locked per lookup.
// ------------------------------------------------------------------------------------------
template <class Key>
class cuckoo_map {
  using table = libcuckoo::cuckoohash_map<Key, value_t, hash_t<Key>, std::equal_to<Key>>;

 public:
  static constexpr std::string_view name = "libcuckoo";
  static constexpr bool has_guard = false;
  static constexpr bool batches_writes = false;

  explicit cuckoo_map(const std::vector<Key>& keys) {
    for (std::size_t i = 0; i < keys.size(); ++i) m_.insert_or_assign(keys[i], value_t{i});
  }
  static void register_thread() {}

  class reader {
   public:
    explicit reader(cuckoo_map& m) : m_(&m.m_) {}
    value_t get(const Key& k) const {
      value_t v;
      return m_->find(k, v) ? v : miss_value;
    }
    template <class F>
    void batch(F&& f) const {
      f([this](const Key& k) { return get(k); });
    }

   private:
    const table* m_;
  };

  template <class F>
  void write_batch(F&& body) {
    body([this](const Key& k, value_t v) { m_.insert_or_assign(k, v); });
  }
  void settle() {}
  std::string label() const { return {}; }

 private:
  table m_;
};
#endif

#if LEFTRIGHT_BENCH_WITH_URCU
/// liburcu needs every thread that enters a read-side section (readers, and writers of cds_lfht)
/// registered once; the registration is undone when the thread exits.
inline void urcu_register_this_thread() {
  struct registration {
    registration() { urcu_memb_register_thread(); }
    ~registration() { urcu_memb_unregister_thread(); }
    registration(const registration&) = delete;
    registration& operator=(const registration&) = delete;
  };
  thread_local registration r;
  (void)r;
}

// ------------------------------------------------------------------------------------------
// liburcu's RCU lock-free resizable hash table (cds_lfht), urcu-memb flavour (readers pay a
// compiler barrier; synchronize_rcu pays a membarrier). Nodes are immutable: an overwrite
// swaps in a new node (add_replace) and frees the old one after a grace period (call_rcu).
// ------------------------------------------------------------------------------------------
template <class Key>
class urcu_map {
  struct node : cds_lfht_node, rcu_head {
    node(const Key& k, value_t v) : cds_lfht_node{}, rcu_head{}, key(k), value(v) {}
    Key key;
    value_t value;
  };

 public:
  static constexpr std::string_view name = "urcu_lfht";
  static constexpr bool has_guard = true;
  static constexpr bool batches_writes = false;

  explicit urcu_map(const std::vector<Key>& keys) {
    unsigned long buckets = 1;
    while (buckets < keys.size()) buckets <<= 1;
    ht_ = cds_lfht_new_flavor(buckets, 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
                              &urcu_memb_flavor, nullptr);
    if (ht_ == nullptr) throw std::bad_alloc();
    register_thread();
    for (std::size_t i = 0; i < keys.size(); ++i) put(keys[i], value_t{i});
  }
  urcu_map(const urcu_map&) = delete;
  urcu_map& operator=(const urcu_map&) = delete;
  // Fixtures live until the process exits; the table and its nodes are not reclaimed.

  static void register_thread() { urcu_register_this_thread(); }

  class reader {
   public:
    explicit reader(urcu_map& m) : ht_(m.ht_) { register_thread(); }
    value_t get(const Key& k) const {
      urcu_memb_read_lock();
      const value_t v = find(ht_, k);
      urcu_memb_read_unlock();
      return v;
    }
    template <class F>
    void batch(F&& f) const {
      urcu_memb_read_lock();
      f([this](const Key& k) { return find(ht_, k); });
      urcu_memb_read_unlock();
    }

   private:
    cds_lfht* ht_;
  };

  template <class F>
  void write_batch(F&& body) {
    body([this](const Key& k, value_t v) { put(k, v); });
  }
  /// Runs every pending call_rcu callback (frees the nodes that overwrites replaced).
  void settle() { urcu_memb_barrier(); }
  std::string label() const { return {}; }

 private:
  static unsigned long hash(const Key& k) { return static_cast<unsigned long>(hash_t<Key>{}(k)); }
  static int match(cds_lfht_node* n, const void* key) {
    return static_cast<const node*>(n)->key == *static_cast<const Key*>(key) ? 1 : 0;
  }
  static void free_node(rcu_head* h) { delete static_cast<node*>(h); }

  /// Precondition: inside a read-side section.
  static value_t find(cds_lfht* ht, const Key& k) {
    cds_lfht_iter it;
    cds_lfht_lookup(ht, hash(k), &match, &k, &it);
    const cds_lfht_node* n = cds_lfht_iter_get_node(&it);
    return n == nullptr ? miss_value : static_cast<const node*>(n)->value;
  }

  void put(const Key& k, value_t v) {
    node* fresh = new node(k, v);
    cds_lfht_node_init(fresh);
    urcu_memb_read_lock();
    cds_lfht_node* old = cds_lfht_add_replace(ht_, hash(k), &match, &fresh->key, fresh);
    urcu_memb_read_unlock();
    if (old != nullptr) urcu_memb_call_rcu(static_cast<node*>(old), &free_node);
  }

  cds_lfht* ht_ = nullptr;
};
#endif

// ------------------------------------------------------------------------------------------
// Ours: leftright::map, once per reader_sync mode.
// ------------------------------------------------------------------------------------------
struct seq_cst_traits : leftright::default_traits {
  static constexpr leftright::reader_sync sync = leftright::reader_sync::seq_cst;
  static constexpr std::string_view bench_name = "lr_seq_cst";
};
/// Asks for the asymmetric barrier; falls back to seq_cst where membarrier is refused. Which one
/// a map got is in its label (and the suite's context).
struct asymmetric_traits : leftright::default_traits {
  static constexpr leftright::reader_sync sync = leftright::reader_sync::asymmetric;
  static constexpr std::string_view bench_name = "lr_asym";
};
/// The default: asymmetric while publishes are rare, readers fencing while they are frequent
/// (map_writer::readers_fence). Costs a read one test of the pointer's tag beside lr_asym.
struct automatic_traits : leftright::default_traits {
  static constexpr std::string_view bench_name = "lr_auto";
};

inline const char* sync_name(leftright::reader_sync s) {
  switch (s) {
    case leftright::reader_sync::automatic: return "automatic";
    case leftright::reader_sync::seq_cst: return "seq_cst";
    case leftright::reader_sync::asymmetric: return "asymmetric";
  }
  return "?";
}

template <class Key, class Traits>
class lr_map {
 public:
  using writer_type = leftright::map_writer<Key, value_t, hash_t<Key>, std::equal_to<Key>, Traits>;
  using reader_type = typename writer_type::reader;
  using factory_type = typename writer_type::factory_type;

  static constexpr std::string_view name = Traits::bench_name;
  static constexpr bool has_guard = true;
  static constexpr bool batches_writes = true;

  /// Fills through the public API as a user would (no reserve), then publishes twice so that
  /// both copies hold every entry and the log is empty: the steady state.
  explicit lr_map(const std::vector<Key>& keys) : w_(make_writer()), f_(w_.factory()) {
    for (std::size_t i = 0; i < keys.size(); ++i) w_.insert_or_assign(keys[i], value_t{i});
    w_.publish();
    w_.publish();
  }
  static void register_thread() {}

  class reader {
   public:
    explicit reader(lr_map& m) : r_(m.f_.make_reader()) {}
    value_t get(const Key& k) const {
      auto g = r_.read();
      const value_t* v = g.find(k);
      return v == nullptr ? miss_value : *v;
    }
    template <class F>
    void batch(F&& f) const {
      auto g = r_.read();
      f([&g](const Key& k) {
        const value_t* v = g.find(k);
        return v == nullptr ? miss_value : *v;
      });
    }

   private:
    reader_type r_;
  };

  /// The ops become one published batch.
  template <class F>
  void write_batch(F&& body) {
    body([this](const Key& k, value_t v) { w_.insert_or_assign(k, v); });
    w_.publish();
  }
  void settle() {}
  /// A plain reader of the map, for scenarios that use its API beyond get() (find_many).
  reader_type make_reader() const { return f_.make_reader(); }
  leftright::reader_sync sync_mode() const { return w_.sync_mode(); }
  std::string label() const { return std::string("sync=") + sync_name(w_.sync_mode()); }
  writer_type& writer() { return w_; }

 private:
  static writer_type make_writer() {
    return leftright::make_map<Key, value_t, hash_t<Key>, std::equal_to<Key>, Traits>().first;
  }

  writer_type w_;
  factory_type f_;
  /// A reader registered for the map's life, idle, as a map that other threads read has one:
  /// with none, every swap of the writer would be solo (no membarrier, readers never asked to
  /// fence; detail/left_right.hpp, case C9), which a map with readers elsewhere never gets.
  reader_type idle_ = f_.make_reader();
};

template <class Key>
using lr_seq_cst_map = lr_map<Key, seq_cst_traits>;
template <class Key>
using lr_asym_map = lr_map<Key, asymmetric_traits>;
template <class Key>
using lr_auto_map = lr_map<Key, automatic_traits>;

/// Calls f.template operator()<Adapter>() for every map compiled in, limit first.
template <class Key, class F>
void for_each_map(F&& f) {
  f.template operator()<limit_map<Key>>();
  f.template operator()<lr_seq_cst_map<Key>>();
  f.template operator()<lr_asym_map<Key>>();
  f.template operator()<lr_auto_map<Key>>();
  f.template operator()<shared_mutex_map<Key>>();
  f.template operator()<absl_mutex_map<Key>>();
#if LEFTRIGHT_BENCH_WITH_TBB
  f.template operator()<tbb_map<Key>>();
#endif
#if LEFTRIGHT_BENCH_WITH_CUCKOO
  f.template operator()<cuckoo_map<Key>>();
#endif
#if LEFTRIGHT_BENCH_WITH_URCU
  f.template operator()<urcu_map<Key>>();
#endif
}

template <class Map>
inline constexpr bool is_limit = Map::name == std::string_view("limit");
/// leftright::map, either reader mode.
template <class Map>
inline constexpr bool is_ours = Map::name == std::string_view("lr_seq_cst") || Map::name == std::string_view("lr_asym") ||
                                Map::name == std::string_view("lr_auto");

}  // namespace lrbench
