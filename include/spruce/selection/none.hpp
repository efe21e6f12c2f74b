#pragma once

namespace spruce::selection {

/// No selection rule: what `pruner<G, C>` holds when it is only asked for scores (or when
/// the granularity fixes the sparsity itself, as an N:M pattern does). It has neither
/// `count` nor `keep`, so it models no `selection::rule`, and asking such a pruner of a
/// group granularity for a mask fails to compile instead of guessing a rule.
struct none {};

/// True for selection::none (a user placeholder may specialise it).
template <class S>
inline constexpr bool is_none_v = false;
template <>
inline constexpr bool is_none_v<none> = true;

}  // namespace spruce::selection
