// SPDX-License-Identifier: Apache-2.0
// leftright: codecs, how keys and values become bytes in the write-ahead log and in snapshots.
//
// The encoding is fixed and independent of the host: little-endian integers, IEEE-754 bit
// patterns, no padding. Decoding is bounds-checked: a truncated or corrupt input throws
// leftright::storage_error (operation "decode"), never reads past the end, and never allocates
// from a length it has not checked against the bytes that are actually there.
//
// Built-in codecs and their names (the name goes into every file header; a file written with
// one name is refused when opened with another):
//   bool                                "bool"        one byte, 0 or 1 (anything else: error)
//   integers of 1, 2, 4, 8 bytes        "u8".."u64",  two's complement, little-endian;
//                                       "i8".."i64"   named by size and signedness, so long and
//                                                     long long (LP64) share "i64"
//   enums with a fixed underlying type  "enum<u16>"   as the underlying type (any value of it
//     (enum E : std::uint16_t, enum class)            is accepted). An enum without one has no
//                                                     built-in codec: give it one, or a codec
//   float, double                       "f32", "f64"  the bit pattern (NaN payloads, -0.0 kept)
//   std::string                         "str"         u32 byte count, then the bytes
//   std::vector<T>, T arithmetic/enum   "vec<u32>"    u32 element count, then the elements
//                                                     (each through codec<T>, yours included)
//   std::pair<A, B>                     "pair<u64,str>"     A then B
//   std::tuple<Ts...>                   "tuple<u8,str,f32>" each element in order
// Strings and vectors carry a u32 count: one value is at most 4 GiB - 1 bytes (elements).
// Encoding a longer one throws storage_error (operation "encode").
//
// Your own type: specialize leftright::codec (or give a partial specialization; the second,
// defaulted parameter is there for std::enable_if if you prefer it to a requires-clause). A
// specialization, full or partial, may also cover a type that has a built-in codec (an enum whose
// values you validate, a family of your enums): it replaces the built-in codec for the types it
// covers, wherever they are encoded (in a vector, pair or tuple too). The built-in codecs are not
// specializations of codec (codec<T> inherits detail::builtin_codec<T>), so yours is never
// ambiguous with one. An element of a vector must encode to at least one byte.
//
//   struct my_point {
//     std::int32_t x, y;
//     std::string label;
//   };
//
//   template <>
//   struct leftright::codec<my_point> {
//     // Stable: change it whenever the encoding changes, so old files are refused, not misread.
//     static std::string name() { return "my_point/1"; }
//     static void encode(const my_point& p, leftright::byte_writer& w) {
//       leftright::encode(p.x, w);  // or leftright::codec<std::int32_t>::encode(p.x, w)
//       leftright::encode(p.y, w);
//       leftright::encode(p.label, w);
//     }
//     static my_point decode(leftright::byte_reader& r) {
//       my_point p;  // one statement per field: the order of evaluation is the wire order
//       p.x = leftright::decode<std::int32_t>(r);
//       p.y = leftright::decode<std::int32_t>(r);
//       p.label = leftright::decode<std::string>(r);
//       if (p.label.size() > 64) r.fail("my_point label longer than 64 bytes");  // validate
//       return p;
//     }
//   };
//
// decode() gets untrusted bytes (a torn or corrupt file): read through byte_reader only,
// check every count against r.remaining() before allocating for it, and reject values your type
// cannot hold with r.fail(...). encode() must be deterministic; both may be called from any
// thread, concurrently for different writers and readers.
#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "storage_error.hpp"

namespace leftright {

namespace detail {

/// Stores the low sizeof(U) bytes of v at p (any alignment), least significant first. The one
/// little-endian store of the library: codecs, batches and file headers all write through it.
template <class U>
void store_le(void* p, U v) noexcept {
  static_assert(std::is_unsigned_v<U>);
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &v, sizeof(U));
  } else {
    auto* b = static_cast<unsigned char*>(p);
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      b[i] = static_cast<unsigned char>(v >> (8 * i));
    }
  }
}

/// Loads a little-endian U from p (any alignment): store_le's inverse.
template <class U>
U load_le(const void* p) noexcept {
  static_assert(std::is_unsigned_v<U>);
  U v;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, p, sizeof(U));
  } else {
    const auto* b = static_cast<const unsigned char*>(p);
    v = 0;
    for (std::size_t i = sizeof(U); i-- > 0;) {
      v = static_cast<U>((v << 8) | static_cast<U>(b[i]));
    }
  }
  return v;
}

}  // namespace detail

