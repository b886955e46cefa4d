// SPDX-License-Identifier: Apache-2.0
// leftright replication machinery: a replica's state as the engine holds it (the newest snapshot, then the
// log after it) read into a plain table, and the map writer a replica starts from it.
#pragma once

#include <nats/nats.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "../../durable_map.hpp"
#include "../../map.hpp"
#include "../../replication_error.hpp"
#include "../storage/crc32c.hpp"
#include "../storage/replay.hpp"
#include "batch_bridge.hpp"
#include "nats.hpp"

namespace leftright::detail::replication {

/// Applies a logged batch to a plain table (loading; its metadata to *meta_out) or queues it on
/// a writer (following; its metadata through set_meta).
template <class Target, class Meta = no_meta>
struct apply_visitor {
  Target& t;
  Meta* meta_out = nullptr;
  template <class K, class V>
  void assign(K&& k, V&& v) { t.insert_or_assign(std::forward<K>(k), std::forward<V>(v)); }
  template <class K, class V>
  void insert(K&& k, V&& v) {
    if constexpr (requires { t.try_emplace(std::forward<K>(k), std::forward<V>(v)); }) {
      t.try_emplace(std::forward<K>(k), std::forward<V>(v));
    } else {
      t.insert(std::forward<K>(k), std::forward<V>(v));
    }
  }
  template <class K>
  void erase(K&& k) { t.erase(std::forward<K>(k)); }
  void clear() { t.clear(); }
  void meta(std::span<const std::byte> bytes)
    requires(!std::is_same_v<Meta, no_meta>)
  {
    Meta m = decode_logged_meta<Meta>(bytes);
    if constexpr (requires { t.set_meta(std::move(m)); }) {
      t.set_meta(std::move(m));
    } else {
      *meta_out = std::move(m);
    }
  }
};

/// The bytes of a message.
inline std::span<const std::byte> message_bytes(natsMsg* m) noexcept {
  return {reinterpret_cast<const std::byte*>(natsMsg_GetData(m)), static_cast<std::size_t>(natsMsg_GetDataLength(m))};
}

/// The newest snapshot's image (its chunks joined); empty pointer: none. Throws
/// replication_error (protocol) if a chunk is gone (a newer snapshot replaced it: retry).
inline std::string read_snapshot_image(channel& ch, const snapshot_pointer& p) {
  std::string image;
  image.reserve(static_cast<std::size_t>(p.bytes));
  for (std::uint64_t i = 0; i < p.chunks; ++i) {
    msg_ptr m = ch.get(ch.snap_stream(), p.first_seq + i);
    if (!m) throw replication_error(replication_errc::protocol, "read snapshot", "chunk " + std::to_string(i) + " is gone");
    const auto b = message_bytes(m.get());
    image.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  if (image.size() != p.bytes) throw replication_error(replication_errc::protocol, "read snapshot", "size mismatch");
  if (p.crc && crc32c(image.data(), image.size()) != *p.crc) {
    throw replication_error(replication_errc::protocol, "read snapshot", "checksum mismatch");
  }
  return image;
}

/// Loads the newest snapshot into t and meta; returns its version (0: none).
template <class Key, class Value, class Table, class Meta>
std::uint64_t load_snapshot(channel& ch, Table& t, Meta& meta) {
  const snapshot_pointer p = ch.snapshot();
  if (p.version == 0) return 0;
  const std::string image = read_snapshot_image(ch, p);
  for_each_snapshot_entry<Key, Value, Meta>(
      std::as_bytes(std::span(image.data(), image.size())),
      [&t](Key&& k, Value&& v) { t.insert_or_assign(std::move(k), std::move(v)); }, &meta,
      [&t](std::size_t n) { reserve_room(t, n); });  // sized once (see map_ops.hpp)
  return p.version;
}

/// Applies the log's messages from `from` through `to` to t and meta. Throws protocol if one is
/// missing.
template <class Key, class Value, class Table, class Meta>
void load_log(channel& ch, Table& t, Meta& meta, std::uint64_t from, std::uint64_t to) {
  apply_visitor<Table, Meta> v{t, &meta};
  for (std::uint64_t seq = from; seq <= to; ++seq) {
    msg_ptr m = ch.get(ch.log_stream(), seq);
    if (!m) {
      throw replication_error(replication_errc::protocol, "load log",
                              "version " + std::to_string(seq) + " is neither in the log nor in a snapshot");
    }
    for_each_logged_op<Key, Value>(message_bytes(m.get()), v);
  }
}

/// A replica's map writer: a map_writer that can jump forward to a snapshot's version.
template <class Key, class Value, class Hash, class Eq, class Traits>
class replica_writer : public map_writer<Key, Value, Hash, Eq, Traits> {
  using base = map_writer<Key, Value, Hash, Eq, Traits>;

 public:
  using base::base;
  using base::skip_to;
};

/// A map writer whose two copies start as t, at version, labelled meta.
template <class Key, class Value, class Hash, class Eq, class Traits, class Table>
replica_writer<Key, Value, Hash, Eq, Traits> make_writer_at(Table&& t, std::uint64_t version,
                                                            const typename meta_of<Traits>::type& meta = {}) {
  using ops = map_ops_for<Key, Value, Hash, Eq, Traits>;
  return replica_writer<Key, Value, Hash, Eq, Traits>(
      storage::recovered_core<ops, Traits>(std::forward<Table>(t), version, meta));
}

/// A replica's state as the engine holds it (the newest snapshot, then the log through `last`)
/// in a plain table and its metadata; returns the snapshot's version. Throws protocol if the
/// log ends before the snapshot or has a hole.
template <class Key, class Value, class Table, class Meta>
std::uint64_t load_state(channel& ch, Table& t, Meta& meta, std::uint64_t last) {
  const std::uint64_t snap = load_snapshot<Key, Value>(ch, t, meta);
  if (last < snap) {
    throw replication_error(replication_errc::protocol, "open leader",
                            "the log ends at " + std::to_string(last) + ", before the snapshot at " +
                                std::to_string(snap) + " (the engine lost its tail)");
  }
  load_log<Key, Value>(ch, t, meta, snap + 1, last);
  return snap;
}

/// A leader's state through the log's last version: from its local copy at version `local`
/// and the log after it, or, where the engine purged that far (or there is no copy), from the
/// engine's snapshot and log (load_state). t and meta hold the local copy's state.
template <class Key, class Value, class Table, class Meta>
void load_leader_state(channel& ch, Table& t, Meta& meta, std::uint64_t local, const log_range& range) {
  if (local != 0 && range.first <= local + 1) return load_log<Key, Value>(ch, t, meta, local + 1, range.last);
  t.clear();
  meta = Meta{};
  load_state<Key, Value>(ch, t, meta, range.last);
}

}  // namespace leftright::detail::replication
