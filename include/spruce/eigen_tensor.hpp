#pragma once
// Opt-in adapter: spruce views over Eigen's (unsupported) Tensor module — Tensor,
// TensorFixedSize and TensorMap — without copying. Kept apart from spruce/eigen.hpp so that
// users of Eigen's matrices do not pay for parsing the Tensor module.

#include <unsupported/Eigen/CXX11/Tensor>

#include <array>
#include <cstddef>
#include <type_traits>

#include "spruce/core/make_view.hpp"
#include "spruce/core/tensor_view.hpp"
#include "spruce/eigen.hpp"

namespace spruce {
namespace detail {

template <class S, int R, int O, class I>
struct eigen_tensor_traits<Eigen::Tensor<S, R, O, I>> {
  static constexpr bool is_tensor = true, owning = true;
  static constexpr std::size_t rank = static_cast<std::size_t>(R);
};
template <class S, class Dims, int O, class I>
struct eigen_tensor_traits<Eigen::TensorFixedSize<S, Dims, O, I>> {
  static constexpr bool is_tensor = true, owning = true;
  static constexpr std::size_t rank = static_cast<std::size_t>(Dims::count);
};
template <class P, int O>
struct eigen_tensor_traits<Eigen::TensorMap<P, O, Eigen::MakePointer>> {
  static constexpr bool is_tensor = true, owning = false;
  static constexpr std::size_t rank = static_cast<std::size_t>(P::NumIndices);
};

}  // namespace detail

/// Lets spruce work on N-d weights (conv kernels, attention heads) held in Eigen tensors
/// without copying them. Eigen's default column-major tensors become strided views with
/// strides {1, d0, d0*d1, ...}, so `v(i, j, k)` is still `t(i, j, k)`; RowMajor tensors are
/// already in spruce's flat order and become row-major views.
template <class X>
  requires detail::eigen_tensor<std::remove_reference_t<X>> &&
           (std::is_lvalue_reference_v<X> || !detail::eigen_owning<std::remove_reference_t<X>>)
auto make_view(X&& t) {
  using D = std::remove_reference_t<X>;
  using T = detail::eigen_element_t<D>;
  constexpr std::size_t R = detail::eigen_tensor_traits<std::remove_cv_t<D>>::rank;
  static_assert(R >= 1 && R <= max_rank,
                "spruce::make_view: spruce views have rank 1 to 8; reshape the Eigen tensor "
                "(e.g. a rank-0 tensor to rank 1) before viewing it");
  std::array<std::size_t, R> shape{};
  for (std::size_t r = 0; r < R; ++r) shape[r] = static_cast<std::size_t>(t.dimensions()[r]);
  T* const p = t.data();
  if constexpr (static_cast<int>(D::Layout) == static_cast<int>(Eigen::RowMajor)) {
    return view<T, R>(p, extents<R>(shape));
  } else {
    std::array<std::size_t, R> strides{};
    std::size_t s = 1;
    for (std::size_t r = 0; r < R; ++r) {
      strides[r] = s;
      s *= shape[r];
    }
    return make_strided_view(p, shape, strides);
  }
}

}  // namespace spruce
