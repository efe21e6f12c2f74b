#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/granularity/group_layout.hpp"
#include "spruce/granularity/n_m.hpp"
#include "spruce/prune/group_scores.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/prune/tensor_range.hpp"
#include "spruce/selection/rule.hpp"

namespace spruce {

/// Per-tensor bounds on the groups pruned under global scope. A global cut can empty a
/// layer whose weights are all small (the Network Slimming failure); `max` below 1 always
/// leaves at least one group, `min_kept` keeps at least that many groups of every tensor
/// (all of a smaller one), and `min` forces every layer to give up at least that fraction.
/// Defaults: no bounds.
struct sparsity_limits {
  double min = 0.0;
  double max = 1.0;
  std::size_t min_kept = 0;

  bool bounded() const noexcept { return min > 0.0 || max < 1.0 || min_kept > 0; }
};

namespace detail {

struct global_part {
  std::size_t groups;
  std::size_t lo, hi;  // allowed pruned-group counts
};

inline void check_limits(const sparsity_limits& limits) {
  if (!(limits.min >= 0.0 && limits.min <= limits.max && limits.max <= 1.0))
    throw error("sparsity limits [" + std::to_string(limits.min) + ", " + std::to_string(limits.max) +
                "] are not an interval inside [0, 1]; pass 0 <= min <= max <= 1");
}

template <class T>
std::vector<std::string> unique_names(std::span<const named_tensor<T>> params) {
  std::vector<std::string> names;
  for (const auto& t : params) {
    if (std::count(names.begin(), names.end(), t.name))
      throw error("parameter name '" + t.name + "' appears twice; give every parameter a unique name");
    names.push_back(t.name);
  }
  return names;
}

inline global_part limits_for(std::size_t groups, const sparsity_limits& l) {
  const auto g = static_cast<double>(groups);
  std::size_t hi = static_cast<std::size_t>(std::floor(l.max * g));
  if (l.max < 1.0 && groups > 0) hi = std::min(hi, groups - 1);
  hi = std::min(hi, groups - std::min(groups, l.min_kept));
  const std::size_t lo = std::min(hi, static_cast<std::size_t>(std::ceil(l.min * g)));
  return {groups, lo, hi};
}

template <granularity::group_granularity G, criterion::any_criterion C, selection::count_rule S,
          select::score_type T>
std::vector<mask> global_masks_of(const pruner<G, C, S>& p, std::span<const named_tensor<T>> params,
                                  const sparsity_limits& limits) {
  check_limits(limits);
  const std::vector<std::string> names = unique_names(params);
  constexpr bool fused = granularity::one_weight_per_group_v<G> && criterion::orders_like_magnitude_v<C>;
  const std::size_t nt = params.size();
  // Scores per tensor: the weights themselves (fused L1) or each tensor's group scores.
  std::vector<std::vector<T>> owned(nt);
  std::vector<std::span<const T>> parts(nt);
  std::vector<granularity::group_layout> layouts(nt);
  for (std::size_t i = 0; i < nt; ++i) {
    const auto& t = params[i];
    layouts[i] = p.granularity.layout(t.view.shape(), t.name);
    if constexpr (fused) {
      const tensor_ref<const T> w = t.view;
      if (w.is_contiguous()) {
        parts[i] = {w.data(), w.size()};
      } else {
        owned[i].resize(w.size());
        gather(w, owned[i].data());
        parts[i] = owned[i];
      }
    } else {
      owned[i] = group_scores(p.criterion, criterion::inputs<T>{t.view}, layouts[i], t.name);
      parts[i] = owned[i];
    }
  }
  std::size_t total = 0;
  std::vector<global_part> bound(nt);
  for (std::size_t i = 0; i < nt; ++i) {
    bound[i] = limits_for(parts[i].size(), limits);
    total += parts[i].size();
  }
  std::size_t budget = p.selection.count(total, "the global selection");

  auto select = [&](std::span<const std::span<const T>> ps, std::size_t count, std::span<const std::string> ns,
                    select::tie_break ties) {
    if constexpr (fused)
      return select::lowest_masks<select::by_magnitude>(ps, count, ties, ns);
    else
      return select::lowest_masks<select::by_value>(ps, count, ties, ns);
  };

  std::vector<byte_buffer> keep(nt);
  std::vector<char> fixed(nt, 0);
  for (std::size_t round = 0; round <= nt; ++round) {
    std::vector<std::size_t> free;
    std::vector<std::span<const T>> fp;
    std::vector<std::string> fn;
    std::size_t free_total = 0;
    for (std::size_t i = 0; i < nt; ++i)
      if (!fixed[i]) free.push_back(i), fp.push_back(parts[i]), fn.push_back(names[i]), free_total += parts[i].size();
    if (free.empty()) break;
    auto masks = select(fp, std::min(budget, free_total), fn, S::ties);
    const bool bounded = limits.bounded();
    bool violated = false;
    for (std::size_t j = 0; j < free.size(); ++j) {
      const std::size_t i = free[j];
      const std::size_t pruned =
          bounded ? static_cast<std::size_t>(std::count(masks[j].begin(), masks[j].end(), 0)) : 0;
      if (bounded && (pruned < bound[i].lo || pruned > bound[i].hi)) {
        const std::size_t at = pruned < bound[i].lo ? bound[i].lo : bound[i].hi;
        const std::span<const T> one = parts[i];
        // Exactly `at`, ties by index: a bound must hold even where the rule's ties would
        // cut more.
        keep[i] = std::move(select(std::span<const std::span<const T>>(&one, 1), at,
                                   std::span<const std::string>(&names[i], 1), select::tie_break::lower_index)
                                .front());
        fixed[i] = 1;
        budget -= std::min(budget, at);
        violated = true;
      } else {
        keep[i] = std::move(masks[j]);
      }
    }
    if (!violated) break;
  }
  std::vector<mask> out;
  out.reserve(nt);
  for (std::size_t i = 0; i < nt; ++i) {
    if constexpr (fused)
      out.push_back(mask::adopt(params[i].view.shape(), std::move(keep[i])));
    else
      out.push_back(mask::adopt(params[i].view.shape(), expand_groups(layouts[i], keep[i])));
  }
  return out;
}


/// Global scope under an N:M granularity: the pattern is local to each group of M weights,
/// so "one selection over every tensor" leaves each tensor its own N:M mask.
template <granularity::n_m_granularity G, criterion::any_criterion C, class S, select::score_type T>
std::vector<mask> global_n_m_masks(const pruner<G, C, S>& p, std::span<const named_tensor<T>> params,
                                   const sparsity_limits& limits) {
  check_limits(limits);
  unique_names(params);
  if (limits.bounded())
    throw error("sparsity_limits bound each tensor's share of one global cut, but the pruner's " +
                n_m_string(p.granularity.pattern().n, p.granularity.pattern().m) +
                " pattern makes no global cut: it keeps N of every M weights in each group, which "
                "fixes every tensor's sparsity at 1 - N/M; drop the limits (pass {}), or use a "
                "group granularity for a bounded global selection");
  std::vector<mask> out;
  out.reserve(params.size());
  for (const auto& t : params) out.push_back(p.compute(tensor_ref<const T>(t.view), t.name));
  return out;
}

}  // namespace detail

/// Global scope: one selection over the group scores of every tensor in `params`, as if
/// the scores were concatenated in order (they never are), with the pruner's granularity,
/// criterion and count rule (threshold or exact; `exact` breaks ties by tensor order, then
/// index). Element granularity with a criterion that orders like |w| (L1, or a user criterion
/// declaring `orders_like_magnitude`) reads the weights directly. With `limits`, tensors whose share
/// falls outside their bounds are fixed at the bound (exactly, ties by index) and the rest
/// of the budget is re-selected among the others, until every tensor is within bounds. Returns one mask per
/// tensor, in order; nothing is written. Throws spruce::error for duplicate names, bad
/// limits, NaN scores (naming the tensor) or a bad rule parameter. `params` is any contiguous
/// range of named tensors (a std::vector, std::array or std::span).
///
/// With an N:M granularity the pattern is local (N of every M consecutive weights), so
/// global scope gives each tensor its own N:M mask, exactly what the pruner computes for
/// it alone; the selection rule is not consulted, and bounded `limits` are an error (a
/// pattern fixes every tensor's sparsity at 1 - N/M, so there is no cut to bound).
template <pruner_granularity G, criterion::any_criterion C, class S, named_tensor_range R>
  requires select::score_type<named_tensor_value_t<R>> &&
           (granularity::n_m_granularity<G> || selection::count_rule<S>)
std::vector<mask> global_masks(const pruner<G, C, S>& p, const R& params, const sparsity_limits& limits = {}) {
  if constexpr (granularity::n_m_granularity<G>)
    return detail::global_n_m_masks(p, detail::as_tensor_span(params), limits);
  else
    return detail::global_masks_of(p, detail::as_tensor_span(params), limits);
}

/// Global scope, applied: computes the global masks, zeroes the pruned groups of every
/// tensor and returns the registry that re-applies them after each optimizer step. On
/// error nothing is written.
template <pruner_granularity G, criterion::any_criterion C, class S, named_tensor_range R>
  requires select::score_type<named_tensor_value_t<R>> &&
           (granularity::n_m_granularity<G> || selection::count_rule<S>)
masked_parameters<named_tensor_value_t<R>> global_prune(const pruner<G, C, S>& p, const R& params,
                                                       const sparsity_limits& limits = {}) {
  const auto ps = detail::as_tensor_span(params);
  std::vector<mask> masks = global_masks(p, ps, limits);
  masked_parameters<named_tensor_value_t<R>> reg;
  for (std::size_t i = 0; i < ps.size(); ++i) reg.add(ps[i].name, ps[i].view, std::move(masks[i]));
  reg.apply();
  return reg;
}

}  // namespace spruce
