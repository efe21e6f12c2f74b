#pragma once

#include <cstdint>
#include <type_traits>

#include "spruce/schedule/base.hpp"

namespace spruce::schedule {

/// TF-MOT's ConstantSparsity: prune to the same target at every `frequency`-th step of the
/// window [begin_step, end_step] (end_step -1: until training ends). Use it to hold a
/// sparsity reached elsewhere, or to keep re-applying one target while the weights move.
/// sparsity_at returns the target at every step, before and after the window too, exactly
/// as the reference does; only should_prune depends on the step. The defaults (open end,
/// frequency 100) are TF-MOT's.
struct constant {
  double target_sparsity;
  std::int64_t begin_step;
  std::int64_t end_step;
  std::int64_t frequency;

  /// Validates the knobs: target in [0, 1], begin_step >= 0, end_step >= begin_step or -1,
  /// frequency >= 1; throws spruce::error naming the knob otherwise.
  constexpr constant(double target_sparsity, std::int64_t begin_step, std::int64_t end_step = -1,
                     std::int64_t frequency = 100)
      : target_sparsity(target_sparsity), begin_step(begin_step), end_step(end_step),
        frequency(frequency) {
    validate();
  }

  /// Re-checks the knobs; call it after assigning a member directly.
  constexpr void validate() const {
    detail::check_sparsity("constant", "target_sparsity", target_sparsity);
    detail::check_window("constant", begin_step, end_step, frequency, true);
  }

  constexpr bool should_prune(std::int64_t step) const noexcept {
    return detail::in_window(step, begin_step, end_step, frequency);
  }

  constexpr double sparsity_at(std::int64_t) const noexcept { return target_sparsity; }
};

static_assert(schedule_policy<constant>);
static_assert(std::is_trivially_copyable_v<constant>);

}  // namespace spruce::schedule
