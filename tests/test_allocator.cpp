// SPDX-License-Identifier: Apache-2.0
// The tables' allocator: large blocks are advised to use transparent huge pages (checked in
// /proc/self/smaps, where the kernel lists the advice as the "hg" VmFlag), small ones are not,
// and maps work the same with the advice on or off.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <type_traits>

#include <catch2/catch.hpp>
#include <leftright/leftright.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

/// The VmFlags of the mapping that holds address a, or "" if none is found.
std::string vm_flags_at(const void* a) {
  std::ifstream in("/proc/self/smaps");
  const auto addr = reinterpret_cast<std::uintptr_t>(a);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= addr && addr < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

bool thp_configured() {
  return std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled");
}

bool has_flag(const std::string& flags, const std::string& f) {
  return (flags + " ").find(" " + f + " ") != std::string::npos;
}

struct no_huge_traits : lrtest::seq_cst_traits {
  static constexpr bool huge_pages = false;
};

}  // namespace

TEST_CASE("large table blocks are advised to use huge pages, small ones are not", "[allocator]") {
  using alloc = leftright::detail::table_allocator<std::uint64_t>;
  const std::size_t big = (std::size_t{16} << 20) / sizeof(std::uint64_t);  // 16 MiB
  std::uint64_t* p = alloc().allocate(big);
  // The middle of the block lies in its 2 MiB-aligned part, which the advice covers.
  const std::uint64_t* mid = p + big / 2;
  if (thp_configured()) {
    CHECK(has_flag(vm_flags_at(mid), "hg"));
  } else {
    WARN("no transparent huge pages on this kernel: the advice cannot be checked");
  }
  for (std::size_t i = 0; i < big; i += 4096 / sizeof(std::uint64_t)) p[i] = i;  // usable memory
  CHECK(p[big / 2] == big / 2);
  alloc().deallocate(p, big);

  // A 64 KiB block: no advice (it would split the heap's mapping for nothing).
  const std::size_t small = (std::size_t{64} << 10) / sizeof(std::uint64_t);
  std::uint64_t* q = alloc().allocate(small);
  CHECK_FALSE(has_flag(vm_flags_at(q + small / 2), "hg"));
  alloc().deallocate(q, small);

  // The advice is rounded inward: a range without a whole aligned 2 MiB page is left alone.
  CHECK_FALSE(leftright::detail::advise_huge_pages(p, std::size_t{1} << 20));
}

TEST_CASE("allocators are stateless and equal, so tables swap and move their blocks", "[allocator]") {
  STATIC_REQUIRE(leftright::detail::table_allocator<int>() == leftright::detail::table_allocator<long>());
  STATIC_REQUIRE(std::is_same_v<leftright::detail::table_allocator_t<int, false>, std::allocator<int>>);
}

TEMPLATE_TEST_CASE("a map holds the same entries with huge pages advised or not", "[allocator]",
                   lrtest::seq_cst_traits, no_huge_traits) {
  auto [w, r] = leftright::make_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                    std::equal_to<std::uint64_t>, TestType>();
  // 600K entries: each copy's table is past the 4 MiB threshold.
  const std::uint64_t n = 600000;
  for (std::uint64_t i = 0; i < n; ++i) w.insert_or_assign(i * 0x9e3779b97f4a7c15ULL, i);
  w.publish();
  for (std::uint64_t i = 0; i < n; i += 2) w.erase(i * 0x9e3779b97f4a7c15ULL);
  w.publish();
  w.publish();  // both copies replayed
  auto g = r.read();
  CHECK(g.size() == n / 2);
  std::uint64_t wrong = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t* v = g.find(i * 0x9e3779b97f4a7c15ULL);
    wrong += i % 2 == 0 ? v != nullptr : v == nullptr || *v != i;
  }
  CHECK(wrong == 0);
}

}  // namespace LEFTRIGHT_TEST_FILE
