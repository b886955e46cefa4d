// SPDX-License-Identifier: Apache-2.0
// Writes the seed corpus of the fuzz targets: real segments and snapshots written by open_map()
// in a temp directory, cut to their used part, some damaged on purpose, each with the mode byte
// that fuzz_support.hpp defines; and one encoded sample value per codec type (two for the
// composite ones). Run it when a format changes:
//   build/<preset>/tests/fuzz/fuzz_make_corpus tests/fuzz/corpus
// It only adds or overwrites the files it names (inputs merged in by scripts/fuzz --merge stay).
// Segments carry random salts, so a rerun writes different bytes for the same seeds.
#include <stdlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <leftright/durable_map.hpp>

#include "fuzz_support.hpp"

namespace {

namespace fs = std::filesystem;
namespace st = leftright::detail::storage;
using bytes = std::vector<std::byte>;

/// A directory from mkdtemp, removed with everything in it when destroyed.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string t = (fs::temp_directory_path() / "leftright-corpus-XXXXXX").string();
    if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = t;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  const std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes b(c.size());
  if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
  return b;
}

/// The files in dir whose names start with prefix, in name order (= version order).
std::vector<fs::path> files(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

fs::path out_root;
int written = 0;

void seed(const std::string& target, const std::string& name, std::uint8_t mode, const bytes& b) {
  const fs::path dir = out_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.put(static_cast<char>(mode));
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!out) throw std::runtime_error("cannot write " + (dir / name).string());
  ++written;
}

leftright::durable_options options(const fs::path& dir) {
  leftright::durable_options o;
  o.path = dir;
  o.durability = leftright::durability::sync;  // synced seqs advance: a damaged middle record
                                               // is contradicted by the ones after it
  o.segment_size = 8192;
  o.checkpoint_bytes = 0;
  return o;
}

/// Where a segment's valid records end.
std::size_t records_end(const bytes& seg, const std::string& k, const std::string& v) {
  const auto h = st::read_segment_header(seg, "seed", k, v);
  if (!h) throw std::runtime_error("a seed segment without a valid header");
  return static_cast<std::size_t>(st::scan_segment(seg, *h).end_offset);
}
bytes slice(const bytes& b, std::size_t from, std::size_t to) {
  return bytes(b.begin() + static_cast<std::ptrdiff_t>(from), b.begin() + static_cast<std::ptrdiff_t>(to));
}
template <class T>
void put(bytes& b, std::size_t at, T v) {
  leftright::detail::store_le<T>(b.data() + at, v);
}

// ---------------------------------------------------------------------------------------------

constexpr std::uint8_t wal_raw = 0, wal_synth = lrfuzz::wal_synth_header, wal_fix = lrfuzz::wal_fix_crcs;

/// A segment of seven batches of every kind of operation, and where its parts lie.
struct batches_segment {
  bytes seg;
  std::size_t end;   ///< where its valid records end
  std::size_t body;  ///< where its first record starts (after the segment header)
  std::size_t rec1;  ///< record 1: 3 x insert_or_assign
  std::size_t pay1;  ///< its payload
};

batches_segment seven_batches() {
  using K = lrfuzz::wal_key;
  using V = lrfuzz::wal_value;
  batches_segment s;
  {
    temp_dir d;
    {
      auto [w, r] = leftright::open_map<K, V>(options(d.path));
      w.insert_or_assign(1, "one");
      w.insert_or_assign(2, "two");
      w.insert_or_assign(3, "");
      w.publish();  // 1
      w.insert(4, "four");
      w.insert(1, "not replaced");
      w.publish();  // 2
      w.erase(2);
      w.publish();  // 3
      w.publish();  // 4: empty
      w.erase_if([](const K& k, const V&) { return k % 2 == 1; });
      w.publish();  // 5
      w.clear();
      w.insert_or_assign(7, std::string(300, 'x'));
      w.publish();  // 6
      for (K i = 0; i < 40; ++i) w.insert_or_assign(i * 7919, "v" + std::to_string(i));
      w.publish();  // 7
    }
    s.seg = read_file(files(d.path, "wal-").front());
  }
  s.end = records_end(s.seg, leftright::codec_name<K>(), leftright::codec_name<V>());
  s.body = st::segment_header_size;
  s.rec1 = s.body;
  s.pay1 = s.rec1 + st::record_header_size;
  return s;
}

