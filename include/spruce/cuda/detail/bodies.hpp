#pragma once
// The CUDA backend's per-element, per-group and per-step bodies. Every function here is
// SPRUCE_HD and needs no CUDA header, so the host tests (tests/cuda_host, built by the host
// compiler) call exactly the code the kernels run, index by index, and compare it with the
// CPU path; the kernels in cuda/kernels.hpp are thin loops around these bodies.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "spruce/core/config.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/granularity/group_layout.hpp"
#include "spruce/granularity/detail/n_m_kernels.hpp"
#include "spruce/prune/global.hpp"
#include "spruce/prune/group_scores.hpp"
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

/// Elements per tie tile of the mask pass (256 threads x 16 keys): the unit whose equal
/// keys are counted and scanned when a tie group straddles the cut.
inline constexpr std::size_t tie_tile_size = 4096;

/// Where each segment's tie tiles start when the tiles of several segments (tensors of a
/// global selection) are numbered one after another: offsets[i] is the first tile of
/// segment i, offsets.back() the total. One exclusive scan over the tiles' equal-key counts
/// then gives every tile the equal keys of all earlier tiles, earlier segments included
/// (the CPU's "by segment, then index" tie order).
inline std::vector<std::size_t> tile_offsets(std::span<const std::size_t> sizes, std::size_t tile) {
  std::vector<std::size_t> off(sizes.size() + 1, 0);
  for (std::size_t i = 0; i < sizes.size(); ++i) off[i + 1] = off[i] + (sizes[i] + tile - 1) / tile;
  return off;
}

// ---- global scope ---------------------------------------------------------------------

/// The rounds of the CPU's global selection with sparsity limits (prune/global.hpp's
/// global_masks_of), over any selection: `choose(which, count, ties)` returns the keep
/// bytes (type Keep) of the `count` lowest scores over the parts listed in `which`, as if
/// concatenated in that order; `pruned(keep)` counts the zeros of one part's bytes (called
/// only when the limits bound anything). Each round selects the remaining budget over the
/// parts not yet fixed; a part whose share falls outside its [lo, hi] is fixed at the bound
/// (exactly, ties by index, on that part alone) and the budget shrinks by it; the rounds
/// stop when no part is outside its bounds. The device's global scope runs it with device
/// selections; the host test runs it with the host orchestration and compares the masks
/// with spruce::global_masks.
template <class Keep, class Select, class Pruned>
std::vector<Keep> global_rounds(std::span<const std::size_t> sizes, std::size_t budget, const sparsity_limits& limits,
                                select::tie_break ties, Select&& choose, Pruned&& pruned) {
  const std::size_t nt = sizes.size();
  std::vector<spruce::detail::global_part> bound(nt);
  for (std::size_t i = 0; i < nt; ++i) bound[i] = spruce::detail::limits_for(sizes[i], limits);
  std::vector<Keep> keep(nt);
  std::vector<char> fixed(nt, 0);
  for (std::size_t round = 0; round <= nt; ++round) {
    std::vector<std::size_t> free;
    std::size_t free_total = 0;
    for (std::size_t i = 0; i < nt; ++i)
      if (!fixed[i]) free.push_back(i), free_total += sizes[i];
    if (free.empty()) break;
    std::vector<Keep> masks = choose(std::span<const std::size_t>(free), budget < free_total ? budget : free_total, ties);
    const bool bounded = limits.bounded();
    bool violated = false;
    for (std::size_t j = 0; j < free.size(); ++j) {
      const std::size_t i = free[j];
      const std::size_t cut = bounded ? pruned(masks[j]) : 0;
      if (bounded && (cut < bound[i].lo || cut > bound[i].hi)) {
        const std::size_t at = cut < bound[i].lo ? bound[i].lo : bound[i].hi;
        keep[i] = std::move(choose(std::span<const std::size_t>(&i, 1), at, select::tie_break::lower_index).front());
        fixed[i] = 1;
        budget -= budget < at ? budget : at;
        violated = true;
      } else {
        keep[i] = std::move(masks[j]);
      }
    }
    if (!violated) break;
  }
  return keep;
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

// ---- group scores --------------------------------------------------------------------

/// Returns `x` unchanged, but in device code as the result of an empty asm statement, so
/// nvcc cannot contract the multiply that produced it with the add that folds it into an
/// accumulator (nvcc fuses a * b + c into one FMA by default, which rounds once where the
/// CPU's default build rounds twice). On the host it is the identity.
template <class T>
SPRUCE_HD T no_contract(T x) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4)
    asm("" : "+f"(x));
  else if constexpr (sizeof(T) == 8)
    asm("" : "+d"(x));
