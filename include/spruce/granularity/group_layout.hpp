#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>

#include "spruce/core/error.hpp"
#include "spruce/core/extents.hpp"
#include "spruce/core/shape.hpp"

namespace spruce::granularity {

/// How a granularity cuts a tensor into groups that are scored, kept and pruned together.
/// The tensor (in flat row-major order) is seen with `extent` — its own shape, or another
/// row-major shape of the same size such as the 2-D [out, in*kh*kw] view that blocks
/// use — and each axis is cut into tiles of `tile` elements: 1 keeps the axis (one group
/// per index), the full extent reduces it, anything between makes blocks. Groups are
/// numbered row-major over the tile grid. Every group granularity (element, vector,
/// kernel, filter, channel, block, or a user's) only has to produce one of these.
struct group_layout {
  std::size_t rank = 0;
  std::array<std::size_t, max_rank> extent{};
  std::array<std::size_t, max_rank> tile{};

  /// Number of tiles along axis r.
  constexpr std::size_t grid(std::size_t r) const noexcept {
    return tile[r] == 0 ? 0 : (extent[r] + tile[r] - 1) / tile[r];
  }
  /// Number of groups (0 for an empty tensor).
  constexpr std::size_t groups() const noexcept {
    std::size_t g = rank ? 1 : 0;
    for (std::size_t r = 0; r < rank; ++r) g *= grid(r);
    return g;
  }
  /// Number of elements.
  constexpr std::size_t size() const noexcept {
    std::size_t n = rank ? 1 : 0;
    for (std::size_t r = 0; r < rank; ++r) n *= extent[r];
    return n;
  }
  /// The group of the element with flat row-major index `flat` (the slow, obvious way;
  /// kernels walk the layout instead).
  constexpr std::size_t group_of(std::size_t flat) const noexcept {
    std::size_t g = 0, stride = 1;
    for (std::size_t r = rank; r-- > 0;) {
      const std::size_t i = flat % extent[r];
      flat /= extent[r];
      g += (i / tile[r]) * stride;
      stride *= grid(r);
    }
    return g;
  }
};

/// The layout that keeps every axis of `shape` except those marked in `reduce`.
inline group_layout reduce_axes(std::span<const std::size_t> shape, std::span<const bool> reduce) {
  group_layout l;
  l.rank = shape.size();
  for (std::size_t r = 0; r < l.rank; ++r) {
    l.extent[r] = shape[r];
    l.tile[r] = reduce[r] ? (shape[r] ? shape[r] : 1) : 1;
  }
  return l;
}

namespace detail {

inline void require_rank(std::span<const std::size_t> shape, std::size_t min_rank,
                         const char* granularity, const std::string& name) {
  if (shape.empty() || shape.size() > max_rank || shape.size() < min_rank)
    throw error(std::string(granularity) + " granularity needs a tensor of rank >= " +
                std::to_string(min_rank) + ", but " + spruce::detail::tensor_label(name) +
                " has shape " + shape_string(shape) + "; pick a granularity that fits its rank");
}

/// Resolves a possibly negative axis (-1 = last) against `rank`.
inline std::size_t resolve_axis(int axis, std::size_t rank, const char* granularity,
                                const std::string& name) {
  const long long r = static_cast<long long>(rank);
  const long long a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r)
    throw error(std::string(granularity) + ": axis " + std::to_string(axis) + " is out of range for " +
                spruce::detail::tensor_label(name) + " of rank " + std::to_string(rank) +
                "; pass an axis in [" + std::to_string(-r) + ", " + std::to_string(r - 1) + "]");
  return static_cast<std::size_t>(a);
}

}  // namespace detail

/// A group granularity maps a shape to its group layout, validating the rank and naming
/// the tensor in errors. `element`, `vector`, `kernel`, `filter`, `channel` and `block`
/// model it; so can a user's own struct.
template <class G>
concept group_granularity = requires(const G& g, std::span<const std::size_t> shape, const std::string& name) {
  { g.layout(shape, name) } -> std::same_as<group_layout>;
};

/// Trait: every weight is its own group, numbered in flat row-major order (the element
/// granularity). Fast paths ask this trait, never the type; a user granularity opts in by
/// declaring `static constexpr bool one_weight_per_group = true;`.
template <class G>
inline constexpr bool one_weight_per_group_v = [] {
  if constexpr (requires { G::one_weight_per_group; })
    return static_cast<bool>(G::one_weight_per_group);
  else
    return false;
}();

}  // namespace spruce::granularity
