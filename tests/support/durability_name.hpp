// SPDX-License-Identifier: Apache-2.0
// The name of a durability mode ("none", "async", "sync"), for the tests' messages and the
// soak's command line (which parses these names back). No Catch2 in here; no atomics.
#pragma once

#include <leftright/durable_options.hpp>

namespace lrtest {

inline const char* durability_name(leftright::durability d) {
  switch (d) {
    case leftright::durability::none: return "none";
    case leftright::durability::async: return "async";
    case leftright::durability::sync: return "sync";
  }
  return "?";
}

}  // namespace lrtest
