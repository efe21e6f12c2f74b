#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/error.hpp"
#include "spruce/select/kth.hpp"

namespace spruce::selection {

/// Keeps the scores strictly above their p-quantile, torch.quantile's linear interpolation
/// between order statistics: rank = p * (n - 1) in the score type, q = lerp(s[floor],
/// s[ceil], rank - floor) with torch's two-sided lerp. The two order statistics come from
/// O(n) selections, never a sort. p must be in [0, 1].
struct quantile {
  double p = 0.5;

  template <template <class> class Order = select::by_value, select::score_type T>
  byte_buffer keep(std::span<const T> scores, const std::string& name = {}) const {
    if (!(p >= 0.0 && p <= 1.0))
      throw error("quantile: p = " + std::to_string(p) + (name.empty() ? "" : " for " + name) +
                  " is not in [0, 1]; pass a quantile between 0 and 1");
    const std::size_t n = scores.size();
    if (n == 0) return {};
    using O = Order<T>;
    const T rank = static_cast<T>(p) * static_cast<T>(n - 1);
    const T below = std::floor(rank);
    const T weight = rank - below;
    const auto lo_k = static_cast<std::size_t>(below) + 1;
    const T a = select::kth_smallest<Order>(scores, lo_k, name).value;
    const T b = lo_k < n ? select::kth_smallest<Order>(scores, lo_k + 1, name).value : a;
    const T q = weight < T(0.5) ? a + weight * (b - a) : b - (b - a) * (T(1) - weight);
    byte_buffer keep(n);
    for (std::size_t i = 0; i < n; ++i) keep[i] = O::key(scores[i]) > O::key(q);
    return keep;
  }
};

}  // namespace spruce::selection
