#pragma once

#include <array>
#include <span>
#include <string>

#include "spruce/granularity/group_layout.hpp"

namespace spruce::granularity {

/// One group per index along axis `dim`, every other axis reduced: the slices that torch's
/// `prune.ln_structured(module, name, amount, n, dim)` scores and removes, along any axis.
/// `dim` counts like torch's: 0 is the first axis, -1 the last, so `slice{0}` groups like
/// `filter` (output filters), `slice{1}` like `channel` (input channels), and for a conv
/// weight [out, in, kh, kw] `slice{2}` / `slice{-1}` cut whole kernel rows / columns shared
/// by every filter. The member is named `dim` after torch's argument, since this is the
/// policy users reach for when porting an `ln_structured` call. Any rank >= 1 works (a
/// 1-D tensor has one element per slice); an axis outside [-rank, rank) is a
/// spruce::error naming the tensor.
struct slice {
  int dim = 0;

  group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    detail::require_rank(shape, 1, "slice", name);
    const std::size_t axis = detail::resolve_axis(dim, shape.size(), "slice", name);
    std::array<bool, max_rank> reduce{};
    for (std::size_t r = 0; r < shape.size(); ++r) reduce[r] = r != axis;
    return reduce_axes(shape, std::span<const bool>(reduce.data(), shape.size()));
  }
};

}  // namespace spruce::granularity
