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
#include "spruce/prune/pruner.hpp"
#include "spruce/prune/scope.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/selection/rule.hpp"
#include "spruce/selection/threshold.hpp"

namespace spruce {

/// The lab's FineGrainedPruner: for every parameter named in `table`, computes its
/// magnitude mask under rule `S` built from the table's sparsity (S{sparsity}), prunes the
/// weights and returns the registry that keeps the masks for re-application after each
/// optimizer step. Parameters absent from the table stay dense and unregistered. This is
/// per_layer_prune with element granularity and L1 importance.
///
/// Everything is validated and every mask computed before the first weight is written:
/// a table name with no parameter (a typo), a duplicate parameter name, a NaN sparsity or
/// a NaN weight throws spruce::error and leaves every tensor untouched.
template <selection::rule S = selection::threshold, select::score_type T>
masked_parameters<T> fine_grained_prune(std::span<const named_tensor<T>> params,
                                        const sparsity_table& table) {
  return per_layer_prune(pruner<granularity::element, criterion::l1, S>{}, params, table);
}

template <selection::rule S = selection::threshold, select::score_type T>
masked_parameters<T> fine_grained_prune(const std::vector<named_tensor<T>>& params,
                                        const sparsity_table& table) {
  return fine_grained_prune<S>(std::span<const named_tensor<T>>(params), table);
}

}  // namespace spruce