/// Appends little-endian values to a std::string it does not own (so one buffer can be reused
/// across records: clear() it, keep its capacity).
/// Thread-safety: like the string it writes to. Cost: each put_* is an append of its size
/// (amortized O(1) growth; reserve() first to avoid even that).
class byte_writer {
 public:
  /// Appends to out, after what it already holds. out must outlive the writer.
  explicit byte_writer(std::string& out) noexcept : out_(&out) {}

  void put_u8(std::uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void put_u16(std::uint16_t v) { put_le(v); }
  void put_u32(std::uint32_t v) { put_le(v); }
  void put_u64(std::uint64_t v) { put_le(v); }
  /// Appends n raw bytes (no length prefix). data may be null if n == 0.
  void put_bytes(const void* data, std::size_t n) {
    if (n != 0) out_->append(static_cast<const char*>(data), n);
  }

  /// Makes room for extra more bytes without giving up geometric growth.
  void reserve(std::size_t extra) {
    const std::size_t need = out_->size() + extra;
    if (need > out_->capacity()) out_->reserve(std::max(need, 2 * out_->capacity()));
  }
  /// Bytes in the buffer, including any it held before this writer started.
  std::size_t size() const noexcept { return out_->size(); }
  /// The buffer written to.
  std::string& buffer() const noexcept { return *out_; }

 private:
  template <class U>
  void put_le(U v) {
    unsigned char b[sizeof(U)];
    detail::store_le(b, v);
    out_->append(reinterpret_cast<const char*>(b), sizeof(U));
  }

  std::string* out_;
};

/// Reads little-endian values from bytes it does not own, never past their end: a read that
/// would run past it throws storage_error (operation "decode", empty path, err 0) saying what was
/// being read, at which offset, and how many bytes were missing. After a throw the reader's
/// position is unchanged.
/// Thread-safety: one thread per reader; any number of readers over the same bytes.
/// Cost: each get_* is O(1) (get_bytes returns a view, no copy).
class byte_reader {
 public:
  explicit byte_reader(std::span<const std::byte> bytes) noexcept
      : data_(bytes.data()), size_(bytes.size()) {}
  /// data may be null if n == 0.
  byte_reader(const void* data, std::size_t n) noexcept
      : data_(static_cast<const std::byte*>(data)), size_(n) {}

  /// The what argument names the value in the error message ("string length", ...).
  std::uint8_t get_u8(const char* what = "u8") { return get_le<std::uint8_t>(what); }
  std::uint16_t get_u16(const char* what = "u16") { return get_le<std::uint16_t>(what); }
  std::uint32_t get_u32(const char* what = "u32") { return get_le<std::uint32_t>(what); }
  std::uint64_t get_u64(const char* what = "u64") { return get_le<std::uint64_t>(what); }
  /// The next n bytes, as a view into the input (valid as long as the input is).
  std::span<const std::byte> get_bytes(std::size_t n, const char* what = "bytes") {
    require(n, what);
    std::span<const std::byte> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }

  /// Throws (as a short read would) unless at least n bytes remain. Use it before allocating
  /// for a count read from the input.
  void require(std::size_t n, const char* what) const {
    if (n > remaining()) {
      fail("truncated input: reading " + std::string(what) + " needs " + std::to_string(n) +
           " bytes, " + std::to_string(remaining()) + " remain (" +
           std::to_string(n - remaining()) + " missing)");
    }
  }
  /// Throws storage_error("", "decode", 0, "<detail> at byte offset <position()>"): for decoders
  /// that find a value they cannot accept.
  [[noreturn]] void fail(std::string_view detail) const {
    std::string d(detail);
    d += " at byte offset ";
    d += std::to_string(pos_);
    throw storage_error({}, "decode", 0, std::move(d));
  }

  /// Bytes not read yet.
  std::size_t remaining() const noexcept { return size_ - pos_; }
  bool empty() const noexcept { return pos_ == size_; }
  /// Bytes read so far.
  std::size_t position() const noexcept { return pos_; }

 private:
  template <class U>
  U get_le(const char* what) {
    require(sizeof(U), what);
    const U v = detail::load_le<U>(data_ + pos_);
    pos_ += sizeof(U);
    return v;
  }

