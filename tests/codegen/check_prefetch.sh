#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Usage: check_prefetch.sh CXX INCLUDE_DIR
# Compiles find_many_prefetch.cpp to x86-64 assembly at -O2 and -O3 and fails unless it holds a
# prefetcht0: the prefetch of keys ahead (absl's own find() only emits prefetcht2).
set -euo pipefail
cxx=$1 include=$2
src="$(dirname "${BASH_SOURCE[0]}")/find_many_prefetch.cpp"
for opt in -O2 -O3; do
  asm=$("$cxx" -std=c++20 "$opt" -DNDEBUG -I"$include" -S -o - "$src")
  if ! grep -q prefetcht0 <<<"$asm"; then
    echo "check_prefetch: $cxx $opt: find_many() emits no prefetcht0 (its prefetches were deleted)"
    exit 1
  fi
done
echo "check_prefetch: $cxx: find_many() prefetches at -O2 and -O3"