#endif
  return x;
}

/// A group layout as the device walks it: prune/group_scores.hpp's detail::group_walk in
/// plain numbers (rows along axis 0 in units of row_tile rows; inside a row, `runs`
/// contiguous runs of `run` elements, each in one group) plus the chunking of rows that
/// the CPU used when one row unit holds every group (`chunks` contiguous chunks of rows,
/// split as parallel_chunks splits them, each folded from the identity and then folded
/// into the result in chunk order). `q_ptr` / `q_runs` (device arrays) list, for each
/// group position q inside a row unit, the runs j with run_group[j] == q, in increasing j.
struct group_plan {
  std::size_t rows = 0, row_tile = 1, row_group_stride = 0, run = 1, runs = 0;
  std::size_t units = 0, groups = 0, chunks = 1;
  bool long_runs = false;
};

/// The CPU's long-run fold (reduce_long_run): eight lanes k, k + 8, ...; the tail into
/// lane 0; lanes folded 0..7. Eight named accumulators, so no local array is needed.
template <bool G, bool H, class C, class T>
SPRUCE_HD T fold_long_run(const C& c, const T* w, const T* g, const T* h, std::size_t len) {
  auto el = [&](std::size_t i) { return no_contract(c.element(w[i], G ? g[i] : T(0), H ? h[i] : T(0))); };
  const T id = c.template identity<T>();
  T a0 = id, a1 = id, a2 = id, a3 = id, a4 = id, a5 = id, a6 = id, a7 = id;
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    a0 = c.reduce(a0, el(i + 0));
    a1 = c.reduce(a1, el(i + 1));
    a2 = c.reduce(a2, el(i + 2));
    a3 = c.reduce(a3, el(i + 3));
    a4 = c.reduce(a4, el(i + 4));
    a5 = c.reduce(a5, el(i + 5));
    a6 = c.reduce(a6, el(i + 6));
    a7 = c.reduce(a7, el(i + 7));
  }
  for (; i < len; ++i) a0 = c.reduce(a0, el(i));
  T r = a0;
  r = c.reduce(r, a1);
  r = c.reduce(r, a2);
  r = c.reduce(r, a3);
  r = c.reduce(r, a4);
  r = c.reduce(r, a5);
  r = c.reduce(r, a6);
  r = c.reduce(r, a7);
  return r;
}

/// The CPU's short-run fold (reduce_short_run): one running value.
template <bool G, bool H, class C, class T>
SPRUCE_HD T fold_short_run(const C& c, const T* w, const T* g, const T* h, std::size_t len) {
  T a = c.template identity<T>();
  for (std::size_t i = 0; i < len; ++i) a = c.reduce(a, no_contract(c.element(w[i], G ? g[i] : T(0), H ? h[i] : T(0))));
  return a;
}

/// Folds rows [r0, r1) of group position q into `acc`, in the CPU's order: row by row, and
/// inside a row the group's runs in increasing order, each run folded first.
template <bool G, bool H, class C, class T>
SPRUCE_HD T fold_group_rows(const C& c, const T* w, const T* g, const T* h, const group_plan& p,
                            const std::size_t* q_ptr, const std::size_t* q_runs, std::size_t q,
                            std::size_t r0, std::size_t r1, T acc) {
  const std::size_t row_len = p.run * p.runs;
  for (std::size_t r = r0; r < r1; ++r)
    for (std::size_t x = q_ptr[q]; x < q_ptr[q + 1]; ++x) {
      const std::size_t o = r * row_len + q_runs[x] * p.run;
      const T* go = G ? g + o : nullptr;
      const T* ho = H ? h + o : nullptr;
      const T v = p.long_runs ? fold_long_run<G, H>(c, w + o, go, ho, p.run) : fold_short_run<G, H>(c, w + o, go, ho, p.run);
      acc = c.reduce(acc, no_contract(v));
    }
  return acc;
}

