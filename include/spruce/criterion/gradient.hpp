#pragma once

#include <cmath>

#include "spruce/core/config.hpp"

namespace spruce::criterion {

/// Gradient magnitude |g| per weight, summed over a group: weights the loss is least
/// sensitive to go first. Needs the gradient.
struct gradient {
  static constexpr bool needs_grad = true;
  static constexpr bool needs_hessian = false;
  template <class T> SPRUCE_HD T element(T, T g, T) const { return std::abs(g); }
  template <class T> SPRUCE_HD T reduce(T a, T s) const { return a + s; }
  template <class T> SPRUCE_HD T finish(T a) const { return a; }
  template <class T> SPRUCE_HD T identity() const { return T(0); }
};

}  // namespace spruce::criterion
