// SPDX-License-Identifier: Apache-2.0
// leftright: the per-thread readers of shared_map. Each thread that reads a shared_map gets a
// map_reader of its own on its first read; later reads find it through a one-entry cache of
// (map address, reader) per thread, and on a miss through the thread's table of its readers.
//
// Ownership. A reader lives in a node that the map's reader_home owns (a list under a mutex); the
// thread's table holds a pointer to the node and a shared_ptr to the home. Whoever goes first
// releases the node, under the home's mutex:
//   - the thread exits: its table's destructor releases each of its nodes whose home is still
//     open (the map is alive) and drops its shared_ptr to the home;
//   - the map is destroyed: it closes its home, taking every node out of the list and destroying
//     them; a thread that exits later finds the home closed and touches nothing else.
// A read from a thread_local destructor that runs after the thread's table is gone makes a node
// that a list of the exiting thread holds instead (exit_readers), released in the same way once
// the thread's last thread_local destructor has run.
// The home outlives both (shared_ptr). A map id is never reused (a process-wide counter), so a
// thread's table entry of a destroyed map never matches a later map at the same address; the
// table drops entries of closed homes as it grows. The one-entry cache is keyed by an address
// instead, that of the owner's id member (an owner inside another, as a cache's shared_map, has
// its own; a read compares it with an address computed from `this`, loading nothing): closing
// the home clears it in every thread whose node the home still holds, so no thread's cache names
// a destroyed owner when another is made at its address.
//
// Atomics in this file:
//   [H1] next map id            relaxed  uniqueness only; nothing is published with the id
//   [H2] home closed: store     relaxed  written under the home's mutex, which orders it for
//                                        release(); the lock-free reader is only the table purge
//   [H3] home closed: load      relaxed  the purge may see it late: an entry is then kept a
//                                        little longer, and it only ever drops the shared_ptr
//   [H4] cache owner: load      relaxed  by the cache's thread, which alone stores the value
//                                        beside it; the owner is read through it only if it is
//                                        alive, and a map made later at the same address is
//                                        reached through synchronization that follows [H6]
//   [H5] cache owner: store     relaxed  by the cache's thread (the value beside it is its own)
//   [H6] cache owner: clear     relaxed  compare-exchange by the closing map, under the home's
//                                        mutex: a thread that reads a map made later at this
//                                        address synchronizes with that map's making, which
//                                        follows this destructor, so it loads null or later
//                                        (coherence); failing leaves the thread's other entry
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include <pthread.h>

#include "absl/container/flat_hash_map.h"
#include "thread_scope.hpp"

namespace leftright::detail {

/// A fresh map id: never 0 (the empty cache), never reused.
inline std::uint64_t next_shared_map_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);  // [H1] relaxed: uniqueness only
}

/// The groups a thread is running as a combiner, innermost first: one scope per map (its id's
/// address), on the combiner's stack (a compute's function that writes another map may make this
/// thread that map's combiner too, and a function of that map's group may then write the first).
/// A write from inside any of them would queue behind a group this thread runs and wait for
/// itself; shared_map refuses it instead.
struct combining_tag {};
using combining_scope = thread_scope<combining_tag>;

/// The last reader a thread used: constant-initialized and trivially destructible, so a read
/// reaches it with one thread-local load and no guard, and it can still be read while the thread
/// exits. `owner` is the address of the id member of the map (or cache) the node belongs to; the
/// owner's destructor clears it ([H6]).
struct reader_cache {
  std::atomic<const void*> owner{nullptr};
  /// What the owner reads through (cache_node): a pointer, or a reader_ref, held by value so
  /// that a read loads it from here rather than through a pointer to the node.
  alignas(void*) unsigned char value[2 * sizeof(void*)] = {};
};
inline constinit thread_local reader_cache tls_reader_cache;
/// Set once this thread's table is destroyed (the thread is exiting).
inline constinit thread_local bool tls_readers_gone = false;

/// A reader a home owns, used by one thread.
struct thread_reader_node {
  virtual ~thread_reader_node() = default;
  thread_reader_node* prev = nullptr;  ///< the home's list, guarded by its mutex
  thread_reader_node* next = nullptr;
  /// The cache of the node's thread, cleared when the owner closes the home; nullptr for a node
  /// made while the thread exits (never cached). Set before the home adopts the node.
  reader_cache* cache = nullptr;
};

template <class Reader>
struct thread_reader_node_of final : thread_reader_node {
  explicit thread_reader_node_of(Reader r) : reader(std::move(r)) {}
  Reader reader;
};

/// What a map shares with the threads holding one of its readers: the list of those readers.
/// std::mutex rather than absl::Mutex for the reason given in epoch.hpp (ThreadSanitizer sees it).
class reader_home {
 public:
  reader_home() = default;
  reader_home(const reader_home&) = delete;
  reader_home& operator=(const reader_home&) = delete;
  ~reader_home() { close(); }

