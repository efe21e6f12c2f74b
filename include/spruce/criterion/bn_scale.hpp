#pragma once

#include <cmath>
#include <span>
#include <string>

#include "spruce/core/error.hpp"
#include "spruce/criterion/criterion.hpp"

namespace spruce::criterion {

/// Network slimming's channel importance: |gamma| of the BatchNorm that follows a layer,
/// one score per output channel, applied to the groups it scales (with filter
/// granularity, filter c scores |gamma[c]|). Needs `inputs.gamma` with one value per group.
struct bn_scale {
  template <class T, class Extra>
  void group_scores(const inputs<T, Extra>& in, const granularity::group_layout& l, std::span<T> out,
                    const std::string& name) const {
    if (in.gamma.size() != l.groups())
      throw error("bn_scale for " + spruce::detail::tensor_label(name) + ": " +
                  std::to_string(in.gamma.size()) + " BN scales for " + std::to_string(l.groups()) +
                  " groups; pass the gamma of the BatchNorm after this layer and use filter granularity");
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::abs(in.gamma[i]);
  }
};

}  // namespace spruce::criterion
