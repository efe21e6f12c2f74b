#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/simd.hpp"
#include "spruce/core/tensor_ref.hpp"

// The dense side of every sparse product: B and C as strided operands, their checks, the
// alpha == 0 / beta rules and the store of a finished register tile into C. Shared by all
// formats through detail/panel_engine.hpp.
namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {
namespace detail {

/// A dense operand of a sparse product: element (r, c) lives at data[r * rs + c * cs];
/// row-major (cs == 1) and column-major (rs == 1) views both qualify.
template <class T>
struct dense_operand {
  T* data = nullptr;
  std::size_t rows = 0, cols = 0, rs = 0, cs = 0;
};

/// The 2-D view as a dense operand; throws spruce::error (naming `what`) unless it is 2-D
/// with unit stride along one axis.
template <class T>
dense_operand<T> as_dense_operand(const tensor_ref<T>& v, const char* what) {
  if (v.rank() != 2)
    throw error(std::string("spmm: ") + what + " of shape " + shape_string(v.shape()) + " is not a matrix");
  const auto st = v.strides();
  dense_operand<T> d{v.data(), v.extent(0), v.extent(1), st[0], st[1]};
  const bool row_major = d.cs == 1 || d.cols <= 1, col_major = d.rs == 1 || d.rows <= 1;
  if (!row_major && !col_major)
    throw error(std::string("spmm: ") + what + " has strides " + shape_string(st) +
                "; pass a row-major or column-major matrix (unit stride along one axis)");
  return d;
}

/// B and C of a product with an A of `rows` x `cols`, as dense operands; throws
/// spruce::error naming all three shapes unless B is [cols, N] and C [rows, N].
template <class T>
std::pair<dense_operand<const T>, dense_operand<T>> spmm_operands(std::size_t rows, std::size_t cols,
                                                                 const tensor_ref<const T>& b, const tensor_ref<T>& c) {
  const auto bo = as_dense_operand(b, "B");
  const auto co = as_dense_operand(c, "C");
  if (bo.rows != cols || co.rows != rows || co.cols != bo.cols)
    throw error("spmm: A is " + std::to_string(rows) + " x " + std::to_string(cols) + ", B " + shape_string(b.shape()) +
                ", C " + shape_string(c.shape()) + "; need B [A.cols, N] and C [A.rows, N]");
  return {bo, co};
}

/// C = beta * C (beta == 0: zeros, NaN included): the whole product when alpha is 0, as
/// in BLAS, where A and B are not read.
template <class T>
void scale_dense(const dense_operand<T>& c, T beta) {
  for (std::size_t i = 0; i < c.rows; ++i)
    for (std::size_t j = 0; j < c.cols; ++j) {
      T& x = c.data[i * c.rs + j * c.cs];
      x = beta == T(0) ? T(0) : beta * x;
    }
}

/// The front of every format's spmm: checks the operands against an A of `rows` x `cols`
/// (throwing before anything is written), applies the alpha == 0 rule, and otherwise runs
/// `product(B, C)` on the checked operands.
template <class T, class Product>
void spmm_entry(std::size_t rows, std::size_t cols, const tensor_ref<const T>& b, const tensor_ref<T>& c, T alpha, T beta,
                Product&& product) {
  const auto operands = spmm_operands(rows, cols, b, c);
  if (alpha == T(0)) return scale_dense(operands.second, beta);
  product(operands.first, operands.second);
}

/// The output of a format's to_dense, zero-filled: throws spruce::error naming the format
/// (`format`) unless `out` is a packed `rows` x `cols` matrix.
template <class T>
T* zeroed_dense_output(const tensor_ref<T>& out, std::size_t rows, std::size_t cols, const char* format) {
  if (out.rank() != 2 || out.extent(0) != rows || out.extent(1) != cols || !out.is_contiguous())
    throw error(std::string(format) + "::to_dense: output of shape " + shape_string(out.shape()) + " for a " +
                std::to_string(rows) + " x " + std::to_string(cols) + " matrix; pass a packed matrix of that shape");
  T* o = out.data();
  std::fill(o, o + rows * cols, T(0));
  return o;
}

/// C[i, j0:j0+len) = alpha * acc + beta * C (first pass over K) or += alpha * acc (later
/// passes). beta == 0 overwrites, as in BLAS, so NaN in C does not survive.
template <class T>
inline void store_panel(const dense_operand<T>& c, std::size_t i, std::size_t j0, std::size_t len, const T* acc, T alpha,
                        T beta, bool first) {
  T* dst = c.data + i * c.rs + j0 * c.cs;
  const std::size_t cs = c.cs;
  if (!first) {
    for (std::size_t j = 0; j < len; ++j) dst[j * cs] += alpha * acc[j];
  } else if (beta == T(0)) {
    for (std::size_t j = 0; j < len; ++j) dst[j * cs] = alpha * acc[j];
  } else {
    for (std::size_t j = 0; j < len; ++j) dst[j * cs] = alpha * acc[j] + beta * dst[j * cs];
  }
}

}  // namespace detail
}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
