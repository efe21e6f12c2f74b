#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/criterion/l1.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/prune/global.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/prune/tensor_range.hpp"
#include "spruce/select/kth.hpp"
#include "spruce/selection/slimming.hpp"

namespace spruce::structural {

/// What slimming_masks decided: one keep mask per BN layer (1 = keep), in the order given,
/// and the reference threshold — the |gamma| at index floor(total * percent) of all scales
/// sorted, the `thre` that the Network Slimming code prints and that a user needs to report
/// or to reuse on a later pass. Without `min_keep` a channel is kept exactly when its
/// |gamma| > threshold; with it, layers held at their minimum can keep channels at or below
/// it. An empty set has threshold 0. It reads as the mask list it holds (size, indexing,
/// iteration, conversion to std::vector<mask>), so code written against the former
/// `std::vector<mask>` result compiles unchanged; `auto [masks, threshold] = ...` unpacks it.
template <class T>
struct slimming_result {
  std::vector<mask> masks;
  T threshold{};

  std::size_t size() const noexcept { return masks.size(); }
  bool empty() const noexcept { return masks.empty(); }
  mask& operator[](std::size_t i) noexcept { return masks[i]; }
  const mask& operator[](std::size_t i) const noexcept { return masks[i]; }
  auto begin() noexcept { return masks.begin(); }
  auto end() noexcept { return masks.end(); }
  auto begin() const noexcept { return masks.begin(); }
  auto end() const noexcept { return masks.end(); }
  operator const std::vector<mask>&() const& noexcept { return masks; }  // NOLINT: implicit by design
  operator std::vector<mask>() && noexcept { return std::move(masks); }   // NOLINT: implicit by design

  friend bool operator==(const slimming_result&, const slimming_result&) = default;
};

/// Network slimming's channel selection over several BN layers at once: every |gamma| of
/// every layer goes into one selection (the reference rule: threshold = sorted |gamma| at
/// floor(total * percent), keep |gamma| > threshold). The reference can empty a layer at
/// high percent; with `min_keep` > 0 the safe rule applies when it would: layers that fall
/// below min_keep keep exactly their min_keep largest |gamma|, and the rest of the
/// reference count is re-selected among the other layers (global scope with
/// `sparsity_limits::min_kept`). `gammas` is any contiguous range of named 1-D tensors
/// (a std::vector, std::array or std::span of named_tensor). Returns the masks and the
/// threshold (slimming_result). Throws spruce::error, naming the layer, for a scale that is
/// not 1-D, a layer smaller than min_keep, a NaN scale or percent outside [0, 1).
template <named_tensor_range R>
slimming_result<named_tensor_value_t<R>> slimming_masks(const R& gammas, double percent, std::size_t min_keep = 0);

/// slimming_masks with every per-layer limit of global scope: besides `min_kept` (a channel
/// count), `limits.max` caps each layer's pruned fraction (max = 0.75 keeps at least a
/// quarter of every layer, the per-layer minimum as a fraction, which keeps a global
/// threshold from hollowing out the late layers of a network whose scales were not trained
/// sparse) and `limits.min` forces one. The reference count of channels is removed (as far
/// as the limits allow), re-selected by |gamma| among the layers not at a limit, ties by
/// global scope's rule; `threshold` is still the reference's. Throws as the count form does, and for limits that are not an interval in
/// [0, 1] or that no selection of the reference count satisfies.
template <named_tensor_range R>
slimming_result<named_tensor_value_t<R>> slimming_masks(const R& gammas, double percent,
                                                        const sparsity_limits& limits) {
  using T = named_tensor_value_t<R>;
  const auto set = spruce::detail::as_tensor_span(gammas);
  std::size_t total = 0;
  for (const auto& g : set) {
    if (g.view.rank() != 1)
      throw error("slimming: BN scale '" + g.name + "' has shape " + shape_string(g.view.shape()) +
                  "; pass the 1-D gamma of each BatchNorm");
    if (g.view.size() < limits.min_kept)
      throw error("slimming: layer '" + g.name + "' has " + std::to_string(g.view.size()) +
                  " channels, fewer than min_keep = " + std::to_string(limits.min_kept) + "; lower min_keep");
    total += g.view.size();
  }
  slimming_result<T> out;
  // Validates percent and every scale (NaN names the layer) before the threshold is read.
  out.masks = global_masks(pruner<granularity::element, criterion::l1, selection::slimming>{{}, {}, {percent}}, set,
                           limits);
  const std::size_t count = selection::slimming{percent}.count(total);
  if (count == 0) return out;
  std::vector<std::vector<T>> owned(set.size());
  std::vector<std::span<const T>> parts(set.size());
  std::vector<std::string> names(set.size());
  for (std::size_t i = 0; i < set.size(); ++i) {
    const tensor_ref<const T> v = set[i].view;
    names[i] = set[i].name;
    if (v.is_contiguous()) {
      parts[i] = {v.data(), v.size()};
    } else {
      owned[i].resize(v.size());
      spruce::detail::gather(v, owned[i].data());
      parts[i] = owned[i];
    }
  }
  out.threshold = select::kth_smallest<select::by_magnitude>(std::span<const std::span<const T>>(parts), count,
                                                             std::span<const std::string>(names))
                      .value;
  return out;
}

template <named_tensor_range R>
slimming_result<named_tensor_value_t<R>> slimming_masks(const R& gammas, double percent, std::size_t min_keep) {
  sparsity_limits limits;
  limits.min_kept = min_keep;
  return slimming_masks(gammas, percent, limits);
}

/// Sparsity training for network slimming: adds the L1 subgradient lambda * sign(gamma)
/// to the gradient of every BN scale, so that unimportant channels are driven to zero.
/// sign(0) = 0. Both arguments are any host views (tensor_view or tensor_ref, any layout)
/// of one element type. Throws spruce::error (writing nothing) when the shapes differ.
template <host_view G, host_view W>
  requires mutable_view<G> && std::same_as<view_value_t<G>, view_value_t<W>>
void add_l1_subgradient(const G& gamma_grad, const W& gamma, view_value_t<G> lambda, const std::string& name = {}) {
  using T = view_value_t<G>;
  const tensor_ref<T> grad = to_ref(gamma_grad);
  const tensor_ref<const T> g0 = to_const_ref(gamma);
  if (!grad.same_shape(g0))
    throw error("add_l1_subgradient: gradient of shape " + shape_string(grad.shape()) + " for " +
                spruce::detail::tensor_label(name) + " of shape " + shape_string(g0.shape()) +
                "; pass the gradient of this BN scale");
  std::vector<T> g(g0.size());
  spruce::detail::gather(g0, g.data());
  for (std::size_t i = 0; i < g.size(); ++i) {
    T& d = grad.data()[grad.offset_of(i)];
    d += lambda * static_cast<T>((g[i] > T(0)) - (g[i] < T(0)));
  }
}

}  // namespace spruce::structural
