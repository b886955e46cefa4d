// SPDX-License-Identifier: Apache-2.0
// leftright: what a user customizes at compile time. Every map template (map_writer, map_reader,
// make_map, open_map, shared_map, cache, replicated maps) takes a Traits parameter, by default
// default_traits; derive from it and override what you need:
//
//   struct my_traits : leftright::default_traits {
//     static constexpr leftright::reader_sync sync = leftright::reader_sync::seq_cst;
//     using meta_type = std::uint64_t;  // an upstream revision, published with the data
//   };
//   auto [w, r] = leftright::make_map<int, int, leftright::default_hash<int>,
//                                     leftright::default_eq<int>, my_traits>();
//
// map_traits is the contract, checked where a map is instantiated: a type that does not meet it
// fails with one line naming the member that is missing or of the wrong type.
//
// Macros, set before the first include (or on the command line):
//   LEFTRIGHT_VERIFY_COPIES  the default of default_traits::verify_copies: 0 never compare the
//                            two copies; 1 amortized (about one lookup per operation); 2 at every
//                            publish (O(size) each). Default: 1 without NDEBUG, 0 with it.
#pragma once

#include <concepts>
#include <cstddef>

#include "detail/config.hpp"  // cache_line

#ifndef LEFTRIGHT_VERIFY_COPIES
#ifdef NDEBUG
#define LEFTRIGHT_VERIFY_COPIES 0
#else
#define LEFTRIGHT_VERIFY_COPIES 1
#endif
#endif

namespace leftright {

/// How readers order their epoch store against their pointer load (detail/barrier.hpp): which
/// side pays for the StoreLoad ordering every read needs.
enum class reader_sync {
  /// Where the kernel allows membarrier (probed once): asymmetric while publishes are rare, and
  /// readers fencing (as seq_cst, no membarrier) while they come often, chosen by the writer at
  /// each publish from the rate (map_writer::readers_fence); a read pays one test of a bit for
  /// it. seq_cst where membarrier is refused (containers, old kernels, ThreadSanitizer).
  automatic,
  seq_cst,     ///< every read pays a locked instruction; publishing pays nothing extra
  asymmetric,  ///< reads pay nothing; every publish issues a membarrier (~0.25 us idle, ~10 us busy)
};

/// When the writer checks that replaying the log made the two copies equal (which catches an
/// operation that is not deterministic). A failed check throws std::logic_error from publish().
enum class copy_check {
  off,
  amortized,      ///< once the operations since the last check reach the map's size
  every_publish,  ///< O(size) per publish: for tests
};

/// The metadata of a map without any (Traits::meta_type's default): empty, no storage.
struct no_meta {
  friend bool operator==(const no_meta&, const no_meta&) noexcept = default;
};

/// Compile-time knobs of a map. Derive from it and override what you need (see the top of this
/// header).
struct default_traits {
  /// How readers and the writer split the cost of their StoreLoad ordering (detail/barrier.hpp).
  static constexpr reader_sync sync = reader_sync::automatic;
  /// Compare the two copies after the replay (see copy_check). Default: amortized in debug
  /// builds, off otherwise (LEFTRIGHT_VERIFY_COPIES). Skipped where the structure has no
  /// equality (for the inline map layout: where Value has no operator==).
  static constexpr copy_check verify_copies = LEFTRIGHT_VERIFY_COPIES >= 2   ? copy_check::every_publish
                                              : LEFTRIGHT_VERIFY_COPIES == 1 ? copy_check::amortized
                                                                             : copy_check::off;
  /// Map entries (std::pair<const Key, Value>) larger than this many bytes are stored once, in a
  /// node both copies point to, instead of once per copy: about half the memory for large
  /// values, for one more pointer hop per lookup.
  static constexpr std::size_t max_inline_entry = detail::cache_line;
  /// Ask the kernel for transparent huge pages for every table block of 4 MiB or more (see
  /// detail/allocator.hpp): fewer TLB misses on large maps, and far fewer page faults while one
  /// is built (recovery, rehash). Only advice; false gives plain std::allocator tables.
  static constexpr bool huge_pages = true;
  /// Metadata published with the data (map_writer::set_meta, read_guard::meta): a label for the
  /// state a snapshot shows (an upstream revision, a timestamp, a schema version). Copyable and
  /// default-constructible; a durable map also needs a leftright::codec for it.
  using meta_type = no_meta;
};

/// What a Traits type must provide (default_traits does; a type derived from it inherits what
/// it does not override). meta_type may be left out (no metadata).
template <class T>
concept map_traits = requires {
  { T::sync } -> std::convertible_to<reader_sync>;
  { T::verify_copies } -> std::convertible_to<copy_check>;
  { T::max_inline_entry } -> std::convertible_to<std::size_t>;
  { T::huge_pages } -> std::convertible_to<bool>;
} && (!requires { typename T::meta_type; } || (std::copyable<typename T::meta_type> &&
                                                std::default_initializable<typename T::meta_type>));

}  // namespace leftright
