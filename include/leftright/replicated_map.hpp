// SPDX-License-Identifier: Apache-2.0
// leftright: one map on many machines. A leader publishes each batch to NATS JetStream before
// its own readers see it; followers bootstrap from the newest snapshot (or, restarting warm,
// from a local copy of their own: replication_options::local_path) and apply the log in
// order, each through its own map writer, so their readers are ordinary map_readers: wait-free,
// whole batches only, versions never going down.
//
// An optional part: CMake target leftright::replication, built when libnats (the nats.c client)
// is found. The rest of the library never includes this header.
//
// The engine holds, for a map named <m> (detail/replication/nats.hpp has the layout): a log
// stream with one message per published batch, whose sequence is the batch's version; a
// snapshot stream; a KV bucket with the newest snapshot's pointer, and one with the leader lease.
// A publish carries the expected last sequence (its version - 1): a second leader, or a leader
// that missed a batch, is refused (replication_errc::fenced) and can never fork the log.
//
// Atomics in this file (a follower's state, shared by its applying thread and its users):
//   [F1] applied: store release, version() load acquire: the batch was published (its readers
//        see it) before version() reports it; wait_for() then finds it too
//   [F2] applied: load relaxed by the applying thread, its own writes
//   [F3] known_last: relaxed both ways: an estimate for lag(); nothing is read through it
//   [F4] rebootstraps: relaxed: a counter read on its own; it is counted before the version
//        the re-bootstrap published is shown ([F1]'s release store and the mutex of wait_for
//        order it), so a caller that saw that version sees the count
//   [F5] stopping: relaxed both ways: stored under the mutex that orders it before the thread's
//        next check; only a signal to leave the loop
//   [F6] replaced: relaxed both ways: stored under the mutex, after the error that explains it;
//        a caller that saw it and then locks the mutex (last_error()) locks it after that store's
//        section (else its load would precede the store), so it reads the error; the thread
//        reads its own store
//   [F7] default_follower_id's counter (default_id's too): fetch_add relaxed: it only makes
//        each id's number distinct; nothing is read through it
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unistd.h>
#include <utility>
#include <vector>

#include "detail/replication/acks.hpp"
#include "detail/replication/batch_bridge.hpp"
#include "detail/replication/local_copy.hpp"
#include "detail/replication/nats.hpp"
#include "detail/replication/replica_state.hpp"
#include "detail/storage/crc32c.hpp"
#include "detail/storage/replay.hpp"
#include "durable_map.hpp"
#include "map.hpp"
#include "replication_error.hpp"