/// The seven batches whole, cut short, with a torn tail, with a middle record damaged, and with
/// a bad segment header (the target makes the crcs valid again).
void damaged_segment_seeds(const batches_segment& s) {
  const bytes& seg = s.seg;
  seed("wal", "raw-batches", wal_raw, slice(seg, 0, s.end + 64));
  seed("wal", "synth-batches", wal_synth, slice(seg, s.body, s.end + 16));
  seed("wal", "raw-header-truncated", wal_raw, slice(seg, 0, 2000));
  {
    bytes b = slice(seg, 0, s.end);
    b.resize(s.end + 40, std::byte{0xab});  // a torn tail: garbage after the last record
    b.resize(s.end + 128, std::byte{0});
    seed("wal", "raw-torn-tail", wal_raw, b);
  }
  {
    // Damage record 3 (an erase: header, count, tag, key): record 4 and later say 3 was durable.
    const std::size_t rec2 = s.rec1 + st::align8(st::record_header_size + leftright::detail::load_le<std::uint32_t>(seg.data() + s.rec1 + 4));
    const std::size_t rec3 = rec2 + st::align8(st::record_header_size + leftright::detail::load_le<std::uint32_t>(seg.data() + rec2 + 4));
    bytes b = slice(seg, 0, s.end + 64);
    b[rec3 + st::record_header_size + 6] ^= std::byte{0x40};
    seed("wal", "raw-contradicting", wal_raw, b);
  }
  bytes b = slice(seg, 0, s.end + 64);
  put<std::uint32_t>(b, 8, st::format_version - 1);  // an older format version
  seed("wal", "raw-fix-bad-version", wal_fix, b);
  b = slice(seg, 0, s.end + 64);
  put<std::uint32_t>(b, 32, 5000);  // key codec length past the header
  seed("wal", "raw-fix-codec-length", wal_fix, b);
  b = slice(seg, 0, s.end + 64);
  put<std::uint32_t>(b, 12, 0x04030201);  // the other byte order
  seed("wal", "raw-fix-byte-order", wal_fix, b);
}

/// Payloads that do not decode, their crcs made valid by the target.
void undecodable_payload_seeds(const batches_segment& s) {
  const bytes& seg = s.seg;
  const std::size_t pay1 = s.pay1 - s.body;  // in the synthesized segment's body
  bytes b = slice(seg, s.body, s.end + 16);
  b[pay1 + 4] = std::byte{9};  // first operation's tag
  seed("wal", "synth-fix-bad-tag", wal_synth | wal_fix, b);
  b = slice(seg, s.body, s.end + 16);
  put<std::uint32_t>(b, pay1 + 4 + 1 + 8, 0xfffffff0u);  // first value's length
  seed("wal", "synth-fix-string-length", wal_synth | wal_fix, b);
  b = slice(seg, s.body, s.end + 16);
  put<std::uint32_t>(b, pay1, 0xffffffffu);  // operation count
  seed("wal", "synth-fix-huge-count", wal_synth | wal_fix, b);
  b = slice(seg, s.body, s.end + 16);
  put<std::uint32_t>(b, pay1, 2);  // one operation too few: trailing bytes
  seed("wal", "synth-fix-trailing-bytes", wal_synth | wal_fix, b);
  b = slice(seg, s.body, s.end + 16);
  const std::size_t rec2_in_body =
      st::align8(st::record_header_size + leftright::detail::load_le<std::uint32_t>(seg.data() + s.rec1 + 4));
  put<std::uint64_t>(b, rec2_in_body + 16, 99);  // record 2 claims version 99
  seed("wal", "synth-fix-seq-gap", wal_synth | wal_fix, b);
}

