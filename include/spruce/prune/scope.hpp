#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/rounding.hpp"
#include "spruce/prune/global.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/schedule/schedule.hpp"

namespace spruce {

/// Per-tensor sparsity, by parameter name (`{"backbone.conv0.weight", 0.6}, ...`).
using sparsity_table = std::map<std::string, double, std::less<>>;

namespace detail {

template <class T>
void check_table(std::span<const named_tensor<T>> params, const sparsity_table& table) {
  for (const auto& entry : table) {
    const std::string& name = entry.first;
    const auto hit = std::count_if(params.begin(), params.end(),
                                   [&](const named_tensor<T>& p) { return p.name == name; });
    if (hit == 0)
      throw error("sparsity table names " + tensor_label(name) +
                  ", which is not among the parameters; fix the name or add the parameter");
    if (hit > 1)
      throw error("parameter name '" + name + "' appears " + std::to_string(hit) +
                  " times; give every parameter a unique name");
    clamp_ratio(entry.second, "sparsity of " + tensor_label(name));
  }
}

}  // namespace detail

/// Per-layer table scope: every parameter named in `table` is pruned alone by `proto`'s
/// granularity and criterion with the selection rule S{its sparsity}; the others stay dense
/// and unregistered. Returns the registry of masks; the weights are not written (call
/// `apply()`, or use `per_layer_prune`). Everything is validated and every mask computed
/// before returning: an unknown or duplicate name, a NaN sparsity or a NaN weight throws.
template <pruner_granularity G, criterion::any_criterion C, selection::rule S, select::score_type T>
masked_parameters<T> per_layer_masks(const pruner<G, C, S>& proto, std::span<const named_tensor<T>> params,
                                     const sparsity_table& table) {
  detail::check_table(params, table);
  masked_parameters<T> reg;
  for (const auto& p : params) {
    const auto it = table.find(p.name);
    if (it == table.end()) continue;
    const pruner<G, C, S> layer{proto.granularity, proto.criterion, S{it->second}};
    reg.add(p.name, p.view, layer.compute(tensor_ref<const T>(p.view), p.name));
  }
  return reg;
}

/// per_layer_masks, applied: the pruned groups are zeroed (only after every mask exists).
template <pruner_granularity G, criterion::any_criterion C, selection::rule S, select::score_type T>
masked_parameters<T> per_layer_prune(const pruner<G, C, S>& proto, std::span<const named_tensor<T>> params,
                                     const sparsity_table& table) {
  masked_parameters<T> reg = per_layer_masks(proto, params, table);
  reg.apply();
  return reg;
}

/// How a schedule's sparsity is spread over a set of tensors.
enum class scope {
  per_tensor,  ///< every tensor pruned alone to the scheduled sparsity
  global,      ///< one selection over all of them (see global_masks)
};

/// One step of a pruning schedule: when `schedule.should_prune(step)`, the masks of every
/// tensor in `params` for sparsity `schedule.sparsity_at(step)` under `where`, with `proto`'s
/// granularity and criterion and the rule S{sparsity}, applied to the weights and returned
/// as a registry (re-apply it after each optimizer step until the next pruning step);
/// otherwise nothing happens and the result is empty.
template <schedule::schedule_policy Sch, granularity::group_granularity G, criterion::any_criterion C,
          selection::count_rule S, select::score_type T>
std::optional<masked_parameters<T>> prune_at_step(const Sch& sched, std::int64_t step,
                                                  const pruner<G, C, S>& proto,
                                                  std::span<const named_tensor<T>> params,
                                                  scope where = scope::per_tensor,
                                                  const sparsity_limits& limits = {}) {
  if (!sched.should_prune(step)) return std::nullopt;
  const double s = sched.sparsity_at(step);
  const pruner<G, C, S> p{proto.granularity, proto.criterion, S{s}};
  if (where == scope::global) return global_prune(p, params, limits);
  sparsity_table table;
  for (const auto& t : params) table.emplace(t.name, s);
  return per_layer_prune(p, params, table);
}

}  // namespace spruce
