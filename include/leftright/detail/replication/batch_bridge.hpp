// SPDX-License-Identifier: Apache-2.0
// leftright replication machinery: every call the replication layer makes into the durable map's
// codecs, in one place. A log message's payload is exactly a durable log record's payload
// (detail/storage/batch.hpp: a u32 count, then per operation a tag, the key, the value); a
// snapshot image is a small header and the entries encoded as a durable snapshot's data section.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../../codec.hpp"
#include "../../durable_map.hpp"
#include "../../replication_error.hpp"

namespace leftright::detail::replication {

/// A published batch as a log payload (erase_if as the keys it erased: the writer queued it
/// with erase_if_noting_keys), with the metadata it sets as its last operation (meta: null if
/// it sets none, or the map has none: Meta = no_meta).
template <class Ops, class Meta = no_meta>
void encode_batch_payload(const std::vector<typename Ops::op>& ops, std::string& out, const Meta* meta = nullptr) {
  if constexpr (std::is_same_v<Meta, no_meta>) {
    storage::encode_batch<Ops>(ops, out);
  } else {
    storage::encode_batch<Ops>(ops, out, meta);
  }
}

/// Metadata from a logged batch's set-metadata operation (the bytes a visitor's meta() gets).
/// Throws replication_error (protocol) if they do not decode.
template <class Meta>
Meta decode_logged_meta(std::span<const std::byte> bytes) {
  try {
    return storage::decode_meta<Meta>(bytes);
  } catch (const storage_error& e) {
    throw replication_error(replication_errc::protocol, "decode batch metadata", e.detail());
  }
}

/// Calls v.assign(key, value), v.insert(key, value), v.erase(key) or v.clear() for each
/// operation of a logged batch, in order (storage::for_each_op, the durable log's own walk).
/// Throws replication_error (protocol) if it does not decode.
template <class Key, class Value, class Visitor>
void for_each_logged_op(std::span<const std::byte> payload, Visitor&& v) {
  try {
    storage::for_each_op<Key, Value>(payload, v);
  } catch (const storage_error& e) {
    throw replication_error(replication_errc::protocol, "decode batch", e.detail());
  }
}

/// The image of a snapshot: "lrsnap1", the key and value codec names (so a follower of other
/// types refuses it; a map with metadata names its codec beside the value's, as the durable
/// map's files do), for a map with metadata the snapshot's (u32 length, its encoding), the
/// entry count, then each entry's key and value through the codecs. snap: a map_reader's
/// guard (its entries and meta()).
template <class Key, class Value, class Meta, class Snapshot>
void encode_snapshot(const Snapshot& snap, std::string& out) {
  out.clear();
  byte_writer w(out);
  w.put_bytes("lrsnap1", 7);
  leftright::detail::builtin_codec<std::string>::encode(codec_name<Key>(), w);  // framing: see for_each_snapshot_entry
  leftright::detail::builtin_codec<std::string>::encode(storage::value_codec_name<Value, Meta>(), w);
  if constexpr (!std::is_same_v<Meta, no_meta>) storage::append_meta(w, snap.meta());
  const auto& t = snap;
  w.put_u64(t.size());
  for (const auto& [k, v] : t) {
    leftright::encode(k, w);
    leftright::encode(v, w);
  }
}

/// What for_each_snapshot_entry tells of the entry count when nobody asks.
struct ignore_count {
  void operator()(std::size_t) const noexcept {}
};

/// Calls f(key, value) for each entry of a snapshot image, after storing its metadata in *meta
/// (for a map with metadata) and telling on_count how many entries follow (to size a table
/// once; at most the bytes left, so that a damaged count cannot size a huge one); returns the
/// entry count. Throws replication_error (protocol) if the image is of other types or does not
/// decode.
template <class Key, class Value, class Meta = no_meta, class F, class OnCount = ignore_count>
std::uint64_t for_each_snapshot_entry(std::span<const std::byte> image, F&& f, Meta* meta = nullptr,
                                      OnCount&& on_count = {}) {
  try {
    byte_reader r(image);
    // The magic first: anything else (a log message sent to the wrong subject) is refused as
    // what it is, not by what its bytes happen to decode to.
    const auto magic = std::as_bytes(std::span<const char>("lrsnap1", 7));
    if (image.size() < magic.size() || !std::equal(magic.begin(), magic.end(), image.begin())) {
      throw replication_error(replication_errc::protocol, "decode snapshot",
                              "not a snapshot image (it does not start with \"lrsnap1\"; " +
                                  std::to_string(image.size()) + " bytes)");
    }
    r.get_bytes(magic.size(), "snapshot magic");
    // The codec names as the image's writer encoded them (builtin, not codec<std::string>: a
    // codec of the user's for strings must not change the image's own framing).
    const auto key_codec = leftright::detail::builtin_codec<std::string>::decode(r);
    const auto value_codec = leftright::detail::builtin_codec<std::string>::decode(r);
    const std::string want = storage::value_codec_name<Value, Meta>();
    if (key_codec != codec_name<Key>() || value_codec != want) {
      throw replication_error(replication_errc::protocol, "decode snapshot",
                              "not a snapshot of this map's types (it holds " + key_codec + ", " + value_codec +
                                  "; this map is " + codec_name<Key>() + ", " + want + ")");
    }
    if constexpr (!std::is_same_v<Meta, no_meta>) {
      Meta m = storage::decode_meta<Meta>(r.get_bytes(r.get_u32("metadata length"), "metadata"));
      if (meta != nullptr) *meta = std::move(m);
    }
    const std::uint64_t n = r.get_u64("entry count");
    on_count(static_cast<std::size_t>(std::min<std::uint64_t>(n, image.size() - r.position())));
    for (std::uint64_t i = 0; i < n; ++i) {
      Key k = leftright::decode<Key>(r);
      f(std::move(k), leftright::decode<Value>(r));
    }
    if (!r.empty()) {
      throw replication_error(replication_errc::protocol, "decode snapshot",
                              "trailing bytes after the last entry: " + storage::count_of_bytes(r.remaining()) +
                                  " from byte offset " + std::to_string(r.position()));
    }
    return n;
  } catch (const storage_error& e) {
    throw replication_error(replication_errc::protocol, "decode snapshot", e.detail());
  }
}

}  // namespace leftright::detail::replication