namespace leftright {

/// Where a replicated map lives in the engine, and how its leader snapshots and trims the log.
struct replication_options {
  /// The engine's address: one url, or the servers of a cluster, comma-separated
  /// ("nats://a:4222,nats://b:4222"): the client tries them in turn at the open and after a loss
  /// (and learns the cluster's other servers from the one it reaches). A url may carry a user and
  /// password (nats://user:pass@host:4222) or a token (nats://token@host:4222), as the fields
  /// below do; tls://host:4222 asks for TLS, as tls does.
  std::string url = "nats://127.0.0.1:4222";
  std::string name;                            ///< the map's name there: letters, digits, _ and -
  std::chrono::milliseconds timeout{5000};     ///< bounds each request to the engine
  /// The engine's authentication (a production server), one way at a time (two at once, a url's
  /// user or token included: the open throws replication_error, protocol): a user and password;
  /// a token; a credentials file (the user's JWT and NKey seed in one file, as the engine's
  /// operator tools write it: an engine in operator mode; or the JWT alone, its seed in
  /// nkey_seed_file); or an NKey user, its public key ("U...") in nkey and its seed in the file
  /// nkey_seed_file (the two together). The files are read at the open and at every connection
  /// attempt (once for the JWT and the signature): a file replaced before a reconnection is used
  /// (a JWT renewed, say; one past its expiry is not sent, and the client goes on trying).
  /// Replace a JWT file and its seed file together: a reconnection between the two would pair
  /// them wrongly. The client library closes the connection for good when the engine revokes
  /// the user while connected, or refuses the same credentials twice in a row on reconnecting
  /// (a JWT expired by the engine's clock but not this machine's): every call then fails
  /// (refused, with the engine's answer), and the leader or follower must be opened again. A
  /// client the engine refuses at the open gets replication_error, refused; a file that cannot
  /// be read or does not hold what it must (detail/replication/credentials.hpp), protocol.
  std::string user;
  std::string password;
  std::string token;
  std::filesystem::path credentials_file;
  std::string nkey;
  std::filesystem::path nkey_seed_file;
  /// TLS: connect with TLS (implied by any of the files, and by a tls:// url). The servers'
  /// certificates are checked against the authorities in tls_ca_file (PEM; empty: those the
  /// client library trusts by default, the system's). tls_cert_file and tls_key_file (PEM,
  /// together): this client's certificate and key, for an engine that verifies its clients. A
  /// file that cannot be loaded makes the open throw replication_error, protocol; a certificate
  /// not trusted, or an engine without TLS, refused; a handshake cut short, unreachable.
  /// Error messages name the servers without the secrets of their urls or of these options.
  /// With several servers, a refusal by one of them is refused, even if a server tried after it
  /// is down (the client library's status is the last server's; its error text keeps the refusal).
  bool tls = false;
  std::filesystem::path tls_ca_file;
  std::filesystem::path tls_cert_file;
  std::filesystem::path tls_key_file;
  /// Leader: take a snapshot after every this many versions (0: only when snapshot() is called).
  std::uint64_t snapshot_every = 0;
  /// Leader: publish() returns once this many followers have applied the batch (followers
  /// report a batch published with acks at once; a leader waits at most `timeout` for them).
  /// Fewer throws replication_error (unacknowledged), the batch published all the same. 0:
  /// publish() returns once the engine stored the batch. wait_for_acks() asks for one batch.
  std::size_t acks = 0;
  /// Leader: after a snapshot at V, the log is purged below V + 1 - keep_log (so followers up to
  /// keep_log versions behind can still catch up from the log). No purge when purge_log is false.
  std::uint64_t keep_log = 0;
  bool purge_log = true;
  /// Leader: at a snapshot, also keep the log after the version of each follower that reported
  /// in the last minute (the acks bucket) and is at most this many versions behind the
  /// snapshot, so that it catches up from the log instead of loading the snapshot (0: followers
  /// are not waited for). A follower further behind, or gone for a minute, re-bootstraps: the
  /// bound keeps one stopped follower from holding the log forever.
  std::uint64_t keep_log_for_followers = 0;
  /// Leader: its name in the lease (default: "<host>-<pid>-<n>", made anew at each open);
  /// take_over steals a held lease (after a failover: the old leader, if alive, is then fenced
  /// at its next publish). A leader destroyed gives its lease up, if it still holds it, so the
  /// next one opens at once. A lease still held under the opening leader's own id (its earlier
  /// run crashed, the TTL has not passed) is taken back without take_over: give an id of your own
  /// only to one leader process at a time (a stable one per leader role, say). Two live leaders
  /// with one id would then both hold the lease; the log's expected sequence still lets only
  /// one of them publish each version (the other is fenced), so the log never forks.
  /// Follower: its name in the engine's acks bucket, where it reports the version it applied
  /// (replicated_writer::followers(), acks): letters, digits, _, - and = (default:
  /// "<host>-<pid>-<n>"). Give each follower a name of its own that stays across its restarts.
  std::string id;
  bool take_over = false;
  /// Leader: the lease expires this long after its last renewal (each publish renews it once a
  /// third of this has passed). Positive: an open refuses 0 or less (replication_error,
  /// protocol). The lease bucket keeps the TTL of the open that made it (the map's first leader
  /// or follower): a later open's lease_ttl changes nothing there (delete the bucket,
  /// LR_<name>_LEASE, to change it).
  std::chrono::milliseconds lease_ttl{10000};
  /// The engine's copies of each stream and bucket the map makes (its first leader or follower
  /// makes them; later opens use them as they are): 3 on a 3-node cluster, so that a publish is
  /// acknowledged once a quorum stored it; 1 on a single server, which refuses more (the open
  /// throws replication_error with the engine's reason).
  int replicas = 1;
  /// Leader or follower: a directory for a local durable copy of its state (empty: none; it
  /// then loads its state from the engine at every open). Created if missing and locked while
  /// the leader or follower lives (one per directory). Its newest snapshot, if any, is loaded at
  /// the open, so a warm restart holds that version at once and reads from the engine only the
  /// log after it (or, if the engine purged that far, loads the engine's snapshot instead:
  /// never going back). The files are a durable map's snapshots
  /// (detail/storage/snapshot.hpp), checksummed and named by the map's key and value codecs: a
  /// damaged one, or one of other types, makes the open throw (delete the directory to start
  /// cold). Nothing else is kept there: the log itself stays in the engine, which stored every
  /// batch before any reader saw it (a local log would repeat it, and add a sync to every
  /// publish). A leader refuses a copy the engine cannot go on from: one ahead of the engine's
  /// log (the engine lost data) or of a log since deleted and made anew.
  std::filesystem::path local_path;
  /// With local_path: write a local snapshot after this many versions since the last one (and
  /// at a clean stop), keeping only the newest. Each costs a pass over the map, on the
  /// follower's thread (applying waits meanwhile) or in the leader's publish() that reached
  /// it; 0 writes one only at the stop.
  std::uint64_t local_checkpoint_every = 1000;
  /// Follower: the most log bytes its engine client holds for it, received but not yet applied
  /// (0: the client's default, 64 MiB; its limit of 65,536 messages stays either way). A
  /// follower further behind (a slow apply, a reader's guard held long) has the client drop what
  /// arrives beyond it; it then reads those versions again from the log (resubscriptions()
  /// counts it): nothing is lost, and its memory stays bounded. At least the engine's message
  /// limit (max_payload, 1 MiB by default), which a larger batch could never pass through:
  /// open_follower refuses less (replication_error, protocol).
  std::int64_t follower_buffer_bytes = 0;
};

/// A follower's newest report to the leader (replicated_writer::followers()).
struct follower_ack {
  std::string id;             ///< replication_options::id of the follower
  std::uint64_t version = 0;  ///< the newest version it applied
};

namespace detail::replication {

/// Where and how the options' leader or follower connects to the engine.
inline connection_settings engine_of(const replication_options& o) {
  connection_settings c(o.url);
  c.user = o.user;
  c.password = o.password;
  c.token = o.token;
  c.credentials_file = o.credentials_file.string();
  c.nkey = o.nkey;
  c.nkey_seed_file = o.nkey_seed_file.string();
  c.tls = o.tls;
  c.tls_ca_file = o.tls_ca_file.string();
  c.tls_cert_file = o.tls_cert_file.string();
  c.tls_key_file = o.tls_key_file.string();
  return c;
}

/// How often a follower opened from now on asks the engine for the log's range (its watchdog:
/// follower::state::watchdog()). One second; tests lengthen it (set before open_follower, on the
/// opening thread) to look at what a follower makes of the log's messages alone.
inline std::chrono::milliseconds follower_watchdog_period{1000};

/// The plain table a replica's state is loaded into before it becomes a map.
template <class Key, class Value, class Hash, class Eq, class Traits>
using load_table = storage::recovery_table<Key, Value, Hash, Eq, Traits>;

/// Refuses a follower_buffer_bytes that is negative, or below the engine's message limit (a
/// message that large would be dropped each time it arrived: the follower could never pass it).
inline void check_buffer_bytes(std::int64_t bytes, std::size_t max_payload) {
  if (bytes == 0) return;
  if (bytes < 0 || static_cast<std::uint64_t>(bytes) < max_payload) {
    throw replication_error(replication_errc::protocol, "open follower",
                            "follower_buffer_bytes is " + std::to_string(bytes) +
                                ": 0 (the client's default) or at least the engine's message limit, " +
                                std::to_string(max_payload) + " bytes");
  }
}

/// A follower's name in the acks bucket when replication_options::id is empty: "<host>-<pid>-<n>",
/// the n-th leader or follower this process opened (so that the followers of a fleet, and
/// several in one process, each have their own). Characters a key cannot hold become '_'.
inline std::string default_follower_id() {
  // [F7] relaxed: only a counter that makes each call's number distinct; nothing is read through it.
  static std::atomic<std::uint64_t> opened{0};
  const std::uint64_t n = opened.fetch_add(1, std::memory_order_relaxed);
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "host");
  std::string id = std::string(host) + "-" + std::to_string(::getpid()) + "-" + std::to_string(n);
  for (char& c : id) {
    if (!name_char(c)) c = '_';
  }
  return id;
}

/// A leader's name in the lease when replication_options::id is empty: "<host>-<pid>-<n>", as a
/// follower's (one counter for both). Unique to the leader opened: a leader holding a lease
/// under its own id takes it back at open (see replication_options::id), which a leader
/// restarted after a crash, or one on another host with the same pid (pid 1 in every
/// container), must not do with an id it did not choose.
inline std::string default_id() { return default_follower_id(); }

/// Refuses a follower id the acks bucket cannot hold as a key.
inline void check_follower_id(const std::string& id) {
  bool ok = !id.empty();
  for (char c : id) ok = ok && (name_char(c) || c == '=');
  if (!ok) {
    throw replication_error(replication_errc::protocol, "open follower",
                            "a follower's id is letters, digits, _, - and =: '" + id + "'");
  }
}

}  // namespace detail::replication

