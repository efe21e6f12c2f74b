#pragma once
// Stochastic gradient descent with PyTorch's update rule, over named views of any model.

#include <cstddef>
#include <functional>
#include <vector>

#include <spruce/core/tensor_ref.hpp>

namespace train {

/// SGD's settings, PyTorch's defaults (lr aside). `decay_vectors` chooses whether weight
/// decay reaches rank-1 tensors (BN weights and biases, layer biases): PyTorch decays every
/// parameter, many recipes exempt those, since shrinking a scale or shift is no
/// regularisation.
struct sgd_options {
  double lr = 0.1;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
  bool decay_vectors = true;
};

/// torch.optim.SGD over a model's named parameters and gradients. Per element, with
/// g = grad + weight_decay * p: the first step sets the momentum buffer b = g, later ones
/// b = momentum * b + (1 - dampening) * g; the step direction is g + momentum * b with
/// Nesterov, b without, g when momentum is 0; p -= lr * direction. After each step the
/// hooks run in the order they were added: that is where pruning re-applies its masks
/// (`optimizer.add_hook([&](std::size_t) { masks.apply(); })`), so pruned weights never
/// stay off zero. The optimiser views the tensors; it owns only the momentum buffers.
template <class T>
class basic_sgd {
 public:
  /// Called after each step with the number of steps taken so far (1 after the first).
  using hook = std::function<void(std::size_t step)>;

  /// Throws spruce::error when the lists differ in length, names or shapes, a tensor is
  /// not contiguous, or an option is out of range (negative lr, momentum, dampening or
  /// weight decay; Nesterov without momentum or with dampening, which PyTorch refuses).
  basic_sgd(std::vector<spruce::named_tensor<T>> parameters,
            std::vector<spruce::named_tensor<T>> gradients, const sgd_options& options);

  /// One update of every parameter, then the hooks.
  void step();
  void set_lr(double lr);
  double lr() const noexcept { return options_.lr; }
  std::size_t steps() const noexcept { return steps_; }
  const sgd_options& options() const noexcept { return options_; }
  void add_hook(hook h) { hooks_.push_back(std::move(h)); }

 private:
  std::vector<spruce::named_tensor<T>> params_, grads_;
  std::vector<std::vector<T>> momentum_;
  sgd_options options_;
  std::size_t steps_ = 0;
  std::vector<hook> hooks_;
};

/// The optimiser over a float model's parameters (spruce views them as float tensors).
using sgd = basic_sgd<float>;

}  // namespace train
