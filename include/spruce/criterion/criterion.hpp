#pragma once

#include <concepts>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/tensor_ref.hpp"
#include "spruce/granularity/group_layout.hpp"

namespace spruce::criterion {

/// What a criterion may read for one tensor: its weight and, when the criterion needs
/// them, the gradient, the Hessian diagonal (same shape as the weight) or the BN scales
/// (one per output channel). Unused members stay empty.
template <class T>
struct inputs {
  tensor_ref<const T> weight;
  tensor_ref<const T> grad{};
  tensor_ref<const T> hessian{};
  std::span<const T> gamma{};
};

/// A criterion scored element by element, then reduced per group: `element(w, g, h)` is
/// the per-weight score, `reduce(acc, s)` folds scores (associative: sum or max), and
/// `finish(acc)` turns the folded value into the group score (sqrt for L2). `needs_grad` /
/// `needs_hessian` say which inputs must be present. L1, L2, Ln, gradient, Taylor and OBD
/// are such criteria; a user's criterion with the same members works everywhere.
template <class C>
concept elementwise_criterion = requires(const C& c, float w, float a) {
  { C::needs_grad } -> std::convertible_to<bool>;
  { C::needs_hessian } -> std::convertible_to<bool>;
  { c.element(w, w, w) } -> std::same_as<float>;
  { c.reduce(a, a) } -> std::same_as<float>;
  { c.finish(a) } -> std::same_as<float>;
  { c.template identity<float>() } -> std::same_as<float>;
};

/// A criterion that scores whole groups directly (BN scale, random): it writes one score
/// per group of `layout` into `out`, validating its inputs first.
template <class C>
concept group_criterion = requires(const C& c, const inputs<float>& in,
                                   const granularity::group_layout& l, std::span<float> out,
                                   const std::string& name) {
  { c.group_scores(in, l, out, name) };
};

template <class C>
concept any_criterion = elementwise_criterion<C> || group_criterion<C>;

}  // namespace spruce::criterion
