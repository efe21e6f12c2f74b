#pragma once

#include <span>
#include <string>

#include "spruce/granularity/group_layout.hpp"

namespace spruce::granularity {

/// R x C tiles of the 2-D view [out, in*kh*kw] of a weight (its row-major flattening after
/// axis 0): the unit block-sparse kernels skip. Tiles at the right and bottom edges may be
/// partial; they are groups like the others.
struct block {
  std::size_t rows = 4;
  std::size_t cols = 4;

  group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    detail::require_rank(shape, 2, "block", name);
    if (rows == 0 || cols == 0)
      throw error("block granularity: a " + std::to_string(rows) + " x " + std::to_string(cols) +
                  " block is empty; pass rows and cols >= 1");
    group_layout l;
    l.rank = 2;
    l.extent[0] = shape[0];
    l.extent[1] = 1;
    for (std::size_t r = 1; r < shape.size(); ++r) l.extent[1] *= shape[r];
    l.tile[0] = rows;
    l.tile[1] = cols;
    return l;
  }
};

}  // namespace spruce::granularity
