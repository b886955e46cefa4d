// SPDX-License-Identifier: Apache-2.0
// leftright replication machinery: the engine's own credentials files, read by the library itself
// (not by the client library's readers, whose rules change between its versions: libnats 3.4.1
// takes no file with Windows line endings), so that the check at the open and every connection
// read a file alike.
//
// - A credentials file (.creds, as the engine's operator tools write it) holds decorated blocks:
//   a marker line ("-----BEGIN NATS USER JWT-----"), one line of content, a marker line. Its
//   first block is the user's JWT, its second the user's NKey seed. A JWT kept apart from its
//   seed is a file's first block, or else its first line that starts with "eyJ".
// - A seed file holds the seed: its first block, or else its first line that starts with "SU".
// - A connection attempt reads the files once (credentials_registry::for_jwt): the client
//   library asks for the JWT and then for the nonce's signature, and the two must be one user's.
// - Read leniently where a tool may differ (a UTF-8 byte order mark, \r\n line ends, spaces and
//   tabs around a line, banner lines between the blocks) and strictly where a mistake would send a
//   secret to the engine: the JWT must look like one (the seed is never sent as a JWT), the seed
//   and the public key must decode as NKeys of a user (checksum and kind). A JWT past its "exp"
//   (this machine's clock) is not sent either: the engine would refuse it, and two refusals in a
//   row end the client library's reconnections for good.
// - Nothing here puts a seed into an error message; a file is read into one buffer of its size,
//   and that text and the seed taken from it are zeroed once used.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <string.h>  // explicit_bzero (glibc)

#include "../../replication_error.hpp"

namespace leftright::detail::replication {

/// A string holding a secret (a seed, a file's text), zeroed when it goes.
class secret {
 public:
  secret() = default;
  explicit secret(std::string s) : s_(std::move(s)) {}
  secret(const secret&) = delete;
  secret& operator=(const secret&) = delete;
  ~secret() { ::explicit_bzero(s_.data(), s_.size()); }
  const std::string& str() const noexcept { return s_; }

 private:
  std::string s_;
};

/// The first line of text without its spaces, tabs and carriage return at either end; text loses
/// the line and its newline.
inline std::string_view next_trimmed_line(std::string_view& text) {
  const std::size_t end = std::min(text.find('\n'), text.size());
  std::string_view line = text.substr(0, end);
  text.remove_prefix(std::min(end + 1, text.size()));
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!line.empty() && blank(line.front())) line.remove_prefix(1);
  while (!line.empty() && blank(line.back())) line.remove_suffix(1);
  return line;
}

/// text without the UTF-8 byte order mark an editor may have put at its start.
inline std::string_view without_bom(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  return text;
}

/// Whether a trimmed line is a block's marker: it ends with "---" and has "---" before that (as
/// the engine's clients decide).
inline bool credential_marker(std::string_view line) {
  return line.size() >= 6 && line.ends_with("---") &&
         line.substr(0, line.size() - 3).find("---") != std::string_view::npos;
}

/// The decorated blocks of a credentials or seed file's text, in order: each the one line between
/// a marker line and the next non-empty line, which must be a marker too. A byte order mark at
/// the start is skipped; lines are trimmed (next_trimmed_line).
inline std::vector<std::string_view> credential_blocks(std::string_view text) {
  text = without_bom(text);
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    if (const std::string_view line = next_trimmed_line(text); !line.empty()) lines.push_back(line);
  }
  std::vector<std::string_view> blocks;
  for (std::size_t i = 0; i + 2 < lines.size(); ++i) {
    if (credential_marker(lines[i]) && !credential_marker(lines[i + 1]) && credential_marker(lines[i + 2])) {
      blocks.push_back(lines[i + 1]);
      i += 2;  // the closing marker opens no block
    }
  }
  return blocks;
}

