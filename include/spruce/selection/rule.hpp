#pragma once

#include <concepts>
#include <cstddef>
#include <span>
#include <string>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/select/kth.hpp"

namespace spruce::selection {

/// A rule that cuts a number of lowest scores: `count(n, name)` says how many of n
/// (validating its own parameters, naming the tensor in errors) and `ties` how scores tied
/// with the cut are treated. `threshold` and `exact` are such rules.
template <class S>
concept count_rule = std::copy_constructible<S> && requires(const S& s, std::size_t n, const std::string& name) {
  { s.count(n, name) } -> std::same_as<std::size_t>;
  { S::ties } -> std::convertible_to<select::tie_break>;
};

/// A rule that computes the keep mask of a score vector itself (`quantile` is one):
/// `keep<Order>(scores, name)` returns 1 = keep, 0 = prune per score.
template <class S>
concept mask_rule = std::copy_constructible<S> &&
    requires(const S& s, std::span<const float> scores, const std::string& name) {
      { s.template keep<select::by_value>(scores, name) } -> std::same_as<byte_buffer>;
    };

/// What every pruning function accepts as a selection rule. A user's rule of either kind
/// plugs in unchanged.
template <class S>
concept rule = count_rule<S> || mask_rule<S>;

/// The keep mask rule `s` gives `scores` (ordered by `Order`: by value, or by magnitude to
/// fuse the L1 score into the selection).
template <template <class> class Order = select::by_value, rule S, select::score_type T>
byte_buffer keep_mask(const S& s, std::span<const T> scores, const std::string& name = {}) {
  if constexpr (count_rule<S>)
    return select::lowest_mask<Order>(scores, s.count(scores.size(), name), S::ties, name);
  else
    return s.template keep<Order>(scores, name);
}

}  // namespace spruce::selection
