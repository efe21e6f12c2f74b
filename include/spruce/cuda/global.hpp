#pragma once
// Global scope on the device: one selection over the scores of several device tensors, as
// if they were concatenated in their given order (they never are), with the CPU's keys,
// tie rules (lower index first, earlier tensors first) and sparsity limits, bit for bit.
// Each radix level runs one histogram pass per tensor into one shared histogram; the tie
// tiles of all tensors are numbered in tensor order and scanned once. spruce::global_masks
// / global_prune take ranges of device named tensors through the overloads at the end.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/cuda/detail/bodies.hpp"
#include "spruce/cuda/kernels.hpp"
#include "spruce/cuda/memory.hpp"
#include "spruce/cuda/prune.hpp"
#include "spruce/cuda/pruner.hpp"
#include "spruce/cuda/select.hpp"
#include "spruce/prune/global.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/prune/pruner.hpp"

namespace spruce::cuda {

/// True for `named_tensor<T, cuda_space>` (any T).
template <class X>
inline constexpr bool is_device_named_tensor_v = false;
template <class T>
inline constexpr bool is_device_named_tensor_v<named_tensor<T, cuda_space>> = true;

/// A set of named device tensors in contiguous storage (std::vector, std::array,
/// std::span): the device twin of spruce::named_tensor_range, taken by the global scope.
template <class R>
concept device_named_tensor_range =
    std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
    is_device_named_tensor_v<std::remove_cv_t<std::ranges::range_value_t<R>>>;

/// The element type T of a device_named_tensor_range.
template <device_named_tensor_range R>
using device_named_tensor_value_t = typename decltype(std::declval<std::ranges::range_value_t<R>>().view)::element_type;

namespace detail {

/// The CPU's duplicate-name check (its message), on the names alone.
template <class T>
std::vector<std::string> checked_names(std::span<const named_tensor<T, cuda_space>> params) {
  std::vector<named_tensor<T>> names(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) names[i].name = params[i].name;
  return spruce::detail::unique_names(std::span<const named_tensor<T>>(names));
}

/// Keep bytes of the `count` lowest keys over the listed score arrays (device, contiguous,
/// as if concatenated in `which` order), one new device mask per array, each of the shape
/// given; NaN is refused with the CPU's message naming the array (count 0 included).
template <class O, class T>
std::vector<device_mask> select_parts(std::span<const T* const> data, std::span<const std::size_t> sizes,
                                      std::span<const std::vector<std::size_t>> shapes, std::span<const std::string> names,
                                      std::span<const std::size_t> which, std::size_t count, select::tie_break ties, stream_ref s) {
  using src = contiguous_src<T>;
  std::vector<device_mask> masks;
  std::vector<device_segment<src>> segs;
  std::vector<std::string> wnames;
  masks.reserve(which.size());
  for (const std::size_t i : which) {
    masks.emplace_back(std::span<const std::size_t>(shapes[i]), s);
    segs.push_back({src{data[i]}, sizes[i], masks.back().data()});
    wnames.push_back(names[i]);
  }
  const std::span<const device_segment<src>> sv(segs);
  if (count == 0) {
    validate_scores<O>(sv, wnames, s);
    for (const auto& sg : segs)
      if (sg.n) fill_kernel<std::uint8_t><<<grid_for(sg.n, 4), block_threads, 0, s>>>(sg.mask, sg.n, 1);
    check(cudaGetLastError(), "the mask fill kernel");
  } else {
    const auto info = radix_select<O>(sv, count, wnames, s);
    write_masks<O>(sv, info, count, ties, s);
  }
  return masks;
}

}  // namespace detail

/// Global scope on the device (the device twin of spruce::global_masks): one selection
/// over the group scores of every tensor in `params`, as if concatenated in order, with the
/// pruner's granularity, element-wise criterion and count rule (threshold or exact;
/// `exact` breaks ties by tensor order, then index), and the CPU's sparsity `limits`
/// rounds. Element granularity with a magnitude-ordered criterion selects on |w| directly
/// (strided tensors are gathered first). Validation runs on the host first with the CPU's
/// messages (duplicate names, bad limits, bad shapes, a bad rule parameter); NaN scores
/// are found by the selection's first pass and reported, naming the first tensor holding
/// one, before any mask is written. Synchronises `s` once per selection round (and, with
/// bounded limits, once per tensor to count its cut). Returns one device mask per tensor,
/// in order; the tensors are not written. Under an N:M granularity every tensor gets its
/// own N:M mask and bounded limits are refused, as on the CPU.
template <class G, class C, class S, class T>
  requires select::score_type<T> && (granularity::n_m_granularity<G> || selection::count_rule<S>)
std::vector<device_mask> global_masks(const pruner<G, C, S>& p, std::span<const named_tensor<T, cuda_space>> params,
                                      const sparsity_limits& limits = {}, stream_ref s = {}) {
  std::vector<device_mask> out;
  out.reserve(params.size());
  if constexpr (granularity::n_m_granularity<G>) {
    // The CPU's checks and messages (limits, then the bounded-limits refusal), on no tensors.
    (void)spruce::detail::global_n_m_masks(p, std::span<const named_tensor<T>>{}, limits);
    (void)detail::checked_names(params);
    for (const auto& t : params) out.push_back(compute(p, device_inputs<T>{t.view}, t.name, s));
    return out;
  } else {
    spruce::detail::check_limits(limits);
    const std::vector<std::string> names = detail::checked_names(params);
    constexpr bool fused = granularity::one_weight_per_group_v<G> && criterion::orders_like_magnitude_v<C>;
    const std::size_t nt = params.size();
    std::vector<granularity::group_layout> layouts(nt);
    std::vector<detail::contiguous_input<T>> weights;  // fused: the weights themselves
    std::vector<detail::scored<C, T>> scores;          // otherwise: each tensor's group scores
    std::vector<const T*> data(nt);
    std::vector<std::size_t> sizes(nt);
    std::vector<std::vector<std::size_t>> shapes(nt);
    weights.reserve(nt);
    scores.reserve(nt);
    for (std::size_t i = 0; i < nt; ++i) {
      const auto& t = params[i];
      const tensor_ref<const T, cuda_space> w = t.view;
      layouts[i] = p.granularity.layout(w.shape(), t.name);
      if constexpr (fused) {
        detail::check_device_data(w, t.name);
        weights.emplace_back(w, s);
        data[i] = weights.back().data;
        sizes[i] = w.size();
        shapes[i].assign(w.shape().begin(), w.shape().end());
      } else {
        scores.push_back(detail::score_groups(p.criterion, device_inputs<T>{w}, layouts[i], t.name, s));
        data[i] = scores.back().scores.data();
        sizes[i] = layouts[i].groups();
        shapes[i] = {sizes[i]};
      }
    }
    std::size_t total = 0;
    for (const std::size_t n : sizes) total += n;
    const std::size_t budget = p.selection.count(total, "the global selection");
    auto choose = [&](std::span<const std::size_t> which, std::size_t count, select::tie_break ties) {
      if constexpr (fused)
        return detail::select_parts<select::by_magnitude<T>, T>(data, sizes, shapes, names, which, count, ties, s);
      else
        return detail::select_parts<select::by_value<T>, T>(data, sizes, shapes, names, which, count, ties, s);
    };
    auto pruned = [&](const device_mask& m) { return m.size() - count_nonzero(m.ref(), {}, s); };
    std::vector<device_mask> keep = detail::global_rounds<device_mask>(sizes, budget, limits, S::ties, choose, pruned);
    if constexpr (fused) {
      return keep;
    } else {
      for (std::size_t i = 0; i < nt; ++i) {
        device_mask m(params[i].view.shape(), s);
        if (m.size()) {
          detail::expand_groups_kernel<std::uint8_t><<<detail::grid_for(m.size(), 4), detail::block_threads, 0, s>>>(
              scores[i].plan.plan, scores[i].run_group.data(), keep[i].data(), m.size(), m.data());
          check(cudaGetLastError(), "the group expansion kernel of " + spruce::detail::tensor_label(params[i].name));
        }
        out.push_back(std::move(m));
      }
      return out;
    }
  }
}

/// global_masks over any contiguous range of device named tensors.
template <class G, class C, class S, device_named_tensor_range R>
  requires select::score_type<device_named_tensor_value_t<R>> && (granularity::n_m_granularity<G> || selection::count_rule<S>)
std::vector<device_mask> global_masks(const pruner<G, C, S>& p, const R& params, const sparsity_limits& limits = {}, stream_ref s = {}) {
  using T = device_named_tensor_value_t<R>;
  return global_masks(p, std::span<const named_tensor<T, cuda_space>>(std::ranges::data(params), std::ranges::size(params)), limits, s);
}

/// Global scope, applied on the device: global_masks, then the pruned groups of every
/// tensor are zeroed (only after every mask exists); returns the device registry that
/// re-applies them after each optimizer step. On error nothing is written.
template <class G, class C, class S, device_named_tensor_range R>
  requires select::score_type<device_named_tensor_value_t<R>> && (granularity::n_m_granularity<G> || selection::count_rule<S>)
masked_parameters<device_named_tensor_value_t<R>, device_mask> global_prune(const pruner<G, C, S>& p, const R& params,
                                                                             const sparsity_limits& limits = {}, stream_ref s = {}) {
  using T = device_named_tensor_value_t<R>;
  const std::span<const named_tensor<T, cuda_space>> ps(std::ranges::data(params), std::ranges::size(params));
  std::vector<device_mask> masks = global_masks(p, ps, limits, s);
  masked_parameters<T, device_mask> reg;
  for (std::size_t i = 0; i < ps.size(); ++i) reg.add(ps[i].name, ps[i].view, std::move(masks[i]));
  reg.apply();
  return reg;
}

}  // namespace spruce::cuda

namespace spruce {

/// spruce::global_masks for a range of device named tensors (std::vector<named_tensor<T,
/// cuda_space>>, ...): cuda::global_masks on the legacy default stream.
template <pruner_granularity G, criterion::any_criterion C, class S, cuda::device_named_tensor_range R>
  requires select::score_type<cuda::device_named_tensor_value_t<R>> && (granularity::n_m_granularity<G> || selection::count_rule<S>)
std::vector<cuda::device_mask> global_masks(const pruner<G, C, S>& p, const R& params, const sparsity_limits& limits = {}) {
  return cuda::global_masks(p, params, limits);
}

/// spruce::global_prune for a range of device named tensors: cuda::global_prune on the
/// legacy default stream.
template <pruner_granularity G, criterion::any_criterion C, class S, cuda::device_named_tensor_range R>
  requires select::score_type<cuda::device_named_tensor_value_t<R>> && (granularity::n_m_granularity<G> || selection::count_rule<S>)
masked_parameters<cuda::device_named_tensor_value_t<R>, cuda::device_mask> global_prune(const pruner<G, C, S>& p, const R& params,
                                                                                       const sparsity_limits& limits = {}) {
  return cuda::global_prune(p, params, limits);
}

}  // namespace spruce
