#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Usage: check_prefetch.sh CXX INCLUDE_DIR
# Compiles each program here (find_many_prefetch.cpp: a batched lookup; writer_prefetch.cpp: a
# writer's publish) to x86-64 assembly at -O2 and -O3 and fails unless each holds a prefetcht0:
# the prefetch of keys ahead (absl's own find() and insert only emit prefetcht2).
set -euo pipefail
cxx=$1 include=$2
here="$(dirname "${BASH_SOURCE[0]}")"
for src in "$here/find_many_prefetch.cpp" "$here/writer_prefetch.cpp"; do
  for opt in -O2 -O3; do
    asm=$("$cxx" -std=c++20 "$opt" -DNDEBUG -I"$include" -S -o - "$src")
    if ! grep -q prefetcht0 <<<"$asm"; then
      echo "check_prefetch: $cxx $opt: $(basename "$src") emits no prefetcht0 (its prefetches were deleted)"
      exit 1
    fi
  done
done
echo "check_prefetch: $cxx: find_many() and the writer prefetch at -O2 and -O3"
