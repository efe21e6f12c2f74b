#pragma once
// Opt-in adapter: spruce views over the memory of xtensor containers (xt::xtensor,
// xt::xarray, xt::xtensor_fixed and the adaptors xt::adapt returns). spruce's core never
// includes xtensor; include this header to get it.
//
// Rules, decided here once so that every overload agrees:
// - Nothing is copied: the view's data_handle() is the container's data() + data_offset().
// - Logical index (i, j, ...) of the view is the container's own (i, j, ...).
// - A container whose layout is row_major by type gives a row-major `view`; any other
//   (column_major, dynamic) gives a `strided_view` with the container's strides. xtensor
//   stores stride 0 for extents of 1; spruce treats extent-1 strides as "any", so those
//   views still report is_contiguous() correctly.
// - A const container gives a view of const elements.
// - Temporaries do not bind, adaptors included (an adaptor may own a moved-in buffer): name
//   the container, then view it.

#include <xtensor/xcontainer.hpp>
#include <xtensor/xshape.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/extents.hpp"
#include "spruce/core/make_view.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/tensor_view.hpp"

namespace spruce {
namespace detail {

// Declared only: overload resolution on it answers "is C an xtensor container".
template <class D>
D* xt_container_derived(const xt::xcontainer<D>*);

/// An xtensor container (owning or adaptor) whose elements sit behind a raw pointer.
template <class C>
concept xt_container =
    requires(C& c) {
      {
        detail::xt_container_derived(static_cast<C*>(nullptr))
      } -> std::same_as<std::remove_cv_t<C>*>;
      { c.data() } -> std::convertible_to<const volatile void*>;
    } && std::is_pointer_v<decltype(std::declval<C&>().data())>;

/// The rank fixed by the container's type, or -1 when it is chosen at run time (xarray).
template <class C>
inline constexpr std::ptrdiff_t xt_static_rank =
    xt::static_dimension<typename std::remove_cv_t<C>::shape_type>::value;

template <class C>
using xt_element_t =
    std::conditional_t<std::is_const_v<C>,
                       const std::remove_pointer_t<decltype(std::declval<C&>().data())>,
                       std::remove_pointer_t<decltype(std::declval<C&>().data())>>;

template <class C>
std::string xt_shape_string(const C& c) {
  const std::vector<std::size_t> shape(c.shape().begin(), c.shape().end());
  return shape_string(shape);
}

template <std::size_t R, class C>
std::array<std::size_t, R> xt_shape(const C& c) {
  std::array<std::size_t, R> shape{};
  for (std::size_t r = 0; r < R; ++r) shape[r] = static_cast<std::size_t>(c.shape()[r]);
  return shape;
}

/// The container's strides as spruce strides. Negative strides cannot be expressed and
/// are rejected; zero strides are kept (xtensor uses them for extents of 1).
template <std::size_t R, class C>
std::array<std::size_t, R> xt_strides(const C& c) {
  std::array<std::size_t, R> strides{};
  for (std::size_t r = 0; r < R; ++r) {
    const auto s = static_cast<std::ptrdiff_t>(c.strides()[r]);
    if (s < 0)
      throw error("xtensor container of shape " + xt_shape_string(c) + " has stride " +
                  std::to_string(s) + " on axis " + std::to_string(r) +
                  "; spruce strides are non-negative: copy it into a row-major xt::xtensor first");
    strides[r] = static_cast<std::size_t>(s);
  }
  return strides;
}

/// True when the strides are row-major, extents of 1 (any stride, xtensor stores 0) and
/// empty shapes (no element to misplace) included.
template <std::size_t R>
bool row_major_strides(const std::array<std::size_t, R>& shape,
                       const std::array<std::size_t, R>& strides) {
  std::size_t expect = 1;
  for (std::size_t r = R; r-- > 0;) {
    if (shape[r] == 0) return true;
    if (shape[r] != 1 && strides[r] != expect) return false;
    expect *= shape[r];
  }
  return true;
}

}  // namespace detail

/// Lets spruce prune weights held in xtensor containers in place, and lets code that only
/// knows its rank at run time (xt::xarray) ask for a fixed-rank view anyway: spruce's
/// kernels need the rank at compile time. Throws spruce::error, before building anything,
/// when the container's dimension is not R or a stride is negative. A row_major container
/// gives a row-major `view`, any other a `strided_view`.
template <std::size_t R, class C>
  requires detail::xt_container<C>
auto make_view(C& c) {
  static_assert(R >= 1 && R <= max_rank, "spruce::make_view<R>: R must be in [1, 8]");
  static_assert(detail::xt_static_rank<C> < 0 ||
                    detail::xt_static_rank<C> == static_cast<std::ptrdiff_t>(R),
                "spruce::make_view<R>: R differs from the rank of the xtensor container's type");
  using T = detail::xt_element_t<C>;
  if (c.dimension() != R)
    throw error("make_view<" + std::to_string(R) + ">: the xtensor container has dimension " +
                std::to_string(c.dimension()) + " (shape " + detail::xt_shape_string(c) +
                "), not " + std::to_string(R) + "; call make_view<" +
                std::to_string(c.dimension()) + ">, or make_ref for a rank chosen at run time");
  const auto shape = detail::xt_shape<R>(c);
  const auto strides = detail::xt_strides<R>(c);
  T* const p = c.data() + c.data_offset();
  if constexpr (std::remove_cv_t<C>::static_layout == xt::layout_type::row_major) {
    // xtensor computes these strides from the shape; the check guards the claim that the
    // flat order is the memory order, which every row-major kernel relies on.
    if (!detail::row_major_strides(shape, strides))
      throw error("xtensor container of shape " + detail::xt_shape_string(c) +
                  " is typed row_major but its strides are not; copy it into a fresh container");
    return view<T, R>(p, extents<R>(shape));
  } else {
    return make_strided_view(p, shape, strides);
  }
}

/// The everyday form for containers whose rank is part of their type (xt::xtensor,
/// xt::xtensor_fixed, xtensor adaptors): no rank to spell, no rank to get wrong.
template <class C>
  requires detail::xt_container<C> && (detail::xt_static_rank<C> >= 1)
auto make_view(C& c) {
  return make_view<static_cast<std::size_t>(detail::xt_static_rank<C>)>(c);
}

/// A model's parameters come with ranks known only at run time, and a set of them is held
/// as `tensor_ref`s; this builds one straight from any xtensor container without the caller
/// switching on the rank. Throws spruce::error for dimension 0 or above max_rank (8).
template <class C>
  requires detail::xt_container<C>
tensor_ref<detail::xt_element_t<C>> make_ref(C& c) {
  if constexpr (detail::xt_static_rank<C> >= 0) {
    static_assert(detail::xt_static_rank<C> >= 1 &&
                      detail::xt_static_rank<C> <= static_cast<std::ptrdiff_t>(max_rank),
                  "spruce::make_ref: spruce views have rank 1 to 8; reshape the container");
    return make_view(c);
  } else {
    const std::size_t d = c.dimension();
    if (d == 0 || d > max_rank)
      throw error("make_ref: the xtensor container has dimension " + std::to_string(d) +
                  " (shape " + detail::xt_shape_string(c) + "); spruce views have rank 1 to " +
                  std::to_string(max_rank) + ": reshape it (a scalar to {1}, extra axes merged)");
    tensor_ref<detail::xt_element_t<C>> ref;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (void)((d == I + 1 && (ref = make_view<I + 1>(c), true)) || ...);
    }(std::make_index_sequence<max_rank>{});
    return ref;
  }
}

/// A view of a temporary container would dangle when the full expression ends, so these do
/// not compile: name the container (or the xt::adapt result), then view it.
template <class C>
  requires(!std::is_lvalue_reference_v<C>) && detail::xt_container<C>
void make_view(C&&) = delete;
template <std::size_t R, class C>
  requires(!std::is_lvalue_reference_v<C>) && detail::xt_container<C>
void make_view(C&&) = delete;
template <class C>
  requires(!std::is_lvalue_reference_v<C>) && detail::xt_container<C>
void make_ref(C&&) = delete;

}  // namespace spruce
