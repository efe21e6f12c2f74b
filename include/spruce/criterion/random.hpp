#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "spruce/core/shape.hpp"
#include "spruce/criterion/criterion.hpp"

namespace spruce::criterion {

/// Random importance, the baseline every criterion must beat: each group scores a uniform
/// number in [0, 1) from the splitmix64 stream of `seed` at the group's index, so the same
/// seed gives the same masks on every machine and in any thread order.
struct random {
  std::uint64_t seed = 0;

  template <class T, class Extra>
  void group_scores(const inputs<T, Extra>&, const granularity::group_layout&, std::span<T> out,
                    const std::string&) const {
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<T>(static_cast<double>(spruce::detail::splitmix64(seed, i) >> 11) * 0x1.0p-53);
  }
};

}  // namespace spruce::criterion
