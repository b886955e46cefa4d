// SPDX-License-Identifier: Apache-2.0
// leftright: the asymmetric barrier (membarrier) and its probe.
//
// Readers of a left-right structure must order "my epoch is odd" before "load the read pointer",
// and the writer must order "store the read pointer" before "load the readers' epochs": the
// StoreLoad pattern. Either side can pay for it. With reader_sync::seq_cst both sides use seq_cst
// operations (an xchg on x86 in every read). With reader_sync::asymmetric readers use a compiler
// barrier only and the writer, after its store, runs membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED),
// which executes a full memory barrier on every CPU currently running a thread of this process
// (a descheduled thread passes through one at its context switch). Any reader is then either
// seen inside by the writer, or its later pointer load sees the new pointer.
#pragma once

#include <cerrno>

#include "../traits.hpp"
#include "config.hpp"

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace leftright {

// reader_sync, the choice between the two: traits.hpp.

namespace detail {

/// Registers the process for expedited private membarriers and checks they work. Returns false
/// where the kernel refuses (old kernels, seccomp filters in containers, gVisor) and under
/// ThreadSanitizer, which does not model the barrier and would report false races.
inline bool probe_membarrier() noexcept {
#if defined(__linux__) && defined(__NR_membarrier) && !LEFTRIGHT_TSAN
  const long cmds = ::syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  if (::syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) return false;
  return ::syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
  return false;
#endif
}

/// The probe's result, computed once per process (thread-safe static initialisation).
inline bool membarrier_available() noexcept {
  static const bool available = probe_membarrier();
  return available;
}

/// The writer's half of the asymmetric barrier. Only called after membarrier_available() said
/// yes; the command cannot fail once registered, but if it ever does we must not go on as if the
/// barrier had run, so the failure is fatal rather than silent.
inline void heavy_barrier() noexcept {
#if defined(__linux__) && defined(__NR_membarrier)
  if (::syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) __builtin_trap();
#else
  __builtin_trap();
#endif
}

/// Resolves a requested mode to the one in force: automatic becomes asymmetric or seq_cst, and an
/// explicit asymmetric request is honoured only where the barrier works (else seq_cst, which is
/// always correct; sync_mode() tells which one a map got).
inline reader_sync resolve(reader_sync requested) noexcept {
  if (requested == reader_sync::seq_cst) return reader_sync::seq_cst;
  return membarrier_available() ? reader_sync::asymmetric : reader_sync::seq_cst;
}

}  // namespace detail
}  // namespace leftright
