#pragma once

#include <span>
#include <type_traits>
#include <string>
#include <vector>

#include "spruce/core/tensor_ref.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/criterion/l1.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/granularity/n_m.hpp"
#include "spruce/granularity/group_layout.hpp"
#include "spruce/prune/group_scores.hpp"
#include "spruce/prune/magnitude.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/selection/rule.hpp"

namespace spruce {

/// Composes the three per-tensor policies at compile time: the granularity says what is
/// pruned together, the criterion how each group scores, the selection rule which scores
/// are cut (with an N:M granularity the pattern fixes the sparsity and the rule is not
/// consulted; the N highest element scores of each group of M are kept). `pruner<granularity::filter, criterion::l2, selection::exact>{{}, {}, exact(0.5)}`
/// is torch's ln_structured(n=2, dim=0, amount=0.5); any user policy that models the
/// concepts drops in. Runtime knobs live in the three members.
/// What pruner<G, C, S> accepts as a granularity: a group granularity (groups scored and
/// selected together) or an N:M pattern (N of every M consecutive weights kept).
template <class G>
concept pruner_granularity = granularity::group_granularity<G> || granularity::is_n_m_v<G>;

template <pruner_granularity G, criterion::any_criterion C, selection::rule S>
struct pruner {
  G granularity{};
  C criterion{};
  S selection{};

  /// One score per group of the tensor, in group order (for N:M: one per weight).
  template <select::score_type T>
  std::vector<T> scores(const criterion::inputs<T>& in, const std::string& name = {}) const {
    if constexpr (granularity::is_n_m_v<G>) {
      static_assert(criterion::elementwise_criterion<C>,
                    "N:M keeps single weights inside each group: use an element-wise criterion");
      granularity::element e;
      return group_scores(criterion, in, e.layout(in.weight.shape(), name), name);
    } else {
      return group_scores(criterion, in, granularity.layout(in.weight.shape(), name), name);
    }
  }

  /// The keep mask of one tensor (whole groups kept or pruned). Throws spruce::error,
  /// naming the tensor, for a bad shape or axis, a missing or mis-shaped gradient / Hessian,
  /// a NaN score or a bad rule parameter.
  template <select::score_type T>
  mask compute(const criterion::inputs<T>& in, const std::string& name = {}) const {
    if constexpr (granularity::is_n_m_v<G>) {
      // The pattern fixes the sparsity (1 - N/M): the selection rule is not consulted. The
      // N largest scores of each group are kept (|w| directly for L1).
      if constexpr (std::is_same_v<C, criterion::l1>) {
        return n_m_mask(in.weight, granularity, name);
      } else {
        const std::vector<T> s = scores(in, name);
        return n_m_mask(tensor_ref<const T>(s.data(), in.weight.shape()), granularity, name);
      }
    } else if constexpr (std::is_same_v<G, granularity::element> && std::is_same_v<C, criterion::l1>) {
      // Fine-grained L1 selects on the weights' magnitudes directly: no score buffer.
      return magnitude_mask(in.weight, selection, name);
    } else {
      const granularity::group_layout layout = granularity.layout(in.weight.shape(), name);
      const std::vector<T> s = group_scores(criterion, in, layout, name);
      const byte_buffer keep =
          selection::keep_mask(selection, std::span<const T>(s), spruce::detail::tensor_label(name));
      return mask::adopt(in.weight.shape(), expand_groups(layout, keep));
    }
  }

  template <select::score_type T>
  mask compute(const tensor_ref<const T>& w, const std::string& name = {}) const {
    return compute(criterion::inputs<T>{w}, name);
  }

  template <class T, class E, class L>
  mask compute(const tensor_view<T, E, L, host_space>& w, const std::string& name = {}) const {
    return compute(tensor_ref<const std::remove_const_t<T>>(w), name);
  }

  /// Computes the mask of `w` from its own values and zeroes the pruned groups in place.
  /// For criteria that read gradients, compute with the inputs and then `apply_mask`.
  template <select::score_type T>
  mask prune(const tensor_ref<T>& w, const std::string& name = {}) const {
    mask m = compute(tensor_ref<const T>(w), name);
    detail::apply_keep(w, m.data());
    return m;
  }

  template <class T, class E, class L>
  mask prune(const tensor_view<T, E, L, host_space>& w, const std::string& name = {}) const {
    return prune(tensor_ref<T>(w), name);
  }
};

}  // namespace spruce
