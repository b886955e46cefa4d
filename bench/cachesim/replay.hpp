// SPDX-License-Identifier: Apache-2.0
// What the hit-ratio simulator replays a trace through: one interface over the reference
// policies and over leftright's own policy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "leftright/cache.hpp"
#include "leftright/detail/cache_policy.hpp"
#include "reference_policies.hpp"

namespace leftright::cachesim {

/// A cache replayed one request at a time: a miss inserts the key.
class replay_target {
 public:
  virtual ~replay_target() = default;
  /// One request for `key`; true on a hit.
  virtual bool access(std::uint64_t key) = 0;
};

/// A reference policy (anything with `bool access(key)`) as a replay target.
template <class Policy>
class reference_target final : public replay_target {
 public:
  template <class... Args>
  explicit reference_target(Args&&... args) : policy_(std::forward<Args>(args)...) {}
  bool access(std::uint64_t key) override { return policy_.access(key); }

 private:
  Policy policy_;
};

/// The key hash the cache hands its policy. A fixed mixer (splitmix64) stands in for absl::Hash,
/// whose seed changes from process to process, so that a replay is identical run to run.
inline std::uint64_t key_hash(std::uint64_t key) {
  key += 0x9e3779b97f4a7c15ULL;
  key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ULL;
  key = (key ^ (key >> 27)) * 0x94d049bb133111ebULL;
  return key ^ (key >> 31);
}

/// A replay's hash salt. The policy's sketch, ghost and trials depend on the key hash, and the
/// real cache's hash (absl::Hash) is seeded anew in every process, so one fixed hash gives one
/// draw of the policy's hit ratio among many: a replay under several salts shows the spread.
/// Salt s hashes key k as key_hash(k ^ salt_mask(s)); salt 0 is key_hash itself (the hash of
/// every earlier figure and of the tests).
inline std::uint64_t salt_mask(std::uint64_t salt) { return salt * 0x9e3779b97f4a7c15ULL; }
inline std::uint64_t salted_key_hash(std::uint64_t key, std::uint64_t salt) {
  return key_hash(key ^ salt_mask(salt));
}

/// Whether a policy's hit ratio depends on the key hash (and so on the salt): leftright's own
/// (the real cache, its policy alone, and the W-TinyLFU 1% reference built from it). LRU, ARC,
/// S3-FIFO and OPT see the keys themselves.
inline bool hash_dependent(std::string_view policy) {
  return policy.starts_with("leftright") || policy == "policy" || policy == "wtinylfu";
}

/// leftright's eviction policy driven directly, the way the cache's writer drives it: a hit is
/// record_access(), a miss on_insert() and the victims erased from the resident set. (--policy
/// policy: a quick check of the policy alone; cache_target below is the product.) Keys are hashed
/// with salted_key_hash(key, salt).
class policy_target final : public replay_target {
 public:
  explicit policy_target(std::size_t capacity, detail::cache_policy_options options = {},
                         std::uint64_t salt = 0)
      : policy_(capacity, options), mask_(salt_mask(salt)) {}

  bool access(std::uint64_t key) override {
    std::uint64_t hash = key_hash(key ^ mask_);
    if (resident_.contains(hash)) {
      policy_.record_access(hash);
      return true;
    }
    detail::cache_policy::insert_result r = policy_.on_insert(hash);
    for (std::uint64_t victim : r.victims) resident_.erase(victim);
    if (r.admitted) resident_.insert(hash);
    return false;
  }

  const detail::cache_policy& policy() const { return policy_; }

 private:
  detail::cache_policy policy_;
  std::uint64_t mask_;
  absl::flat_hash_set<std::uint64_t> resident_;  // the cache's map, keys only
};

/// The hash the replayed cache uses: key_hash, so that a replay is identical run to run. (The
/// cache default-constructs its hash, so a salt cannot live in it: cache_target salts the keys.)
struct replay_hash {
  std::size_t operator()(std::uint64_t key) const noexcept { return static_cast<std::size_t>(key_hash(key)); }
};

/// How cache_target bounds the cache: by entries (max_entries), or by weight with every entry
/// weighing the same (max_weight = capacity x that weight), or weighing 1 to 2 x mean - 1 by
/// its key (max_weight = capacity x the mean).
struct cache_bound {
  enum class kind { entries, same_weight, varied_weight } how = kind::entries;
  std::uint64_t weight = 64;  ///< the weight, or the mean weight

