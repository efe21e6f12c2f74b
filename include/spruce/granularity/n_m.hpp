#pragma once
// The N:M policies. The kernels live in granularity/detail/n_m_kernels.hpp and the
// algorithms (n_m_mask, n_m_prune, is_n_m, check_n_m) in prune/n_m.hpp, which the umbrella
// spruce/spruce.hpp includes; this header is the policy alone, so policy code can name the
// pattern without pulling in the prune layer.

#include <concepts>
#include <cstddef>
#include <string>

#include "spruce/core/error.hpp"

namespace spruce::granularity {

/// An N:M pattern given at run time (read from a config file or a command line): the same
/// grouping, ties, padding and kernels as the compile-time `n_m<N, M>` (the common patterns
/// 1:2, 1:4, 2:4, 3:4, 2:8 and 4:8 run that very code; others a general path with the same
/// ranking rule), so both give identical masks. Being data, the pattern is checked where it
/// is used: 0 <= n < m is required, and `validate(name)` (called by every algorithm that
/// takes one) throws spruce::error naming the tensor otherwise.
struct n_m_pattern {
  std::size_t n = 2;
  std::size_t m = 4;
  /// Let the last group along the axis be shorter than m (ASP zero-pads it).
  bool allow_padding = true;

  /// Throws spruce::error naming `name` unless 0 <= n < m.
  void validate(const std::string& name = {}) const {
    if (m == 0 || n >= m)
      throw error("N:M pattern " + std::to_string(n) + ":" + std::to_string(m) + " for " +
                  spruce::detail::tensor_label(name) + " does not form: a pattern keeps N of every "
                  "M consecutive weights, so it needs 0 <= N < M (M = 0 has no groups, N >= M "
                  "prunes nothing); pass e.g. 2:4");
  }
  /// The fraction of weights the pattern prunes, 1 - n/m (for an axis of whole groups).
  constexpr double sparsity() const noexcept {
    return m == 0 ? 0.0 : 1.0 - static_cast<double>(n) / static_cast<double>(m);
  }
  /// The pattern itself (so generic code calls `g.pattern()` on either N:M policy).
  constexpr n_m_pattern pattern() const noexcept { return *this; }

  friend constexpr bool operator==(const n_m_pattern&, const n_m_pattern&) = default;
};

/// N:M semi-structured granularity (NVIDIA ASP `mn_1d_best`, the pattern Ampere sparse
/// tensor cores run): every group of M consecutive weights along the input axis keeps its
/// N largest magnitudes. The axis is axis 1 of a weight of rank 2 or more: for a linear
/// weight [out, in] groups run along a row; for a conv weight [out, in, kh, kw] (or
/// [out, in, k], or more trailing axes) one group sequence runs along `in` for each
/// (out, kh, kw), i.e. with memory stride kh * kw. A rank-1 tensor is one row (as ASP
/// views it). Magnitudes are compared exactly (ASP's float pattern sums can round two
/// patterns equal; the fixtures hold no such case). Among equal magnitudes the lower index
/// along the axis is kept (ASP leaves ties to its pattern order): +0 and -0 are equal, and
/// +-inf are the largest magnitudes. A trailing partial group of L < M weights
/// behaves as if padded with zeros that lose every tie, so it keeps min(N, L). With
/// `allow_padding == false` an axis whose length is not a multiple of M is an error
/// instead. The pattern must satisfy 0 <= N < M: `n_m<4, 4>` or `n_m<1, 0>` does not form
/// (a constraint rather than a static_assert, so generic code can test for it). For a
/// pattern known only at run time use `n_m_pattern`.
template <std::size_t N, std::size_t M>
  requires(M > 0 && N < M)
struct n_m {
  static constexpr std::size_t n = N;
  static constexpr std::size_t m = M;
  /// Let the last group along the axis be shorter than M (ASP zero-pads it).
  bool allow_padding = true;

  /// Always well formed (the constraint checked it); here so generic code can call it.
  constexpr void validate(const std::string& = {}) const noexcept {}
  /// The fraction of weights the pattern prunes, 1 - N/M.
  static constexpr double sparsity() noexcept {
    return 1.0 - static_cast<double>(N) / static_cast<double>(M);
  }
  /// The same pattern as run-time data.
  constexpr n_m_pattern pattern() const noexcept { return {N, M, allow_padding}; }
  constexpr operator n_m_pattern() const noexcept { return pattern(); }  // NOLINT: implicit by design
};

/// True for the N:M granularities (`n_m<N, M>` and `n_m_pattern`), for generic code that
/// composes policies. A user's N:M-like policy opts in by specialising it and providing
/// `pattern()` and `validate(name)`.
template <class G>
inline constexpr bool is_n_m_v = false;
template <std::size_t N, std::size_t M>
inline constexpr bool is_n_m_v<n_m<N, M>> = true;
template <>
inline constexpr bool is_n_m_v<n_m_pattern> = true;

/// An N:M granularity: declared by is_n_m_v, with its pattern as run-time data.
template <class G>
concept n_m_granularity = is_n_m_v<G> && requires(const G& g, const std::string& name) {
  { g.pattern() } -> std::same_as<n_m_pattern>;
  g.validate(name);
};

}  // namespace spruce::granularity
