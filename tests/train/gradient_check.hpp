#pragma once
// The whole-network finite-difference check the model tests share: one cross-entropy
// backward, then central differences (h = 1e-6) on a spread of every parameter tensor's
// elements, compared per tensor and over the model. Header-only, for doctest TUs.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "train/layers.hpp"

namespace test_support {

/// d(loss)/dx by the central difference (loss(x + h) - loss(x - h)) / 2h, with `x` put back:
/// the one numeric derivative of the layer and whole-network gradient checks.
template <class Loss>
double central_difference(double& x, const Loss& loss, double h = 1e-6) {
  const double keep = x;
  x = keep + h;
  const double up = loss();
  x = keep - h;
  const double down = loss();
  x = keep;
  return (up - down) / (2 * h);
}

/// Checks `model`'s gradients of softmax cross-entropy on `images` (n x c x h x w, NCHW)
/// and `labels` against central differences: about `samples` elements of each parameter
/// tensor (every element of a smaller one), each tensor within 1e-5 relative and the whole
/// model within 1e-6. With `every_tensor_reaches_loss`, a tensor whose numeric and analytic
/// gradients are both zero fails (a layer cut off from the loss).
template <class Model>
void check_gradients_by_central_differences(Model& model, const std::vector<double>& images, std::size_t n,
                                            std::size_t h, std::size_t w, std::span<const std::int32_t> labels,
                                            std::size_t samples, bool every_tensor_reaches_loss) {
  train::softmax_cross_entropy<double> ce;
  ce.forward(model.forward(images, n, h, w), labels);
  train::tensor<double> dlogits;
  ce.backward(dlogits);
  model.backward(dlogits);
  const auto loss = [&] {
    // A training-mode forward moves the running statistics, but they do not enter the loss.
    train::softmax_cross_entropy<double> probe;
    return probe.forward(model.forward(images, n, h, w), labels);
  };
  auto params = model.parameters();
  auto grads = model.gradients();
  double diff = 0, norm = 0;
  const double step = 1e-6;
  for (std::size_t t = 0; t < params.size(); ++t) {
    double* p = params[t].view.data();
    const double* g = grads[t].view.data();
    double tdiff = 0, tnorm = 0;
    const std::size_t stride = std::max<std::size_t>(1, params[t].view.size() / samples);
    for (std::size_t i = 0; i < params[t].view.size(); i += stride) {
      const double numeric = central_difference(p[i], loss, step);
      tdiff += (numeric - g[i]) * (numeric - g[i]);
      tnorm += numeric * numeric + g[i] * g[i];
    }
    CAPTURE(params[t].name);
    if (every_tensor_reaches_loss) CHECK(tnorm > 0);
    CHECK(std::sqrt(tdiff) <= 1e-5 * std::sqrt(tnorm) + 1e-10);
    diff += tdiff;
    norm += tnorm;
  }
  CHECK(std::sqrt(diff / norm) < 1e-6);
}

}  // namespace test_support
