#pragma once
// Opt-in adapter: spruce views over the memory of Eigen matrices, arrays, maps, blocks and
// refs. spruce's core never includes Eigen; include this header to get it. Eigen's
// (unsupported) Tensor module is heavy and separate: spruce/eigen_tensor.hpp adapts
// Tensor, TensorFixedSize and TensorMap.
//
// Rules, decided here once so that every overload agrees:
// - Nothing is copied: the view's data_handle() is the Eigen object's data().
// - Logical index (i, j, ...) of the view is Eigen's own (i, j, ...), whatever the storage
//   order; the storage order only shows in the strides.
// - Row-major objects whose packing is known from their type (plain matrices and arrays,
//   maps with the default stride, row-major tensors) give a row-major `view`; everything
//   else gives a `strided_view` whose strides are Eigen's innerStride()/outerStride().
// - Compile-time vectors (one row or one column) give rank-1 views.
// - A const object gives a view of const elements, even when Eigen itself would hand out
//   a mutable pointer (a const TensorMap), so that constness is never silently dropped.
// - Temporaries that own their storage (Matrix, Array, Tensor, and Ref, which may hold a
//   private copy) do not bind: the view would dangle. Temporary maps and blocks bind,
//   because they only point into memory that someone else owns.

#include <Eigen/Core>

#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include "spruce/core/error.hpp"
#include "spruce/core/extents.hpp"
#include "spruce/core/make_view.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/tensor_view.hpp"

