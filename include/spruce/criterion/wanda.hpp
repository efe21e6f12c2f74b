#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/granularity/group_layout.hpp"

namespace spruce::criterion {

/// Wanda's extension of the criterion inputs: the L2 norm, over the calibration tokens (or
/// positions), of each input channel's activations, one value per input channel of the
/// weight (`weight.shape()[1]`). `activation_norm_accumulator::extra()` builds one; a
/// caller with norms of its own points `norms` at them (they are viewed, not copied).
template <class T = float>
struct activation_norms {
  std::span<const T> norms{};
};

/// Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
/// Models"): score_ij = |w_ij| * ||X_j||_2, the weight's magnitude times the L2 norm of the
/// activations that flow into it, so a small weight on a loud input channel outranks a
/// larger one on a quiet channel. Channel j is the weight's axis 1: the `in` of a linear
/// weight [out, in] and of a conv weight [out, in, kh, kw] (every kernel position of input
/// channel j shares ||X_j||). Each group scores the sum of its elements' scores (with
/// element granularity, the per-weight score itself). The paper compares weights within
/// each output row: pair it with `per_row_mask` (prune/row_scope.hpp); with a layer-wide
/// or global rule it is plain activation-weighted magnitude pruning.
///
/// Reads `inputs<T, activation_norms<T>>::extra` (the default `extra_type` is for float
/// weights; double weights pass `activation_norms<double>`). Throws spruce::error naming
/// the tensor when the weight has rank < 2, when the number of norms is not the weight's
/// input-channel count, or when a norm is negative or NaN.
struct wanda {
  using extra_type = activation_norms<float>;

  template <class T, class U>
  void group_scores(const inputs<T, activation_norms<U>>& in, const granularity::group_layout& l,
                    std::span<T> out, const std::string& name) const {
    const tensor_ref<const T>& w = in.weight;
    const std::span<const U> norms = in.extra.norms;
    if (w.rank() < 2)
      throw error("wanda for " + spruce::detail::tensor_label(name) + ": the weight has shape " +
                  shape_string(w.shape()) + ", but Wanda needs [out, in, ...] (rank >= 2) to "
                  "know each weight's input channel");
    const std::size_t channels = w.shape()[1];
    if (norms.size() != channels)
      throw error("wanda for " + spruce::detail::tensor_label(name) + " of shape " +
                  shape_string(w.shape()) + ": " + std::to_string(norms.size()) +
                  " activation norms for " + std::to_string(channels) +
                  " input channels; pass one norm per input channel (axis 1), e.g. "
                  "activation_norm_accumulator::extra() fed with this layer's inputs");
    for (std::size_t j = 0; j < norms.size(); ++j)
      if (!(norms[j] >= U(0)))
        throw error("wanda for " + spruce::detail::tensor_label(name) + ": the activation norm of "
                    "input channel " + std::to_string(j) + " is " +
                    spruce::detail::shortest_decimal(static_cast<double>(norms[j])) +
                    "; norms are >= 0 (check the calibration activations for NaN)");

    std::vector<T> scratch;
    const T* p = w.data();
    if (!w.is_contiguous()) {
      scratch.resize(w.size());
      spruce::detail::gather(w, scratch.data());
      p = scratch.data();
    }
    // Row-major [out, in, inner...]: element f belongs to input channel (f / inner) % in.
    const std::size_t inner = w.size() / (w.shape()[0] * channels);
    auto score = [&](std::size_t f) {
      return static_cast<T>(std::abs(p[f]) * static_cast<T>(norms[(f / inner) % channels]));
    };
    const std::size_t n = w.size();
    if (out.size() == n) {  // one weight per group: group index = flat index
      parallel_for(0, n, [&](std::size_t f) { out[f] = score(f); });
      return;
    }
    for (T& s : out) s = T(0);
    for (std::size_t f = 0; f < n; ++f) out[l.group_of(f)] += score(f);
  }
};

/// Accumulates, over the calibration batches a training or evaluation loop feeds it, the
/// sum of squares of each input channel's activations, and returns their L2 norms for
/// `wanda` (the norm over every token or position seen). Activations are the layer's
/// *inputs*: [tokens, in] for a linear layer, [batch, tokens, in] for a linear layer over
/// sequences (channel = last axis), NCHW [batch, in, h, w] for a conv (channel = axis 1).
/// Sums are kept in double so that many small batches lose nothing. Owns its buffers;
/// `norms()` / `extra()` view them until the next `add`.
template <class T = float>
class activation_norm_accumulator {
 public:
  explicit activation_norm_accumulator(std::size_t in_channels)
      : sum_(in_channels, 0.0), norms_(in_channels, T(0)) {}

