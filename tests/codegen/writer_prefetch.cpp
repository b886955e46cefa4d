// SPDX-License-Identifier: Apache-2.0
// Compiled to assembly by check_prefetch.sh (ctest: codegen_prefetch), never linked: the writer
// must keep its prefetches. Under GCC 12 the apply loop's prefetch of each operation left
// absl's prefetch() a call and then deleted that call, so a u64 map's writer prefetched nothing
// (LEFTRIGHT_PREFETCH_OP).
#include <cstddef>
#include <cstdint>

#include <leftright/map.hpp>

void write_many(leftright::map_writer<std::uint64_t, std::uint64_t>& w, const std::uint64_t* keys, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) w.insert_or_assign(keys[i], i);
  w.publish();
}