/// The one writer of a replicated map: every member of map_writer, with the same meaning, plus
/// snapshot(), local_snapshot() and connected(). publish() returns once the engine has stored
/// the batch; the local readers see it after that, never before. Move-only. Destroying it
/// (a moved-from one does nothing) writes the local copy, if any, then gives up the lease if
/// it still holds it (channel::release_lease: a round trip, never throwing), so the next
/// leader opens at once.
/// All members: Thread-safety: the one thread using the writer at a time.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class replicated_writer : private map_writer<Key, Value, Hash, Eq, Traits> {
  using base = map_writer<Key, Value, Hash, Eq, Traits>;
  using ops = typename base::ops_type;
  using op = typename base::op_type;
  using meta_type = typename detail::meta_of<Traits>::type;

 public:
  using typename base::factory_type;
  using typename base::reader;
  using base::shares_values;

  using base::clear;
  using base::contains;
  using base::discard;
  using base::erase;
  using base::factory;
  using base::find;
  using base::insert;
  using base::insert_or_assign;
  using base::make_reader;
  using base::meta;
  using base::pending;
  using base::poisoned;
  using base::reader_slots;
  using base::reserve;
  using base::set_meta;
  using base::set_stall_report;
  using base::sync_mode;
  using base::version;

  /// As map_writer::erase_if; the log records the keys it erased.
  template <class Pred>
  void erase_if(Pred pred) {
    base::erase_if_noting_keys(std::move(pred));
  }

  /// Appends the queued batch to the engine's log as the next version and, once the engine has
  /// acknowledged it, makes it visible to the local readers; returns the version.
  /// Progress: blocking: the reader wait of map_writer::publish, then a round trip to the engine.
  /// Exceptions: replication_error, with nothing published and the batch still queued:
  ///   fenced      the log moved on without this writer (another leader published): it must
  ///               not publish again; reopen it (open_leader) to continue from the log;
  ///   unreachable no answer within options.timeout: the batch may or may not be in the log
  ///               (a retry of the same batch is dropped by the engine as a duplicate; a
  ///               different batch is fenced if the first one landed); a due renewal of the
  ///               lease the engine did not answer is unreachable too (the next publish renews
  ///               from the lease as the engine holds it then);
  ///   too_large   the encoded batch is larger than the engine's message limit;
  ///   lease_held  another leader took the lease (the message names it).
  ///   Otherwise as map_writer::publish. After a publish (the batch is in the log and visible
  ///   to the local readers), these run, and an error of theirs propagates, the publish having
  ///   happened all the same:
  ///   - with options().acks, the wait for that many followers to apply it (wait_for_acks,
  ///     at most options().timeout); fewer throws unacknowledged, naming how many did;
  ///   - a due automatic snapshot (snapshot_every);
  ///   - with a local copy (local_path), a due local snapshot (protocol, naming the file).
  std::uint64_t publish() {
    const std::uint64_t v = base::publish_with(hook{*this});
    after_publish(v);
    return v;
  }
  /// publish() if no reader has to be waited for; false and nothing changed otherwise.
  bool try_publish() {
    if (!base::try_publish_with(hook{*this})) return false;
    after_publish(version());
    return true;
  }

  /// Waits until at least n followers have applied version v or later, as they report it in
  /// the engine's acks bucket, or until timeout passes; returns how many have (fewer than n:
  /// the timeout passed). A follower reports a batch published with options().acks at once
  /// (one that reaches it only after its leader stopped waiting, catching up, with its next
  /// report), and otherwise the version it shows about every second. Counts each follower id once (its
  /// newest report), a follower stopped since it reported included.
  /// Progress: blocking, at most timeout (plus a round trip to the engine at the first call,
  /// and one when it would return fewer than n). Throws replication_error (unreachable) if the
  /// engine cannot be asked.
  std::size_t wait_for_acks(std::uint64_t v, std::size_t n, std::chrono::milliseconds timeout) {
    return acks_view().wait(v, n, timeout);
  }
  /// The followers that reported in the last minute, each with the newest version it applied,
  /// by id, as the engine's acks bucket holds them now. Progress: blocking, a round trip to the
  /// engine. Throws replication_error (unreachable) if the engine cannot be asked.
  std::vector<follower_ack> followers() {
    std::vector<follower_ack> out;
    for (const auto& [id, v] : ch_->read_acks()) out.push_back({id, v});
    return out;
  }

  /// Writes a snapshot of the published state to the engine, points followers at it, then
  /// purges what it covers (older snapshots; the log below version() + 1 - keep_log, or below
  /// the version after a follower's within keep_log_for_followers: reading the acks bucket).
  /// Progress: blocking; O(size of the map) plus a round trip per chunk (a chunk is at most
  /// the engine's message limit). Throws replication_error; a failed snapshot changes nothing
  /// a follower relies on (the pointer moves only once every chunk is stored, and only forward:
  /// fenced, with nothing purged, where a leader that took over has snapshotted a newer version,
  /// or where another writer's snapshot chunks came between this one's or after them and were
  /// pointed at first: two leaders snapshotting at once).
  void snapshot() {
    auto g = snap_reader_.read();
    const std::uint64_t v = g.version();
    detail::replication::encode_snapshot<Key, Value, meta_type>(g, image_);
    auto& ch = *ch_;
    // A chunk carries one header (its expected last sequence), which the engine's message limit
    // counts: a small reserve leaves it room (4 KiB left 1-byte chunks under a 4 KiB limit).
    const std::size_t limit = ch.max_payload();
    constexpr std::size_t room = detail::replication::channel::chunk_header_reserve;
    const std::size_t chunk = limit > 2 * room ? limit - room : std::max<std::size_t>(limit / 2, 1);
    detail::replication::snapshot_pointer p{v, 0, 0, image_.size(), detail::crc32c(image_.data(), image_.size())};
    // A chain: the first chunk expects the stream's last sequence now, each next the previous
    // chunk's (another writer's chunk in between fences this snapshot: append_chunk).
    std::uint64_t last = ch.snapshot_stream_last();
    for (std::size_t off = 0; off < image_.size(); off += chunk) {
      last = ch.append_chunk(std::string_view(image_).substr(off, chunk), last);
      if (p.chunks++ == 0) p.first_seq = last;
    }
    ch.set_snapshot(p);  // only then the purge: below this writer's own chunks, now pointed at
    ch.purge_snapshots_below(p.first_seq);
    if (opts_.purge_log) ch.purge_log_below(log_kept_from(v));
    last_snapshot_ = v;
  }

  /// Writes the published state to the local copy (options().local_path) now, as
  /// local_checkpoint_every does, and as destroying the writer does (where a failure cannot be
  /// reported). Nothing without a local copy. Progress: blocking, O(size of the map). Throws
  /// replication_error (protocol) naming the file; the older local snapshot stays then.
  void local_snapshot() {
    if (local_) local_->save();
  }

  /// Whether the connection to the engine is up now. Thread-safety: any thread.
  bool connected() const noexcept { return ch_->connected(); }
  const replication_options& options() const noexcept { return opts_; }

 private:
  template <class K, class V, class H, class E, class T>
  friend std::pair<replicated_writer<K, V, H, E, T>, map_reader<K, V, H, E, T>> open_leader(
      const replication_options&);

  using local_copy = detail::replication::local_copy<reader>;

  replicated_writer(base inner, std::unique_ptr<detail::replication::channel> ch, replication_options opts,
                    std::optional<detail::replication::local_store> store, std::uint64_t local_version)
      : base(std::move(inner)), ch_(std::move(ch)), opts_(std::move(opts)), snap_reader_(base::make_reader()),
        last_snapshot_(base::version()), renewed_(std::chrono::steady_clock::now()), nonce_(make_nonce()) {
    if (store) {
      local_ = std::make_unique<local_copy>(std::move(*store), base::make_reader(), local_version,
                                            opts_.local_checkpoint_every);
    }
  }

  /// publish_with's hook: the batch goes to the engine once it is applied to the write copy
  /// (erase_if's erased keys are known then) and before readers can see it. If the engine
  /// refuses it, before_swap throws and map_writer undoes the application.
  struct hook {
    replicated_writer& w;
    void before_apply(std::uint64_t, const std::vector<op>&) const noexcept {}
    void before_swap(std::uint64_t v, const std::vector<op>& batch) const { w.append(v, batch); }
    void abort() const noexcept {}
  };

  void append(std::uint64_t v, const std::vector<op>& batch) {
    renew_lease_if_due();
    detail::replication::encode_batch_payload<ops>(batch, payload_, base::queued_meta());
    // The same writer, version and bytes make the same id: a retry after an unknown outcome is
    // recognised by the engine as a duplicate of what landed. The writer's nonce keeps another
    // leader's batch at that version from passing for it (a duplicate's ack names the stored
    // sequence, as if this batch were stored): the same bytes, or a 32-bit checksum's collision.
    const std::string msg_id = opts_.name + "." + std::to_string(v) + "." + nonce_ + "." +
                               std::to_string(detail::crc32c(payload_.data(), payload_.size()));
    const std::uint64_t seq = ch_->append(payload_, v - 1, msg_id, /*ask_acks=*/opts_.acks != 0);
    if (seq != v) {
      throw replication_error(replication_errc::fenced, "publish",
                              "the engine stored version " + std::to_string(v) + " at sequence " +
                                  std::to_string(seq));
    }
  }

  /// 64 random bits in hex, for the message ids of this writer's batches.
  static std::string make_nonce() {
    std::random_device rd;
    const std::uint64_t n = (std::uint64_t{rd()} << 32) ^ rd();
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(n));
    return text;
  }

  /// Renews the lease once a third of its TTL has passed since the last renewal that succeeded
  /// (a failed one is tried again at the next publish).
  void renew_lease_if_due() {
    const auto now = std::chrono::steady_clock::now();
    if (now - renewed_ < opts_.lease_ttl / 3) return;
    ch_->renew_lease(opts_.id);
    renewed_ = now;
  }

  /// The first version of the log a snapshot at v keeps: keep_log versions below it, or the
  /// version after that of the slowest follower heard from within keep_log_for_followers.
  std::uint64_t log_kept_from(std::uint64_t v) {
    std::uint64_t from = v + 1 > opts_.keep_log ? v + 1 - opts_.keep_log : 1;
    if (opts_.keep_log_for_followers == 0) return from;
    for (const auto& [id, shown] : ch_->read_acks()) {  // the bucket now: followers silent for a minute are gone
      if (shown < from && v - shown <= opts_.keep_log_for_followers) from = shown + 1;
    }
    return from;
  }

  void after_publish(std::uint64_t v) {
    require_acks(v);
    snapshots_if_due(v);
  }

  void require_acks(std::uint64_t v) {
    if (opts_.acks == 0) return;
    const std::size_t have = wait_for_acks(v, opts_.acks, opts_.timeout);
    if (have < opts_.acks) {
      throw replication_error(replication_errc::unacknowledged, "publish",
                              "version " + std::to_string(v) + " is published, but " + std::to_string(have) + " of " +
                                  std::to_string(opts_.acks) + " followers reported it applied within " +
                                  std::to_string(opts_.timeout.count()) + " ms");
    }
  }

  detail::replication::ack_view& acks_view() {
    if (!acks_) acks_ = std::make_unique<detail::replication::ack_view>(*ch_);
    return *acks_;
  }

  void snapshots_if_due(std::uint64_t v) {
    if (opts_.snapshot_every != 0 && v >= last_snapshot_ + opts_.snapshot_every) snapshot();
    if (local_ && local_->due(v)) local_->save();
  }

  std::unique_ptr<detail::replication::channel> ch_;
  replication_options opts_;
  reader snap_reader_;  ///< the published state, for snapshot()
  std::uint64_t last_snapshot_;
  std::chrono::steady_clock::time_point renewed_;
  std::string nonce_;  ///< random, made once: this writer's part of each batch's message id
  std::string payload_;  ///< the batch being published, encoded
  std::string image_;    ///< the snapshot being written, encoded
  std::unique_ptr<local_copy> local_;  ///< the local copy, if any (saved once more when destroyed)
  std::unique_ptr<detail::replication::ack_view> acks_;  ///< made at its first use; ends before ch_
};

