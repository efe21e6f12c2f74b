#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "spruce/criterion/criterion.hpp"

namespace spruce::criterion {

/// Random importance, the baseline every criterion must beat: each group scores a uniform
/// number in [0, 1) from a hash of (seed, group index), so the same seed gives the same
/// masks on every machine and in any thread order.
struct random {
  std::uint64_t seed = 0;

  template <class T>
  void group_scores(const inputs<T>&, const granularity::group_layout&, std::span<T> out,
                    const std::string&) const {
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      out[i] = static_cast<T>(static_cast<double>(z >> 11) * 0x1.0p-53);
    }
  }
};

}  // namespace spruce::criterion
