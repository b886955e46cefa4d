// SPDX-License-Identifier: Apache-2.0
// For the replication tests: the credentials a nats-server needs for NKey authentication and for
// operator (decentralized JWT) mode, made with the openssl command and plain C++ (no NATS tools).
//
// Contract:
//   - make_nkey(kind, dir): a fresh ed25519 key as NATS encodes it: a public key "O...", "A..." or
//     "U..." and its seed "SO...", "SA..." or "SU..."; the seed is written to a file (for
//     replication_options::nkey_seed_file) and the key to a PEM file (to sign JWTs with), both in dir.
//   - make_operator_setup(dir): an operator, a system account, an account with JetStream (no
//     limits) and a user of that account; server_config is the text of a nats-server config file
//     trusting that operator (memory resolver, both account JWTs preloaded; no listen, port,
//     jetstream or store_dir: the test server wrapper gives -js -a -p -sd on its command line) and
//     creds_file the user's credentials file (for replication_options::credentials_file).
//     nats-server 2.9.10 insists on the system account: with JetStream on and none
//     set, it exits ("Can't start JetStream: ... system account not setup"); and the system account
//     must be preloaded too ("error resolving system account: account missing").
//   - make_untrusted_creds(dir): a credentials file of a user of an account the server was never
//     told about (the connection is refused: NATS_CONNECTION_AUTH_FAILED, "Authorization
//     Violation"), as are a wrong NKey seed and no credentials at all.
//   - The JWTs are NATS v2 JWTs (header alg "ed25519-nkey"); their jti is random, not the hash of
//     the claims that nsc puts there: nats-server 2.9.10 does not check it.
//   - Every file, temporary ones included, goes in dir (paths without '"' or '\\': the config quotes
//     them). A failing openssl command or file operation throws std::runtime_error naming it. No
//     Catch2 in here.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lrtest {

/// A NATS key pair in its textual encodings, and the files make_nkey wrote it to.
struct nkey {
  std::string public_key;            ///< "O...", "A..." or "U...".
  std::string seed;                  ///< "SO...", "SA..." or "SU...".
  std::filesystem::path seed_file;   ///< The seed and a newline.
  std::filesystem::path pem_file;    ///< The private key as PEM (for openssl pkeyutl -sign).
};

/// An operator-mode server's configuration text and a trusted user's credentials file.
struct operator_setup {
  std::string server_config;
  std::filesystem::path creds_file;
  std::string account_public_key;    ///< The account the user belongs to (JetStream enabled).
  std::string system_account;        ///< The operator's system account (also preloaded).
  nkey account;                      ///< That account's key (to sign more users' JWTs with).
  nkey user;                         ///< The user of creds_file.
  /// server_config with the account's JWT revoking a user's JWTs (all those issued so far).
  std::function<std::string(const nkey&)> server_config_revoking;
};

namespace nats_credentials_detail {

/// The whole content of a file, as bytes; throws if it cannot be read.
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("cannot read " + path.string());
  return data;
}

