#pragma once
// The N:M algorithms over the policies of granularity/n_m.hpp and the kernels of
// granularity/detail/n_m_kernels.hpp: masks, in-place pruning and pattern checks, for the
// compile-time n_m<N, M> and the run-time n_m_pattern alike.

#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/granularity/detail/n_m_kernels.hpp"
#include "spruce/granularity/n_m.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/select/key.hpp"

namespace spruce {

namespace detail {

template <class T>
mask n_m_mask_impl(const tensor_ref<const T>& w, const granularity::n_m_pattern& p,
                   const std::string& name) {
  p.validate(name);
  check_n_m_padding(w.shape(), p.n, p.m, p.allow_padding, tensor_label(name));
  std::vector<T> gathered;
  const T* data = w.data();
  if (!w.is_contiguous()) {
    gathered.resize(w.size());
    gather(w, gathered.data());
    data = gathered.data();
  }
  return mask::adopt(w.shape(), n_m_keep(data, w.shape(), p.n, p.m, name));  // 0/1 by construction
}

}  // namespace detail

/// The backend that computes N:M masks of tensors in memory space `Space`; n_m_mask /
/// n_m_prune dispatch to it at compile time. The host backend is below; the CUDA layer
/// specialises it for cuda_space in its own header, so the primary template only says
/// which header is missing.
template <class Space>
struct n_m_backend {
  static_assert(sizeof(Space) == 0,
                "spruce::n_m_mask / n_m_prune: no backend for this memory space. For cuda_space "
                "views include <spruce/cuda.hpp> from a file compiled by nvcc, or copy the tensor "
                "to host memory.");
};

template <>
struct n_m_backend<host_space> {
  template <std::size_t N, std::size_t M, class T>
  static mask mask_of(const tensor_ref<const T>& cw, granularity::n_m<N, M> g, const std::string& name) {
    detail::check_n_m_padding(cw.shape(), N, M, g.allow_padding, detail::tensor_label(name));
    std::vector<T> gathered;
    const T* p = cw.data();
    if (!cw.is_contiguous()) {
      gathered.resize(cw.size());
      detail::gather(cw, gathered.data());
      p = gathered.data();
    }
    return mask::adopt(cw.shape(), detail::n_m_keep<N, M>(p, cw.shape(), name));  // 0/1 by construction
  }
  template <class T>
  static mask mask_of(const tensor_ref<const T>& w, const granularity::n_m_pattern& p, const std::string& name) {
    return detail::n_m_mask_impl(w, p, name);
  }
  template <class G, class T>
  static mask prune(const tensor_ref<T>& w, const G& g, const std::string& name) {
    mask m = mask_of(tensor_ref<const T>(w), g, name);
    detail::apply_keep(w, m.data());
    return m;
  }
};

/// The N:M keep mask of `w` (see granularity::n_m for the grouping, ties and padding); `w`
/// is not modified. Any view works, strided included (strided views are gathered once); a
/// host view gets a spruce::mask, a cuda_space view (with <spruce/cuda.hpp>) a
/// cuda::device_mask with the same bytes. Float and double weights. The N:4 patterns take
/// a branch-free compare network over each group's four magnitudes; other M up to 32 count
/// pairwise wins over tiles of groups laid out one member per row (vectorised across
/// groups); larger M select per group. Rows are split across threads (or, when every row
/// is whole groups, the groups are). Throws spruce::error naming `name` for a NaN weight
/// (with its flat index) and, when `g.allow_padding` is false, for an axis whose length is
/// not a multiple of M.
template <std::size_t N, std::size_t M, any_view V>
  requires select::score_type<view_value_t<V>>
auto n_m_mask(const V& w, granularity::n_m<N, M> g = {}, const std::string& name = {}) {
  return n_m_backend<view_space_t<V>>::mask_of(to_const_ref(w), g, name);
}

/// The N:M keep mask for a pattern given at run time: the same mask n_m_mask gives for
/// n_m<p.n, p.m> (the common patterns run that very code). Throws spruce::error naming
/// `name` when the pattern does not form (n >= m or m == 0), and for the errors of the
/// compile-time overload.
template <any_view V>
  requires select::score_type<view_value_t<V>>
auto n_m_mask(const V& w, const granularity::n_m_pattern& p, const std::string& name = {}) {
  return n_m_backend<view_space_t<V>>::mask_of(to_const_ref(w), p, name);
}

/// Prunes `w` to the N:M pattern in place: computes n_m_mask, sets the pruned weights to
/// +0 and returns the mask. On error nothing is written.
template <std::size_t N, std::size_t M, any_view V>
  requires mutable_view<V> && select::score_type<view_value_t<V>>
auto n_m_prune(const V& w, granularity::n_m<N, M> g = {}, const std::string& name = {}) {
  return n_m_backend<view_space_t<V>>::prune(to_ref(w), g, name);
}

/// n_m_prune for a pattern given at run time (validated first: see n_m_mask).
template <any_view V>
  requires mutable_view<V> && select::score_type<view_value_t<V>>
auto n_m_prune(const V& w, const granularity::n_m_pattern& p, const std::string& name = {}) {
  return n_m_backend<view_space_t<V>>::prune(to_ref(w), p, name);
}

/// True when mask `m` fits the N:M pattern `g` (an n_m<N, M> or a valid n_m_pattern):
/// every group of M along the N:M axis (as granularity::n_m defines it) keeps at most N,
/// so the weights can be stored in an N:M compressed format (a group keeping fewer stores
/// explicit zeros). A trailing partial group is allowed only when `g.allow_padding` is
/// true. An empty mask fits. A run-time pattern that does not form throws spruce::error.
template <granularity::n_m_granularity G>
bool is_n_m(const mask& m, const G& g) {
  const granularity::n_m_pattern p = g.pattern();
  p.validate("the mask");
  return detail::first_non_n_m(m.data(), m.size(), m.shape(), p.n, p.m, p.allow_padding).first ==
         m.size();
}

/// Like is_n_m, but throws spruce::error naming `name` and the first offending group.
template <granularity::n_m_granularity G>
void check_n_m(const mask& m, const G& g, const std::string& name = {}) {
  const granularity::n_m_pattern p = g.pattern();
  p.validate(name);
  detail::check_n_m_padding(m.shape(), p.n, p.m, p.allow_padding, "mask of " + detail::tensor_label(name));
  const auto [at, kept] = detail::first_non_n_m(m.data(), m.size(), m.shape(), p.n, p.m, p.allow_padding);
  if (at != m.size())
    throw error("mask of " + detail::tensor_label(name) + " (shape " + shape_string(m.shape()) +
                ") keeps " + std::to_string(kept) + " weights in the group starting at flat index " +
                std::to_string(at) + "; a " + detail::n_m_string(p.n, p.m) +
                " pattern keeps at most " + std::to_string(p.n) + " of every " + std::to_string(p.m) +
                " along axis " + (m.rank() == 1 ? "0" : "1") + "; compute the mask with n_m_mask");
}

}  // namespace spruce
