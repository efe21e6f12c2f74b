#pragma once

#include <cmath>

#include "spruce/core/config.hpp"

namespace spruce::criterion {

/// w^2 per weight; a group scores sqrt(sum w^2), its Frobenius norm. Ordering single
/// weights by w^2 equals ordering by |w|.
struct l2 {
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = false;
  template <class T> SPRUCE_HD T element(T w, T, T) const { return w * w; }
  template <class T> SPRUCE_HD T reduce(T a, T s) const { return a + s; }
  template <class T> SPRUCE_HD T finish(T a) const { return std::sqrt(a); }
  template <class T> SPRUCE_HD T identity() const { return T(0); }
};

}  // namespace spruce::criterion
