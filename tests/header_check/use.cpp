// SPDX-License-Identifier: Apache-2.0
// Compiled with the header checks (tests/CMakeLists.txt): the public templates instantiated as a
// user's program would, under a user's strict warnings, so that a warning inside a template body
// (which only an instantiation shows) fails the build too. Compiled, never run.
#include <leftright/leftright.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace leftright_header_check {

int use_in_memory_map() {
  auto [w, r] = leftright::make_map<std::string, int>();
  w.insert_or_assign("a", 1);
  w.insert("b", 2);
  w.erase("a");
  w.erase_if([](const std::string&, int v) { return v > 5; });
  w.reserve(16);
  w.publish();
  (void)w.try_publish();
  w.clear();
  w.discard();
  auto other = w.factory().make_reader();
  int sum = 0;
  for (const auto& kv : r.read()) sum += kv.second;
  const std::vector<std::string> keys{"a", "b"};
  r.read().find_each(keys, [&sum](std::size_t, const int* v) { sum += v != nullptr ? *v : 0; });
  return sum + r.get(std::string("b")).value_or(0) + static_cast<int>(other.size());
}

std::uint64_t use_durable_map(const char* dir) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::sync;
  auto [w, r] = leftright::open_map<std::string, std::uint64_t>(o);
  w.insert_or_assign("x", 1);
  w.publish();
  w.checkpoint();
  w.flush();
  auto [w2, r2] = leftright::open_map<std::uint64_t, std::vector<double>>(o);
  w2.insert_or_assign(1, std::vector<double>{1.0});
  w2.publish();
  return r.size() + r2.size() + w.recovery().records_replayed;
}

std::size_t use_durable_cache(const char* dir) {
  leftright::durable_options o;
  o.path = dir;
  leftright::cache<std::uint64_t, std::string> c(o, {.max_entries = 8});
  c.put(1, "one");
  c.put(2, "two", std::chrono::seconds(5));
  (void)c.compute(1, [](const std::string* v) { return std::optional<std::string>(v != nullptr ? *v + "!" : "new"); });
  (void)c.compute(3, [](const std::string*) { return std::optional<std::string>(); }, std::chrono::seconds(5));
  std::size_t walked = 0;
  c.for_each([&](const std::uint64_t&, const std::string& v) { walked += v.size(); });
  c.set_maximum(c.maximum() + 1);
  c.invalidate_all(std::vector<std::uint64_t>{7, 8});
  walked += c.hottest(2).size() + c.coldest(2).size();
  c.sync();
  c.checkpoint();
  leftright::cache<std::uint64_t, std::string> weighed(  // the same type: one instantiation
      o, {.max_weight = 64}, [](const std::uint64_t&, const std::string& v) { return std::uint64_t(v.size()); });
  return c.size() + weighed.size() + walked + static_cast<std::size_t>(c.recovery().version);
}

}  // namespace leftright_header_check
