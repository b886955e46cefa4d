// SPDX-License-Identifier: Apache-2.0
// Reference cache policies for the hit-ratio simulator: plain, readable implementations that
// reproduce published figures (LRU, ARC, OPT) or follow a paper's reference code (S3-FIFO).
// Sized in entries; every miss inserts the key. Single-threaded.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <list>
#include <queue>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace leftright::cachesim {

/// Least recently used.
class lru_policy {
 public:
  explicit lru_policy(std::size_t capacity) : capacity_(capacity) {}

  /// One request: true on a hit. A miss inserts the key, evicting the least recently used.
  bool access(std::uint64_t key) {
    if (auto it = where_.find(key); it != where_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return true;
    }
    if (capacity_ == 0) return false;
    if (order_.size() == capacity_) {
      where_.erase(order_.back());
      order_.pop_back();
    }
    order_.push_front(key);
    where_.emplace(key, order_.begin());
    return false;
  }

 private:
  std::size_t capacity_;
  std::list<std::uint64_t> order_;  // most recent first
  absl::flat_hash_map<std::uint64_t, std::list<std::uint64_t>::iterator> where_;
};

/// Adaptive Replacement Cache (Megiddo & Modha, FAST '03, Fig. 4): T1 (seen once recently), T2
/// (seen at least twice), their ghosts B1 and B2 (keys only), and the target size p of T1,
/// learned from ghost hits.
class arc_policy {
 public:
  explicit arc_policy(std::size_t capacity) : c_(capacity) {}

  bool access(std::uint64_t key) {
    auto it = where_.find(key);
    if (it != where_.end() && (it->second.list == t1 || it->second.list == t2)) {  // case I
      move_to_front(key, t2);
      return true;
    }
    if (c_ == 0) return false;
    if (it != where_.end() && it->second.list == b1) {  // case II
      double delta = size(b1) >= size(b2) ? 1.0 : double(size(b2)) / double(size(b1));
      p_ = std::min(double(c_), p_ + delta);
      replace(false);
      move_to_front(key, t2);
      return false;
    }
    if (it != where_.end() && it->second.list == b2) {  // case III
      double delta = size(b2) >= size(b1) ? 1.0 : double(size(b1)) / double(size(b2));
      p_ = std::max(0.0, p_ - delta);
      replace(true);
      move_to_front(key, t2);
      return false;
    }
    make_room_for_new();  // case IV
    lists_[t1].push_front(key);
    where_[key] = {t1, lists_[t1].begin()};
    return false;
  }

 private:
  enum list_id : int { t1, t2, b1, b2 };
  struct place {
    list_id list;
    std::list<std::uint64_t>::iterator it;
  };

  std::size_t size(list_id l) const { return lists_[l].size(); }

  void move_to_front(std::uint64_t key, list_id to) {
    place& p = where_[key];
    lists_[to].splice(lists_[to].begin(), lists_[p.list], p.it);
    p.list = to;
  }

  void drop_lru(list_id l) {
    where_.erase(lists_[l].back());
    lists_[l].pop_back();
  }

  // REPLACE(x, p): demotes the LRU of T1 or T2 to its ghost list.
  void replace(bool hit_in_b2) {
    double t1_size = double(size(t1));
    if (size(t1) >= 1 && (t1_size > p_ || (hit_in_b2 && t1_size == p_))) {
      move_to_front(lists_[t1].back(), b1);
    } else {
      move_to_front(lists_[t2].back(), b2);
    }
  }

  void make_room_for_new() {
    std::size_t l1 = size(t1) + size(b1);
    std::size_t total = l1 + size(t2) + size(b2);
    if (l1 == c_) {
      if (size(t1) < c_) {
        drop_lru(b1);
        replace(false);
      } else {
        drop_lru(t1);
      }
    } else if (l1 < c_ && total >= c_) {
      if (total == 2 * c_) drop_lru(b2);
      replace(false);
    }
  }

  std::size_t c_;
  double p_ = 0;
  std::list<std::uint64_t> lists_[4];  // most recent first
  absl::flat_hash_map<std::uint64_t, place> where_;
};

/// S3-FIFO (Yang et al., SOSP '23) as the paper ran it: libCacheSim's S3FIFOv0.c (not its later
/// S3FIFO.c, which, until the first eviction, sends new keys to the main queue once the small one
/// is full). A small FIFO of 10% of the capacity for new keys, a main FIFO for the rest, a ghost
/// FIFO of keys evicted from the small queue (as many as the main queue holds). A hit raises a
/// 2-bit frequency (at most 3). The small queue's oldest key moves to main (frequency reset) if
/// it was hit at least `promote_at` times (libCacheSim's move-to-main-threshold, 2), else leaves
/// (to the ghost); the main queue's oldest key is reinserted with its frequency lowered if it
/// was hit, else leaves. A miss looks the key up in the ghost first, as libCacheSim's find does,
/// and removes it: a ghost key is inserted into main, after the evictions that make room for it.
class s3fifo_policy {
 public:
  explicit s3fifo_policy(std::size_t capacity, double small_share = 0.1, unsigned promote_at = 2)
      : capacity_(capacity),
        small_capacity_(std::max<std::size_t>(1, std::size_t(double(capacity) * small_share))),
        main_capacity_(capacity - std::min(capacity, small_capacity_)),
        promote_at_(promote_at) {}