  const std::byte* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

namespace detail {
/// The library's own codecs (see the top of this header), specialized below. Unspecialized it
/// is empty: T has no built-in codec.
template <class T>
struct builtin_codec {};
}  // namespace detail

/// The specialization point: codec<T> says how T is written and read. Unspecialized it is the
/// built-in codec of T (detail::builtin_codec<T>), if there is one; otherwise it is empty, and T
/// is not encodable. A specialization provides
///   static std::string name();                      a stable name of the encoding
///   static void encode(const T&, byte_writer&);
///   static T decode(byte_reader&);                  throws storage_error on bad input
/// and replaces the built-in codec for the types it covers (a partial specialization too: the
/// built-in codecs are not specializations of codec, so they cannot make one ambiguous).
/// See the example at the top of this header.
template <class T, class Enable = void>
struct codec : detail::builtin_codec<T> {};

/// T has a usable codec<T>.
template <class T>
concept encodable = requires(const T& value, byte_writer& w, byte_reader& r) {
  { codec<T>::name() } -> std::convertible_to<std::string>;
  codec<T>::encode(value, w);
  { codec<T>::decode(r) } -> std::same_as<T>;
};

namespace detail {

/// T is an enum with a fixed underlying type (`enum E : std::uint8_t`, or an enum class, int
/// unless it says otherwise): every value of the underlying type is a value of T. (C++17 allows
/// direct-list-initialization from an integer exactly for those.)
template <class T>
concept fixed_enum = std::is_enum_v<T> && requires { T{std::underlying_type_t<T>{}}; };

/// Fails to compile, saying why, unless T is encodable.
template <class T>
constexpr void check_encodable() {
  constexpr bool unfixed_enum = std::is_enum_v<T> && !fixed_enum<T> && !encodable<T>;
  static_assert(!unfixed_enum,
                "leftright: an enum without a fixed underlying type has no built-in codec (it may hold "
                "only the values of its enumerators' range, and its underlying type changes as "
                "enumerators are added). Give it one (enum E : std::uint8_t { ... }) or specialize "
                "leftright::codec<E>.");
  static_assert(encodable<T> || unfixed_enum,
                "leftright: this type has no codec (or one of its element types has none; an enum "
                "needs a fixed underlying type). Specialize leftright::codec<T> with static "
                "std::string name(), static void encode(const T&, leftright::byte_writer&) and "
                "static T decode(leftright::byte_reader&); see the example at the top of "
                "<leftright/codec.hpp>.");
}

}  // namespace detail

/// Appends the encoding of value: codec<T>::encode(value, w), with a readable error if T has no
/// codec. Thread-safety and cost: those of the codec.
template <class T>
void encode(const T& value, byte_writer& w) {
  detail::check_encodable<T>();
  if constexpr (encodable<T>) codec<T>::encode(value, w);
}

/// Reads one T: codec<T>::decode(r). Throws storage_error if the bytes do not decode.
template <class T>
T decode(byte_reader& r) {
  detail::check_encodable<T>();
  if constexpr (encodable<T>) {
    return codec<T>::decode(r);
  } else {
    throw;  // not reached: the static_assert above has failed
  }
}

/// The name of T's encoding: codec<T>::name().
template <class T>
std::string codec_name() {
  detail::check_encodable<T>();
  if constexpr (encodable<T>) {
    return std::string(codec<T>::name());
  } else {
    return {};
  }
}

/// The encoding of value as a new string.
template <class T>
std::string encode_to_string(const T& value) {
  std::string out;
  byte_writer w(out);
  leftright::encode(value, w);
  return out;
}

/// Decodes exactly one T from bytes. Throws storage_error if they do not decode, or if bytes are
/// left over after the T.
template <class T>
T decode_all(std::span<const std::byte> bytes) {
  byte_reader r(bytes);
  T value = leftright::decode<T>(r);
  if (!r.empty()) {
    r.fail(std::to_string(r.remaining()) + " bytes left over after decoding " +
           codec_name<T>());
  }
  return value;
}
/// Same, over the bytes of a string (as encode_to_string returns them).
template <class T>
T decode_all(std::string_view bytes) {
  return decode_all<T>(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

// ----------------------------------------------------------------------------------------------
// Built-in codecs.

namespace detail {

template <std::size_t N>
struct uint_of_size;
template <>
struct uint_of_size<1> {
  using type = std::uint8_t;
};
template <>
struct uint_of_size<2> {
  using type = std::uint16_t;
};
template <>
struct uint_of_size<4> {
  using type = std::uint32_t;
};
template <>
struct uint_of_size<8> {
  using type = std::uint64_t;
};

template <class U>
void put_uint(byte_writer& w, U v) {
  if constexpr (sizeof(U) == 1) {
    w.put_u8(v);
  } else if constexpr (sizeof(U) == 2) {
    w.put_u16(v);
  } else if constexpr (sizeof(U) == 4) {
    w.put_u32(v);
  } else {
    w.put_u64(v);
  }
}

template <class U>
U get_uint(byte_reader& r, const char* what) {
  if constexpr (sizeof(U) == 1) {
    return r.get_u8(what);
  } else if constexpr (sizeof(U) == 2) {
    return r.get_u16(what);
  } else if constexpr (sizeof(U) == 4) {
    return r.get_u32(what);
  } else {
    return r.get_u64(what);
  }
}

/// "u8".."u64", "i8".."i64": the name of an integer of `bytes` bytes.
constexpr const char* int_name(bool is_signed, std::size_t bytes) {
  switch (bytes) {
    case 1: return is_signed ? "i8" : "u8";
    case 2: return is_signed ? "i16" : "u16";
    case 4: return is_signed ? "i32" : "u32";
    default: return is_signed ? "i64" : "u64";
  }
}

/// Writes the u32 count prefix of a string or vector, or throws if n does not fit in it.
inline void put_count(std::size_t n, byte_writer& w, const char* what) {
  if (n > std::numeric_limits<std::uint32_t>::max()) {
    throw storage_error({}, "encode", 0,
                        std::string(what) + " of " + std::to_string(n) +
                            " elements is longer than the codec limit of 4294967295");
  }
  w.put_u32(static_cast<std::uint32_t>(n));
}

/// put_count, after reserving room for the count and n elements of at least `each` bytes
/// (each <= 8). Over the limit it throws before reserving anything: storage_error ("encode"),
/// not std::bad_alloc, and no multi-GiB capacity left in a reused buffer.
inline void begin_count(byte_writer& w, std::size_t n, std::size_t each, const char* what) {
  if (n > std::numeric_limits<std::uint32_t>::max()) put_count(n, w, what);  // throws
  w.reserve(4 + n * each);  // n < 2^32: no overflow
  put_count(n, w, what);
}

/// The base of a built-in codec whose every value takes exactly Size bytes. Copy: those bytes
/// are the value's own bytes in memory on this host, so an array of them is one memcpy.
template <std::size_t Size, bool Copy>
struct fixed_size_codec {
  static constexpr std::size_t encoded_size = Size;
  static constexpr bool memcpy_able = Copy && std::endian::native == std::endian::little;
};

/// The codec in effect for T is the library's own, and a fixed-size one: an integer, bool,
/// float, double, or an enum whose underlying type's codec is all of that. A codec of the user's
/// (a specialization of codec<T>, full or partial) is never one, whatever it derives from.
template <class T>
concept builtin_fixed_codec = std::is_base_of_v<builtin_codec<T>, codec<T>> && requires {
  { builtin_codec<T>::encoded_size } -> std::convertible_to<std::size_t>;
  { builtin_codec<T>::memcpy_able } -> std::convertible_to<bool>;
};

/// fixed_size_codec as U's codec has it, if U's codec is a built-in fixed-size one; else empty.
template <class U>
struct same_fixed_size {};
template <builtin_fixed_codec U>
struct same_fixed_size<U> : fixed_size_codec<builtin_codec<U>::encoded_size, builtin_codec<U>::memcpy_able> {};

/// The fewest bytes one T takes: its size for a built-in fixed-size codec, else 1 (what a vector
/// of a user's codec requires: see codec<std::vector<T>>).
template <class T>
constexpr std::size_t min_encoded_size() {
  if constexpr (builtin_fixed_codec<T>) {
    return builtin_codec<T>::encoded_size;
  } else {
    return 1;
  }
}

/// T's bytes in memory on this host are exactly its encoding, so a vector<T> is one memcpy.
/// (Not bool: decoding must reject bytes other than 0 and 1. Not a user's codec: it may encode
/// and validate as it likes.)
template <class T>
constexpr bool bulk_copyable() {
  if constexpr (builtin_fixed_codec<T>) {
    return builtin_codec<T>::memcpy_able && sizeof(T) == builtin_codec<T>::encoded_size;
  } else {
    return false;
  }
}

/// Integers of 1, 2, 4 or 8 bytes (not bool): "u8".."u64", "i8".."i64"; two's complement,
/// little-endian.
template <class T>
  requires(std::integral<T> && !std::same_as<std::remove_cv_t<T>, bool> &&
           (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8))
struct builtin_codec<T> : fixed_size_codec<sizeof(T), true> {
  using unsigned_type = typename uint_of_size<sizeof(T)>::type;
  static constexpr const char* label = int_name(std::is_signed_v<T>, sizeof(T));

  static std::string name() { return label; }
  static void encode(const T& value, byte_writer& w) { put_uint(w, static_cast<unsigned_type>(value)); }
  static T decode(byte_reader& r) {
    return static_cast<T>(get_uint<unsigned_type>(r, label));  // modular (C++20)
  }
};

/// bool: "bool"; one byte, 0 or 1. Decoding any other byte throws.
template <>
struct builtin_codec<bool> : fixed_size_codec<1, false> {
  static std::string name() { return "bool"; }
  static void encode(const bool& value, byte_writer& w) { w.put_u8(static_cast<std::uint8_t>(value)); }
  static bool decode(byte_reader& r) {
    const std::uint8_t b = r.get_u8("bool");
    if (b > 1) r.fail("invalid bool byte " + std::to_string(b) + " (expected 0 or 1)");
    return b == 1;
  }
};

/// Enums with a fixed underlying type: "enum<" + the underlying type's name + ">"; encoded as
/// the underlying type. Decoding accepts every value of the underlying type (all of them are
/// values of such an enum; validate in your own codec if you need to). An enum without a fixed
/// underlying type has none: see fixed_enum.
template <class T>
  requires(fixed_enum<T> && encodable<std::underlying_type_t<T>>)
struct builtin_codec<T> : same_fixed_size<std::underlying_type_t<T>> {
  using underlying = std::underlying_type_t<T>;
  static std::string name() { return "enum<" + std::string(codec<underlying>::name()) + ">"; }
  static void encode(const T& value, byte_writer& w) { codec<underlying>::encode(static_cast<underlying>(value), w); }
  static T decode(byte_reader& r) { return static_cast<T>(codec<underlying>::decode(r)); }
};

/// float: "f32", the IEEE-754 bit pattern (NaN payloads and -0.0 survive).
template <>
struct builtin_codec<float> : fixed_size_codec<4, true> {
  static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4,
                "leftright: the float codec needs IEEE-754 binary32 floats");
  static std::string name() { return "f32"; }
  static void encode(const float& value, byte_writer& w) { w.put_u32(std::bit_cast<std::uint32_t>(value)); }
  static float decode(byte_reader& r) { return std::bit_cast<float>(r.get_u32("f32")); }
};

/// double: "f64", the IEEE-754 bit pattern (NaN payloads and -0.0 survive).
template <>
struct builtin_codec<double> : fixed_size_codec<8, true> {
  static_assert(std::numeric_limits<double>::is_iec559 && sizeof(double) == 8,
                "leftright: the double codec needs IEEE-754 binary64 doubles");
  static std::string name() { return "f64"; }
  static void encode(const double& value, byte_writer& w) { w.put_u64(std::bit_cast<std::uint64_t>(value)); }
  static double decode(byte_reader& r) { return std::bit_cast<double>(r.get_u64("f64")); }
};

/// std::string: "str"; a u32 byte count, then the bytes (any bytes, NUL included). At most
/// 4 GiB - 1 bytes; encoding a longer string throws storage_error (operation "encode").
template <>
struct builtin_codec<std::string> {
  static std::string name() { return "str"; }
  static void encode(const std::string& value, byte_writer& w) {
    begin_count(w, value.size(), 1, "string");
    w.put_bytes(value.data(), value.size());
  }
  static std::string decode(byte_reader& r) {
    const std::uint32_t n = r.get_u32("string length");
    const std::span<const std::byte> bytes = r.get_bytes(n, "string bytes");  // checks n first
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
};

/// std::vector<T>, T arithmetic or enum: "vec<" + T's name + ">"; a u32 element count, then the
/// elements, each as codec<T> writes it (a codec<T> of the user's included). The count is
/// checked against the bytes remaining before anything is allocated: n elements need n times
/// the size of a built-in codec's element, and at least n bytes for a user's codec, so an
/// element of a user's codec must encode to at least one byte (encoding a vector whose elements
/// take fewer bytes than there are elements throws storage_error, operation "encode"). At most
/// 2^32 - 1 elements.
template <class T>
  requires((std::is_arithmetic_v<T> || std::is_enum_v<T>) && encodable<T>)
struct builtin_codec<std::vector<T>> {
  static constexpr std::size_t element_size = min_encoded_size<T>();  // exact if builtin_fixed_codec<T>

  static std::string name() { return "vec<" + std::string(codec<T>::name()) + ">"; }
  static void encode(const std::vector<T>& value, byte_writer& w) {
    begin_count(w, value.size(), element_size, "vector");
    if constexpr (bulk_copyable<T>()) {
      w.put_bytes(value.data(), value.size() * sizeof(T));
    } else {
      const std::size_t start = w.size();
      for (const T x : value) codec<T>::encode(x, w);  // by value: vector<bool> has proxies
      if constexpr (!builtin_fixed_codec<T>) {
        if (w.size() - start < value.size()) {
          throw storage_error({}, "encode", 0,
                              "vector of " + std::to_string(value.size()) + " elements of " +
                                  std::string(codec<T>::name()) + " encoded to " +
                                  std::to_string(w.size() - start) +
                                  " bytes: a vector's elements must encode to at least one byte each");
        }
      }
    }
  }
  static std::vector<T> decode(byte_reader& r) {
    const std::uint32_t n = r.get_u32("vector length");
    // Compared by division, so n * element_size cannot overflow; after this it is <= remaining.
    if (n > r.remaining() / element_size) {
      const std::uint64_t need = std::uint64_t{n} * element_size;  // <= 2^35: no overflow
      r.fail("truncated input: reading " + std::to_string(n) + " vector elements needs " +
             (builtin_fixed_codec<T> ? "" : "at least ") + std::to_string(need) + " bytes, " +
             std::to_string(r.remaining()) + " remain (" + std::to_string(need - r.remaining()) + " missing)");
    }
    std::vector<T> out;
    if constexpr (bulk_copyable<T>()) {
      const std::span<const std::byte> bytes = r.get_bytes(n * element_size, "vector elements");
      out.resize(n);
      if (n != 0) std::memcpy(out.data(), bytes.data(), bytes.size());
    } else {
      out.reserve(n);
      for (std::uint32_t i = 0; i < n; ++i) out.push_back(codec<T>::decode(r));
    }
    return out;
  }
};

/// std::pair<A, B>: "pair<" + A's name + "," + B's name + ">"; first, then second.
template <encodable A, encodable B>
struct builtin_codec<std::pair<A, B>> {
  static std::string name() {
    return "pair<" + std::string(codec<A>::name()) + "," + std::string(codec<B>::name()) + ">";
  }
  static void encode(const std::pair<A, B>& value, byte_writer& w) {
    codec<A>::encode(value.first, w);
    codec<B>::encode(value.second, w);
  }
  static std::pair<A, B> decode(byte_reader& r) {
    A first = codec<A>::decode(r);  // two statements: first is read first
    B second = codec<B>::decode(r);
    return std::pair<A, B>(std::move(first), std::move(second));
  }
};

/// std::tuple<Ts...>: "tuple<" + the names, comma-separated, + ">" ("tuple<>" for none); the
/// elements in order.
template <encodable... Ts>
struct builtin_codec<std::tuple<Ts...>> {
  static std::string name() {
    std::string n = "tuple<";
    [[maybe_unused]] bool first = true;
    ((n += first ? "" : ",", n += std::string(codec<Ts>::name()), first = false), ...);
    n += '>';
    return n;
  }
  static void encode(const std::tuple<Ts...>& value, byte_writer& w) {
    std::apply([&](const Ts&... elements) { (codec<Ts>::encode(elements, w), ...); }, value);
  }
  static std::tuple<Ts...> decode([[maybe_unused]] byte_reader& r) {
    // A braced initializer list is evaluated left to right: the elements are read in order.
    return std::tuple<Ts...>{codec<Ts>::decode(r)...};
  }
};

}  // namespace detail

}  // namespace leftright
