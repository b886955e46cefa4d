// SPDX-License-Identifier: Apache-2.0
// leftright: shared constants and small helpers for the detail layer.
#pragma once

#include <cstddef>
#include <thread>

namespace leftright::detail {

/// The size we pad to so that two independently written objects never share a cache line.
/// (Not std::hardware_destructive_interference_size, which GCC 12 warns about in headers.)
inline constexpr std::size_t cache_line = 64;

/// One step of a short spin: the pause instruction where there is one (it yields the core's
/// resources to its sibling thread and saves power), a yield elsewhere.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

}  // namespace leftright::detail

// LEFTRIGHT_TSAN is 1 when compiled under ThreadSanitizer (GCC or Clang).
#if defined(__SANITIZE_THREAD__)
#define LEFTRIGHT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LEFTRIGHT_TSAN 1
#endif
#endif
#ifndef LEFTRIGHT_TSAN
#define LEFTRIGHT_TSAN 0
#endif

// LEFTRIGHT_PREFETCH_CALL marks each function that calls absl's prefetch(). GCC 12 deletes a
// call of absl's prefetch() it did not inline (IPA mod-ref sees no side effect in
// __builtin_prefetch), so under GCC absl's prefetch is inlined into that function (flatten),
// which is itself always inlined: no call is left to delete. (An earlier form kept the function
// out of line and unanalysed, noipa: a call per prefetched key, 0.82-0.87x of this one's batched
// lookups on a 16M map, 2026-12-04.) Clang keeps the call and inlines it.
#if defined(__clang__)
#define LEFTRIGHT_PREFETCH_CALL [[gnu::always_inline]] inline
#else
#define LEFTRIGHT_PREFETCH_CALL [[gnu::always_inline, gnu::flatten]] inline
#endif

// LEFTRIGHT_PREFETCH_OP marks the writer's prefetch of one operation (map_ops.hpp's
// prefetch_op), called from the apply loop in left_right.hpp, which is not flattened (that would
// inline the whole insert path of absl into it). Inlined into that loop with the prefetch() it
// calls, that prefetch() lost its flatten (GCC drops flatten on a function inlined early),
// absl's prefetch() stayed a call, and GCC deleted the call: the writer never prefetched with
// u64 keys. So under GCC it is out of line, its own
// body flattened, and unanalysed (noipa: its callers cannot see that it only prefetches). A call
// per operation costs little beside an insert whose line misses the caches (write_pair, u64,
// batch 1024: 0.50x the limit without the prefetches, 0.83x with them on the 1M map; 0.54x and
// 0.86x on 16M, 2026-12-04). Clang keeps the call and inlines it.
#if defined(__clang__)
#define LEFTRIGHT_PREFETCH_OP [[gnu::always_inline]] inline
#else
#define LEFTRIGHT_PREFETCH_OP [[gnu::noipa, gnu::flatten]]
#endif

// LEFTRIGHT_VERIFY_COPIES, the macro a user sets: see traits.hpp.
