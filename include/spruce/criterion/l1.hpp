#pragma once

#include <cmath>

#include "spruce/core/config.hpp"

namespace spruce::criterion {

/// Magnitude: |w| per weight, summed over a group (the L1 norm of the group).
struct l1 {
  static constexpr bool orders_like_magnitude = true;
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = false;
  template <class T> SPRUCE_HD T element(T w, T, T) const { return std::abs(w); }
  template <class T> SPRUCE_HD T reduce(T a, T s) const { return a + s; }
  template <class T> SPRUCE_HD T finish(T a) const { return a; }
  template <class T> SPRUCE_HD T identity() const { return T(0); }
};

}  // namespace spruce::criterion
