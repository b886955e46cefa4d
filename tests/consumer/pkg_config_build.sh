#!/bin/sh
# Builds and runs main.cpp as a user without CMake would: one compiler command line with the
# flags pkg-config gives for leftright (PKG_CONFIG_PATH must name the installed leftright.pc).
#   pkg_config_build.sh PKG_CONFIG CXX SOURCE OUTPUT
set -eu
pkg_config=$1
cxx=$2
src=$3
out=$4
version=$("$pkg_config" --modversion leftright)
cflags=$("$pkg_config" --cflags leftright)
libs=$("$pkg_config" --libs leftright)
echo "pkg-config: leftright $version; cflags: $cflags"
# shellcheck disable=SC2086  # the flags are words
"$cxx" -std=c++20 -DLEFTRIGHT_EXPECTED_VERSION="\"$version\"" $cflags -o "$out" "$src" $libs
"$out"
