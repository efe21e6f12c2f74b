#pragma once

#include <array>
#include <span>
#include <string>

#include "spruce/granularity/group_layout.hpp"

namespace spruce::granularity {

/// Fine-grained: every weight is its own group.
struct element {
  static constexpr bool one_weight_per_group = true;
  group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    detail::require_rank(shape, 1, "element", name);
    std::array<bool, max_rank> reduce{};
    return reduce_axes(shape, std::span<const bool>(reduce.data(), shape.size()));
  }
};

}  // namespace spruce::granularity
