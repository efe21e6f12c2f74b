#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>

#include "spruce/core/error.hpp"
#include "spruce/core/rounding.hpp"
#include "spruce/select/kth.hpp"

namespace spruce::selection {

/// torch.nn.utils.prune's rule: exactly `count` lowest scores are pruned. An integer
/// amount is a count and a floating-point one a ratio of n (round_half_even(ratio * n)),
/// as in torch. Ties: the lower flat index is pruned first (deterministic; torch leaves it
/// unspecified). Unlike the threshold rule nothing clamps: a ratio outside [0, 1] or a
/// count larger than the tensor is an error, as torch raises.
struct exact {
  bool is_count = false;
  std::size_t amount_count = 0;
  double amount_ratio = 0.0;

  static constexpr select::tie_break ties = select::tie_break::lower_index;

  constexpr exact() = default;
  /// Prune exactly `c` scores. Negative counts are rejected.
  template <std::integral I>
  constexpr explicit exact(I c) : is_count(true), amount_count(static_cast<std::size_t>(c)) {
    if constexpr (std::is_signed_v<I>)  // (no unsigned compare with 0: nvcc warns on it)
      if (c < 0) throw error("exact: count " + std::to_string(c) + " is negative; pass a count >= 0");
  }
  /// Prune round_half_even(r * n) scores; r must be in [0, 1].
  template <std::floating_point F>
  constexpr explicit exact(F r) : amount_ratio(static_cast<double>(r)) {}

  std::size_t count(std::size_t n, const std::string& name = {}) const {
    const std::string of = name.empty() ? "" : " of " + name;
    if (is_count) {
      if (amount_count > n)
        throw error("exact: cannot prune " + std::to_string(amount_count) + " elements" + of +
                    ", which has only " + std::to_string(n) + "; pass a count <= " +
                    std::to_string(n) + " or a ratio");
      return amount_count;
    }
    if (!(amount_ratio >= 0.0 && amount_ratio <= 1.0))
      throw error("exact: amount " + std::to_string(amount_ratio) + of +
                  " is not a ratio in [0, 1]; pass a ratio in [0, 1] or an integer count");
    return count_from_ratio(amount_ratio, n);
  }
};

}  // namespace spruce::selection
