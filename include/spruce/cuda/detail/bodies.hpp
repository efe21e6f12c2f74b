#pragma once
// The CUDA backend's per-element, per-group and per-step bodies. Every function here is
// SPRUCE_HD and needs no CUDA header, so the host tests (tests/cuda_host, built by the host
// compiler) call exactly the code the kernels run, index by index, and compare it with the
// CPU path; the kernels in cuda/kernels.hpp are thin loops around these bodies.

#include <cstddef>
#include <cstdint>

#include "spruce/core/config.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/granularity/detail/n_m_kernels.hpp"
#include "spruce/select/key.hpp"

namespace spruce::cuda::detail {

/// Shape and strides in plain arrays (device code cannot call std::array::operator[]): what
/// a kernel needs to map a flat row-major index of a strided view to its offset.
struct strided_shape {
  std::size_t rank = 0;
  std::size_t extent[max_rank] = {};
  std::size_t stride[max_rank] = {};
};

template <class T, class Space>
strided_shape strided_shape_of(const tensor_ref<T, Space>& t) noexcept {
  strided_shape s;
  s.rank = t.rank();
  for (std::size_t r = 0; r < s.rank; ++r) {
    s.extent[r] = t.extent(r);
    s.stride[r] = t.stride(r);
  }
  return s;
}

/// Offset of the element with flat row-major index `flat` (the same walk as
/// tensor_ref::offset_of).
SPRUCE_HD std::size_t offset_of(const strided_shape& s, std::size_t flat) noexcept {
  std::size_t off = 0;
  for (std::size_t r = s.rank; r-- > 0;) {
    off += (flat % s.extent[r]) * s.stride[r];
    flat /= s.extent[r];
  }
  return off;
}

// ---- radix select ---------------------------------------------------------------------

/// Bits per radix digit and histogram bins: the CPU's select/radix_select.hpp digit, so the
/// device visits the same prefixes level by level (only speed would differ otherwise; the
/// selected key, `less` and `equal` are unique anyway).
inline constexpr int radix_bits = 11;
inline constexpr std::size_t radix_bins = std::size_t{1} << radix_bits;

/// The state of an MSD radix select between two histogram passes. The device keeps it in
/// global memory and advances it with one thread (plan_step), so no level needs the host;
/// the host test advances it with a host histogram and must land on select::kth_smallest.
template <class Key>
struct radix_plan {
  Key prefix = 0;               // the digits chosen so far
  Key fixed = 0;                // the bits they cover
  int done = 0;                 // bits chosen
  unsigned long long rank = 0;  // 0-based rank still to find among the matching keys
  unsigned long long less = 0;  // keys known to be below the prefix
  unsigned long long equal = 0; // keys equal to the result (set by the last step)
};

template <class Key>
SPRUCE_HD constexpr int key_bits() noexcept {
  return static_cast<int>(sizeof(Key) * 8);
}

/// Number of histogram passes a select over keys of type Key takes (3 for float keys, 6 for
/// double).
template <class Key>
SPRUCE_HD constexpr int radix_levels() noexcept {
  return (key_bits<Key>() + radix_bits - 1) / radix_bits;
}

template <class Key>
SPRUCE_HD constexpr int plan_digit_bits(const radix_plan<Key>& p) noexcept {
  const int left = key_bits<Key>() - p.done;
  return left < radix_bits ? left : radix_bits;
}

template <class Key>
SPRUCE_HD constexpr int plan_shift(const radix_plan<Key>& p) noexcept {
  return key_bits<Key>() - p.done - plan_digit_bits(p);
}

/// True when key `k` shares the prefix found so far (it takes part in the next histogram).
template <class Key>
SPRUCE_HD constexpr bool plan_matches(const radix_plan<Key>& p, Key k) noexcept {
  return static_cast<Key>(k & p.fixed) == p.prefix;
}

/// The histogram bin of key `k` at the plan's current level.
template <class Key>
SPRUCE_HD constexpr unsigned plan_bin(const radix_plan<Key>& p, Key k) noexcept {
  return static_cast<unsigned>((k >> plan_shift(p)) & static_cast<Key>(radix_bins - 1));
}

/// Advances the plan by one level from the histogram `hist` (radix_bins counts) of the
/// matching keys' current digit: the bin holding rank `rank` becomes part of the prefix.
/// After the last level, `prefix` is the selected key, `less` the keys below it and `equal`
/// the keys equal to it, as select::detail::radix_select returns them.
template <class Key>
SPRUCE_HD void plan_step(radix_plan<Key>& p, const unsigned long long* hist) noexcept {
  const int db = plan_digit_bits(p), shift = plan_shift(p);
  std::size_t b = 0;
  unsigned long long acc = 0;
  while (b + 1 < radix_bins && acc + hist[b] <= p.rank) acc += hist[b++];
  p.less += acc;
  p.rank -= acc;
  p.prefix = static_cast<Key>(p.prefix | static_cast<Key>(static_cast<Key>(b) << shift));
  p.fixed = static_cast<Key>(p.fixed | static_cast<Key>(static_cast<Key>((std::size_t{1} << db) - 1) << shift));
  p.done += db;
  p.equal = hist[b];
}

/// Keep byte of an element with key `k` once the count-th smallest key `t` is known. With
/// `split` (lower-index ties and a tie group straddling the cut), the first `need` keys
/// equal to `t` in flat order are pruned: `equal_before` is how many equal keys come before
/// this one. Otherwise everything above `t` is kept.
template <class Key>
SPRUCE_HD constexpr std::uint8_t keep_of(Key k, Key t, bool split, unsigned long long equal_before,
                                         unsigned long long need) noexcept {
  if (split && k == t) return static_cast<std::uint8_t>(equal_before >= need);
  return static_cast<std::uint8_t>(k > t);
}

// ---- element-wise ---------------------------------------------------------------------

/// A weight after its keep byte is applied: pruned weights become +0, as on the CPU.
template <class T>
SPRUCE_HD constexpr T apply_one(T w, std::uint8_t keep) noexcept {
  return keep ? w : T(0);
}

/// 1 when `x` counts as nonzero (torch.count_nonzero: -0 is zero, NaN is not).
template <class T>
SPRUCE_HD constexpr unsigned nonzero_one(T x) noexcept {
  return x != T(0) ? 1u : 0u;
}

/// Element score of a criterion for one weight: the group score of a group of one
/// (element, fold from the identity, finish), which is what the CPU's element granularity
/// computes.
template <class C, class T>
SPRUCE_HD T element_score(const C& c, T w, T g, T h) {
  return c.finish(c.reduce(c.template identity<T>(), c.element(w, g, h)));
}

// ---- N:M ------------------------------------------------------------------------------

/// Where group `g` of an N:M grouping lies in a contiguous [outer, axis, inner] weight:
/// groups are numbered (outer, group along the axis, inner position), the inner position
/// fastest, so neighbouring threads read neighbouring weights of a conv weight.
struct n_m_group_at {
  std::size_t offset, len, stride;
};

SPRUCE_HD n_m_group_at n_m_group(std::size_t g, std::size_t outer_unused, std::size_t axis,
                                 std::size_t inner, std::size_t m) noexcept {
  (void)outer_unused;
  const std::size_t per_row = (axis + m - 1) / m;
  const std::size_t t = g % inner, rest = g / inner;
  const std::size_t gi = rest % per_row, o = rest / per_row;
  const std::size_t i0 = gi * m;
  const std::size_t len = axis - i0 < m ? axis - i0 : m;
  return {o * axis * inner + i0 * inner + t, len, inner};
}

/// Number of N:M groups of a [outer, axis, inner] weight (a short last group counts).
SPRUCE_HD std::size_t n_m_group_count(std::size_t outer, std::size_t axis, std::size_t inner,
                                      std::size_t m) noexcept {
  return outer * inner * ((axis + m - 1) / m);
}

/// Keep bytes of one group of any length (the device's general path): weight j is beaten
/// by every weight with a larger magnitude key and by every earlier one with an equal key,
/// and kept when fewer than `n` beat it (granularity/detail/n_m_kernels.hpp's rule; the
/// padding of a short group loses every tie, so only the real weights compete). No local
/// arrays: each weight re-reads the group, which stays in cache. Returns the NaN count.
template <class T>
SPRUCE_HD std::uint32_t n_m_group_keep(const T* w, std::uint8_t* k, std::size_t len,
                                       std::size_t stride, std::size_t n) noexcept {
  std::uint32_t bad = 0;
  for (std::size_t j = 0; j < len; ++j) {
    const auto kj = spruce::detail::n_m_abs_key(w[j * stride]);
    bad += kj > spruce::detail::n_m_key<T>::inf;
    std::size_t beaten = 0;
    for (std::size_t i = 0; i < len; ++i) {
      const auto ki = spruce::detail::n_m_abs_key(w[i * stride]);
      beaten += (ki > kj) || (i < j && ki == kj);
    }
    k[j * stride] = static_cast<std::uint8_t>(beaten < n);
  }
  return bad;
}

/// Keep bytes of one full group of the compile-time pattern N:M (M small): the CPU's own
/// unrolled ranking network (n_m_lane), which needs no local memory.
template <std::size_t N, std::size_t M, class T>
SPRUCE_HD std::uint32_t n_m_group_keep_fixed(const T* w, std::uint8_t* k, std::size_t stride) noexcept {
  return spruce::detail::n_m_lane<N, M>(w, k, stride, std::make_index_sequence<M>{});
}

// ---- CSR compression ------------------------------------------------------------------

/// Entries of one row of `cols` keep bytes that CSR stores (every kept entry, zeros
/// included, as sparse::csr_matrix::from_dense stores them).
SPRUCE_HD std::size_t csr_row_count(const std::uint8_t* keep_row, std::size_t cols) noexcept {
  std::size_t c = 0;
  for (std::size_t j = 0; j < cols; ++j) c += keep_row[j];
  return c;
}

/// Writes one row's column indices and values, in increasing column order, at col_idx /
/// values (the row's slice, starting at row_ptr[row]).
template <class T, class Index>
SPRUCE_HD void csr_row_write(const T* dense_row, const std::uint8_t* keep_row, std::size_t cols,
                             Index* col_idx, T* values) noexcept {
  std::size_t p = 0;
  for (std::size_t j = 0; j < cols; ++j) {
    if (!keep_row[j]) continue;
    col_idx[p] = static_cast<Index>(j);
    values[p] = dense_row[j];
    ++p;
  }
}

}  // namespace spruce::cuda::detail
