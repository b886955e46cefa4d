// SPDX-License-Identifier: Apache-2.0
// LEFTRIGHT_TEST_FILE: the name of a namespace of a test file's own. Each test file puts all it
// defines in it (after its includes): the test executables are unity builds (several files
// compiled as one translation unit, tests/CMakeLists.txt), where one file's helpers, even in an
// anonymous namespace, would otherwise meet another's. CMake defines it, unique per file, in a
// unity build (UNITY_BUILD_UNIQUE_ID); a file compiled on its own uses this one.
#pragma once

#ifndef LEFTRIGHT_TEST_FILE
#define LEFTRIGHT_TEST_FILE test_file
#endif
