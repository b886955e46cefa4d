// SPDX-License-Identifier: Apache-2.0
// leftright: the umbrella header. Includes every public header; defines nothing.
#pragma once

#include "cache.hpp"          // IWYU pragma: export
#include "codec.hpp"          // IWYU pragma: export
#include "durable_map.hpp"    // IWYU pragma: export
#include "map.hpp"            // IWYU pragma: export
#include "shared_map.hpp"     // IWYU pragma: export
#include "storage_error.hpp"  // IWYU pragma: export
#include "traits.hpp"         // IWYU pragma: export
#include "version.hpp"        // IWYU pragma: export
