#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "spruce/schedule/base.hpp"

namespace spruce::schedule {

/// Prune once, at `prune_step`, straight to the target: the classic prune-then-fine-tune
/// recipe (and the MIT lab's fine-grained exercise). It is a constant schedule whose window
/// is the single step, so sparsity_at returns the target at every step, as constant does,
/// and should_prune is true at prune_step only.
struct one_shot {
  double target_sparsity;
  std::int64_t prune_step;

  /// Validates the knobs: target in [0, 1], prune_step >= 0; throws spruce::error naming the
  /// knob otherwise.
  constexpr explicit one_shot(double target_sparsity, std::int64_t prune_step = 0)
      : target_sparsity(target_sparsity), prune_step(prune_step) {
    validate();
  }

  /// Re-checks the knobs; call it after assigning a member directly.
  constexpr void validate() const {
    detail::check_sparsity("one_shot", "target_sparsity", target_sparsity);
    if (prune_step < 0)
      throw error("one_shot schedule: prune_step " + std::to_string(prune_step) +
                  " is negative; pass the step to prune at, >= 0");
  }

  constexpr bool should_prune(std::int64_t step) const noexcept { return step == prune_step; }

  constexpr double sparsity_at(std::int64_t) const noexcept { return target_sparsity; }
};

static_assert(schedule_policy<one_shot>);
static_assert(std::is_trivially_copyable_v<one_shot>);

}  // namespace spruce::schedule