/// Opens the leader of the replicated map options.name: takes the lease, then loads its state
/// (from a local copy, options.local_path, and the log after it; else the engine's newest
/// snapshot and the log after that) and returns the writer, at the log's last version, and a
/// first reader.
/// Throws replication_error: unreachable (no engine at options.url), lease_held, protocol (the
/// engine's state is of other types, or has a hole; a local copy that is damaged, of other
/// types, in use, or that the engine cannot go on from: see replication_options::local_path).
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
std::pair<replicated_writer<Key, Value, Hash, Eq, Traits>, map_reader<Key, Value, Hash, Eq, Traits>> open_leader(
    const replication_options& options) {
  namespace rp = detail::replication;
  using meta_type = typename detail::meta_of<Traits>::type;
  replication_options opts = options;
  if (opts.id.empty()) opts.id = rp::default_id();
  rp::load_table<Key, Value, Hash, Eq, Traits> t;
  meta_type meta{};
  std::optional<rp::local_store> local;
  std::uint64_t local_version = 0;  // of the local snapshot loaded (0: none)
  if (!opts.local_path.empty()) {
    local.emplace(rp::open_local_store<Key, Value, meta_type>(opts.local_path, "open leader"));
    local_version = rp::load_local<Key, Value>(*local, t, meta, "open leader");
  }
  auto ch = std::make_unique<rp::channel>(rp::engine_of(opts), opts.name, opts.timeout, opts.lease_ttl, opts.replicas);
  ch->acquire_lease(opts.id, opts.take_over);
  const rp::log_range range = ch->range();
  if (local) rp::check_leader_copy(*local, local_version, range);
  rp::load_leader_state<Key, Value>(*ch, t, meta, local_version, range);
  auto inner = rp::make_writer_at<Key, Value, Hash, Eq, Traits>(std::move(t), range.last, meta);
  auto r = inner.make_reader();
  return {replicated_writer<Key, Value, Hash, Eq, Traits>(std::move(inner), std::move(ch), std::move(opts),
                                                          std::move(local), local_version),
          std::move(r)};
}

/// A follower of a replicated map: a background thread applies the engine's log in order
/// through the follower's own map writer: a message on its own when it keeps up, a run of
/// waiting messages as one batch (its last version) when it is behind (state::flush). Its readers (from
/// open_follower, make_reader(), factory()) are ordinary map_readers: wait-free, whole batches,
/// versions never going down, each version the leader's. Move-only; destroying it stops the
/// thread (its readers keep the last state) and, with a local copy (local_path), writes the
/// state it shows as the local snapshot a restart starts from (state::save_local).
/// It follows one history, and never applies another on top of its state: where the engine lost
/// versions it applied and a new leader logged others there, it stops for good (log_replaced()).
/// It looks at the log's end and reads back the log's batch at its witness (the last version
/// whose message id it read, at a run's end: the id names the leader that wrote it) at each
/// subscription and once a second, and before publishing any run whose last message another
/// leader wrote than the witness's (state::continues_witness: one round trip per leader change,
/// nothing per message). A local copy records the witness with its snapshot, so a warm restart
/// checks it as well. It cannot tell: a batch at its witness that the engine purged since (a
/// snapshot past it: read back as none, the run is taken), nor, with no witness of the state
/// shown, the first run after a bootstrap or re-bootstrap from an engine snapshot whose version
/// the log no longer holds (the default keep_log of 0 purges it) or after a warm restart from a
/// copy written without one (by an older version, or right after such a re-bootstrap); the
/// log's end is checked there all the same.
/// All members: Thread-safety: any thread.
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
class follower {
  using writer_t = detail::replication::replica_writer<Key, Value, Hash, Eq, Traits>;
  using meta_type = typename detail::meta_of<Traits>::type;

 public:
  using reader = map_reader<Key, Value, Hash, Eq, Traits>;
  using factory_type = reader_factory<Key, Value, Hash, Eq, Traits>;
  /// Called (from the follower's thread) after a re-bootstrap from version `from` to `to`.
  using rebootstrap_callback = std::function<void(std::uint64_t from, std::uint64_t to)>;

  follower(follower&&) noexcept = default;
  follower& operator=(follower&&) noexcept = default;  // the replaced one's thread stops (~state)
  ~follower() = default;

