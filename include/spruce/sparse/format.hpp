#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>

#include "spruce/core/simd.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/prune/mask.hpp"

namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {

/// Options of a format whose construction from a dense matrix and a mask needs nothing
/// more (CSR, most user formats): the `options_type` such a format declares.
struct no_options {};

/// A dense right-hand side B and output C for a sparse product with elements of T: any
/// host views (a compile-time `tensor_view` or a `tensor_ref`, of any rank; the product
/// checks for 2-D), C writable. Public products take them through this one constraint and
/// convert once with `to_const_ref` / `to_ref`.
template <class VB, class VC, class T>
concept dense_operands_of = host_view<VB> && host_view<VC> && mutable_view<VC> &&
                            std::same_as<view_value_t<VB>, T> && std::same_as<view_value_t<VC>, T>;

/// What spruce's sparse algorithms (`conv2d`, `choose_execution`'s candidates,
/// `from_dense`) need of a sparse matrix format, so that a user's own format works with
/// them without touching spruce. A format S:
///
/// - names its element type `S::value_type` and its construction options
///   `S::options_type` (`no_options` when none: CSR; `block_shape`; `granularity::n_m_pattern`);
/// - is built from a 2-D dense view and a keep mask of the same shape by the static
///   `S::from_dense(tensor_ref<const value_type>, const mask&, const options_type&)`,
///   storing every kept entry (a format may store more: the pruned entries of a stored
///   block, as zeros) and throwing spruce::error when the mask does not fit the format;
/// - has its shape `rows()` x `cols()` and `stored_values()`, the number of values it
///   holds (explicit zeros and padding included: the work and memory a product costs);
/// - writes itself into a packed 2-D view with `to_dense(tensor_ref<value_type>)`;
/// - checks its own invariants with `validate()` (throws spruce::error);
/// - and multiplies: `spmm(a, B, C, alpha, beta)`, found by argument-dependent lookup (so
///   declared beside the format, in the user's namespace), computes C = alpha * A * B +
///   beta * C for B [cols, N] and C [rows, N] given as `tensor_ref`s (BLAS rules: beta == 0
///   overwrites C, NaN included; alpha == 0 does not read B).
///
/// The concept's name appears in the compiler's message when a type that does not model
/// it is passed to one of these algorithms.
template <class S>
concept sparse_format =
    requires { typename S::value_type; typename S::options_type; } &&
    std::is_default_constructible_v<typename S::options_type> &&
    requires(const S& a, const tensor_ref<const typename S::value_type>& dense, const mask& keep,
             const typename S::options_type& options, const tensor_ref<typename S::value_type>& out,
             const tensor_ref<const typename S::value_type>& b, typename S::value_type scalar) {
      { S::from_dense(dense, keep, options) } -> std::same_as<S>;
      { a.rows() } -> std::convertible_to<std::size_t>;
      { a.cols() } -> std::convertible_to<std::size_t>;
      { a.stored_values() } -> std::convertible_to<std::size_t>;
      a.to_dense(out);
      a.validate();
      spmm(a, b, out, scalar, scalar);
    };

/// Builds the format S from the 2-D `dense` view (any host view of S's element type) and
/// the keep mask: the one generic entry point, for code that is written for any format
/// (conv2d layers, benchmarks, `make_candidate`).
template <sparse_format S, host_view V>
  requires std::same_as<view_value_t<V>, typename S::value_type>
S from_dense(const V& dense, const mask& keep, const typename S::options_type& options = {}) {
  return S::from_dense(to_const_ref(dense), keep, options);
}

}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
