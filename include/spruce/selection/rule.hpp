#pragma once

#include <concepts>
#include <cstddef>
#include <string>

#include "spruce/select/kth.hpp"

namespace spruce::selection {

/// What a selection rule provides: how many of n scores to cut (validating its own
/// parameters, naming the tensor in errors) and how scores tied with the cut are treated.
/// `threshold` and `exact` model it; a user rule with the same two members plugs into
/// every pruning function unchanged.
template <class S>
concept rule = std::copy_constructible<S> && requires(const S& s, std::size_t n, const std::string& name) {
  { s.count(n, name) } -> std::same_as<std::size_t>;
  { S::ties } -> std::convertible_to<select::tie_break>;
};

}  // namespace spruce::selection