  /// The version the follower's readers see now. Progress: wait-free.
  std::uint64_t version() const noexcept {
    // [F1] acquire: pairs with the release store after each publish (see state::applied_).
    return s_->applied.load(std::memory_order_acquire);
  }
  /// Waits until version() >= v (read-your-writes with a version the leader's publish returned)
  /// or timeout passes; true if it was reached. Progress: blocking, at most timeout.
  bool wait_for(std::uint64_t v, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(s_->mu);
    // wait_until a saturated deadline: wait_for adds the timeout to the clock, which overflows
    // (into the past: no wait at all) for a timeout near milliseconds::max().
    return s_->cv.wait_until(lock, detail::replication::deadline_after(timeout), [&] {
      if (version() >= v) return true;
      // Before each sleep: the thread wakes the waiters once it shows wake_at (see published()).
      s_->wake_at = std::min(s_->wake_at, v);
      return false;
    });
  }
  /// How many versions the log held beyond version() when the follower last looked (at most
  /// about a second ago while messages flow; the staleness bound of its reads while connected():
  /// cut off, the follower cannot look, and this keeps its last figure).
  std::uint64_t lag() const noexcept {
    // [F3] relaxed: an estimate; no other data is read through it.
    const std::uint64_t last = s_->known_last.load(std::memory_order_relaxed);
    const std::uint64_t v = version();
    return last > v ? last - v : 0;
  }
  /// Whether the connection to the engine is up now. While it is not, readers keep the last
  /// version (stale, consistent).
  bool connected() const noexcept { return s_->ch->connected(); }
  /// Whether the engine turned this follower away for good (a user revoked while connected,
  /// credentials refused twice in a row on reconnecting): the client library then closes the
  /// connection and never reconnects it, last_error() says why, and only a follower opened anew
  /// (with mended settings) follows again. Readers keep the last version meanwhile.
  bool closed() const noexcept { return s_->ch->closed(); }
  /// Its name in the engine's acks bucket (replication_options::id, or the default made).
  const std::string& id() const noexcept { return s_->id; }
  /// Sets the function called after each re-bootstrap (a follower behind the retained log jumps
  /// forward to the newest snapshot; versions never go backwards).
  void on_rebootstrap(rebootstrap_callback f) {
    std::lock_guard lock(s_->mu);
    s_->callback = std::move(f);
  }
  /// How many times the follower started reading the log afresh after its first subscription:
  /// after messages lost on the way (dropped by the client past follower_buffer_bytes, a broken
  /// connection), a consumer that went silent, pause() and resume(). Each reads the log on from
  /// the version after the one shown.
  std::uint64_t resubscriptions() const noexcept {
    // [F4] relaxed: a counter, as rebootstraps().
    return s_->resubscriptions.load(std::memory_order_relaxed);
  }
  /// Re-bootstraps so far.
  std::uint64_t rebootstraps() const noexcept {
    // [F4] relaxed: a counter; one that version() or wait_for() showed a re-bootstrap's version to is seen.
    return s_->rebootstraps.load(std::memory_order_relaxed);
  }
  /// True once the follower found the map's log deleted and made anew (a new history, whose
  /// versions are not this follower's), or the log ending before the version it shows, or
  /// holding another batch than the one it applied at its witness (the engine lost versions
  /// this follower applied: what it logs at those versions now is another history): it then
  /// stops following for good, and its readers keep the version and state shown (last_error()
  /// says which). Open a new follower to follow the engine's log.
  bool log_replaced() const noexcept {
    // [F6] relaxed: a flag read on its own.
    return s_->replaced.load(std::memory_order_relaxed);
  }
  /// The last error the follower's thread met (it retries; empty if none), or why it stopped
  /// following (log_replaced(): "log replaced", "engine lost versions"). Kept once the follower
  /// recovers: connected() and lag() tell its health now.
  std::string last_error() const {
    std::lock_guard lock(s_->mu);
    return s_->error;
  }
  /// Stops applying the log (readers keep the version shown now) until resume(); returns once
  /// the thread has let go of its subscription. A follower paused past the log's retention
  /// re-bootstraps when resumed. Progress: blocking, while the thread finishes a batch.
  void pause() {
    std::unique_lock lock(s_->mu);
    s_->paused = true;
    s_->cv.notify_all();
    s_->cv.wait(lock, [&] { return s_->idle; });
  }
  void resume() {
    {
      std::lock_guard lock(s_->mu);
      s_->paused = false;
    }
    s_->cv.notify_all();
  }
  reader make_reader() const { return s_->w.make_reader(); }
  factory_type factory() const { return s_->w.factory(); }

 private:
  template <class K, class V, class H, class E, class T>
  friend std::pair<follower<K, V, H, E, T>, map_reader<K, V, H, E, T>> open_follower(const replication_options&);

  /// Everything the thread uses; it does not move when the follower does.
  struct state {
    state(std::unique_ptr<detail::replication::channel> c, writer_t writer,
          std::optional<detail::replication::local_store> store, std::uint64_t local_version, std::uint64_t every,
          std::int64_t created, std::int64_t buffer, std::string follower_id, std::string witness)
        : ch(std::move(c)),
          w(std::move(writer)),
          log_created(created),
          buffer_bytes(buffer),
          id(std::move(follower_id)),
          witness_version(witness.empty() ? 0 : w.version()),
          witness_id(std::move(witness)),
          applied(w.version()),
          watchdog_period(detail::replication::follower_watchdog_period) {
      if (store) local.emplace(std::move(*store), w.make_reader(), local_version, every);
    }

    state(const state&) = delete;
    state& operator=(const state&) = delete;
    ~state() { stop(); }

    void start() { thread = std::thread([this] { run(); }); }
    void stop() {
      {
        std::lock_guard lock(mu);
        // [F5] relaxed is enough: the mutex orders it before the thread's next check.
        stopping.store(true, std::memory_order_relaxed);
      }
      cv.notify_all();
      if (thread.joinable()) thread.join();
    }
    bool stopped() const noexcept {
      // [F5] relaxed: only a signal to leave the loop; nothing is read through it.
      return stopping.load(std::memory_order_relaxed);
    }

    /// The thread's loop: follow the log (a subscription from the version after the one shown),
    /// take each message, let the watchdog look at the subscription once a period, save the
    /// local copy when due. Any error is noted, the queued run dropped, and the log read afresh
    /// after a pause; a replaced log is never followed (the last version is served until stopped).
    void run() {
      log_cursor c;
      report(w.version());  // the leader knows this follower from now on
      while (!stopped()) {
        try {
          wait_while_paused(c);
          // [F6] relaxed: the thread's own store.
          if (replaced.load(std::memory_order_relaxed)) {
            pause();
            continue;
          }
          if (!c.sub && !subscribe(c)) continue;
          receive(c);
          watch(c);
          if (local && local->due(w.version())) save_local();
        } catch (const std::exception& e) {
          note_error(e.what());
          discard_queued();
          c.sub.reset();
          pause();
        }
      }
      if (local && w.version() > local->tried()) save_local();  // a clean stop: the newest state for the restart
    }

    /// Where the thread's loop stands in the log: its subscription (null: to be made), and the
    /// watchdog's last check (the version then, and when the next is due). A subscription gets
    /// a whole period before the watchdog may take it for dead.
    struct log_cursor {
      detail::replication::subscription_ptr sub;
      bool subscribed = false;  // once: later subscriptions are resubscriptions
      std::uint64_t seen_at_check = 0;
      std::chrono::steady_clock::time_point next_check{};
    };
    void restart_watchdog(log_cursor& c) {
      c.seen_at_check = w.version();
      c.next_check = std::chrono::steady_clock::now() + watchdog_period;
    }

    /// Subscribes to the log from the version after the one shown; false (no subscription) if
    /// the log is not the one this follower follows. Checked after subscribing: a log made anew
    /// before it is seen here; one made anew after it ends this consumer (deleted with its
    /// stream), and the next is checked.
    bool subscribe(log_cursor& c) {
      c.sub = ch->subscribe_log(w.version() + 1, buffer_bytes);
      // [F4] relaxed: a counter.
      if (c.subscribed) resubscriptions.fetch_add(1, std::memory_order_relaxed);
      c.subscribed = true;
      restart_watchdog(c);
      const auto r = ch->range();
      if (same_log(r) && holds_shown(r)) return true;
      c.sub.reset();
      return false;
    }

