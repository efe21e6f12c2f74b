#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/granularity/group_layout.hpp"

namespace spruce {

namespace detail {

/// A group layout split for walking: rows along axis 0 (in units of tile[0] rows, whose
/// groups never overlap), and inside a row `runs` contiguous runs of `run` elements that
/// each belong to one group (the trailing fully reduced axes), with run_group[j] the group
/// offset of run j inside the row.
struct group_walk {
  std::size_t rows = 0, row_tile = 1, row_group_stride = 0, run = 1, runs = 0;
  std::vector<std::size_t> run_group;
};

inline group_walk make_walk(const granularity::group_layout& l) {
  group_walk w;
  // Normalise to rank >= 2 with a leading extent-1 axis so that "rows" always exist.
  std::array<std::size_t, max_rank + 1> e{}, t{};
  std::size_t rank = l.rank;
  if (rank == 1) {
    e[0] = 1, t[0] = 1, e[1] = l.extent[0], t[1] = l.tile[0];
    rank = 2;
  } else {
    for (std::size_t r = 0; r < rank; ++r) e[r] = l.extent[r], t[r] = l.tile[r];
  }
  auto grid = [&](std::size_t r) { return t[r] == 0 ? 0 : (e[r] + t[r] - 1) / t[r]; };
  std::size_t k = rank;  // first axis of the fully reduced suffix (>= 1)
  while (k > 1 && t[k - 1] >= e[k - 1]) --k;
  w.rows = e[0];
  w.row_tile = t[0];
  for (std::size_t r = k; r < rank; ++r) w.run *= e[r];
  w.runs = 1;
  for (std::size_t r = 1; r < k; ++r) w.runs *= e[r];
  std::size_t row_groups = 1;
  for (std::size_t r = 1; r < rank; ++r) row_groups *= grid(r);
  w.row_group_stride = row_groups;
  w.run_group.resize(w.runs);
  std::array<std::size_t, max_rank + 1> idx{};
  for (std::size_t j = 0; j < w.runs; ++j) {
    std::size_t g = 0, stride = 1;
    for (std::size_t r = rank; r-- > 1;) {
      if (r < k) g += (idx[r] / t[r]) * stride;
      stride *= grid(r);
    }
    w.run_group[j] = g;
    for (std::size_t r = k; r-- > 1;) {  // odometer over axes 1..k-1
      if (++idx[r] < e[r]) break;
      idx[r] = 0;
    }
  }
  return w;
}

/// Contiguous copy of `v` when it is strided, else a view of its data.
template <class T>
const T* contiguous(const tensor_ref<const T>& v, std::vector<T>& scratch) {
  if (v.is_contiguous()) return v.data();
  scratch.resize(v.size());
  gather(v, scratch.data());
  return scratch.data();
}

// The long-run fold below is kept out of line and, on GCC for x86, tuned for vectors of at
// most 256 bits. Its eight lanes are eight separate accumulators (the summation order the
// fixtures are checked against); with 512-bit vectors (-march=native on AVX-512) GCC 12
// vectorises it across loop iterations and spends the time transposing lanes (filter L2
// scores of a 512x512x3x3 weight: 0.21 ms against 0.07 ms in the default build). At 256
// bits it is one vector of eight accumulators, as SSE's two vectors of four are in the
// default build: the same order, hence the same bits, at the same speed. The preference
// changes no instruction set and no result, only GCC's choice of vector width. Products
// are not contracted into FMAs here: an FMA's latency (4 cycles on Zen, against 3 for an
// add) lengthens the one dependent chain per lane, which made the -march=native build 15%
// slower than the default one, and a contracted sum would round differently from it.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && \
    (defined(__x86_64__) || defined(__i386__))
#define SPRUCE_DETAIL_LONG_RUN_ATTR \
  __attribute__((noinline, target("prefer-vector-width=256"), optimize("fp-contract=off")))
#else
#define SPRUCE_DETAIL_LONG_RUN_ATTR
#endif

/// Folds a run of at least 32 elements in eight independent lanes: a single running sum
/// is a chain of dependent adds (4 cycles each); eight lanes overlap and vectorise. Lane k
/// folds elements k, k + 8, k + 16, ..., the tail goes into lane 0, and the lanes are then
/// folded in order 0..7. Whether the gradient and Hessian are read is a compile-time
/// choice, so the loop has no per-element branch.
template <bool G, bool H, class C, class T>
SPRUCE_DETAIL_LONG_RUN_ATTR T reduce_long_run(const C& c, const T* __restrict w,
                                              const T* __restrict g, const T* __restrict h,
                                              std::size_t len) {
  auto el = [&](std::size_t i) { return c.element(w[i], G ? g[i] : T(0), H ? h[i] : T(0)); };
  constexpr std::size_t lanes = 8;
  T acc[lanes];
  for (std::size_t k = 0; k < lanes; ++k) acc[k] = c.template identity<T>();
  std::size_t i = 0;
  for (; i + lanes <= len; i += lanes)
    for (std::size_t k = 0; k < lanes; ++k) acc[k] = c.reduce(acc[k], el(i + k));
  for (; i < len; ++i) acc[0] = c.reduce(acc[0], el(i));
  T r = acc[0];
  for (std::size_t k = 1; k < lanes; ++k) r = c.reduce(r, acc[k]);
  return r;
}

#undef SPRUCE_DETAIL_LONG_RUN_ATTR

/// Folds a short run (a 3x3 kernel) with one running value, inline.
template <bool G, bool H, class C, class T>
inline T reduce_short_run(const C& c, const T* __restrict w, const T* __restrict g,
                          const T* __restrict h, std::size_t len) {
  T a = c.template identity<T>();
  for (std::size_t i = 0; i < len; ++i)
    a = c.reduce(a, c.element(w[i], G ? g[i] : T(0), H ? h[i] : T(0)));
  return a;
}

/// Runs shorter than this fold with reduce_short_run, longer ones with reduce_long_run.
inline constexpr std::size_t long_run_min = 32;

template <class T>
void check_input(const tensor_ref<const T>& x, const tensor_ref<const T>& w, const char* what,
                 const char* criterion_needs, const std::string& name) {
  if (x.rank() == 0)
    throw error(std::string(criterion_needs) + " needs the " + what + " of " + tensor_label(name) +
                ", but none was given; pass inputs." + what + " with the weight's shape");
  if (!x.same_shape(w))
    throw error("the " + std::string(what) + " of " + tensor_label(name) + " has shape " +
                shape_string(x.shape()) + " but the weight has shape " + shape_string(w.shape()) +
                "; pass the " + what + " of this weight");
}

}  // namespace detail

/// One score per group of `layout`, in group order, under criterion `c`. Validates first:
/// the criterion's own parameters (a criterion may provide `validate(name)`, as Ln does
/// for its p), that the layout covers the weight and that the gradient / Hessian the
/// criterion needs are present with the weight's shape; throws spruce::error naming the
/// tensor otherwise. `in` may carry any extension: element-wise criteria ignore it, a
/// group criterion receives it as it is (Wanda reads its activation norms from it).
/// Element-wise criteria are folded per group in parallel (rows of groups never overlap;
/// when every group spans all rows, each thread folds its rows into private partials).
template <criterion::any_criterion C, class T, class Extra>
std::vector<T> group_scores(const C& c, const criterion::inputs<T, Extra>& in,
                            const granularity::group_layout& layout, const std::string& name = {}) {
  if constexpr (requires { c.validate(name); }) c.validate(name);
  if (layout.size() != in.weight.size())
    throw error("group layout of " + std::to_string(layout.size()) + " elements does not cover " +
                detail::tensor_label(name) + " of shape " + shape_string(in.weight.shape()) +
                "; build the layout from this tensor's shape");
  std::vector<T> out(layout.groups());
  if constexpr (criterion::group_criterion<C>) {
    static_assert(requires(std::span<T> o) { c.group_scores(in, layout, o, name); },
                  "this group criterion cannot read these inputs: pass criterion::inputs<T, "
                  "criterion::extra_t<C>> (the criterion's extra_type), e.g. the activation "
                  "norms for criterion::wanda");
    c.group_scores(in, layout, std::span<T>(out), name);
    return out;
  } else {
    if constexpr (C::needs_grad) detail::check_input(in.grad, in.weight, "grad", "this criterion", name);
    if constexpr (C::needs_hessian) detail::check_input(in.hessian, in.weight, "hessian", "this criterion", name);
    if (out.empty()) return out;
    std::vector<T> ws, gs, hs;
    const T* w = detail::contiguous(in.weight, ws);
    const T* g = C::needs_grad ? detail::contiguous(in.grad, gs) : nullptr;
    const T* h = C::needs_hessian ? detail::contiguous(in.hessian, hs) : nullptr;
    const detail::group_walk walk = detail::make_walk(layout);
    const std::size_t row_len = walk.run * walk.runs;
    const std::size_t units = (walk.rows + walk.row_tile - 1) / walk.row_tile;
    const std::size_t n = layout.size();

    // Every run has the same length, so the short / long choice is made once per call:
    // the loop over short runs holds no call (whose clobbered registers would cost the
    // 3x3-kernel walk of channel scores a few percent).
    auto fold = [&]<bool Long>(std::size_t r0, std::size_t r1, T* acc) {
      for (std::size_t r = r0; r < r1; ++r) {
        const std::size_t base = (r / walk.row_tile) * walk.row_group_stride;
        const std::size_t off = r * row_len;
        for (std::size_t j = 0; j < walk.runs; ++j) {
          const std::size_t o = off + j * walk.run;
          const T* go = g ? g + o : nullptr;
          const T* ho = h ? h + o : nullptr;
          const T v = Long ? detail::reduce_long_run<C::needs_grad, C::needs_hessian>(c, w + o, go, ho, walk.run)
                           : detail::reduce_short_run<C::needs_grad, C::needs_hessian>(c, w + o, go, ho, walk.run);
          T& a = acc[base + walk.run_group[j]];
          a = c.reduce(a, v);
        }
      }
    };
    auto fold_rows = [&](std::size_t r0, std::size_t r1, T* acc) {
      if (walk.run >= detail::long_run_min)
        fold.template operator()<true>(r0, r1, acc);
      else
        fold.template operator()<false>(r0, r1, acc);
    };
    std::fill(out.begin(), out.end(), c.template identity<T>());
    if (units > 1) {
      // Row units own disjoint groups: split them between threads.
      parallel_chunks(units, [&](std::size_t, std::size_t, std::size_t u0, std::size_t u1) {
        fold_rows(u0 * walk.row_tile, std::min(walk.rows, u1 * walk.row_tile), out.data());
      }, total_work{n});
    } else {
      const std::size_t chunks = static_cast<std::size_t>(max_threads());
      std::vector<T> part(chunks * out.size(), c.template identity<T>());
      std::vector<char> used(chunks, 0);
      parallel_chunks(walk.rows, [&](std::size_t ch, std::size_t, std::size_t r0, std::size_t r1) {
        used[ch] = 1;
        fold_rows(r0, r1, part.data() + ch * out.size());
      }, total_work{n});
      for (std::size_t ch = 0; ch < chunks; ++ch)
        if (used[ch])
          for (std::size_t i = 0; i < out.size(); ++i) out[i] = c.reduce(out[i], part[ch * out.size() + i]);
    }
    for (T& s : out) s = c.finish(s);
    return out;
  }
}

/// The element keep mask (flat row-major) of a per-group keep mask: every element takes
/// its group's byte.
inline byte_buffer expand_groups(const granularity::group_layout& layout,
                                 std::span<const std::uint8_t> group_keep) {
  byte_buffer out(layout.size());
  if (out.empty()) return out;
  const detail::group_walk walk = detail::make_walk(layout);
  const std::size_t row_len = walk.run * walk.runs;
  parallel_chunks(walk.rows, [&](std::size_t, std::size_t, std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const std::size_t base = (r / walk.row_tile) * walk.row_group_stride;
      for (std::size_t j = 0; j < walk.runs; ++j)
        std::fill_n(out.data() + r * row_len + j * walk.run, walk.run,
                    group_keep[base + walk.run_group[j]]);
    }
  }, total_work{layout.size()});
  return out;
}

}  // namespace spruce
