#pragma once
// Pruning on the device: magnitude masks and pruning, applying masks, N:M masks and
// pruning, and counting nonzeros, for cuda_space views, with the CPU's results bit for bit.
// The spruce:: functions (magnitude_mask, apply_mask, n_m_mask, count_nonzero, ...) reach
// these through the memory-space backends specialised at the end of this header; the
// spruce::cuda:: functions take the stream explicitly.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "spruce/cuda/kernels.hpp"
#include "spruce/cuda/memory.hpp"
#include "spruce/cuda/select.hpp"
#include "spruce/granularity/detail/n_m_kernels.hpp"
#include "spruce/granularity/n_m.hpp"
#include "spruce/metrics/sparsity.hpp"
#include "spruce/prune/magnitude.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/prune/n_m.hpp"
#include "spruce/selection/rule.hpp"

namespace spruce::cuda {

namespace detail {

template <class S>
inline constexpr bool count_rule_v = selection::count_rule<S>;

template <class T>
void apply_keep(const tensor_ref<T, cuda_space>& w, const std::uint8_t* keep, stream_ref s) {
  const std::size_t n = w.size();
  if (n == 0) return;
  if (w.is_contiguous())
    apply_kernel<T, true><<<grid_for(n, 4), block_threads, 0, s>>>(w.data(), strided_shape{}, n, keep);
  else
    apply_kernel<T, false><<<grid_for(n, 4), block_threads, 0, s>>>(w.data(), strided_shape_of(w), n, keep);
  check(cudaGetLastError(), "the apply kernel");
}

template <class T>
void check_mask_shape(const tensor_ref<T, cuda_space>& w, const device_mask& m, const std::string& name) {
  if (!std::ranges::equal(w.shape(), m.shape()))
    throw error("device mask of shape " + shape_string(m.shape()) + " does not match " + spruce::detail::tensor_label(name) +
                " of shape " + shape_string(w.shape()) + "; pass one computed for this tensor");
}

/// A contiguous copy of a strided device tensor (or nothing, when it is contiguous).
template <class T>
struct contiguous_input {
  device_buffer<T> copy;
  const T* data;
  contiguous_input(const tensor_ref<const T, cuda_space>& t, stream_ref s) : data(t.data()) {
    if (t.is_contiguous() || t.size() == 0) return;
    copy = device_buffer<T>(t.size(), s);
    gather_kernel<T><<<grid_for(t.size(), 4), block_threads, 0, s>>>(strided_src<T>{t.data(), strided_shape_of(t)}, t.size(), copy.data());
    check(cudaGetLastError(), "the gather kernel");
    data = copy.data();
  }
};

template <class T>
void n_m_status(scan_status* st, const std::string& name, stream_ref s) {
  scan_status back{};
  check(cudaMemcpyAsync(&back, st, sizeof(back), cudaMemcpyDeviceToHost, s), "N:M status read-back");
  check(cudaStreamSynchronize(s), "the N:M mask of " + spruce::detail::tensor_label(name));
  if (back.nan_count)
    throw error("weight of " + spruce::detail::tensor_label(name) + " at flat index " + std::to_string(back.first_nan) +
                " is NaN; NaN has no magnitude order, so no N:M mask was computed and nothing "
                "was changed. Replace or drop NaN values (e.g. check for a diverged training "
                "step) before pruning");
}

/// Runs the N:M kernel for pattern n:m into `m` (device bytes of w's shape), then reads the
/// NaN status back (the call's one synchronisation) and throws the CPU's message.
template <std::size_t N, std::size_t M, class T>
void n_m_keep(const tensor_ref<const T, cuda_space>& w, std::size_t n, std::size_t m_, std::uint8_t* k, const std::string& name,
              stream_ref s) {
  if (w.size() == 0) return;
  const contiguous_input<T> in(w, s);
  const spruce::detail::n_m_geometry geo = spruce::detail::n_m_geometry_of(w.shape());
  device_buffer<scan_status> st(1, s);
  status_init_kernel<int><<<1, 1, 0, s>>>(st.data());
  const std::size_t groups = n_m_group_count(geo.outer, geo.axis, geo.inner, m_);
  if constexpr (M != 0)
    n_m_fixed_kernel<N, M, T><<<grid_for(groups), block_threads, 0, s>>>(in.data, k, geo.outer, geo.axis, geo.inner, st.data());
  else
    n_m_general_kernel<T><<<grid_for(groups), block_threads, 0, s>>>(in.data, k, geo.outer, geo.axis, geo.inner, n, m_, st.data());
  check(cudaGetLastError(), "the N:M kernel");
  n_m_status<T>(st.data(), name, s);
}

}  // namespace detail

/// Magnitude keep mask of a device tensor (the device twin of spruce::magnitude_mask; same
/// bytes). `sel` must be a count rule (selection::threshold, selection::exact, or a user's
/// count_rule); its count is computed and validated on the host first. Synchronises `s`
/// once (the NaN status read-back). Strided views are read in place.
template <selection::rule S, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space> && select::score_type<view_value_t<V>>
device_mask magnitude_mask(const V& w, const S& sel, const std::string& name = {}, stream_ref s = {}) {
  static_assert(detail::count_rule_v<S>,
                "spruce::cuda::magnitude_mask: only count rules (threshold, exact, or a user's count_rule) "
                "run on the device; compute a mask_rule (quantile) on a host copy");
  const auto t = to_const_ref(w);
  detail::check_device_data(t, name);
  const std::size_t count = sel.count(t.size(), spruce::detail::tensor_label(name));
  return lowest_mask<select::by_magnitude>(t, count, S::ties, spruce::detail::tensor_label(name), s);
}

/// Applies a device keep mask to a device tensor (pruned weights become +0). Throws
/// spruce::error, leaving `w` untouched, for a mask of another shape.
template <any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
void apply_mask(const V& w, const device_mask& m, const std::string& name = {}, stream_ref s = {}) {
  static_assert(mutable_view<V>, "spruce::cuda::apply_mask writes to the tensor: pass a mutable view");
  const auto r = to_ref(w);
  detail::check_device_data(r, name);
  detail::check_mask_shape(r, m, name);
  detail::apply_keep(r, m.data(), s);
}

/// Magnitude pruning in place on the device: magnitude_mask, then apply. On error (found
/// at the status read-back, before the apply is enqueued) nothing is written.
template <selection::rule S, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space> && select::score_type<view_value_t<V>>
device_mask magnitude_prune(const V& w, const S& sel, const std::string& name = {}, stream_ref s = {}) {
  static_assert(mutable_view<V>, "spruce::cuda::magnitude_prune writes to the tensor: pass a mutable view");
  device_mask m = magnitude_mask(w, sel, name, s);
  detail::apply_keep(to_ref(w), m.data(), s);
  return m;
}

/// N:M keep mask of a device tensor under the compile-time pattern N:M (the device twin of
/// spruce::n_m_mask; same bytes, same tie rule, same padding rule). Full groups run the
/// CPU's unrolled ranking network, one group per thread. Synchronises `s` once.
template <std::size_t N, std::size_t M, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space> && select::score_type<view_value_t<V>>
device_mask n_m_mask(const V& w, granularity::n_m<N, M> g = {}, const std::string& name = {}, stream_ref s = {}) {
  using T = view_value_t<V>;
  const auto t = to_const_ref(w);
  detail::check_device_data(t, name);
  spruce::detail::check_n_m_padding(t.shape(), N, M, g.allow_padding, spruce::detail::tensor_label(name));
  device_mask m(t.shape(), s);
  if constexpr (M <= spruce::detail::n_m_pairwise_max)
    detail::n_m_keep<N, M, T>(t, N, M, m.data(), name, s);
  else
    detail::n_m_keep<0, 0, T>(t, N, M, m.data(), name, s);
  return m;
}

/// N:M keep mask for a run-time pattern (validated on the host first): 2:4 and the other
/// common patterns run the compile-time kernels, the rest the general one.
template <any_view V>
  requires std::same_as<view_space_t<V>, cuda_space> && select::score_type<view_value_t<V>>
device_mask n_m_mask(const V& w, const granularity::n_m_pattern& p, const std::string& name = {}, stream_ref s = {}) {
  using T = view_value_t<V>;
  const auto t = to_const_ref(w);
  p.validate(name);
  detail::check_device_data(t, name);
  spruce::detail::check_n_m_padding(t.shape(), p.n, p.m, p.allow_padding, spruce::detail::tensor_label(name));
  device_mask m(t.shape(), s);
  if (p.m == 4 && p.n == 2)
    detail::n_m_keep<2, 4, T>(t, p.n, p.m, m.data(), name, s);
  else if (p.m == 4 && p.n == 1)
    detail::n_m_keep<1, 4, T>(t, p.n, p.m, m.data(), name, s);
  else if (p.m == 4 && p.n == 3)
    detail::n_m_keep<3, 4, T>(t, p.n, p.m, m.data(), name, s);
  else if (p.m == 2 && p.n == 1)
    detail::n_m_keep<1, 2, T>(t, p.n, p.m, m.data(), name, s);
  else
    detail::n_m_keep<0, 0, T>(t, p.n, p.m, m.data(), name, s);
  return m;
}

/// N:M pruning in place on the device (compile-time or run-time pattern): n_m_mask, then
/// apply; on error nothing is written.
template <class G, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space> && select::score_type<view_value_t<V>>
device_mask n_m_prune(const V& w, const G& g, const std::string& name = {}, stream_ref s = {}) {
  static_assert(mutable_view<V>, "spruce::cuda::n_m_prune writes to the tensor: pass a mutable view");
  device_mask m = n_m_mask(w, g, name, s);
  detail::apply_keep(to_ref(w), m.data(), s);
  return m;
}

/// Nonzero elements of a device tensor (torch.count_nonzero's rule: -0 is zero, NaN is
/// not), any strides. Synchronises `s` to read the count.
template <any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
std::size_t count_nonzero(const V& v, const std::string& name = {}, stream_ref s = {}) {
  using T = view_value_t<V>;
  const auto t = to_const_ref(v);
  detail::check_device_data(t, name);
  const std::size_t n = t.size();
  if (n == 0) return 0;
  device_buffer<unsigned long long> out(1, s);
  check(cudaMemsetAsync(out.data(), 0, sizeof(unsigned long long), s), "count_nonzero");
  detail::with_source(t, [&](auto src) {
    detail::count_nonzero_kernel<<<detail::grid_for(n, 8), detail::block_threads, 0, s>>>(src, n, out.data());
  });
  check(cudaGetLastError(), "the count_nonzero kernel");
  unsigned long long back = 0;
  check(cudaMemcpyAsync(&back, out.data(), sizeof(back), cudaMemcpyDeviceToHost, s), "count_nonzero read-back");
  check(cudaStreamSynchronize(s), "count_nonzero of " + spruce::detail::tensor_label(name));
  (void)sizeof(T);
  return static_cast<std::size_t>(back);
}

}  // namespace spruce::cuda

