#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "spruce/core/elementwise.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/select/kth.hpp"
#include "spruce/selection/rule.hpp"

namespace spruce {

/// The backend that computes magnitude masks of tensors in memory space `Space`;
/// magnitude_mask / magnitude_prune dispatch to it at compile time. The host backend is
/// below; the CUDA layer specialises it for cuda_space in its own header, so the primary
/// template only says which header is missing.
template <class Space>
struct magnitude_backend {
  static_assert(sizeof(Space) == 0,
                "spruce::magnitude_mask / magnitude_prune: no backend for this memory space. For "
                "cuda_space views include <spruce/cuda.hpp> from a file compiled by nvcc, or copy "
                "the tensor to host memory.");
};

/// Host backend: the L1 score fused into the selection key (no score buffer for
/// contiguous views; strided views are gathered once).
template <>
struct magnitude_backend<host_space> {
  template <class S, class T>
  static mask mask_of(const tensor_ref<const T>& w, const S& sel, const std::string& name) {
    const std::size_t n = w.size();
    std::vector<T> gathered;
    const T* p = w.data();
    if (!w.is_contiguous()) {
      gathered.resize(n);
      detail::gather(w, gathered.data());
      p = gathered.data();
    }
    byte_buffer keep = selection::keep_mask<select::by_magnitude>(sel, std::span<const T>(p, n),
                                                                  detail::tensor_label(name));
    return mask::adopt(w.shape(), std::move(keep));
  }
  template <class S, class T>
  static mask prune(const tensor_ref<T>& w, const S& sel, const std::string& name) {
    mask m = mask_of(tensor_ref<const T>(w), sel, name);
    detail::apply_keep(w, m.data());
    return m;
  }
};

/// Fine-grained magnitude pruning: element granularity with L1 importance (|w|). Returns
/// the keep mask that selection rule `sel` gives for `w`; `w` is not modified. The L1
/// score is fused into the selection key, so no score buffer is built for contiguous
/// views; strided views are gathered once. A host view gets a spruce::mask; a cuda_space
/// view (with <spruce/cuda.hpp>) a cuda::device_mask with the same bytes. Throws
/// spruce::error (naming `name`) for a NaN weight, a NaN sparsity or an exact count larger
/// than the tensor.
template <selection::rule S, any_view V>
  requires select::score_type<view_value_t<V>>
auto magnitude_mask(const V& view, const S& sel, const std::string& name = {}) {
  return magnitude_backend<view_space_t<V>>::mask_of(to_const_ref(view), sel, name);
}

/// Prunes `w` in place (the lab's fine_grained_prune): computes the magnitude mask, zeroes
/// the pruned weights and returns the mask. On error nothing is written.
template <selection::rule S, any_view V>
  requires select::score_type<view_value_t<V>>
auto magnitude_prune(const V& w, const S& sel, const std::string& name = {}) {
  static_assert(mutable_view<V>, "spruce::magnitude_prune writes to the tensor: pass a mutable view "
                                 "(or call magnitude_mask)");
  return magnitude_backend<view_space_t<V>>::prune(to_ref(w), sel, name);
}

}  // namespace spruce
