#pragma once

#include <array>
#include <concepts>
#include <cstddef>

#include "spruce/core/config.hpp"

namespace spruce {

/// Largest rank spruce's views support. Weight tensors of real networks are rank 1 to 5.
inline constexpr std::size_t max_rank = 8;

/// The shape of a tensor view: `Rank` dynamic extents, like `std::dextents<size_t, Rank>`.
/// Extents are run-time values because layer sizes come from configuration files and
/// checkpoints, not from the type system; the rank is a compile-time value because every
/// kernel's loop nest depends on it.
template <std::size_t Rank>
class extents {
  static_assert(Rank >= 1 && Rank <= max_rank, "spruce::extents: rank must be in [1, 8]");

 public:
  using index_type = std::size_t;
  using rank_type = std::size_t;

  SPRUCE_HD static constexpr rank_type rank() noexcept { return Rank; }

  constexpr extents() noexcept = default;

  template <std::integral... I>
    requires(sizeof...(I) == Rank)
  constexpr explicit extents(I... e) noexcept : e_{static_cast<index_type>(e)...} {}

  constexpr explicit extents(const std::array<index_type, Rank>& e) noexcept {
    for (rank_type r = 0; r < Rank; ++r) e_[r] = e[r];
  }

  SPRUCE_HD constexpr index_type extent(rank_type r) const noexcept { return e_[r]; }

  /// Product of the extents (the number of elements).
  SPRUCE_HD constexpr index_type size() const noexcept {
    index_type s = 1;
    for (rank_type r = 0; r < Rank; ++r) s *= e_[r];
    return s;
  }

  /// The extents as a std::array (a copy).
  constexpr std::array<index_type, Rank> array() const noexcept {
    std::array<index_type, Rank> a{};
    for (rank_type r = 0; r < Rank; ++r) a[r] = e_[r];
    return a;
  }

  friend constexpr bool operator==(const extents&, const extents&) = default;

 private:
  // A plain array: std::array's operator[] is host-only under nvcc, and extents are read
  // by device code.
  index_type e_[Rank]{};
};

template <std::integral... I>
extents(I...) -> extents<sizeof...(I)>;

}  // namespace spruce
