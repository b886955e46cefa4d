// SPDX-License-Identifier: Apache-2.0
// Fuzzes the snapshot reader: the file's checks (parse_snapshot, which read_snapshot runs over the
// mapped file) and the decoding of its entries (load_snapshot), as recovery runs them. Input
// layout and modes: fuzz_support.hpp. Every input must end in a clean result or a storage_error;
// any other exception escapes and is reported.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <absl/container/flat_hash_map.h>
#include <leftright/durable_map.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const auto file = lrfuzz::snapshot_file(mode, std::as_bytes(std::span(data + 1, size - 1)));
  const std::span<const std::byte> bytes(file);
  const std::filesystem::path path = "snap-fuzz.dat";

  lrfuzz::st::snapshot_view view;
  try {
    view = lrfuzz::st::parse_snapshot(bytes, path, leftright::codec_name<lrfuzz::snap_key>(),
                                      leftright::codec_name<lrfuzz::snap_value>());
  } catch (const leftright::storage_error& e) {
    lrfuzz::check(e.path() == path, "a snapshot rejection does not name the file");
    return 0;
  }
  lrfuzz::check(view.data.data() >= bytes.data() &&
                    view.data.data() + view.data.size() <= bytes.data() + bytes.size(),
                "the snapshot's data lies outside the file");

  absl::flat_hash_map<lrfuzz::snap_key, lrfuzz::snap_value> t;
  try {
    leftright::detail::storage::load_snapshot<lrfuzz::snap_key, lrfuzz::snap_value>(t, view, path);
  } catch (const leftright::storage_error& e) {
    lrfuzz::check(e.path() == path && e.operation() == "read snapshot",
                  "an entry that does not decode is not reported against the snapshot");
    return 0;
  }
  lrfuzz::check(t.size() <= view.entries, "more entries loaded than the snapshot holds");
  return 0;
}
