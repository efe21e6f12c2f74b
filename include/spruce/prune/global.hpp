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
#include "spruce/criterion/l1.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/prune/group_scores.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/prune/pruner.hpp"
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

inline global_part limits_for(std::size_t groups, const sparsity_limits& l) {
  const auto g = static_cast<double>(groups);
  std::size_t hi = static_cast<std::size_t>(std::floor(l.max * g));
  if (l.max < 1.0 && groups > 0) hi = std::min(hi, groups - 1);
  hi = std::min(hi, groups - std::min(groups, l.min_kept));
  const std::size_t lo = std::min(hi, static_cast<std::size_t>(std::ceil(l.min * g)));
  return {groups, lo, hi};
}

}  // namespace detail

/// Global scope: one selection over the group scores of every tensor in `params`, as if
/// the scores were concatenated in order (they never are), with the pruner's granularity,
/// criterion and count rule (threshold or exact; `exact` breaks ties by tensor order, then
/// index). Fine-grained L1 reads the weights directly. With `limits`, tensors whose share
/// falls outside their bounds are fixed at the bound (exactly, ties by index) and the rest
/// of the budget is re-selected among the others, until every tensor is within bounds. Returns one mask per
/// tensor, in order; nothing is written. Throws spruce::error for duplicate names, bad
/// limits, NaN scores (naming the tensor) or a bad rule parameter.
template <granularity::group_granularity G, criterion::any_criterion C, selection::count_rule S,
          select::score_type T>
std::vector<mask> global_masks(const pruner<G, C, S>& p, std::span<const named_tensor<T>> params,
                               const sparsity_limits& limits = {}) {
  if (!(limits.min >= 0.0 && limits.min <= limits.max && limits.max <= 1.0))
    throw error("sparsity limits [" + std::to_string(limits.min) + ", " + std::to_string(limits.max) +
                "] are not an interval inside [0, 1]; pass 0 <= min <= max <= 1");
  std::vector<std::string> names;
  for (const auto& t : params) {
    if (std::count(names.begin(), names.end(), t.name))
      throw error("parameter name '" + t.name + "' appears twice; give every parameter a unique name");
    names.push_back(t.name);
  }
  constexpr bool fused = std::is_same_v<G, granularity::element> && std::is_same_v<C, criterion::l1>;
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
        detail::gather(w, owned[i].data());
        parts[i] = owned[i];
      }
    } else {
      owned[i] = group_scores(p.criterion, criterion::inputs<T>{t.view}, layouts[i], t.name);
      parts[i] = owned[i];
    }
  }
  std::size_t total = 0;
  std::vector<detail::global_part> bound(nt);
  for (std::size_t i = 0; i < nt; ++i) {
    bound[i] = detail::limits_for(parts[i].size(), limits);
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

/// Global scope, applied: computes the global masks, zeroes the pruned groups of every
/// tensor and returns the registry that re-applies them after each optimizer step. On
/// error nothing is written.
template <granularity::group_granularity G, criterion::any_criterion C, selection::count_rule S,
          select::score_type T>
masked_parameters<T> global_prune(const pruner<G, C, S>& p, std::span<const named_tensor<T>> params,
                                  const sparsity_limits& limits = {}) {
  std::vector<mask> masks = global_masks(p, params, limits);
  masked_parameters<T> reg;
  for (std::size_t i = 0; i < params.size(); ++i) reg.add(params[i].name, params[i].view, std::move(masks[i]));
  reg.apply();
  return reg;
}

}  // namespace spruce
