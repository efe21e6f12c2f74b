#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "spruce/core/error.hpp"

namespace spruce {

/// Rounds to the nearest integer, halves to even: Python's `round` (2.5 -> 2, 3.5 -> 4,
/// -0.5 -> -0). Every count spruce derives from a ratio goes through here, so counts match
/// the PyTorch references digit for digit.
inline double round_half_even(double x) noexcept {
  // Written out rather than std::nearbyint, which follows the caller's rounding mode.
  const double f = std::floor(x);
  const double diff = x - f;
  if (diff < 0.5) return f;
  if (diff > 0.5) return f + 1.0;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

/// Clamps a ratio to [0, 1], as the MIT lab's threshold rule does. NaN is an error: a NaN
/// sparsity would silently prune nothing (or everything) depending on comparison order.
inline double clamp_ratio(double ratio, const std::string& what = "sparsity") {
  if (std::isnan(ratio))
    throw error(what + " is NaN; pass a ratio in [0, 1]");
  return ratio < 0.0 ? 0.0 : (ratio > 1.0 ? 1.0 : ratio);
}

/// Number of elements a ratio of `n` selects: round_half_even(ratio * n), with the ratio
/// clamped to [0, 1] first. The product is formed in double, exactly as Python does.
inline std::size_t count_from_ratio(double ratio, std::size_t n,
                                    const std::string& what = "sparsity") {
  const double r = clamp_ratio(ratio, what);
  const double c = round_half_even(r * static_cast<double>(n));
  return c >= static_cast<double>(n) ? n : static_cast<std::size_t>(c);
}

/// Channels kept when pruning `c` channels by `ratio`: round_half_even(c * (1 - ratio)).
inline std::size_t kept_from_ratio(double ratio, std::size_t c,
                                   const std::string& what = "prune ratio") {
  const double r = clamp_ratio(ratio, what);
  const double k = round_half_even(static_cast<double>(c) * (1.0 - r));
  return k >= static_cast<double>(c) ? c : static_cast<std::size_t>(k);
}

}  // namespace spruce