/// The score of group `group` (one device thread per group), bit for bit what
/// spruce::group_scores computes on the CPU for an element-wise criterion: rows of its
/// row unit in order when there are several units; else the rows split into `chunks`
/// chunks as parallel_chunks splits them (chunk c starts at c * q + min(c, rem)), each
/// chunk folded from the identity and the chunks folded in order into the identity.
template <bool G, bool H, class C, class T>
SPRUCE_HD T group_score_of(const C& c, const T* w, const T* g, const T* h, const group_plan& p,
                           const std::size_t* q_ptr, const std::size_t* q_runs, std::size_t group) {
  const std::size_t u = group / p.row_group_stride, q = group % p.row_group_stride;
  T acc = c.template identity<T>();
  if (p.units > 1) {
    const std::size_t r0 = u * p.row_tile, r1e = r0 + p.row_tile;
    acc = fold_group_rows<G, H>(c, w, g, h, p, q_ptr, q_runs, q, r0, r1e < p.rows ? r1e : p.rows, acc);
  } else {
    const std::size_t qn = p.rows / p.chunks, rem = p.rows % p.chunks;
    for (std::size_t ch = 0; ch < p.chunks; ++ch) {
      const std::size_t b = ch * qn + (ch < rem ? ch : rem), e = b + qn + (ch < rem ? 1 : 0);
      const T part = fold_group_rows<G, H>(c, w, g, h, p, q_ptr, q_runs, q, b, e, c.template identity<T>());
      acc = c.reduce(acc, part);
    }
  }
  return c.finish(acc);
}

/// The group of the element with flat row-major index `i` (expand_groups' walk):
/// `run_group` is the walk's run_group array.
SPRUCE_HD std::size_t group_of_element(const group_plan& p, const std::size_t* run_group, std::size_t i) noexcept {
  const std::size_t row_len = p.run * p.runs;
  const std::size_t r = i / row_len, j = (i % row_len) / p.run;
  return (r / p.row_tile) * p.row_group_stride + run_group[j];
}

/// A group_plan with its index arrays, built on the host from a layout (what the device
/// path uploads). `threads` is the CPU's detail::kernel_threads() whose chunking of rows
/// the plan reproduces (parallel_chunks: chunks = min(threads * chunks_per_thread, rows)
/// when the tensor has at least parallel_threshold elements, at least two rows and more
/// than one thread; one chunk otherwise).
struct group_plan_arrays {
  group_plan plan;
  std::vector<std::size_t> q_ptr, q_runs, run_group;
};

inline group_plan_arrays make_group_plan(const granularity::group_layout& layout, std::size_t threads) {
  group_plan_arrays out;
  const spruce::detail::group_walk walk = spruce::detail::make_walk(layout);
  group_plan& p = out.plan;
  p.rows = walk.rows;
  p.row_tile = walk.row_tile;
  p.row_group_stride = walk.row_group_stride;
  p.run = walk.run;
  p.runs = walk.runs;
  p.units = (walk.rows + walk.row_tile - 1) / walk.row_tile;
  p.groups = layout.groups();
  p.long_runs = walk.run >= spruce::detail::long_run_min;
  p.chunks = 1;
  if (p.units <= 1 && layout.size() >= parallel_threshold && walk.rows >= 2 && threads > 1) {
    p.chunks = threads * spruce::detail::chunks_per_thread;
    if (p.chunks > walk.rows) p.chunks = walk.rows;
  }
  out.run_group = walk.run_group;
  out.q_ptr.assign(walk.row_group_stride + 1, 0);
  for (std::size_t j = 0; j < walk.runs; ++j) ++out.q_ptr[walk.run_group[j] + 1];
  for (std::size_t q = 0; q < walk.row_group_stride; ++q) out.q_ptr[q + 1] += out.q_ptr[q];
  out.q_runs.resize(walk.runs);
  std::vector<std::size_t> fill(out.q_ptr.begin(), out.q_ptr.end() - 1);
  for (std::size_t j = 0; j < walk.runs; ++j) out.q_runs[fill[walk.run_group[j]]++] = j;
  return out;
}

// ---- group criteria (bn_scale, random, wanda) -------------------------------------------

/// criterion::bn_scale's score of group i: |gamma[i]| (std::abs: -0 gives +0).
template <class T>
SPRUCE_HD T bn_scale_score(T gamma) noexcept {
  return std::abs(gamma);
}

