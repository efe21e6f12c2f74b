#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/criterion/l1.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/prune/global.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/selection/slimming.hpp"

namespace spruce::structural {

/// Network slimming's channel selection over several BN layers at once: every |gamma| of
/// every layer goes into one selection (the reference rule: threshold = sorted |gamma| at
/// floor(total * percent), keep |gamma| > threshold). The reference can empty a layer at
/// high percent; with `min_keep` > 0 the safe rule applies when it would: layers that fall
/// below min_keep keep exactly their min_keep largest |gamma|, and the rest of the
/// reference count is re-selected among the other layers (global scope with
/// `sparsity_limits::min_kept`). Returns one keep mask per layer (1 = keep), in order.
template <class T>
std::vector<mask> slimming_masks(std::span<const named_tensor<T>> gammas, double percent,
                                 std::size_t min_keep = 0) {
  for (const auto& g : gammas) {
    if (g.view.rank() != 1)
      throw error("slimming: BN scale '" + g.name + "' has shape " + shape_string(g.view.shape()) +
                  "; pass the 1-D gamma of each BatchNorm");
    if (g.view.size() < min_keep)
      throw error("slimming: layer '" + g.name + "' has " + std::to_string(g.view.size()) +
                  " channels, fewer than min_keep = " + std::to_string(min_keep) + "; lower min_keep");
  }
  sparsity_limits limits;
  limits.min_kept = min_keep;
  return global_masks(pruner<granularity::element, criterion::l1, selection::slimming>{{}, {}, {percent}}, gammas,
                      limits);
}

/// Sparsity training for network slimming: adds the L1 subgradient lambda * sign(gamma)
/// to the gradient of every BN scale, so that unimportant channels are driven to zero.
/// sign(0) = 0. Throws spruce::error (writing nothing) when the shapes differ.
template <class T>
void add_l1_subgradient(const tensor_ref<T>& gamma_grad, const tensor_ref<const T>& gamma, T lambda,
                        const std::string& name = {}) {
  if (!gamma_grad.same_shape(gamma))
    throw error("add_l1_subgradient: gradient of shape " + shape_string(gamma_grad.shape()) + " for " +
                spruce::detail::tensor_label(name) + " of shape " + shape_string(gamma.shape()) +
                "; pass the gradient of this BN scale");
  std::vector<T> g(gamma.size());
  spruce::detail::gather(gamma, g.data());
  for (std::size_t i = 0; i < g.size(); ++i) {
    T& d = gamma_grad.data()[gamma_grad.offset_of(i)];
    d += lambda * static_cast<T>((g[i] > T(0)) - (g[i] < T(0)));
  }
}

}  // namespace spruce::structural
