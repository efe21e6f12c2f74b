#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/simd.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/granularity/n_m.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/sparse/detail/panel_engine.hpp"
#include "spruce/sparse/format.hpp"

namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {

namespace detail {

/// Position t of a row's packed positions (`bits` bits each, low bits first).
inline std::size_t n_m_position(const std::uint8_t* row, std::size_t t, std::size_t bits) noexcept {
  return static_cast<std::size_t>(row[t * bits / 8] >> (t * bits % 8)) & ((std::size_t{1} << bits) - 1);
}

/// Groups per step that start and end on a byte of positions: 8 / gcd(8, N * bits).
inline constexpr std::size_t n_m_step_groups(std::size_t n, std::size_t bits) noexcept {
  return 8 / std::gcd(std::size_t{8}, n * bits);
}

}  // namespace detail

/// An N:M compressed matrix (the layout Ampere sparse tensor cores and cuSPARSELt use): each
/// row is cut into groups of M consecutive columns and every group stores exactly N values
/// with their positions inside the group, so the work and the storage per row are fixed
/// and known without an index array of offsets. N and M are run-time values (0 <= N < M
/// <= 256). A group keeping fewer than N stores explicit zeros at its lowest unused
/// positions; when M does not divide the column count the last group is short, as if
/// padded with zero columns, and slots that fall past the end hold zeros.
///
/// Layout: values() holds rows x groups_per_row() x N values, row-major (group g of row i
/// starts at (i * groups_per_row() + g) * N), positions strictly increasing within a
/// group. positions() packs the matching in-group positions with index_bits() bits each
/// -- 1 for M <= 2, 2 for M <= 4 (2:4 stores a group's two positions in one nibble), 4 for
/// M <= 16, 8 up to 256: the power of two at least ceil(log2 M), so that no position
/// straddles a byte -- row by row: position t of a row (t = g * N + slot) sits at bit
/// t * index_bits() of the row's row_bytes() bytes, low bits first; unused bits are zero.
/// Built from a dense matrix and a keep mask that has the pattern (computed by
/// spruce::n_m_mask / n_m_prune), from a dense matrix whose nonzeros have it, or from
/// hand-built arrays that `validate()` checks.
template <class T>
class n_m_matrix {
 public:
  using value_type = T;
  /// The N:M pattern (sparse_format): the run-time granularity::n_m_pattern, which a
  /// compile-time granularity::n_m<N, M> converts to. Its allow_padding is not consulted:
  /// the matrix always stores a short last group as if zero-padded.
  using options_type = granularity::n_m_pattern;

  n_m_matrix() = default;

  /// Adopts hand-built arrays (see the class comment for the layout); throws spruce::error,
  /// naming the first problem, unless they form a valid rows x cols N:M matrix.
  n_m_matrix(std::size_t rows, std::size_t cols, std::size_t n, std::size_t m, std::vector<T> values,
             std::vector<std::uint8_t> positions)
      : rows_(rows), cols_(cols), n_(n), m_(m), values_(std::move(values)), positions_(std::move(positions)) {
    check_pattern(n, m, "n_m_matrix");
    validate();
  }

  /// The named form of the array constructor, for call sites where a factory reads better.
  static n_m_matrix from_parts(std::size_t rows, std::size_t cols, std::size_t n, std::size_t m,
                               std::vector<T> values, std::vector<std::uint8_t> positions) {
    return n_m_matrix(rows, cols, n, m, std::move(values), std::move(positions));
  }

  /// The entries of the 2-D `dense` view (any strides) that `keep` (same shape) keeps;
  /// groups run along the last axis. Throws spruce::error naming the row and group when a
  /// group keeps more than N: prune with spruce::n_m_prune first.
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static n_m_matrix from_dense(const V& dense_view, const mask& keep, std::size_t n, std::size_t m) {
    const tensor_ref<const T> dense = to_const_ref(dense_view);
    check_input(dense, n, m);
    if (!std::ranges::equal(keep.shape(), dense.shape()))
      throw error("n_m_matrix::from_dense: mask of shape " + shape_string(keep.shape()) + " for a matrix of shape " +
                  shape_string(dense.shape()) + "; pass the mask computed for this weight");
    const std::uint8_t* k = keep.data();
    const std::size_t cols = dense.extent(1);
    return build(dense, n, m, "the mask keeps", [k, cols](std::size_t i, std::size_t j, T) { return k[i * cols + j] != 0; },
                 [k, cols](std::size_t i, std::size_t j, T v) { return k[i * cols + j] ? v : T(0); });
  }

  /// from_dense(dense, keep, pattern.n, pattern.m): the sparse_format form.
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static n_m_matrix from_dense(const V& dense, const mask& keep, const granularity::n_m_pattern& pattern) {
    return from_dense(dense, keep, pattern.n, pattern.m);
  }

  /// The nonzeros of the 2-D `dense` view, which must have the N:M pattern along the last
  /// axis (at most N nonzeros per group); every slot stores the value found there, fillers
  /// included, so to_dense gives back `dense` exactly but for the sign of zeros that no
  /// slot holds (-0 comes back +0, as with CSR).
  template <host_view V>
    requires std::same_as<view_value_t<V>, T>
  static n_m_matrix from_dense(const V& dense_view, std::size_t n, std::size_t m) {
    const tensor_ref<const T> dense = to_const_ref(dense_view);
    check_input(dense, n, m);
    return build(dense, n, m, "the matrix has", [](std::size_t, std::size_t, T v) { return v != T(0); },
                 [](std::size_t, std::size_t, T v) { return v; });
  }

  /// Bits per stored position for groups of m: 1, 2, 4 or 8 (see the class comment).
  static constexpr std::size_t index_bits_for(std::size_t m) noexcept { return m <= 2 ? 1 : m <= 4 ? 2 : m <= 16 ? 4 : 8; }

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  /// Values stored per group (the N of N:M).
  std::size_t n() const noexcept { return n_; }
  /// Columns per group (the M of N:M).
  std::size_t m() const noexcept { return m_; }
  /// ceil(cols / M).
  std::size_t groups_per_row() const noexcept { return (cols_ + m_ - 1) / m_; }
  std::size_t index_bits() const noexcept { return index_bits_for(m_); }
  /// Bytes of positions() per row: ceil(groups_per_row() * N * index_bits() / 8).
  std::size_t row_bytes() const noexcept { return (groups_per_row() * n_ * index_bits() + 7) / 8; }
  /// Values held, explicit zeros included: rows * groups_per_row() * N.
  std::size_t stored_values() const noexcept { return values_.size(); }
  const std::vector<T>& values() const noexcept { return values_; }
  const std::vector<std::uint8_t>& positions() const noexcept { return positions_; }

  /// The in-group position of slot s of group g of row i (column g * M + position).
  std::size_t position(std::size_t i, std::size_t g, std::size_t s) const noexcept {
    return detail::n_m_position(positions_.data() + i * row_bytes(), g * n_ + s, index_bits());
  }

  /// Writes the matrix into the packed 2-D `out` (any writable host view; zeros outside the
  /// stored slots); exact.
  template <host_view V>
    requires mutable_view<V> && std::same_as<view_value_t<V>, T>
  void to_dense(const V& out_view) const {
    T* o = detail::zeroed_dense_output(to_ref(out_view), rows_, cols_, "n_m_matrix");
    const std::size_t groups = groups_per_row();
    for (std::size_t i = 0; i < rows_; ++i)
      for (std::size_t g = 0; g < groups; ++g)
        for (std::size_t s = 0; s < n_; ++s) {
          const std::size_t j = g * m_ + position(i, g, s);
          if (j < cols_) o[i * cols_ + j] = values_[(i * groups + g) * n_ + s];
        }
  }

  /// Checks sizes (values has rows * groups_per_row() * N entries, positions rows *
  /// row_bytes()), positions (each < M, strictly increasing within a group, unused bits
  /// zero) and that slots past the last column hold zero. Throws spruce::error naming the
  /// first violation.
  void validate() const {
    const auto fail = [](const std::string& what) {
      throw error("invalid N:M matrix: " + what + "; fix the arrays or build it with from_dense");
    };
    const std::size_t groups = groups_per_row(), rb = row_bytes(), bits = index_bits();
    if (values_.size() != rows_ * groups * n_)
      fail(std::to_string(values_.size()) + " values for " + std::to_string(rows_) + " rows of " + std::to_string(groups) +
           " groups of " + std::to_string(n_) + " (need rows * ceil(cols / M) * N)");
    if (positions_.size() != rows_ * rb)
      fail(std::to_string(positions_.size()) + " position bytes for " + std::to_string(rows_) + " rows of " +
           std::to_string(rb) + " (need rows * ceil(groups * N * bits / 8) with " + std::to_string(bits) +
           "-bit positions)");
    for (std::size_t i = 0; i < rows_; ++i) {
      const std::uint8_t* row = positions_.data() + i * rb;
      for (std::size_t g = 0; g < groups; ++g)
        for (std::size_t s = 0; s < n_; ++s) {
          const std::size_t p = detail::n_m_position(row, g * n_ + s, bits);
          const std::string where = "row " + std::to_string(i) + ", group " + std::to_string(g) + ", slot " + std::to_string(s);
          if (p >= m_) fail("position " + std::to_string(p) + " at " + where + " is not below M = " + std::to_string(m_));
          if (s > 0 && detail::n_m_position(row, g * n_ + s - 1, bits) >= p)
            fail("positions of row " + std::to_string(i) + ", group " + std::to_string(g) +
                 " are not strictly increasing at slot " + std::to_string(s) + " (duplicated or unsorted)");
          if (g * m_ + p >= cols_ && !(values_[(i * groups + g) * n_ + s] == T(0)))
            fail("the value at " + where + " is nonzero but lies at column " + std::to_string(g * m_ + p) + ", past the " +
                 std::to_string(cols_) + " columns (padding must be zero)");
        }
      const std::size_t used = groups * n_ * bits;
      if (used % 8 != 0 && (row[rb - 1] >> (used % 8)) != 0)
        fail("row " + std::to_string(i) + " has nonzero unused bits after its last position");
    }
  }

 private:
  static void check_pattern(std::size_t n, std::size_t m, const char* what) {
    if (m == 0 || m > 256 || n >= m)
      throw error(std::string(what) + ": pattern " + std::to_string(n) + ":" + std::to_string(m) +
                  "; N:M needs 0 <= N < M <= 256 (e.g. 2:4)");
  }

  static void check_input(const tensor_ref<const T>& d, std::size_t n, std::size_t m) {
    check_pattern(n, m, "n_m_matrix::from_dense");
    if (d.rank() != 2)
      throw error("n_m_matrix::from_dense: a matrix of shape " + shape_string(d.shape()) +
                  " is not 2-D; view a conv weight as [out, in*kh*kw]");
  }

  // `kept(i, j, v)` marks the entries that must be stored; `value(i, j, v)` is what a slot
  // at (i, j) holds, kept or filler.
  template <class Kept, class Value>
  static n_m_matrix build(const tensor_ref<const T>& d, std::size_t n, std::size_t m, const char* has, Kept kept,
                          Value value) {
    n_m_matrix a;
    a.rows_ = d.extent(0);
    a.cols_ = d.extent(1);
    a.n_ = n;
    a.m_ = m;
    const std::size_t groups = a.groups_per_row(), rb = a.row_bytes(), bits = a.index_bits();
    a.values_.assign(a.rows_ * groups * n, T(0));
    a.positions_.assign(a.rows_ * rb, 0);
    const T* p = d.data();
    const std::size_t s0 = d.stride(0), s1 = d.stride(1);
    std::vector<std::uint8_t> take(m);
    for (std::size_t i = 0; i < a.rows_; ++i) {
      std::uint8_t* row = a.positions_.data() + i * rb;
      for (std::size_t g = 0; g < groups; ++g) {
        const std::size_t j0 = g * m, len = std::min(m, a.cols_ - j0);
        std::size_t count = 0;
        for (std::size_t q = 0; q < len; ++q) {
          take[q] = kept(i, j0 + q, p[i * s0 + (j0 + q) * s1]) ? 1 : 0;
          count += take[q];
        }
        std::fill(take.begin() + static_cast<std::ptrdiff_t>(len), take.end(), std::uint8_t{0});
        if (count > n)
          throw error("n_m_matrix::from_dense: " + std::string(has) + " " + std::to_string(count) + " entries in row " +
                      std::to_string(i) + ", group " + std::to_string(g) + " (columns " + std::to_string(j0) + " to " +
                      std::to_string(j0 + len - 1) + "); the " + std::to_string(n) + ":" + std::to_string(m) +
                      " pattern stores at most " + std::to_string(n) + " of every " + std::to_string(m) +
                      " consecutive columns; prune with spruce::n_m_prune first");
        // Fillers take the lowest free positions, so the slots stay sorted and in range
        // whenever the group is long enough.
        for (std::size_t q = 0; q < m && count < n; ++q)
          if (!take[q]) take[q] = 2, ++count;
        std::size_t s = 0;
        for (std::size_t q = 0; q < m; ++q) {
          if (!take[q]) continue;
          const std::size_t t = g * n + s;
          row[t * bits / 8] = static_cast<std::uint8_t>(row[t * bits / 8] | q << (t * bits % 8));
          if (q < len) a.values_[(i * groups + g) * n + s] = value(i, j0 + q, p[i * s0 + (j0 + q) * s1]);
          ++s;
        }
      }
    }
    return a;
  }

  std::size_t rows_ = 0, cols_ = 0, n_ = 0, m_ = 1;
  std::vector<T> values_;
  std::vector<std::uint8_t> positions_;
};

namespace detail {

#if SPRUCE_HAS_VECTOR_EXTENSIONS
template <class T, std::size_t Wv>
inline void n_m_axpy(spruce::detail::simd<T> (&acc)[Wv], T s, const T* __restrict b) noexcept {
  constexpr std::size_t L = spruce::detail::simd_lanes<T>;
  for (std::size_t q = 0; q < Wv; ++q) acc[q] += s * spruce::detail::simd_load(b + q * L);
}
#else
template <class T, std::size_t Wv>
inline void n_m_axpy(T (&acc)[Wv * spruce::detail::simd_lanes<T>], T s, const T* __restrict b) noexcept {
  for (std::size_t j = 0; j < Wv * spruce::detail::simd_lanes<T>; ++j) acc[j] += s * b[j];
}
#endif

/// out[0:P) = sum over `groups` groups of a row (values `v`, positions from the
/// byte-aligned `ix`) of value * panel row (group * M + position), accumulated in Wv
/// registers. NN, MM fix the pattern at compile time (0, 0: run time), which unrolls a
/// step of groups whose positions fill whole bytes -- for 2:4, one byte, two groups and
/// four rows of B -- into straight-line code with constant shifts.
template <class T, std::size_t Wv, std::size_t NN, std::size_t MM>
void n_m_row_panel(const T* __restrict v, const std::uint8_t* __restrict ix, std::size_t groups, std::size_t n,
                   std::size_t m, const T* __restrict panel, T* __restrict out) {
  constexpr std::size_t L = spruce::detail::simd_lanes<T>, P = Wv * L;
#if SPRUCE_HAS_VECTOR_EXTENSIONS
  spruce::detail::simd<T> acc[Wv] = {};
#else
  T acc[P] = {};
#endif
  if constexpr (NN != 0) {
    (void)n;
    (void)m;
    constexpr std::size_t bits = n_m_matrix<T>::index_bits_for(MM), step = n_m_step_groups(NN, bits);
    constexpr std::size_t mask = (std::size_t{1} << bits) - 1;
    std::size_t g = 0;
    for (; g + step <= groups; g += step, v += step * NN, ix += step * NN * bits / 8) {
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        (n_m_axpy<T, Wv>(acc, v[I], panel + ((g + I / NN) * MM + ((ix[I * bits / 8] >> (I * bits % 8)) & mask)) * P), ...);
      }(std::make_index_sequence<step * NN>{});
    }
    for (std::size_t t = 0; t < (groups - g) * NN; ++t)
      n_m_axpy<T, Wv>(acc, v[t], panel + ((g + t / NN) * MM + n_m_position(ix, t, bits)) * P);
  } else {
    const std::size_t bits = n_m_matrix<T>::index_bits_for(m);
    for (std::size_t g = 0, t = 0; g < groups; ++g)
      for (std::size_t s = 0; s < n; ++s, ++t) n_m_axpy<T, Wv>(acc, v[t], panel + (g * m + n_m_position(ix, t, bits)) * P);
  }
#if SPRUCE_HAS_VECTOR_EXTENSIONS
  for (std::size_t q = 0; q < Wv; ++q) spruce::detail::simd_store(out + q * L, acc[q]);
#else
  std::copy(acc, acc + P, out);
#endif
}

template <class T>
using n_m_row_fn = void (*)(const T*, const std::uint8_t*, std::size_t, std::size_t, std::size_t, const T*, T*);

/// The row kernel for the pattern: the common ones compiled for their N and M, the rest at
/// run time.
template <class T, std::size_t Wv>
n_m_row_fn<T> pick_n_m_row(std::size_t n, std::size_t m) {
  switch (m << 8 | n) {
    case 2 << 8 | 1: return &n_m_row_panel<T, Wv, 1, 2>;
    case 4 << 8 | 1: return &n_m_row_panel<T, Wv, 1, 4>;
    case 4 << 8 | 2: return &n_m_row_panel<T, Wv, 2, 4>;
    case 4 << 8 | 3: return &n_m_row_panel<T, Wv, 3, 4>;
    case 8 << 8 | 1: return &n_m_row_panel<T, Wv, 1, 8>;
    case 8 << 8 | 2: return &n_m_row_panel<T, Wv, 2, 8>;
    case 8 << 8 | 4: return &n_m_row_panel<T, Wv, 4, 8>;
    default: return &n_m_row_panel<T, Wv, 0, 0>;
  }
}

/// The product over panels of Wv registers' width, in K slices of whole groups (a whole
/// number of position bytes) sized by slice_depth (L1 for 2:4); every row of A adds its
/// slots in the slice.
template <class T, std::size_t Wv>
void n_m_spmm(const n_m_matrix<T>& a, const dense_operand<const T>& bo, const dense_operand<T>& co, T alpha, T beta) {
  constexpr std::size_t L = spruce::detail::simd_lanes<T>, P = Wv * L;
  const std::size_t n = a.n(), m = a.m(), bits = a.index_bits(), groups = a.groups_per_row(), rb = a.row_bytes();
  const std::size_t align = n_m_step_groups(n, bits);
  const std::size_t depth =  // groups
      std::max(align, slice_depth<T, P>(static_cast<double>(n) / static_cast<double>(m), false) / m / align * align);
  const n_m_row_fn<T> row_fn = pick_n_m_row<T, Wv>(n, m);
  const T* av = a.values().data();
  const std::uint8_t* pos = a.positions().data();
  const slicing k{a.cols(), groups * m, depth * m, m};
  panel_product<T, P>(bo, co, alpha, beta, k, a.rows(), a.stored_values() * bo.cols + a.rows() * bo.cols, P,
                      [&](const panel_slice<T, P>& s) {
    const std::size_t g0 = s.k0 / m, ng = std::min(depth, groups - g0);
    for (std::size_t i = s.r0; i < s.r1; ++i) {
      row_fn(av + (i * groups + g0) * n, pos + i * rb + g0 * n * bits / 8, ng, n, m, s.panel, s.scratch);
      s.store(i, s.scratch);
    }
  });
}

}  // namespace detail