    /// Waits up to 200 ms for the next log message and takes it. Without one, publishes what is
    /// queued (the log said more was coming; what came is shown meanwhile), and drops the
    /// subscription where the client dropped messages past follower_buffer_bytes (the log is
    /// read afresh after the version shown, at once) or gave up on the consumer (heartbeats
    /// missed, connection closed: a new one after a pause).
    void receive(log_cursor& c) {
      natsMsg* m = nullptr;
      const natsStatus st = natsSubscription_NextMsg(&m, c.sub.get(), 200);
      detail::replication::msg_ptr msg(m);
      if (st == NATS_OK) {
        if (!take(std::move(msg))) c.sub.reset();
        return;
      }
      if (!flush()) {
        c.sub.reset();  // stopped for good (lost_versions())
        return;
      }
      if (st == NATS_SLOW_CONSUMER) {
        c.sub.reset();
      } else if (st != NATS_TIMEOUT) {
        c.sub.reset();
        pause();
      }
    }

    /// Once a watchdog period: drops a subscription the watchdog takes for dead, and reports the
    /// version shown if a report is due.
    void watch(log_cursor& c) {
      if (std::chrono::steady_clock::now() < c.next_check) return;
      if (!watchdog(c.seen_at_check)) c.sub.reset();
      restart_watchdog(c);
      report_if_due();
    }

    /// Writes the published state as the local snapshot (replication_options::local_path), on
    /// this thread, between batches: applying waits meanwhile (one pass over the map, about
    /// every local_checkpoint_every versions), but readers do not (local_copy::save). A failure
    /// is noted (last_error()) and retried after as many versions again; the older snapshot
    /// stays meanwhile.
    void save_local() {
      try {
        local->save();
        // The state saved is the one shown (this thread publishes): its witness, if it has one.
        if (local->tried() == witness_version && !witness_id.empty()) {
          local->record_witness(witness_version, witness_id);
        }
      } catch (const std::exception& e) {
        note_error(e.what());
      }
    }

    /// Queues one log message on the writer if it is the next version, and publishes what is
    /// queued once the log holds nothing more for now (or a run is long: flush(), which first
    /// checks that the run goes on from the history shown); false if versions did not arrive
    /// (the subscription then starts afresh after the version shown) or the run is another
    /// history's (the follower stops for good). Nothing per message beyond applying it: the
    /// message is kept until the next one, and only a run's last is read further (flush()).
    bool take(detail::replication::msg_ptr msg) {
      natsMsg* const m = msg.get();
      const auto [seq, pending] = detail::replication::channel::position_of(m);
      // [F3] relaxed: an estimate for lag(): the log holds `pending` more after this message.
      known_last.store(seq + pending, std::memory_order_relaxed);
      const std::uint64_t v = queued_through != 0 ? queued_through : w.version();
      if (seq <= v) {
        // Already applied (a consumer recreated from an older point, as after an engine
        // restart), unless it is another history's: at the witness version, compare ids.
        if (seq == witness_version && !witness_id.empty()) {
          const std::string got = detail::replication::channel::message_id(m);
          if (!got.empty() && got != witness_id) return lost_versions(another_batch(seq));
        }
        return true;
      }
      if (seq != v + 1) {
        skipped_versions();
        return false;
      }
      detail::replication::apply_visitor<writer_t, meta_type> visit{w};
      try {
        detail::replication::for_each_logged_op<Key, Value>(detail::replication::message_bytes(m), visit);
      } catch (...) {
        discard_queued();
        throw;
      }
      queued_through = seq;
      ++queued_messages;
      run_last = std::move(msg);  // the previous one (inside the run) goes
      if (pending == 0 || queued_messages >= max_run_messages || w.pending() >= max_run_operations) return flush();
      return true;
    }

    /// The log's messages skipped versions after the last one taken: the engine purged them
    /// (the log now starts after the version shown: re-bootstrap forward), or they were lost on
    /// the way (the client drops messages beyond its pending limit, 65,536 by default, or a
    /// connection broke): the log still holds them, and the caller's new subscription reads
    /// them, where a re-bootstrap would have found no newer snapshot and failed.
    void skipped_versions() {
      if (!flush()) return;  // stopped for good
      const auto r = ch->range();
      if (r.first > w.version() + 1) rebootstrap(r);
    }

    /// Publishes the queued run of log messages as one version, the run's last: a follower
    /// behind the log catches up at the speed of applying, not of publishing (a publish per
    /// message made it several times slower than the leader on small batches). Its readers jump
    /// to the run's last version, each version they see being the leader's, as after a
    /// re-bootstrap; a follower that keeps up publishes each message on its own (the log holds
    /// nothing more when it arrives).
    /// Only the run's last message is read beyond its position and bytes: reading one header
    /// lifts them all into a hash table (allocations, freed with the message), and every log
    /// message has headers (its append's message id and expected sequence): a tenth of the
    /// thread's time at batches of 64. Its id must show the run going on from the history
    /// shown (continues_witness()) before anything of it is published; the run then becomes
    /// the witness. If it asks its followers to report it at once (the leader waits for it:
    /// replication_options::acks), it is reported. A message that asks is the log's last while
    /// its leader waits for it (the leader appends nothing meanwhile), so it ends a run (pending
    /// == 0); one found inside a run, by a follower behind the log, is no longer waited for: the
    /// next watchdog round's report (report_if_due) tells of it.
    /// False if the run is another history's: dropped, and the follower stopped for good
    /// (lost_versions()). Throws replication_error if the engine could not be asked: the caller
    /// (run()) drops the run, and the log is read again after the version shown; nothing
    /// unchecked is published.
    bool flush() {
      if (queued_through == 0) return true;
      std::string run_id = detail::replication::channel::message_id(run_last.get());
      if (!continues_witness(run_id)) return false;
      const bool asked_acks = detail::replication::channel::asks_acks(run_last.get());
      run_last.reset();
      w.skip_to(queued_through);
      const std::uint64_t v = w.publish();
      queued_through = 0;
      queued_messages = 0;
      if (!run_id.empty()) {  // a message without an id (none of this library's leaders writes one) tells nothing
        witness_version = v;
        witness_id = std::move(run_id);
      }
      published(v);
      if (asked_acks) report(v);
      return true;
    }
    /// Whether a run whose last message has id `run_id` goes on from the history shown, so that it
    /// may be published. Yes if the witness is the version shown and its writer wrote the run
    /// (the same nonce in both ids): a writer's batches go on from its own state, the one shown,
    /// and it cannot log again at versions the engine lost (each of its appends expects the
    /// log to end at its own last version, which a log that lost it no longer does: fenced).
    /// Otherwise (another writer: a leader changed since the witness, or a re-bootstrap moved the
    /// state past it) the log's batch at the witness's version is read back (one round trip per
    /// leader change, nothing per message): the same id there, or none (purged since: it cannot
    /// tell, as in holds_shown()), and the run is taken; another id, and the engine lost
    /// versions this follower applied, the run being another history's (lost_versions():
    /// false). No witness yet (from a bootstrap or a warm restart to the first run's end):
    /// taken, with the checks of holds_shown() alone. Throws replication_error if the engine
    /// cannot be asked. (A writer whose lease lapsed unnoticed may still log its next version
    /// where a new leader refilled lost versions up to exactly its own: a run of its batches
    /// then goes on from its own state, the one shown, not from another history; the log
    /// itself mixes the two, the leaders' matter.)
    bool continues_witness(const std::string& run_id) {
      if (witness_id.empty()) return true;
      if (witness_version == w.version() && !run_id.empty() && writer_of(run_id) == writer_of(witness_id)) {
        return true;
      }
      const auto m = ch->get(ch->log_stream(), witness_version);  // null: purged since
      const std::string got = m ? detail::replication::channel::message_id(m.get()) : std::string();
      if (!got.empty() && got != witness_id) return lost_versions(another_batch(witness_version));
      return true;
    }
    /// The writer's part of a leader's message id, "<name>.<version>.<nonce>.<crc>"
    /// (replicated_writer::append): the nonce, made once per open. The whole id if it is not of
    /// that form (so that only the same id passes for the same writer).
    static std::string_view writer_of(std::string_view message_id) noexcept {
      const std::size_t last = message_id.rfind('.');
      if (last == std::string_view::npos || last == 0) return message_id;
      const std::size_t before = message_id.rfind('.', last - 1);
      if (before == std::string_view::npos) return message_id;
      return message_id.substr(before + 1, last - before - 1);
    }
    /// Drops the queued run (the subscription then starts again after the published version).
    void discard_queued() noexcept {
      w.discard();
      run_last.reset();
      queued_through = 0;
      queued_messages = 0;
    }

