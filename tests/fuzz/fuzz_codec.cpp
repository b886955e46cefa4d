// SPDX-License-Identifier: Apache-2.0
// Fuzzes every built-in codec's decoder. The first byte picks the type (fuzz_support.hpp's
// codec_types), the rest is decoded as that type. Properties: decoding ends in a value or a
// storage_error (operation "decode"); the encoding is canonical (re-encoding a decoded value
// gives back exactly the bytes it was read from, and those decode again); decode_all succeeds
// exactly when the decoded value used every byte.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include <leftright/codec.hpp>

#include "fuzz_support.hpp"

namespace {

template <class T>
void fuzz_one(std::span<const std::byte> in) {
  leftright::byte_reader r(in);
  std::optional<T> v;
  try {
    v.emplace(leftright::decode<T>(r));
  } catch (const leftright::storage_error& e) {
    lrfuzz::check_decode_error(e);
  }
  if (v) {
    const std::size_t used = r.position();
    lrfuzz::check(used <= in.size(), "the reader went past the end of its input");
    const std::string again = leftright::encode_to_string(*v);
    lrfuzz::check(again.size() == used && (used == 0 || std::memcmp(again.data(), in.data(), used) == 0),
                  "re-encoding a decoded value gives other bytes");
    try {
      const T w = leftright::decode_all<T>(again);
      lrfuzz::check(leftright::encode_to_string(w) == again, "a round trip changed the encoding");
    } catch (const leftright::storage_error&) {
      lrfuzz::fail("the encoding of a decoded value does not decode");
    }
  }
  bool whole = true;
  try {
    (void)leftright::decode_all<T>(in);
  } catch (const leftright::storage_error& e) {
    lrfuzz::check_decode_error(e);
    whole = false;
  }
  lrfuzz::check(whole == (v && r.position() == in.size()),
                "decode_all disagrees with decode about the same bytes");
}

template <std::size_t... I>
constexpr auto make_table(std::index_sequence<I...>) {
  return std::array<void (*)(std::span<const std::byte>), sizeof...(I)>{
      &fuzz_one<std::tuple_element_t<I, lrfuzz::codec_types>>...};
}
constexpr auto table = make_table(std::make_index_sequence<lrfuzz::codec_type_count>());

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  table[data[0] % table.size()](std::as_bytes(std::span(data + 1, size - 1)));
  return 0;
}
