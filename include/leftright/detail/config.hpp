// SPDX-License-Identifier: Apache-2.0
// leftright: shared constants and small helpers for the detail layer.
#pragma once

#include <cstddef>

namespace leftright::detail {

/// The size we pad to so that two independently written objects never share a cache line.
/// (Not std::hardware_destructive_interference_size, which GCC 12 warns about in headers.)
inline constexpr std::size_t cache_line = 64;

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

// LEFTRIGHT_VERIFY_COPIES: the default of default_traits::verify_copies. 0: never compare the
// two copies; 1: compare them at a publish once as many operations have been applied since the
// last comparison as the map has entries (amortized: about one lookup per operation); 2: compare
// at every publish (O(size) each). Default: 1 in debug builds (NDEBUG not defined), 0 otherwise.
#ifndef LEFTRIGHT_VERIFY_COPIES
#ifdef NDEBUG
#define LEFTRIGHT_VERIFY_COPIES 0
#else
#define LEFTRIGHT_VERIFY_COPIES 1
#endif
#endif
