#pragma once

#include <algorithm>
#include <cstring>
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
#include "spruce/core/simd.hpp"
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

namespace detail {

/// Columns of B (and C) one register tile covers: four vector registers, so 16 floats with
/// SSE2, 32 with AVX, 64 with AVX-512.
template <class T>
inline constexpr std::size_t spmm_panel = 4 * spruce::detail::simd_lanes<T>;

#ifndef SPRUCE_SPMM_PANEL_KIB
/// Size of the packed B panel, in KiB; the default suits a 512 KiB - 2 MiB L2. Define it
/// before including spruce to tune for another cache.
#define SPRUCE_SPMM_PANEL_KIB 384
#endif

/// Rows of B packed per pass: the packed panel (rows x panel width) is kept near
/// SPRUCE_SPMM_PANEL_KIB so that it stays in L2 while every row of A streams over it.
template <class T>
inline constexpr std::size_t spmm_depth = std::size_t{SPRUCE_SPMM_PANEL_KIB} * 1024 / (spmm_panel<T> * sizeof(T));

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

/// Copies B[k0:k1, j0:j0+len) into `panel` (width P, zero past len) so the product reads
/// one contiguous, L2-resident block whatever B's layout and however its rows alias in
/// the cache (a 4 KiB row stride would map every row to the same L1 set).
template <class T, std::size_t P>
void pack_panel(const dense_operand<const T>& b, std::size_t k0, std::size_t k1, std::size_t j0, std::size_t len,
                T* __restrict panel) {
  if (b.cs == 1) {
    for (std::size_t k = k0; k < k1; ++k) {
      const T* src = b.data + k * b.rs + j0;
      T* dst = panel + (k - k0) * P;
      std::memcpy(dst, src, len * sizeof(T));
      std::fill(dst + len, dst + P, T(0));
    }
  } else {
    if (len < P)
      for (std::size_t k = k0; k < k1; ++k) std::fill(panel + (k - k0) * P + len, panel + (k - k0 + 1) * P, T(0));
    for (std::size_t jj = 0; jj < len; ++jj) {
      const T* src = b.data + (j0 + jj) * b.cs;
      for (std::size_t k = k0; k < k1; ++k) panel[(k - k0) * P + jj] = src[k * b.rs];
    }
  }
}

/// out[0:P) = sum over entries [p, e) of values[p] * panel row (col_idx[p] - k0). Two
/// interleaved sets of four register accumulators: eight independent FMA chains hide the
/// FMA latency, and each value is broadcast once per four vector loads.
template <class T, class Index, std::size_t P>
inline void csr_row_panel(const Index* __restrict ci, const T* __restrict av, Index p, Index e, const T* __restrict panel,
                          std::size_t k0, T* __restrict out) {
#if SPRUCE_HAS_VECTOR_EXTENSIONS
  using spruce::detail::simd;
  using spruce::detail::simd_load;
  constexpr std::size_t L = spruce::detail::simd_lanes<T>;
  static_assert(P == 4 * L);
  simd<T> a0{}, a1{}, a2{}, a3{}, c0{}, c1{}, c2{}, c3{};
  for (; p + 2 <= e; p += 2) {
    const T v0 = av[p], v1 = av[p + 1];
    const T* b0 = panel + (static_cast<std::size_t>(ci[p]) - k0) * P;
    const T* b1 = panel + (static_cast<std::size_t>(ci[p + 1]) - k0) * P;
    a0 += v0 * simd_load(b0);
    a1 += v0 * simd_load(b0 + L);
    a2 += v0 * simd_load(b0 + 2 * L);
    a3 += v0 * simd_load(b0 + 3 * L);
    c0 += v1 * simd_load(b1);
    c1 += v1 * simd_load(b1 + L);
    c2 += v1 * simd_load(b1 + 2 * L);
    c3 += v1 * simd_load(b1 + 3 * L);
  }
  if (p < e) {
    const T v0 = av[p];
    const T* b0 = panel + (static_cast<std::size_t>(ci[p]) - k0) * P;
    a0 += v0 * simd_load(b0);
    a1 += v0 * simd_load(b0 + L);
    a2 += v0 * simd_load(b0 + 2 * L);
    a3 += v0 * simd_load(b0 + 3 * L);
  }
  spruce::detail::simd_store(out, a0 + c0);
  spruce::detail::simd_store(out + L, a1 + c1);
  spruce::detail::simd_store(out + 2 * L, a2 + c2);
  spruce::detail::simd_store(out + 3 * L, a3 + c3);
#else
  T acc[P] = {};
  for (; p < e; ++p) {
    const T v = av[p];
    const T* bt = panel + (static_cast<std::size_t>(ci[p]) - k0) * P;
    for (std::size_t j = 0; j < P; ++j) acc[j] += v * bt[j];
  }
  std::copy(acc, acc + P, out);
#endif
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

/// Runs `panel_job(j0, len, row_begin, row_end, scratch)` over every column panel of C,
/// split between threads: whole panels per thread when there are enough of them (each
/// thread keeps its packed B panel to itself), otherwise panels times row ranges. Scratch
/// (`scratch_size` elements per thread) is allocated before the parallel region, so
/// nothing inside it can throw.
template <class T, std::size_t P, class Job>
void for_each_panel(std::size_t rows, std::size_t cols, std::size_t work, std::size_t scratch_size, Job&& panel_job) {
  const std::size_t panels = (cols + P - 1) / P;
  if (panels == 0 || rows == 0) return;
  const bool parallel = work >= (std::size_t{1} << 17) && max_threads() > 1;
  const std::size_t threads = parallel ? static_cast<std::size_t>(max_threads()) : 1;
  const std::size_t row_parts = panels >= threads ? 1 : std::min(rows, (threads + panels - 1) / panels);
  const std::size_t tasks = panels * row_parts;
  std::vector<T> scratch(threads * scratch_size);
  parallel_chunks(tasks, [&](std::size_t t, std::size_t, std::size_t b, std::size_t e) {
    T* mine = scratch.data() + t * scratch_size;
    for (std::size_t task = b; task < e; ++task) {
      const std::size_t q = task / row_parts, r = task % row_parts;
      const std::size_t j0 = q * P;
      panel_job(j0, std::min(P, cols - j0), rows * r / row_parts, rows * (r + 1) / row_parts, mine);
    }
  }, parallel ? 1 : tasks + 1);
}

/// C = alpha * A * B + beta * C for B and C with fewer than a quarter-panel of columns:
/// rows of A split between threads, one pass over each row's nonzeros.
template <class T, class Index>
void csr_narrow(const csr_matrix<T, Index>& a, const dense_operand<const T>& b, const dense_operand<T>& c, T alpha, T beta) {
  constexpr std::size_t most = spmm_panel<T> / 4;
  const std::size_t n = b.cols;
  const Index* rp = a.row_ptr().data();
  const Index* ci = a.col_idx().data();
  const T* av = a.values().data();
  parallel_for(0, a.rows(), [&](std::size_t i) {
    T acc[most] = {};
    for (Index p = rp[i]; p < rp[i + 1]; ++p) {
      const T v = av[p];
      const T* brow = b.data + static_cast<std::size_t>(ci[p]) * b.rs;
      for (std::size_t j = 0; j < n; ++j) acc[j] += v * brow[j * b.cs];
    }
    store_panel(c, i, 0, n, acc, alpha, beta, true);
  }, total_work{a.nnz() * n + a.rows()});
}

}  // namespace detail

/// C = alpha * A * B + beta * C with A sparse (M x K) and B (K x N), C (M x N) dense. B
/// and C may each be row-major or column-major (a column-major B is X^T for a linear
/// layer's X * W^T; a column-major C is then Y^T, so `spmm(W, X^T, Y^T)` computes
/// Y = X * W^T in place). The product runs over panels of B's columns (four vector
/// registers wide): each panel is packed, in slices of rows that fit in L2, and every row
/// of A accumulates its nonzeros against it in registers, so B is read from memory once
/// and C written once. Panels are split between threads (OpenMP). beta == 0 overwrites C
/// (NaN in C does not survive); alpha == 0 only scales C, as in BLAS (B is not read).
/// Throws spruce::error, writing nothing, when the shapes or layouts disagree.
template <class T, class Index>
void spmm(const csr_matrix<T, Index>& a, const tensor_ref<const T>& b, const tensor_ref<T>& c, T alpha = T(1),
          T beta = T(0)) {
  const auto operands = detail::spmm_operands(a.rows(), a.cols(), b, c);
  const auto& bo = operands.first;
  const auto& co = operands.second;
  if (alpha == T(0)) return detail::scale_dense(co, beta);
  constexpr std::size_t P = detail::spmm_panel<T>;
  constexpr std::size_t depth = detail::spmm_depth<T>;
  if (bo.cols < P / 4) {
    // A few columns (a linear layer at batch 1-3, a matrix-vector product): a padded
    // panel would waste most of its lanes, so each row of A walks its nonzeros once and
    // gathers the few B entries it needs.
    detail::csr_narrow(a, bo, co, alpha, beta);
    return;
  }
  const std::size_t k_total = a.cols();
  const std::size_t slice = std::max<std::size_t>(1, std::min(k_total, depth));
  const Index* rp = a.row_ptr().data();
  const Index* ci = a.col_idx().data();
  const T* av = a.values().data();
  const std::size_t m = a.rows();
  // With several K slices, where each row's entries of each slice begin, found once per
  // call (binary search in the sorted column indices) rather than once per panel.
  const std::size_t slices = std::max<std::size_t>(1, (k_total + slice - 1) / slice);  // K = 0 still writes beta * C
  std::vector<Index> bounds;
  if (slices > 1) {
    bounds.resize(m * (slices + 1));
    parallel_for(0, m, [&](std::size_t i) {
      Index* bi = bounds.data() + i * (slices + 1);
      bi[0] = rp[i];
      for (std::size_t s = 1; s < slices; ++s)
        bi[s] = static_cast<Index>(std::lower_bound(ci + bi[s - 1], ci + rp[i + 1], static_cast<Index>(s * slice)) - ci);
      bi[slices] = rp[i + 1];
    }, total_work{a.nnz()});
  }
  detail::for_each_panel<T, P>(m, bo.cols, a.nnz() * bo.cols + m * bo.cols, slice * P + P,
                               [&](std::size_t j0, std::size_t len, std::size_t r0, std::size_t r1, T* scratch) {
    T* panel = scratch;
    T* acc = scratch + slice * P;
    for (std::size_t s = 0; s < slices; ++s) {
      const std::size_t k0 = s * slice, k1 = std::min(k_total, k0 + slice);
      detail::pack_panel<T, P>(bo, k0, k1, j0, len, panel);
      for (std::size_t i = r0; i < r1; ++i) {
        const Index* bi = slices > 1 ? bounds.data() + i * (slices + 1) + s : nullptr;
        const Index p = bi ? bi[0] : rp[i], e = bi ? bi[1] : rp[i + 1];
        detail::csr_row_panel<T, Index, P>(ci, av, p, e, panel, k0, acc);
        detail::store_panel(co, i, j0, len, acc, alpha, beta, s == 0);
      }
    }
  });
}

}  // namespace spruce::sparse
