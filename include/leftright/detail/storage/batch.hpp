// SPDX-License-Identifier: Apache-2.0
// leftright: a published batch as a log payload (the codec of the durable map's records, and of
// a replicated map's messages): encoding a batch, checking a payload, walking its operations,
// applying them.
//
// The payload (format.hpp): a u32 operation count, then per operation a u8 tag and its fields,
// each through its codec (codec.hpp):
//   1 insert_or_assign: key, value   2 insert: key, value   3 erase: key   4 clear
//   5 set_meta: u32 length, the metadata (Traits::meta_type) through its codec; the batch's last
// erase_if is logged as the erases its first application made; reserve is not logged (it
// changes nothing a reader can see). The metadata goes last: a batch labels its whole state.
//
// Two walks, one per direction, each with its fields read or written through a small policy:
//   write_ops(ops, sink)     the in-memory batch, as the operations it logs. Sinks: size_sink
//                            (counts bytes), raw_sink (built-in integers, in place), codec_sink
//                            (through the codecs, into a buffer).
//   walk_ops(fields, visitor) a payload's operations, in order, to visitor.assign(key, value),
//                            insert(key, value), erase(key), clear(), and meta(bytes) for a
//                            visitor that takes metadata (decode_meta). Field sources:
//                            codec_fields (bounds-checked; a malformed payload throws, saying
//                            what is wrong), sized_fields (checks a built-in-integer payload's
//                            structure without reading a field), raw_fields (reads a checked
//                            built-in-integer payload in place, no bounds check per field).
// Built-in integer keys and values (builtin_int_codec) take the in-place policies: the same
// bytes, about twice as fast as the codec path (a batch that sets metadata takes the codec path). Adding an operation kind touches two places:
// write_ops (what the in-memory operation logs) and walk_ops (what its tag reads), plus a tag
// below and a member in the visitors.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../../codec.hpp"
#include "../../storage_error.hpp"
#include "../slot_order.hpp"  // keyed_op, placed_op
#include "format.hpp"

namespace leftright::detail::storage {

/// Keys or values whose codec is the built-in integer one (not a codec of the user's for an
/// integer type): sizeof(T) little-endian bytes. Their batches are sized before they are written,
/// in place, and read in place once checked.
template <class T>
concept builtin_int_codec = std::integral<T> && !std::same_as<std::remove_cv_t<T>, bool> &&
                            builtin_fixed_codec<T> && requires { typename codec<T>::unsigned_type; };

/// Both a batch's keys and values are built-in integers (the in-place policies apply).
template <class Key, class Value>
inline constexpr bool builtin_batch = builtin_int_codec<Key> && builtin_int_codec<Value>;

/// What receives a payload's operations from walk_ops() and for_each_op(), in order. A visitor
/// may also take a batch's metadata, as v.meta(std::span<const std::byte>) (its encoding:
/// decode_meta); one that does not skips it.
template <class V, class Key, class Value>
concept batch_visitor = requires(V& v, Key k, Value x) {
  v.assign(std::move(k), std::move(x));  // 1: insert_or_assign
  v.insert(std::move(k), std::move(x));  // 2: insert (only if absent)
  v.erase(std::move(k));                 // 3
  v.clear();                             // 4
};

// ---- Encoding: one walk over the in-memory batch, three sinks. ----

/// Writes each operation the batch logs to sink (sink.tag(op_tag), then sink.field(x) for its
/// key and value), in order; returns how many it wrote.
template <class Ops, class Sink>
std::uint64_t write_ops(const std::vector<typename Ops::op>& ops, Sink& sink) {
  std::uint64_t count = 0;
  const auto keyed = [&](op_tag tag, const auto& key, const auto*... value) {
    sink.tag(tag);
    sink.field(key);
    (sink.field(*value), ...);
    ++count;
  };
  for (const auto& o : ops) {
    std::visit(
        [&](const auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, typename Ops::assign_op>) {
            keyed(op_tag::insert_or_assign, x.key, &x.value);
          } else if constexpr (std::is_same_v<X, typename Ops::insert_op>) {
            keyed(op_tag::insert, x.key, &x.value);
          } else if constexpr (std::is_same_v<X, typename Ops::erase_op>) {
            keyed(op_tag::erase, x.key);
          } else if constexpr (std::is_same_v<X, typename Ops::erase_if_op>) {
            for (const auto& k : x.s->erased) keyed(op_tag::erase, k);  // recorded at the first application
          } else if constexpr (std::is_same_v<X, typename Ops::clear_op>) {
            sink.tag(op_tag::clear);
            ++count;
          }  // reserve_op: nothing to log
        },
        o);
  }
  return count;
}