/// A segment with a header and nothing else; a second segment (first seq > 1) after a roll; a
/// record larger than a segment; other key and value types.
void other_segment_seeds() {
  using K = lrfuzz::wal_key;
  using V = lrfuzz::wal_value;
  const std::string kc = leftright::codec_name<K>(), vc = leftright::codec_name<V>();
  const std::size_t body = st::segment_header_size;
  {
    temp_dir d;
    {
      auto [w, r] = leftright::open_map<K, V>(options(d.path));
      (void)w;
    }
    const bytes empty = read_file(files(d.path, "wal-").front());
    seed("wal", "raw-empty-segment", wal_raw, slice(empty, 0, body + 64));
  }
  {
    temp_dir d;
    {
      auto [w, r] = leftright::open_map<K, V>(options(d.path));
      for (K b = 1; b <= 12; ++b) {
        w.insert_or_assign(b, std::string(700, static_cast<char>('a' + b)));
        w.publish();
      }
      w.insert_or_assign(100, std::string(6000, 'L'));
      w.publish();
    }
    const auto segs = files(d.path, "wal-");
    if (segs.size() < 3) throw std::runtime_error("expected at least three segments");
    const bytes second = read_file(segs[1]);
    seed("wal", "synth-second-segment", wal_synth, slice(second, body, records_end(second, kc, vc) + 16));
    // A segment the log moved on from: its records, then its successor record.
    seed("wal", "raw-successor", wal_raw, slice(second, 0, records_end(second, kc, vc) + st::record_header_size + 16));
    const bytes large = read_file(segs.back());
    seed("wal", "synth-large-record", wal_synth, slice(large, body, records_end(large, kc, vc) + 16));
  }
  {
    temp_dir d;
    {
      auto [w, r] = leftright::open_map<std::string, double>(options(d.path));
      w.insert_or_assign("pi", 3.14159);
      w.publish();
    }
    const bytes other = read_file(files(d.path, "wal-").front());
    seed("wal", "raw-other-types", wal_raw,
         slice(other, 0, records_end(other, leftright::codec_name<std::string>(),
                                     leftright::codec_name<double>()) + 64));
  }
}

void wal_seeds() {
  const batches_segment s = seven_batches();
  damaged_segment_seeds(s);
  undecodable_payload_seeds(s);
  other_segment_seeds();
}

// ---------------------------------------------------------------------------------------------

void snapshot_seeds() {
  using K = lrfuzz::snap_key;
  using V = lrfuzz::snap_value;
  constexpr std::uint8_t raw = 0, fix = lrfuzz::snap_fix;
  auto snapshot = [](auto fill) {
    temp_dir d;
    {
      auto [w, r] = leftright::open_map<K, V>(options(d.path));
      fill(w);
      w.publish();
      w.checkpoint();
    }
    return read_file(files(d.path, "snap-").back());
  };
  const bytes empty = snapshot([](auto&) {});
  const bytes three = snapshot([](auto& w) {
    w.insert_or_assign(1, "one");
    w.insert_or_assign(2, "");
    w.insert_or_assign(~K{0}, "max");
  });
  const bytes forty = snapshot([](auto& w) {
    for (K i = 0; i < 40; ++i) w.insert_or_assign(i * 0x9e3779b97f4a7c15u, std::string(i % 13, 'a'));
  });
  seed("snapshot", "raw-empty", raw, empty);
  seed("snapshot", "raw-three", raw, three);
  seed("snapshot", "raw-forty", raw, forty);

  const std::size_t entries_at = 24;
  const std::size_t data_at = 40 + 3 + 3 + 4;  // "u64", "str", the header crc
  bytes b = three;
  put<std::uint64_t>(b, entries_at, 4);  // one entry more than the data holds
  seed("snapshot", "fix-count-high", fix, b);
  b = three;
  put<std::uint64_t>(b, entries_at, 2);  // one entry less: bytes after the last entry
  seed("snapshot", "fix-count-low", fix, b);
  b = three;
  put<std::uint64_t>(b, entries_at, std::uint64_t{1} << 62);  // far more than the data can hold
  seed("snapshot", "fix-huge-count", fix, b);
  b = three;
  put<std::uint32_t>(b, data_at + 8, 0xfffffff0u);  // the first value's length
  seed("snapshot", "fix-string-length", fix, b);
  b = three;
  put<std::uint32_t>(b, 8, 7);  // format version
  seed("snapshot", "fix-bad-version", fix, b);
  b = three;
  put<std::uint32_t>(b, 36, 0x7fffffff);  // value codec length past the end
  seed("snapshot", "fix-codec-length", fix, b);
  b = slice(three, 0, three.size() - 10);
  seed("snapshot", "raw-truncated", raw, b);
  b = three;
  b[0] = std::byte{'X'};
  seed("snapshot", "raw-bad-magic", raw, b);
  b = three;
  b[data_at + 2] ^= std::byte{1};
  seed("snapshot", "raw-data-crc", raw, b);

  temp_dir d;
  {
    auto [w, r] = leftright::open_map<std::string, double>(options(d.path));
    w.insert_or_assign("e", 2.71828);
    w.publish();
    w.checkpoint();
  }
  seed("snapshot", "raw-other-types", raw, read_file(files(d.path, "snap-").back()));
}

