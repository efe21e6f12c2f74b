#pragma once

#include <cmath>
#include <limits>

#include "spruce/core/config.hpp"

namespace spruce::criterion {

/// The Ln norm of a group, (sum |w|^p)^(1/p); p = infinity is the largest |w| (torch's
/// ln_structured with n = inf). p must be > 0.
struct ln {
  double p = 2.0;
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = false;

  SPRUCE_HD bool is_max() const { return p == std::numeric_limits<double>::infinity(); }
  template <class T> SPRUCE_HD T element(T w, T, T) const {
    return is_max() ? std::abs(w) : static_cast<T>(std::pow(std::abs(static_cast<double>(w)), p));
  }
  template <class T> SPRUCE_HD T reduce(T a, T s) const { return is_max() ? (s > a ? s : a) : a + s; }
  template <class T> SPRUCE_HD T finish(T a) const {
    return is_max() ? a : static_cast<T>(std::pow(static_cast<double>(a), 1.0 / p));
  }
  template <class T> SPRUCE_HD T identity() const { return T(0); }
};

}  // namespace spruce::criterion
