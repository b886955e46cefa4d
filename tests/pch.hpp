// SPDX-License-Identifier: Apache-2.0
// The precompiled header of every test executable (tests/CMakeLists.txt): the third-party and
// standard headers the tests include, parsed once per build instead of once per test file. Only
// headers that do not change with the project: ours are parsed by each file, as a user's would.
// A test file still includes what it uses; this header only makes that cheap.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <absl/hash/hash.h>
#include <absl/strings/str_cat.h>
#include <absl/time/time.h>
#include <catch2/catch.hpp>