/// Counts the bytes write_ops() writes for built-in integer fields.
struct size_sink {
  std::size_t bytes = 4;  // the count
  void tag(op_tag) noexcept { ++bytes; }
  template <class T>
  void field(const T&) noexcept {
    bytes += sizeof(T);
  }
};

/// Writes built-in integer fields in place (memory size_sink measured).
struct raw_sink {
  unsigned char* p;
  void tag(op_tag t) noexcept { *p++ = static_cast<unsigned char>(t); }
  template <class T>
  void field(const T& x) noexcept {
    store_le(p, static_cast<typename codec<T>::unsigned_type>(x));
    p += sizeof(T);
  }
};

/// Appends fields through their codecs.
struct codec_sink {
  byte_writer w;
  void tag(op_tag t) { w.put_u8(static_cast<std::uint8_t>(t)); }
  template <class T>
  void field(const T& x) {
    leftright::encode(x, w);
  }
};

/// The payload size of a batch of built-in integer keys and values, and its operation count
/// (write_builtin_batch then writes it in place, into the log's mapping).
template <class Ops>
std::pair<std::size_t, std::uint64_t> builtin_batch_size(const std::vector<typename Ops::op>& ops) noexcept {
  size_sink sink;
  const std::uint64_t count = write_ops<Ops>(ops, sink);
  return {sink.bytes, count};
}

/// Writes the payload builtin_batch_size() measured (count: its second) at dst: byte for byte
/// what encode_batch() writes.
template <class Ops>
void write_builtin_batch(const std::vector<typename Ops::op>& ops, std::uint64_t count, std::byte* dst) noexcept {
  raw_sink sink{reinterpret_cast<unsigned char*>(dst)};
  store_le(sink.p, static_cast<std::uint32_t>(count));  // a u32 on the wire
  sink.p += 4;
  write_ops<Ops>(ops, sink);
}

/// Appends metadata as a batch and a snapshot carry it: u32 length, then its codec's encoding.
/// Throws what the codec throws, and storage_error ("encode") past 4 GiB - 1 bytes.
template <class Meta>
void append_meta(byte_writer& w, const Meta& m) {
  const std::size_t at = w.size();
  w.put_u32(0);  // the length, patched below
  leftright::encode(m, w);
  const std::size_t len = w.size() - at - 4;
  if (len > UINT32_MAX) throw storage_error({}, "encode", 0, "metadata longer than 4 GiB - 1 bytes");
  store_le(w.buffer().data() + at, static_cast<std::uint32_t>(len));
}

