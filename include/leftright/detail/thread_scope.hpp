// SPDX-License-Identifier: Apache-2.0
// leftright: which owners (maps, caches) run a function of the user's on this thread now.
//
// A shared_map's combiner runs compute's functions and erase_if's predicates while it holds the
// group; a cache runs compute()'s function under its writer lock. A call from such a function that
// would take that group or lock again would wait for this thread itself; the owner asks inside()
// and refuses it instead. The scopes of a thread form a list, innermost first, not one pointer:
// a function may write another owner, whose own function may then call the first.
#pragma once

namespace leftright::detail {

/// Marks, for its lifetime, that this thread runs a function for `owner` (an address that
/// identifies it while the scope lives). Tag keeps unrelated kinds of scope apart.
template <class Tag>
class thread_scope {
 public:
  explicit thread_scope(const void* owner) noexcept : owner_(owner), outer_(innermost_) { innermost_ = this; }
  thread_scope(const thread_scope&) = delete;
  thread_scope& operator=(const thread_scope&) = delete;
  ~thread_scope() { innermost_ = outer_; }

  /// Whether a scope of owner is open on this thread (at any depth).
  static bool inside(const void* owner) noexcept {
    for (const thread_scope* s = innermost_; s != nullptr; s = s->outer_) {
      if (s->owner_ == owner) return true;
    }
    return false;
  }

 private:
  static inline thread_local const thread_scope* innermost_ = nullptr;
  const void* const owner_;
  const thread_scope* const outer_;
};

}  // namespace leftright::detail
