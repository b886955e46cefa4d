// SPDX-License-Identifier: Apache-2.0
#include "trace.hpp"

#include <charconv>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace leftright::cachesim {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(absl::StrFormat("cannot open trace %s", path));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error(absl::StrFormat("cannot read trace %s", path));
  return bytes;
}

[[noreturn]] void fail(const std::string& path, std::string_view what) {
  throw std::runtime_error(absl::StrFormat("cannot decompress %s: %s", path, what));
}

std::string unzstd(const std::string& path, const std::string& in) {
  ZSTD_DStream* stream = ZSTD_createDStream();
  std::string out;
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  // ZSTD_decompressStream returns 0 once a frame is complete and flushed; nonzero with all the
  // input consumed means the decoder may still hold output (a full output chunk): call it again.
  std::size_t last = 0;
  while (src.pos < src.size || last != 0) {
    const std::size_t in_before = src.pos;
    ZSTD_outBuffer dst{chunk.data(), chunk.size(), 0};
    last = ZSTD_decompressStream(stream, &dst, &src);
    if (ZSTD_isError(last)) {
      ZSTD_freeDStream(stream);
      fail(path, ZSTD_getErrorName(last));
    }
    out.append(chunk.data(), dst.pos);
    // No input taken and no output made: the frame needs input that is not there.
    if (src.pos == in_before && dst.pos == 0 && src.pos == src.size) break;
  }
  ZSTD_freeDStream(stream);
  if (last != 0) fail(path, "truncated zstd frame");
  return out;
}

std::string gunzip(const std::string& path, const std::string& in) {
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) fail(path, "inflateInit2");
  std::string out;
  std::string chunk(1 << 16, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  stream.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk.data());
    stream.avail_out = static_cast<uInt>(chunk.size());
    rc = inflate(&stream, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&stream);
      fail(path, absl::StrFormat("zlib error %d", rc));
    }
    out.append(chunk.data(), chunk.size() - stream.avail_out);
    // Concatenated gzip members: start the next one.
    if (rc == Z_STREAM_END && stream.avail_in > 0) {
      inflateReset(&stream);
      rc = Z_OK;
    }
  }
  inflateEnd(&stream);
  return out;
}

std::string unxz(const std::string& path, const std::string& in) {
  lzma_stream stream = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&stream, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK) {
    fail(path, "lzma_stream_decoder");
  }
  std::string out;
  std::string chunk(1 << 16, '\0');
  stream.next_in = reinterpret_cast<const std::uint8_t*>(in.data());
  stream.avail_in = in.size();
  lzma_ret rc = LZMA_OK;
  while (rc != LZMA_STREAM_END) {
    stream.next_out = reinterpret_cast<std::uint8_t*>(chunk.data());
    stream.avail_out = chunk.size();
    rc = lzma_code(&stream, stream.avail_in == 0 ? LZMA_FINISH : LZMA_RUN);
    if (rc != LZMA_OK && rc != LZMA_STREAM_END) {
      lzma_end(&stream);
      fail(path, absl::StrFormat("lzma error %d", static_cast<int>(rc)));
    }
    out.append(chunk.data(), chunk.size() - stream.avail_out);
  }
  lzma_end(&stream);
  return out;
}

// The unsigned decimal number at the front of `text`, skipping leading blanks; advances `text`.
std::optional<std::uint64_t> next_number(std::string_view& text) {
  std::size_t start = text.find_first_not_of(" \t");
  if (start == std::string_view::npos) return std::nullopt;
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data() + start, text.data() + text.size(), value);
  if (ec != std::errc()) return std::nullopt;
  text.remove_prefix(static_cast<std::size_t>(end - text.data()));
  return value;
}

template <class LineFn>
void for_each_line(std::string_view bytes, LineFn&& fn) {
  while (!bytes.empty()) {
    std::size_t end = bytes.find('\n');
    std::string_view line = bytes.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    fn(line);
    if (end == std::string_view::npos) break;
    bytes.remove_prefix(end + 1);
  }
}

void parse_arc(std::string_view bytes, std::vector<std::uint64_t>& keys) {
  for_each_line(bytes, [&](std::string_view line) {
    std::optional<std::uint64_t> start = next_number(line);
    std::optional<std::uint64_t> count = next_number(line);
    if (!start || !count) return;
    for (std::uint64_t i = 0; i < *count; ++i) keys.push_back(*start + i);
  });
}

void parse_lirs(std::string_view bytes, std::vector<std::uint64_t>& keys) {
  for_each_line(bytes, [&](std::string_view line) {
    if (!line.empty() && line.front() == '*') return;
    if (std::optional<std::uint64_t> key = next_number(line)) keys.push_back(*key);
  });
}

void parse_cache2k(std::string_view bytes, std::vector<std::uint64_t>& keys) {
  keys.reserve(bytes.size() / 4);
  for (std::size_t i = 0; i + 4 <= bytes.size(); i += 4) {
    std::uint64_t key = 0;
    for (std::size_t b = 0; b < 4; ++b) key = (key << 8) | static_cast<unsigned char>(bytes[i + b]);
    keys.push_back(key);
  }
}

}  // namespace

std::optional<trace_format> parse_trace_format(std::string_view name) {
  if (name == "arc") return trace_format::arc;
  if (name == "lirs") return trace_format::lirs;
  if (name == "cache2k") return trace_format::cache2k;
  return std::nullopt;
}

std::optional<trace_format> format_from_path(const std::string& path) {
  if (absl::StrContains(path, ".lis")) return trace_format::arc;
  if (absl::StrContains(path, "cache2k/")) return trace_format::cache2k;
  if (absl::StrContains(path, ".trace")) return trace_format::lirs;
  return std::nullopt;
}

std::string read_decompressed(const std::string& path) {
  std::string bytes = read_file(path);
  if (absl::EndsWith(path, ".zst")) return unzstd(path, bytes);
  if (absl::EndsWith(path, ".gz")) return gunzip(path, bytes);
  if (absl::EndsWith(path, ".xz")) return unxz(path, bytes);
  return bytes;
}

std::vector<std::uint64_t> parse_trace(std::string_view bytes, trace_format format) {
  std::vector<std::uint64_t> keys;
  switch (format) {
    case trace_format::arc: parse_arc(bytes, keys); break;
    case trace_format::lirs: parse_lirs(bytes, keys); break;
    case trace_format::cache2k: parse_cache2k(bytes, keys); break;
  }
  return keys;
}

std::vector<std::uint64_t> read_trace(const std::string& path, trace_format format) {
  return parse_trace(read_decompressed(path), format);
}

}  // namespace leftright::cachesim