  /// Takes ownership of n. Thread-safety: any thread, while the map lives. Cost: a mutex.
  void adopt(thread_reader_node* n) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    n->next = head_;
    if (head_ != nullptr) head_->prev = n;
    head_ = n;
    if (++live_ > peak_) peak_ = live_;
  }

  /// Destroys n if the home is still open; otherwise the map already did. Thread-safety: the
  /// thread n belongs to. Cost: a mutex and the reader's unregistration.
  void release(thread_reader_node* n) noexcept {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_.load(std::memory_order_relaxed)) return;  // [H3] relaxed: under the mutex
      if (n->prev != nullptr) n->prev->next = n->next; else head_ = n->next;
      if (n->next != nullptr) n->next->prev = n->prev;
      --live_;
    }
    delete n;
  }

  /// Destroys every node and refuses later releases; clears owner from the cache of each node's
  /// thread. Thread-safety: the owner's destructor. A node's thread is alive while the node is
  /// listed (it releases its nodes, under the mutex, before its thread-locals go).
  void close(const void* owner = nullptr) noexcept {
    thread_reader_node* list = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_.store(true, std::memory_order_relaxed);  // [H2] relaxed: under the mutex
      for (thread_reader_node* n = head_; n != nullptr && owner != nullptr; n = n->next) {
        if (n->cache == nullptr) continue;
        const void* cached = owner;
        // [H6] relaxed: see the file's head
        n->cache->owner.compare_exchange_strong(cached, nullptr, std::memory_order_relaxed);
      }
      list = std::exchange(head_, nullptr);
      live_ = 0;
    }
    while (list != nullptr) delete std::exchange(list, list->next);
  }

  /// Calls f(node&) for each live node, under the home's mutex (a node's thread cannot release
  /// it meanwhile). Thread-safety: any thread. Cost: the mutex, held for the whole walk.
  template <class F>
  void for_each(F&& f) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (thread_reader_node* n = head_; n != nullptr; n = n->next) f(*n);
  }

  /// True once the map is gone. Progress: wait-free; may be late (see [H3]).
  bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }  // [H3]
  /// Readers alive now, and the most alive at once.
  std::size_t live() const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_;
  }
  std::size_t peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }

 private:
  mutable std::mutex mu_;
  std::atomic<bool> closed_{false};
  thread_reader_node* head_ = nullptr;
  std::size_t live_ = 0;
  std::size_t peak_ = 0;
};

/// A thread's readers, one per map it read; releases them when the thread exits.
class thread_readers {
 public:
  /// This thread's table, made on first use; nullptr once it was destroyed (during thread exit,
  /// from another thread_local's destructor).
  static thread_readers* current() {
    if (tls_readers_gone) return nullptr;
    static thread_local thread_readers t;
    return &t;
  }

  thread_readers() = default;
  thread_readers(const thread_readers&) = delete;
  thread_readers& operator=(const thread_readers&) = delete;
  ~thread_readers() {
    tls_reader_cache.owner.store(nullptr, std::memory_order_relaxed);  // [H5] relaxed
    tls_readers_gone = true;
    for (auto& [id, e] : entries_) e.home->release(e.node);
  }

  /// This thread's reader of map id, or nullptr.
  thread_reader_node* find(std::uint64_t id) const noexcept {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : it->second.node;
  }

  /// Records n (adopted by home) as this thread's reader of map id. Throws only on allocation
  /// failure, having changed nothing.
  void add(std::uint64_t id, thread_reader_node* n, std::shared_ptr<reader_home> home) {
    if (entries_.size() >= purge_at_) purge();
    entries_.emplace(id, entry{n, std::move(home)});
  }

 private:
  struct entry {
    thread_reader_node* node;
    std::shared_ptr<reader_home> home;
  };

  /// Drops the entries of destroyed maps (their nodes are gone with them).
  void purge() noexcept {
    absl::erase_if(entries_, [](const auto& kv) { return kv.second.home->closed(); });
    purge_at_ = std::max<std::size_t>(8, 2 * entries_.size());
  }

  absl::flat_hash_map<std::uint64_t, entry> entries_;
  std::size_t purge_at_ = 8;
};

