// SPDX-License-Identifier: Apache-2.0
// leftright replication machinery: the leader's view of what its followers reported
// applying (the acks bucket), and the saturated deadlines its waits use.
#pragma once

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "nats.hpp"

namespace leftright::detail::replication {

/// now + timeout on the steady clock, saturated: a timeout past the clock's range (as
/// milliseconds::max(), "wait for ever") is the clock's last instant, not an overflow into the
/// past; a timeout of 0 or less is now.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  using clock = std::chrono::steady_clock;
  const auto now = clock::now();
  if (timeout.count() <= 0) return now;
  const auto room = std::chrono::duration_cast<std::chrono::milliseconds>(clock::time_point::max() - now);
  return timeout >= room ? clock::time_point::max() : now + timeout;
}

/// The leader's view of what its followers reported applying (the acks bucket): made at its
/// first use (a subscription to the reports, then the bucket's contents), then kept up to date
/// from the subscription each time it is asked. Thread-safety: one thread at a time (the
/// writer's).
class ack_view {
 public:
  explicit ack_view(channel& ch) : ch_(ch) {}

  /// Waits until at least n followers reported version v or later, or until timeout passes;
  /// returns how many have (at most the followers that ever reported). Throws
  /// replication_error if the engine cannot be asked (unreachable).
  std::size_t wait(std::uint64_t v, std::size_t n, std::chrono::milliseconds timeout) {
    const auto until = deadline_after(timeout);
    for (;;) {
      take_arrived();
      const std::size_t have = count_at_least(v);
      if (have >= n) return have;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        // Before saying fewer: the bucket itself, for reports the subscription missed (sent
        // while this connection was reconnecting, say).
        for (const auto& [id, shown] : ch_.read_acks()) acks_.insert_or_assign(id, shown);
        return count_at_least(v);
      }
      // At most a minute per wait: the client adds the timeout to its clock (no overflow).
      if (sub_) next(std::min<std::int64_t>(left.count(), 60'000));  // else reopened above
    }
  }

 private:
  /// Opens the view if it is not (or the client dropped reports: read afresh), then takes the
  /// reports that arrived meanwhile.
  void take_arrived() {
    if (!sub_) {
      sub_ = ch_.subscribe_acks();
      acks_ = ch_.read_acks();  // after subscribing: a report written between is in one of them
    }
    while (sub_ && next(0)) {
    }
  }
  /// Takes one report, waiting up to timeout_ms for it (0: only one already arrived); false if
  /// none came. A subscription the client gave up on (it dropped reports) is opened afresh.
  bool next(std::int64_t timeout_ms) {
    natsMsg* m = nullptr;
    const natsStatus st = natsSubscription_NextMsg(&m, sub_.get(), timeout_ms);
    msg_ptr msg(m);
    if (st == NATS_TIMEOUT) return false;
    if (st != NATS_OK) {
      sub_.reset();  // reopened, with the bucket read afresh, by the next take_arrived()
      if (st == NATS_SLOW_CONSUMER) return false;
      ch_.check(st, "wait for acks");
    }
    const std::string_view subject = natsMsg_GetSubject(m);
    const std::string prefix = ch_.ack_subject("");
    if (subject.size() <= prefix.size()) return true;
    const std::string id(subject.substr(prefix.size()));
    if (const auto v = channel::parse_ack(natsMsg_GetData(m), natsMsg_GetDataLength(m))) {
      acks_.insert_or_assign(id, *v);
    } else {
      acks_.erase(id);  // a deletion marker
    }
    return true;
  }
  std::size_t count_at_least(std::uint64_t v) const {
    return static_cast<std::size_t>(
        std::count_if(acks_.begin(), acks_.end(), [v](const auto& a) { return a.second >= v; }));
  }

  channel& ch_;
  subscription_ptr sub_;
  std::map<std::string, std::uint64_t> acks_;
};

}  // namespace leftright::detail::replication
