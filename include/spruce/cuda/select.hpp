#pragma once
// Selection on the device: the k-th smallest key and the keep mask of the `count` lowest,
// with the CPU's keys (select/key.hpp) and tie rules (select::tie_break), bit for bit.

#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "spruce/cuda/kernels.hpp"
#include "spruce/cuda/memory.hpp"
#include "spruce/select/kth.hpp"

namespace spruce::cuda {

namespace detail {

/// What a device selection found (the CPU's key_info).
template <class Key>
struct selected {
  Key key;
  std::size_t less, equal;
};

/// Reads a scan status back (the documented synchronisation point of a call) and throws
/// the CPU path's NaN message, naming the tensor and the first NaN's flat index.
inline void throw_if_nan(const scan_status& st, const std::string& name) {
  if (st.nan_count) select::detail::throw_nan(name, static_cast<std::size_t>(st.first_nan));
}

/// One tensor of a device selection: its key source, size and (for a mask) the device
/// bytes its keep mask goes to. A global selection passes one per tensor, in order, and
/// selects over them as if they were concatenated (they never are).
template <class Src>
struct device_segment {
  Src src;
  std::size_t n;
  std::uint8_t* mask = nullptr;
};

/// MSD radix select of the key of 0-based rank `count - 1` over the segments as if
/// concatenated: one histogram pass per 11-bit digit, each running over every segment into
/// the same histogram and followed by a one-thread plan step on the device, so the host
/// waits once, at the end, for the result and the NaN statuses (one per segment). Throws
/// the CPU's NaN error for the first segment holding a NaN, at its lowest index, named by
/// `names[i]`; requires 1 <= count <= the total size.
template <class O, class Src>
selected<typename O::key_type> radix_select(std::span<const device_segment<Src>> segs, std::size_t count,
                                            std::span<const std::string> names, stream_ref s) {
  using Key = typename O::key_type;
  const std::size_t ns = segs.size();
  device_buffer<select_state<Key>> state(1, s);
  device_buffer<scan_status> st(ns, s);
  select_init_kernel<Key><<<1, block_threads, 0, s>>>(state.data(), count - 1);
  status_init_kernel<int><<<grid_for(ns), block_threads, 0, s>>>(st.data(), ns);
  for (int level = 0; level < radix_levels<Key>(); ++level) {
    for (std::size_t i = 0; i < ns; ++i)
      if (segs[i].n)
        histogram_kernel<O><<<grid_for(segs[i].n, 8), block_threads, 0, s>>>(segs[i].src, segs[i].n, state.data(),
                                                                             level == 0 ? st.data() + i : nullptr);
    plan_step_kernel<Key><<<1, block_threads, 0, s>>>(state.data());
  }
  const std::string what = ns == 1 && !names.empty() ? spruce::detail::tensor_label(names[0]) : std::string("the global selection");
  check(cudaGetLastError(), "the selection kernels of " + what);
  radix_plan<Key> plan{};
  std::vector<scan_status> back(ns);
  check(cudaMemcpyAsync(&plan, &state.data()->plan, sizeof(plan), cudaMemcpyDeviceToHost, s), "selection read-back");
  check(cudaMemcpyAsync(back.data(), st.data(), ns * sizeof(scan_status), cudaMemcpyDeviceToHost, s), "selection read-back");
  check(cudaStreamSynchronize(s), "the selection of " + what);
  for (std::size_t i = 0; i < ns; ++i) throw_if_nan(back[i], i < names.size() ? names[i] : std::string());
  return {plan.prefix, static_cast<std::size_t>(plan.less), static_cast<std::size_t>(plan.equal)};
}

/// radix_select over one tensor.
template <class O, class Src>
selected<typename O::key_type> radix_select(Src src, std::size_t n, std::size_t count, const std::string& name, stream_ref s) {
  const device_segment<Src> one{src, n};
  return radix_select<O>(std::span<const device_segment<Src>>(&one, 1), count, std::span<const std::string>(&name, 1), s);
}

/// NaN check alone (a selection of count 0 still refuses NaN scores, as on the CPU): one
/// status per segment, the first segment with a NaN reported.
template <class O, class Src>
void validate_scores(std::span<const device_segment<Src>> segs, std::span<const std::string> names, stream_ref s) {
  const std::size_t ns = segs.size();
  device_buffer<scan_status> st(ns, s);
  status_init_kernel<int><<<grid_for(ns), block_threads, 0, s>>>(st.data(), ns);
  for (std::size_t i = 0; i < ns; ++i)
    if (segs[i].n) nan_scan_kernel<O><<<grid_for(segs[i].n, 8), block_threads, 0, s>>>(segs[i].src, segs[i].n, st.data() + i);
  std::vector<scan_status> back(ns);
  check(cudaMemcpyAsync(back.data(), st.data(), ns * sizeof(scan_status), cudaMemcpyDeviceToHost, s), "NaN status read-back");
  check(cudaStreamSynchronize(s), ns == 1 && !names.empty() ? "the NaN check of " + spruce::detail::tensor_label(names[0])
                                                            : std::string("the NaN check of the global selection"));
  for (std::size_t i = 0; i < ns; ++i) throw_if_nan(back[i], i < names.size() ? names[i] : std::string());
}

template <class O, class Src>
void validate_scores(Src src, std::size_t n, const std::string& name, stream_ref s) {
  const device_segment<Src> one{src, n};
  validate_scores<O>(std::span<const device_segment<Src>>(&one, 1), std::span<const std::string>(&name, 1), s);
}

/// Writes the keep bytes of the `count` lowest keys into every segment's mask, after the
/// selection: keep = key > t, and with lower-index ties straddling the cut, the first
/// `count - less` keys equal to t (by segment, then flat index) are pruned, the rest kept.
/// The tie tiles of all segments are numbered in segment order (tile_offsets), so one
/// exclusive scan over them gives every tile the equal keys before it, earlier tensors
/// included.
template <class O, class Src>
void write_masks(std::span<const device_segment<Src>> segs, const selected<typename O::key_type>& info, std::size_t count,
                 select::tie_break ties, stream_ref s) {
  if (ties == select::tie_break::all_equal || info.less + info.equal == count) {
    for (const auto& sg : segs)
      if (sg.n) mask_kernel<O><<<grid_for(sg.n, 4), block_threads, 0, s>>>(sg.src, sg.n, info.key, sg.mask);
    check(cudaGetLastError(), "the mask kernel");
    return;
  }
  std::vector<std::size_t> sizes(segs.size());
  for (std::size_t i = 0; i < segs.size(); ++i) sizes[i] = segs[i].n;
  const std::vector<std::size_t> off = tile_offsets(sizes, tie_tile);
  const std::size_t tiles = off.back();
  device_buffer<unsigned long long> eq(tiles, s), before(tiles, s);
  for (std::size_t i = 0; i < segs.size(); ++i)
    if (segs[i].n)
      tie_count_kernel<O><<<static_cast<unsigned>(off[i + 1] - off[i]), block_threads, 0, s>>>(segs[i].src, segs[i].n, info.key,
                                                                                                 eq.data() + off[i]);
  std::size_t temp_bytes = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, eq.data(), before.data(), tiles, s), "tie scan");
  device_buffer<unsigned char> temp(temp_bytes, s);
  check(cub::DeviceScan::ExclusiveSum(temp.data(), temp_bytes, eq.data(), before.data(), tiles, s), "tie scan");
  for (std::size_t i = 0; i < segs.size(); ++i)
    if (segs[i].n)
      tie_mask_kernel<O><<<static_cast<unsigned>(off[i + 1] - off[i]), block_threads, 0, s>>>(
          segs[i].src, segs[i].n, info.key, before.data() + off[i], count - info.less, segs[i].mask);
  check(cudaGetLastError(), "the tie mask kernels");
}

