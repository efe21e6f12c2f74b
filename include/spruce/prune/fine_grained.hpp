#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/rounding.hpp"
#include "spruce/prune/magnitude.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/selection/rule.hpp"
#include "spruce/selection/threshold.hpp"

namespace spruce {

/// Per-tensor sparsity, by parameter name (`{"backbone.conv0.weight", 0.6}, ...`).
using sparsity_table = std::map<std::string, double, std::less<>>;

/// The lab's FineGrainedPruner: for every parameter named in `table`, computes its
/// magnitude mask under rule `S` built from the table's sparsity (S{sparsity}), prunes the
/// weights and returns the registry that keeps the masks for re-application after each
/// optimizer step. Parameters absent from the table stay dense and unregistered.
///
/// Everything is validated and every mask computed before the first weight is written:
/// a table name with no parameter (a typo), a duplicate parameter name, a NaN sparsity or
/// a NaN weight throws spruce::error and leaves every tensor untouched.
template <selection::rule S = selection::threshold, select::score_type T>
masked_parameters<T> fine_grained_prune(std::span<const named_tensor<T>> params,
                                        const sparsity_table& table) {
  for (const auto& entry : table) {
    // Not a structured binding: clang 14 cannot capture one in the lambda below.
    const std::string& name = entry.first;
    const double ratio = entry.second;
    const auto hit = std::count_if(params.begin(), params.end(),
                                   [&](const named_tensor<T>& p) { return p.name == name; });
    if (hit == 0)
      throw error("sparsity table names " + detail::tensor_label(name) +
                  ", which is not among the parameters; fix the name or add the parameter");
    if (hit > 1)
      throw error("parameter name '" + name + "' appears " + std::to_string(hit) +
                  " times; give every parameter a unique name");
    clamp_ratio(ratio, "sparsity of " + detail::tensor_label(name));
  }
  masked_parameters<T> reg;
  for (const auto& p : params) {
    const auto it = table.find(p.name);
    if (it == table.end()) continue;
    reg.add(p.name, p.view, magnitude_mask(tensor_ref<const T>(p.view), S{it->second}, p.name));
  }
  reg.apply();
  return reg;
}

template <selection::rule S = selection::threshold, select::score_type T>
masked_parameters<T> fine_grained_prune(const std::vector<named_tensor<T>>& params,
                                        const sparsity_table& table) {
  return fine_grained_prune<S>(std::span<const named_tensor<T>>(params), table);
}

}  // namespace spruce
