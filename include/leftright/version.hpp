// SPDX-License-Identifier: Apache-2.0
// leftright: the library's version, as numbers for the preprocessor and as a string.
// Semantic versioning (README, "Versions"): a release that changes the public API incompatibly
// raises MAJOR; one that adds to it raises MINOR; one that only fixes raises PATCH. Kept equal to
// the CMake project version by a test (tests/test_version.cpp).
#pragma once

#define LEFTRIGHT_VERSION_MAJOR 0
#define LEFTRIGHT_VERSION_MINOR 1
#define LEFTRIGHT_VERSION_PATCH 0
#define LEFTRIGHT_VERSION_STRING "0.1.0"

// One number that orders versions: MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is 100).
#define LEFTRIGHT_VERSION \
  (LEFTRIGHT_VERSION_MAJOR * 10000 + LEFTRIGHT_VERSION_MINOR * 100 + LEFTRIGHT_VERSION_PATCH)

// The version of the on-disk format (log segments and snapshots) that this library writes and
// the only one it opens. A directory written in another format version is refused by open_map
// with a storage_error naming the file and the version found; nothing in it is changed.
#define LEFTRIGHT_STORAGE_FORMAT_VERSION 2
