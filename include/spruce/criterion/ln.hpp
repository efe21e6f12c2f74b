#pragma once

#include <cmath>
#include <string>

#include "spruce/core/config.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"

namespace spruce::criterion {

/// The Ln norm of a group, (sum |w|^p)^(1/p); p = infinity is the largest |w| (torch's
/// ln_structured with n = inf). p must be > 0 and not NaN: `validate(name)`, which
/// group_scores calls before scoring a tensor, throws spruce::error naming the tensor
/// otherwise (for p <= 0 the "norm" does not rank weights by size, and 1/p is undefined
/// at 0).
struct ln {
  double p = 2.0;
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = false;

  void validate(const std::string& name = {}) const {
    if (!(p > 0.0))
      throw error("criterion::ln for " + spruce::detail::tensor_label(name) + ": p is " +
                  spruce::detail::shortest_decimal(p) +
                  "; pass p > 0 (1 = L1, 2 = L2, infinity = the largest |w|)");
  }

  // Any p above the largest finite double is +infinity (no numeric_limits: this runs in
  // device code too).
  SPRUCE_HD bool is_max() const { return p > 1.7976931348623157e308; }
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
