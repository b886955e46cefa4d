// leftright: the umbrella header. Includes every public header; defines nothing.
#pragma once

#include "map.hpp"  // IWYU pragma: export
