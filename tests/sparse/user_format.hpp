// A sparse format written the way a user would, outside spruce: coordinate lists (COO)
// sorted by row then column. It models spruce::sparse::sparse_format through public API
// only (no spruce::sparse::detail), with its spmm found by argument-dependent lookup, so
// the conformance suite, sparse::conv2d and choose_execution run it like spruce's formats.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/sparse/format.hpp"

namespace user {

template <class T>
class coo_matrix {
 public:
  using value_type = T;
  using options_type = spruce::sparse::no_options;

  struct entry {
    std::size_t row, col;
    T value;
  };

  coo_matrix() = default;
  coo_matrix(std::size_t rows, std::size_t cols, std::vector<entry> entries)
      : rows_(rows), cols_(cols), entries_(std::move(entries)) {
    validate();
  }

  static coo_matrix from_dense(const spruce::tensor_ref<const T>& dense, const spruce::mask& keep, const options_type&) {
    check_2d(dense);
    if (!std::ranges::equal(keep.shape(), dense.shape()))
      throw spruce::error("coo_matrix::from_dense: mask of shape " + spruce::shape_string(keep.shape()) +
                          " for a matrix of shape " + spruce::shape_string(dense.shape()) +
                          "; pass the mask computed for this weight");
    return build(dense, [&](std::size_t flat, T) { return keep.data()[flat] != 0; });
  }
  static coo_matrix from_nonzeros(const spruce::tensor_ref<const T>& dense) {
    check_2d(dense);
    return build(dense, [](std::size_t, T v) { return v != T(0); });
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t stored_values() const noexcept { return entries_.size(); }
  const std::vector<entry>& entries() const noexcept { return entries_; }

  void to_dense(const spruce::tensor_ref<T>& out) const {
    if (out.rank() != 2 || out.extent(0) != rows_ || out.extent(1) != cols_ || !out.is_contiguous())
      throw spruce::error("coo_matrix::to_dense: output of shape " + spruce::shape_string(out.shape()) +
                          "; pass a packed matrix of that shape");
    std::fill(out.data(), out.data() + rows_ * cols_, T(0));
    for (const auto& e : entries_) out.data()[e.row * cols_ + e.col] = e.value;
  }

  void validate() const {
    for (std::size_t p = 0; p < entries_.size(); ++p) {
      const auto& e = entries_[p];
      if (e.row >= rows_ || e.col >= cols_)
        throw spruce::error("invalid COO matrix: entry " + std::to_string(p) + " lies outside the matrix");
      if (p > 0 && (entries_[p - 1].row > e.row || (entries_[p - 1].row == e.row && entries_[p - 1].col >= e.col)))
        throw spruce::error("invalid COO matrix: entries are not sorted by (row, column) at entry " + std::to_string(p));
    }
  }

 private:
  static void check_2d(const spruce::tensor_ref<const T>& d) {
    if (d.rank() != 2)
      throw spruce::error("coo_matrix::from_dense: a matrix of shape " + spruce::shape_string(d.shape()) + " is not 2-D");
  }
  template <class Keep>
  static coo_matrix build(const spruce::tensor_ref<const T>& d, Keep keep) {
    coo_matrix a;
    a.rows_ = d.extent(0);
    a.cols_ = d.extent(1);
    for (std::size_t i = 0; i < a.rows_; ++i)
      for (std::size_t j = 0; j < a.cols_; ++j) {
        const T v = d.data()[i * d.stride(0) + j * d.stride(1)];
        if (keep(i * a.cols_ + j, v)) a.entries_.push_back({i, j, v});
      }
    return a;
  }

  std::size_t rows_ = 0, cols_ = 0;
  std::vector<entry> entries_;
};

/// C = alpha * A * B + beta * C, BLAS rules, found by ADL.
template <class T>
void spmm(const coo_matrix<T>& a, const spruce::tensor_ref<const T>& b, const spruce::tensor_ref<T>& c, T alpha = T(1),
          T beta = T(0)) {
  if (b.rank() != 2 || c.rank() != 2 || b.extent(0) != a.cols() || c.extent(0) != a.rows() || c.extent(1) != b.extent(1))
    throw spruce::error("coo spmm: A is " + std::to_string(a.rows()) + " x " + std::to_string(a.cols()) + ", B " +
                        spruce::shape_string(b.shape()) + ", C " + spruce::shape_string(c.shape()) +
                        "; need B [A.cols, N] and C [A.rows, N]");
  const std::size_t n = b.extent(1);
  const auto at = [](const auto& v, std::size_t i, std::size_t j) -> auto& { return v.data()[i * v.stride(0) + j * v.stride(1)]; };
  for (std::size_t i = 0; i < a.rows(); ++i)
    for (std::size_t j = 0; j < n; ++j) at(c, i, j) = beta == T(0) ? T(0) : beta * at(c, i, j);
  if (alpha == T(0)) return;
  for (const auto& e : a.entries())
    for (std::size_t j = 0; j < n; ++j) at(c, e.row, j) += alpha * e.value * at(b, e.col, j);
}

}  // namespace user
