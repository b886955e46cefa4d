// SPDX-License-Identifier: Apache-2.0
// The eviction policy of leftright::cache: an adaptive W-TinyLFU, owned and driven by the cache's
// writer alone (single-threaded; no atomics).
//
// Shape (after Caffeine's BoundedLocalCache; Einziger, Friedman & Manes, "TinyLFU: A Highly
// Efficient Cache Admission Policy", ACM ToS 2017):
//   - a window LRU that every new entry enters first (recency);
//   - a main segmented LRU: probation (entries admitted from the window, or demoted) and
//     protected (entries hit while in probation), protected holding up to 80% of main;
//   - a frequency sketch (count-min, 4-bit counters, halved every 10 x capacity additions:
//     "aging") that estimates how often each hash was requested recently, residents or not;
//   - admission: when the window overflows, its oldest entry (the candidate) competes with the
//     oldest probation entry (the victim); the one with the lower estimated frequency goes. A
//     warm candidate that does not win outright is admitted with probability 1/1024 (Caffeine:
//     1/128, which costs a point on the loop trace), so that an attacker cannot pin a victim by
//     raising its hash's counters;
//   - a hill climber that moves capacity between window and main: every sample period (6 x the
//     capacity in requests; Caffeine: 10 x) it compares the hit ratio with the previous
//     period's and keeps going in the same direction while the ratio improves, reverses when it
//     falls, and shrinks its step as the ratio settles. Recency-heavy workloads grow the window
//     (toward LRU), frequency-heavy ones and loops shrink it (toward LFU);
//   - a ghost of rejected candidates: a direct-mapped table of hashes, one slot per entry of
//     capacity (rounded down to a power of two, at most 2^22), where a candidate that lost at admission leaves its hash. A miss
//     on a hash found there (a ghost hit: the key came back soon after it was turned away) goes
//     straight to protected, as ARC moves a hit in its recency ghost to its frequency list; but
//     only while that is measured to pay. Some traces want it (keys re-requested just after
//     leaving the cache, which the sketch cannot tell from one-hit keys), loops and
//     frequency-heavy traces are hurt by it (every admission evicts a key that comes back);
//   - trials that decide the ghost: two small copies of the policy, the ghost off in one and on
//     in the other, replay the requests of a fixed share of the hashes (1/2^k, sized so each
//     holds at least 2,048 entries; a smaller cache replays everything at full size). Their hit
//     difference, halved every 16 trial capacities of sampled requests, turns the main
//     policy's ghost on above +32 hits and off below -32. A hill climber could not do it: P3 at
//     131,072 entries is only 5 of its sample periods long.
//
// Measured (bench/results/hit_ratio.md, scripts/hit_ratio): on the traces README's eleven
// trace/size cells the mean hit ratio is 47.75% (W-TinyLFU 1% 46.44, Caffeine 2.6.2 45.77,
// S3-FIFO 45.27, ARC 34.99, LRU 28.71), within 2 points of the best of LRU, ARC, S3-FIFO and
// Caffeine and above LRU on every cell. The ghost is what lifts P3 at 131,072 entries from
// 44.28% to 48.72% (LRU 44.79, ARC 50.63; the ghost always on: 49.45, but loop falls from 97.96
// to 90.85, sprite from 30.61 to 26.36, P12 from 17.76 to 15.88). With the trials, loop and gli
// keep their hit ratios, multi2 gains 0.9 points, OLTP at 1,000 entries loses 0.8 and P3 at
// 32,768 0.2. The climber's defaults sit on a plateau (samples of 4-6 x capacity, steps of
// 2-4%), not on a single tuned point. The trials' were picked among periods of 1-32 and margins
// of 0-64: periods of 8 or more give P3 at 131,072 48.6-48.7%, and the margin keeps loop at
// 97.96% (no margin: 95.7-95.9%).
//
// Cost. Per request O(1) amortized: the trials replay 1/2^k of the requests twice. Memory: the
// ghost's word per entry of capacity, and the trials' at most 2 x 4,095 entries (all of a
// cache under 4,096 entries twice over: three policies' worth in all).
//
// Weight (cache_policy_options::weighted, a cache bound by max_weight). The queues, the window
// and the climber's steps are in weight units; what counts entries or requests (the sketch's
// size and aging period, the climber's sample, the trials' share, the ghost's slots) is sized by
// an estimate of the entries the capacity holds, capacity / the residents' mean weight. Sized by
// the weight instead (a byte-sized bound: millions of "entries"), the sketch never aged, the
// climber never climbed and the trials measured nothing. With every entry weighing 64, the
// hit ratios over the eleven cells are those of the count-bounded policy to 0.1 point on the
// mean. With weights of 1 to 127 by key the mean is 1.5 points lower, and a loop a little
// larger than the cache falls from 98% to 84%: its hit ratio swings by 20 points from one
// climber sample to the next, and the climber wanders instead of shrinking the window (with a
// fixed 1% window: 96%). See also contest_for_slack().
//
// Keys. The policy knows entries by a 64-bit hash only. It assumes the cache gives distinct
// resident entries distinct hashes: a second on_insert() of a resident hash is the same entry
// (its weight is updated). A cache whose two keys collide must keep at most one of them under
// the policy (for instance replace the first), or the policy's sizes drift from the map's.
// Hashes of keys never inserted may be passed to record_access(): they feed the sketch only.
//
// Determinism. For a given capacity, options (seed included) and sequence of calls, the results
// are identical run to run: the policy draws its jitter from its own seeded generator. (A cache
// hashing with absl::Hash gets different hashes in different processes, so it is deterministic
// per process.)
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace leftright::detail {

/// A count-min sketch of 4-bit counters, four per hash, 16 per 64-bit word, halved every
/// `sample_size()` additions so that old popularity fades.
class frequency_sketch {
 public:
  /// Sized for about `expected_entries` distinct hot keys (16 to 2^22 words: 128 B to 32 MiB).
  explicit frequency_sketch(std::uint64_t expected_entries) { resize(expected_entries); }

  /// Resizes the table for `expected_entries` and sets the sample to 10 x them, keeping what
  /// was counted: every hash's estimate stays what it was in a table that grows (each new word
  /// is a copy of the word its hashes used), and in one that shrinks becomes what it would be
  /// had the table been this size all along (the folded words' counters are added, saturating).
  /// (Clearing instead, once, when a weighted cache first measured its entries, cost 8 points of
  /// hit ratio on the gli trace, for good.) Cost: O(old table + new table).
  void resize(std::uint64_t expected_entries) {
    const std::uint64_t entries = std::clamp<std::uint64_t>(expected_entries, 1, max_words);
    const std::size_t words = static_cast<std::size_t>(std::bit_ceil(std::max<std::uint64_t>(entries, 16)));
    const std::size_t old = table_.size();
    if (old == 0) {
      table_.assign(words, 0);
    } else if (words > old) {
      table_.resize(words);
      for (std::size_t i = old; i < words; ++i) table_[i] = table_[i & (old - 1)];
    } else if (words < old) {
      for (std::size_t i = words; i < old; ++i) {
        table_[i & (words - 1)] = add_saturating(table_[i & (words - 1)], table_[i]);
      }
      table_.resize(words);
      table_.shrink_to_fit();
    }
    mask_ = words - 1;
    sample_size_ = 10 * entries;
  }

  /// Counts one request of `hash`: raises each of its four counters not yet at 15. Halves every
  /// counter when the number of counted requests reaches sample_size(). Cost: O(1), plus an
  /// O(table) halving once per sample_size() calls.
  void increment(std::uint64_t hash) {
    std::uint64_t h = spread(hash);
    bool added = false;
    for (unsigned i = 0; i < 4; ++i) added |= increment_at(word_of(h, i), nibble_of(h, i));
    if (added && ++additions_ >= sample_size_) age();
  }

  /// The estimated recent request count of `hash`, 0..15. Cost: O(1).
  unsigned frequency(std::uint64_t hash) const {
    std::uint64_t h = spread(hash);
    unsigned least = 15;
    for (unsigned i = 0; i < 4; ++i) {
      least = std::min(least, unsigned((table_[word_of(h, i)] >> nibble_of(h, i)) & 0xf));
    }
    return least;
  }

  /// Counted requests between two halvings.
  std::uint64_t sample_size() const { return sample_size_; }

 private:
  static constexpr std::uint64_t max_words = std::uint64_t{1} << 22;

  static std::uint64_t spread(std::uint64_t x) {  // splitmix64's finalizer
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  // Counter i of a hash lives in its own word, at one of that word's 16 nibbles, both chosen
  // from an independent remix of the spread hash.
  std::size_t word_of(std::uint64_t h, unsigned i) const {
    return static_cast<std::size_t>(remix(h, i) & mask_);
  }
  static unsigned nibble_of(std::uint64_t h, unsigned i) { return unsigned(remix(h, i) >> 60) << 2; }
  static std::uint64_t remix(std::uint64_t h, unsigned i) {
    constexpr std::uint64_t seeds[4] = {0xc3a5c85c97cb3127ULL, 0xb492b66fbe98f273ULL,
                                        0x9ae16a3b2f90404fULL, 0xcbf29ce484222325ULL};
    std::uint64_t x = (h + seeds[i]) * seeds[i];
    return x ^ (x >> 32);
  }
  bool increment_at(std::size_t word, unsigned shift) {
    std::uint64_t mask = std::uint64_t{0xf} << shift;
    if ((table_[word] & mask) == mask) return false;
    table_[word] += std::uint64_t{1} << shift;
    return true;
  }
  void age() {
    for (std::uint64_t& w : table_) w = (w >> 1) & 0x7777777777777777ULL;
    additions_ /= 2;
  }
  // The 16 nibbles of a and b added pairwise, each sum capped at 15.
  static std::uint64_t add_saturating(std::uint64_t a, std::uint64_t b) {
    std::uint64_t sum = 0;
    for (unsigned shift = 0; shift < 64; shift += 4) {
      sum |= std::min<std::uint64_t>(((a >> shift) & 0xf) + ((b >> shift) & 0xf), 0xf) << shift;
    }
    return sum;
  }

  std::vector<std::uint64_t> table_;
  std::uint64_t mask_ = 0;
  std::uint64_t sample_size_ = 0;
  std::uint64_t additions_ = 0;
};

/// Tuning of cache_policy; the defaults are the measured ones (bench/results/hit_ratio.md).
struct cache_policy_options {
  /// The window's share of the capacity at the start (the hill climber moves it).
  double initial_window = 0.01;
  /// Protected's share of the main region.
  double protected_share = 0.8;
  /// Whether the hill climber adapts the window; false keeps `initial_window` (Caffeine 2.6).
  bool adaptive = true;
  /// Requests per hill-climber sample, as a multiple of the capacity in entries.
  double sample_factor = 6.0;
  /// A hit-ratio change at least this large restarts the climber with a full step.
  double restart_threshold = 0.05;
  /// The climber's full step, as a share of the capacity.
  double step_share = 0.03;
  /// The step's decay per sample while the hit ratio settles.
  double step_decay = 0.98;
  /// Whether a warm candidate that does not beat its victim is admitted now and then (with
  /// probability 1 / (jitter_mask + 1)), so that an attacker cannot pin a victim.
  bool jitter = true;
  std::uint64_t jitter_mask = 1023;
  /// Seed of the admission jitter.
  std::uint64_t seed = 0x2545f4914f6cdd1dULL;
  /// What a miss on a lately rejected candidate (a ghost hit) does: `off`, no ghost is kept and
  /// the hash enters the window like any other (Caffeine); `on`, it goes straight to protected;
  /// `trial`, whichever of the two the trial policies measure as better lately.
  enum class ghost_mode : std::uint8_t { off, on, trial };
  ghost_mode ghost = ghost_mode::trial;
  /// The trial policies' capacity: the capacity divided by the largest power of two that leaves
  /// at least this many entries (all of it for a smaller cache); they see that share of the hashes.
  std::uint64_t trial_capacity = 2048;
  /// The trials' score (hits with the ghost on minus hits with it off) halves every this many
  /// trial capacities of sampled requests.
  double trial_period = 16;
  /// The score must pass +margin to turn the ghost on, -margin to turn it off (hysteresis).
  std::int64_t trial_margin = 32;
  /// Whether the capacity is a weight that an entry may weigh more (or less) than 1 of (a cache
  /// bound by max_weight). What the policy sizes by a count of entries (the sketch and its aging
  /// period, the climber's sample, the trials, the ghost) then follows the entries the capacity
  /// holds, estimated as capacity / the residents' mean weight once they weigh half of it, and
  /// before that as the entries held so far (at least min(capacity, 4,096)). Each time the
  /// estimate moves more than 2x from the one in use, those are resized: the sketch keeps its
  /// counts, the ghost starts empty if its size changes, the trials keep their score and move to
  /// the new share of the hashes. Unweighted, the capacity is the count.
  bool weighted = false;
};

/// Adaptive W-TinyLFU over entries known by hash (see the file comment).
/// Thread-safety: none; one thread (the cache's writer) calls everything.
/// Capacity: in weight units (an entry weighs 1 when the cache counts entries; see
/// cache_policy_options::weighted for a cache bound by weight).
class cache_policy {
 public:
  /// What on_insert() decided. `victims` are resident hashes the cache must now erase; the span
  /// stays valid until the next call of a non-const member.
  struct insert_result {
    bool admitted;
    std::span<const std::uint64_t> victims;
  };

  explicit cache_policy(std::uint64_t capacity, cache_policy_options options = {})
      : options_(options), sketch_(initial_entries(capacity, options)), rng_(options.seed | 1) {
    lists_.resize(3);
    for (std::uint32_t q = 0; q < 3; ++q) nodes_.push_back(node{0, 0, q, q, q});
    apply_capacity(capacity, initial_entries(capacity, options));
    if (options_.ghost == cache_policy_options::ghost_mode::trial) start_trials();
  }

  /// Records a hit on `hash` (possibly late, possibly for an entry evicted since; lost records
  /// only make the policy less informed). Cost: O(1) amortized.
  void record_access(std::uint64_t hash) {
    sketch_.increment(hash);
    auto it = index_.find(hash);
    if (it == index_.end()) return;
    feed_trials(hash, nodes_[it->second].weight);
    ++hits_in_sample_;
    touch(it->second);
    climb();
  }

  /// Adds `hash` with `weight` after a miss, or updates a resident entry's weight (counted as an
  /// access). Returns whether the entry is resident afterwards and the victims to erase, which
  /// never include `hash` itself: admitted == false means the cache must not hold `hash` (not
  /// insert a new entry; erase an updated one that no longer fits). An entry heavier than the
  /// capacity is never admitted. The hill climber counts this call as a miss for a new hash.
  /// Cost: O(1) amortized, plus O(evicted entries).
  insert_result on_insert(std::uint64_t hash, std::uint64_t weight = 1) {
    victims_.clear();
    sketch_.increment(hash);
    if (auto it = index_.find(hash); it != index_.end()) {
      if (weight > capacity_) {  // no longer fits: it alone goes, nothing is evicted for it
        on_remove(hash);
        return {false, {}};
      }
      reweigh(it->second, weight);
      touch(it->second);
    } else {
      feed_trials(hash, weight);
      ++misses_in_sample_;
      if (weight > capacity_) return {false, {}};
      link_new(hash, weight);
    }
    evict();
    climb();
    if (options_.weighted) follow_entry_count();
    bool resident = index_.contains(hash);
    if (!resident) victims_.erase(std::find(victims_.begin(), victims_.end(), hash));
    return {resident, victims_};
  }

  /// Adds `hash` with `weight` as a resident entry without evicting anything, for a cache that
  /// rebuilds its policy from a map that kept the bound (after a failed write): on_insert() may
  /// evict even below the capacity (contest_for_slack()), and a victim the cache cannot erase
  /// (the failed write publishes nothing) would stay in its map unknown to the policy, its weight
  /// beyond the bound for good. Returns false, adding nothing, for an entry heavier than the
  /// capacity or already resident. Should the total exceed the capacity (a weigher that changed
  /// its mind), the next on_insert() evicts to fit. Cost: O(1) amortized.
  bool restore(std::uint64_t hash, std::uint64_t weight) {
    if (weight > capacity_ || index_.contains(hash)) return false;
    sketch_.increment(hash);
    link_new(hash, weight);
    if (options_.weighted) follow_entry_count();
    return true;
  }

  /// Forgets `hash` (invalidation, expiry). Returns whether it was resident. Cost: O(1).
  bool on_remove(std::uint64_t hash) {
    for (cache_policy& t : trials_) t.on_remove(hash);
    auto it = index_.find(hash);
    if (it == index_.end()) return false;
    std::uint32_t n = it->second;
    index_.erase(it);
    unlink(n);
    release(n);
    return true;
  }

  /// Changes the capacity; returns the victims to erase to fit it (valid as for on_insert()).
  /// Cost: O(evicted entries) and O(capacity) to resize the sketch when it grows or shrinks by
  /// more than half.
  std::span<const std::uint64_t> set_capacity(std::uint64_t capacity) {
    victims_.clear();
    const std::uint64_t entries = entries_held(capacity);
    if (entries > 2 * entries_ || 2 * entries < entries_) sketch_.resize(entries);
    apply_capacity(capacity, entries);
    if (!trials_.empty()) start_trials();
    evict();
    return victims_;
  }

  bool contains(std::uint64_t hash) const { return index_.contains(hash); }
  std::size_t size() const { return index_.size(); }
  std::uint64_t weighted_size() const { return total_weight(); }
  std::uint64_t capacity() const { return capacity_; }
  /// The window's current share of the capacity, in weight units (moved by the hill climber).
  std::uint64_t window_capacity() const { return window_max_; }
  /// The sketch's estimate for `hash` (tests and diagnostics).
  unsigned frequency(std::uint64_t hash) const { return sketch_.frequency(hash); }
  /// At most n resident hashes in the order the policy would evict them (coldest first): the
  /// window's and probation's entries from their LRU ends, the lower estimated frequency first at
  /// each step (probation's on a tie: its LRU end is the next victim), then protected's from its
  /// LRU end. hottest: the reverse, protected's from its MRU end first, then the window's and
  /// probation's from their MRU ends, the higher frequency first. An order by the policy's own
  /// lists and estimates, not an exact ranking. Cost: O(n).
  std::vector<std::uint64_t> eviction_order(std::size_t n, bool hottest) const {
    std::vector<std::uint64_t> out;
    out.reserve(std::min(n, index_.size()));
    const auto first = [&](std::uint32_t q) {
      if (empty(q)) return nil;
      return hottest ? nodes_[q].prev : nodes_[q].next;
    };
    const auto step = [&](std::uint32_t at) {
      const std::uint32_t to = hottest ? nodes_[at].prev : nodes_[at].next;
      return to < 3 ? nil : to;
    };
    const auto take_queue = [&](std::uint32_t q) {
      for (std::uint32_t at = first(q); at != nil && out.size() < n; at = step(at)) out.push_back(nodes_[at].hash);
    };
    const auto take_window_and_probation = [&] {
      std::uint32_t w = first(window), p = first(probation);
      while ((w != nil || p != nil) && out.size() < n) {
        bool from_window = p == nil;
        if (w != nil && p != nil) {
          const unsigned fw = sketch_.frequency(nodes_[w].hash), fp = sketch_.frequency(nodes_[p].hash);
          from_window = hottest ? fw >= fp : fw < fp;
        }
        std::uint32_t& at = from_window ? w : p;
        out.push_back(nodes_[at].hash);
        at = step(at);
      }
    };
    if (hottest) {
      take_queue(protected_);
      take_window_and_probation();
    } else {
      take_window_and_probation();
      take_queue(protected_);
    }
    return out;
  }
  /// The count of entries the policy is sized for: the capacity, or for a weighted policy the
  /// estimate in use (cache_policy_options::weighted). Diagnostics.
  std::uint64_t entries_capacity() const { return entries_; }
  /// The sketch's halving period, in counted requests (10 x entries_capacity()). Diagnostics.
  std::uint64_t sketch_sample_size() const { return sketch_.sample_size(); }

 private:
  enum queue : std::uint32_t { window, probation, protected_, none };
  static constexpr std::uint32_t nil = std::numeric_limits<std::uint32_t>::max();
  static constexpr unsigned warm_candidate = 6;      // sketch estimate where jitter applies
  static constexpr std::uint64_t max_ghost = std::uint64_t{1} << 22;  // slots
  static constexpr std::uint64_t provisional_entries = 4096;  // weighted, before any estimate
  static constexpr std::uint64_t max_entries_estimate = std::uint64_t{1} << 32;

  // Doubly-linked lists through nodes_; node q < 3 is the sentinel of queue q (next = LRU end,
  // prev = MRU end).
  struct node {
    std::uint64_t hash;
    std::uint64_t weight;
    std::uint32_t prev, next;
    std::uint32_t where;
  };
  struct list_state {
    std::uint64_t weight = 0;
  };

  void apply_capacity(std::uint64_t capacity, std::uint64_t entries) {
    capacity_ = capacity;
    size_by_entries(entries);
    window_max_ = std::min(capacity, static_cast<std::uint64_t>(
                                         std::llround(double(capacity) * options_.initial_window)));
    // At least one entry's room: a cache of one entry keeps its newest (a window of 0 made every
    // newcomer contest the one resident, and lose on a tie: put(k) then get(k) missed).
    if (window_max_ == 0 && capacity > 0) window_max_ = 1;
    protected_max_ = static_cast<std::uint64_t>(double(capacity - window_max_) *
                                                options_.protected_share);
    step_ = -options_.step_share * double(capacity);
    adjustment_ = 0;
    previous_hit_ratio_ = 0;
    hits_in_sample_ = misses_in_sample_ = 0;
  }

  // --- the capacity in entries (cache_policy_options::weighted) ---
  static std::uint64_t initial_entries(std::uint64_t capacity, const cache_policy_options& o) {
    return o.weighted ? std::min(capacity, provisional_entries) : capacity;
  }
  // The entries `capacity` holds: itself, unweighted; weighted, capacity / the residents' mean
  // weight once they weigh half of it (they are a sample of what it will hold), and before that
  // the entries held so far, at least the initial guess.
  std::uint64_t entries_held(std::uint64_t capacity) const {
    if (!options_.weighted) return capacity;
    const std::uint64_t weight = total_weight();
    if (index_.empty() || weight < capacity - capacity / 2) {
      return std::max<std::uint64_t>(index_.size(), initial_entries(capacity, options_));
    }
    const double entries = double(capacity) * double(index_.size()) / double(std::max<std::uint64_t>(weight, 1));
    return std::clamp<std::uint64_t>(static_cast<std::uint64_t>(std::llround(std::min(entries, 0x1p62))), 1,
                                     max_entries_estimate);
  }
  // Weighted: resizes what is sized by entries when the estimate has moved more than 2x from
  // the one in use, or is the first made from a half-full cache.
  void follow_entry_count() {
    const std::uint64_t entries = entries_held(capacity_);
    const bool first_measure = !measured_ && total_weight() >= capacity_ - capacity_ / 2;
    if (!first_measure && entries <= 2 * entries_ && 2 * entries >= entries_) return;
    measured_ = measured_ || first_measure;
    sketch_.resize(entries);
    size_by_entries(entries);
    if (!trials_.empty()) resize_trials();
  }
  // Sizes the ghost (one slot per entry, a power of two) for `entries`; a new size empties it.
  void size_by_entries(std::uint64_t entries) {
    entries_ = entries;
    if (options_.ghost != cache_policy_options::ghost_mode::off) {
      std::uint64_t slots = std::bit_floor(std::clamp<std::uint64_t>(entries, 16, max_ghost));
      if (ghosts_.size() != slots) ghosts_.assign(static_cast<std::size_t>(slots), 0);
    }
  }

  // --- lists ---
  std::uint32_t lru(std::uint32_t q) const { return nodes_[q].next; }
  bool empty(std::uint32_t q) const { return nodes_[q].next == q; }
  std::uint64_t total_weight() const {
    return lists_[window].weight + lists_[probation].weight + lists_[protected_].weight;
  }

  void push_mru(std::uint32_t q, std::uint32_t n) {
    std::uint32_t last = nodes_[q].prev;
    nodes_[n].prev = last;
    nodes_[n].next = q;
    nodes_[last].next = n;
    nodes_[q].prev = n;
    nodes_[n].where = q;
    lists_[q].weight += nodes_[n].weight;
  }
  void unlink(std::uint32_t n) {
    node& x = nodes_[n];
    nodes_[x.prev].next = x.next;
    nodes_[x.next].prev = x.prev;
    lists_[x.where].weight -= x.weight;
    x.where = none;
  }
  void move_mru(std::uint32_t q, std::uint32_t n) {
    unlink(n);
    push_mru(q, n);
  }

  // --- nodes ---
  void link_new(std::uint64_t hash, std::uint64_t weight) {
    std::uint32_t n;
    if (free_.empty()) {
      n = static_cast<std::uint32_t>(nodes_.size());
      nodes_.push_back(node{hash, weight, nil, nil, none});
    } else {
      n = free_.back();
      free_.pop_back();
      nodes_[n] = node{hash, weight, nil, nil, none};
    }
    index_.emplace(hash, n);
    if (ghost_hit(hash) && ghost_admits()) {
      push_mru(protected_, n);
      demote_from_protected();
    } else {
      push_mru(window, n);
    }
  }
  void release(std::uint32_t n) { free_.push_back(n); }
  void reweigh(std::uint32_t n, std::uint64_t weight) {
    lists_[nodes_[n].where].weight -= nodes_[n].weight;
    nodes_[n].weight = weight;
    lists_[nodes_[n].where].weight += weight;
  }
  void evict_node(std::uint32_t n) {
    victims_.push_back(nodes_[n].hash);
    index_.erase(nodes_[n].hash);
    unlink(n);
    release(n);
  }

  // --- policy ---
  // A hit: window and protected entries move to their MRU end; a probation entry is promoted.
  void touch(std::uint32_t n) {
    switch (nodes_[n].where) {
      case probation:
        move_mru(protected_, n);
        demote_from_protected();
        break;
      case window:
      case protected_:
        move_mru(nodes_[n].where, n);
        break;
      default:
        break;
    }
  }

  void demote_from_protected() {
    while (lists_[protected_].weight > protected_max_ && !empty(protected_)) {
      move_mru(probation, lru(protected_));
    }
  }

  // Moves the window's overflow to probation's MRU end; returns the first moved (the oldest
  // candidate), or nil.
  std::uint32_t evict_from_window() {
    std::uint32_t first = nil;
    while (lists_[window].weight > window_max_ && !empty(window)) {
      std::uint32_t n = lru(window);
      move_mru(probation, n);
      if (first == nil) first = n;
    }
    return first;
  }

  // Evicts until the total fits: candidates (from the window, oldest first) against victims
  // (probation's LRU end, then protected's, then the window's).
  void evict() {
    std::uint32_t candidate = evict_from_window();
    std::uint32_t victim_queue = probation;
    std::uint32_t victim = empty(probation) ? nil : lru(probation);
    while (total_weight() > capacity_) {
      if (victim == nil && candidate == nil) {
        if (victim_queue == window) break;
        victim_queue = victim_queue == probation ? protected_ : window;
        victim = empty(victim_queue) ? nil : lru(victim_queue);
        continue;
      }
      if (victim == nil) {
        std::uint32_t following = next_of(candidate);
        evict_node(candidate);
        candidate = following;
        continue;
      }
      if (candidate == nil || candidate == victim) {
        // Only a victim, or the victims have reached the candidates: no contest left.
        std::uint32_t following = next_of(victim);
        if (candidate == victim) candidate = nil;
        evict_node(victim);
        victim = following;
        continue;
      }
      if (admit(nodes_[candidate].hash, nodes_[victim].hash)) {
        std::uint32_t following = next_of(victim);
        evict_node(victim);
        victim = following;
      } else {
        std::uint32_t following = next_of(candidate);
        remember_rejected(nodes_[candidate].hash);
        evict_node(candidate);
        candidate = following;
      }
    }
    if (options_.weighted) contest_for_slack(candidate, victim);
  }

  // Weighted: the candidates left after the total fits take the room without a contest, unless
  // that room is a sliver (less than an entry of the mean weight) left because a rejected or
  // evicted entry weighed more than the one that displaced it: then each must still win against
  // the victim, or goes. (Unweighted, a full cache leaves no sliver.) Without this, on a loop a
  // little larger than the cache with weights of 1 to 127 by key and a fixed 1% window,
  // newcomers took the slivers, became the victims a request before their turn, and the loop
  // turned into LRU's: 83.5% hits, 94.2% with it (98% by count). The eleven cells at those
  // weights gained 0.9 points on the mean (gli, P3 at 32,768, P12 about 2 each).
  void contest_for_slack(std::uint32_t candidate, std::uint32_t victim) {
    const std::uint64_t mean_weight = capacity_ / std::max<std::uint64_t>(entries_, 1);
    while (candidate != nil && victim != nil && candidate != victim && total_weight() < capacity_ &&
           capacity_ - total_weight() < mean_weight) {
      std::uint32_t following = next_of(candidate);
      if (!admit(nodes_[candidate].hash, nodes_[victim].hash)) {
        remember_rejected(nodes_[candidate].hash);
        evict_node(candidate);
      }
      candidate = following;
    }
  }

  // The entry after `n` toward its queue's MRU end, or nil.
  std::uint32_t next_of(std::uint32_t n) const {
    std::uint32_t next = nodes_[n].next;
    return next < 3 ? nil : next;
  }

  bool admit(std::uint64_t candidate, std::uint64_t victim) {
    unsigned candidate_freq = sketch_.frequency(candidate);
    unsigned victim_freq = sketch_.frequency(victim);
    if (candidate_freq > victim_freq) return true;
    if (!options_.jitter || candidate_freq < warm_candidate) return false;
    return (next_random() & options_.jitter_mask) == 0;
  }

  std::uint64_t next_random() {  // xorshift64*
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545f4914f6cdd1dULL;
  }

  // --- ghost of rejected candidates ---
  // A direct-mapped table of the hashes of candidates lately rejected at admission (one slot
  // per entry of capacity, rounded down to a power of two; a newer hash overwrites an older
  // one in its slot).
  std::uint64_t& ghost_slot(std::uint64_t hash) {
    return ghosts_[static_cast<std::size_t>((hash * 0x9e3779b97f4a7c15ULL) >> 32) &
                   (ghosts_.size() - 1)];
  }
  void remember_rejected(std::uint64_t hash) {
    if (!ghosts_.empty()) ghost_slot(hash) = hash;
  }
  // Whether `hash` was lately rejected; forgets it. (0 marks an empty slot.)
  bool ghost_hit(std::uint64_t hash) {
    if (ghosts_.empty() || hash == 0 || ghost_slot(hash) != hash) return false;
    ghost_slot(hash) = 0;
    return true;
  }
  bool ghost_admits() {
    using mode = cache_policy_options::ghost_mode;
    if (options_.ghost != mode::trial) return options_.ghost == mode::on;
    if (trial_score_ > options_.trial_margin) ghost_on_ = true;
    if (trial_score_ < -options_.trial_margin) ghost_on_ = false;
    return ghost_on_;
  }

  // --- trials ---
  // Two small policies, ghost off and ghost on, replay the requests of a fixed share of the
  // hashes at that share of the capacity (spatial sampling); trial_score_ is the second's hits
  // minus the first's, halved as it ages.
  void start_trials() {
    trial_shift_ = trial_shift_for(entries_);
    cache_policy_options o = options_;
    trials_.clear();
    for (auto m : {cache_policy_options::ghost_mode::off, cache_policy_options::ghost_mode::on}) {
      o.ghost = m;
      trials_.emplace_back(std::max<std::uint64_t>(capacity_ >> trial_shift_, 1), o);
    }
    trial_score_ = 0;
    trial_requests_ = 0;
    ghost_on_ = false;
  }
  // The trials' share of the hashes: 1 / 2^shift, the largest leaving each trial_capacity entries.
  unsigned trial_shift_for(std::uint64_t entries) const {
    unsigned shift = 0;
    while (shift < 32 && (entries >> (shift + 1)) >= options_.trial_capacity) ++shift;
    return shift;
  }
  // After the entries estimate moved (weighted): the trials keep what they learned and their
  // score, and move to the new share of the hashes, which contains the old share or is contained
  // in it (a trial's residents outside it are never requested again and age out). Restarting them
  // instead, when a cache first measured its entries, cost 1.1 points on P3 at 131,072 entries.
  void resize_trials() {
    trial_shift_ = trial_shift_for(entries_);
    for (cache_policy& t : trials_) t.set_capacity(std::max<std::uint64_t>(capacity_ >> trial_shift_, 1));
  }
  void feed_trials(std::uint64_t hash, std::uint64_t weight) {
    if (trials_.empty()) return;
    if (trial_shift_ > 0 && ((hash * 0xd6e8feb86659fd93ULL) >> (64 - trial_shift_)) != 0) return;
    trial_score_ += std::int64_t{trials_[1].replay(hash, weight)} -
                    std::int64_t{trials_[0].replay(hash, weight)};
    const double trial_entries = double(std::max<std::uint64_t>(entries_ >> trial_shift_, 1));
    if (double(++trial_requests_) >= options_.trial_period * trial_entries) {
      trial_score_ /= 2;
      trial_requests_ = 0;
    }
  }
  // One request on a trial: a hit is recorded, a miss inserted. Returns whether it hit.
  bool replay(std::uint64_t hash, std::uint64_t weight) {
    if (contains(hash)) {
      record_access(hash);
      return true;
    }
    on_insert(hash, weight);
    return false;
  }

  // --- hill climber ---
  void climb() {
    if (!options_.adaptive) return;
    determine_adjustment();
    demote_from_protected();
    if (adjustment_ > 0) increase_window(static_cast<std::uint64_t>(adjustment_));
    if (adjustment_ < 0) decrease_window(static_cast<std::uint64_t>(-adjustment_));
    adjustment_ = 0;
  }

  void determine_adjustment() {
    std::uint64_t requests = hits_in_sample_ + misses_in_sample_;
    if (double(requests) < options_.sample_factor * double(entries_)) return;
    double hit_ratio = double(hits_in_sample_) / double(requests);
    double change = hit_ratio - previous_hit_ratio_;
    double amount = change >= 0 ? step_ : -step_;
    step_ = std::abs(change) >= options_.restart_threshold
                ? options_.step_share * double(capacity_) * (amount >= 0 ? 1 : -1)
                : options_.step_decay * amount;
    previous_hit_ratio_ = hit_ratio;
    adjustment_ = static_cast<std::int64_t>(amount);
    hits_in_sample_ = misses_in_sample_ = 0;
  }

  // Grows the window by up to `quota`, taken from protected's share; the main region's oldest
  // entries move into the window's MRU end.
  void increase_window(std::uint64_t quota) {
    quota = std::min(quota, protected_max_);
    protected_max_ -= quota;
    window_max_ += quota;
    demote_from_protected();
    while (quota > 0) {
      std::uint32_t q = !empty(probation) && nodes_[lru(probation)].weight <= quota ? probation
                                                                                     : protected_;
      if (empty(q) || nodes_[lru(q)].weight > quota) break;
      quota -= nodes_[lru(q)].weight;
      move_mru(window, lru(q));
    }
    protected_max_ += quota;
    window_max_ -= quota;
  }

  // Shrinks the window by up to `quota` (keeping room for one entry of the mean weight: 1,
  // unweighted), its oldest entries moving to probation's MRU end.
  void decrease_window(std::uint64_t quota) {
    const std::uint64_t least = std::max<std::uint64_t>(1, capacity_ / std::max<std::uint64_t>(entries_, 1));
    if (window_max_ <= least) return;
    quota = std::min(quota, window_max_ - least);
    protected_max_ += quota;
    window_max_ -= quota;
    while (!empty(window) && nodes_[lru(window)].weight <= quota) {
      quota -= nodes_[lru(window)].weight;
      move_mru(probation, lru(window));
    }
    protected_max_ -= quota;
    window_max_ += quota;
  }

  cache_policy_options options_;
  frequency_sketch sketch_;
  std::uint64_t rng_;
  std::vector<node> nodes_;  // [0, 3): the sentinels of window, probation, protected
  std::vector<list_state> lists_;
  std::vector<std::uint32_t> free_;
  absl::flat_hash_map<std::uint64_t, std::uint32_t> index_;
  std::vector<std::uint64_t> victims_;
  std::vector<std::uint64_t> ghosts_;  // empty when options_.ghost is off
  std::vector<cache_policy> trials_;   // ghost off, ghost on; empty unless options_.ghost is trial
  unsigned trial_shift_ = 0;
  std::int64_t trial_score_ = 0;
  std::uint64_t trial_requests_ = 0;
  bool ghost_on_ = false;

  std::uint64_t capacity_ = 0;
  std::uint64_t entries_ = 0;   // the capacity in entries: capacity_, or the weighted estimate in use
  bool measured_ = false;       // weighted: entries_ has been estimated from a half-full cache
  std::uint64_t window_max_ = 0;
  std::uint64_t protected_max_ = 0;

  std::uint64_t hits_in_sample_ = 0;
  std::uint64_t misses_in_sample_ = 0;
  double previous_hit_ratio_ = 0;
  double step_ = 0;
  std::int64_t adjustment_ = 0;
};

}  // namespace leftright::detail
