#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/prune/mask.hpp"

namespace spruce::sparse {

/// Compressed sparse rows: row_ptr (rows + 1 offsets), col_idx and values (nnz each),
/// column indices strictly increasing within a row. Built from a dense matrix and a keep
/// mask (every kept entry is stored, zeros included, so the pattern is the mask's), from
/// a dense matrix's nonzeros, or from hand-built arrays that `validate()` checks. Index is
/// the type of row_ptr and col_idx (int32 by default, as cuSPARSE and MKL use).
template <class T, class Index = std::int32_t>
class csr_matrix {
  static_assert(std::is_integral_v<Index>, "csr_matrix: Index must be an integer type");

 public:
  using value_type = T;
  using index_type = Index;

  csr_matrix() = default;

  /// Adopts hand-built arrays; throws spruce::error, naming the first problem, unless they
  /// form a valid rows x cols CSR matrix.
  csr_matrix(std::size_t rows, std::size_t cols, std::vector<Index> row_ptr, std::vector<Index> col_idx,
             std::vector<T> values)
      : rows_(rows), cols_(cols), row_ptr_(std::move(row_ptr)), col_idx_(std::move(col_idx)), values_(std::move(values)) {
    validate();
  }

  /// The entries of the 2-D `dense` view that `keep` keeps (mask of the same shape).
  static csr_matrix from_dense(const tensor_ref<const T>& dense, const mask& keep) {
    check_2d(dense, "from_dense");
    if (!std::ranges::equal(keep.shape(), dense.shape()))
      throw error("csr_matrix::from_dense: mask of shape " + shape_string(keep.shape()) + " for a matrix of shape " +
                  shape_string(dense.shape()) + "; pass the mask computed for this weight");
    return build(dense, [&](std::size_t flat, T) { return keep.data()[flat] != 0; });
  }

