#pragma once

#include <concepts>
#include <type_traits>

#include "spruce/core/memory_space.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/tensor_view.hpp"

namespace spruce {

/// The API view type and its one conversion point.
///
/// spruce's algorithms work on `tensor_ref<T, Space>` (a run-time rank: a model's
/// parameters have several ranks, and one compiled body serves all of them). Public
/// functions accept *any* spruce view — a compile-time `tensor_view` of any rank and layout
/// or a `tensor_ref`, of const or non-const elements — constrained by `any_view` /
/// `host_view`, and convert it once with `to_ref` / `to_const_ref`. No header carries its
/// own pair of forwarding overloads. Foreign containers (Eigen, xtensor, raw memory) become
/// views through `make_view` first.
template <class V>
inline constexpr bool is_tensor_ref_v = false;
template <class T, class S>
inline constexpr bool is_tensor_ref_v<tensor_ref<T, S>> = true;

/// A spruce view: `tensor_view<...>` or `tensor_ref<...>`, in any memory space.
template <class V>
concept any_view = tensor_view_like<V> || is_tensor_ref_v<std::remove_cvref_t<V>>;

/// A spruce view whose elements live in host memory.
template <class V>
concept host_view = any_view<V> && std::same_as<typename std::remove_cvref_t<V>::memory_space, host_space>;

/// A view whose elements may be written (non-const element type).
template <class V>
concept mutable_view = any_view<V> && !std::is_const_v<typename std::remove_cvref_t<V>::element_type>;

/// Element type of a view with const and volatile removed (`float` for a view of `const float`).
template <any_view V>
using view_value_t = std::remove_cv_t<typename std::remove_cvref_t<V>::element_type>;

/// Memory space of a view.
template <any_view V>
using view_space_t = typename std::remove_cvref_t<V>::memory_space;

/// The conversion point: any view as a `tensor_ref` of the same element type and space.
template <any_view V>
constexpr auto to_ref(const V& v) noexcept {
  using R = std::remove_cvref_t<V>;
  return tensor_ref<typename R::element_type, typename R::memory_space>(v);
}

/// Any view as a read-only `tensor_ref<const T, Space>`.
template <any_view V>
constexpr auto to_const_ref(const V& v) noexcept {
  return tensor_ref<const view_value_t<V>, view_space_t<V>>(to_ref(v));
}

}  // namespace spruce
