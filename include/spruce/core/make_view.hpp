#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_view.hpp"

namespace spruce {

namespace detail {

template <std::size_t R>
std::size_t checked_product(const std::array<std::size_t, R>& s) {
  std::size_t n = 1;
  for (std::size_t e : s) {
    if (e != 0 && n > static_cast<std::size_t>(-1) / e)
      throw error("shape " + shape_string(s) + " has more elements than size_t can count");
    n *= e;
  }
  return n;
}

template <class T, std::size_t R>
void check_pointer(const T* p, const std::array<std::size_t, R>& s) {
  if (p == nullptr && checked_product(s) != 0)
    throw error("null data pointer for a view of shape " + shape_string(s) +
                "; pass the tensor's storage, or an empty shape for no data");
}

}  // namespace detail

/// Row-major view of `p` with the given shape. Throws spruce::error for a null pointer
/// with a non-zero size.
template <class T, std::size_t R>
view<T, R> make_view(T* p, const std::array<std::size_t, R>& shape) {
  detail::check_pointer(p, shape);
  return view<T, R>(p, extents<R>(shape));
}

/// Row-major view of `p` with extents given as arguments: `make_view(p, 64, 3, 3, 3)`.
template <class T, std::integral... I>
  requires(sizeof...(I) >= 1)
view<T, sizeof...(I)> make_view(T* p, I... e) {
  return make_view(p, std::array<std::size_t, sizeof...(I)>{static_cast<std::size_t>(e)...});
}

/// Strided view of `p`: strides are in elements, as in std::layout_stride.
template <class T, std::size_t R>
strided_view<T, R> make_strided_view(T* p, const std::array<std::size_t, R>& shape,
                                     const std::array<std::size_t, R>& strides) {
  detail::check_pointer(p, shape);
  return strided_view<T, R>(p, layout_stride::mapping<extents<R>>(extents<R>(shape), strides));
}

/// One-dimensional view of a span or vector; never copies.
template <class T, std::size_t N>
view<T, 1> make_view(std::span<T, N> s) {
  return view<T, 1>(s.data(), extents<1>(s.size()));
}

/// Row-major view of a span's elements with the given shape; the shape must cover the span
/// exactly.
template <class T, std::size_t N, std::integral... I>
  requires(sizeof...(I) >= 1)
view<T, sizeof...(I)> make_view(std::span<T, N> s, I... e) {
  const std::array<std::size_t, sizeof...(I)> shape{static_cast<std::size_t>(e)...};
  if (detail::checked_product(shape) != s.size())
    throw error("shape " + shape_string(shape) + " has " +
                std::to_string(detail::checked_product(shape)) + " elements but the buffer holds " +
                std::to_string(s.size()) + "; pass a shape whose product is the buffer size");
  return view<T, sizeof...(I)>(s.data(), extents<sizeof...(I)>(shape));
}

template <class T, class A>
view<T, 1> make_view(std::vector<T, A>& v) {
  return make_view(std::span<T>(v));
}
template <class T, class A>
view<const T, 1> make_view(const std::vector<T, A>& v) {
  return make_view(std::span<const T>(v));
}
/// A temporary vector would dangle: keep the vector alive and view it.
template <class T, class A, class... I>
void make_view(std::vector<T, A>&&, I...) = delete;
template <class T, class A, class... I>
void make_view(const std::vector<T, A>&&, I...) = delete;

template <class T, class A, std::integral... I>
  requires(sizeof...(I) >= 1)
view<T, sizeof...(I)> make_view(std::vector<T, A>& v, I... e) {
  return make_view(std::span<T>(v), e...);
}
template <class T, class A, std::integral... I>
  requires(sizeof...(I) >= 1)
view<const T, sizeof...(I)> make_view(const std::vector<T, A>& v, I... e) {
  return make_view(std::span<const T>(v), e...);
}

}  // namespace spruce
