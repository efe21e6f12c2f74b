#pragma once
// Learning-rate schedules as functions of the optimiser step, built to compose.

#include <cstddef>
#include <functional>

namespace train {

/// The learning rate for optimiser step `step` (0 for the first step). A schedule is a plain
/// function so that the pieces below compose (`lr::then(lr::linear(...), n, lr::cosine(...))`)
/// and a user's own rule drops in as a lambda. The training loop calls
/// `optimizer.set_lr(schedule(step))` before each step.
using lr_schedule = std::function<double(std::size_t step)>;

namespace lr {

/// `value` at every step.
lr_schedule constant(double value);

/// From `from` at step 0 to `to` at step `steps` in equal increments, then `to`:
/// PyTorch's LinearLR warm-up when from = start_factor * to. Throws spruce::error for
/// steps == 0 or a negative rate.
lr_schedule linear(double from, double to, std::size_t steps);

/// to + (from - to) * (1 + cos(pi * step / steps)) / 2, then `to` after `steps`: the closed
/// form of PyTorch's CosineAnnealingLR (eta_min = to, T_max = steps). Throws
/// spruce::error for steps == 0 or a negative rate.
lr_schedule cosine(double from, double to, std::size_t steps);

/// `first` for steps [0, first_steps), then `second` restarted at 0 (PyTorch's
/// SequentialLR with one milestone). Throws spruce::error for an empty function.
lr_schedule then(lr_schedule first, std::size_t first_steps, lr_schedule second);

/// Linear warm-up from `peak * start_factor` to `peak` over `warmup_steps`, then a cosine
/// decay to `final_lr` at `total_steps`. Throws spruce::error when warmup_steps >=
/// total_steps or a value is out of range.
lr_schedule warmup_cosine(double peak, std::size_t warmup_steps, std::size_t total_steps,
                          double start_factor = 0.1, double final_lr = 0);

/// PyTorch's OneCycleLR with cosine annealing, two phases and no momentum cycling: from
/// max_lr / div_factor up to max_lr at step pct_start * total_steps - 1, then down to
/// max_lr / (div_factor * final_div_factor) at step total_steps - 1, held there after.
/// Throws spruce::error when a phase would be empty or a value is out of range.
lr_schedule one_cycle(double max_lr, std::size_t total_steps, double pct_start = 0.3,
                      double div_factor = 25, double final_div_factor = 1e4);

}  // namespace lr
}  // namespace train
