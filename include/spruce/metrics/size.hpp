#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"

namespace spruce {

namespace detail::metrics {

/// `out = a * b` unless that overflows 64 bits (then false and `out` is unchanged): a
/// silently wrapped MAC or bit count would look plausible and be wrong.
inline bool mul_fits(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

inline bool add_fits(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return false;
  out = a + b;
  return true;
}

inline error overflow_error(const std::string& what) {
  return error(what + " does not fit in 64 bits; check the sizes passed in, they are far "
               "larger than any real network");
}

}  // namespace detail::metrics

/// Number of elements of a tensor of the given shape, without needing the tensor: the
/// product of the extents as a 64-bit count. The empty shape is a scalar and has one
/// element (as in torch.Size([]).numel()); any zero extent gives zero. Throws spruce::error
/// when the product does not fit in 64 bits.
inline std::uint64_t num_elements(std::span<const std::size_t> shape) {
  for (std::size_t e : shape)
    if (e == 0) return 0;
  std::uint64_t n = 1;
  for (std::size_t e : shape)
    if (!detail::metrics::mul_fits(n, e, n))
      throw detail::metrics::overflow_error("the element count of shape " + shape_string(shape));
  return n;
}

/// num_elements of a shape written in place: `num_elements({64, 3, 3, 3})`.
inline std::uint64_t num_elements(std::initializer_list<std::size_t> shape) {
  return num_elements(std::span<const std::size_t>(shape.begin(), shape.size()));
}

}  // namespace spruce
