#pragma once

#include <ranges>
#include <span>
#include <type_traits>
#include <utility>

#include "spruce/core/memory_space.hpp"
#include "spruce/core/tensor_ref.hpp"

namespace spruce {

/// True for `named_tensor<T, host_space>` (any T).
template <class X>
inline constexpr bool is_host_named_tensor_v = false;
template <class T>
inline constexpr bool is_host_named_tensor_v<named_tensor<T, host_space>> = true;

/// A set of named host tensors in contiguous storage: `std::vector<named_tensor<T>>`,
/// `std::array`, `std::span` (of const or mutable elements), a C array. The multi-tensor
/// functions (global_masks, per_layer_*, prune_at_step, fine_grained_prune) take any of
/// them through one constrained overload and read them as one span, so a model's parameter
/// list is passed as it is stored.
template <class R>
concept named_tensor_range =
    std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
    is_host_named_tensor_v<std::remove_cv_t<std::ranges::range_value_t<R>>>;

/// The element type T of a named_tensor_range's `named_tensor<T>` (the functions that
/// take a range require a non-const score type).
template <named_tensor_range R>
using named_tensor_value_t =
    typename decltype(std::declval<std::ranges::range_value_t<R>>().view)::element_type;

namespace detail {

/// The range as a span of const named tensors (no copy).
template <named_tensor_range R>
std::span<const named_tensor<named_tensor_value_t<R>>> as_tensor_span(const R& r) noexcept {
  return {std::ranges::data(r), std::ranges::size(r)};
}

}  // namespace detail
}  // namespace spruce