namespace spruce {

/// CUDA backends of the memory-space dispatch: spruce::magnitude_mask, apply_mask,
/// n_m_mask / n_m_prune and count_nonzero / sparsity on cuda_space views run on the
/// legacy default stream (use the spruce::cuda:: functions to pass a stream).
template <>
struct magnitude_backend<cuda_space> {
  template <class S, class T>
  static cuda::device_mask mask_of(const tensor_ref<const T, cuda_space>& w, const S& sel, const std::string& name) {
    return cuda::magnitude_mask(w, sel, name);
  }
  template <class S, class T>
  static cuda::device_mask prune(const tensor_ref<T, cuda_space>& w, const S& sel, const std::string& name) {
    return cuda::magnitude_prune(w, sel, name);
  }
};

template <>
struct mask_backend<cuda_space> {
  using mask_type = cuda::device_mask;
  template <class T>
  static void apply(const tensor_ref<T, cuda_space>& w, const cuda::device_mask& m, const std::string& name) {
    cuda::apply_mask(w, m, name);
  }
};

template <>
struct n_m_backend<cuda_space> {
  template <class G, class T>
  static cuda::device_mask mask_of(const tensor_ref<const T, cuda_space>& w, const G& g, const std::string& name) {
    return cuda::n_m_mask(w, g, name);
  }
  template <class G, class T>
  static cuda::device_mask prune(const tensor_ref<T, cuda_space>& w, const G& g, const std::string& name) {
    return cuda::n_m_prune(w, g, name);
  }
};

template <>
struct count_nonzero_backend<cuda_space> {
  template <class T>
  static std::size_t count(const tensor_ref<T, cuda_space>& t) {
    return cuda::count_nonzero(t);
  }
};

/// Device storage of masked_parameters: masked_parameters<T, cuda::device_mask> registers
/// device tensors with their masks in device memory; apply(), apply_to_gradients() (device
/// gradients) and make_permanent() run the apply kernel on the legacy default stream, and
/// keep_mask(name) copies a mask to the host. Shapes are checked on the host when a
/// tensor is registered and again before each apply.
template <>
struct mask_storage_backend<cuda::device_mask> {
  static constexpr bool defined = true;
  using space = cuda_space;
  template <class T>
  static void apply(const tensor_ref<T, cuda_space>& w, const cuda::device_mask& m) {
    cuda::detail::check_mask_shape(w, m, {});
    cuda::detail::apply_keep(w, m.data(), {});
  }
  static mask to_bytes(const cuda::device_mask& m) { return m.to_host(); }
};

}  // namespace spruce
