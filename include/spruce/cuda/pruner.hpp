#pragma once
// pruner<G, C, S> on the device: group scores of every element-wise criterion and of the
// group criteria bn_scale, random and wanda (device_inputs carries gamma / norms), selection on
// the device scores and the expansion of group keep bytes into the element mask, for every
// group granularity and for N:M, with the CPU's bytes. spruce::pruner's compute / prune
// reach these through pruner_backend<cuda_space> (end of this header) for cuda_space views;
// the spruce::cuda:: functions take device inputs (gradient, Hessian) and a stream.
//
// Bit-identity of the scores: every group is folded by one thread in exactly the CPU's
// order (prune/group_scores.hpp: a long run in eight lanes k, k + 8, ..., a short run
// sequentially, runs of a row in order, rows in order, and when one row unit holds every
// group the CPU's chunks of rows folded separately and then in chunk order; the chunking is
// the one an un-nested CPU call makes with the same detail::kernel_threads(), i.e. the same
// OMP_NUM_THREADS). Element scores are kept out of FMA contraction (detail::no_contract), so
// L1, L2, gradient, Taylor, OBD and Ln with p = infinity give the CPU's bits. Not
// guaranteed: Ln with a finite p (std::pow on the device is not the host's libm pow, so
// scores may differ in the last bit; masks differ only where that bit decides a cut), and
// a CPU build whose compiler contracts a * b + c itself (-march with FMA and
// -ffp-contract=fast).

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "spruce/criterion/bn_scale.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/criterion/random.hpp"
#include "spruce/criterion/wanda.hpp"
#include "spruce/cuda/detail/bodies.hpp"
#include "spruce/cuda/kernels.hpp"
#include "spruce/cuda/memory.hpp"
#include "spruce/cuda/prune.hpp"
#include "spruce/cuda/select.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/prune/group_scores.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/selection/rule.hpp"

