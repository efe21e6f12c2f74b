#pragma once

#include <concepts>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/core/tensor_ref.hpp"
#include "spruce/granularity/group_layout.hpp"

namespace spruce::criterion {

/// The empty extension: criteria that read only the standard inputs.
struct no_extra {};

/// What a criterion may read for one tensor: its weight and, when the criterion needs
/// them, the gradient, the Hessian diagonal (same shape as the weight) or the BN scales
/// (one per output channel). Unused members stay empty. `Extra` carries whatever else a
/// criterion needs per tensor — Wanda's activation norms, a user's calibration data — so a
/// criterion written outside spruce can read its own inputs; the pruner passes the whole
/// struct through untouched.
template <class T, class Extra = no_extra>
struct inputs {
  tensor_ref<const T> weight;
  tensor_ref<const T> grad{};
  tensor_ref<const T> hessian{};
  std::span<const T> gamma{};
  [[no_unique_address]] Extra extra{};
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

/// The extension a criterion reads: `C::extra_type` when it declares one, else `no_extra`.
template <class C>
struct extra_of {
  using type = no_extra;
};
template <class C>
  requires requires { typename C::extra_type; }
struct extra_of<C> {
  using type = typename C::extra_type;
};
template <class C>
using extra_t = typename extra_of<C>::type;

/// A criterion that scores whole groups directly (BN scale, random, Wanda): it writes one
/// score per group of `layout` into `out`, validating its inputs first. A criterion that
/// needs more than the standard inputs declares `using extra_type = ...;` and receives
/// `inputs<T, extra_type>`.
template <class C>
concept group_criterion = requires(const C& c, const inputs<float, extra_t<C>>& in,
                                   const granularity::group_layout& l, std::span<float> out,
                                   const std::string& name) {
  { c.group_scores(in, l, out, name) };
};

template <class C>
concept any_criterion = elementwise_criterion<C> || group_criterion<C>;

/// Trait: the criterion ranks single weights exactly as |w| does (L1, L2, Ln of one
/// element), so element-granularity selection may select on the weights' magnitudes
/// directly, with no score buffer. spruce's fast paths ask this trait, never the type: a
/// user criterion opts in by declaring `static constexpr bool orders_like_magnitude = true;`
/// (only when element(w) is a strictly increasing function of |w| that maps -0 and +0 to
/// the same value).
template <class C>
inline constexpr bool orders_like_magnitude_v = [] {
  if constexpr (requires { C::orders_like_magnitude; })
    return static_cast<bool>(C::orders_like_magnitude);
  else
    return false;
}();

}  // namespace spruce::criterion
