// SPDX-License-Identifier: Apache-2.0
// The compile-time contracts (traits.hpp, detail/left_right.hpp): what a Traits type, an Apply
// (operations) type and a publish hook must provide, as concepts, so that a wrong one is refused
// with one line naming the concept. The checks are static_asserts (a wrong answer does not
// compile); the test case repeats them where Catch2 reports them.
// LEFTRIGHT_TEST_ONE_THREAD: one thread only, so ThreadSanitizer builds leave this file out.
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <leftright/map.hpp>
#include <leftright/traits.hpp>
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

struct seq_cst_only : leftright::default_traits {
  static constexpr leftright::reader_sync sync = leftright::reader_sync::seq_cst;
};
struct labelled : leftright::default_traits {
  using meta_type = std::string;
};
struct hand_written {  // not derived, no meta_type: still a Traits type
  static constexpr leftright::reader_sync sync = leftright::reader_sync::automatic;
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::off;
  static constexpr std::size_t max_inline_entry = 32;
  static constexpr bool huge_pages = false;
};
struct missing_member {  // no huge_pages
  static constexpr leftright::reader_sync sync = leftright::reader_sync::automatic;
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::off;
  static constexpr std::size_t max_inline_entry = 32;
};
struct wrong_type : leftright::default_traits {
  static constexpr const char* sync = "seq_cst";
};
struct uncopyable_meta {
  uncopyable_meta() = default;
  uncopyable_meta(const uncopyable_meta&) = delete;
  uncopyable_meta& operator=(const uncopyable_meta&) = delete;
};
struct bad_meta : leftright::default_traits {
  using meta_type = uncopyable_meta;
};

static_assert(leftright::map_traits<leftright::default_traits>);
static_assert(leftright::map_traits<seq_cst_only>);
static_assert(leftright::map_traits<labelled>);
static_assert(leftright::map_traits<hand_written>);
static_assert(!leftright::map_traits<missing_member>);
static_assert(!leftright::map_traits<wrong_type>);
static_assert(!leftright::map_traits<bad_meta>);

using table = std::vector<int>;
using op = int;
struct pushes {
  static void first(table& t, op& o) { t.push_back(o); }
  static void second(table& t, op&& o) { t.push_back(o); }
};
struct first_only {
  static void first(table& t, op& o) { t.push_back(o); }
};
static_assert(leftright::detail::absorbs<pushes, table, op>);
static_assert(!leftright::detail::absorbs<first_only, table, op>);

struct good_hook {
  void before_apply(std::uint64_t, const std::vector<op>&) {}
  void before_swap(std::uint64_t, const std::vector<op>&) {}
  void abort() noexcept {}
};
struct throwing_abort {
  void before_apply(std::uint64_t, const std::vector<op>&) {}
  void before_swap(std::uint64_t, const std::vector<op>&) {}
  void abort() {}
};
struct no_before_swap {
  void before_apply(std::uint64_t, const std::vector<op>&) {}
  void abort() noexcept {}
};
static_assert(leftright::detail::publish_hook<good_hook, op>);
static_assert(leftright::detail::publish_hook<good_hook&, op>);  // as publish_with deduces it
static_assert(!leftright::detail::publish_hook<throwing_abort, op>);
static_assert(!leftright::detail::publish_hook<no_before_swap, op>);

}  // namespace

TEST_CASE("the Traits, Apply and publish-hook contracts accept what they should and nothing else", "[traits]") {
  CHECK(leftright::map_traits<hand_written>);
  CHECK_FALSE(leftright::map_traits<missing_member>);
  CHECK_FALSE(leftright::map_traits<wrong_type>);
  CHECK_FALSE(leftright::map_traits<bad_meta>);
  CHECK_FALSE(leftright::detail::absorbs<first_only, table, op>);
  CHECK_FALSE(leftright::detail::publish_hook<throwing_abort, op>);
  // A hand-written Traits type (no meta_type) makes a working map.
  auto [w, r] = leftright::make_map<int, int, leftright::default_hash<int>, leftright::default_eq<int>, hand_written>();
  w.insert_or_assign(1, 2);
  w.publish();
  const auto g = r.read();
  REQUIRE(g.find(1) != nullptr);
  CHECK(*g.find(1) == 2);
}

}  // namespace LEFTRIGHT_TEST_FILE
