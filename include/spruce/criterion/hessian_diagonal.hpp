#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "spruce/core/config.hpp"
#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"

namespace spruce::criterion {

/// Optimal Brain Damage saliency 0.5 * h * w^2 with h the Hessian diagonal, summed over a
/// group. Needs the Hessian diagonal: given exactly, or estimated with
/// `hessian_accumulator` from squared gradients.
struct hessian_diagonal {
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = true;
  template <class T> SPRUCE_HD T element(T w, T, T h) const { return T(0.5) * h * w * w; }
  template <class T> SPRUCE_HD T reduce(T a, T s) const { return a + s; }
  template <class T> SPRUCE_HD T finish(T a) const { return a; }
  template <class T> SPRUCE_HD T identity() const { return T(0); }
};

/// Estimates the Hessian diagonal of one parameter as the mean of squared gradients over
/// the batches seen (the empirical Fisher diagonal), for `hessian_diagonal` when the true
/// diagonal is out of reach. Owns its buffer; `diagonal()` views it.
template <class T>
class hessian_accumulator {
 public:
  explicit hessian_accumulator(std::span<const std::size_t> shape)
      : shape_(shape.begin(), shape.end()), sum_(count(shape), T(0)) {}

  /// Adds one batch's gradient (same shape). Throws spruce::error for another shape.
  void add(const tensor_ref<const T>& grad, const std::string& name = {}) {
    if (!std::ranges::equal(grad.shape(), shape_))
      throw error("hessian_accumulator for " + detail::tensor_label(name) + " expects shape " +
                  shape_string(shape_) + " but the gradient has shape " + shape_string(grad.shape()) +
                  "; pass the gradient of the same parameter");
    std::vector<T> g(sum_.size());
    detail::gather(grad, g.data());
    for (std::size_t i = 0; i < g.size(); ++i) sum_[i] += g[i] * g[i];
    ++batches_;
    mean_.clear();
  }

  std::size_t batches() const noexcept { return batches_; }

  /// The current estimate (zeros before the first batch), in the parameter's shape.
  tensor_ref<const T> diagonal() const {
    mean_.assign(sum_.size(), T(0));
    if (batches_)
      for (std::size_t i = 0; i < sum_.size(); ++i) mean_[i] = sum_[i] / static_cast<T>(batches_);
    return tensor_ref<const T>(mean_.data(), shape_);
  }

 private:
  static std::size_t count(std::span<const std::size_t> s) {
    std::size_t n = 1;
    for (std::size_t e : s) n *= e;
    return n;
  }
  std::vector<std::size_t> shape_;
  std::vector<T> sum_;
  mutable std::vector<T> mean_;
  std::size_t batches_ = 0;
};

}  // namespace spruce::criterion
