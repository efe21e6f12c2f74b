#include "train/lr_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>

#include <spruce/core/error.hpp>

namespace train::lr {
namespace {

void require_rate(const char* who, double value) {
  if (!(value >= 0) || !std::isfinite(value))
    throw spruce::error(std::string("lr::")
                            .append(who)
                            .append(": rate ")
                            .append(std::to_string(value))
                            .append(" is negative or not finite; pass a rate >= 0"));
}

void require_steps(const char* who, std::size_t steps) {
  if (steps == 0)
    throw spruce::error(std::string("lr::").append(who).append(": 0 steps; pass at least 1"));
}

// Half a cosine from `from` (pct 0) to `to` (pct 1).
double cosine_between(double from, double to, double pct) {
  return to + (from - to) * (1 + std::cos(std::numbers::pi * pct)) / 2;
}

}  // namespace

lr_schedule constant(double value) {
  require_rate("constant", value);
  return [value](std::size_t) { return value; };
}

lr_schedule linear(double from, double to, std::size_t steps) {
  require_rate("linear", from);
  require_rate("linear", to);
  require_steps("linear", steps);
  return [=](std::size_t step) {
    const double pct = static_cast<double>(std::min(step, steps)) / static_cast<double>(steps);
    return from + (to - from) * pct;
  };
}

lr_schedule cosine(double from, double to, std::size_t steps) {
  require_rate("cosine", from);
  require_rate("cosine", to);
  require_steps("cosine", steps);
  return [=](std::size_t step) {
    return cosine_between(from, to,
                          static_cast<double>(std::min(step, steps)) / static_cast<double>(steps));
  };
}

lr_schedule then(lr_schedule first, std::size_t first_steps, lr_schedule second) {
  if (!first || !second) throw spruce::error("lr::then: an empty schedule; pass two functions");
  return [first = std::move(first), first_steps, second = std::move(second)](std::size_t step) {
    return step < first_steps ? first(step) : second(step - first_steps);
  };
}

lr_schedule warmup_cosine(double peak, std::size_t warmup_steps, std::size_t total_steps,
                          double start_factor, double final_lr) {
  require_rate("warmup_cosine", peak);
  require_rate("warmup_cosine", final_lr);
  if (!(start_factor >= 0 && start_factor <= 1))
    throw spruce::error(std::string("lr::warmup_cosine: start factor ")
                            .append(std::to_string(start_factor))
                            .append(" is outside [0, 1]"));
  if (warmup_steps >= total_steps)
    throw spruce::error(std::string("lr::warmup_cosine: ")
                            .append(std::to_string(warmup_steps))
                            .append(" warm-up steps leave nothing of ")
                            .append(std::to_string(total_steps))
                            .append(" steps; pass warmup_steps < total_steps"));
  lr_schedule decay = cosine(peak, final_lr, total_steps - warmup_steps);
  if (warmup_steps == 0) return decay;
  return then(linear(peak * start_factor, peak, warmup_steps), warmup_steps, std::move(decay));
}

lr_schedule one_cycle(double max_lr, std::size_t total_steps, double pct_start, double div_factor,
                      double final_div_factor) {
  require_rate("one_cycle", max_lr);
  if (!(div_factor > 0) || !(final_div_factor > 0) || !(pct_start > 0 && pct_start < 1))
    throw spruce::error(std::string("lr::one_cycle: pct_start ")
                            .append(std::to_string(pct_start))
                            .append(", div_factor ")
                            .append(std::to_string(div_factor))
                            .append(", final_div_factor ")
                            .append(std::to_string(final_div_factor))
                            .append("; pass pct_start in (0, 1) and positive factors"));
  // PyTorch's phase boundaries: the peak at step pct_start * total - 1 (a real number),
  // the end at total - 1.
  const double peak_step = pct_start * static_cast<double>(total_steps) - 1;
  const double last_step = static_cast<double>(total_steps) - 1;
  if (!(peak_step > 0) || !(last_step > peak_step))
    throw spruce::error(std::string("lr::one_cycle: ")
                            .append(std::to_string(total_steps))
                            .append(" steps with pct_start ")
                            .append(std::to_string(pct_start))
                            .append(" leave a phase empty; pass more steps"));
  const double initial = max_lr / div_factor, final_lr = initial / final_div_factor;
  return [=](std::size_t step) {
    const double s = std::min(static_cast<double>(step), last_step);
    if (s <= peak_step) return cosine_between(initial, max_lr, s / peak_step);
    return cosine_between(max_lr, final_lr, (s - peak_step) / (last_step - peak_step));
  };
}

}  // namespace train::lr
