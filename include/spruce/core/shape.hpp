#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "spruce/core/config.hpp"

namespace spruce {

/// "[2, 3, 4]": how shapes appear in spruce's messages.
inline std::string shape_string(std::span<const std::size_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// Number of elements of a shape (the product of its extents; 1 for rank 0). The one
/// place spruce multiplies extents; callers that must guard against overflow use
/// `detail::checked_product` (make_view.hpp).
constexpr std::size_t shape_size(std::span<const std::size_t> shape) noexcept {
  std::size_t n = 1;
  for (std::size_t e : shape) n *= e;
  return n;
}

namespace detail {

/// Shortest decimal that parses back to exactly `x` ("0.5", "0.30000000000000004",
/// "nan", "inf"): how numbers appear in messages and files.
inline std::string shortest_decimal(double x) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

/// splitmix64's finaliser: a fast, well-mixed 64-bit hash. Reproducible random scores and
/// samples are built on it, so the same seed gives the same result on every machine.
SPRUCE_HD constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The i-th value of the splitmix64 stream seeded with `seed`.
SPRUCE_HD constexpr std::uint64_t splitmix64(std::uint64_t seed, std::uint64_t i) noexcept {
  return mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1));
}

}  // namespace detail
}  // namespace spruce
