// SPDX-License-Identifier: Apache-2.0
// Cache traces for the hit-ratio simulator: the formats of the traces README
// (../shared/traces/README.md), read whole into memory as a sequence of 64-bit keys.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace leftright::cachesim {

/// The trace file formats.
///   arc:     text lines `start count ignore reqno`; the request is the blocks
///            start .. start+count-1, one access each (the ARC paper's traces).
///   lirs:    one decimal key per line; lines starting with `*` are skipped (the LIRS traces).
///   cache2k: big-endian unsigned 32-bit keys, one per request (cache2k's traces).
enum class trace_format { arc, lirs, cache2k };

/// Parses a --format value ("arc", "lirs", "cache2k").
std::optional<trace_format> parse_trace_format(std::string_view name);

/// The format a trace's path implies: `.lis` is arc, a `cache2k` folder is cache2k, any other
/// `.trace` is lirs; nothing if the name says nothing.
std::optional<trace_format> format_from_path(const std::string& path);

/// The file's bytes, decompressed by its extension (.zst, .gz, .xz; anything else is raw).
/// Throws std::runtime_error naming the file on a read or decompression failure.
std::string read_decompressed(const std::string& path);

/// The keys of the trace at `path`, one per request, in order.
std::vector<std::uint64_t> read_trace(const std::string& path, trace_format format);

/// Parses decompressed trace text or bytes (the part of read_trace that needs no file).
std::vector<std::uint64_t> parse_trace(std::string_view bytes, trace_format format);

}  // namespace leftright::cachesim
