// SPDX-License-Identifier: Apache-2.0
// leftright replication machinery: the nats.c handles as RAII types, the engine's failures turned
// into replication_error, and the one JetStream layout a replicated map uses (the channel).
//
// Layout of a map named <m> in the engine:
//   stream LR_<m>        subject lr.<m>.log   one message per published batch: sequence == version
//   stream LRS_<m>       subject lr.<m>.snap  a snapshot's image, in chunks (consecutive messages:
//                                             each chunk's publish expects the previous one last)
//   KV LR_<m>_META       key snapshot         "<version> <first chunk seq> <chunks> <bytes> <crc32c>"
//                                             (pointers written before the checksum have 4 fields)
//   KV LR_<m>_LEASE      key leader           the leader's id (the bucket's TTL expires it; a
//                                             leader stopped cleanly deletes it at its revision)
//   KV LR_<m>_ACKS       key <follower id>    "<version>": the newest version that follower
//                                             applied (its reports; the bucket's TTL drops
//                                             those of followers gone for a while)
// The expected-last-sequence check on every log publish fences a second writer: correctness
// never depends on the lease, which only keeps two leaders from taking turns.
#pragma once

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <nats/nats.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../replication_error.hpp"
#include "credentials.hpp"

namespace leftright::detail::replication {

/// A nats.c object owned by a unique_ptr that calls its destroy function.
template <class T, void (*Destroy)(T*)>
struct destroyer {
  void operator()(T* p) const noexcept { Destroy(p); }
};
template <class T, void (*Destroy)(T*)>
using handle = std::unique_ptr<T, destroyer<T, Destroy>>;

using options_ptr = handle<natsOptions, natsOptions_Destroy>;
using connection_ptr = handle<natsConnection, natsConnection_Destroy>;
using js_ptr = handle<jsCtx, jsCtx_Destroy>;

/// Ends a subscription without racing the client's read loop: nats.c before 3.10 (Debian 12
/// ships 3.4.1) looks up an arriving message's subscription and uses it unretained, so one
/// destroyed while its messages arrive may be used after it is freed (nats.c issue 637: a
/// crash in natsConn_processMsg, seen here at once when a follower resubscribed under load).
/// So: removed from the connection first (natsSubscription_Unsubscribe, which also deletes its
/// ephemeral consumer on the engine), then a round trip, which the read loop answers only after
/// the message it may have been holding, then destroyed. A connection that is down runs no read
/// loop: the subscription is destroyed at once. One that looks up but whose server stopped
/// answering (a partition the client has not noticed yet) holds the caller up to twice the
/// channel's timeout (the consumer's deletion, the round trip).
struct subscription_ender {
  natsConnection* nc = nullptr;
  std::int64_t timeout_ms = 0;
  void operator()(natsSubscription* sub) const noexcept {
    const auto up = [this] { return natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED; };
    if (nc != nullptr && up()) {
      (void)natsSubscription_Unsubscribe(sub);  // removed even if deleting the consumer failed
      if (up()) (void)natsConnection_FlushTimeout(nc, timeout_ms);
    }
    natsSubscription_Destroy(sub);
  }
};
using subscription_ptr = std::unique_ptr<natsSubscription, subscription_ender>;
using msg_ptr = handle<natsMsg, natsMsg_Destroy>;
using pub_ack_ptr = handle<jsPubAck, jsPubAck_Destroy>;
using stream_info_ptr = handle<jsStreamInfo, jsStreamInfo_Destroy>;
using kv_ptr = handle<kvStore, kvStore_Destroy>;
using kv_entry_ptr = handle<kvEntry, kvEntry_Destroy>;

/// Which replication_errc a failed status (and JetStream error code) means.
inline replication_errc classify(natsStatus s, jsErrCode jerr) noexcept {
  if (jerr == JSStreamWrongLastSequenceErr) return replication_errc::fenced;
  if (jerr == JSStreamMessageExceedsMaximumErr || s == NATS_MAX_PAYLOAD) return replication_errc::too_large;
  switch (s) {
    case NATS_TIMEOUT:
    case NATS_NO_SERVER:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_IO_ERROR:
    case NATS_NO_RESPONDERS:
    case NATS_NOT_YET_CONNECTED:
    case NATS_SSL_ERROR:  // a TLS handshake cut short (a server restarting); a refusal's text says so (channel)
      return replication_errc::unreachable;
    case NATS_CONNECTION_AUTH_FAILED:
    case NATS_NOT_PERMITTED:
    case NATS_SECURE_CONNECTION_WANTED:
    case NATS_SECURE_CONNECTION_REQUIRED:
      return replication_errc::refused;
    default:
      return replication_errc::engine;
  }
}

/// What a failed status says: the status text, the JetStream error code if any, and the
/// library's last error text for this thread.
inline std::string describe(natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) {
  std::string detail = natsStatus_GetText(s);
  if (jerr != 0) detail += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
  natsStatus last = NATS_OK;
  if (const char* text = nats_GetLastError(&last); text != nullptr && *text != '\0') {
    detail += ": ";
    detail += text;
  }
  return detail;
}

/// Throws replication_error for a failed status (describe()).
inline void check(natsStatus s, const char* operation, jsErrCode jerr = static_cast<jsErrCode>(0)) {
  if (s == NATS_OK) return;
  throw replication_error(classify(s, jerr), operation, describe(s, jerr));
}

/// Whether c may appear in a map's name (a stream's, a bucket's) and in a follower's id (a key
/// of the acks bucket): letters, digits, _ and -.
constexpr bool name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/// Where a snapshot's chunks are: written by the leader, read by whoever bootstraps.
struct snapshot_pointer {
  std::uint64_t version = 0;    ///< the version the image shows
  std::uint64_t first_seq = 0;  ///< the sequence of its first chunk in the snapshot stream
  std::uint64_t chunks = 0;
  std::uint64_t bytes = 0;
  std::optional<std::uint32_t> crc;  ///< crc32c of the whole image (none: a pointer written without)
};

/// The first and last sequence the log stream holds (first > last: it holds none).
struct log_range {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  /// When the log stream was made (the engine's clock, ns since the epoch): which incarnation
  /// of the log this is. A map whose streams were deleted and made anew has a new history.
  std::int64_t created = 0;
};

/// How a channel reaches the engine (replication_options' fields of the same names): a url, or
/// several comma-separated, and the credentials and TLS files it needs.
struct connection_settings {
  connection_settings(std::string u = {}) : url(std::move(u)) {}  // NOLINT: a url alone converts
  std::string url;
  std::string user, password, token;
  std::string credentials_file, nkey, nkey_seed_file;
  bool tls = false;
  std::string tls_ca_file, tls_cert_file, tls_key_file;
};

/// The urls of a comma-separated list, each trimmed of spaces; empty entries dropped.
inline std::vector<std::string> split_urls(const std::string& list) {
  std::vector<std::string> urls;
  std::size_t from = 0;
  while (from <= list.size()) {
    const std::size_t comma = std::min(list.find(',', from), list.size());
    std::size_t b = from, e = comma;
    while (b < e && list[b] == ' ') ++b;
    while (e > b && list[e - 1] == ' ') --e;
    if (e > b) urls.push_back(list.substr(b, e - b));
    from = comma + 1;
  }
  return urls;
}

/// Where a url's secret is (a password, nats://user:password@host, or a token,
/// nats://token@host): [first, last) in url, empty if it has none. Read as the client library
/// reads a url (libnats 3.4.1, natsUrl_Create): the user information ends at the url's last @,
/// and a password starts after its first colon; a / or an @ may stand in a password.
inline std::pair<std::size_t, std::size_t> url_secret(std::string_view url) {
  const std::size_t scheme = url.find("://");
  const std::size_t from = scheme == std::string_view::npos ? 0 : scheme + 3;
  const std::size_t at = url.rfind('@');
  if (at == std::string_view::npos || at < from) return {0, 0};
  const std::size_t colon = url.find(':', from);
  return {colon < at ? colon + 1 : from, at};  // a user's name stays
}

/// url with its secret (url_secret()) replaced by ***.
inline std::string masked_url(std::string url) {
  const auto [first, last] = url_secret(url);
  if (last > first) url.replace(first, last - first, "***");
  return url;
}

/// text with the secrets of the engine's urls replaced by ***: each url of the settings where it
/// is written as given, and any other url in it (scheme://..., up to a space, a comma, a quote or
/// a closing parenthesis: the client library writes a url of its own form, with a port added,
/// say) where it has user information. The options' password and token are not looked for: the
/// client library never writes them (and masking each place a short one's letters stand only
/// showed where they stood).
inline std::string without_secrets(std::string text, const connection_settings& engine) {
  for (const std::string& url : split_urls(engine.url)) {
    const std::string masked = masked_url(url);
    if (masked == url) continue;
    for (std::size_t at = text.find(url); at != std::string::npos; at = text.find(url, at + masked.size())) {
      text.replace(at, url.size(), masked);
    }
  }
  const auto word_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  for (std::size_t scheme = text.find("://"); scheme != std::string::npos;) {
    std::size_t begin = scheme, end = scheme + 3;
    while (begin > 0 && word_char(text[begin - 1])) --begin;
    while (end < text.size() && std::string_view(" ,'\")").find(text[end]) == std::string_view::npos) ++end;
    const std::string masked = masked_url(text.substr(begin, end - begin));
    text.replace(begin, end - begin, masked);
    scheme = text.find("://", begin + masked.size());
  }
  return text;
}

/// One connection to the engine and the map's streams and buckets there.
/// Thread-safety: nats.c connections and contexts are thread-safe; a channel is shared by a
/// writer or follower and its background thread.
class channel {
 public:
  /// Connects to url (reconnecting forever after a loss) and makes the map's streams and
  /// buckets if they do not exist, each with `replicas` copies in the engine. timeout bounds
  /// every request. Throws replication_error (one naming the engine's reason if it cannot keep
  /// that many copies, as a single server cannot keep more than one; protocol, before
  /// connecting, for a lease_ttl that is not positive).
  channel(const connection_settings& engine, const std::string& name, std::chrono::milliseconds timeout,
          std::chrono::milliseconds lease_ttl, int replicas = 1)
      : name_(name), timeout_ms_(timeout.count()), replicas_(replicas) {
    check_name(name);
    check_lease_ttl(lease_ttl);
    connect(engine);
    direct_.insert_or_assign(log_stream(), ensure_stream(log_stream(), log_subject(), /*max_msg_size=*/-1));
    direct_.insert_or_assign(snap_stream(), ensure_stream(snap_stream(), snap_subject(), -1));
    meta_ = ensure_bucket("LR_" + name_ + "_META", 0);
    lease_ = ensure_bucket("LR_" + name_ + "_LEASE", lease_ttl.count());
    acks_ = ensure_bucket(acks_bucket(), std::chrono::duration_cast<std::chrono::milliseconds>(ack_ttl).count());
  }
  /// Gives the lease up if this channel still holds it (release_lease): the writer that owns
  /// the channel stopped cleanly.
  ~channel() { release_lease(); }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// How long a follower's report stays in the acks bucket: a follower reports at least every
  /// tenth of it while it runs, so the bucket lists the followers alive now.
  static constexpr std::chrono::seconds ack_ttl{60};