/// C = alpha * A * B + beta * C with A N:M-compressed (M_A x K) and B (K x N_B), C (M_A x
/// N_B) dense (any host views), each row- or column-major (as for the CSR spmm). Every
/// stored value multiplies one row of B: panels of B's columns (up to eight vector
/// registers wide) are packed in K slices sized by the engine's cache knobs (L1 for 2:4)
/// and each row of A accumulates its slots in registers; the common patterns (2:4 above
/// all) decode their positions with constant shifts, one byte per step. Panels (or, when
/// B is narrow, row ranges) are split between threads. Stored zeros take part like any
/// value (0 * inf is NaN, as in a dense product). beta == 0 overwrites C (NaN in C does
/// not survive); alpha == 0 only scales C. Throws spruce::error, writing nothing, when the
/// shapes or layouts disagree.
template <class T, class VB, class VC>
  requires dense_operands_of<VB, VC, T>
void spmm(const n_m_matrix<T>& a, const VB& b, const VC& c, std::type_identity_t<T> alpha = T(1),
          std::type_identity_t<T> beta = T(0)) {
  detail::spmm_entry<T>(a.rows(), a.cols(), to_const_ref(b), to_ref(c), alpha, beta, [&](const auto& bo, const auto& co) {
    constexpr std::size_t L = spruce::detail::simd_lanes<T>;
    detail::with_panel_registers(detail::pow2_at_least((bo.cols + L - 1) / L, 8),
                                 [&](auto w) { detail::n_m_spmm<T, decltype(w)::value>(a, bo, co, alpha, beta); });
  });
}

}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
