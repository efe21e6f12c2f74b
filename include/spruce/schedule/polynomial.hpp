#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "spruce/schedule/base.hpp"

namespace spruce::schedule {

/// TF-MOT's PolynomialDecay: sparsity ramps from initial_sparsity at begin_step to
/// final_sparsity at end_step along s = (s_i - s_f)(1 - p)^power + s_f with
/// p = clip((step - begin_step) / (end_step - begin_step), 0, 1), pruning at every
/// `frequency`-th step of the window. A high power prunes fast while the network has many
/// redundant weights and slowly near the end, when each weight matters more. sparsity_at
/// evaluates the formula at every step, so it gives initial_sparsity before the window
/// (computed as the formula does, e.g. 0.09999999999999998 for 0.1 ramping to 0.95, as the
/// reference records) and exactly final_sparsity after it. Unlike constant the window must
/// end after it begins: end_step -1 or end_step == begin_step would leave p undefined (TF
/// divides by zero there), so both are errors. Defaults (power 3, frequency 100) are TF-MOT's.
struct polynomial {
  double initial_sparsity;
  double final_sparsity;
  std::int64_t begin_step;
  std::int64_t end_step;
  double power;
  std::int64_t frequency;

  /// Validates the knobs: sparsities in [0, 1], 0 <= begin_step < end_step, power finite and
  /// > 0, frequency >= 1; throws spruce::error naming the knob otherwise.
  constexpr polynomial(double initial_sparsity, double final_sparsity, std::int64_t begin_step,
                       std::int64_t end_step, double power = 3.0, std::int64_t frequency = 100)
      : initial_sparsity(initial_sparsity), final_sparsity(final_sparsity),
        begin_step(begin_step), end_step(end_step), power(power), frequency(frequency) {
    validate();
  }

  /// Re-checks the knobs; call it after assigning a member directly.
  constexpr void validate() const {
    detail::check_sparsity("polynomial", "initial_sparsity", initial_sparsity);
    detail::check_sparsity("polynomial", "final_sparsity", final_sparsity);
    detail::check_window("polynomial", begin_step, end_step, frequency, false);
    if (end_step == begin_step)
      throw error("polynomial schedule: end_step " + std::to_string(end_step) +
                  " equals begin_step, so the ramp has no length; pass end_step > begin_step, "
                  "or use constant or one_shot to prune at a single step");
    if (!(power > 0.0 && power <= std::numeric_limits<double>::max()))
      throw error("polynomial schedule: power " + detail::format_knob(power) +
                  " is not a finite number > 0; pass the ramp's exponent (3 is AGP's cubic, 1 "
                  "a straight line)");
  }

  constexpr bool should_prune(std::int64_t step) const noexcept {
    return detail::in_window(step, begin_step, end_step, frequency);
  }

  double sparsity_at(std::int64_t step) const noexcept {
    // Clipping by comparison first keeps step - begin_step from overflowing at any step.
    double p = 0.0;
    if (step >= end_step) p = 1.0;
    else if (step > begin_step)
      p = static_cast<double>(step - begin_step) / static_cast<double>(end_step - begin_step);
    return (initial_sparsity - final_sparsity) * std::pow(1.0 - p, power) + final_sparsity;
  }
};

static_assert(schedule_policy<polynomial>);
static_assert(std::is_trivially_copyable_v<polynomial>);

/// Zhu & Gupta's automated gradual pruning ("To prune, or not to prune", 2017): the
/// polynomial ramp with power 3, pruning every `frequency` steps from begin_step to
/// end_step. It returns a plain polynomial, so it needs no policy of its own. To count in
/// prune/fine-tune iterations k = 1..n instead of steps, pass begin_step 0, end_step n,
/// frequency 1: sparsity_at(k) is then the target after iteration k (and should_prune(0)
/// is true, pruning to initial_sparsity before the first iteration).
constexpr polynomial agp(double initial_sparsity, double final_sparsity, std::int64_t begin_step,
                         std::int64_t end_step, std::int64_t frequency = 100) {
  return polynomial(initial_sparsity, final_sparsity, begin_step, end_step, 3.0, frequency);
}

}  // namespace spruce::schedule
