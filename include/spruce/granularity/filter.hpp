#pragma once

#include <array>
#include <span>
#include <string>

#include "spruce/granularity/group_layout.hpp"

namespace spruce::granularity {

/// One group per output filter: the slices along axis 0 (a conv weight's [in, kh, kw]
/// block, a linear weight's row). torch's ln_structured with dim = 0.
struct filter {
  group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    detail::require_rank(shape, 2, "filter", name);
    std::array<bool, max_rank> reduce{};
    for (std::size_t r = 1; r < shape.size(); ++r) reduce[r] = true;
    return reduce_axes(shape, std::span<const bool>(reduce.data(), shape.size()));
  }
};

}  // namespace spruce::granularity
