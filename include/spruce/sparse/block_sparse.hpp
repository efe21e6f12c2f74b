#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/simd.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/sparse/detail/compressed_rows.hpp"
#include "spruce/sparse/detail/panel_engine.hpp"
#include "spruce/sparse/format.hpp"

// Unrolling a wide block's columns completely lets GCC hoist every load and broadcast of
// the block to the top and spill the accumulators (SSE2 has 16 registers); four columns
// at a time keep the tile in registers. A pragma only; other compilers get nothing, nvcc
// included (it warns on a `#pragma GCC` it does not know, and this is host-only code).
#if defined(__CUDACC__)
#define SPRUCE_BLOCK_UNROLL
#elif defined(__clang__)
#define SPRUCE_BLOCK_UNROLL _Pragma("unroll 4")
#elif defined(__GNUC__)
#define SPRUCE_BLOCK_UNROLL _Pragma("GCC unroll 4")
#else
#define SPRUCE_BLOCK_UNROLL
#endif

namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {

/// The block shape of a block-sparse matrix, br x bc (block_sparse_matrix's options_type):
/// 4 x 4 unless said otherwise.
struct block_shape {
  std::size_t rows = 4, cols = 4;
};

/// Block compressed sparse rows (BSR) with a run-time block shape br x bc: the matrix is
/// cut into a grid of br x bc blocks and only the blocks that hold something are stored,
/// each as a dense row-major br x bc array, so a product reads the values with unit-stride
/// loads and no index per value, and each loaded row of B serves up to 8 rows of the block
/// at once. row_ptr has one offset per block row (plus one), col_idx one block-column
/// index per stored block (strictly increasing within a block row), values br * bc
/// entries per stored block, in col_idx order. When br or bc does not divide the matrix
/// the last block row / column is partial: its blocks are still stored whole, with zeros
/// for the entries outside the matrix (validate() insists on it). Built from a dense matrix and a keep mask (a block is stored when it keeps
/// anything; pruned entries inside it are stored as +0), from a dense matrix's nonzeros,
/// or from hand-built arrays that `validate()` checks. Index is the type of row_ptr and
/// col_idx.
template <class T, class Index = std::int32_t>
class block_sparse_matrix : public detail::compressed_rows<T, Index> {
 public:
  /// The block shape (sparse_format).
  using options_type = block_shape;

  block_sparse_matrix() = default;

  /// Adopts hand-built arrays; throws spruce::error, naming the first problem, unless they
  /// form a valid rows x cols matrix of br x bc blocks (see validate()).
  block_sparse_matrix(std::size_t rows, std::size_t cols, std::size_t br, std::size_t bc, std::vector<Index> row_ptr,
                      std::vector<Index> col_idx, std::vector<T> values)
      : detail::compressed_rows<T, Index>(std::move(row_ptr), std::move(col_idx), std::move(values)), rows_(rows), cols_(cols), br_(br), bc_(bc) {
    validate();
  }

  /// The named form of the array constructor, for call sites where a factory reads better.
  static block_sparse_matrix from_parts(std::size_t rows, std::size_t cols, std::size_t br, std::size_t bc,
                                        std::vector<Index> row_ptr, std::vector<Index> col_idx, std::vector<T> values) {
    return block_sparse_matrix(rows, cols, br, bc, std::move(row_ptr), std::move(col_idx), std::move(values));
  }

  /// The blocks of the 2-D `dense` view (any strides) in which `keep` (same shape) keeps
  /// at least one entry; the entries it prunes inside those blocks are stored as +0, so
  /// to_dense gives back the masked matrix exactly.
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static block_sparse_matrix from_dense(const V& dense_view, const mask& keep, std::size_t br, std::size_t bc) {
    const tensor_ref<const T> dense = to_const_ref(dense_view);
    check_input(dense, br, bc, "from_dense");
    if (!std::ranges::equal(keep.shape(), dense.shape()))
      throw error("block_sparse_matrix::from_dense: mask of shape " + shape_string(keep.shape()) +
                  " for a matrix of shape " + shape_string(dense.shape()) + "; pass the mask computed for this weight");
    const std::uint8_t* k = keep.data();
    const std::size_t cols = dense.extent(1);
    return build(dense, br, bc, [k, cols](std::size_t i, std::size_t j, T) { return k[i * cols + j] != 0; },
                 [k, cols](std::size_t i, std::size_t j, T v) { return k[i * cols + j] ? v : T(0); });
  }

  /// from_dense(dense, keep, shape.rows, shape.cols): the sparse_format form.
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static block_sparse_matrix from_dense(const V& dense, const mask& keep, const block_shape& shape) {
    return from_dense(dense, keep, shape.rows, shape.cols);
  }

  /// The blocks of the 2-D `dense` view that hold a nonzero, stored with every entry as it
  /// is (zeros included), so to_dense gives back `dense` exactly but for the sign of zeros
  /// in blocks not stored (-0 comes back +0, as with CSR).
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static block_sparse_matrix from_dense(const V& dense_view, std::size_t br, std::size_t bc) {
    const tensor_ref<const T> dense = to_const_ref(dense_view);
    check_input(dense, br, bc, "from_dense");
    return build(dense, br, bc, [](std::size_t, std::size_t, T v) { return v != T(0); },
                 [](std::size_t, std::size_t, T v) { return v; });
  }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  /// Rows of one block (br).
  std::size_t block_rows() const noexcept { return br_; }
  /// Columns of one block (bc).
  std::size_t block_cols() const noexcept { return bc_; }
  /// Block rows of the grid: ceil(rows / br).
  std::size_t block_row_count() const noexcept { return (rows_ + br_ - 1) / br_; }
  /// Block columns of the grid: ceil(cols / bc).
  std::size_t block_col_count() const noexcept { return (cols_ + bc_ - 1) / bc_; }
  /// Blocks stored; stored_values() is nnz_blocks() * br * bc, padding of partial blocks
  /// included.
  std::size_t nnz_blocks() const noexcept { return col_idx_.size(); }

  /// Writes the matrix into the packed 2-D `out` (any writable host view; zeros outside the
  /// stored blocks); exact.
  template <host_view V>
    requires mutable_view<V> && std::same_as<view_value_t<V>, T>
  void to_dense(const V& out_view) const {
    T* o = detail::zeroed_dense_output(to_ref(out_view), rows_, cols_, "block_sparse_matrix");
    for (std::size_t bi = 0; bi < block_row_count(); ++bi) {
      const std::size_t r_end = std::min(br_, rows_ - bi * br_);
      for (auto p = static_cast<std::size_t>(row_ptr_[bi]); p < static_cast<std::size_t>(row_ptr_[bi + 1]); ++p) {
        const std::size_t j0 = static_cast<std::size_t>(col_idx_[p]) * bc_, c_end = std::min(bc_, cols_ - j0);
        const T* blk = values_.data() + p * br_ * bc_;
        for (std::size_t r = 0; r < r_end; ++r)
          std::copy(blk + r * bc_, blk + r * bc_ + c_end, o + (bi * br_ + r) * cols_ + j0);
      }
    }
  }

  /// Checks the block shape (br, bc >= 1), sizes (row_ptr has block_row_count() + 1
  /// entries from 0 to nnz_blocks(), non-decreasing; values has nnz_blocks() * br * bc),
  /// indices (in [0, block_col_count()), strictly increasing within a block row) and that
  /// the padding of partial blocks is zero. Throws spruce::error naming the first violation.
  void validate() const {
    const auto fail = [](const std::string& what) {
      throw error("invalid block-sparse matrix: " + what + "; fix the arrays or build it with from_dense");
    };
    if (br_ == 0 || bc_ == 0)
      fail("block shape " + std::to_string(br_) + " x " + std::to_string(bc_) + " (blocks need at least one row and column)");
    const std::size_t nbr = block_row_count(), nbc = block_col_count(), bsize = br_ * bc_;
    this->check_structure(nbr, nbc, "block row", "block column index", "block",
                          "block rows + 1 = ceil(rows / br) + 1", fail);
    if (values_.size() / bsize != col_idx_.size() || values_.size() % bsize != 0)
      fail(std::to_string(values_.size()) + " values for " + std::to_string(col_idx_.size()) + " blocks of " +
           std::to_string(br_) + " x " + std::to_string(bc_) + " (need blocks * br * bc)");
    // Padding is never read by the product; requiring zeros keeps to_dense and spmm in
    // agreement and the representation unique.
    const std::size_t r_last = rows_ - (nbr ? nbr - 1 : 0) * br_, c_last = cols_ - (nbc ? nbc - 1 : 0) * bc_;
    for (std::size_t i = 0; i < nbr; ++i)
      for (auto p = static_cast<std::size_t>(row_ptr_[i]); p < static_cast<std::size_t>(row_ptr_[i + 1]); ++p) {
        const std::size_t r_end = i + 1 == nbr ? r_last : br_;
        const std::size_t c_end = static_cast<std::size_t>(col_idx_[p]) + 1 == nbc ? c_last : bc_;
        if (r_end == br_ && c_end == bc_) continue;
        for (std::size_t r = 0; r < br_; ++r)
          for (std::size_t c = 0; c < bc_; ++c)
            if ((r >= r_end || c >= c_end) && !(values_[p * bsize + r * bc_ + c] == T(0)))
              fail("block " + std::to_string(p) + " (block row " + std::to_string(i) + ") holds a nonzero at (" +
                   std::to_string(r) + ", " + std::to_string(c) + "), which lies outside the " + std::to_string(rows_) +
                   " x " + std::to_string(cols_) + " matrix (padding must be zero)");
      }
  }

 private:
  static void check_input(const tensor_ref<const T>& d, std::size_t br, std::size_t bc, const char* what) {
    if (d.rank() != 2)
      throw error(std::string("block_sparse_matrix::") + what + ": a matrix of shape " + shape_string(d.shape()) +
                  " is not 2-D; view a conv weight as [out, in*kh*kw]");
    if (br == 0 || bc == 0)
      throw error(std::string("block_sparse_matrix::") + what + ": block shape " + std::to_string(br) + " x " +
                  std::to_string(bc) + "; blocks need at least one row and one column (e.g. 4 x 4)");
  }

  // `stored(i, j, v)` decides whether entry (i, j) makes its block stored; `value(i, j, v)`
  // is what a stored block holds there.
  template <class Stored, class Value>
  static block_sparse_matrix build(const tensor_ref<const T>& d, std::size_t br, std::size_t bc, Stored stored,
                                   Value value) {
    block_sparse_matrix m;
    m.rows_ = d.extent(0), m.cols_ = d.extent(1);  // the grid first: block_row_count() reads it
    m.br_ = br, m.bc_ = bc;
    const std::size_t nbr = m.block_row_count(), nbc = m.block_col_count();
    if (nbc > static_cast<std::size_t>(std::numeric_limits<Index>::max()))
      throw error("block_sparse_matrix: " + std::to_string(nbc) + " block columns do not fit the index type; use a wider Index");
    const T* p = d.data();
    const std::size_t s0 = d.stride(0), s1 = d.stride(1);
    m.row_ptr_.assign(nbr + 1, 0);
    std::vector<std::uint8_t> hit(nbc);
    for (std::size_t bi = 0; bi < nbr; ++bi) {
      const std::size_t i0 = bi * br, i1 = std::min(m.rows_, i0 + br);
      std::fill(hit.begin(), hit.end(), std::uint8_t{0});
      for (std::size_t i = i0; i < i1; ++i)
        for (std::size_t j = 0; j < m.cols_; ++j)
          if (stored(i, j, p[i * s0 + j * s1])) hit[j / bc] = 1;
      for (std::size_t bj = 0; bj < nbc; ++bj) {
        if (!hit[bj]) continue;
        if (m.col_idx_.size() >= static_cast<std::size_t>(std::numeric_limits<Index>::max()))
          throw error("block_sparse_matrix: more blocks than the index type can count; use a 64-bit Index");
        m.col_idx_.push_back(static_cast<Index>(bj));
        const std::size_t base = m.values_.size(), j0 = bj * bc, j1 = std::min(m.cols_, j0 + bc);
        m.values_.resize(base + br * bc, T(0));
        for (std::size_t i = i0; i < i1; ++i)
          for (std::size_t j = j0; j < j1; ++j) m.values_[base + (i - i0) * bc + (j - j0)] = value(i, j, p[i * s0 + j * s1]);
      }
      m.row_ptr_[bi + 1] = static_cast<Index>(m.col_idx_.size());
    }
    return m;
  }

  using detail::compressed_rows<T, Index>::col_idx_;
  using detail::compressed_rows<T, Index>::row_ptr_;
  using detail::compressed_rows<T, Index>::values_;
  std::size_t rows_ = 0, cols_ = 0, br_ = 1, bc_ = 1;
};

namespace detail {

/// R rows x Wv registers of one block row's product against the packed slice: out[r * P
/// + j] = sum over blocks [lo, hi) and their columns c of A(r0 + r, c) * panel row c. Each
/// loaded row of the panel feeds R rows (the B reuse that blocks buy) and each broadcast
/// value Wv registers; R * Wv independent FMA chains (8, or 16 with AVX-512) hide the FMA
/// latency. BC is the block width as a compile-time constant (0: run time, `bc`).
template <class T, class Index, std::size_t R, std::size_t Wv, std::size_t BC>
void block_tile(const Index* __restrict ci, const T* __restrict vals, std::size_t lo, std::size_t hi, std::size_t br,
                std::size_t bc, std::size_t r0, std::size_t kb0, const T* __restrict panel, T* __restrict out) {
  constexpr std::size_t L = spruce::detail::simd_lanes<T>, P = Wv * L;
  const std::size_t w = BC ? BC : bc, bsize = br * w;
#if SPRUCE_HAS_VECTOR_EXTENSIONS
  using spruce::detail::simd;
  using spruce::detail::simd_load;
  simd<T> acc[R][Wv] = {};
  for (std::size_t p = lo; p < hi; ++p) {
    const T* a = vals + p * bsize + r0 * w;
    const T* bp = panel + (static_cast<std::size_t>(ci[p]) - kb0) * w * P;
    SPRUCE_BLOCK_UNROLL
    for (std::size_t c = 0; c < w; ++c) {
      simd<T> b[Wv];
      for (std::size_t q = 0; q < Wv; ++q) b[q] = simd_load(bp + c * P + q * L);
      for (std::size_t r = 0; r < R; ++r) {
        const T s = a[r * w + c];
        for (std::size_t q = 0; q < Wv; ++q) acc[r][q] += s * b[q];
      }
    }
  }
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t q = 0; q < Wv; ++q) spruce::detail::simd_store(out + r * P + q * L, acc[r][q]);
#else
  T acc[R][P] = {};
  for (std::size_t p = lo; p < hi; ++p) {
    const T* a = vals + p * bsize + r0 * w;
    const T* bp = panel + (static_cast<std::size_t>(ci[p]) - kb0) * w * P;
    for (std::size_t c = 0; c < w; ++c)
      for (std::size_t r = 0; r < R; ++r) {
        const T s = a[r * w + c];
        for (std::size_t j = 0; j < P; ++j) acc[r][j] += s * bp[c * P + j];
      }
  }
  for (std::size_t r = 0; r < R; ++r) std::copy(acc[r], acc[r] + P, out + r * P);
#endif
}

template <class T, class Index>
using block_tile_fn = void (*)(const Index*, const T*, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t,
                               std::size_t, const T*, T*);

/// The tile kernel for R rows (R * Wv <= tile_registers) and block width bc (1, 2, 4 and 8 compiled
/// for their width, others at run time).
template <class T, class Index, std::size_t R, std::size_t Wv>
block_tile_fn<T, Index> pick_block_tile(std::size_t bc) {
  switch (bc) {
    case 1: return &block_tile<T, Index, R, Wv, 1>;
    case 2: return &block_tile<T, Index, R, Wv, 2>;
    case 4: return &block_tile<T, Index, R, Wv, 4>;
    case 8: return &block_tile<T, Index, R, Wv, 8>;
    default: return &block_tile<T, Index, R, Wv, 0>;
  }
}

/// Rows of the register tile for blocks of `br` rows and panels of Wv registers: the
/// block's rows up to 8, within the accumulator budget.
inline std::size_t block_tile_rows(std::size_t br, std::size_t wv) noexcept {
  const std::size_t r = std::size_t{1} << (std::bit_width(std::min<std::size_t>(br, 8)) - 1);
  return std::min(r, std::max<std::size_t>(1, tile_registers / wv));
}

/// The product over panels of Wv registers' width. Each block row is cut into register
/// tiles of up to block_tile_rows rows; every tile walks its blocks in the current K slice
/// against the packed slice of B.
template <class T, class Index, std::size_t Wv>
void block_spmm(const block_sparse_matrix<T, Index>& a, const dense_operand<const T>& bo, const dense_operand<T>& co,
                T alpha, T beta) {
  constexpr std::size_t L = spruce::detail::simd_lanes<T>, P = Wv * L;
  constexpr std::size_t rmax = std::min<std::size_t>(8, tile_registers / Wv);
  const std::size_t br = a.block_rows(), bc = a.block_cols(), nbr = a.block_row_count(), nbc = a.block_col_count();
  const std::size_t m = a.rows();
  const std::size_t tile_rows = block_tile_rows(br, Wv);
  const double density = a.stored_values() == 0 ? 1.0 : static_cast<double>(a.stored_values()) /
                                                           static_cast<double>(nbr * br * nbc * bc);
  const std::size_t depth = std::max<std::size_t>(1, slice_depth<T, P>(density, tile_rows > 1) / bc);  // block columns
  const bool sliced = nbc > depth;
  block_tile_fn<T, Index> tiles[4] = {};  // by log2 of the tile's rows
  tiles[0] = pick_block_tile<T, Index, 1, Wv>(bc);
  if constexpr (rmax >= 2) tiles[1] = pick_block_tile<T, Index, 2, Wv>(bc);
  if constexpr (rmax >= 4) tiles[2] = pick_block_tile<T, Index, 4, Wv>(bc);
  if constexpr (rmax >= 8) tiles[3] = pick_block_tile<T, Index, 8, Wv>(bc);
  const Index* rp = a.row_ptr().data();
  const Index* ci = a.col_idx().data();
  const T* av = a.values().data();
  // Scratch of its own: the tile's output rows and (with several slices) a cursor per
  // block row marking where its next slice starts. The engine places it after whole
  // vector rows of the packed slice, so the cursors are aligned for size_t.
  const std::size_t cursor_elems = sliced ? (nbr * sizeof(std::size_t) + sizeof(T) - 1) / sizeof(T) : 0;
  const slicing k{a.cols(), nbc * bc, depth * bc, bc};
  panel_product<T, P>(bo, co, alpha, beta, k, nbr, a.stored_values() * bo.cols + m * bo.cols,
                      tile_rows * P + cursor_elems, [&](const panel_slice<T, P>& s) {
    T* out = s.scratch;
    auto* cursor = reinterpret_cast<std::size_t*>(out + tile_rows * P);
    if (sliced && s.first)
      for (std::size_t bi = s.r0; bi < s.r1; ++bi) cursor[bi - s.r0] = static_cast<std::size_t>(rp[bi]);
    const std::size_t kb0 = s.k0 / bc, kb1 = std::min(nbc, kb0 + depth);
    for (std::size_t bi = s.r0; bi < s.r1; ++bi) {
      std::size_t lo = static_cast<std::size_t>(rp[bi]), hi = static_cast<std::size_t>(rp[bi + 1]);
      if (sliced) {
        // Slices come in order, so each block row's blocks are consumed by a forward scan
        // (a binary search per slice mispredicts its way through most of its steps).
        const std::size_t end = hi;
        lo = hi = cursor[bi - s.r0];
        while (hi < end && static_cast<std::size_t>(ci[hi]) < kb1) ++hi;
        cursor[bi - s.r0] = hi;
        if (lo == hi && !s.first) continue;  // nothing to add in this slice
      }
      const std::size_t q = std::min(br, m - bi * br);  // real rows of this block row
      for (std::size_t r0 = 0; r0 < q;) {
        const std::size_t want = std::min(q - r0, tile_rows);
        const std::size_t lg = static_cast<std::size_t>(std::bit_width(want) - 1), rows = std::size_t{1} << lg;
        tiles[lg](ci, av, lo, hi, br, bc, r0, kb0, s.panel, out);
        for (std::size_t r = 0; r < rows; ++r) s.store(bi * br + r0 + r, out + r * P);
        r0 += rows;
      }
    }
  });
}

}  // namespace detail