/// write_masks for one tensor into `m` (device, n bytes).
template <class O, class Src>
void write_mask(Src src, std::size_t n, const selected<typename O::key_type>& info, std::size_t count, select::tie_break ties,
                std::uint8_t* m, stream_ref s) {
  const device_segment<Src> one{src, n, m};
  write_masks<O>(std::span<const device_segment<Src>>(&one, 1), info, count, ties, s);
}

/// Runs `f(src)` with the loader for a device view: contiguous or strided.
template <class T, class F>
decltype(auto) with_source(const tensor_ref<const T, cuda_space>& t, F&& f) {
  if (t.is_contiguous()) return f(contiguous_src<T>{t.data()});
  return f(strided_src<T>{t.data(), strided_shape_of(t)});
}

}  // namespace detail

/// The k-th smallest score of a device tensor (1 <= k <= size), like select::kth_smallest
/// on the host: the same value, `less` and `equal`. `Order` is select::by_value or
/// select::by_magnitude. Synchronises `s` once to read the result. Throws spruce::error for
/// k out of range or a NaN score (naming `name` and the first NaN's index).
template <template <class> class Order = select::by_value, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space> && select::score_type<view_value_t<V>>
select::kth_result<view_value_t<V>> kth_smallest(const V& scores, std::size_t k, const std::string& name = {}, stream_ref s = {}) {
  using T = view_value_t<V>;
  using O = Order<T>;
  const auto t = to_const_ref(scores);
  detail::check_device_data(t, name);
  const std::size_t n = t.size();
  if (k == 0 || k > n)
    throw error("kth_smallest: k = " + std::to_string(k) + " is outside [1, " + std::to_string(n) + "]" +
                (name.empty() ? std::string() : " for " + name) + "; pass a 1-based rank no larger than the number of scores");
  const auto info = detail::with_source(t, [&](auto src) { return detail::radix_select<O>(src, n, k, name, s); });
  return {O::value(info.key), info.less, info.equal};
}

/// Keep mask (1 = keep) of the `count` lowest scores of a device tensor, in device memory,
/// with the CPU's tie rules (select::lowest_mask). Synchronises `s` once, after the
/// selection and before the mask is written, to read the NaN status; on error nothing is
/// written. count == 0 keeps everything (NaN is still refused).
template <template <class> class Order = select::by_value, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space> && select::score_type<view_value_t<V>>
device_mask lowest_mask(const V& scores, std::size_t count, select::tie_break ties, const std::string& name = {}, stream_ref s = {}) {
  using T = view_value_t<V>;
  using O = Order<T>;
  const auto t = to_const_ref(scores);
  detail::check_device_data(t, name);
  const std::size_t n = t.size();
  if (count > n)
    throw error("cannot select " + std::to_string(count) + " of the " + std::to_string(n) + " elements of " +
                (name.empty() ? std::string("the scores") : name) + "; pass a count no larger than the element count");
  device_mask m(t.shape(), s);
  if (n == 0) return m;
  detail::with_source(t, [&](auto src) {
    if (count == 0) {
      detail::validate_scores<O>(src, n, name, s);
      detail::fill_kernel<std::uint8_t><<<detail::grid_for(n, 4), detail::block_threads, 0, s>>>(m.data(), n, 1);
      check(cudaGetLastError(), "the mask fill kernel");
      return;
    }
    const auto info = detail::radix_select<O>(src, n, count, name, s);
    detail::write_mask<O>(src, n, info, count, ties, m.data(), s);
  });
  return m;
}

}  // namespace spruce::cuda
