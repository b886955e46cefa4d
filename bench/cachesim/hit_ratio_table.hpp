// SPDX-License-Identifier: Apache-2.0
// The reference hit-ratio table of the traces README, replayed: every trace and size, every
// policy, printed as markdown with the targets checked.
#pragma once

#include <string>

namespace leftright::cachesim {

/// The trace directory: `flag` if set, else $LEFTRIGHT_TRACES, else ../shared/traces.
std::string trace_directory(const std::string& flag);

/// How to get the traces, for a message when they are missing.
const char* where_to_get_traces();

/// How print_table replays the table.
struct table_options {
  /// Hash salts 0 .. salts-1 for the hash-dependent policies (leftright, W-TinyLFU 1%): each
  /// of their cells is replayed once per salt and shown as the mean and the min-max.
  int salts = 32;
  /// Salts for the big traces (P3, P12: millions of requests), at most `salts`; 0: as many as
  /// `salts`.
  int big_salts = 16;
  /// Replays run at once (threads).
  int jobs = 2;
};

/// Replays every cell of the table from the traces under `dir` and prints the markdown table,
/// the means row and the target verdicts on stdout (progress on stderr). Returns 0, or 1 if a
/// trace is missing.
int print_table(const std::string& dir, const table_options& options = {});

}  // namespace leftright::cachesim