/// The value of a base32 letter (RFC 4648's alphabet, as NKeys are written) or -1.
constexpr int base32_value(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? c - 'A' : c >= '2' && c <= '7' ? c - '2' + 26 : -1;
}
/// The value of a base64url letter (RFC 4648's URL-safe alphabet, as JWTs are written) or -1.
constexpr int base64url_value(char c) noexcept {
  return c >= 'A' && c <= 'Z'   ? c - 'A'
         : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52
         : c == '-'             ? 62
         : c == '_'             ? 63
                                : -1;
}
/// The bytes of text written Bits bits a letter, most significant first (value(c): a letter's
/// value, or -1); the bits left over at the end are dropped (no padding). Nullopt for a letter
/// not of the alphabet. The caller zeroes what it decoded if that is a secret.
template <int Bits, class Value>
std::optional<std::string> decode_letters(std::string_view text, Value value) {
  std::string out;
  out.reserve(text.size() * Bits / 8);  // one allocation: no copy of a secret left behind
  std::uint32_t bits = 0;
  int held = 0;
  for (const char c : text) {
    const int v = value(c);
    if (v < 0) {
      ::explicit_bzero(out.data(), out.size());
      return std::nullopt;
    }
    bits = (bits << Bits) | static_cast<std::uint32_t>(v);
    held += Bits;
    if (held >= 8) {
      held -= 8;
      out += static_cast<char>((bits >> held) & 0xff);
    }
  }
  ::explicit_bzero(&bits, sizeof bits);
  return out;
}

/// Why text is not an NKey of a user as the engine encodes it, or empty if it is one: a seed
/// ("SU", 58 base32 letters: a two-byte prefix, the 32 bytes of the seed and a CRC-16/XMODEM of
/// those 34 bytes, little-endian) or a public key ("U", 56 letters: one prefix byte, 32 bytes,
/// the CRC). Never shows the text.
inline std::string user_nkey_problem(std::string_view text, bool seed) {
  const std::size_t letters = seed ? 58 : 56, bytes = seed ? 36 : 35;
  const char* what = seed ? "a user seed" : "a user public key";
  if (text.size() != letters) {
    return std::string(what) + " has " + std::to_string(letters) + " characters, this one " +
           std::to_string(text.size());
  }
  std::optional<std::string> decoded = decode_letters<5>(text, base32_value);
  if (!decoded) return std::string(what) + " is base32 (A-Z, 2-7)";
  const auto raw = [&decoded](std::size_t i) { return static_cast<std::uint8_t>((*decoded)[i]); };
  std::uint16_t crc = 0;
  for (std::size_t i = 0; i + 2 < bytes; ++i) {
    crc = static_cast<std::uint16_t>(crc ^ (raw(i) << 8));
    for (int b = 0; b < 8; ++b) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
  }
  const bool crc_ok = crc == (raw(bytes - 2) | (raw(bytes - 1) << 8));
  constexpr int seed_prefix = 18 << 3, user_prefix = 20 << 3;
  const bool user = seed ? (raw(0) & 0xf8) == seed_prefix && (((raw(0) & 7) << 5) | (raw(1) >> 3)) == user_prefix
                         : raw(0) == user_prefix;
  ::explicit_bzero(decoded->data(), decoded->size());
  if (!crc_ok) return std::string(what) + ": its checksum does not match";
  if (!user) return seed ? "not the seed of a user (SU...)" : "not the public key of a user (U...)";
  return {};
}

/// Whether text looks like a JWT: three non-empty parts of base64url letters, joined by dots, the
/// first a JSON object's ("eyJ").
inline bool looks_like_jwt(std::string_view text) {
  if (!text.starts_with("eyJ")) return false;
  int dots = 0;
  std::size_t part = 0;
  for (const char c : text) {
    if (c == '.') {
      if (part == 0) return false;
      ++dots;
      part = 0;
    } else if (base64url_value(c) >= 0) {
      ++part;
    } else {
      return false;
    }
  }
  return dots == 2 && part > 0;
}

