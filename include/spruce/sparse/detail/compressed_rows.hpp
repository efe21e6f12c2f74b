#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/simd.hpp"

// The storage and the structural checks that CSR and block-sparse share: both compress
// rows (or block rows) into offsets, one column index per stored unit (a value, a block),
// and the values.
namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {
namespace detail {

/// True when x is below zero (never, for an unsigned Index).
template <class Index>
constexpr bool negative(Index x) noexcept {
  if constexpr (std::is_signed_v<Index>)
    return x < 0;
  else
    return false;
}

/// row_ptr (one offset per row unit, plus one), col_idx (one index per stored unit) and
/// values, with their accessors: the base of csr_matrix and block_sparse_matrix.
template <class T, class Index>
class compressed_rows {
  static_assert(std::is_integral_v<Index>, "a compressed-rows sparse matrix needs an integer Index type");

 public:
  using value_type = T;
  using index_type = Index;

  const std::vector<Index>& row_ptr() const noexcept { return row_ptr_; }
  const std::vector<Index>& col_idx() const noexcept { return col_idx_; }
  const std::vector<T>& values() const noexcept { return values_; }
  /// Values held, explicit zeros (and a block format's padding) included.
  std::size_t stored_values() const noexcept { return values_.size(); }

 protected:
  compressed_rows() = default;
  compressed_rows(std::vector<Index> row_ptr, std::vector<Index> col_idx, std::vector<T> values)
      : row_ptr_(std::move(row_ptr)), col_idx_(std::move(col_idx)), values_(std::move(values)) {}

  /// Calls `fail(message)` at the first structural fault: row_ptr needs `units` + 1
  /// entries (`need` says how many, in the format's words) from 0 to col_idx.size(),
  /// non-decreasing; every index of a row unit lies in [0, index_bound) and the indices
  /// increase strictly within it. `unit`, `index` and `entry` name a row unit, an index
  /// and a stored unit ("row", "column index", "entry" for CSR).
  template <class Fail>
  void check_structure(std::size_t units, std::size_t index_bound, const std::string& unit, const std::string& index,
                       const std::string& entry, const std::string& need, Fail fail) const {
    if (row_ptr_.size() != units + 1)
      fail("row_ptr has " + std::to_string(row_ptr_.size()) + " entries for " + std::to_string(units) + " " + unit +
           "s (need " + need + ")");
    if (row_ptr_.front() != 0) fail("row_ptr[0] is " + std::to_string(row_ptr_.front()) + ", not 0");
    if (negative(row_ptr_.back()) || static_cast<std::size_t>(row_ptr_.back()) != col_idx_.size())
      fail("row_ptr[" + unit + "s] is " + std::to_string(row_ptr_.back()) + " but there are " +
           std::to_string(col_idx_.size()) + " " + index.substr(0, index.size() - 5) + "indices");
    // All offsets first: a later decrease would otherwise send an earlier row out of bounds.
    for (std::size_t i = 0; i < units; ++i)
      if (row_ptr_[i + 1] < row_ptr_[i]) fail("row_ptr decreases at " + unit + " " + std::to_string(i));
    for (std::size_t i = 0; i < units; ++i)
      for (auto p = static_cast<std::size_t>(row_ptr_[i]); p < static_cast<std::size_t>(row_ptr_[i + 1]); ++p) {
        const Index c = col_idx_[p];
        if (negative(c) || static_cast<std::size_t>(c) >= index_bound)
          fail(index + " " + std::to_string(c) + " in " + unit + " " + std::to_string(i) + " is outside [0, " +
               std::to_string(index_bound) + ")");
        if (p > static_cast<std::size_t>(row_ptr_[i]) && col_idx_[p - 1] >= c)
          fail(index.substr(0, index.size() - 5) + "indices of " + unit + " " + std::to_string(i) +
               " are not strictly increasing at " + entry + " " + std::to_string(p));
      }
  }

  std::vector<Index> row_ptr_{0};
  std::vector<Index> col_idx_;
  std::vector<T> values_;
};

}  // namespace detail
}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