    /// Reports the version shown in the acks bucket (replicated_writer::followers() and
    /// wait_for_acks() read it) at each watchdog round if it moved since the last report, and
    /// at least every report_period: the bucket forgets a follower silent for its TTL.
    void report_if_due() {
      const auto now = std::chrono::steady_clock::now();
      if (w.version() != reported || now - reported_at >= report_period) report(w.version());
    }
    /// Reports version v applied. A failure (the client closed, its reconnect buffer full) is
    /// noted (last_error()); the next round reports again.
    void report(std::uint64_t v) {
      try {
        ch->report_applied(id, v);
        reported = v;
        reported_at = std::chrono::steady_clock::now();
      } catch (const std::exception& e) {
        note_error(e.what());
      }
    }

    /// Once a watchdog period (a second): the log's range. False if the subscription should
    /// start afresh (the log is ahead and nothing arrived since the last check: a consumer that
    /// died silently).
    bool watchdog(std::uint64_t seen_at_check) {
      const auto r = ch->range();
      if (!same_log(r) || !holds_shown(r)) return false;
      // [F3] relaxed: an estimate for lag().
      known_last.store(r.last, std::memory_order_relaxed);
      const std::uint64_t v = w.version();
      // The log lacks v + 1 and holds (or held: a log purged empty after a snapshot at its last
      // version reports first = last + 1) versions beyond v.
      if (r.first > v + 1 && r.last > v) {
        rebootstrap(r);
        return false;
      }
      return !(r.last > v && v == seen_at_check);
    }

    /// Replaces the state with the newest snapshot's, as one batch whose version is the
    /// snapshot's (a jump forward; never backwards). r: the log's range, just read.
    void rebootstrap(const detail::replication::log_range& r) {
      discard_queued();
      if (!same_log(r)) return;  // the newest snapshot may be of the new history
      const std::uint64_t from = w.version();
      const auto p = ch->snapshot();
      if (p.version <= from) {
        throw replication_error(replication_errc::protocol, "rebootstrap",
                                "the log lacks version " + std::to_string(from + 1) +
                                    " and no newer snapshot exists");
      }
      const std::string image = detail::replication::read_snapshot_image(*ch, p);
      // The log's batch at the snapshot's version, if it still holds it (null: purged): the
      // witness of the state loaded, both read from the engine now.
      const auto at = ch->get(ch->log_stream(), p.version);
      w.clear();
      try {
        meta_type m{};
        detail::replication::for_each_snapshot_entry<Key, Value, meta_type>(
            std::as_bytes(std::span(image.data(), image.size())),
            [this](Key&& k, Value&& v) { w.insert_or_assign(std::move(k), std::move(v)); }, &m,
            [this](std::size_t n) { w.reserve(n); });
        if constexpr (!std::is_same_v<meta_type, no_meta>) w.set_meta(std::move(m));
      } catch (...) {
        w.discard();
        throw;
      }
      w.skip_to(p.version);
      const std::uint64_t v = w.publish();
      if (std::string at_id = at ? detail::replication::channel::message_id(at.get()) : std::string(); !at_id.empty()) {
        witness_version = v;
        witness_id = std::move(at_id);
      }
      // [F4] relaxed: a counter; counted before published() shows the version, whose release
      // store (and mutex) then carry it to whoever sees that version (version(), wait_for()).
      rebootstraps.fetch_add(1, std::memory_order_relaxed);
      published(v);
      rebootstrap_callback f;
      {
        std::lock_guard lock(mu);
        f = callback;
      }
      if (f) f(from, p.version);
    }

    /// Whether r is the log this follower follows (made when it was at open); if not, the map's
    /// streams were deleted and made anew, a history that is not this follower's: it stops
    /// following for good (log_replaced()), keeping its version, and says so in last_error().
    bool same_log(const detail::replication::log_range& r) {
      if (r.created == log_created) return true;
      std::lock_guard lock(mu);
      error = "log replaced: the map's log was deleted and made anew (made at " + std::to_string(r.created) +
              " ns; this follower followed the one made at " + std::to_string(log_created) +
              " ns); it applies none of the new history and keeps version " + std::to_string(w.version()) +
              " (open a new follower, deleting its local copy, to follow the new one)";
      // [F6] relaxed, stored under mu after the error: a caller that sees the flag and then
      // takes mu (last_error()) takes it after this section, so it reads the reason too.
      replaced.store(true, std::memory_order_relaxed);
      return false;
    }

    /// Whether the log r holds every version this follower shows (it ends at version() or
    /// later). If not, the engine lost versions this follower applied (the tail of its log, in a
    /// crash before its sync, or a store restored from an older copy): the same log, made at the
    /// same time, may go on with other batches at those versions, another history, which the
    /// follower could not tell from its own (it would take them for versions already applied,
    /// and apply the later ones onto its state). So it stops following for good, as for a
    /// replaced log (log_replaced()), keeping its version and state, and says so in last_error().
    /// A new leader may already have logged past the version shown: the witness (the last
    /// message whose id the follower read, at or below it) is read back from the log too, and
    /// another id there (another writer's batch at that version) is the same loss.
    bool holds_shown(const detail::replication::log_range& r) {
      const std::uint64_t v = w.version();
      if (r.last < v) {
        return lost_versions("its log ends at version " + std::to_string(r.last) + ", before version " +
                             std::to_string(v) + " that this follower applied and shows");
      }
      if (witness_version != 0 && !witness_id.empty() && r.first <= witness_version) {
        const auto m = ch->get(ch->log_stream(), witness_version);  // null: purged since
        const std::string got = m ? detail::replication::channel::message_id(m.get()) : std::string();
        if (!got.empty() && got != witness_id) return lost_versions(another_batch(witness_version));
      }
      return true;
    }
    std::string another_batch(std::uint64_t at) const {
      return "its log holds another batch at version " + std::to_string(at) + " than the one this follower applied";
    }
    /// Stops following for good (as same_log() does) because the engine lost versions this
    /// follower applied (why: how it showed); returns false.
    bool lost_versions(const std::string& why) {
      discard_queued();  // a run of the lost versions, or of the other history
      std::lock_guard lock(mu);
      error = "engine lost versions: " + why + "; the engine lost versions this follower applied, and whatever "
              "it logs at those versions now is another history: it applies none of it and keeps version " +
              std::to_string(w.version()) +
              " (open a new follower, deleting its local copy, to follow the engine's log)";
      // [F6] relaxed, stored under mu after the error, as in same_log().
      replaced.store(true, std::memory_order_relaxed);
      return false;
    }

