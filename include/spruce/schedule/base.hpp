#pragma once
// The schedule base: the schedule_policy concept and the checks every schedule shares
// (sparsity range, TF-MOT step window). Each policy header includes this one and nothing
// of its siblings; the umbrella schedule/schedule.hpp includes the base and every policy.

#include <concepts>
#include <cstdint>
#include <string>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"

namespace spruce::schedule {

/// What a pruning schedule provides, as TF-MOT's PruningSchedule returns the pair for every
/// step: `should_prune(step)` says whether a prune happens at this step, and
/// `sparsity_at(step)` is the fraction of weights a prune at this step leaves at zero. The
/// two are independent: sparsity_at is defined at every step (before, inside and after the
/// window), and a trainer prunes to it only where should_prune is true. A "step" is whatever
/// the caller counts (optimizer steps, epochs, or prune/fine-tune iterations). A user type
/// with these two const members plugs in without touching spruce.
template <class S>
concept schedule_policy = std::copy_constructible<S> && requires(const S& s, std::int64_t step) {
  { s.should_prune(step) } -> std::same_as<bool>;
  { s.sparsity_at(step) } -> std::same_as<double>;
};

namespace detail {

/// Shortest round-trip spelling of a knob for error messages ("0.9", not "0.900000");
/// NaN is spelled "NaN" whatever its sign bit.
inline std::string format_knob(double x) {
  if (x != x) return "NaN";
  return spruce::detail::shortest_decimal(x);
}

/// A sparsity is a fraction of weights: NaN or anything outside [0, 1] is an error.
constexpr void check_sparsity(const char* schedule, const char* knob, double s) {
  if (!(s >= 0.0 && s <= 1.0))
    throw error(std::string(schedule) + " schedule: " + knob + " " + format_knob(s) +
                " is not in [0, 1]; pass the fraction of weights to prune, between 0 and 1");
}

/// The TF-MOT step window: begin_step >= 0, end_step >= begin_step or -1 (open-ended, when
/// the schedule allows it), frequency >= 1.
constexpr void check_window(const char* schedule, std::int64_t begin, std::int64_t end,
                            std::int64_t frequency, bool open_end_allowed) {
  // Messages are built only on the throwing paths, so a valid window costs no allocation.
  const auto what = [schedule] { return std::string(schedule) + " schedule: "; };
  if (begin < 0)
    throw error(what() + "begin_step " + std::to_string(begin) +
                " is negative; pass the first step to prune at, >= 0");
  if (end == -1 && !open_end_allowed)
    throw error(what() + "end_step -1 (open-ended) leaves the ramp without an end; pass the "
                "step at which final_sparsity is reached, > begin_step (" +
                std::to_string(begin) + ")");
  if (end < -1)
    throw error(what() + "end_step " + std::to_string(end) +
                " is negative; pass -1 to prune until training ends, or a step >= begin_step (" +
                std::to_string(begin) + ")");
  if (end != -1 && end < begin)
    throw error(what() + "end_step " + std::to_string(end) + " is before begin_step " +
                std::to_string(begin) + "; pass end_step >= begin_step" +
                (open_end_allowed ? ", or -1 to prune until training ends" : ""));
  if (frequency <= 0)
    throw error(what() + "frequency " + std::to_string(frequency) +
                " is not positive; pass the number of steps between prunes, >= 1");
}

/// TF-MOT's _should_prune_in_step: begin <= step <= end (end -1: open) and
/// (step - begin) % frequency == 0. Comparing before subtracting keeps every int64 step
/// free of overflow (begin >= 0 after validation).
constexpr bool in_window(std::int64_t step, std::int64_t begin, std::int64_t end,
                         std::int64_t frequency) noexcept {
  if (step < begin) return false;
  if (end != -1 && step > end) return false;
  return (step - begin) % frequency == 0;
}

}  // namespace detail
}  // namespace spruce::schedule