/// The readers a thread makes while it exits: from a thread_local destructor that runs after the
/// thread's table was destroyed (thread_readers::current() is then null). Such a node is never in
/// tls_reader_cache (its owner could not clear the entry once the thread is gone); this list finds
/// it again by owner id (ids are never reused), and releases the thread's nodes after its last
/// thread_local destructor: the list is the value of a POSIX thread-specific key, whose
/// destructor the C library runs after the C++ thread_local destructors (glibc's thread start
/// routine calls __call_tls_dtors, then the keys' destructors, again while one sets its key anew,
/// up to PTHREAD_DESTRUCTOR_ITERATIONS rounds). A thread that ends through exit() (the main
/// thread) runs no key destructor; its nodes are freed with their maps, as every node is then.
class exit_readers {
 public:
  /// This thread's list; made if `make` and there is none (nullptr otherwise). Throws
  /// std::bad_alloc, having changed nothing, if the list or its key cannot be made.
  static exit_readers* current(bool make) {
    auto* list = static_cast<exit_readers*>(::pthread_getspecific(key()));
    if (list == nullptr && make) {
      auto made = std::make_unique<exit_readers>();
      if (::pthread_setspecific(key(), made.get()) != 0) throw std::bad_alloc();
      list = made.release();
    }
    return list;
  }

  /// This thread's late node of owner id, or nullptr.
  thread_reader_node* find(std::uint64_t id) const noexcept {
    for (const entry& e : entries_) {
      if (e.id == id) return e.node;
    }
    return nullptr;
  }
  /// Records n (adopted by home) as this thread's late node of owner id. Throws only on
  /// allocation failure, having changed nothing.
  void add(std::uint64_t id, thread_reader_node* n, std::shared_ptr<reader_home> home) {
    entries_.push_back(entry{id, n, std::move(home)});
  }

 private:
  struct entry {
    std::uint64_t id;
    thread_reader_node* node;
    std::shared_ptr<reader_home> home;
  };

  static pthread_key_t key() {
    static const pthread_key_t k = [] {
      pthread_key_t made{};
      if (::pthread_key_create(&made, &release_all) != 0) throw std::bad_alloc();
      return made;
    }();
    return k;
  }
  /// The key's destructor, on the exiting thread: releases its nodes whose homes are still open.
  static void release_all(void* p) noexcept {
    const std::unique_ptr<exit_readers> list(static_cast<exit_readers*>(p));
    for (entry& e : list->entries_) e.home->release(e.node);
  }

  std::vector<entry> entries_;
};

/// This thread's node of the owner (a map, a cache) with id `id`: found in the thread's table,
/// or made by make() (a std::unique_ptr<Node>), adopted by home and recorded in the table on the
/// thread's first call. The caller then caches it (cache_node). A thread calling from a
/// thread_local destructor after its table is gone gets a node the home keeps until the owner
/// dies, and never cached. Throws what make() or an allocation throws, having changed nothing.
template <class Node, class Make>
Node& local_node(std::uint64_t id, const std::shared_ptr<reader_home>& home, Make&& make) {
  thread_readers* table = thread_readers::current();  // null while the thread exits
  exit_readers* late = table == nullptr ? exit_readers::current(/*make=*/true) : nullptr;
  thread_reader_node* n = table != nullptr ? table->find(id) : late->find(id);
  if (n == nullptr) {
    std::unique_ptr<Node> made = make();
    if (table != nullptr) made->cache = &tls_reader_cache;
    n = made.get();
    home->adopt(made.release());
    try {
      if (table != nullptr) {
        table->add(id, n, home);
      } else {
        late->add(id, n, home);
      }
    } catch (...) {
      home->release(n);
      throw;
    }
  }
  return static_cast<Node&>(*n);
}

/// This thread's node of the owner with id `id` if it has one (from local_node); makes none.
inline thread_reader_node* find_local_node(std::uint64_t id) {
  if (thread_readers* table = thread_readers::current(); table != nullptr) return table->find(id);
  const exit_readers* late = exit_readers::current(/*make=*/false);
  return late != nullptr ? late->find(id) : nullptr;
}

/// Makes `owner`'s node n this thread's cached one, where it can be (see local_node): later reads
/// of owner then find `value` (what they read through: trivially copyable, two words at most)
/// with a compare and a load.
template <class T>
void cache_node(const void* owner, const thread_reader_node& n, const T& value) noexcept {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(reader_cache::value));
  if (n.cache == nullptr) return;
  std::memcpy(tls_reader_cache.value, &value, sizeof value);
  tls_reader_cache.owner.store(owner, std::memory_order_relaxed);  // [H5] relaxed
}

/// What this thread cached for owner (a T, by cache_node), or else slow()'s: a read's first
/// step, a compare and a load. Always inlined.
template <class T, class Slow>
[[gnu::always_inline]] inline T cached_or(const void* owner, Slow&& slow) {
  const reader_cache& c = tls_reader_cache;
  // [H4] relaxed: this thread's own entry, cleared by an owner's destructor before another owner
  //      can be made at its address (see the file's head)
  if (c.owner.load(std::memory_order_relaxed) == owner) [[likely]] {
    T v;
    std::memcpy(&v, c.value, sizeof v);
    return v;
  }
  return slow();
}

}  // namespace leftright::detail