/// The "exp" claim of a JWT (seconds since the epoch) if its claims (the middle part, base64url
/// JSON) carry one as a whole number.
inline std::optional<std::int64_t> jwt_expiry(std::string_view jwt) {
  const std::size_t first = jwt.find('.'), second = jwt.find('.', first + 1);
  if (first == std::string_view::npos || second == std::string_view::npos) return std::nullopt;
  const std::optional<std::string> decoded =
      decode_letters<6>(jwt.substr(first + 1, second - first - 1), base64url_value);
  if (!decoded) return std::nullopt;
  const std::string& claims = *decoded;
  std::size_t at = claims.find("\"exp\"");
  if (at == std::string::npos) return std::nullopt;
  at += 5;
  while (at < claims.size() && (claims[at] == ' ' || claims[at] == ':')) ++at;
  std::int64_t exp = 0;
  const char* end = claims.data() + claims.size();
  const auto [p, ec] = std::from_chars(claims.data() + at, end, exp);
  if (ec != std::errc() || p == claims.data() + at) return std::nullopt;
  return exp;
}

/// The whole of a regular file of at most 64 KiB, read into one buffer of its size (no stream
/// buffer or growing string leaves a copy of a secret behind; a FIFO or a device cannot block or
/// fill memory); refuse(why) otherwise, which must throw.
template <class Refuse>
std::string read_whole(const std::string& path, Refuse&& refuse) {
  constexpr off_t most = 64 * 1024;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) refuse("cannot be read");
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_it{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) refuse("cannot be read (not a regular file)");
  if (st.st_size > most) refuse("is larger than a credentials file (64 KiB)");
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // shorter than it was: what was read
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  return text;
}

/// What a credentials file holds: a user's JWT and seed (a .creds file, as the engine's tools
/// write it), a JWT alone (its seed in a file of its own), or a seed alone.
enum class credential_file { jwt_and_seed, jwt, seed };

/// Where a connection's credentials come from: jwt_path, a credentials file (its JWT, and its
/// seed too if seed_path is empty); seed_path, a seed file (with jwt_path empty: an NKey user's).
struct credentials_source {
  std::string jwt_path;
  std::string seed_path;
};

/// A user's credentials as files give them. The seed is zeroed when this goes. Throws
/// replication_error, protocol, naming the option, the path and why, if a file cannot be read or
/// does not hold what it must.
struct user_credentials {
  std::string jwt;  ///< empty: an NKey user
  std::string seed;

  /// A credentials file alone (its JWT and seed), a credentials file's JWT and a seed file's
  /// seed (replication_options::credentials_file and nkey_seed_file), or a seed file alone.
  explicit user_credentials(const credentials_source& from) {
    if (from.jwt_path.empty()) {
      read(from.seed_path, "nkey_seed_file", credential_file::seed);
      return;
    }
    read(from.jwt_path, "credentials_file",
         from.seed_path.empty() ? credential_file::jwt_and_seed : credential_file::jwt);
    if (!from.seed_path.empty()) read(from.seed_path, "nkey_seed_file", credential_file::seed);
  }
  /// What the one file at path holds (option: the option that names it, for messages).
  user_credentials(const std::string& path, const char* option, credential_file holds) { read(path, option, holds); }
  user_credentials(const user_credentials&) = delete;
  user_credentials& operator=(const user_credentials&) = delete;
  ~user_credentials() { ::explicit_bzero(seed.data(), seed.size()); }

