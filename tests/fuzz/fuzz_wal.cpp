// SPDX-License-Identifier: Apache-2.0
// Fuzzes the log's record reader: a segment's header check (read_segment_header), the scan of its
// records (scan_segment) and the decoding of every record's batch (apply_batch), as recovery
// runs them. Input layout and modes: fuzz_support.hpp. Every input must end in a clean result or
// a storage_error; any other exception escapes and is reported.
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
  const auto seg = lrfuzz::wal_segment(mode, std::as_bytes(std::span(data + 1, size - 1)));
  const std::span<const std::byte> bytes(seg);
  const std::string key_codec = leftright::codec_name<lrfuzz::wal_key>();
  const std::string value_codec = leftright::codec_name<lrfuzz::wal_value>();

  std::optional<lrfuzz::st::segment_header_info> h;
  try {
    h = lrfuzz::st::read_segment_header(bytes, "fuzz.log", key_codec, value_codec);
  } catch (const leftright::storage_error& e) {
    lrfuzz::check(e.operation() == "open", "a header rejection whose operation is not open");
    return 0;
  }
  if (!h) return 0;
  const auto scan = lrfuzz::st::scan_segment(bytes, *h);

  // What the scan reports must lie inside the segment and be the consecutive records it claims.
  lrfuzz::check(scan.first_seq == h->first_seq, "scan.first_seq differs from the header's");
  std::uint64_t off = lrfuzz::st::segment_header_size;
  for (std::size_t i = 0; i < scan.records.size(); ++i) {
    const auto& rec = scan.records[i];
    lrfuzz::check(rec.seq == h->first_seq + i, "records are not consecutive");
    lrfuzz::check(rec.offset == off, "a record is not where the previous one ends");
    lrfuzz::check(rec.payload.data() == bytes.data() + off + lrfuzz::st::record_header_size,
                  "a payload does not follow its record header");
    lrfuzz::check(rec.payload.size() <= bytes.size() - off - lrfuzz::st::record_header_size,
                  "a payload runs past the end of the segment");
    off += lrfuzz::st::align8(lrfuzz::st::record_header_size + rec.payload.size());
  }
  lrfuzz::check(scan.end_offset == off, "end_offset is not where the last record ends");
  if (scan.successor) {
    lrfuzz::check(*scan.successor == h->first_seq + scan.records.size(), "a successor record that skips versions");
    lrfuzz::check(scan.end_offset + lrfuzz::st::record_header_size <= bytes.size(),
                  "the successor record lies outside the segment");
    lrfuzz::check(!scan.torn && !scan.contradicting_offset, "a tail checked after a successor record");
  }
  if (scan.contradicting_offset) {
    lrfuzz::check(scan.torn, "a contradicting record without a torn tail");
    lrfuzz::check(*scan.contradicting_offset >= scan.end_offset &&
                      *scan.contradicting_offset + lrfuzz::st::record_header_size <= bytes.size(),
                  "the contradicting record lies outside the tail");
  }

  // Every record's batch, as recovery applies it (recovery stops at the first that fails; the
  // fuzzer goes on, to reach the later ones too).
  absl::flat_hash_map<lrfuzz::wal_key, lrfuzz::wal_value> t;
  for (const auto& rec : scan.records) {
    try {
      leftright::detail::storage::apply_batch<lrfuzz::wal_key, lrfuzz::wal_value>(t, rec.payload);
    } catch (const leftright::storage_error& e) {
      lrfuzz::check_decode_error(e);
    }
  }
  return 0;
}
