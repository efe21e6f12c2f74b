#pragma once

#include "spruce/criterion/l1.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/prune/scope.hpp"
#include "spruce/prune/tensor_range.hpp"
#include "spruce/selection/rule.hpp"
#include "spruce/selection/threshold.hpp"

namespace spruce {

/// The lab's FineGrainedPruner: for every parameter named in `table`, computes its
/// magnitude mask under rule `S` built from the table's amount (S{sparsity}, or a count of
/// weights for the rules that take one; see amount_rule), prunes the weights and returns
/// the registry that keeps the masks for re-application after each optimizer step.
/// Parameters absent from the table stay dense and unregistered. This is per_layer_prune
/// with element granularity and L1 importance; `params` is any contiguous range of named
/// tensors (std::vector, std::array, std::span).
///
/// Everything is validated and every mask computed before the first weight is written:
/// a table name with no parameter (a typo), a duplicate parameter name, a NaN sparsity, a
/// count larger than the tensor or a NaN weight throws spruce::error and leaves every
/// tensor untouched.
template <selection::rule S = selection::threshold, named_tensor_range R>
  requires select::score_type<named_tensor_value_t<R>>
masked_parameters<named_tensor_value_t<R>> fine_grained_prune(const R& params, const sparsity_table& table) {
  return per_layer_prune(pruner<granularity::element, criterion::l1, S>{}, params, table);
}

}  // namespace spruce