 private:
  void read(const std::string& path, const char* option, credential_file holds) {
    const auto refuse = [&](const std::string& why) {
      throw replication_error(replication_errc::protocol, "open",
                              std::string("replication_options::") + option + " " + path + ": " + why);
    };
    const secret text(read_whole(path, refuse));
    const std::vector<std::string_view> blocks = credential_blocks(text.str());
    if (holds == credential_file::seed) {
      if (!blocks.empty() && looks_like_jwt(blocks[0])) {
        refuse("holds a JWT: a credentials file goes in credentials_file");
      }
      take_seed(blocks.empty() ? first_line_starting(text.str(), "SU") : blocks[0], refuse);
      return;
    }
    std::string_view found = blocks.empty() ? std::string_view() : blocks[0];
    if (holds == credential_file::jwt && blocks.empty()) found = first_line_starting(text.str(), "eyJ");
    if (!looks_like_jwt(found)) {
      refuse(holds == credential_file::jwt
                 ? "holds no user JWT (-----BEGIN NATS USER JWT----- ..., or the JWT alone on a line)"
                 : "holds no user JWT and seed (-----BEGIN NATS USER JWT----- ... -----BEGIN USER NKEY SEED-----)");
    }
    if (holds == credential_file::jwt_and_seed && blocks.size() < 2) {
      refuse("holds a JWT but no seed after it: give the seed's file as nkey_seed_file");
    }
    take_jwt(found, refuse);
    if (holds == credential_file::jwt_and_seed) take_seed(blocks[1], refuse);
  }
  /// The first trimmed line of text that starts with prefix (empty if none); a byte order mark
  /// at the start is skipped.
  static std::string_view first_line_starting(std::string_view text, std::string_view prefix) {
    text = without_bom(text);
    while (!text.empty()) {
      if (const std::string_view line = next_trimmed_line(text); line.starts_with(prefix)) return line;
    }
    return {};
  }
  /// An expired JWT is refused here, not sent: the engine would refuse it, and the client library
  /// stops reconnecting after two refusals in a row, where a failure of ours lets it go on
  /// trying until the file is renewed.
  template <class Refuse>
  void take_jwt(std::string_view found, Refuse&& refuse) {
    const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
    if (const std::optional<std::int64_t> exp = jwt_expiry(found); exp && *exp != 0 && *exp <= now) {
      refuse("its JWT expired " + std::to_string(now - *exp) + " s ago (at " + std::to_string(*exp) +
             " s since the epoch, by this machine's clock)");
    }
    jwt.assign(found);
  }
  template <class Refuse>
  void take_seed(std::string_view found, Refuse&& refuse) {
    if (found.empty()) refuse("holds no user seed (SU...)");
    if (const std::string why = user_nkey_problem(found, true); !why.empty()) refuse("its seed is not valid: " + why);
    ::explicit_bzero(seed.data(), seed.size());
    seed.assign(found);
  }
};

/// Why a client library callback failed, for the connection attempt to say: message (no secret
/// in it), and whether another attempt may succeed (retry).
struct credentials_failure {
  std::string message;
  bool retry = false;
};

/// The credentials sources of the open connections, by number. The client library's callbacks
/// carry the number, not a pointer: one that runs after its channel went (a reconnection in
/// flight) finds nothing and fails, instead of reading freed memory. Never destroyed (a callback
/// may run while the process exits).
class credentials_registry {
 public:
  static std::uintptr_t add(credentials_source s) {
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    const std::uintptr_t id = ++st.last;
    st.sources.emplace(id, std::move(s));
    return id;
  }
  static void remove(std::uintptr_t id) noexcept {
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    st.sources.erase(id);
    st.failures.erase(id);
    st.for_signature.erase(id);
  }
  static std::optional<credentials_source> find(std::uintptr_t id) { return copy_of(&state::sources, id); }
  /// The credentials for a connection attempt's JWT, read from id's files (nullptr: id is gone),
  /// and kept for its signature (for_signature): the client library asks for the JWT and then
  /// for the signature, and a file replaced between the two must not pair one user's JWT with
  /// another's seed.
  /// An attempt whose files read well forgets the failure an earlier one noted.
  static std::shared_ptr<const user_credentials> for_jwt(std::uintptr_t id) {
    const std::optional<credentials_source> source = find(id);
    if (!source) return nullptr;
    auto read = std::make_shared<const user_credentials>(*source);  // outside the lock: file I/O
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    if (!st.sources.contains(id)) return nullptr;
    st.for_signature.insert_or_assign(id, read);
    st.failures.erase(id);
    return read;
  }
  /// The credentials for a connection attempt's signature: those for_jwt kept (taken: once), or
  /// else read from id's files (an NKey user, who has no JWT); nullptr: id is gone.
  static std::shared_ptr<const user_credentials> for_signature(std::uintptr_t id) {
    if (std::shared_ptr<const user_credentials> kept = take_kept(id)) return kept;
    const std::optional<credentials_source> source = find(id);
    if (!source) return nullptr;
    auto read = std::make_shared<const user_credentials>(*source);
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    st.failures.erase(id);  // (an NKey user's attempt: this is its only reading)
    return read;
  }
  /// Forgets what for_jwt kept for id (an attempt that asks for no signature).
  static void drop_kept(std::uintptr_t id) noexcept { (void)take_kept(id); }
  /// Notes why a callback for id failed (the last failure is kept).
  static void note_failure(std::uintptr_t id, credentials_failure f) {
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    if (st.sources.contains(id)) st.failures.insert_or_assign(id, std::move(f));
  }
  /// The failure noted for id, if the last attempt's callbacks failed (kept: see for_jwt()).
  static std::optional<credentials_failure> last_failure(std::uintptr_t id) {
    return copy_of(&state::failures, id);
  }
  /// The failure noted for id since the last call, if any.
  static std::optional<credentials_failure> take_failure(std::uintptr_t id) {
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    const auto it = st.failures.find(id);
    if (it == st.failures.end()) return std::nullopt;
    credentials_failure f = std::move(it->second);
    st.failures.erase(it);
    return f;
  }