  std::string log_stream() const { return "LR_" + name_; }
  std::string log_subject() const { return "lr." + name_ + ".log"; }
  std::string snap_stream() const { return "LRS_" + name_; }
  std::string snap_subject() const { return "lr." + name_ + ".snap"; }
  std::string acks_bucket() const { return "LR_" + name_ + "_ACKS"; }
  /// The subject of a follower's report: the acks bucket's key `id`.
  std::string ack_subject(std::string_view id) const { return "$KV." + acks_bucket() + "." + std::string(id); }

  bool connected() const noexcept { return natsConnection_Status(nc_.get()) == NATS_CONN_STATUS_CONNECTED; }
  /// Whether the client library closed the connection for good (it never does for a server out
  /// of reach: the engine turned the client away; see check()).
  bool closed() const noexcept { return natsConnection_Status(nc_.get()) == NATS_CONN_STATUS_CLOSED; }
  /// The largest message the server takes (payload bytes).
  std::size_t max_payload() const noexcept {
    const int64_t n = natsConnection_GetMaxPayload(nc_.get());
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }

  /// Appends a batch to the log as sequence expected_last + 1 and waits for the engine's ack.
  /// msg_id makes a retry of the same batch a duplicate the engine drops. Returns the sequence.
  /// Throws replication_error: fenced if the log's last sequence is not expected_last.
  /// ask_acks: the message carries the header that asks followers to report it at once.
  std::uint64_t append(std::string_view payload, std::uint64_t expected_last, const std::string& msg_id,
                       bool ask_acks = false) {
    if (payload.size() > max_payload()) {
      throw replication_error(replication_errc::too_large, "publish",
                              "a batch of " + std::to_string(payload.size()) + " bytes exceeds the engine's " +
                                  std::to_string(max_payload()) + "-byte message limit");
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms_;
    po.MsgId = msg_id.c_str();
    po.ExpectLastSeq = expected_last;
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = NATS_OK;
    // The client sends no expectation for 0, so the first batch sets the header itself: the
    // engine then checks that the stream's last sequence is 0. (A check that the subject holds no
    // message passes after a purge: a deposed leader's first batch would land behind another
    // leader's versions.)
    const bool expects_empty = expected_last == 0;
    if (ask_acks || expects_empty) {
      // A message with headers (it copies the payload: only these publishes pay it).
      natsMsg* m = nullptr;
      check(natsMsg_Create(&m, log_subject().c_str(), nullptr, payload.data(), static_cast<int>(payload.size())),
            "publish");
      msg_ptr msg(m);
      if (ask_acks) check(natsMsgHeader_Set(m, ack_header, "1"), "publish");
      if (expects_empty) check(natsMsgHeader_Set(m, "Nats-Expected-Last-Sequence", "0"), "publish");
      s = js_PublishMsg(&ack, js_.get(), m, &po, &jerr);
    } else {
      s = js_Publish(&ack, js_.get(), log_subject().c_str(), payload.data(), static_cast<int>(payload.size()), &po,
                     &jerr);
    }
    pub_ack_ptr owned(ack);
    check(s, "publish", jerr);
    return ack->Sequence;
  }

  /// The header of a log message whose followers should report it at once (append's ask_acks).
  static constexpr const char* ack_header = "Lr-Ack";
  /// Whether a log message asks its followers to report it at once.
  static bool asks_acks(natsMsg* m) noexcept {
    const char* value = nullptr;
    return natsMsgHeader_Get(m, ack_header, &value) == NATS_OK;
  }

  /// A log message's id (the msg_id its append gave it, header Nats-Msg-Id); empty if it has
  /// none. The leader's ids name the writer (a random nonce) and the batch's bytes: two
  /// messages at one version with the same id are the same batch of the same history.
  static std::string message_id(natsMsg* m) {
    const char* value = nullptr;
    if (natsMsgHeader_Get(m, "Nats-Msg-Id", &value) != NATS_OK || value == nullptr) return {};
    return value;
  }

  /// Where a message delivered by a log consumer stands in the log.
  struct log_position {
    std::uint64_t sequence = 0;  ///< its stream sequence: the version it makes
    std::uint64_t pending = 0;   ///< how many more the log held for this consumer when it was sent
  };
  /// Reads a log consumer's message's position from its reply subject, allocating nothing
  /// (natsMsg_GetMetaData allocates the metadata and copies the stream's, the consumer's and
  /// any domain's names: three or four allocations per message, on the follower's thread, for
  /// two numbers). The subject is
  /// "$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>",
  /// or from newer servers "$JS.ACK.<domain>.<account>.<stream>...<pending>[.<token>...]":
  /// 7 tokens after the prefix, or at least 9, the numbers counted from the stream's name
  /// (names hold no '.'). Throws replication_error (protocol) for any other subject.
  static log_position position_of(natsMsg* m) {
    constexpr std::string_view prefix = "$JS.ACK.";
    const char* reply = natsMsg_GetReply(m);
    const std::string_view subject = reply != nullptr ? std::string_view(reply) : std::string_view();
    std::string_view tokens[9];
    std::size_t count = 0;
    if (subject.starts_with(prefix)) {
      for (std::string_view rest = subject.substr(prefix.size()); count < 9;) {
        const std::size_t dot = rest.find('.');
        tokens[count++] = rest.substr(0, dot);
        if (dot == std::string_view::npos) break;
        rest.remove_prefix(dot + 1);
      }
    }
    const std::size_t first = count == 7 ? 0 : 2;  // the stream's name: after domain and account
    log_position p;
    const auto number = [](std::string_view t, std::uint64_t& out) {
      const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
      return !t.empty() && ec == std::errc{} && end == t.data() + t.size();
    };
    if ((count != 7 && count != 9) || !number(tokens[first + 3], p.sequence) ||
        !number(tokens[first + 6], p.pending)) {
      throw replication_error(replication_errc::protocol, "message metadata",
                              "not a log consumer's reply subject: '" + std::string(subject) + "'");
    }
    return p;
  }

  /// Reports that follower `id` applied `version`: the acks bucket's key id, written without
  /// waiting for the engine (the client sends it, in order with this connection's other
  /// messages, or buffers it while reconnecting). Throws replication_error if the client
  /// refuses it (closed; its reconnect buffer full).
  void report_applied(std::string_view id, std::uint64_t version) {
    const std::string text = std::to_string(version);
    check(natsConnection_Publish(nc_.get(), ack_subject(id).c_str(), text.data(), static_cast<int>(text.size())),
          "report applied version");
  }

  /// A subscription to the followers' reports as they are written (a plain subscription to the
  /// acks bucket's subjects: no consumer on the engine). Subscribe first, then read_acks(): a
  /// report written between the two is then in one or the other, never lost.
  subscription_ptr subscribe_acks() {
    natsSubscription* sub = nullptr;
    check(natsConnection_SubscribeSync(&sub, nc_.get(), (ack_subject("") + ">").c_str()), "subscribe to acks");
    return subscription_ptr(sub, subscription_ender{nc_.get(), timeout_ms_});
  }

  /// The followers' reports the acks bucket holds now: follower id -> version.
  std::map<std::string, std::uint64_t> read_acks() {
    const std::string stream = "KV_" + acks_bucket();
    const std::string prefix = ack_subject("");
    const std::string filter = prefix + ">";
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions o = request_options();
    o.Stream.Info.SubjectsFilter = filter.c_str();
    check(js_GetStreamInfo(&si, js_.get(), stream.c_str(), &o, &jerr), "read acks", jerr);
    stream_info_ptr owned(si);
    std::map<std::string, std::uint64_t> acks;
    const jsStreamStateSubjects* subjects = si->State.Subjects;
    for (int i = 0; subjects != nullptr && i < subjects->Count; ++i) {
      const std::string_view subject = subjects->List[i].Subject;
      const std::string key(subject.substr(prefix.size()));
      kvEntry* e = nullptr;
      const natsStatus s = kvStore_Get(&e, acks_.get(), key.c_str());
      if (s == NATS_NOT_FOUND) continue;  // expired meanwhile
      check(s, "read acks");
      kv_entry_ptr entry(e);
      if (const auto v = parse_ack(static_cast<const char*>(kvEntry_Value(e)), kvEntry_ValueLen(e))) {
        acks.insert_or_assign(key, *v);
      }
    }
    return acks;
  }

  /// A report's version; none if the text is not one (a deletion marker: empty).
  static std::optional<std::uint64_t> parse_ack(const char* data, int len) {
    if (data == nullptr || len <= 0) return std::nullopt;
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(data, data + len, v);
    if (ec != std::errc{} || end != data + len) return std::nullopt;
    return v;
  }

  /// The log stream's first and last sequence, and when it was made.
  log_range range() {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions o = request_options();
    check(js_GetStreamInfo(&si, js_.get(), log_stream().c_str(), &o, &jerr), "stream info", jerr);
    stream_info_ptr owned(si);
    return {si->State.FirstSeq, si->State.LastSeq, si->Created};
  }

  /// The message at seq of a stream; null if there is none (purged or never written). Streams
  /// this channel created allow direct gets (the message's bytes as they are); a stream made
  /// without (by an older version) is read through the API (its bytes in base64 inside JSON).
  msg_ptr get(const std::string& stream, std::uint64_t seq) {
    natsMsg* m = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions o = request_options();
    const auto direct = direct_.find(stream);
    if (direct != direct_.end() && direct->second) {
      jsDirectGetMsgOptions d;
      jsDirectGetMsgOptions_Init(&d);
      d.Sequence = seq;
      const natsStatus s = js_DirectGetMsg(&m, js_.get(), stream.c_str(), &o, &d);
      if (s == NATS_NOT_FOUND) return nullptr;
      check(s, "get message");
      return msg_ptr(m);
    }
    const natsStatus s = js_GetMsg(&m, js_.get(), stream.c_str(), seq, &o, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return nullptr;
    check(s, "get message", jerr);
    return msg_ptr(m);
  }

  /// Removes the log's messages below seq.
  void purge_log_below(std::uint64_t seq) { purge(log_stream(), seq); }
  /// Removes the snapshot stream's messages below seq (the chunks of older snapshots).
  void purge_snapshots_below(std::uint64_t seq) { purge(snap_stream(), seq); }

  /// The snapshot stream's last sequence now (0: it never held a message): what a snapshot's
  /// first chunk expects (append_chunk).
  std::uint64_t snapshot_stream_last() {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions o = request_options();
    check(js_GetStreamInfo(&si, js_.get(), snap_stream().c_str(), &o, &jerr), "stream info", jerr);
    stream_info_ptr owned(si);
    return si->State.LastSeq;
  }

  /// The bytes of the engine's message limit a snapshot chunk leaves to its header
  /// ("NATS/1.0", Nats-Expected-Last-Sequence and a 20-digit number: under 80 bytes).
  static constexpr std::size_t chunk_header_reserve = 256;

  /// Publishes one snapshot chunk as sequence expected_last + 1 of the snapshot stream; returns
  /// its sequence. A snapshot's chunks form a chain (the first expects the stream's last
  /// sequence read before it, each next one the previous chunk's), so two writers snapshotting
  /// at once cannot interleave their chunks under one pointer: the one whose chain another's
  /// chunk broke is refused. Throws replication_error: fenced if the stream's last sequence is
  /// not expected_last.
  std::uint64_t append_chunk(std::string_view chunk, std::uint64_t expected_last) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms_;
    po.ExpectLastSeq = expected_last;
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // The client sends no expectation for 0 (as in append()): the header is set here.
    natsMsg* m = nullptr;
    check(natsMsg_Create(&m, snap_subject().c_str(), nullptr, chunk.data(), static_cast<int>(chunk.size())),
          "publish snapshot");
    msg_ptr msg(m);
    if (expected_last == 0) check(natsMsgHeader_Set(m, "Nats-Expected-Last-Sequence", "0"), "publish snapshot");
    const natsStatus s = js_PublishMsg(&ack, js_.get(), m, &po, &jerr);
    pub_ack_ptr owned(ack);
    if (jerr == JSStreamWrongLastSequenceErr) {
      throw replication_error(replication_errc::fenced, "publish snapshot",
                              "another writer's snapshot chunk came between this snapshot's chunks (after "
                              "sequence " + std::to_string(expected_last) + "): this snapshot is abandoned");
    }
    check(s, "publish snapshot", jerr);
    return ack->Sequence;
  }

  /// The newest snapshot's pointer; version 0 if none was taken.
  snapshot_pointer snapshot() {
    kvEntry* e = nullptr;
    const natsStatus s = kvStore_Get(&e, meta_.get(), "snapshot");
    if (s == NATS_NOT_FOUND) return {};
    check(s, "read snapshot pointer");
    kv_entry_ptr owned(e);
    return pointer_of(e);
  }
  /// Moves the snapshot pointer to p, forward only: a compare-and-set on the entry's revision,
  /// retried while other writers move it meanwhile. Throws replication_error (fenced) if it
  /// already names a newer version: a leader that took over has snapshotted since, and a
  /// deposed one must not point followers back, nor purge what that snapshot needs. Fenced too
  /// if it names chunks written after p's (another writer's snapshot, pointed at first): its
  /// writer purges the stream below its own chunks, p's among them. So the pointer's chunks move
  /// forward too, and a purge below the pointer's chunks (after writing it) never removes those
  /// of a pointer written later.
  void set_snapshot(const snapshot_pointer& p) {
    std::string text = std::to_string(p.version) + ' ' + std::to_string(p.first_seq) + ' ' +
                       std::to_string(p.chunks) + ' ' + std::to_string(p.bytes);
    if (p.crc) text += ' ' + std::to_string(*p.crc);
    natsStatus s = NATS_OK;
    for (int attempt = 0; attempt < 8; ++attempt) {
      kvEntry* e = nullptr;
      s = kvStore_Get(&e, meta_.get(), "snapshot");
      std::uint64_t rev = 0;
      if (s == NATS_NOT_FOUND) {
        s = kvStore_CreateString(&rev, meta_.get(), "snapshot", text.c_str());
      } else {
        check(s, "read snapshot pointer");
        kv_entry_ptr owned(e);
        const snapshot_pointer current = pointer_of(e);
        if (current.version > p.version) {
          throw replication_error(replication_errc::fenced, "write snapshot pointer",
                                  "a snapshot of version " + std::to_string(current.version) +
                                      " is newer than this one (" + std::to_string(p.version) +
                                      "): another leader took over");
        }
        if (current.first_seq > p.first_seq) {
          throw replication_error(replication_errc::fenced, "write snapshot pointer",
                                  "the pointer names a snapshot whose chunks were written after this one's "
                                  "(from sequence " + std::to_string(current.first_seq) + ", this one's from " +
                                      std::to_string(p.first_seq) + "): another writer snapshotted meanwhile");
        }
        s = kvStore_UpdateString(&rev, meta_.get(), "snapshot", text.c_str(), kvEntry_Revision(e));
      }
      if (s == NATS_OK) return;  // otherwise moved meanwhile (or the engine failed): read it again
    }
    check(s, "write snapshot pointer");
  }
  static snapshot_pointer pointer_of(kvEntry* e) {
    snapshot_pointer p;
    const std::string text(static_cast<const char*>(kvEntry_Value(e)), static_cast<std::size_t>(kvEntry_ValueLen(e)));
    std::uint32_t crc = 0;
    const int fields = std::sscanf(text.c_str(), "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu32,
                                   &p.version, &p.first_seq, &p.chunks, &p.bytes, &crc);
    if (fields != 4 && fields != 5) {  // 4: written before the checksum
      throw replication_error(replication_errc::protocol, "read snapshot pointer", "malformed: '" + text + "'");
    }
    if (fields == 5) p.crc = crc;
    return p;
  }

  /// Takes the leader lease for id (take_over: even if another holds it). Throws
  /// replication_error: lease_held naming the holder if another id holds it; unreachable (or
  /// engine) if the engine did not answer, never lease_held for that.
  void acquire_lease(const std::string& id, bool take_over) {
    const natsStatus s = kvStore_CreateString(&lease_rev_, lease_.get(), "leader", id.c_str());
    if (s == NATS_OK) return;
    if (take_over) {
      check(kvStore_PutString(&lease_rev_, lease_.get(), "leader", id.c_str()), "acquire lease");
      return;
    }
    settle_lease(id, s, "acquire lease");
  }
  /// Renews the lease (before the bucket's TTL expires it). Throws replication_error:
  /// lease_held naming the holder if another id took it since; unreachable (or engine) if the
  /// engine did not answer: an outage is not a loss of the lease, and the next renewal after it
  /// goes on from the lease as the engine holds it then.
  void renew_lease(const std::string& id) {
    const natsStatus s = kvStore_UpdateString(&lease_rev_, lease_.get(), "leader", id.c_str(), lease_rev_);
    if (s != NATS_OK) settle_lease(id, s, "renew lease");
  }

  /// Gives the lease up, if this channel holds it, so that the next leader opens at once instead
  /// of waiting out the bucket's TTL (a clean stop, a restart). A compare-and-delete: the KV
  /// delete marker, published to the key's subject with the revision this channel last wrote as
  /// the subject's expected last sequence, so the engine refuses it if anyone wrote the key since:
  /// a deposed leader never deletes the lease of the leader that took over. (nats.c 3.4 deletes
  /// a key with no such condition, hence the marker written here, as the client writes it.) A
  /// revision left stale by a renewal that timed out but landed is refused too: that lease then
  /// expires by its TTL, as after a crash. Best effort, never throws (it runs in destructors):
  /// any failure leaves the lease to expire. Progress: blocking, at most a round trip (nothing
  /// if the connection is down, or if this channel took no lease).
  void release_lease() noexcept {
    if (lease_rev_ == 0 || !connected()) return;
    try {
      const std::string subject = "$KV.LR_" + name_ + "_LEASE.leader";
      natsMsg* m = nullptr;
      if (natsMsg_Create(&m, subject.c_str(), nullptr, nullptr, 0) != NATS_OK) return;
      msg_ptr msg(m);
      const std::string expected = std::to_string(lease_rev_);
      if (natsMsgHeader_Set(m, "KV-Operation", "DEL") != NATS_OK ||
          natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", expected.c_str()) != NATS_OK) {
        return;
      }
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = timeout_ms_;
      jsPubAck* ack = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      // Refused (another leader's revision), or no answer: the lease is not ours, or expires.
      (void)js_PublishMsg(&ack, js_.get(), m, &po, &jerr);
      pub_ack_ptr owned(ack);
      lease_rev_ = 0;
    } catch (...) {  // an allocation failed: the lease expires by its TTL
    }
  }

  /// After a failed write of the lease (status s): a failure of the transport (a timeout, the
  /// connection down) is thrown as it is (check: unreachable). Any other answer may be the
  /// engine's refusal of a revision or of a key that exists (nats.c says NATS_ERR for both, and
  /// for other refusals): the key is read, and
  ///   - holding this id: the entry's revision is adopted and the write retried (an update sent
  ///     before an outage, which timed out here, may have landed since: its revision is newer
  ///     than lease_rev_, and renewing from the old one would fail until the key expired);
  ///   - holding another id: lease_held, naming it;
  ///   - gone (expired: nobody renewed it in time): taken afresh.
  /// A few rounds, in case other writers move the key meanwhile; then the last failure, typed.
  void settle_lease(const std::string& id, natsStatus s, const char* what) {
    for (int attempt = 0; attempt < 4; ++attempt) {
      if (classify(s, static_cast<jsErrCode>(0)) != replication_errc::engine) check(s, what);
      kvEntry* e = nullptr;
      const natsStatus got = kvStore_Get(&e, lease_.get(), "leader");
      if (got == NATS_NOT_FOUND) {
        s = kvStore_CreateString(&lease_rev_, lease_.get(), "leader", id.c_str());
      } else {
        check(got, what);
        kv_entry_ptr owned(e);
        const std::string holder = kvEntry_ValueString(e);
        if (holder != id) {
          throw replication_error(replication_errc::lease_held, what,
                                  "the map '" + name_ + "' has another leader: " + holder);
        }
        s = kvStore_UpdateString(&lease_rev_, lease_.get(), "leader", id.c_str(), kvEntry_Revision(e));
      }
      if (s == NATS_OK) return;
    }
    check(s, what);
  }

  /// A consumer of the log from start_seq, in order, no acks. buffer_bytes > 0: the client
  /// holds at most that many bytes of its messages, dropping what arrives beyond (NextMsg then
  /// says NATS_SLOW_CONSUMER, once); at least max_payload(), or a message that large would
  /// never be held.
  subscription_ptr subscribe_log(std::uint64_t start_seq, std::int64_t buffer_bytes = 0) {
    // A plain ephemeral push consumer, no acks, no idle heartbeats: not an ordered consumer,
    // whose self-resetting machinery (timers, a consumer re-created from the library's own
    // threads) made libnats 3.4.1 abort on a freed mutex now and then when a subscription was
    // destroyed. The follower does what it did: a gap in the sequence starts the subscription
    // afresh (or re-bootstraps, if the log no longer holds the version), and its watchdog
    // restarts one that stalled while the log moved on.
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = nullptr;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start_seq;
    so.Config.AckPolicy = js_AckNone;
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions o = request_options();
    check(js_SubscribeSync(&sub, js_.get(), log_subject().c_str(), &o, &so, &jerr), "subscribe", jerr);
    subscription_ptr owned(sub, subscription_ender{nc_.get(), timeout_ms_});
    if (buffer_bytes > 0) {
      int messages = 0;  // the client's limit on their count stays
      int bytes = 0;
      check(natsSubscription_GetPendingLimits(sub, &messages, &bytes), "subscribe");
      bytes = static_cast<int>(std::min<std::int64_t>(buffer_bytes, std::numeric_limits<int>::max()));
      check(natsSubscription_SetPendingLimits(sub, messages, bytes), "subscribe");
    }
    return owned;
  }

  std::chrono::milliseconds timeout() const noexcept { return std::chrono::milliseconds(timeout_ms_); }

  /// Throws replication_error for a failed status, as replication::check() does, but says why a
  /// call failed where the connection tells more than the status (unreachable):
  /// - reconnecting, and the credentials file failed the client's last attempt and still fails
  ///   read again now: protocol, naming it (a setting to mend; a file mended is read at the
  ///   next attempt);
  /// - closed for good, which the client library never does for a server out of reach (it
  ///   reconnects for ever): the engine turned the client away (a user revoked while connected,
  ///   closed at the notice; credentials refused twice in a row on reconnecting). Refused where
  ///   its answer shows a refusal (shows_refusal()), else engine; never unreachable, since
  ///   waiting will not help: the leader or follower must be opened again.
  void check(natsStatus s, const char* what, jsErrCode jerr = static_cast<jsErrCode>(0)) const {
    if (s == NATS_OK) return;
    replication_errc code = classify(s, jerr);
    std::string detail = describe(s, jerr);
    if (code == replication_errc::unreachable && nc_ && !closed() && !connected()) {
      const std::optional<credentials_failure> f = credentials_.last_failure();
      if (f && !f->retry) {
        if (const std::optional<std::string> why = credentials_.problem_now()) {  // not mended since
          code = replication_errc::protocol;
          detail += "; every reconnection fails: " + *why;
        }
      }
    }
    if (code == replication_errc::unreachable && nc_ && closed()) {
      const char* last = nullptr;
      (void)natsConnection_GetLastError(nc_.get(), &last);
      const std::string answer = last != nullptr ? last : "";
      code = shows_refusal(answer) ? replication_errc::refused : replication_errc::engine;
      detail += "; the client library closed the connection for good";
      if (!answer.empty()) detail += ": " + answer;
    }
    throw replication_error(code, what, detail);
  }

 private:
  static void check_name(const std::string& name) {
    bool ok = !name.empty();
    for (char c : name) ok = ok && name_char(c);
    if (!ok) throw replication_error(replication_errc::protocol, "open", "a map's name is letters, digits, _ and -: '" + name + "'");
  }

  /// Refuses a lease_ttl that is not positive: a bucket made with a TTL of 0 never expires its
  /// entries (a leader that died would hold the lease for ever), and the bucket keeps the TTL
  /// of the open that made it, so every later leader of the map would be locked out.
  static void check_lease_ttl(std::chrono::milliseconds lease_ttl) {
    if (lease_ttl.count() > 0) return;
    throw replication_error(replication_errc::protocol, "open",
                            "replication_options::lease_ttl is " + std::to_string(lease_ttl.count()) +
                                " ms: it must be positive (a lease bucket made without a TTL never expires its "
                                "leader)");
  }

  /// Connects to the engine with the settings (options_for()), or throws replication_error,
  /// then opens the JetStream context every call of the channel uses.
  void connect(const connection_settings& engine) {
    const options_ptr opts = options_for(engine);
    nc_.reset(connection_or_throw(opts.get(), engine));
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = timeout_ms_;
    jsCtx* js = nullptr;
    check(natsConnection_JetStream(&js, nc_.get(), &jo), "jetstream");
    js_.reset(js);
  }

  /// The client library's options for the settings: servers, credentials, TLS, and a connection
  /// that reconnects for ever and notices a silent server in about 2 s.
  options_ptr options_for(const connection_settings& engine) {
    natsOptions* o = nullptr;
    check(natsOptions_Create(&o), "connect");
    options_ptr opts(o);
    set_servers(o, engine.url);
    set_credentials(o, engine);
    set_tls(o, engine);
    check(natsOptions_SetTimeout(o, timeout_ms_), "connect");
    check(natsOptions_SetAllowReconnect(o, true), "connect");
    check(natsOptions_SetMaxReconnect(o, -1), "connect");  // forever: followers keep trying
    check(natsOptions_SetReconnectWait(o, 100), "connect");
    // A stopped server (a silent peer, not a refused connection) is noticed in about 2 s.
    check(natsOptions_SetPingInterval(o, 1000), "connect");
    check(natsOptions_SetMaxPingsOut(o, 2), "connect");
    // Every message is written at once: the client's default holds a plain publish (a
    // follower's report) up to a millisecond for more to join it, and a leader waiting for
    // acks would wait that long. Requests (JetStream's) were written at once already.
    check(natsOptions_SetSendAsap(o, true), "connect");
    check(natsOptions_SetIOBufSize(o, io_buffer_bytes), "connect");
    return opts;
  }

  /// The first connection (attempt()), or replication_error saying why there is none, as check()
  /// would say it, without the secrets of the url or the options.
  natsConnection* connection_or_throw(natsOptions* o, const connection_settings& engine) {
    natsConnection* nc = nullptr;
    natsStatus s = attempt(o, &nc, engine);
    // A server that verifies its clients' certificates closes the connection after a TLS 1.3
    // handshake whose client certificate it refused: the client library then reads nothing where
    // the engine's first answer should be ("Expected 'PONG', got ''"), and no text of the
    // engine's says why. A server going down right after a handshake looks the same, once: a
    // refusal repeats at a second attempt.
    if (s != NATS_OK && dropped_after_tls(s, engine)) {
      s = attempt(o, &nc, engine);
      if (s != NATS_OK && dropped_after_tls(s, engine)) {
        throw replication_error(replication_errc::refused, without_secrets("connect to " + engine.url, engine),
                                without_secrets(describe(s), engine) +
                                    " (twice: the engine closed the connection after the TLS handshake; one that "
                                    "verifies its clients' certificates refuses a client without tls_cert_file and "
                                    "tls_key_file, or with a certificate that none of its authorities signed)");
      }
    }
    if (s == NATS_OK) return nc;
    const std::string detail = describe(s);
    replication_errc code = classify(s, static_cast<jsErrCode>(0));
    // A failed TLS handshake (classify()) is unreachable unless the text shows a refusal
    // (shows_refusal()). With several servers the status is the last one's (a server refusing
    // the credentials, then one down: "Timeout", with libnats 3.4.1), but the text keeps a
    // refusal met on the way: that is the answer, the settings need mending.
    if (code == replication_errc::unreachable && shows_refusal(detail)) code = replication_errc::refused;
    throw replication_error(code, without_secrets("connect to " + engine.url, engine), without_secrets(detail, engine));
  }

  /// natsConnection_Connect, again while a credentials callback failed on what another attempt
  /// may mend (sign_nonce: a signature the client library cannot send; another nonce comes).
  /// Throws replication_error, protocol, for a callback's failure that is a setting to mend (a
  /// file that changed since set_credentials read it).
  natsStatus attempt(natsOptions* o, natsConnection** nc, const connection_settings& engine) {
    natsStatus s = natsConnection_Connect(nc, o);
    for (int tries = 1; s != NATS_OK; ++tries) {
      const std::optional<credentials_failure> failed = credentials_.take_failure();
      if (!failed) break;
      if (!failed->retry || tries == 8) {
        throw replication_error(replication_errc::protocol, without_secrets("connect to " + engine.url, engine),
                                failed->message);
      }
      s = natsConnection_Connect(nc, o);
    }
    return s;
  }
  /// Whether a connection failed with TLS on because the server closed it before its first
  /// answer (see connect()).
  static bool dropped_after_tls(natsStatus s, const connection_settings& engine) {
    return s == NATS_PROTOCOL_ERROR && wants_tls(engine) && describe(s).find("got ''") != std::string::npos;
  }
  /// Whether a failed connection's text (describe()) shows that a server turned the client away:
  /// the engine's answer to bad credentials (refused, expired, revoked), to a client past its
  /// connection limits, TLS wanted on one side only (the client library's texts), or a
  /// certificate not trusted (the client library then names it: "...:depth=0:..."). Any case.
  static bool shows_refusal(const std::string& detail) {
    const std::string lower = absl::AsciiStrToLower(detail);
    for (const char* sign : {"authorization violation", "authentication expired", "authentication violation",
                             "authentication revoked", "secure connection required",
                             "secure connection not available", ":depth=", "maximum connections exceeded",
                             "maximum account active connections exceeded"}) {
      if (lower.find(sign) != std::string::npos) return true;
    }
    return false;
  }
  /// The servers to try: one url, or a comma-separated list (the client library takes a list only
  /// as an array: its url setter fails on a comma).
  static void set_servers(natsOptions* o, const std::string& list) {
    const std::vector<std::string> urls = split_urls(list);
    if (urls.empty()) throw replication_error(replication_errc::protocol, "open", "replication_options::url is empty");
    std::vector<const char*> servers;
    for (const std::string& u : urls) servers.push_back(u.c_str());
    replication::check(natsOptions_SetServers(o, servers.data(), static_cast<int>(servers.size())), "connect");
  }
  /// The one way of authenticating the settings give, if any: a user and password, a token (in
  /// the options or in a url), a credentials file (its seed in it, or in nkey_seed_file) or an
  /// NKey. The files are read here, so that a bad one is a protocol error at the open
  /// (credentials.hpp), and again at every connection, by the client library's callbacks
  /// (user_jwt, sign_nonce), so that a file replaced before a reconnection is used.
  void set_credentials(natsOptions* o, const connection_settings& engine) {
    const bool user = !engine.user.empty() || !engine.password.empty();
    const bool creds = !engine.credentials_file.empty();
    const bool nkey = !engine.nkey.empty();
    bool in_url = false;
    for (const std::string& url : split_urls(engine.url)) in_url = in_url || url_secret(url).second != 0;
    const int ways = int(user) + int(in_url) + int(!engine.token.empty()) + int(creds) + int(nkey);
    if (ways > 1) {
      throw replication_error(replication_errc::protocol, "open",
                              "replication_options: more than one of a user/password in the options, a user or "
                              "token in a url, a token in the options, a credentials file and an nkey (the engine "
                              "takes one; the client library would send the url's and drop the others)");
    }
    if (user) check(natsOptions_SetUserInfo(o, engine.user.c_str(), engine.password.c_str()), "connect");
    if (!engine.token.empty()) check(natsOptions_SetToken(o, engine.token.c_str()), "connect");
    if (!creds && !nkey && !engine.nkey_seed_file.empty()) {
      throw replication_error(replication_errc::protocol, "open",
                              "replication_options::nkey_seed_file goes with nkey (an NKey user) or with "
                              "credentials_file (a JWT whose seed is not in its file)");
    }
    if (creds) {
      const credentials_source source{engine.credentials_file, engine.nkey_seed_file};
      const user_credentials readable(source);
      credentials_ = credentials_registration(source);
      check(natsOptions_SetUserCredentialsCallbacks(o, &user_jwt, credentials_.closure(), &sign_nonce,
                                                    credentials_.closure()),
            "connect");
    }
    if (nkey) {
      if (engine.nkey_seed_file.empty()) {
        throw replication_error(replication_errc::protocol, "open",
                                "replication_options: nkey and nkey_seed_file go together");
      }
      if (const std::string why = user_nkey_problem(engine.nkey, false); !why.empty()) {
        throw replication_error(replication_errc::protocol, "open", "replication_options::nkey: " + why);
      }
      const credentials_source source{{}, engine.nkey_seed_file};
      const user_credentials readable(source);
      credentials_ = credentials_registration(source);
      check(natsOptions_SetNKey(o, engine.nkey.c_str(), &sign_nonce, credentials_.closure()), "connect");
    }
  }
  /// The client library's callbacks for a credentials file or an NKey (closure: the number of the
  /// channel's credentials_registration): the user's JWT, and the server's nonce signed with the
  /// user's seed, read from the files at each connection attempt, once for both
  /// (credentials_registry::for_jwt). A failure is the client library's NATS_ERR with our message
  /// (the seed never in it).
  static natsStatus user_jwt(char** jwt, char** error, void* closure) noexcept {
    return with_credentials(closure, error, &credentials_registry::for_jwt, [&](const user_credentials& c) {
      *jwt = ::strdup(c.jwt.c_str());
      return *jwt != nullptr ? NATS_OK : NATS_NO_MEMORY;
    });
  }
  /// A server that sends no nonce (one without NKey users, not in operator mode) asks for no
  /// signature: none is given (as the client library's own readers do).
  static natsStatus sign_nonce(char** error, unsigned char** signature, int* length, const char* nonce,
                               void* closure) noexcept {
    if (nonce == nullptr || *nonce == '\0') {
      credentials_registry::drop_kept(reinterpret_cast<std::uintptr_t>(closure));
      *signature = nullptr;
      *length = 0;
      return NATS_OK;
    }
    return with_credentials(closure, error, &credentials_registry::for_signature, [&](const user_credentials& c) {
      const natsStatus s = nats_Sign(c.seed.c_str(), nonce, signature, length);
#if NATS_VERSION_NUMBER < 0x030800
      // Before 3.8.0 the client library sends nothing for a signature whose first byte is 0 (its
      // base64 encoder stops at a leading zero byte) and the server refuses the client: about
      // one connection in 256. Failing here is no refusal: the next attempt gets another nonce.
      if (s == NATS_OK && *length > 0 && (*signature)[0] == 0) {
        ::free(*signature);
        *signature = nullptr;
        *length = 0;
        credentials_registry::note_failure(reinterpret_cast<std::uintptr_t>(closure),
                                           {"the nonce's signature begins with a zero byte", true});
        return NATS_ERR;
      }
#endif
      return s;
    });
  }
  /// Runs f on the credentials read(id) gives for closure's number; a failure is noted in the
  /// registry (for connect() to report as protocol) and given to the client library as NATS_ERR.
  template <class F>
  static natsStatus with_credentials(void* closure, char** error,
                                     std::shared_ptr<const user_credentials> (*read)(std::uintptr_t),
                                     F&& f) noexcept {
    const auto id = reinterpret_cast<std::uintptr_t>(closure);
    try {
      const std::shared_ptr<const user_credentials> c = read(id);
      if (!c) {
        *error = ::strdup("the replicated map's connection is closed");
        return NATS_ERR;
      }
      return f(*c);
    } catch (const std::exception& e) {
      try {
        credentials_registry::note_failure(id, {e.what(), false});
      } catch (...) {  // no memory: the client library's error text says it
      }
      *error = ::strdup(e.what());
      return NATS_ERR;
    } catch (...) {
      return NATS_ERR;
    }
  }
  /// Whether the settings ask for TLS: tls, any of the files, or a tls:// url (the client
  /// library reads that scheme but does not turn TLS on for it).
  static bool wants_tls(const connection_settings& engine) {
    bool tls_url = false;
    for (const std::string& url : split_urls(engine.url)) tls_url = tls_url || is_tls_url(url);
    return engine.tls || tls_url || !engine.tls_ca_file.empty() || !engine.tls_cert_file.empty() ||
           !engine.tls_key_file.empty();
  }
  /// TLS, if the settings want it (wants_tls()). The servers' certificates are checked against
  /// tls_ca_file, or the authorities the client library trusts by default (the system's) when it
  /// is empty. A file that cannot be loaded is a protocol error (a setting to mend, not a refusal).
  static void set_tls(natsOptions* o, const connection_settings& engine) {
    if (!wants_tls(engine)) return;
    if (engine.tls_cert_file.empty() != engine.tls_key_file.empty()) {
      throw replication_error(replication_errc::protocol, "open",
                              "replication_options: tls_cert_file and tls_key_file go together");
    }
    replication::check(natsOptions_SetSecure(o, true), "connect (TLS)");
    if (!engine.tls_ca_file.empty()) {
      check_file(natsOptions_LoadCATrustedCertificates(o, engine.tls_ca_file.c_str()),
                 "load the TLS authorities " + engine.tls_ca_file);
    }
    if (!engine.tls_cert_file.empty()) {
      check_file(natsOptions_LoadCertificatesChain(o, engine.tls_cert_file.c_str(), engine.tls_key_file.c_str()),
                 "load the TLS certificate " + engine.tls_cert_file);
    }
  }
  static bool is_tls_url(const std::string& url) {
    constexpr absl::string_view scheme = "tls://";
    return url.size() > scheme.size() && absl::StartsWithIgnoreCase(url, scheme);
  }
  static void check_file(natsStatus s, const std::string& operation) {
    if (s != NATS_OK) throw replication_error(replication_errc::protocol, operation, describe(s));
  }

  /// The size of the client's socket buffers (it reads into one and writes from another): 256
  /// KiB, not the client's default 32 KiB, which a follower catching up fills with two log
  /// messages at batches of 1,024 (16 KiB each), reading the socket again for each pair, and
  /// with a message split between two reads copied once more. The engine's delivery of a log
  /// to a bare subscriber went from 0.71x to 0.91x the in-process writer's rate at batches of
  /// 1,024 (0.44x to 0.51x at 64; medians of 5 runs, bench follower_apply_pair). Memory: the
  /// two buffers, 512 KiB per channel.
  static constexpr int io_buffer_bytes = 256 * 1024;

  /// The options of a JetStream API request: the channel's timeout.
  jsOptions request_options() const noexcept {
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = timeout_ms_;
    return o;
  }

  /// Creates the stream unless it exists; returns whether it allows direct gets.
  bool ensure_stream(const std::string& stream, const std::string& subject, std::int32_t max_msg_size) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions o = request_options();
    natsStatus s = js_GetStreamInfo(&si, js_.get(), stream.c_str(), &o, &jerr);
    stream_info_ptr owned(si);
    if (s == NATS_OK) return si->Config != nullptr && si->Config->AllowDirect;
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) check(s, "stream info", jerr);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = stream.c_str();
    const char* subjects[] = {subject.c_str()};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.MaxMsgSize = max_msg_size;
    cfg.Replicas = replicas_;
    cfg.AllowDirect = true;  // get() reads messages as they are, not in base64 inside JSON
    s = js_AddStream(&si, js_.get(), &cfg, &o, &jerr);
    stream_info_ptr added(si);
    if (jerr == JSStreamNameExistErr) return false;  // made by another process meanwhile: ask again next open
    check(s, ("create stream " + stream).c_str(), jerr);
    return true;
  }

