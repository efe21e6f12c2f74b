#pragma once

#include <array>
#include <span>
#include <string>

#include "spruce/granularity/group_layout.hpp"

namespace spruce::granularity {

/// One group per 1-D vector running along `axis`: the default -1 makes rows along the last
/// axis (for a conv weight, each kw-row of a kernel); axis 0 of a 2-D weight makes columns.
struct vector {
  int axis = -1;

  group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    detail::require_rank(shape, 1, "vector", name);
    std::array<bool, max_rank> reduce{};
    reduce[detail::resolve_axis(axis, shape.size(), "vector", name)] = true;
    return reduce_axes(shape, std::span<const bool>(reduce.data(), shape.size()));
  }
};

}  // namespace spruce::granularity
