#pragma once
// Umbrella header: spruce's core and CPU algorithms. Adapters (eigen.hpp, xtensor.hpp)
// and the CUDA layer (cuda.hpp) are opt-in and included separately.

#include "spruce/version.hpp"
#include "spruce/core/config.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/extents.hpp"
#include "spruce/core/layout.hpp"
#include "spruce/core/make_view.hpp"
#include "spruce/core/memory_space.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/rounding.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/tensor_view.hpp"
#include "spruce/select/key.hpp"
#include "spruce/select/kth.hpp"
#include "spruce/metrics/metrics.hpp"