/// criterion::random's score of group i: the top 53 bits of the splitmix64 stream of
/// `seed` at i, as a double in [0, 1), then rounded to T.
template <class T>
SPRUCE_HD T random_score(std::uint64_t seed, std::size_t i) noexcept {
  return static_cast<T>(static_cast<double>(spruce::detail::splitmix64(seed, i) >> 11) * 0x1.0p-53);
}

/// criterion::wanda's score of the weight with flat index f of a row-major [out, in,
/// inner...] weight: |w| * ||X_j|| with j = (f / inner) % channels, one rounding.
template <class T>
SPRUCE_HD T wanda_element(const T* w, const T* norms, std::size_t inner, std::size_t channels, std::size_t f) noexcept {
  return std::abs(w[f]) * norms[(f / inner) % channels];
}

/// criterion::wanda's score of group `group`: the sum, from +0, of its elements' scores in
/// increasing flat index (the CPU adds out[group_of(f)] += score(f) for f = 0, 1, ...),
/// each product rounded before the add. The group's elements in flat order are the rows of
/// its row unit (every row when one unit holds all groups) and, inside a row, its runs in
/// increasing order (q_runs) -- the walk of the group plan.
template <class T>
SPRUCE_HD T wanda_group_score(const T* w, const T* norms, std::size_t inner, std::size_t channels, const group_plan& p,
                              const std::size_t* q_ptr, const std::size_t* q_runs, std::size_t group) noexcept {
  const std::size_t u = group / p.row_group_stride, q = group % p.row_group_stride, row_len = p.run * p.runs;
  const std::size_t r0 = p.units > 1 ? u * p.row_tile : 0;
  const std::size_t r1 = p.units > 1 ? (r0 + p.row_tile < p.rows ? r0 + p.row_tile : p.rows) : p.rows;
  T acc = T(0);
  for (std::size_t r = r0; r < r1; ++r)
    for (std::size_t x = q_ptr[q]; x < q_ptr[q + 1]; ++x) {
      const std::size_t o = r * row_len + q_runs[x] * p.run;
      for (std::size_t e = 0; e < p.run; ++e) acc = acc + no_contract(wanda_element(w, norms, inner, channels, o + e));
    }
  return acc;
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

// ---- block-sparse compression ---------------------------------------------------------

/// 1 when block (bi, bj) of br x bc entries of a rows x cols keep mask keeps anything: the
/// blocks sparse::block_sparse_matrix::from_dense stores (a partial last block row /
/// column counts only its entries inside the matrix).
SPRUCE_HD std::uint8_t block_hit(const std::uint8_t* keep, std::size_t rows, std::size_t cols, std::size_t br, std::size_t bc,
                                 std::size_t bi, std::size_t bj) noexcept {
  const std::size_t i0 = bi * br, j0 = bj * bc;
  const std::size_t i1 = rows - i0 < br ? rows : i0 + br, j1 = cols - j0 < bc ? cols : j0 + bc;
  for (std::size_t i = i0; i < i1; ++i)
    for (std::size_t j = j0; j < j1; ++j)
      if (keep[i * cols + j]) return 1;
  return 0;
}

/// Writes the br * bc values of stored block (bi, bj), row-major, as from_dense stores
/// them: kept entries as they are (-0 included), pruned entries and the padding of a
/// partial block +0.
template <class T>
SPRUCE_HD void block_write(const T* dense, const std::uint8_t* keep, std::size_t rows, std::size_t cols, std::size_t br,
                           std::size_t bc, std::size_t bi, std::size_t bj, T* out) noexcept {
  for (std::size_t r = 0; r < br; ++r)
    for (std::size_t c = 0; c < bc; ++c) {
      const std::size_t i = bi * br + r, j = bj * bc + c;
      out[r * bc + c] = i < rows && j < cols && keep[i * cols + j] ? dense[i * cols + j] : T(0);
    }
}

// ---- N:M compression --------------------------------------------------------------------

/// Entries that the keep mask keeps in group g (columns g * m ...) of one row of `cols`.
SPRUCE_HD std::size_t n_m_group_kept(const std::uint8_t* keep_row, std::size_t cols, std::size_t m, std::size_t g) noexcept {
  const std::size_t j0 = g * m, len = cols - j0 < m ? cols - j0 : m;
  std::size_t c = 0;
  for (std::size_t q = 0; q < len; ++q) c += keep_row[j0 + q] != 0;
  return c;
}

/// Position t of a row's packed N:M positions (`bits` bits each, low bits first): the
/// layout of sparse::n_m_matrix::positions().
SPRUCE_HD std::size_t n_m_slot_position(const std::uint8_t* pos_row, std::size_t t, std::size_t bits) noexcept {
  return static_cast<std::size_t>(pos_row[t * bits / 8] >> (t * bits % 8)) & ((std::size_t{1} << bits) - 1);
}

/// Writes groups [g0, g1) of one row into the sparse::n_m_matrix layout: the N values of
/// each group at values_row[g * n ...] and their positions, packed, into the bytes of
/// pos_row that those groups cover (g0 starts a byte: a multiple of the pattern's step of
/// groups; the bytes are cleared first, so a chunk of groups owns its bytes and chunks
/// write in parallel). Every group must keep at most n (checked before): kept entries take
/// their slots in column order, and the fillers of a group keeping fewer take its lowest
/// free positions, value +0 -- from_dense's rule.
template <class T>
SPRUCE_HD void n_m_write_groups(const T* dense_row, const std::uint8_t* keep_row, std::size_t cols, std::size_t n, std::size_t m,
                                std::size_t bits, std::size_t g0, std::size_t g1, std::size_t groups, std::size_t row_bytes,
                                T* values_row, std::uint8_t* pos_row) noexcept {
  const std::size_t b0 = g0 * n * bits / 8, b1 = g1 == groups ? row_bytes : g1 * n * bits / 8;
  for (std::size_t b = b0; b < b1; ++b) pos_row[b] = 0;
  for (std::size_t g = g0; g < g1; ++g) {
    const std::size_t j0 = g * m, len = cols - j0 < m ? cols - j0 : m;
    std::size_t fill = n - n_m_group_kept(keep_row, cols, m, g), slot = 0;
    for (std::size_t q = 0; q < m && slot < n; ++q) {
      const bool kept = q < len && keep_row[j0 + q] != 0;
      if (!kept) {
        if (fill == 0) continue;
        --fill;
      }
      const std::size_t t = g * n + slot;
      pos_row[t * bits / 8] = static_cast<std::uint8_t>(pos_row[t * bits / 8] | (q << (t * bits % 8)));
      values_row[t] = kept ? dense_row[j0 + q] : T(0);
      ++slot;
    }
  }
}

// ---- N:M product ------------------------------------------------------------------------

/// The sum over the stored slots of row i of an N:M matrix (values_row, pos_row) of value *
/// B(column, j), for C = alpha * A * B + beta * C with B row-major (leading dimension ldb):
/// the device N:M kernel's inner loop, one output per thread. Accumulation order: from +0,
/// the slots in storage order (groups left to right, slots in increasing position), each
/// product rounded before it is added (no FMA contraction: no_contract). That is the CPU
/// sparse::spmm's order for a row whose K fits one of its panel slices (slice_depth), so
/// the results agree bit for bit there; over several slices the CPU adds per-slice partial
/// sums and may differ in the last bits. Slots past the last column (zeros of a short last
/// group) are skipped: the CPU adds +0 * 0 there, which changes no sum that starts at +0.
template <class T>
SPRUCE_HD T n_m_dot(const T* values_row, const std::uint8_t* pos_row, std::size_t groups, std::size_t n, std::size_t m,
                    std::size_t bits, std::size_t cols, const T* b, std::size_t ldb, std::size_t j) noexcept {
  T acc = T(0);
  for (std::size_t g = 0, t = 0; g < groups; ++g)
    for (std::size_t s = 0; s < n; ++s, ++t) {
      const std::size_t col = g * m + n_m_slot_position(pos_row, t, bits);
      if (col < cols) acc = acc + no_contract(values_row[t] * b[col * ldb + j]);
    }
  return acc;
}

/// C(i, j) from the row sum, as the CPU's store does it: alpha * acc when beta == 0 (NaN in
/// C does not survive), else alpha * acc + beta * C, both products rounded.
template <class T>
SPRUCE_HD T spmm_store_one(T acc, T alpha, T beta, T c) noexcept {
  if (beta == T(0)) return alpha * acc;
  return no_contract(alpha * acc) + no_contract(beta * c);
}

}  // namespace spruce::cuda::detail
