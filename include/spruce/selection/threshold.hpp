#pragma once

#include <cstddef>
#include <string>

#include "spruce/core/rounding.hpp"
#include "spruce/select/kth.hpp"

namespace spruce::selection {

/// The MIT lab's rule: count = round_half_even(sparsity * n) with the sparsity clamped to
/// [0, 1]; t = the count-th smallest score; every score <= t is pruned (ties can prune
/// more than count). count 0 prunes nothing (where torch.kthvalue would raise).
struct threshold {
  double sparsity = 0.0;

  static constexpr select::tie_break ties = select::tie_break::all_equal;

  /// Number of scores to cut out of n. Throws spruce::error for a NaN sparsity.
  std::size_t count(std::size_t n, const std::string& name = {}) const {
    return count_from_ratio(sparsity, n, "sparsity" + (name.empty() ? "" : " of " + name));
  }
};

}  // namespace spruce::selection