/// "1 byte", "2 bytes".
inline std::string count_of_bytes(std::size_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

/// Metadata from the bytes append_meta() wrote after its length. Throws storage_error
/// ("decode") if they do not decode to exactly one Meta.
template <class Meta>
Meta decode_meta(std::span<const std::byte> bytes) {
  byte_reader r(bytes);
  Meta m = leftright::decode<Meta>(r);
  if (!r.empty()) {
    throw storage_error({}, "decode", 0,
                        "trailing bytes after the metadata: " + count_of_bytes(r.remaining()) + " from byte offset " +
                            std::to_string(r.position()) + " of its encoding");
  }
  return m;
}

/// Encodes a batch into out (cleared first) through the codecs, with the metadata it sets last
/// (meta: null if it sets none). Cost: O(encoded bytes).
/// Throws what a codec throws (out then holds part of a payload: log nothing).
template <class Ops, class Meta = void>
void encode_batch(const std::vector<typename Ops::op>& ops, std::string& out, const Meta* meta = nullptr) {
  out.clear();
  codec_sink sink{byte_writer(out)};
  sink.w.put_u32(0);  // the count, patched below
  std::uint64_t count = write_ops<Ops>(ops, sink);
  if constexpr (!std::is_void_v<Meta>) {
    if (meta != nullptr) {
      sink.tag(op_tag::set_meta);
      append_meta(sink.w, *meta);
      ++count;
    }
  }
  store_le(out.data(), static_cast<std::uint32_t>(count));
}

// ---- Decoding: one walk over a payload, three field sources. ----

/// Reads each operation of a payload from `in` and hands it to v, in order (see the top of this
/// file). What a malformed payload does is the field source's to decide.
template <class Fields, class Visitor>
void walk_ops(Fields& in, Visitor& v) {
  const std::uint32_t n = in.count();
  for (std::uint32_t i = 0; i < n && in.ok(); ++i) {
    const std::uint8_t tag = in.tag();
    switch (static_cast<op_tag>(tag)) {
      case op_tag::insert_or_assign: {
        auto key = in.key();  // fields in their order: the key first
        v.assign(std::move(key), in.value());
        break;
      }
      case op_tag::insert: {
        auto key = in.key();
        v.insert(std::move(key), in.value());
        break;
      }
      case op_tag::erase: v.erase(in.key()); break;
      case op_tag::clear: v.clear(); break;
      case op_tag::set_meta: {
        const std::span<const std::byte> bytes = in.blob();
        if constexpr (requires { v.meta(bytes); }) v.meta(bytes);
        break;
      }
      default: in.bad_tag(tag, i, n); break;
    }
  }
  in.finish();
}

/// Fields through the codecs, never read past the payload: a malformed one throws storage_error.
template <class Key, class Value>
class codec_fields {
 public:
  explicit codec_fields(std::span<const std::byte> payload) noexcept : r_(payload) {}
  std::uint32_t count() { return count_ = r_.get_u32("operation count"); }
  static constexpr bool ok() noexcept { return true; }
  std::uint8_t tag() { return r_.get_u8("operation tag"); }
  Key key() { return leftright::decode<Key>(r_); }
  Value value() { return leftright::decode<Value>(r_); }
  std::span<const std::byte> blob() { return r_.get_bytes(r_.get_u32("metadata length"), "metadata"); }
  /// i: the operation's index (from 0) among n.
  [[noreturn]] void bad_tag(std::uint8_t tag, std::uint32_t i, std::uint32_t n) const {
    throw storage_error({}, "decode", 0,
                        "unknown operation tag " + std::to_string(tag) + " in operation " + std::to_string(i + 1) +
                            " of " + std::to_string(n) + ", at byte offset " + std::to_string(r_.position() - 1));
  }
  void finish() const {
    if (!r_.empty()) {
      throw storage_error({}, "decode", 0,
                          "trailing bytes after the batch's " + std::to_string(count_) +
                              " operations: " + count_of_bytes(r_.remaining()) + " from byte offset " +
                              std::to_string(r_.position()));
    }
  }

 private:
  byte_reader r_;
  std::uint32_t count_ = 0;
};

/// A built-in integer's encoding at p (the caller checked the bytes are there).
template <class T>
T load_builtin(const std::byte* p) noexcept {
  return static_cast<T>(load_le<typename codec<T>::unsigned_type>(p));  // modular, as codec<T>
}

/// The structure of a built-in-integer payload (count, tags, lengths), no field read: ok() is
/// false once something does not fit. Keys and values come out as 0.
template <class Key, class Value>
class sized_fields {
 public:
  explicit sized_fields(std::span<const std::byte> payload) noexcept : p_(payload) {}
  std::uint32_t count() noexcept { return take(4) ? load_le<std::uint32_t>(p_.data()) : 0; }
  bool ok() const noexcept { return ok_; }
  std::uint8_t tag() noexcept { return take(1) ? std::to_integer<std::uint8_t>(p_[off_ - 1]) : 0; }
  Key key() noexcept {
    take(sizeof(Key));
    return Key{};
  }
  Value value() noexcept {
    take(sizeof(Value));
    return Value{};
  }
  std::span<const std::byte> blob() noexcept {
    if (take(4)) take(load_le<std::uint32_t>(p_.data() + off_ - 4));
    return {};
  }
  void bad_tag(std::uint8_t, std::uint32_t, std::uint32_t) noexcept { ok_ = false; }
  void finish() noexcept { ok_ = ok_ && off_ == p_.size(); }

 private:
  bool take(std::size_t n) noexcept {
    ok_ = ok_ && n <= p_.size() - off_;
    if (ok_) off_ += n;
    return ok_;
  }
  std::span<const std::byte> p_;
  std::size_t off_ = 0;
  bool ok_ = true;
};

/// Fields of a built-in-integer payload that check_builtin_batch() accepted, read in place: no
/// bounds check per field.
template <class Key, class Value>
class raw_fields {
 public:
  explicit raw_fields(std::span<const std::byte> payload) noexcept : p_(payload.data()) {}
  std::uint32_t count() noexcept { return take<std::uint32_t>(); }
  static constexpr bool ok() noexcept { return true; }
  std::uint8_t tag() noexcept { return std::to_integer<std::uint8_t>(*p_++); }
  Key key() noexcept { return take<Key>(); }
  Value value() noexcept { return take<Value>(); }
  std::span<const std::byte> blob() noexcept {
    const auto n = take<std::uint32_t>();
    const std::span<const std::byte> out(p_, n);
    p_ += n;
    return out;
  }
  static void bad_tag(std::uint8_t, std::uint32_t, std::uint32_t) noexcept {}  // checked: there is none
  static void finish() noexcept {}

 private:
  template <class T>
  T take() noexcept {
    const T v = load_builtin<T>(p_);
    p_ += sizeof(T);
    return v;
  }
  const std::byte* p_;
};

/// What check_builtin_batch() found: bad (the payload does not check: the codec path then says
/// exactly what is wrong), keyed (every operation is on one key), unkeyed (it checks and holds
/// a clear or metadata).
enum class batch_check { bad, keyed, unkeyed };

/// A visitor that only notes whether a batch holds an operation on no one key.
template <class Key, class Value>
struct unkeyed_finder {
  bool seen = false;
  void assign(Key&&, Value&&) noexcept {}
  void insert(Key&&, Value&&) noexcept {}
  void erase(Key&&) noexcept {}
  void clear() noexcept { seen = true; }
  void meta(std::span<const std::byte>) noexcept { seen = true; }
};

/// Checks a built-in-integer payload's structure, so that raw_fields can read it.
template <class Key, class Value>
batch_check check_builtin_batch(std::span<const std::byte> payload) noexcept {
  unkeyed_finder<Key, Value> v;
  sized_fields<Key, Value> in(payload);
  walk_ops(in, v);
  if (!in.ok()) return batch_check::bad;
  return v.seen ? batch_check::unkeyed : batch_check::keyed;
}

/// Calls v.assign(key, value), v.insert(key, value), v.erase(key) or v.clear() for each operation
/// of a logged batch's payload, in order: what a follower of a replicated map uses to replay a
/// record through its map_writer (assign as insert_or_assign, insert, erase, clear), and what
/// recovery uses to apply one to its table. Built-in integer payloads are checked whole first and
/// then read in place; others are decoded as they are walked.
/// Throws storage_error (operation "decode") if the payload is malformed: an unknown tag, a field
/// that does not decode, a count that does not match, trailing bytes. A built-in integer payload
/// then delivers nothing; another may have delivered the operations before the fault (a writer
/// replaying it discards them: map_writer::discard()). Progress: O(payload).
template <class Key, class Value, class Visitor>
  requires batch_visitor<Visitor, Key, Value>
void for_each_op(std::span<const std::byte> payload, Visitor&& v) {
  if constexpr (builtin_batch<Key, Value>) {
    if (check_builtin_batch<Key, Value>(payload) != batch_check::bad) {
      raw_fields<Key, Value> in(payload);
      walk_ops(in, v);
      return;
    }
    // It does not check: the codec path reads the same structure and throws, saying what is
    // wrong, before anything is delivered.
    codec_fields<Key, Value> probe(payload);
    unkeyed_finder<Key, Value> none;
    walk_ops(probe, none);
  }
  codec_fields<Key, Value> in(payload);
  walk_ops(in, v);
}

/// A visitor that applies operations to a plain, single-threaded table (an absl map), and a
/// batch's metadata to *meta_out (Meta void: the map has none).
template <class Table, class Meta = void>
struct table_visitor {
  Table& t;
  Meta* meta_out = nullptr;
  template <class K, class V>
  void assign(K&& key, V&& value) {
    t.insert_or_assign(std::forward<K>(key), std::forward<V>(value));
  }
  template <class K, class V>
  void insert(K&& key, V&& value) {
    t.try_emplace(std::forward<K>(key), std::forward<V>(value));
  }
  template <class K>
  void erase(const K& key) {
    t.erase(key);
  }
  void clear() { t.clear(); }
  void meta(std::span<const std::byte> bytes)
    requires(!std::is_void_v<Meta>)
  {
    *meta_out = decode_meta<Meta>(bytes);
  }
};

/// Applies a logged batch to a plain, single-threaded table (a recovering map), and the
/// metadata it sets, if any, to *meta (null, Meta void: the map has none). Throws as
/// for_each_op().
template <class Key, class Value, class Table, class Meta = void>
void apply_batch(Table& t, std::span<const std::byte> payload, Meta* meta = nullptr) {
  for_each_op<Key, Value>(payload, table_visitor<Table, Meta>{t, meta});
}

/// Calls f(p) with the place of each operation of a built-in-integer payload that
/// check_builtin_batch() found keyed, in order: the places apply_in_place_in_slot_order
/// (slot_order.hpp) takes; decode_keyed_op() reads an operation back from its place.
template <class Key, class Value, class F>
void for_each_keyed_op_place(std::span<const std::byte> payload, F&& f) {
  const std::byte* p = payload.data();
  const std::uint32_t n = load_builtin<std::uint32_t>(p);
  p += sizeof(std::uint32_t);
  for (std::uint32_t i = 0; i < n; ++i) {
    f(static_cast<const std::byte*>(p));
    // checked keyed: each tag is an insert_or_assign or an insert (key, value) or an erase (key)
    p += 1 + sizeof(Key) + (static_cast<op_tag>(std::to_integer<std::uint8_t>(*p)) == op_tag::erase ? 0 : sizeof(Value));
  }
}

/// The operation of a checked keyed built-in-integer payload at p (a place
/// for_each_keyed_op_place() gave; an erase's value is 0).
template <class Key, class Value>
placed_op<Key, Value> decode_keyed_op(const std::byte* p) noexcept {
  const auto tag = static_cast<op_tag>(std::to_integer<std::uint8_t>(*p));
  const Key key = load_builtin<Key>(p + 1);
  switch (tag) {
    case op_tag::insert_or_assign: return {keyed_op::insert_or_assign, key, load_builtin<Value>(p + 1 + sizeof(Key))};
    case op_tag::insert: return {keyed_op::insert, key, load_builtin<Value>(p + 1 + sizeof(Key))};
    default: return {keyed_op::erase, key, Value{}};  // checked: an erase
  }
}

}  // namespace leftright::detail::storage
