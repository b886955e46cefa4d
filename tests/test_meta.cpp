// SPDX-License-Identifier: Apache-2.0
// Metadata published with the data: set_meta() is queued like an operation and becomes visible
// with its batch, never with another's; it survives later publishes, a failed publish, discard(),
// and a copy detached by publish_within().
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>
#include <leftright/map.hpp>

#include "support/test_support.hpp"
#include "support/test_file.hpp"

namespace LEFTRIGHT_TEST_FILE {

namespace {

struct labelled_traits : leftright::default_traits {
  using meta_type = std::string;
  static constexpr leftright::copy_check verify_copies = leftright::copy_check::every_publish;
};
struct labelled_fragile_traits : labelled_traits {};

template <class V, class Traits>
auto make_labelled() {
  return leftright::make_map<int, V, leftright::default_hash<int>, leftright::default_eq<int>, Traits>();
}

}  // namespace

TEST_CASE("metadata is published with its batch and kept until the next", "[meta]") {
  auto [w, r] = make_labelled<int, labelled_traits>();
  CHECK(r.read().meta().empty());
  w.insert_or_assign(1, 1);
  w.set_meta("rev-1");
  CHECK(w.meta() == "rev-1");  // the writer sees what it queued
  CHECK(r.read().meta().empty());
  auto before = std::make_unique<decltype(r.read())>(r.read());
  CHECK(w.publish() == 1);
  CHECK(before->meta().empty());  // an older snapshot keeps its label
  CHECK(before->find(1) == nullptr);
  before.reset();
  {
    const auto g = r.read();
    CHECK(g.meta() == "rev-1");
    CHECK(g.find(1) != nullptr);
  }
  for (int i = 2; i < 6; ++i) {  // publishes without set_meta keep the label, in both copies
    w.insert_or_assign(i, i);
    CHECK(w.publish() == static_cast<std::uint64_t>(i));
    CHECK(r.read().meta() == "rev-1");
  }
  w.set_meta("dropped");
  w.discard();
  CHECK(w.meta() == "rev-1");
  w.set_meta("rev-2");
  w.set_meta("rev-3");  // the last one queued wins
  w.publish();
  w.publish();
  CHECK(r.read().meta() == "rev-3");
}

TEST_CASE("a failed publish publishes neither the batch nor its metadata", "[meta]") {
  using lrtest::fragile;
  auto [w, r] = make_labelled<fragile, labelled_fragile_traits>();
  w.set_meta("a");
  w.insert_or_assign(1, fragile(1));
  w.publish();
  w.set_meta("b");
  w.insert_or_assign(2, fragile(2));
  fragile::copy_budget = 0;  // the first application copies the value: it throws
  fragile::refuse_once = true;
  CHECK_THROWS_AS(w.publish(), std::runtime_error);
  fragile::copy_budget = -1;
  fragile::refuse_once = false;
  CHECK(r.read().meta() == "a");
  CHECK(w.meta() == "b");  // still queued
  w.publish();
  const auto g = r.read();
  CHECK(g.meta() == "b");
  CHECK(g.find(2) != nullptr);
}

TEST_CASE("publish_within's fresh copy keeps the metadata; the held copy keeps its own", "[meta]") {
  using namespace std::chrono_literals;
  auto [w, r] = make_labelled<int, labelled_traits>();
  w.set_meta("old");
  w.publish();
  auto slow = std::make_unique<decltype(r.read())>(r.read());
  auto other = w.make_reader();
  w.insert_or_assign(1, 1);
  w.publish_within(1ms);  // records the slow reader
  w.insert_or_assign(2, 2);
  w.publish_within(1ms);  // detaches: the fresh copy is made from the read copy
  REQUIRE(w.held_copies() == 1);
  w.set_meta("new");
  w.insert_or_assign(3, 3);
  w.publish_within(1ms);
  w.publish_within(1ms);  // both live copies replayed
  CHECK(slow->meta() == "old");
  CHECK(other.read().meta() == "new");
  slow.reset();
  w.publish();
  w.publish();
  CHECK(other.read().meta() == "new");
  CHECK(w.release_held_copies() == 0);
}

}  // namespace LEFTRIGHT_TEST_FILE