/// C = alpha * A * B + beta * C with A block-sparse (M x K) and B (K x N), C (M x N)
/// dense (any host views), each row- or column-major (as for the CSR spmm). Panels of
/// B's columns (one to eight vector registers wide, fewer for narrow B) are packed in K
/// slices sized by the engine's cache knobs; each block row accumulates, a tile of up to 8
/// rows at a time, every stored block of the slice in registers, so each loaded row of B
/// serves the block's br rows. Panels (or, when B is narrow, row ranges) are split
/// between threads. beta == 0 overwrites C (NaN in C does not survive); alpha == 0 only
/// scales C. Throws spruce::error, writing nothing, when the shapes or layouts disagree.
template <class T, class Index, class VB, class VC>
  requires dense_operands_of<VB, VC, T>
void spmm(const block_sparse_matrix<T, Index>& a, const VB& b, const VC& c, std::type_identity_t<T> alpha = T(1),
          std::type_identity_t<T> beta = T(0)) {
  detail::spmm_entry<T>(a.rows(), a.cols(), to_const_ref(b), to_ref(c), alpha, beta, [&](const auto& bo, const auto& co) {
    // Register tile: up to 8 rows of a block row times as many registers of B's columns
    // as the accumulator budget leaves, but no wider than B needs.
    constexpr std::size_t L = spruce::detail::simd_lanes<T>;
    const std::size_t r = detail::block_tile_rows(a.block_rows(), 2);
    const std::size_t wv =
        detail::pow2_at_least((bo.cols + L - 1) / L, std::min<std::size_t>(8, detail::tile_registers / r));
    detail::with_panel_registers(wv, [&](auto w) { detail::block_spmm<T, Index, decltype(w)::value>(a, bo, co, alpha, beta); });
  });
}

}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse

#undef SPRUCE_BLOCK_UNROLL
