#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "spruce/schedule/base.hpp"

namespace spruce::schedule {

/// Iterative pruning in n rounds (prune, fine-tune, repeat; Han et al. 2015), with the
/// geometric targets s_k = 1 - (1 - final_sparsity)^(k / n): every round removes the same
/// fraction of the weights still alive, so no round is a shock to the network. Its "step"
/// is the iteration index k, because rounds, not optimizer steps, are what such a loop
/// counts: should_prune(k) is true for k = 1..n, and sparsity_at(k) is the target after
/// round k, clipped like the polynomial ramp: 0 for k <= 0 (the dense network) and exactly
/// final_sparsity for k >= n (not 1 - (1 - s_f), which can differ in the last bit).
struct iterative_geometric {
  double final_sparsity;
  std::int64_t iterations;

  /// Validates the knobs: final_sparsity in [0, 1], iterations >= 1; throws spruce::error
  /// naming the knob otherwise.
  constexpr iterative_geometric(double final_sparsity, std::int64_t iterations)
      : final_sparsity(final_sparsity), iterations(iterations) {
    validate();
  }

  /// Re-checks the knobs; call it after assigning a member directly.
  constexpr void validate() const {
    detail::check_sparsity("iterative_geometric", "final_sparsity", final_sparsity);
    if (iterations <= 0)
      throw error("iterative_geometric schedule: iterations " + std::to_string(iterations) +
                  " is not positive; pass the number of prune/fine-tune rounds, >= 1");
  }

  constexpr bool should_prune(std::int64_t k) const noexcept { return k >= 1 && k <= iterations; }

  double sparsity_at(std::int64_t k) const noexcept {
    if (k <= 0) return 0.0;
    if (k >= iterations) return final_sparsity;
    return 1.0 - std::pow(1.0 - final_sparsity,
                          static_cast<double>(k) / static_cast<double>(iterations));
  }
};

static_assert(schedule_policy<iterative_geometric>);
static_assert(std::is_trivially_copyable_v<iterative_geometric>);

}  // namespace spruce::schedule