  kv_ptr ensure_bucket(const std::string& bucket, std::int64_t ttl_ms) {
    kvStore* kv = nullptr;
    if (js_KeyValue(&kv, js_.get(), bucket.c_str()) == NATS_OK) return kv_ptr(kv);
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    cfg.History = 1;
    cfg.TTL = ttl_ms * 1'000'000;  // nanoseconds, as the stream's MaxAge
    cfg.StorageType = js_FileStorage;
    cfg.Replicas = replicas_;
    check(js_CreateKeyValue(&kv, js_.get(), &cfg), ("create bucket " + bucket).c_str());
    return kv_ptr(kv);
  }

  void purge(const std::string& stream, std::uint64_t below) {
    // Nothing is below 1; and nats-server 2.9 takes a purge below 1 for a purge of everything.
    if (below <= 1) return;
    jsOptions o = request_options();
    o.Stream.Purge.Sequence = below;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    check(js_PurgeStream(js_.get(), stream.c_str(), &o, &jerr), "purge", jerr);
  }

  std::string name_;
  std::int64_t timeout_ms_;
  int replicas_;                        ///< the engine's copies of each stream and bucket it makes
  std::map<std::string, bool> direct_;  ///< per stream: whether it allows direct gets
  /// The source of the connection's credentials file or seed (none: another way, or none at
  /// all). Declared before nc_, so that it goes after the connection.
  credentials_registration credentials_;
  connection_ptr nc_;
  js_ptr js_;
  kv_ptr meta_;
  kv_ptr lease_;
  kv_ptr acks_;
  std::uint64_t lease_rev_ = 0;
};

}  // namespace leftright::detail::replication
