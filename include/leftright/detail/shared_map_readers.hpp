// SPDX-License-Identifier: Apache-2.0
// leftright: the per-thread readers of shared_map. Each thread that reads a shared_map gets a
// map_reader of its own on its first read; later reads find it through a one-entry cache of
// (map id, reader) per thread, and on a miss through the thread's table of its readers.
//
// Ownership. A reader lives in a node that the map's reader_home owns (a list under a mutex); the
// thread's table holds a pointer to the node and a shared_ptr to the home. Whoever goes first
// releases the node, under the home's mutex:
//   - the thread exits: its table's destructor releases each of its nodes whose home is still
//     open (the map is alive) and drops its shared_ptr to the home;
//   - the map is destroyed: it closes its home, taking every node out of the list and destroying
//     them; a thread that exits later finds the home closed and touches nothing else.
// The home outlives both (shared_ptr). A map id is never reused (a process-wide counter), so a
// thread's cache or table entry of a destroyed map never matches a later map at the same address;
// the table drops entries of closed homes as it grows.
//
// Atomics in this file:
//   [H1] next map id            relaxed  uniqueness only; nothing is published with the id
//   [H2] home closed: store     relaxed  written under the home's mutex, which orders it for
//                                        release(); the lock-free reader is only the table purge
//   [H3] home closed: load      relaxed  the purge may see it late: an entry is then kept a
//                                        little longer, and it only ever drops the shared_ptr
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace leftright::detail {

/// A fresh map id: never 0 (the empty cache), never reused.
inline std::uint64_t next_shared_map_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);  // [H1] relaxed: uniqueness only
}

/// A reader a home owns, used by one thread.
struct thread_reader_node {
  virtual ~thread_reader_node() = default;
  thread_reader_node* prev = nullptr;  ///< the home's list, guarded by its mutex
  thread_reader_node* next = nullptr;
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

  /// Destroys every node and refuses later releases. Thread-safety: the map's destructor.
  void close() noexcept {
    thread_reader_node* list = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_.store(true, std::memory_order_relaxed);  // [H2] relaxed: under the mutex
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

/// The last reader a thread used: trivially constructible and destructible, so a read reaches it
/// with one thread-local load and no guard, and it can still be read while the thread exits.
struct reader_cache {
  std::uint64_t map_id;
  const void* reader;
};
inline constinit thread_local reader_cache tls_reader_cache{0, nullptr};
/// Set once this thread's table is destroyed (the thread is exiting).
inline constinit thread_local bool tls_readers_gone = false;

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
    tls_reader_cache = {0, nullptr};
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

/// This thread's node of the owner (a map, a cache) with id `id`: found in the thread's table,
/// or made by make() (a std::unique_ptr<Node>), adopted by home and recorded in the table on the
/// thread's first call. The caller then points tls_reader_cache at what its fast path needs.
/// A thread calling from a thread_local destructor after its table is gone gets a node the home
/// keeps until the owner dies. Throws what make() or an allocation throws, having changed
/// nothing.
template <class Node, class Make>
Node& local_node(std::uint64_t id, const std::shared_ptr<reader_home>& home, Make&& make) {
  thread_readers* table = thread_readers::current();  // null while the thread exits
  thread_reader_node* n = table != nullptr ? table->find(id) : nullptr;
  if (n == nullptr) {
    std::unique_ptr<Node> made = make();
    n = made.get();
    home->adopt(made.release());
    if (table != nullptr) {
      try {
        table->add(id, n, home);
      } catch (...) {
        home->release(n);
        throw;
      }
    }
  }
  return static_cast<Node&>(*n);
}

}  // namespace leftright::detail
