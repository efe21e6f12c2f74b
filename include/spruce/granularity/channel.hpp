#pragma once

#include <array>
#include <span>
#include <string>

#include "spruce/granularity/group_layout.hpp"

namespace spruce::granularity {

/// One group per input channel: the slices along axis 1 (for a conv weight, channel c is
/// w[:, c, :, :]; for a linear weight, column c). torch's ln_structured with dim = 1.
struct channel {
  group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    detail::require_rank(shape, 2, "channel", name);
    std::array<bool, max_rank> reduce{};
    for (std::size_t r = 0; r < shape.size(); ++r) reduce[r] = r != 1;
    return reduce_axes(shape, std::span<const bool>(reduce.data(), shape.size()));
  }
};

}  // namespace spruce::granularity
