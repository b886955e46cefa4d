// SPDX-License-Identifier: Apache-2.0
// leftright: replication_error, the one exception type of the replication layer
// (replicated_map.hpp). It needs no NATS header: the engine's status is carried as its text.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace leftright {

/// Why a replication operation failed.
enum class replication_errc {
  unreachable,  ///< the engine did not answer (connection lost, no route, timeout): outcome unknown
  fenced,       ///< the log has moved on without this writer (another leader, or a lost ack)
  lease_held,   ///< another leader holds the lease (replication_options::take_over to steal it)
  too_large,    ///< a batch is larger than the engine's message limit; nothing was published
  protocol,     ///< what the engine holds is not what this map expects (types, format, a gap)
  engine,       ///< any other error the engine reported
  unacknowledged,  ///< fewer followers than replication_options::acks reported a batch applied
                   ///< in time; the batch is published all the same (in the log, visible)
  refused,  ///< the engine refused this client: its credentials, or TLS (one side wants it and
            ///< the other does not, or a certificate is not trusted)
};

/// A failed replication operation. what() reads `leftright: <operation>: <detail>`, the detail
/// carrying the engine's status text and, for JetStream API errors, its error code.
/// Copying never throws. Thread-safety: like any immutable value.
class replication_error : public std::runtime_error {
 public:
  replication_error(replication_errc code, const std::string& operation, const std::string& detail)
      : std::runtime_error("leftright: " + operation + ": " + detail),
        code_(code),
        detail_at_(std::string_view(what()).size() - detail.size()) {}
  replication_errc code() const noexcept { return code_; }
  /// The detail alone: what() without its `leftright: <operation>: `.
  const char* detail() const noexcept { return what() + detail_at_; }

 private:
  replication_errc code_;
  std::size_t detail_at_;
};

}  // namespace leftright
