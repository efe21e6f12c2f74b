#pragma once

#include <cmath>

#include "spruce/core/config.hpp"

namespace spruce::criterion {

/// First-order Taylor estimate of the loss change from removing a weight, |w * g|, summed
/// over a group. Needs the gradient.
struct taylor {
  static constexpr bool needs_grad = true;
  static constexpr bool needs_hessian = false;
  template <class T> SPRUCE_HD T element(T w, T g, T) const { return std::abs(w * g); }
  template <class T> SPRUCE_HD T reduce(T a, T s) const { return a + s; }
  template <class T> SPRUCE_HD T finish(T a) const { return a; }
  template <class T> SPRUCE_HD T identity() const { return T(0); }
};

}  // namespace spruce::criterion