 private:
  static std::shared_ptr<const user_credentials> take_kept(std::uintptr_t id) noexcept {
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    const auto it = st.for_signature.find(id);
    if (it == st.for_signature.end()) return nullptr;
    std::shared_ptr<const user_credentials> kept = std::move(it->second);
    st.for_signature.erase(it);
    return kept;
  }
  struct state {
    std::mutex mu;
    std::map<std::uintptr_t, credentials_source> sources;
    std::map<std::uintptr_t, credentials_failure> failures;
    std::map<std::uintptr_t, std::shared_ptr<const user_credentials>> for_signature;
    std::uintptr_t last = 0;
  };
  /// A copy of what one of the state's maps holds for id, read under the lock.
  template <class T>
  static std::optional<T> copy_of(std::map<std::uintptr_t, T> state::*map, std::uintptr_t id) {
    state& st = get();
    const std::lock_guard<std::mutex> lock(st.mu);
    const auto it = (st.*map).find(id);
    if (it == (st.*map).end()) return std::nullopt;
    return it->second;
  }
  static state& get() {
    static state* const st = new state;  // NOLINT: never destroyed (see above)
    return *st;
  }
};

/// A credentials source registered for as long as this lives (a channel's connection).
class credentials_registration {
 public:
  credentials_registration() = default;
  explicit credentials_registration(credentials_source s) : id_(credentials_registry::add(std::move(s))) {}
  credentials_registration(credentials_registration&& o) noexcept : id_(std::exchange(o.id_, 0)) {}
  credentials_registration& operator=(credentials_registration&& o) noexcept {
    std::swap(id_, o.id_);
    return *this;
  }
  ~credentials_registration() {
    if (id_ != 0) credentials_registry::remove(id_);
  }
  /// The number the client library's callbacks carry.
  void* closure() const noexcept { return reinterpret_cast<void*>(id_); }
  /// What a callback noted since the last call (none for no registration).
  std::optional<credentials_failure> take_failure() const {
    if (id_ == 0) return std::nullopt;
    return credentials_registry::take_failure(id_);
  }
  /// What the last attempt's callbacks noted, kept (none for no registration).
  std::optional<credentials_failure> last_failure() const {
    if (id_ == 0) return std::nullopt;
    return credentials_registry::last_failure(id_);
  }
  /// Why the files cannot be used now, read afresh (none if they can, or for no registration).
  std::optional<std::string> problem_now() const {
    const std::optional<credentials_source> source = id_ == 0 ? std::nullopt : credentials_registry::find(id_);
    if (!source) return std::nullopt;
    try {
      const user_credentials read(*source);
    } catch (const replication_error& e) {
      return e.detail();  // without the reading's "open:", which this is not
    }
    return std::nullopt;
  }

 private:
  std::uintptr_t id_ = 0;
};

}  // namespace leftright::detail::replication