namespace spruce {
namespace detail {

// Declared only: overload resolution on these answers "which Eigen base does X derive from".
template <class D>
D* eigen_dense_derived(const Eigen::DenseBase<D>*);
template <class D>
D* eigen_plain_derived(const Eigen::PlainObjectBase<D>*);

/// An Eigen dense object with a data pointer and strides (Matrix, Array, Map, Ref, Block of
/// those, Transpose of those).
template <class X>
concept eigen_dense_direct =
    requires {
      {
        detail::eigen_dense_derived(static_cast<X*>(nullptr))
      } -> std::same_as<std::remove_cv_t<X>*>;
    } && (static_cast<unsigned>(X::Flags) & Eigen::DirectAccessBit) != 0;

template <class X>
inline constexpr bool eigen_is_ref_v = false;
template <class P, int O, class S>
inline constexpr bool eigen_is_ref_v<Eigen::Ref<P, O, S>> = true;

/// Owns (or, for Ref, may own) the memory it exposes, so a temporary of it would dangle.
template <class X>
concept eigen_dense_owning =
    requires { detail::eigen_plain_derived(static_cast<X*>(nullptr)); } ||
    eigen_is_ref_v<std::remove_cv_t<X>>;

/// Packing (outer stride == inner size, inner stride 1) is a property of the type.
template <class X>
inline constexpr bool eigen_packed_v =
    requires { detail::eigen_plain_derived(static_cast<X*>(nullptr)); };
template <class P, int O, class S>
inline constexpr bool eigen_packed_v<Eigen::Map<P, O, S>> =
    S::OuterStrideAtCompileTime == 0 &&
    (S::InnerStrideAtCompileTime == 0 || S::InnerStrideAtCompileTime == 1);

/// Eigen tensors with raw, packed storage. `rank` is the number of indices. The
/// specializations for Eigen's tensor types live in spruce/eigen_tensor.hpp.
template <class X>
struct eigen_tensor_traits {
  static constexpr bool is_tensor = false;
};
template <class X>
concept eigen_tensor = eigen_tensor_traits<std::remove_cv_t<X>>::is_tensor;

template <class X>
concept eigen_owning =
    eigen_dense_owning<X> || (eigen_tensor<X> && eigen_tensor_traits<std::remove_cv_t<X>>::owning);

/// Element type of the view: what data() points to, made const for a const object.
template <class X>
using eigen_element_t =
    std::conditional_t<std::is_const_v<X>,
                       const std::remove_pointer_t<decltype(std::declval<X&>().data())>,
                       std::remove_pointer_t<decltype(std::declval<X&>().data())>>;

inline std::size_t eigen_stride(Eigen::Index s, const char* which) {
  if (s < 0)
    throw error(std::string("the Eigen object has a negative ") + which + " stride (" +
                std::to_string(s) +
                "); spruce strides are non-negative: view the object in forward order, or "
                "copy it into a plain Eigen matrix first");
  return static_cast<std::size_t>(s);
}

}  // namespace detail

/// Lets spruce prune weights that already live in Eigen objects (matrices, arrays, maps
/// over foreign buffers, blocks, refs, transposes) in place, with no copy in or out: the
/// view indexes exactly as Eigen does, so a mask computed through it lines up with the
/// Eigen object element for element. A packed row-major type gives a row-major `view`
/// (kernels take the flat path without a run-time check); other objects give a
/// `strided_view` built from Eigen's strides, and compile-time vectors give rank-1 views.
/// Throws spruce::error when a map has negative strides, which spruce cannot express.
template <class X>
  requires detail::eigen_dense_direct<std::remove_reference_t<X>> &&
           (std::is_lvalue_reference_v<X> ||
            !detail::eigen_dense_owning<std::remove_reference_t<X>>)
auto make_view(X&& x) {
  using D = std::remove_reference_t<X>;
  using T = detail::eigen_element_t<D>;
  T* const p = x.data();
  if constexpr (D::IsVectorAtCompileTime) {
    const std::size_t n = static_cast<std::size_t>(x.size());
    if constexpr (static_cast<int>(D::InnerStrideAtCompileTime) == 1) {
      return view<T, 1>(p, extents<1>(n));
    } else {
      const std::size_t s = detail::eigen_stride(x.innerStride(), "inner");
      return make_strided_view(p, std::array<std::size_t, 1>{n}, std::array<std::size_t, 1>{s});
    }
  } else {
    const std::array<std::size_t, 2> shape{static_cast<std::size_t>(x.rows()),
                                           static_cast<std::size_t>(x.cols())};
    constexpr bool row_major = static_cast<bool>(D::IsRowMajor);
    if constexpr (row_major && detail::eigen_packed_v<std::remove_cv_t<D>>) {
      return view<T, 2>(p, extents<2>(shape));
    } else {
      const std::size_t inner = detail::eigen_stride(x.innerStride(), "inner");
      const std::size_t outer = detail::eigen_stride(x.outerStride(), "outer");
      return make_strided_view(p, shape,
                               row_major ? std::array<std::size_t, 2>{outer, inner}
                                         : std::array<std::size_t, 2>{inner, outer});
    }
  }
}

/// A view of a temporary Matrix, Array, Tensor or Ref would dangle as soon as the full
/// expression ends, so it does not compile: name the object, then view it.
template <class X>
  requires(!std::is_lvalue_reference_v<X>) &&
          (detail::eigen_dense_direct<X> || detail::eigen_tensor<X>) && detail::eigen_owning<X>
void make_view(X&&) = delete;

/// C = W * B through Eigen's dense GEMM, for packed row-major 2-D views: the dense
/// baseline that `spruce::sparse::choose_execution` times the sparse formats against.
struct eigen_gemm {
  template <class T>
  void operator()(const tensor_ref<const T>& w, const tensor_ref<const T>& b, const tensor_ref<T>& c) const {
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    if (w.rank() != 2 || b.rank() != 2 || c.rank() != 2 || !w.is_contiguous() || !b.is_contiguous() ||
        !c.is_contiguous() || b.extent(0) != w.extent(1) || c.extent(0) != w.extent(0) || c.extent(1) != b.extent(1))
      throw error("eigen_gemm: W " + shape_string(w.shape()) + ", B " + shape_string(b.shape()) + ", C " +
                  shape_string(c.shape()) + "; need packed row-major W [M, K], B [K, N], C [M, N]");
    const auto ix = [](std::size_t v) { return static_cast<Eigen::Index>(v); };
    Eigen::Map<const matrix> wm(w.data(), ix(w.extent(0)), ix(w.extent(1)));
    Eigen::Map<const matrix> bm(b.data(), ix(b.extent(0)), ix(b.extent(1)));
    Eigen::Map<matrix> cm(c.data(), ix(c.extent(0)), ix(c.extent(1)));
    cm.noalias() = wm * bm;
  }
};

}  // namespace spruce
