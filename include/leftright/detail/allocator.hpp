// SPDX-License-Identifier: Apache-2.0
// leftright: the allocator of the copies' hash tables. A large table (a million entries is some
// 34 MB per copy) is read at random, so with 4 KiB pages nearly every lookup also misses the
// TLB, and building one (recovery, a rehash, the second copy) takes a page fault every 4 KiB.
// Where the kernel offers transparent huge pages only on request
// (/sys/kernel/mm/transparent_hugepage/enabled = madvise, a common default), this allocator
// requests them for the 2 MiB-aligned part of every block of huge_page_min_bytes or more. The
// memory itself comes from std::allocator as usual (glibc maps such blocks with mmap of their
// own), so nothing is rounded up and freeing is unchanged. The advice is only advice: where huge
// pages are off, or the call is refused, the table works as before, with ordinary pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace leftright::detail {

/// Blocks at least this large are advised to use huge pages (two 2 MiB pages or more, so that
/// the aligned part of an unaligned block still holds a whole one).
inline constexpr std::size_t huge_page_min_bytes = std::size_t{4} << 20;
inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

/// Advises [p, p + bytes) to use transparent huge pages, rounded inward to 2 MiB boundaries.
/// Returns whether the kernel took the advice (false where it is refused or unknown).
inline bool advise_huge_pages(void* p, std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first = (begin + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
  const std::uintptr_t last = (begin + bytes) & ~(huge_page_bytes - 1);
  if (last <= first) return false;
  return ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE) == 0;
#else
  (void)p;
  (void)bytes;
  return false;
#endif
}

/// std::allocator, plus the huge-page advice for large blocks. Stateless: all instances are
/// equal, so tables move and swap their blocks freely.
template <class T>
struct table_allocator {
  using value_type = T;

  constexpr table_allocator() noexcept = default;
  template <class U>
  constexpr table_allocator(const table_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    T* p = std::allocator<T>().allocate(n);
    if (n >= huge_page_min_bytes / sizeof(T)) advise_huge_pages(p, n * sizeof(T));
    return p;
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }

  template <class U>
  constexpr bool operator==(const table_allocator<U>&) const noexcept {
    return true;
  }
};

/// table_allocator for a large buffer that is written before it is read (recovery's slot-order
/// sort): resize() leaves trivial elements as they are instead of writing zeros over every byte
/// (construct() without arguments default-initializes). The fresh pages the kernel hands out are
/// zeroed by it already. On this project's VM, a 64 MiB buffer resized and then written as the
/// sort writes it (16M offsets) took 0.43 s as a std::vector and 0.18 s with this allocator: the
/// zeroing pass and faulting in 4 KiB pages one by one, which the huge-page advice spares.
template <class T>
struct buffer_allocator : table_allocator<T> {
  using value_type = T;
  constexpr buffer_allocator() noexcept = default;
  template <class U>
  constexpr buffer_allocator(const buffer_allocator<U>&) noexcept {}

  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

/// The allocator a table of T gets: table_allocator where Traits asks for huge pages.
template <class T, bool HugePages>
using table_allocator_t = std::conditional_t<HugePages, table_allocator<T>, std::allocator<T>>;

}  // namespace leftright::detail