namespace spruce::cuda {

/// What an element-wise criterion reads for one tensor on the device: the weight and, when
/// the criterion needs them, the gradient and the Hessian diagonal (device views of the
/// weight's shape, any strides). The device twin of criterion::inputs.
template <class T>
struct device_inputs {
  tensor_ref<const T, cuda_space> weight;
  tensor_ref<const T, cuda_space> grad{};
  tensor_ref<const T, cuda_space> hessian{};
  /// criterion::bn_scale: the BatchNorm scales, one per group (criterion::inputs::gamma).
  tensor_ref<const T, cuda_space> gamma{};
  /// criterion::wanda: the activation norms, one per input channel (axis 1), in the
  /// weight's type (a float norm converts to double exactly, so double weights with float
  /// norms upload them converted and score as on the CPU).
  tensor_ref<const T, cuda_space> norms{};
};

/// The group criteria that score on the device (each with its CPU scores bit for bit):
/// bn_scale, random and wanda. A user's own group criterion scores on a host copy.
template <class C>
inline constexpr bool device_group_criterion_v =
    std::same_as<C, criterion::bn_scale> || std::same_as<C, criterion::random> || std::same_as<C, criterion::wanda>;

namespace detail {

template <bool G, bool H, class C, class T>
__global__ void __launch_bounds__(block_threads) group_scores_kernel(C c, const T* __restrict__ w, const T* __restrict__ g, const T* __restrict__ h,
                                                                     group_plan p, const std::size_t* __restrict__ q_ptr,
                                                                     const std::size_t* __restrict__ q_runs, T* __restrict__ out) {
  for (std::size_t k = thread_index(); k < p.groups; k += thread_count())
    out[k] = group_score_of<G, H>(c, w, g, h, p, q_ptr, q_runs, k);
}

template <class T>
__global__ void bn_scale_kernel(const T* __restrict__ gamma, std::size_t n, T* __restrict__ out) {
  for (std::size_t k = thread_index(); k < n; k += thread_count()) out[k] = bn_scale_score(gamma[k]);
}

template <class T>
__global__ void random_scores_kernel(std::uint64_t seed, std::size_t n, T* __restrict__ out) {
  for (std::size_t k = thread_index(); k < n; k += thread_count()) out[k] = random_score<T>(seed, k);
}

template <class T>
__global__ void __launch_bounds__(block_threads) wanda_kernel(const T* __restrict__ w, const T* __restrict__ norms, std::size_t inner,
                                                              std::size_t channels, group_plan p, const std::size_t* __restrict__ q_ptr,
                                                              const std::size_t* __restrict__ q_runs, bool per_element, T* __restrict__ out) {
  for (std::size_t k = thread_index(); k < p.groups; k += thread_count())
    out[k] = per_element ? wanda_element(w, norms, inner, channels, k) : wanda_group_score(w, norms, inner, channels, p, q_ptr, q_runs, k);
}

/// Values that are not >= 0 (negative or NaN): how many, and the lowest index.
template <class T>
__global__ void below_zero_kernel(const T* __restrict__ x, std::size_t n, scan_status* st) {
  for (std::size_t i = thread_index(); i < n; i += thread_count())
    if (!(x[i] >= T(0))) note_nan(st, i);
}

template <class Byte>
__global__ void __launch_bounds__(block_threads) expand_groups_kernel(group_plan p, const std::size_t* __restrict__ run_group,
                                                                             const Byte* __restrict__ group_keep, std::size_t n,
                                                                             Byte* __restrict__ out) {
  for (std::size_t i = thread_index(); i < n; i += thread_count()) out[i] = group_keep[group_of_element(p, run_group, i)];
}

/// A host vector copied into a device buffer on `s` (the vector must live until `s`
/// reaches the copy: callers keep it in scope until their read-back synchronises).
template <class T>
device_buffer<T> upload(const std::vector<T>& v, stream_ref s) {
  device_buffer<T> d(v.size(), s);
  if (!v.empty()) check(cudaMemcpyAsync(d.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, s), "plan upload");
  return d;
}

template <class T>
void check_device_input(const tensor_ref<const T, cuda_space>& x, const tensor_ref<const T, cuda_space>& w, const char* what,
                        const std::string& name) {
  if (x.rank() == 0)
    throw error(std::string("this criterion needs the ") + what + " of " + spruce::detail::tensor_label(name) +
                ", but none was given; pass inputs." + what + " with the weight's shape");
  if (!std::ranges::equal(x.shape(), w.shape()))
    throw error("the " + std::string(what) + " of " + spruce::detail::tensor_label(name) + " has shape " + shape_string(x.shape()) +
                " but the weight has shape " + shape_string(w.shape()) + "; pass the " + what + " of this weight");
  check_device_data(x, name);
}

/// Group scores of `in` under `layout` into a device buffer, with the plan's arrays (kept
/// alive by the caller until the stream has used them).
template <class C, class T>
struct scored {
  device_buffer<T> scores;
  group_plan_arrays plan;
  device_buffer<std::size_t> run_group;
};

/// The CPU's validation of group_scores' inputs, in its order, on the host (the values of
/// Wanda's norms are checked on the device, by score_groups, before anything is scored).
template <class C, class T>
void validate_inputs(const C& c, const device_inputs<T>& in, const granularity::group_layout& layout, const std::string& name) {
  static_assert(criterion::elementwise_criterion<C> || device_group_criterion_v<C>,
                "spruce::cuda: element-wise criteria (L1, L2, Ln, gradient, Taylor, OBD, or a user's with element / reduce / "
                "finish) and the group criteria bn_scale, random and wanda score on the device; score another group criterion "
                "on a host copy");
  if constexpr (requires { c.validate(name); }) c.validate(name);
  check_device_data(in.weight, name);
  if (layout.size() != in.weight.size())
    throw error("group layout of " + std::to_string(layout.size()) + " elements does not cover " + spruce::detail::tensor_label(name) +
                " of shape " + shape_string(in.weight.shape()) + "; build the layout from this tensor's shape");
  if constexpr (criterion::elementwise_criterion<C>) {
    if constexpr (C::needs_grad) check_device_input(in.grad, in.weight, "grad", name);
    if constexpr (C::needs_hessian) check_device_input(in.hessian, in.weight, "hessian", name);
  } else if constexpr (std::same_as<C, criterion::bn_scale>) {
    if (in.gamma.size() != layout.groups())
      throw error("bn_scale for " + spruce::detail::tensor_label(name) + ": " + std::to_string(in.gamma.size()) + " BN scales for " +
                  std::to_string(layout.groups()) + " groups; pass the gamma of the BatchNorm after this layer and use filter granularity");
    check_device_data(in.gamma, name);
  } else if constexpr (std::same_as<C, criterion::wanda>) {
    const auto& w = in.weight;
    if (w.rank() < 2)
      throw error("wanda for " + spruce::detail::tensor_label(name) + ": the weight has shape " + shape_string(w.shape()) +
                  ", but Wanda needs [out, in, ...] (rank >= 2) to know each weight's input channel");
    if (in.norms.size() != w.shape()[1])
      throw error("wanda for " + spruce::detail::tensor_label(name) + " of shape " + shape_string(w.shape()) + ": " +
                  std::to_string(in.norms.size()) + " activation norms for " + std::to_string(w.shape()[1]) +
                  " input channels; pass one norm per input channel (axis 1), e.g. activation_norm_accumulator::extra() fed with "
                  "this layer's inputs");
    check_device_data(in.norms, name);
  }
}

/// Wanda's norms must be >= 0: the first that is not is read back (the call's one extra
/// synchronisation) and reported with the CPU's message.
template <class T>
void check_norms(const T* norms, std::size_t n, const std::string& name, stream_ref s) {
  if (n == 0) return;
  device_buffer<scan_status> st(1, s);
  status_init_kernel<int><<<1, 1, 0, s>>>(st.data());
  below_zero_kernel<T><<<grid_for(n), block_threads, 0, s>>>(norms, n, st.data());
  scan_status back{};
  check(cudaMemcpyAsync(&back, st.data(), sizeof(back), cudaMemcpyDeviceToHost, s), "wanda norm check");
  check(cudaStreamSynchronize(s), "the norm check of " + spruce::detail::tensor_label(name));
  if (!back.nan_count) return;
  T bad{};
  check(cudaMemcpy(&bad, norms + back.first_nan, sizeof(T), cudaMemcpyDeviceToHost), "wanda norm check");
  throw error("wanda for " + spruce::detail::tensor_label(name) + ": the activation norm of input channel " + std::to_string(back.first_nan) +
              " is " + spruce::detail::shortest_decimal(static_cast<double>(bad)) +
              "; norms are >= 0 (check the calibration activations for NaN)");
}

template <class C, class T>
scored<C, T> score_groups(const C& c, const device_inputs<T>& in, const granularity::group_layout& layout, const std::string& name,
                          stream_ref s) {
  validate_inputs(c, in, layout, name);
  scored<C, T> out{device_buffer<T>(layout.groups(), s), make_group_plan(layout, spruce::detail::kernel_threads()), {}};
  if (out.scores.empty()) return out;
  out.run_group = upload(out.plan.run_group, s);
  const std::size_t groups = out.plan.plan.groups;
  if constexpr (criterion::elementwise_criterion<C>) {
    const contiguous_input<T> w(in.weight, s);
    const contiguous_input<T> g(C::needs_grad ? in.grad : tensor_ref<const T, cuda_space>{}, s);
    const contiguous_input<T> h(C::needs_hessian ? in.hessian : tensor_ref<const T, cuda_space>{}, s);
    const auto q_ptr = upload(out.plan.q_ptr, s), q_runs = upload(out.plan.q_runs, s);
    group_scores_kernel<C::needs_grad, C::needs_hessian, C, T><<<grid_for(groups), block_threads, 0, s>>>(
        c, w.data, C::needs_grad ? g.data : nullptr, C::needs_hessian ? h.data : nullptr, out.plan.plan, q_ptr.data(), q_runs.data(),
        out.scores.data());
  } else if constexpr (std::same_as<C, criterion::bn_scale>) {
    const contiguous_input<T> gamma(in.gamma, s);
    bn_scale_kernel<T><<<grid_for(groups), block_threads, 0, s>>>(gamma.data, groups, out.scores.data());
  } else if constexpr (std::same_as<C, criterion::random>) {
    random_scores_kernel<T><<<grid_for(groups), block_threads, 0, s>>>(c.seed, groups, out.scores.data());
  } else {
    const contiguous_input<T> norms(in.norms, s);
    check_norms(norms.data, in.norms.size(), name, s);
    const contiguous_input<T> w(in.weight, s);
    const auto q_ptr = upload(out.plan.q_ptr, s), q_runs = upload(out.plan.q_runs, s);
    const std::size_t channels = in.weight.shape()[1], inner = in.weight.size() / (in.weight.shape()[0] * channels);
    wanda_kernel<T><<<grid_for(groups), block_threads, 0, s>>>(w.data, norms.data, inner, channels, out.plan.plan, q_ptr.data(), q_runs.data(),
                                                               groups == in.weight.size(), out.scores.data());
  }
  check(cudaGetLastError(), "the group score kernel of " + spruce::detail::tensor_label(name));
  // The uploads' host vectors live in `out`; the temporary buffers are freed stream-ordered.
  return out;
}

}  // namespace detail

/// One score per group of `layout`, in group order, for a device tensor (the device twin of
/// spruce::group_scores for element-wise criteria and bn_scale, random and wanda; the same
/// bits, see the header comment -- Wanda sums its products in flat order from +0, as the
/// CPU does, without FMA contraction).
/// Validates on the host first, with the CPU's messages. The result is a device buffer of
/// layout.groups() scores; nothing is synchronised.
template <class C, class T>
device_buffer<T> group_scores(const C& c, const device_inputs<T>& in, const granularity::group_layout& layout,
                              const std::string& name = {}, stream_ref s = {}) {
  // The plan's arrays are uploaded from pageable host memory, which the runtime stages
  // before cudaMemcpyAsync returns, so they may go when this call returns.
  return std::move(detail::score_groups(c, in, layout, name, s).scores);
}

/// pruner<G, C, S>::compute on the device: the keep mask of one device tensor, with the
/// CPU's bytes. Group granularities score every group on the device, select the count
/// lowest scores with the device selection (the rule's count and tie rule; count rules
/// only) and expand the group bytes into the element mask; element granularity with a
/// magnitude-ordered criterion selects on |w| directly; N:M ranks |w| (or the element
/// scores) per group. Synchronises `s` for the NaN status read-back; on error nothing is
/// written.
template <class G, class C, class S, class T>
device_mask compute(const pruner<G, C, S>& p, const device_inputs<T>& in, const std::string& name = {}, stream_ref s = {}) {
  if constexpr (granularity::n_m_granularity<G>) {
    if constexpr (criterion::orders_like_magnitude_v<C>) {
      return n_m_mask(in.weight, p.granularity, name, s);
    } else {
      static_assert(criterion::elementwise_criterion<C>, "N:M keeps single weights inside each group: use an element-wise criterion");
      p.granularity.validate(name);
      const auto r = detail::score_groups(p.criterion, in, granularity::element{}.layout(in.weight.shape(), name), name, s);
      return n_m_mask(r.scores.view(in.weight.shape()), p.granularity, name, s);
    }
  } else {
    static_assert(selection::count_rule<S>,
                  "spruce::cuda pruner: only count rules (threshold, exact, or a user's count_rule) select on the device; "
                  "compute a mask_rule (quantile) on a host copy");
    if constexpr (granularity::one_weight_per_group_v<G> && criterion::orders_like_magnitude_v<C>) {
      return magnitude_mask(in.weight, p.selection, name, s);
    } else {
      const granularity::group_layout layout = p.granularity.layout(in.weight.shape(), name);
      const std::string label = spruce::detail::tensor_label(name);
      const std::size_t groups = layout.groups();
      // The CPU's order: the inputs (and the scores' own checks), then the rule's count.
      const auto r = detail::score_groups(p.criterion, in, layout, name, s);
      const std::size_t count = p.selection.count(groups, label);
      device_mask m(in.weight.shape(), s);
      if (groups == 0) return m;
      const std::size_t gshape[1] = {groups};
      const device_mask keep = lowest_mask<select::by_value>(r.scores.view(gshape), count, S::ties, label, s);
      detail::expand_groups_kernel<std::uint8_t><<<detail::grid_for(m.size(), 4), detail::block_threads, 0, s>>>(r.plan.plan, r.run_group.data(),
                                                                                                   keep.data(), m.size(), m.data());
      check(cudaGetLastError(), "the group expansion kernel of " + label);
      return m;
    }
  }
}

/// compute() of a device weight alone (for criteria that read nothing else).
template <class G, class C, class S, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
device_mask compute(const pruner<G, C, S>& p, const V& w, const std::string& name = {}, stream_ref s = {}) {
  return compute(p, device_inputs<view_value_t<V>>{to_const_ref(w)}, name, s);
}

/// pruner<G, C, S>::prune on the device: compute() from the weight's own values, then the
/// pruned groups are zeroed in place. On error nothing is written.
template <class G, class C, class S, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
device_mask prune(const pruner<G, C, S>& p, const V& w, const std::string& name = {}, stream_ref s = {}) {
  static_assert(mutable_view<V>, "spruce::cuda::prune writes to the tensor: pass a mutable view");
  device_mask m = compute(p, w, name, s);
  detail::apply_keep(to_ref(w), m.data(), s);
  return m;
}

}  // namespace spruce::cuda

namespace spruce {

/// CUDA backend of pruner<G, C, S>::compute / prune for cuda_space views (legacy default
/// stream; spruce::cuda::compute / prune take a stream and device gradients).
template <>
struct pruner_backend<cuda_space> {
  template <class P, class T>
  static cuda::device_mask compute(const P& p, const tensor_ref<const T, cuda_space>& w, const std::string& name) {
    return cuda::compute(p, w, name);
  }
  template <class P, class T>
  static cuda::device_mask prune(const P& p, const tensor_ref<T, cuda_space>& w, const std::string& name) {
    return cuda::prune(p, w, name);
  }
};

}  // namespace spruce