  std::size_t channels() const noexcept { return sum_.size(); }
  /// Activation rows (tokens / positions) seen per channel so far.
  std::size_t samples() const noexcept { return samples_; }
  std::size_t batches() const noexcept { return batches_; }

  /// Adds one batch of activations (any host view; see the class comment for the
  /// layouts). Throws spruce::error naming `name` for another rank or channel count;
  /// nothing is added then.
  template <host_view V>
  void add(const V& x, const std::string& name = {}) {
    const tensor_ref<const T> a = to_const_ref(x);
    const std::size_t rank = a.rank();
    if (rank < 2 || rank > 4)
      throw error("activation_norm_accumulator for " + spruce::detail::tensor_label(name) +
                  ": activations of shape " + shape_string(a.shape()) + "; pass [tokens, in], "
                  "[batch, tokens, in] or NCHW [batch, in, h, w]");
    const std::size_t axis = rank == 4 ? 1 : rank - 1;
    if (a.shape()[axis] != sum_.size())
      throw error("activation_norm_accumulator for " + spruce::detail::tensor_label(name) +
                  " expects " + std::to_string(sum_.size()) + " input channels but the "
                  "activations of shape " + shape_string(a.shape()) + " have " +
                  std::to_string(a.shape()[axis]) + " on axis " + std::to_string(axis) +
                  "; pass this layer's inputs");
    std::vector<T> scratch;
    const T* p = a.data();
    if (!a.is_contiguous()) {
      scratch.resize(a.size());
      spruce::detail::gather(a, scratch.data());
      p = scratch.data();
    }
    const std::size_t c = sum_.size(), n = a.size();
    if (axis == rank - 1) {  // channels last
      for (std::size_t f = 0; f < n; ++f) sum_[f % c] += static_cast<double>(p[f]) * p[f];
    } else {  // NCHW: planes of h * w per (batch, channel)
      const std::size_t plane = a.shape()[2] * a.shape()[3];
      for (std::size_t b = 0; b * c * plane < n; ++b)
        for (std::size_t j = 0; j < c; ++j) {
          const T* q = p + (b * c + j) * plane;
          double s = 0.0;
          for (std::size_t i = 0; i < plane; ++i) s += static_cast<double>(q[i]) * q[i];
          sum_[j] += s;
        }
    }
    samples_ += c ? n / c : 0;
    ++batches_;
    stale_ = true;
  }

  /// ||X_j||_2 per input channel (zeros before the first batch).
  std::span<const T> norms() const {
    if (stale_) {
      for (std::size_t j = 0; j < sum_.size(); ++j) norms_[j] = static_cast<T>(std::sqrt(sum_[j]));
      stale_ = false;
    }
    return norms_;
  }

  /// The norms as the extension `wanda` reads: `inputs<T, activation_norms<T>>{w, ...,
  /// acc.extra()}` or, with designated initialisers, `{.weight = w, .extra = acc.extra()}`.
  activation_norms<T> extra() const { return {norms()}; }

 private:
  std::vector<double> sum_;
  mutable std::vector<T> norms_;
  mutable bool stale_ = false;
  std::size_t samples_ = 0, batches_ = 0;
};

}  // namespace spruce::criterion
