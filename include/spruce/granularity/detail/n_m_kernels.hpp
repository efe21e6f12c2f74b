#pragma once
// The N:M kernels: magnitude keys, pairwise ranking networks, the tiled structure-of-arrays
// passes and the parallel driver that turns a contiguous weight into keep bytes. They
// produce raw bytes (core's byte_buffer), never a spruce::mask, so they sit in the
// granularity layer beside the policy; prune/n_m.hpp builds the public algorithms on them.
// Both the compile-time pattern (granularity::n_m<N, M>) and the run-time one
// (granularity::n_m_pattern) end here: the run-time driver dispatches the common patterns
// to the same compile-time instantiations, so a pattern read from a config computes with
// the same code, and gives the same bytes, as the one written in a template argument.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/config.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"

// `omp simd` where OpenMP is on (a pragma only; without OpenMP the loop is left to the
// auto-vectoriser, and no unknown-pragma warning is raised).
#if SPRUCE_HAS_OPENMP
#define SPRUCE_N_M_SIMD _Pragma("omp simd reduction(+ : bad)")
#else
#define SPRUCE_N_M_SIMD
#endif

namespace spruce {

namespace detail {

/// A weight seen as [outer, axis, inner]: groups run along `axis`, whose elements lie
/// `inner` apart in flat row-major order.
struct n_m_geometry {
  std::size_t outer = 0, axis = 0, inner = 1;
};

inline n_m_geometry n_m_geometry_of(std::span<const std::size_t> shape) noexcept {
  if (shape.empty()) return {};
  if (shape.size() == 1) return {1, shape[0], 1};
  std::size_t inner = 1;
  for (std::size_t r = 2; r < shape.size(); ++r) inner *= shape[r];
  return {shape[0], shape[1], inner};
}

/// Magnitude keys as signed integers of the float's width: clearing the sign bit leaves an
/// integer whose order is the order of |x| (signed so that SSE2 can compare it), and a
/// key above the key of +inf is a NaN.
template <class T>
struct n_m_key;
template <>
struct n_m_key<float> {
  using type = std::int32_t;
  using bits = std::uint32_t;
  static constexpr type inf = 0x7f800000;
};
template <>
struct n_m_key<double> {
  using type = std::int64_t;
  using bits = std::uint64_t;
  static constexpr type inf = 0x7ff0000000000000;
};

template <class T>
SPRUCE_HD constexpr typename n_m_key<T>::type n_m_abs_key(T x) noexcept {
  using B = typename n_m_key<T>::bits;
  return static_cast<typename n_m_key<T>::type>(bit_cast<B>(x) & (~B{0} >> 1));
}

/// Pairwise ranking is O(M) per weight and branch-free; past this group size a selection
/// per group is cheaper.
inline constexpr std::size_t n_m_pairwise_max = 32;

/// Keep bytes for L (<= n_m_pairwise_max) weights `stride` apart: weight j is beaten by
/// every i with a larger key and by every i < j with an equal key; it is kept when fewer
/// than `n` beat it. Returns the number of NaN keys.
template <class T>
SPRUCE_HD std::size_t n_m_rank_small(const T* w, std::uint8_t* m, std::size_t len,
                                     std::size_t stride, std::size_t n) noexcept {
  using K = typename n_m_key<T>::type;
  K k[n_m_pairwise_max];
  std::uint32_t beaten[n_m_pairwise_max];
  std::size_t bad = 0;
  for (std::size_t j = 0; j < len; ++j) {
    k[j] = n_m_abs_key(w[j * stride]);
    bad += k[j] > n_m_key<T>::inf;
    beaten[j] = 0;
  }
  for (std::size_t i = 0; i < len; ++i)
    for (std::size_t j = i + 1; j < len; ++j) {
      const std::uint32_t later_wins = k[j] > k[i];
      beaten[i] += later_wins;
      beaten[j] += 1 - later_wins;
    }
  for (std::size_t j = 0; j < len; ++j) m[j * stride] = beaten[j] < n;
  return bad;
}

/// Keep bytes for L weights `stride` apart by a selection on indices (large M); `idx` is
/// scratch of at least L entries.
template <class T>
std::size_t n_m_rank_select(const T* w, std::uint8_t* m, std::size_t len, std::size_t stride,
                            std::size_t n, std::uint32_t* idx) noexcept {
  std::size_t bad = 0;
  for (std::size_t j = 0; j < len; ++j) {
    idx[j] = static_cast<std::uint32_t>(j);
    bad += n_m_abs_key(w[j * stride]) > n_m_key<T>::inf;
    m[j * stride] = 0;
  }
  if (bad) return bad;  // the caller reports it; the order is meaningless with NaN
  const std::size_t keep = std::min(n, len);
  const auto first = [w, stride](std::uint32_t a, std::uint32_t b) {
    const auto ka = n_m_abs_key(w[a * stride]), kb = n_m_abs_key(w[b * stride]);
    return ka > kb || (ka == kb && a < b);
  };
  if (keep < len) std::nth_element(idx, idx + keep, idx + len, first);
  for (std::size_t j = 0; j < keep; ++j) m[idx[j] * stride] = 1;
  return bad;
}

/// 2:4 and the other N:4 patterns over `groups` consecutive groups (inner == 1). Each group
/// is four loads, six compares and one 32-bit store of its four keep bytes; everything
/// arrives by value and the outputs are restrict-qualified so the loop vectorises.
template <std::size_t N, class T>
inline std::size_t n_m4_groups(const T* __restrict w, std::uint8_t* __restrict m,
                               const std::size_t groups) noexcept {
  using K = typename n_m_key<T>::type;
  constexpr bool little = std::endian::native == std::endian::little;
  constexpr unsigned s0 = little ? 0 : 24, s1 = little ? 8 : 16, s2 = little ? 16 : 8,
                     s3 = little ? 24 : 0;
  std::uint32_t bad = 0;
  for (std::size_t g = 0; g < groups; ++g) {
    const K a = n_m_abs_key(w[4 * g]), b = n_m_abs_key(w[4 * g + 1]),
            c = n_m_abs_key(w[4 * g + 2]), d = n_m_abs_key(w[4 * g + 3]);
    // x_y: the later weight y beats the earlier x (strictly larger; ties go to x).
    const std::uint32_t a_b = b > a, a_c = c > a, a_d = d > a, b_c = c > b, b_d = d > b,
                        c_d = d > c;
    const std::uint32_t ra = a_b + a_c + a_d, rb = 1 - a_b + b_c + b_d,
                        rc = 2 - a_c - b_c + c_d, rd = 3 - a_d - b_d - c_d;
    const std::uint32_t word = std::uint32_t{ra < N} << s0 | std::uint32_t{rb < N} << s1 |
                               std::uint32_t{rc < N} << s2 | std::uint32_t{rd < N} << s3;
    std::memcpy(m + 4 * g, &word, 4);
    bad += (a > n_m_key<T>::inf) + (b > n_m_key<T>::inf) + (c > n_m_key<T>::inf) +
           (d > n_m_key<T>::inf);
  }
  return bad;
}

/// Pairwise ranking written out as straight-line code (one compare per pair, unrolled at
/// compile time) so that a loop over many groups around it can vectorise. The later weight
/// J beats the earlier I only when strictly larger, so ties go to the lower index: J starts
/// beaten by all J earlier weights and each compare moves one count between the two, as
/// the 0 / -1 that a vector compare yields.
template <std::size_t I, class K, std::size_t... D>
SPRUCE_HD void n_m_rank_row([[maybe_unused]] const K* k, [[maybe_unused]] std::int32_t* beaten,
                            std::index_sequence<D...>) noexcept {
  ((beaten[I] += static_cast<std::int32_t>(k[I + 1 + D] > k[I]),
    beaten[I + 1 + D] -= static_cast<std::int32_t>(k[I + 1 + D] > k[I])),
   ...);
}
template <std::size_t M, class K, std::size_t... I>
SPRUCE_HD void n_m_rank_all(const K* k, std::int32_t* beaten, std::index_sequence<I...>) noexcept {
  (n_m_rank_row<I>(k, beaten, std::make_index_sequence<M - 1 - I>{}), ...);
}

/// One full group of M weights `stride` apart: keep bytes at the same offsets in `m`;
/// returns the number of NaN weights.
template <std::size_t N, std::size_t M, class T, std::size_t... J>
SPRUCE_HD std::uint32_t n_m_lane(const T* w, std::uint8_t* m, std::size_t stride,
                                 std::index_sequence<J...>) noexcept {
  using K = typename n_m_key<T>::type;
  const K k[M] = {n_m_abs_key(w[J * stride])...};
  std::int32_t beaten[M] = {static_cast<std::int32_t>(J)...};
  n_m_rank_all<M>(k, beaten, std::make_index_sequence<M>{});
  ((m[J * stride] = static_cast<std::uint8_t>(beaten[J] < static_cast<std::int32_t>(N))), ...);
  return (static_cast<std::uint32_t>(k[J] > n_m_key<T>::inf) + ...);
}

/// General small N:M over `groups` consecutive groups (inner == 1), one group at a time:
/// the tail after the tiles of n_m_groups_tiled.
template <std::size_t N, std::size_t M, class T>
inline std::size_t n_m_groups(const T* __restrict w, std::uint8_t* __restrict m,
                              const std::size_t groups) noexcept {
  std::uint32_t bad = 0;
  for (std::size_t g = 0; g < groups; ++g)
    bad += n_m_lane<N, M>(w + g * M, m + g * M, 1, std::make_index_sequence<M>{});
  return bad;
}

template <class T>
SPRUCE_HD constexpr auto n_m_as_key(T x) noexcept {
  if constexpr (std::is_integral_v<T>)
    return x;  // already a key (a transposed tile)
  else
    return n_m_abs_key(x);
}

/// How many weights beat weight J of a group laid out as rows `stride` apart (lane t):
/// earlier rows win ties (k_i >= k_j, i.e. k_i > k_j - 1 as keys are never negative),
/// later rows must be strictly larger.
template <std::size_t J, class E, class K, std::size_t... I>
SPRUCE_HD std::int32_t n_m_beaten(const E* __restrict w, const std::size_t stride,
                                  const std::size_t t, const K kj,
                                  std::index_sequence<I...>) noexcept {
  return ((I < J   ? static_cast<std::int32_t>(n_m_as_key(w[I * stride + t]) > kj - 1)
           : I > J ? static_cast<std::int32_t>(n_m_as_key(w[I * stride + t]) > kj)
                   : 0) +
          ...);
}

/// One full group per lane, its M weights in rows `stride` apart ("structure of arrays"):
/// a conv weight's block of M input channels (lanes: kernel positions) or a transposed
/// tile of linear-weight groups. Row by row, each lane counts the weights that beat it;
/// only a handful of vectors are live at once, so the loops over lanes vectorise without
/// spilling whatever M is. `Lanes` is the lane count as a compile-time constant (0: use
/// `run_lanes`). `Forced` insists on vectorising, which GCC's cost model sometimes declines
/// for long lanes (tiles); short ones are left to the unroller and SLP, which beat a 4-wide
/// loop plus remainder there. Returns the number of NaNs.
template <std::size_t N, std::size_t M, std::size_t Lanes, bool Forced, class E, std::size_t... J>
inline std::uint32_t n_m_soa(const E* __restrict w, std::uint8_t* __restrict m,
                             const std::size_t stride, const std::size_t run_lanes,
                             std::index_sequence<J...>) noexcept {
  using K = decltype(n_m_as_key(E{}));
  constexpr K inf = n_m_key<std::conditional_t<sizeof(K) == 4, float, double>>::inf;
  const std::size_t lanes = Lanes ? Lanes : run_lanes;
  std::uint32_t bad = 0;
  if constexpr (Forced) {
    (
        [&] {
          SPRUCE_N_M_SIMD
          for (std::size_t t = 0; t < lanes; ++t) {
            const K kj = n_m_as_key(w[J * stride + t]);
            bad += static_cast<std::uint32_t>(kj > inf);
            m[J * stride + t] = static_cast<std::uint8_t>(
                n_m_beaten<J>(w, stride, t, kj, std::make_index_sequence<M>{}) <
                static_cast<std::int32_t>(N));
          }
        }(),
        ...);
  } else {
    (
        [&] {
          for (std::size_t t = 0; t < lanes; ++t) {
            const K kj = n_m_as_key(w[J * stride + t]);
            bad += static_cast<std::uint32_t>(kj > inf);
            m[J * stride + t] = static_cast<std::uint8_t>(
                n_m_beaten<J>(w, stride, t, kj, std::make_index_sequence<M>{}) <
                static_cast<std::int32_t>(N));
          }
        }(),
        ...);
  }
  return bad;
}

/// General small N:M over consecutive groups (inner == 1): tiles of 64 groups are
/// transposed into keys, one row per group member, ranked by n_m_soa and transposed back.
template <std::size_t N, std::size_t M, class T>
inline std::size_t n_m_groups_tiled(const T* w, std::uint8_t* m, const std::size_t groups) noexcept {
  constexpr std::size_t L = 64;
  using K = typename n_m_key<T>::type;
  alignas(64) K keys[M * L];
  alignas(64) std::uint8_t keep[M * L];
  std::size_t bad = 0, g0 = 0;
  for (; g0 + L <= groups; g0 += L) {
    const T* wg = w + g0 * M;
    for (std::size_t g = 0; g < L; ++g)
      for (std::size_t j = 0; j < M; ++j) keys[j * L + g] = n_m_abs_key(wg[g * M + j]);
    bad += n_m_soa<N, M, L, true>(keys, keep, L, L, std::make_index_sequence<M>{});
    std::uint8_t* mg = m + g0 * M;
    for (std::size_t g = 0; g < L; ++g)
      for (std::size_t j = 0; j < M; ++j) mg[g * M + j] = keep[j * L + g];
  }
  return bad + n_m_groups<N, M>(w + g0 * M, m + g0 * M, groups - g0);
}

/// `groups` consecutive full groups of M rows of `inner` weights each (conv weights), the
/// lanes being the kernel positions. Short rows (a 3x3 kernel's 9) are first copied into
/// tiles of many groups side by side, so that the loops over lanes run long. `Inner` is
/// `inner` as a compile-time constant for the commonest kernel (0: run-time), which turns
/// the copies into straight-line code.
template <std::size_t N, std::size_t M, std::size_t Inner, class T>
inline std::size_t n_m_blocks(const T* w, std::uint8_t* m, const std::size_t groups,
                              const std::size_t run_inner) noexcept {
  constexpr std::size_t L = 128;
  const std::size_t inner = Inner ? Inner : run_inner;
  std::size_t bad = 0;
  if (inner >= 16) {
    for (std::size_t g = 0; g < groups; ++g)
      bad += n_m_soa<N, M, 0, true>(w + g * M * inner, m + g * M * inner, inner, inner,
                                    std::make_index_sequence<M>{});
    return bad;
  }
  // Each (group, member) row moves as one small memcpy of the weights' bits in (and of
  // keep bytes out); one vectorised pass then turns the tile's bits into magnitude keys.
  using K = typename n_m_key<T>::type;
  alignas(64) K keys[M * L];
  alignas(64) std::uint8_t keep[M * L];
  const std::size_t per_tile = L / inner;
  for (std::size_t g0 = 0; g0 < groups; g0 += per_tile) {
    const std::size_t ng = std::min(per_tile, groups - g0), lanes = ng * inner;
    const T* wg = w + g0 * M * inner;
    for (std::size_t g = 0; g < ng; ++g)
      for (std::size_t j = 0; j < M; ++j)
        std::memcpy(keys + j * L + g * inner, wg + (g * M + j) * inner, inner * sizeof(T));
    // The ranking always runs over all L lanes, a compile-time count: a run-time count
    // (14 groups of 9 = 126) leaves a remainder that runs scalar, and with 16-lane AVX-512
    // vectors that remainder is 14 of every 126 lanes (the -march=native build was 1.4x
    // slower for 3x3 kernels). The padding lanes hold key 0 (no NaN) and are not copied out.
    if (lanes < L)
      for (std::size_t j = 0; j < M; ++j) std::fill(keys + j * L + lanes, keys + (j + 1) * L, K{0});
    for (std::size_t j = 0; j < M; ++j)
      for (std::size_t t = 0; t < L; ++t) keys[j * L + t] &= std::numeric_limits<K>::max();
    bad += n_m_soa<N, M, L, true>(keys, keep, L, L, std::make_index_sequence<M>{});
    std::uint8_t* mg = m + g0 * M * inner;
    for (std::size_t g = 0; g < ng; ++g)
      for (std::size_t j = 0; j < M; ++j)
        std::memcpy(mg + (g * M + j) * inner, keep + j * L + g * inner, inner);
  }
  return bad;
}

/// Consecutive full groups of a contiguous run (inner == 1), by the fastest kernel for M.
template <std::size_t N, std::size_t M, class T>
std::size_t n_m_run(const T* w, std::uint8_t* m, std::size_t groups, std::uint32_t* idx) {
  if constexpr (M == 4) {
    return n_m4_groups<N>(w, m, groups);
  } else if constexpr (M <= n_m_pairwise_max) {
    (void)idx;
    return n_m_groups_tiled<N, M>(w, m, groups);
  } else {
    std::size_t bad = 0;
    for (std::size_t g = 0; g < groups; ++g) bad += n_m_rank_select(w + g * M, m + g * M, M, 1, N, idx);
    return bad;
  }
}

/// Rows [b, e) of a contiguous [outer, axis, inner] weight.
template <std::size_t N, std::size_t M, class T>
std::size_t n_m_rows(const T* w, std::uint8_t* m, const n_m_geometry& geo, std::size_t b,
                     std::size_t e, std::uint32_t* idx) {
  const std::size_t full = geo.axis / M, tail = geo.axis % M, inner = geo.inner;
  const std::size_t row = geo.axis * inner;
  std::size_t bad = 0;
  for (std::size_t o = b; o < e; ++o) {
    const T* wr = w + o * row;
    std::uint8_t* mr = m + o * row;
    if (inner == 1) {
      bad += n_m_run<N, M>(wr, mr, full, idx);
    } else {
      if constexpr (M <= n_m_pairwise_max) {
        bad += inner == 9 ? n_m_blocks<N, M, 9>(wr, mr, full, inner)
                          : n_m_blocks<N, M, 0>(wr, mr, full, inner);
      } else {
        for (std::size_t g = 0; g < full; ++g)
          for (std::size_t t = 0; t < inner; ++t) {
            const std::size_t off = g * M * inner + t;
            bad += n_m_rank_select(wr + off, mr + off, M, inner, N, idx);
          }
      }
    }
    if (tail) {  // the zero padding loses every tie, so only the real weights compete
      const std::size_t off = full * M * inner;
      for (std::size_t t = 0; t < inner; ++t) {
        if constexpr (M <= n_m_pairwise_max)
          bad += n_m_rank_small(wr + off + t, mr + off + t, tail, inner, N);
        else
          bad += n_m_rank_select(wr + off + t, mr + off + t, tail, inner, N, idx);
      }
    }
  }
  return bad;
}

template <class T>
[[noreturn]] void throw_n_m_nan(const T* w, std::size_t n, const std::string& name) {
  std::size_t i = 0;
  while (i < n && n_m_abs_key(w[i]) <= n_m_key<T>::inf) ++i;
  throw error("weight of " + tensor_label(name) + " at flat index " + std::to_string(i) +
              " is NaN; NaN has no magnitude order, so no N:M mask was computed and nothing "
              "was changed. Replace or drop NaN values (e.g. check for a diverged training "
              "step) before pruning");
}

/// The compile-time kernels of one pattern N:M (what n_m_keep_with drives).
template <std::size_t N, std::size_t M>
struct n_m_fixed_kernel {
  static constexpr std::size_t m() noexcept { return M; }
  template <class T>
  std::size_t run(const T* w, std::uint8_t* k, std::size_t groups, std::uint32_t* idx) const {
    return n_m_run<N, M>(w, k, groups, idx);
  }
  template <class T>
  std::size_t rows(const T* w, std::uint8_t* k, const n_m_geometry& geo, std::size_t b,
                   std::size_t e, std::uint32_t* idx) const {
    return n_m_rows<N, M>(w, k, geo, b, e, idx);
  }
};

/// The general run-time kernels for a pattern n:m that has no compile-time instantiation:
/// the same ranking rule (pairwise wins up to n_m_pairwise_max, a selection per group past
/// it), one group at a time, so it gives the bytes the fixed kernels give.
struct n_m_general_kernel {
  std::size_t n, m_;
  std::size_t m() const noexcept { return m_; }
  template <class T>
  std::size_t group(const T* w, std::uint8_t* k, std::size_t len, std::size_t stride,
                    std::uint32_t* idx) const {
    return len <= n_m_pairwise_max ? n_m_rank_small(w, k, len, stride, n)
                                   : n_m_rank_select(w, k, len, stride, n, idx);
  }
  template <class T>
  std::size_t run(const T* w, std::uint8_t* k, std::size_t groups, std::uint32_t* idx) const {
    std::size_t bad = 0;
    for (std::size_t g = 0; g < groups; ++g) bad += group(w + g * m_, k + g * m_, m_, 1, idx);
    return bad;
  }
  template <class T>
  std::size_t rows(const T* w, std::uint8_t* k, const n_m_geometry& geo, std::size_t b,
                   std::size_t e, std::uint32_t* idx) const {
    const std::size_t inner = geo.inner, row = geo.axis * inner;
    std::size_t bad = 0;
    for (std::size_t o = b; o < e; ++o)
      for (std::size_t i0 = 0; i0 < geo.axis; i0 += m_) {
        const std::size_t len = std::min(m_, geo.axis - i0);  // a short last group: padding
        for (std::size_t t = 0; t < inner; ++t) {
          const std::size_t off = o * row + i0 * inner + t;
          bad += group(w + off, k + off, len, inner, idx);
        }
      }
    return bad;
  }
};

/// Keep bytes of a contiguous weight in flat row-major order under kernel `kern`.
template <class Kernel, class T>
byte_buffer n_m_keep_with(const Kernel& kern, const T* w, std::span<const std::size_t> shape,
                          const std::string& name) {
  const std::size_t M = kern.m();
  const n_m_geometry geo = n_m_geometry_of(shape);
  const std::size_t n = geo.outer * geo.axis * geo.inner;
  byte_buffer keep(n);
  if (n == 0) return keep;
  std::uint8_t* m = keep.data();
  const std::size_t chunks = static_cast<std::size_t>(max_threads());
  std::vector<std::size_t> bad(chunks, 0);
  // Large groups rank through an index selection; each chunk gets its own scratch, sized
  // here because nothing may allocate (or throw) inside the parallel region.
  std::vector<std::uint32_t> scratch(M > n_m_pairwise_max ? chunks * M : 0);
  std::uint32_t* sc = scratch.data();
  std::size_t* badp = bad.data();
  if (geo.inner == 1 && geo.axis % M == 0) {
    // Rows made of whole groups are one run of groups: split the groups, not the rows, so
    // a single long row still uses every core.
    parallel_chunks(n / M, [&kern, w, m, sc, badp, M](std::size_t c, std::size_t, std::size_t b,
                                                      std::size_t e) {
      badp[c] = kern.run(w + b * M, m + b * M, e - b, sc ? sc + c * M : nullptr);
    }, std::max<std::size_t>(1, parallel_threshold / M));
  } else {
    const std::size_t row = geo.axis * geo.inner;
    parallel_chunks(geo.outer, [&kern, w, m, sc, badp, geo, M](std::size_t c, std::size_t,
                                                               std::size_t b, std::size_t e) {
      badp[c] = kern.rows(w, m, geo, b, e, sc ? sc + c * M : nullptr);
    }, std::max<std::size_t>(1, parallel_threshold / row));
  }
  if (std::accumulate(bad.begin(), bad.end(), std::size_t{0}) != 0) throw_n_m_nan(w, n, name);
  return keep;
}

/// Keep bytes of a contiguous weight under the compile-time pattern N:M.
template <std::size_t N, std::size_t M, class T>
byte_buffer n_m_keep(const T* w, std::span<const std::size_t> shape, const std::string& name) {
  return n_m_keep_with(n_m_fixed_kernel<N, M>{}, w, shape, name);
}

/// Keep bytes under the run-time pattern n:m (0 <= n < m, checked by the caller): the
/// common patterns run their compile-time kernels, the others the general ones.
template <class T>
byte_buffer n_m_keep(const T* w, std::span<const std::size_t> shape, std::size_t n,
                     std::size_t m, const std::string& name) {
  if (m == 2 && n == 1) return n_m_keep<1, 2>(w, shape, name);
  if (m == 4 && n == 1) return n_m_keep<1, 4>(w, shape, name);
  if (m == 4 && n == 2) return n_m_keep<2, 4>(w, shape, name);
  if (m == 4 && n == 3) return n_m_keep<3, 4>(w, shape, name);
  if (m == 8 && n == 2) return n_m_keep<2, 8>(w, shape, name);
  if (m == 8 && n == 4) return n_m_keep<4, 8>(w, shape, name);
  return n_m_keep_with(n_m_general_kernel{n, m}, w, shape, name);
}

/// The pattern's text ("2:4") for messages.
inline std::string n_m_string(std::size_t n, std::size_t m) {
  return std::to_string(n) + ":" + std::to_string(m);
}

/// With padding off, an axis whose length is not a multiple of m is refused; `what` names
/// the tensor or mask in the message.
inline void check_n_m_padding(std::span<const std::size_t> shape, std::size_t n, std::size_t m,
                              bool allow_padding, const std::string& what) {
  const n_m_geometry geo = n_m_geometry_of(shape);
  if (!allow_padding && geo.axis % m != 0)
    throw error(what + " of shape " + shape_string(shape) + ": " + n_m_string(n, m) +
                " groups run along axis " + (shape.size() == 1 ? "0" : "1") + ", whose length " +
                std::to_string(geo.axis) + " is not a multiple of " + std::to_string(m) +
                ", and padding is off (allow_padding = false); pad the axis to a multiple of " +
                std::to_string(m) + " or allow a zero-padded last group");
}

/// Flat index of the first element of the first group of keep bytes `k` (flat row-major,
/// of `shape`) that keeps more than n (or, with padding off, the first element of the
/// partial group), and how many it keeps; `size` when the bytes have the pattern.
inline std::pair<std::size_t, std::size_t> first_non_n_m(const std::uint8_t* k, std::size_t size,
                                                          std::span<const std::size_t> shape,
                                                          std::size_t n, std::size_t m,
                                                          bool allow_padding) {
  const n_m_geometry geo = n_m_geometry_of(shape);
  const std::size_t inner = geo.inner, row = geo.axis * inner;
  if (!allow_padding && geo.axis % m != 0) return {(geo.axis / m) * m * inner, 0};
  if (size == 0) return {size, 0};
  for (std::size_t o = 0; o < geo.outer; ++o)
    for (std::size_t i0 = 0; i0 < geo.axis; i0 += m) {
      const std::size_t len = std::min(m, geo.axis - i0);
      for (std::size_t t = 0; t < inner; ++t) {
        const std::uint8_t* p = k + o * row + i0 * inner + t;
        std::size_t kept = 0;
        for (std::size_t j = 0; j < len; ++j) kept += p[j * inner];
        if (kept > n) return {static_cast<std::size_t>(p - k), kept};
      }
    }
  return {size, 0};
}

/// Weights of `shape` that the pattern n:m prunes (a zero-padded last group of length L
/// prunes L - min(n, L)).
inline std::size_t n_m_pruned_count(std::span<const std::size_t> shape, std::size_t n,
                                    std::size_t m) noexcept {
  const n_m_geometry geo = n_m_geometry_of(shape);
  const std::size_t full = geo.axis / m, tail = geo.axis % m;
  const std::size_t per_row = full * (m - n) + (tail > n ? tail - n : 0);
  return geo.outer * geo.inner * per_row;
}

}  // namespace detail
}  // namespace spruce

#undef SPRUCE_N_M_SIMD
