#pragma once
// Selection on the device: the k-th smallest key and the keep mask of the `count` lowest,
// with the CPU's keys (select/key.hpp) and tie rules (select::tie_break), bit for bit.

#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <cstddef>
#include <cstdint>
#include <string>

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

/// MSD radix select of the key of 0-based rank `count - 1` over src(0 .. n): one
/// histogram pass per 11-bit digit, each followed by a one-thread plan step on the device,
/// so the host waits once, at the end, for the result and the NaN status. Throws the CPU's
/// NaN error; requires 1 <= count <= n.
template <class O, class Src>
selected<typename O::key_type> radix_select(Src src, std::size_t n, std::size_t count, const std::string& name, stream_ref s) {
  using Key = typename O::key_type;
  device_buffer<select_state<Key>> state(1, s);
  select_init_kernel<Key><<<1, block_threads, 0, s>>>(state.data(), count - 1);
  for (int level = 0; level < radix_levels<Key>(); ++level) {
    histogram_kernel<O><<<grid_for(n, 8), block_threads, 0, s>>>(src, n, state.data(), level == 0);
    plan_step_kernel<Key><<<1, block_threads, 0, s>>>(state.data());
  }
  check(cudaGetLastError(), "the selection kernels of " + spruce::detail::tensor_label(name));
  struct {
    radix_plan<Key> plan;
    scan_status status;
  } back{};
  check(cudaMemcpyAsync(&back.plan, &state.data()->plan, sizeof(back.plan), cudaMemcpyDeviceToHost, s), "selection read-back");
  check(cudaMemcpyAsync(&back.status, &state.data()->status, sizeof(back.status), cudaMemcpyDeviceToHost, s), "selection read-back");
  check(cudaStreamSynchronize(s), "the selection of " + spruce::detail::tensor_label(name));
  throw_if_nan(back.status, name);
  return {back.plan.prefix, static_cast<std::size_t>(back.plan.less), static_cast<std::size_t>(back.plan.equal)};
}

/// NaN check alone (a selection of count 0 still refuses NaN scores, as on the CPU).
template <class O, class Src>
void validate_scores(Src src, std::size_t n, const std::string& name, stream_ref s) {
  device_buffer<scan_status> st(1, s);
  status_init_kernel<int><<<1, 1, 0, s>>>(st.data());
  nan_scan_kernel<O><<<grid_for(n, 8), block_threads, 0, s>>>(src, n, st.data());
  scan_status back{};
  check(cudaMemcpyAsync(&back, st.data(), sizeof(back), cudaMemcpyDeviceToHost, s), "NaN status read-back");
  check(cudaStreamSynchronize(s), "the NaN check of " + spruce::detail::tensor_label(name));
  throw_if_nan(back, name);
}

/// Writes the keep bytes of the `count` lowest keys into `m` (device, n bytes), after the
/// selection: keep = key > t, and with lower-index ties straddling the cut, the first
/// `count - less` keys equal to t (in flat order) are pruned, the rest kept.
template <class O, class Src>
void write_mask(Src src, std::size_t n, const selected<typename O::key_type>& info, std::size_t count, select::tie_break ties,
                std::uint8_t* m, stream_ref s) {
  if (ties == select::tie_break::all_equal || info.less + info.equal == count) {
    mask_kernel<O><<<grid_for(n, 4), block_threads, 0, s>>>(src, n, info.key, m);
    check(cudaGetLastError(), "the mask kernel");
    return;
  }
  const std::size_t tiles = (n + tie_tile - 1) / tie_tile;
  device_buffer<unsigned long long> eq(tiles, s), before(tiles, s);
  tie_count_kernel<O><<<static_cast<unsigned>(tiles), block_threads, 0, s>>>(src, n, info.key, eq.data());
  std::size_t temp_bytes = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, eq.data(), before.data(), tiles, s), "tie scan");
  device_buffer<unsigned char> temp(temp_bytes, s);
  check(cub::DeviceScan::ExclusiveSum(temp.data(), temp_bytes, eq.data(), before.data(), tiles, s), "tie scan");
  tie_mask_kernel<O><<<static_cast<unsigned>(tiles), block_threads, 0, s>>>(src, n, info.key, before.data(), count - info.less, m);
  check(cudaGetLastError(), "the tie mask kernels");
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
