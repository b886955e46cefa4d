// SPDX-License-Identifier: Apache-2.0
// leftright replication machinery: every call the replication layer makes into the durable map's
// codecs, in one place. A log message's payload is exactly a durable log record's payload
// (detail/storage/batch.hpp: a u32 count, then per operation a tag, the key, the value); a
// snapshot image is a small header and the entries encoded as a durable snapshot's data section.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../../codec.hpp"
#include "../../durable_map.hpp"
#include "../../replication_error.hpp"

namespace leftright::detail::replication {

/// A published batch as a log payload (erase_if as the keys it erased: the writer queued it
/// with erase_if_noting_keys).
template <class Ops>
void encode_batch_payload(const std::vector<typename Ops::op>& ops, std::string& out) {
  storage::encode_batch<Ops>(ops, out);
}

/// Calls v.assign(key, value), v.insert(key, value), v.erase(key) or v.clear() for each
/// operation of a logged batch, in order (storage::for_each_op, the durable log's own walk).
/// Throws replication_error (protocol) if it does not decode.
template <class Key, class Value, class Visitor>
void for_each_logged_op(std::span<const std::byte> payload, Visitor&& v) {
  try {
    storage::for_each_op<Key, Value>(payload, v);
  } catch (const storage_error& e) {
    throw replication_error(replication_errc::protocol, "decode batch", e.what());
  }
}

/// The image of a snapshot: "lrsnap1", the key and value codec names (so a follower of other
/// types refuses it), the entry count, then each entry's key and value through the codecs.
template <class Key, class Value, class Table>
void encode_snapshot(const Table& t, std::string& out) {
  out.clear();
  byte_writer w(out);
  w.put_bytes("lrsnap1", 7);
  leftright::encode(codec_name<Key>(), w);
  leftright::encode(codec_name<Value>(), w);
  w.put_u64(t.size());
  for (const auto& [k, v] : t) {
    leftright::encode(k, w);
    leftright::encode(v, w);
  }
}

/// Calls f(key, value) for each entry of a snapshot image; returns the entry count. Throws
/// replication_error (protocol) if the image is of other types or does not decode.
template <class Key, class Value, class F>
std::uint64_t for_each_snapshot_entry(std::span<const std::byte> image, F&& f) {
  try {
    byte_reader r(image);
    const auto magic = r.get_bytes(7, "snapshot magic");
    const auto key_codec = leftright::decode<std::string>(r);
    const auto value_codec = leftright::decode<std::string>(r);
    if (std::string_view(reinterpret_cast<const char*>(magic.data()), magic.size()) != "lrsnap1" ||
        key_codec != codec_name<Key>() || value_codec != codec_name<Value>()) {
      throw replication_error(replication_errc::protocol, "decode snapshot",
                              "not a snapshot of this map's types (" + key_codec + ", " + value_codec + ")");
    }
    const std::uint64_t n = r.get_u64("entry count");
    for (std::uint64_t i = 0; i < n; ++i) {
      Key k = leftright::decode<Key>(r);
      f(std::move(k), leftright::decode<Value>(r));
    }
    if (!r.empty()) throw replication_error(replication_errc::protocol, "decode snapshot", "trailing bytes");
    return n;
  } catch (const storage_error& e) {
    throw replication_error(replication_errc::protocol, "decode snapshot", e.what());
  }
}

}  // namespace leftright::detail::replication
