// SPDX-License-Identifier: Apache-2.0
// Compiled to assembly by check_prefetch.sh (ctest: codegen_prefetch), never linked: a batched
// lookup must keep its prefetches. GCC 12 at -O2 deleted every call of absl's prefetch() that it
// did not inline, so find_many() on a large table prefetched nothing (LEFTRIGHT_PREFETCH_CALL).
#include <cstdint>
#include <span>

#include <leftright/map.hpp>

void lookup_many(const leftright::read_guard<std::uint64_t, std::uint64_t>& g,
                 std::span<const std::uint64_t> keys, std::span<const std::uint64_t*> out) {
  g.find_many(keys, out);
}