  /// The nonzero entries of the 2-D `dense` view.
  static csr_matrix from_dense(const tensor_ref<const T>& dense) {
    check_2d(dense, "from_dense");
    return build(dense, [](std::size_t, T v) { return v != T(0); });
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t nnz() const noexcept { return values_.size(); }
  const std::vector<Index>& row_ptr() const noexcept { return row_ptr_; }
  const std::vector<Index>& col_idx() const noexcept { return col_idx_; }
  const std::vector<T>& values() const noexcept { return values_; }

  /// Writes the matrix into the 2-D `out` (zeros elsewhere); exact.
  void to_dense(const tensor_ref<T>& out) const {
    if (out.rank() != 2 || out.extent(0) != rows_ || out.extent(1) != cols_ || !out.is_contiguous())
      throw error("csr_matrix::to_dense: output of shape " + shape_string(out.shape()) + " for a " +
                  std::to_string(rows_) + " x " + std::to_string(cols_) + " matrix; pass a packed matrix of that shape");
    T* o = out.data();
    std::fill(o, o + rows_ * cols_, T(0));
    for (std::size_t i = 0; i < rows_; ++i)
      for (Index p = row_ptr_[i]; p < row_ptr_[i + 1]; ++p)
        o[i * cols_ + static_cast<std::size_t>(col_idx_[static_cast<std::size_t>(p)])] = values_[static_cast<std::size_t>(p)];
  }

  /// Checks sizes (row_ptr has rows + 1 entries from 0 to nnz, non-decreasing; col_idx
  /// and values have nnz entries) and indices (in [0, cols), strictly increasing within
  /// each row). Throws spruce::error naming the first violation.
  void validate() const {
    const auto fail = [](const std::string& what) {
      throw error("invalid CSR matrix: " + what + "; fix the arrays or build it with from_dense");
    };
    if (row_ptr_.size() != rows_ + 1)
      fail("row_ptr has " + std::to_string(row_ptr_.size()) + " entries for " + std::to_string(rows_) + " rows (need rows + 1)");
    if (col_idx_.size() != values_.size())
      fail(std::to_string(col_idx_.size()) + " column indices but " + std::to_string(values_.size()) + " values");
    if (row_ptr_.front() != 0) fail("row_ptr[0] is " + std::to_string(row_ptr_.front()) + ", not 0");
    if (static_cast<std::size_t>(row_ptr_.back()) != values_.size())
      fail("row_ptr[rows] is " + std::to_string(row_ptr_.back()) + " but there are " + std::to_string(values_.size()) + " values");
    // All offsets first: a later decrease would otherwise send an earlier row out of bounds.
    for (std::size_t i = 0; i < rows_; ++i)
      if (row_ptr_[i + 1] < row_ptr_[i]) fail("row_ptr decreases at row " + std::to_string(i));
    for (std::size_t i = 0; i < rows_; ++i) {
      for (Index p = row_ptr_[i]; p < row_ptr_[i + 1]; ++p) {
        const Index c = col_idx_[static_cast<std::size_t>(p)];
        if (c < 0 || static_cast<std::size_t>(c) >= cols_)
          fail("column index " + std::to_string(c) + " in row " + std::to_string(i) + " is outside [0, " + std::to_string(cols_) + ")");
        if (p > row_ptr_[i] && col_idx_[static_cast<std::size_t>(p - 1)] >= c)
          fail("column indices of row " + std::to_string(i) + " are not strictly increasing at entry " + std::to_string(p));
      }
    }
  }

 private:
  static void check_2d(const tensor_ref<const T>& d, const char* what) {
    if (d.rank() != 2)
      throw error(std::string("csr_matrix::") + what + ": a matrix of shape " + shape_string(d.shape()) +
                  " is not 2-D; view a conv weight as [out, in*kh*kw]");
  }

  template <class Keep>
  static csr_matrix build(const tensor_ref<const T>& d, Keep keep) {
    csr_matrix m;
    m.rows_ = d.extent(0);
    m.cols_ = d.extent(1);
    m.row_ptr_.assign(m.rows_ + 1, 0);
    for (std::size_t i = 0; i < m.rows_; ++i) {
      for (std::size_t j = 0; j < m.cols_; ++j) {
        const std::size_t flat = i * m.cols_ + j;
        const T v = d.data()[d.offset_of(flat)];
        if (!keep(flat, v)) continue;
        if (m.values_.size() >= static_cast<std::size_t>(std::numeric_limits<Index>::max()))
          throw error("csr_matrix: more nonzeros than the index type can count; use a 64-bit Index");
        m.col_idx_.push_back(static_cast<Index>(j));
        m.values_.push_back(v);
      }
      m.row_ptr_[i + 1] = static_cast<Index>(m.values_.size());
    }
    return m;
  }

  std::size_t rows_ = 0, cols_ = 0;
  std::vector<Index> row_ptr_{0};
  std::vector<Index> col_idx_;
  std::vector<T> values_;
};

/// C = alpha * A * B + beta * C with A sparse (M x K) and B (K x N), C (M x N) dense,
/// packed row-major. Rows of C are split between threads; each row is built tile by
/// tile of B's columns (512 at a time), so the C tile stays in L1 while the B rows of the
/// row's nonzeros stream through. beta == 0 overwrites C (NaN in C does not survive).
/// Throws spruce::error, writing nothing, when the shapes disagree.
template <class T, class Index>
void spmm(const csr_matrix<T, Index>& a, const tensor_ref<const T>& b, const tensor_ref<T>& c, T alpha = T(1),
          T beta = T(0)) {
  if (b.rank() != 2 || c.rank() != 2 || !b.is_contiguous() || !c.is_contiguous())
    throw error("spmm: B and C must be packed row-major matrices (B " + shape_string(b.shape()) + ", C " +
                shape_string(c.shape()) + ")");
  if (b.extent(0) != a.cols() || c.extent(0) != a.rows() || c.extent(1) != b.extent(1))
    throw error("spmm: A is " + std::to_string(a.rows()) + " x " + std::to_string(a.cols()) + ", B " +
                shape_string(b.shape()) + ", C " + shape_string(c.shape()) +
                "; need B [A.cols, N] and C [A.rows, N]");
  const std::size_t n = b.extent(1);
  const T* __restrict bp = b.data();
  T* __restrict cp = c.data();
  const Index* rp = a.row_ptr().data();
  const Index* ci = a.col_idx().data();
  const T* av = a.values().data();
  constexpr std::size_t tile = 512;
  const std::size_t work = a.nnz() * n;
  parallel_for(0, a.rows(), [&](std::size_t i) {
    T* crow = cp + i * n;
    for (std::size_t j0 = 0; j0 < n; j0 += tile) {
      const std::size_t len = std::min(tile, n - j0);
      T* ct = crow + j0;
      if (beta == T(0)) std::fill(ct, ct + len, T(0));
      else if (beta != T(1)) for (std::size_t j = 0; j < len; ++j) ct[j] *= beta;
      // Four nonzeros per pass over the C tile: a quarter of the C loads and stores.
      Index p = rp[i];
      for (; p + 4 <= rp[i + 1]; p += 4) {
        const T s0 = alpha * av[p], s1 = alpha * av[p + 1], s2 = alpha * av[p + 2], s3 = alpha * av[p + 3];
        const T* b0 = bp + static_cast<std::size_t>(ci[p]) * n + j0;
        const T* b1 = bp + static_cast<std::size_t>(ci[p + 1]) * n + j0;
        const T* b2 = bp + static_cast<std::size_t>(ci[p + 2]) * n + j0;
        const T* b3 = bp + static_cast<std::size_t>(ci[p + 3]) * n + j0;
        for (std::size_t j = 0; j < len; ++j) ct[j] += s0 * b0[j] + s1 * b1[j] + s2 * b2[j] + s3 * b3[j];
      }
      for (; p < rp[i + 1]; ++p) {
        const T s = alpha * av[p];
        const T* bt = bp + static_cast<std::size_t>(ci[p]) * n + j0;
        for (std::size_t j = 0; j < len; ++j) ct[j] += s * bt[j];
      }
    }
  }, work >= (std::size_t{1} << 16) ? 2 : a.rows() + 1);
}

}  // namespace spruce::sparse