  bool access(std::uint64_t key) {
    if (auto it = freq_.find(key); it != freq_.end()) {
      it->second = std::min<std::uint8_t>(3, std::uint8_t(it->second + 1));
      return true;
    }
    if (capacity_ == 0) return false;
    // The ghost is checked before evicting: this miss's own evictions could push the key out of
    // it first.
    bool ghost_hit = false;
    if (auto g = ghost_where_.find(key); g != ghost_where_.end()) {
      ghost_.erase(g->second);
      ghost_where_.erase(g);
      ghost_hit = true;
    }
    while (small_.size() + main_.size() >= capacity_) evict();
    if (ghost_hit) {
      main_.push_back(key);
    } else {
      small_.push_back(key);
    }
    freq_.emplace(key, 0);
    return false;
  }

 private:
  void evict() {
    if (main_.size() > main_capacity_ || small_.empty()) {
      evict_main();
    } else {
      evict_small();
    }
  }

  void evict_small() {
    while (!small_.empty()) {
      std::uint64_t key = small_.front();
      small_.pop_front();
      if (freq_[key] >= promote_at_) {
        freq_[key] = 0;
        main_.push_back(key);
        continue;
      }
      freq_.erase(key);
      remember_ghost(key);
      return;
    }
  }

  void evict_main() {
    while (!main_.empty()) {
      std::uint64_t key = main_.front();
      main_.pop_front();
      std::uint8_t& f = freq_[key];
      if (f > 0) {
        --f;
        main_.push_back(key);
        continue;
      }
      freq_.erase(key);
      return;
    }
  }

  // A key leaving the small queue is resident until then, so not in the ghost: no duplicates.
  void remember_ghost(std::uint64_t key) {
    if (main_capacity_ == 0) return;
    ghost_.push_back(key);
    ghost_where_.emplace(key, std::prev(ghost_.end()));
    while (ghost_.size() > main_capacity_) {
      ghost_where_.erase(ghost_.front());
      ghost_.pop_front();
    }
  }

  std::size_t capacity_, small_capacity_, main_capacity_;
  unsigned promote_at_;
  std::list<std::uint64_t> small_, main_, ghost_;  // oldest first
  // Ghost key -> its place in ghost_, so that a ghost hit removes its entry.
  absl::flat_hash_map<std::uint64_t, std::list<std::uint64_t>::iterator> ghost_where_;
  absl::flat_hash_map<std::uint64_t, std::uint8_t> freq_;  // resident keys
};

namespace internal {
inline bool is_current(const absl::flat_hash_map<std::uint64_t, std::uint64_t>& resident,
                       std::pair<std::uint64_t, std::uint64_t> next_and_key) {
  auto it = resident.find(next_and_key.second);
  return it != resident.end() && it->second == next_and_key.first;
}
}  // namespace internal

/// Belady's optimum (OPT, MIN) under the traces' rule that every miss inserts: on a miss with a
/// full cache, the resident key whose next request is furthest away leaves. (Letting the new key
/// bypass the cache when its own next request is the furthest gains a few hits: 53.62% instead of
/// 53.61% on OLTP at 1,000.) Needs the whole trace: returns the number of hits.
inline std::uint64_t opt_hits(std::span<const std::uint64_t> trace, std::size_t capacity) {
  constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();
  std::vector<std::uint64_t> next(trace.size());
  {
    absl::flat_hash_map<std::uint64_t, std::uint64_t> seen_at;
    for (std::size_t i = trace.size(); i-- > 0;) {
      auto [it, fresh] = seen_at.try_emplace(trace[i], i);
      next[i] = fresh ? never : it->second;
      it->second = i;
    }
  }
  // Resident key -> its next request; a max-heap of (next request, key) with stale pairs skipped.
  absl::flat_hash_map<std::uint64_t, std::uint64_t> resident;
  std::priority_queue<std::pair<std::uint64_t, std::uint64_t>> furthest;
  std::uint64_t hits = 0;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    std::uint64_t key = trace[i];
    if (auto it = resident.find(key); it != resident.end()) {
      ++hits;
      it->second = next[i];
      furthest.emplace(next[i], key);
      continue;
    }
    if (capacity == 0) continue;
    if (resident.size() == capacity) {
      while (!internal::is_current(resident, furthest.top())) furthest.pop();
      resident.erase(furthest.top().second);
      furthest.pop();
    }
    resident.emplace(key, next[i]);
    furthest.emplace(next[i], key);
  }
  return hits;
}

}  // namespace leftright::cachesim
