#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "spruce/core/error.hpp"
#include "spruce/select/kth.hpp"

namespace spruce::selection {

/// The Network Slimming reference rule (Liu et al. 2017, vggprune.py): sort all scores,
/// take thre = sorted[floor(n * percent)], keep scores strictly above it. As a count rule:
/// the count-th smallest with count = floor(n * percent) + 1, every tie pruned. At high
/// percent whole layers can lose every channel; the structural layer's safe rule adds a
/// per-layer minimum. percent must be in [0, 1).
struct slimming {
  double percent = 0.5;

  static constexpr select::tie_break ties = select::tie_break::all_equal;

  std::size_t count(std::size_t n, const std::string& name = {}) const {
    if (!(percent >= 0.0 && percent < 1.0))
      throw error("slimming: percent " + std::to_string(percent) + (name.empty() ? "" : " for " + name) +
                  " is not in [0, 1); the reference indexes sorted scores at floor(n * percent)");
    if (n == 0) return 0;
    const auto index = static_cast<std::size_t>(std::floor(static_cast<double>(n) * percent));
    return index + 1 > n ? n : index + 1;
  }
};

}  // namespace spruce::selection
