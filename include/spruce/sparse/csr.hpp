#pragma once

#include <algorithm>
#include <concepts>
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
#include "spruce/core/view.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/sparse/detail/compressed_rows.hpp"
#include "spruce/sparse/detail/panel_engine.hpp"
#include "spruce/sparse/format.hpp"

namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {

/// Compressed sparse rows: row_ptr (rows + 1 offsets), col_idx and values (nnz each),
/// column indices strictly increasing within a row. Built from a dense matrix and a keep
/// mask (every kept entry is stored, zeros included, so the pattern is the mask's), from
/// a dense matrix's nonzeros, or from hand-built arrays that `validate()` checks. Index is
/// the type of row_ptr and col_idx (int32 by default, as cuSPARSE and MKL use).
template <class T, class Index = std::int32_t>
class csr_matrix : public detail::compressed_rows<T, Index> {
 public:
  /// CSR needs nothing beyond the mask (sparse_format).
  using options_type = no_options;

  csr_matrix() = default;

  /// Adopts hand-built arrays; throws spruce::error, naming the first problem, unless they
  /// form a valid rows x cols CSR matrix.
  csr_matrix(std::size_t rows, std::size_t cols, std::vector<Index> row_ptr, std::vector<Index> col_idx,
             std::vector<T> values)
      : detail::compressed_rows<T, Index>(std::move(row_ptr), std::move(col_idx), std::move(values)), rows_(rows), cols_(cols) {
    validate();
  }

  /// The entries of the 2-D `dense` view (any host view of T, any strides) that `keep`
  /// keeps (mask of the same shape).
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static csr_matrix from_dense(const V& dense_view, const mask& keep, const options_type& = {}) {
    const tensor_ref<const T> dense = to_const_ref(dense_view);
    check_2d(dense, "from_dense");
    if (!std::ranges::equal(keep.shape(), dense.shape()))
      throw error("csr_matrix::from_dense: mask of shape " + shape_string(keep.shape()) + " for a matrix of shape " +
                  shape_string(dense.shape()) + "; pass the mask computed for this weight");
    return build(dense, [&](std::size_t flat, T) { return keep.data()[flat] != 0; });
  }

  /// The nonzero entries of the 2-D `dense` view.
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static csr_matrix from_dense(const V& dense_view) {
    const tensor_ref<const T> dense = to_const_ref(dense_view);
    check_2d(dense, "from_dense");
    return build(dense, [](std::size_t, T v) { return v != T(0); });
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  /// Entries stored, explicit zeros included (stored_values(), as CSR counts them).
  std::size_t nnz() const noexcept { return values_.size(); }

  /// Writes the matrix into the packed 2-D `out` (any writable host view; zeros
  /// elsewhere); exact.
  template <host_view V>
    requires mutable_view<V> && std::same_as<view_value_t<V>, T>
  void to_dense(const V& out_view) const {
    T* o = detail::zeroed_dense_output(to_ref(out_view), rows_, cols_, "csr_matrix");
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
    this->check_structure(rows_, cols_, "row", "column index", "entry", "rows + 1", fail);
    if (col_idx_.size() != values_.size())
      fail(std::to_string(col_idx_.size()) + " column indices but " + std::to_string(values_.size()) + " values");
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

  using detail::compressed_rows<T, Index>::col_idx_;
  using detail::compressed_rows<T, Index>::row_ptr_;
  using detail::compressed_rows<T, Index>::values_;
  std::size_t rows_ = 0, cols_ = 0;
};

namespace detail {

/// Columns of B (and C) one CSR register tile covers: four vector registers, so 16 floats
/// with SSE2, 32 with AVX, 64 with AVX-512.
template <class T>
inline constexpr std::size_t csr_panel = 4 * spruce::detail::simd_lanes<T>;

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

/// C = alpha * A * B + beta * C for B and C with fewer than a quarter-panel of columns:
/// rows of A split between threads, one pass over each row's nonzeros.
template <class T, class Index>
void csr_narrow(const csr_matrix<T, Index>& a, const dense_operand<const T>& b, const dense_operand<T>& c, T alpha, T beta) {
  constexpr std::size_t most = csr_panel<T> / 4;
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

/// The product over panels of csr_panel columns, in L2-sized K slices; with several
/// slices, where each row's entries of each slice begin is found once per call (binary
/// search in the sorted column indices) rather than once per panel.
template <class T, class Index>
void csr_product(const csr_matrix<T, Index>& a, const dense_operand<const T>& bo, const dense_operand<T>& co, T alpha,
                 T beta) {
  constexpr std::size_t P = csr_panel<T>;
  if (bo.cols < P / 4) {
    // A few columns (a linear layer at batch 1-3, a matrix-vector product): a padded
    // panel would waste most of its lanes, so each row of A walks its nonzeros once and
    // gathers the few B entries it needs.
    csr_narrow(a, bo, co, alpha, beta);
    return;
  }
  const std::size_t k_total = a.cols(), m = a.rows();
  const std::size_t slice = std::max<std::size_t>(1, std::min(k_total, slice_depth<T, P>(1.0, true)));
  const slicing k{k_total, k_total, slice, 1};
  const std::size_t slices = k.count();
  const Index* rp = a.row_ptr().data();
  const Index* ci = a.col_idx().data();
  const T* av = a.values().data();
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
  panel_product<T, P>(bo, co, alpha, beta, k, m, a.nnz() * bo.cols + m * bo.cols, P, [&](const panel_slice<T, P>& s) {
    const std::size_t si = s.k0 / slice;
    for (std::size_t i = s.r0; i < s.r1; ++i) {
      const Index* bi = slices > 1 ? bounds.data() + i * (slices + 1) + si : nullptr;
      const Index p = bi ? bi[0] : rp[i], e = bi ? bi[1] : rp[i + 1];
      csr_row_panel<T, Index, P>(ci, av, p, e, s.panel, s.k0, s.scratch);
      s.store(i, s.scratch);
    }
  });
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
template <class T, class Index, class VB, class VC>
  requires dense_operands_of<VB, VC, T>
void spmm(const csr_matrix<T, Index>& a, const VB& b, const VC& c, std::type_identity_t<T> alpha = T(1),
          std::type_identity_t<T> beta = T(0)) {
  detail::spmm_entry<T>(a.rows(), a.cols(), to_const_ref(b), to_ref(c), alpha, beta,
                        [&](const auto& bo, const auto& co) { detail::csr_product(a, bo, co, alpha, beta); });
}

}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
