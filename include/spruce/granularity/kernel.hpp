#pragma once

#include <array>
#include <span>
#include <string>

#include "spruce/granularity/group_layout.hpp"

namespace spruce::granularity {

/// One group per convolution kernel: each kh x kw slice w[o, c, :, :] of a weight of rank
/// >= 3 (the trailing two axes are reduced).
struct kernel {
  group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    detail::require_rank(shape, 3, "kernel", name);
    std::array<bool, max_rank> reduce{};
    reduce[shape.size() - 1] = reduce[shape.size() - 2] = true;
    return reduce_axes(shape, std::span<const bool>(reduce.data(), shape.size()));
  }
};

}  // namespace spruce::granularity
