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

/// Replays every cell of the table from the traces under `dir` and prints the markdown table,
/// the means row and the target verdicts on stdout. Returns 0, or 1 if a trace is missing.
int print_table(const std::string& dir);

}  // namespace leftright::cachesim