/// Writes data as the whole content of a file; throws if it cannot.
inline void write_file(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot create " + path.string());
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

/// A path quoted for the shell.
inline std::string quote(const std::filesystem::path& path) {
  std::string q = "'";
  for (const char c : path.string()) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

/// Random bytes, for unique temporary file names and JWT ids (no cryptographic quality needed).
inline std::string random_bytes(std::size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum of NATS key encodings.
inline std::uint16_t crc16(std::string_view data) {
  std::uint16_t crc = 0;
  for (const char c : data) {
    crc = static_cast<std::uint16_t>(crc ^ (static_cast<std::uint8_t>(c) << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
  }
  return crc;
}

/// data in an alphabet of 2^Bits letters, Bits bits a letter, most significant first; the last
/// letter padded with zero bits, no '=' padding (RFC 4648's base32 and base64url as NATS keys and
/// JWTs write them).
template <int Bits>
inline std::string encode_bits(std::string_view data, const char* alphabet) {
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : data) {
    buffer = (buffer << 8) | static_cast<std::uint8_t>(c);
    bits += 8;
    while (bits >= Bits) {
      out += alphabet[(buffer >> (bits - Bits)) & ((1u << Bits) - 1)];
      bits -= Bits;
    }
  }
  if (bits > 0) out += alphabet[(buffer << (Bits - bits)) & ((1u << Bits) - 1)];
  return out;
}
/// Base32 (RFC 4648 standard alphabet) without padding.
inline std::string base32(std::string_view data) { return encode_bits<5>(data, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"); }
/// Base64url (RFC 4648 URL-safe alphabet) without padding, as JWTs use.
inline std::string base64url(std::string_view data) {
  return encode_bits<6>(data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
}

/// A fresh file name in dir: dir/<stem>-<random><ext>.
inline std::filesystem::path temp_name(const std::filesystem::path& dir, const std::string& stem,
                                       const std::string& ext) {
  return dir / (stem + "-" + base32(random_bytes(10)) + ext);
}

/// Runs an openssl command line, its output going to a temporary file in dir; throws, with that
/// output, if it fails (or if dir is not a directory).
inline void run(const std::string& command, const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) throw std::runtime_error("not a directory: " + dir.string());
  const std::filesystem::path log = temp_name(dir, "openssl", ".log");
  const int rc = std::system((command + " >" + quote(log) + " 2>&1").c_str());
  std::string output;
  try {
    output = read_file(log);
  } catch (const std::runtime_error&) {
  }
  std::error_code ec;
  std::filesystem::remove(log, ec);
  if (rc != 0) throw std::runtime_error("failed: " + command + (output.empty() ? "" : ": " + output));
}

/// The bytes followed by their CRC-16, little-endian, in base32: a NATS key's text.
inline std::string encode_with_crc(std::string raw) {
  const std::uint16_t crc = crc16(raw);
  raw += static_cast<char>(crc & 0xff);
  raw += static_cast<char>(crc >> 8);
  return base32(raw);
}

/// The NATS prefix byte of a key kind: 'O' operator, 'A' account, 'U' user.
inline std::uint8_t prefix_byte(char kind) {
  switch (kind) {
    case 'O': return 14 << 3;
    case 'A': return 0;
    case 'U': return 20 << 3;
    default: throw std::runtime_error(std::string("make_nkey: unknown key kind '") + kind + "'");
  }
}

/// Seconds since the epoch, for JWTs' iat.
inline long long now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace nats_credentials_detail

/// A new ed25519 key of this kind ('O' operator, 'A' account, 'U' user) in NATS encodings; its seed
/// is written to dir/<public key>.nk and its private key to dir/<public key>.pem.
inline nkey make_nkey(char kind, const std::filesystem::path& dir) {
  namespace d = nats_credentials_detail;
  const std::uint8_t prefix = d::prefix_byte(kind);
  const std::filesystem::path pem = d::temp_name(dir, "nkey", ".pem");
  const std::filesystem::path priv_der = d::temp_name(dir, "nkey", ".der");
  const std::filesystem::path pub_der = d::temp_name(dir, "nkey", ".pub.der");
  d::run("openssl genpkey -algorithm ed25519 -out " + d::quote(pem), dir);
  d::run("openssl pkey -in " + d::quote(pem) + " -outform DER -out " + d::quote(priv_der), dir);
  d::run("openssl pkey -in " + d::quote(pem) + " -pubout -outform DER -out " + d::quote(pub_der), dir);
  // PKCS#8 of an ed25519 key: 16 bytes of header, ending in OCTET STRING (04 20), then the 32-byte
  // seed; SubjectPublicKeyInfo: 12 bytes of header, ending in BIT STRING (03 21 00), then the key.
  const std::string priv = d::read_file(priv_der);
  const std::string pub = d::read_file(pub_der);
  if (priv.size() != 48 || priv.compare(12, 4, "\x04\x22\x04\x20", 4) != 0) {
    throw std::runtime_error("make_nkey: unexpected private key DER in " + priv_der.string());
  }
  if (pub.size() != 44 || pub.compare(9, 3, "\x03\x21\x00", 3) != 0) {
    throw std::runtime_error("make_nkey: unexpected public key DER in " + pub_der.string());
  }
  nkey key;
  key.public_key = d::encode_with_crc(static_cast<char>(prefix) + pub.substr(12));
  std::string seed_raw;
  seed_raw += static_cast<char>((18 << 3) | (prefix >> 5));
  seed_raw += static_cast<char>((prefix & 31) << 3);
  key.seed = d::encode_with_crc(seed_raw + priv.substr(16));
  key.seed_file = dir / (key.public_key + ".nk");
  key.pem_file = dir / (key.public_key + ".pem");
  d::write_file(key.seed_file, key.seed + "\n");
  std::error_code ec;
  std::filesystem::rename(pem, key.pem_file, ec);
  if (ec) throw std::runtime_error("cannot rename " + pem.string() + ": " + ec.message());
  std::filesystem::remove(priv_der, ec);
  std::filesystem::remove(pub_der, ec);
  return key;
}

/// A JWT of these claims (JSON text) signed by issuer: header {"typ":"JWT","alg":"ed25519-nkey"},
/// signature by openssl pkeyutl over "<header>.<claims>" in base64url.
inline std::string sign_jwt(const nkey& issuer, const std::string& claims, const std::filesystem::path& dir) {
  namespace d = nats_credentials_detail;
  const std::string signing_input =
      d::base64url(R"({"typ":"JWT","alg":"ed25519-nkey"})") + "." + d::base64url(claims);
  const std::filesystem::path in = d::temp_name(dir, "jwt", ".in");
  const std::filesystem::path sig = d::temp_name(dir, "jwt", ".sig");
  d::write_file(in, signing_input);
  d::run("openssl pkeyutl -sign -rawin -inkey " + d::quote(issuer.pem_file) + " -in " + d::quote(in) + " -out " +
             d::quote(sig),
         dir);
  const std::string signature = d::read_file(sig);
  if (signature.size() != 64) throw std::runtime_error("sign_jwt: unexpected signature size in " + sig.string());
  std::error_code ec;
  std::filesystem::remove(in, ec);
  std::filesystem::remove(sig, ec);
  return signing_input + "." + d::base64url(signature);
}

/// A NATS v2 JWT about subject, issued (and signed) by issuer: nats_fields is the inside of the
/// "nats" object without "type" and "version" (e.g. R"("limits":{...})" or empty).
/// expires: its "exp" claim (seconds since the epoch), or none.
inline std::string make_jwt(const nkey& issuer, const std::string& subject, const std::string& name,
                            const std::string& type, const std::string& nats_fields,
                            const std::filesystem::path& dir, std::optional<long long> expires = std::nullopt) {
  namespace d = nats_credentials_detail;
  const std::string exp = expires ? R"("exp":)" + std::to_string(*expires) + "," : std::string();
  const std::string claims = R"({"jti":")" + d::base32(d::random_bytes(32)) + R"(",)" + exp + R"("iat":)" +
                             std::to_string(d::now_seconds()) + R"(,"iss":")" + issuer.public_key +
                             R"(","name":")" + name + R"(","sub":")" + subject + R"(","nats":{)" + nats_fields +
                             (nats_fields.empty() ? "" : ",") + R"("type":")" + type + R"(","version":2}})";
  return sign_jwt(issuer, claims, dir);
}

/// An account JWT signed by the operator: JetStream enabled and no limits at all; revoked: users
/// whose JWTs issued before a time (seconds since the epoch) the account no longer accepts.
inline std::string make_account_jwt(const nkey& op, const nkey& account, const std::string& name,
                                    const std::filesystem::path& dir,
                                    const std::vector<std::pair<std::string, long long>>& revoked = {}) {
  std::string limits =
      R"("limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,)"
      R"("leaf":-1,"mem_storage":-1,"disk_storage":-1,"streams":-1,"consumer":-1},)"
      R"("default_permissions":{"pub":{},"sub":{}})";
  if (!revoked.empty()) {
    limits += R"(,"revocations":{)";
    for (std::size_t i = 0; i < revoked.size(); ++i) {
      limits += (i == 0 ? "\"" : ",\"") + revoked[i].first + "\":" + std::to_string(revoked[i].second);
    }
    limits += "}";
  }
  return make_jwt(op, account.public_key, name, "account", limits, dir);
}

/// A user JWT signed by the account: no permission or limit of its own; expires: its "exp".
inline std::string make_user_jwt(const nkey& account, const nkey& user, const std::string& name,
                                 const std::filesystem::path& dir, std::optional<long long> expires = std::nullopt) {
  return make_jwt(account, user.public_key, name, "user", R"("pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1)",
                  dir, expires);
}

/// Writes a NATS credentials file (the user JWT and its seed) to path, byte for byte as nsc writes one.
inline void write_creds_file(const std::filesystem::path& path, const std::string& user_jwt, const nkey& user) {
  nats_credentials_detail::write_file(path, "-----BEGIN NATS USER JWT-----\n" + user_jwt +
                                                "\n------END NATS USER JWT------\n\n"
                                                "************************* IMPORTANT *************************\n"
                                                "NKEY Seed printed below can be used to sign and prove identity.\n"
                                                "NKEYs are sensitive and should be treated as secrets.\n\n"
                                                "-----BEGIN USER NKEY SEED-----\n" +
                                                user.seed + "\n------END USER NKEY SEED------\n\n"
                                                "*************************************************************\n");
}

/// An operator (self-signed JWT in dir/operator.jwt), a system account, an account with JetStream
/// and a user of it (credentials in dir/user.creds); server_config trusts the operator and
/// preloads both accounts in a memory resolver.
inline operator_setup make_operator_setup(const std::filesystem::path& dir) {
  const nkey op = make_nkey('O', dir);
  const nkey sys = make_nkey('A', dir);
  const nkey account = make_nkey('A', dir);
  const nkey user = make_nkey('U', dir);
  const std::filesystem::path op_jwt_file = dir / "operator.jwt";
  nats_credentials_detail::write_file(
      op_jwt_file, make_jwt(op, op.public_key, "leftright-operator", "operator",
                            R"("system_account":")" + sys.public_key + R"(")", dir));
  const std::string sys_jwt = make_jwt(op, sys.public_key, "SYS", "account",
                                       R"("limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,)"
                                       R"("wildcards":true,"conn":-1,"leaf":-1})",
                                       dir);
  // The server's configuration: the operator trusted, both accounts preloaded (the account's JWT
  // as given).
  const auto config_with = [=](const std::string& account_jwt) {
    return "operator: \"" + op_jwt_file.string() + "\"\nsystem_account: " + sys.public_key +
           "\nresolver: MEMORY\nresolver_preload: {\n  " + sys.public_key + ": \"" + sys_jwt + "\"\n  " +
           account.public_key + ": \"" + account_jwt + "\"\n}\n";
  };
  operator_setup setup;
  setup.server_config_revoking = [=](const nkey& revoked_user) {
    const long long issued_by = nats_credentials_detail::now_seconds() + 5;
    return config_with(make_account_jwt(op, account, "leftright-account", dir, {{revoked_user.public_key, issued_by}}));
  };
  setup.account_public_key = account.public_key;
  setup.account = account;
  setup.user = user;
  setup.system_account = sys.public_key;
  setup.creds_file = dir / "user.creds";
  write_creds_file(setup.creds_file, make_user_jwt(account, user, "leftright-user", dir), user);
  setup.server_config = config_with(make_account_jwt(op, account, "leftright-account", dir));
  return setup;
}

/// A credentials file (dir/untrusted.creds) of a user signed by a fresh account that no server of
/// make_operator_setup knows (its operator never signed it): the connection is refused.
inline std::filesystem::path make_untrusted_creds(const std::filesystem::path& dir) {
  const nkey account = make_nkey('A', dir);
  const nkey user = make_nkey('U', dir);
  const std::filesystem::path creds = dir / "untrusted.creds";
  write_creds_file(creds, make_user_jwt(account, user, "untrusted-user", dir), user);
  return creds;
}

}  // namespace lrtest
