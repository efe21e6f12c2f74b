#pragma once

#include <concepts>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/granularity/group_layout.hpp"
#include "spruce/granularity/n_m.hpp"
#include "spruce/prune/group_scores.hpp"
#include "spruce/prune/magnitude.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/prune/n_m.hpp"
#include "spruce/selection/none.hpp"
#include "spruce/selection/rule.hpp"

namespace spruce {

/// What pruner<G, C, S> accepts as a granularity: a group granularity (groups scored and
/// selected together) or an N:M pattern (N of every M consecutive weights kept), given at
/// compile time (n_m<N, M>) or at run time (n_m_pattern).
template <class G>
concept pruner_granularity = granularity::group_granularity<G> || granularity::n_m_granularity<G>;

/// What pruner<G, C, S> accepts as a selection: a rule, or selection::none for a pruner
/// that only scores (or whose N:M granularity fixes the sparsity itself).
template <class S>
concept pruner_selection = selection::rule<S> || selection::is_none_v<S>;

/// The scores of one tensor under granularity `g` and criterion `c`, with no selection rule
/// involved: one score per group, in group order (for an N:M granularity one per weight,
/// the element scores the pattern ranks). `in` carries the weight and whatever else the
/// criterion reads (gradient, Hessian, BN scales, its own `extra`), passed through
/// untouched. Throws spruce::error naming `name` for a bad shape, missing inputs, or a
/// run-time N:M pattern that does not form.
template <pruner_granularity G, criterion::any_criterion C, select::score_type T, class Extra>
std::vector<T> scores(const G& g, const C& c, const criterion::inputs<T, Extra>& in,
                      const std::string& name = {}) {
  if constexpr (granularity::n_m_granularity<G>) {
    static_assert(criterion::elementwise_criterion<C>,
                  "N:M keeps single weights inside each group: use an element-wise criterion");
    g.validate(name);
    return group_scores(c, in, granularity::element{}.layout(in.weight.shape(), name), name);
  } else {
    return group_scores(c, in, g.layout(in.weight.shape(), name), name);
  }
}

/// scores() of a weight alone (for criteria that read nothing else): any host view.
template <pruner_granularity G, criterion::any_criterion C, host_view V>
  requires select::score_type<view_value_t<V>>
std::vector<view_value_t<V>> scores(const G& g, const C& c, const V& w, const std::string& name = {}) {
  return scores(g, c, criterion::inputs<view_value_t<V>, criterion::extra_t<C>>{to_const_ref(w)}, name);
}

/// The backend that runs pruner<G, C, S>::compute / prune for views in memory space
/// `Space` other than the host (the host path is pruner's own body). The CUDA layer
/// specialises it for cuda_space; the primary template only says which header is missing.
template <class Space>
struct pruner_backend {
  static_assert(sizeof(Space) == 0,
                "spruce::pruner::compute / prune: no backend for this memory space. For cuda_space views "
                "include <spruce/cuda.hpp> from a file compiled by nvcc, or copy the tensor to host memory.");
};

/// Composes the three per-tensor policies at compile time: the granularity says what is
/// pruned together, the criterion how each group scores, the selection rule which scores
/// are cut. `pruner<granularity::filter, criterion::l2, selection::exact>{{}, {}, exact(0.5)}`
/// is torch's ln_structured(n=2, dim=0, amount=0.5); any user policy that models the
/// concepts drops in. Runtime knobs live in the three members. The selection defaults to
/// selection::none: `pruner<G, C>` gives `scores` only, except with an N:M granularity,
/// where the pattern fixes the sparsity (1 - N/M) and the rule, whatever it is, is not
/// consulted (the N highest element scores of each group of M are kept).
///
/// Fast paths are chosen by traits a user policy can declare, never by type: a criterion
/// with `orders_like_magnitude` (criterion::orders_like_magnitude_v) under a granularity
/// with `one_weight_per_group` selects on |w| directly, and under an N:M granularity ranks
/// |w| directly, with no score buffer.
template <pruner_granularity G, criterion::any_criterion C, pruner_selection S = selection::none>
struct pruner {
  G granularity{};
  C criterion{};
  S selection{};

  /// One score per group of the tensor, in group order (for N:M: one per weight). See
  /// spruce::scores; needs no selection rule.
  template <select::score_type T, class Extra>
  std::vector<T> scores(const criterion::inputs<T, Extra>& in, const std::string& name = {}) const {
    return spruce::scores(granularity, criterion, in, name);
  }

  /// scores() of a weight alone: any host view.
  template <host_view V>
    requires select::score_type<view_value_t<V>>
  std::vector<view_value_t<V>> scores(const V& w, const std::string& name = {}) const {
    return spruce::scores(granularity, criterion, w, name);
  }

  /// The keep mask of one tensor (whole groups kept or pruned). Throws spruce::error,
  /// naming the tensor, for a bad shape or axis, a missing or mis-shaped gradient / Hessian,
  /// a NaN score, a bad rule parameter or a run-time N:M pattern that does not form.
  template <select::score_type T, class Extra>
    requires granularity::n_m_granularity<G> || selection::rule<S>
  mask compute(const criterion::inputs<T, Extra>& in, const std::string& name = {}) const {
    if constexpr (granularity::n_m_granularity<G>) {
      if constexpr (criterion::orders_like_magnitude_v<C>) {
        return n_m_mask(in.weight, granularity, name);
      } else {
        const std::vector<T> s = scores(in, name);
        return n_m_mask(tensor_ref<const T>(s.data(), in.weight.shape()), granularity, name);
      }
    } else if constexpr (granularity::one_weight_per_group_v<G> && criterion::orders_like_magnitude_v<C>) {
      // Selects on the weights' magnitudes directly: no score buffer.
      return magnitude_mask(in.weight, selection, name);
    } else {
      const granularity::group_layout layout = granularity.layout(in.weight.shape(), name);
      const std::vector<T> s = group_scores(criterion, in, layout, name);
      const byte_buffer keep =
          selection::keep_mask(selection, std::span<const T>(s), spruce::detail::tensor_label(name));
      return mask::adopt(in.weight.shape(), expand_groups(layout, keep));
    }
  }

  /// compute() of a weight alone: any view (a cuda_space view, with <spruce/cuda.hpp>,
  /// gets a cuda::device_mask with the same bytes).
  template <any_view V>
    requires select::score_type<view_value_t<V>> && (granularity::n_m_granularity<G> || selection::rule<S>)
  auto compute(const V& w, const std::string& name = {}) const {
    if constexpr (std::same_as<view_space_t<V>, host_space>)
      return compute(criterion::inputs<view_value_t<V>, criterion::extra_t<C>>{to_const_ref(w)}, name);
    else
      return pruner_backend<view_space_t<V>>::compute(*this, to_const_ref(w), name);
  }

  /// Computes the mask of `w` from its own values and zeroes the pruned groups in place.
  /// For criteria that read gradients, compute with the inputs and then `apply_mask`.
  template <any_view V>
    requires mutable_view<V> && select::score_type<view_value_t<V>> &&
             (granularity::n_m_granularity<G> || selection::rule<S>)
  auto prune(const V& w, const std::string& name = {}) const {
    const auto rw = to_ref(w);
    if constexpr (std::same_as<view_space_t<V>, host_space>) {
      mask m = compute(rw, name);
      detail::apply_keep(rw, m.data());
      return m;
    } else {
      return pruner_backend<view_space_t<V>>::prune(*this, rw, name);
    }
  }
};

}  // namespace spruce