    /// Says that version v is published; wakes the waiters only if one waits for v or less (a
    /// follower catching up publishes many batches: a wake per batch cost it more than the batch).
    void published(std::uint64_t v) {
      bool wake = false;
      {
        std::lock_guard lock(mu);
        // [F1] release: the batch was published (readers see it) before version() reports it.
        applied.store(v, std::memory_order_release);
        if (v >= wake_at) {
          wake = true;
          wake_at = no_waiter;  // each waiter still short of its version sets it again
        }
      }
      if (wake) cv.notify_all();
    }
    void note_error(std::string e) {
      std::lock_guard lock(mu);
      error = std::move(e);
    }
    /// If paused: lets go of the subscription (the engine's consumer goes, and with it what it
    /// would push meanwhile), then says so (idle) and waits for resume() or stop(). The log is
    /// read afresh after it.
    void wait_while_paused(log_cursor& c) {
      {
        std::lock_guard lock(mu);
        if (!paused) return;
      }
      c.sub.reset();  // before idle: pause() returns once the subscription is gone
      std::unique_lock lock(mu);
      idle = true;
      cv.notify_all();
      cv.wait(lock, [this] { return !paused || stopped(); });
      idle = false;
    }
    /// Waits a little before retrying (woken at once by stop()).
    void pause() {
      std::unique_lock lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopped(); });
    }

    /// The longest run of log messages published as one version (flush()): long enough to make
    /// a publish per run cheap, short enough that the run's operations stay in the core's cache
    /// for their second application (runs of 65,536 operations applied batches of 1,024 at a
    /// third less than runs of 4,096 did: bench/bench_replication.cpp, follower_apply).
    static constexpr std::size_t max_run_messages = 1024;
    static constexpr std::size_t max_run_operations = std::size_t{1} << 12;
    /// The longest a running follower goes without a report (report_if_due()).
    static constexpr auto report_period = detail::replication::channel::ack_ttl / 10;

    std::unique_ptr<detail::replication::channel> ch;
    writer_t w;  ///< used by the thread only
    std::optional<detail::replication::local_copy<reader>> local;  ///< thread only: the local copy, if any
    std::int64_t log_created;  ///< the incarnation of the log followed (log_range::created)
    std::int64_t buffer_bytes;  ///< replication_options::follower_buffer_bytes
    std::string id;             ///< replication_options::id: its key in the acks bucket
    std::uint64_t reported = 0;  ///< thread only: the version last reported
    std::chrono::steady_clock::time_point reported_at{};  ///< thread only: when
    std::uint64_t queued_through = 0;  ///< thread only: the last version queued on w, unpublished (0: none)
    detail::replication::msg_ptr run_last;  ///< thread only: the message of queued_through (flush() reads its id)
    /// Thread only: the last version published from the log whose message id is known (a run's
    /// end), at or below the version shown (a re-bootstrap moves the state past it), and that id
    /// (empty: none yet). holds_shown() and continues_witness() read the log's batch there back.
    std::uint64_t witness_version = 0;
    std::string witness_id;
    std::size_t queued_messages = 0;   ///< thread only: how many
    std::atomic<std::uint64_t> applied;
    std::atomic<std::uint64_t> known_last{0};
    std::atomic<std::uint64_t> rebootstraps{0};
    std::atomic<std::uint64_t> resubscriptions{0};
    std::atomic<bool> stopping{false};
    std::atomic<bool> replaced{false};
    /// How often the thread asks the engine for the log's range (watchdog()): set at the open
    /// (detail::replication::follower_watchdog_period), then read by the thread alone.
    const std::chrono::milliseconds watchdog_period;
    mutable std::mutex mu;
    mutable std::condition_variable cv;
    static constexpr std::uint64_t no_waiter = ~std::uint64_t{0};
    rebootstrap_callback callback;  ///< guarded by mu
    /// Guarded by mu: at most the lowest version a wait_for() sleeps for (no_waiter: none). It
    /// may be lower than any waiter's (one that timed out): a spurious wake, never a lost one.
    std::uint64_t wake_at = no_waiter;
    bool paused = false;            ///< guarded by mu: pause() asked the thread to stop applying
    bool idle = false;              ///< guarded by mu: the thread has let go of its subscription
    std::string error;              ///< guarded by mu
    std::thread thread;
  };

  explicit follower(std::unique_ptr<state> s) : s_(std::move(s)) {}

  std::unique_ptr<state> s_;
};

/// Opens a follower of the replicated map options.name: loads the newest snapshot (if any), so
/// that its first reader, returned here, shows the snapshot's version; then its thread applies
/// the log from there. With options.local_path, the newest local snapshot there (if any) is
/// loaded instead (a warm restart: no engine snapshot is read at open), and the log is followed
/// from the version after it; if the engine purged that far, the follower re-bootstraps
/// forward to the engine's snapshot: it never goes back. A follower follows one log, the one
/// its state comes from, and one history: if the map's streams are deleted and made anew (or
/// the engine lost them), or the log ends before the version the follower shows or holds
/// another batch at a version it applied (the engine lost versions it applied, and a new
/// leader logged others there), it applies nothing more and keeps serving its version and
/// state (log_replaced(), last_error(); a local copy records its log, and the id of the batch
/// at its snapshot's version, so this holds across restarts too: delete the directory to follow
/// the engine's log; follower says what it cannot tell). Throws
/// replication_error: unreachable, protocol (other types; a damaged local snapshot or one of
/// other types, naming the file; a local_path that cannot be created or is locked by another
/// follower).
template <class Key, class Value, class Hash = default_hash<Key>, class Eq = default_eq<Key>,
          class Traits = default_traits>
std::pair<follower<Key, Value, Hash, Eq, Traits>, map_reader<Key, Value, Hash, Eq, Traits>> open_follower(
    const replication_options& options) {
  namespace rp = detail::replication;
  using meta_type = typename detail::meta_of<Traits>::type;
  std::string id = options.id.empty() ? rp::default_follower_id() : options.id;
  rp::check_follower_id(id);
  std::optional<rp::local_store> local;
  rp::load_table<Key, Value, Hash, Eq, Traits> t;
  meta_type meta{};
  std::uint64_t local_version = 0;  // of the local snapshot loaded (0: none)
  if (!options.local_path.empty()) {
    local.emplace(rp::open_local_store<Key, Value, meta_type>(options.local_path, "open follower"));
    local_version = rp::load_local<Key, Value>(*local, t, meta, "open follower");
  }
  auto ch = std::make_unique<rp::channel>(rp::engine_of(options), options.name, options.timeout, options.lease_ttl,
                                          options.replicas);
  rp::check_buffer_bytes(options.follower_buffer_bytes, ch->max_payload());
  // The log whose history the state belongs to: the engine's now, or the one a local copy
  // followed (if the map's log was made anew since, the follower applies none of the new one).
  const std::int64_t engine_log = ch->range().created;
  std::int64_t log_created = local ? rp::local_log(*local, engine_log, "open follower") : engine_log;
  if (local && local_version == 0 && log_created != engine_log) {
    // Nothing of the old log's history is in the copy (as check_leader_copy): it follows the
    // engine's log from now on.
    rp::rerecord_local_log(*local, engine_log, "open follower");
    log_created = engine_log;
  }
  const std::uint64_t version = local_version != 0 ? local_version : rp::load_snapshot<Key, Value>(*ch, t, meta);
  // The witness of the state loaded: the one the local copy recorded with its snapshot, or the
  // log's batch at the engine's snapshot's version, if the log still holds it (both read now).
  std::string witness;
  if (local_version != 0) {
    witness = rp::read_local_witness(*local, local_version, "open follower");
  } else if (version != 0) {
    if (const auto at = ch->get(ch->log_stream(), version)) witness = rp::channel::message_id(at.get());
  }
  auto w = rp::make_writer_at<Key, Value, Hash, Eq, Traits>(std::move(t), version, meta);
  auto r = w.make_reader();
  using follower_t = follower<Key, Value, Hash, Eq, Traits>;
  auto s = std::make_unique<typename follower_t::state>(std::move(ch), std::move(w), std::move(local),
                                                        local_version, options.local_checkpoint_every,
                                                        log_created, options.follower_buffer_bytes, std::move(id),
                                                        std::move(witness));
  s->start();
  return {follower_t(std::move(s)), std::move(r)};
}

}  // namespace leftright