  std::uint64_t weight_of(std::uint64_t key) const {
    if (how != kind::varied_weight) return how == kind::entries ? 1 : weight;
    return 1 + key_hash(key ^ 0x5bd1e9955bd1e995ULL) % (2 * weight - 1);
  }
};

/// The real leftright::cache, single-threaded: per request get(), on a miss put(), then
/// run_pending() (maintenance after every access), so that it is deterministic.
/// Under a salt it is handed key ^ salt_mask(salt) for each key: a one-to-one renaming, so the
/// trace is the same one, and its policy sees salted_key_hash(key, salt). Bounded by entries, its
/// policy sees the calls policy_target makes, in the same order, so the two agree request for
/// request. Bounded by weight, it holds about `capacity` entries of the weights cache_bound says
/// (each entry's weight follows its unsalted key).
class cache_target final : public replay_target {
 public:
  explicit cache_target(std::size_t capacity, std::uint64_t salt = 0, cache_bound bound = {})
      : mask_(salt_mask(salt)), cache_(make_cache(capacity, bound, mask_)) {}

  bool access(std::uint64_t key) override {
    key ^= mask_;
    const bool hit = cache_->get(key).has_value();
    if (!hit) cache_->put(key, 1);
    cache_->run_pending();
    return hit;
  }

 private:
  using cache_type = cache<std::uint64_t, char, replay_hash>;
  static std::unique_ptr<cache_type> make_cache(std::size_t capacity, cache_bound bound, std::uint64_t mask) {
    cache_options o;
    if (bound.how == cache_bound::kind::entries) {
      o.max_entries = capacity;
      return std::make_unique<cache_type>(o);
    }
    o.max_weight = capacity * bound.weight;
    return std::make_unique<cache_type>(
        o, [bound, mask](const std::uint64_t& key, const char&) { return bound.weight_of(key ^ mask); });
  }
  std::uint64_t mask_;
  std::unique_ptr<cache_type> cache_;
};

/// The policies by their --policy name: leftright (the real cache), leftright_weight and
/// leftright_weights (the real cache bounded by weight: every entry weighing 64, or 1 to 127 by
/// its key; the same capacity in entries on average), policy (its eviction policy alone), lru,
/// arc, s3fifo, wtinylfu (leftright's policy with a fixed 1% window: no hill climber, no
/// ghost). "opt" needs the whole trace; see opt_hits(). `salt` selects the key hash
/// of the hash-dependent ones (hash_dependent()); the others ignore it.
/// Null for an unknown name.
inline std::unique_ptr<replay_target> make_target(std::string_view policy, std::size_t capacity,
                                                  std::uint64_t salt = 0) {
  if (policy == "leftright") return std::make_unique<cache_target>(capacity, salt);
  if (policy == "leftright_weight") {
    return std::make_unique<cache_target>(capacity, salt, cache_bound{cache_bound::kind::same_weight});
  }
  if (policy == "leftright_weights") {
    return std::make_unique<cache_target>(capacity, salt, cache_bound{cache_bound::kind::varied_weight});
  }
  if (policy == "policy") return std::make_unique<policy_target>(capacity, detail::cache_policy_options{}, salt);
  if (policy == "wtinylfu") {
    detail::cache_policy_options fixed;
    fixed.adaptive = false;
    fixed.ghost = detail::cache_policy_options::ghost_mode::off;
    return std::make_unique<policy_target>(capacity, fixed, salt);
  }
  if (policy == "lru") return std::make_unique<reference_target<lru_policy>>(capacity);
  if (policy == "arc") return std::make_unique<reference_target<arc_policy>>(capacity);
  if (policy == "s3fifo") return std::make_unique<reference_target<s3fifo_policy>>(capacity);
  return nullptr;
}

/// Hits of `policy` over `trace` with `capacity` entries (opt included), under hash salt `salt`.
inline std::optional<std::uint64_t> replay_hits(std::string_view policy,
                                                std::span<const std::uint64_t> trace,
                                                std::size_t capacity, std::uint64_t salt = 0) {
  if (policy == "opt") return opt_hits(trace, capacity);
  std::unique_ptr<replay_target> target = make_target(policy, capacity, salt);
  if (!target) return std::nullopt;
  std::uint64_t hits = 0;
  for (std::uint64_t key : trace) hits += target->access(key) ? 1 : 0;
  return hits;
}

}  // namespace leftright::cachesim
