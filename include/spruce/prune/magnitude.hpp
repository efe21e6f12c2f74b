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

/// Fine-grained magnitude pruning: element granularity with L1 importance (|w|). Returns
/// the keep mask that selection rule `sel` gives for `w`; `w` is not modified. The L1
/// score is fused into the selection key, so no score buffer is built for contiguous
/// views; strided views are gathered once. Throws spruce::error (naming `name`) for a
/// NaN weight, a NaN sparsity or an exact count larger than the tensor.
template <selection::rule S, host_view V>
  requires select::score_type<view_value_t<V>>
mask magnitude_mask(const V& view, const S& sel, const std::string& name = {}) {
  using T = view_value_t<V>;
  const tensor_ref<const T> w = to_const_ref(view);
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

/// Prunes `w` in place (the lab's fine_grained_prune): computes the magnitude mask, zeroes
/// the pruned weights and returns the mask. On error nothing is written.
template <selection::rule S, host_view V>
  requires select::score_type<view_value_t<V>>
mask magnitude_prune(const V& w, const S& sel, const std::string& name = {}) {
  static_assert(mutable_view<V>, "spruce::magnitude_prune writes to the tensor: pass a mutable view "
                                 "(or call magnitude_mask)");
  mask m = magnitude_mask(w, sel, name);
  detail::apply_keep(to_ref(w), m.data());
  return m;
}

}  // namespace spruce