// ---------------------------------------------------------------------------------------------

template <class T>
struct kind {
  static constexpr int value = 0;
};
template <class T>
struct kind<std::vector<T>> {
  static constexpr int value = 1;
};
template <class A, class B>
struct kind<std::pair<A, B>> {
  static constexpr int value = 2;
};
template <class... Ts>
struct kind<std::tuple<Ts...>> {
  static constexpr int value = 3;
};

/// A sample value of T; variant 0 or 1.
template <class T>
T sample(int v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v == 0;
  } else if constexpr (std::is_enum_v<T>) {
    return static_cast<T>(sample<std::underlying_type_t<T>>(v));
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(v == 0 ? 0x0123456789abcdefull : ~std::uint64_t{4});
  } else if constexpr (std::is_floating_point_v<T>) {
    return v == 0 ? T(1.5) : -T(0);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v == 0 ? std::string("key-42") : std::string("nul\0in the middle", 18);
  } else if constexpr (kind<T>::value == 1) {
    using E = typename T::value_type;
    return v == 0 ? T{sample<E>(0), sample<E>(1), sample<E>(0)} : T{};
  } else if constexpr (kind<T>::value == 2) {
    return T(sample<typename T::first_type>(v), sample<typename T::second_type>(v));
  } else {
    return std::apply([v](auto... x) { return T{sample<decltype(x)>(v)...}; }, T{});
  }
}

template <std::size_t I>
void codec_seed() {
  using T = std::tuple_element_t<I, lrfuzz::codec_types>;
  std::string name = leftright::codec_name<T>();
  for (char& c : name) {
    if (c == '<' || c == '>' || c == ',') c = '_';
  }
  char prefix[8];
  std::snprintf(prefix, sizeof prefix, "%02zu-", I);
  const int variants = std::is_arithmetic_v<T> || std::is_enum_v<T> ? 1 : 2;
  for (int v = 0; v < variants; ++v) {
    const std::string enc = leftright::encode_to_string(sample<T>(v));
    bytes b(enc.size());
    if (!enc.empty()) std::memcpy(b.data(), enc.data(), enc.size());
    seed("codec", prefix + name + "-" + std::to_string(v), static_cast<std::uint8_t>(I), b);
  }
}
template <std::size_t... I>
void codec_seeds(std::index_sequence<I...>) {
  (codec_seed<I>(), ...);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (e.g. tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  out_root = argv[1];
  wal_seeds();
  snapshot_seeds();
  codec_seeds(std::make_index_sequence<lrfuzz::codec_type_count>());
  std::printf("wrote %d seeds under %s\n", written, out_root.c_str());
  return 0;
}
