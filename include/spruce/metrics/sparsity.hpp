#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "spruce/core/error.hpp"
#include "spruce/core/memory_space.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/core/tensor_view.hpp"

namespace spruce {

namespace detail::metrics {

template <class>
inline constexpr bool always_false = false;

/// Counting is order-independent, so a strided view may be walked in any order. This is
/// the view's shape after dropping extents of 1, sorting the axes by decreasing stride and
/// merging axes that are contiguous with each other: a transpose (or any permutation of a
/// contiguous block, e.g. a column-major Eigen matrix) collapses to one axis of stride 1
/// and takes the flat path; what remains walks memory in the most cache-friendly order.
struct walk_shape {
  std::size_t rank = 0;
  std::array<std::size_t, max_rank> extent{};
  std::array<std::size_t, max_rank> stride{};
};

inline walk_shape normalize_walk(std::span<const std::size_t> e, std::span<const std::size_t> s) {
  walk_shape w;
  for (std::size_t r = 0; r < e.size(); ++r) {
    if (e[r] == 1) continue;
    // Insertion sort by decreasing stride (rank <= 8); stable, so equal strides keep order.
    std::size_t i = w.rank++;
    while (i > 0 && w.stride[i - 1] < s[r]) {
      w.extent[i] = w.extent[i - 1];
      w.stride[i] = w.stride[i - 1];
      --i;
    }
    w.extent[i] = e[r];
    w.stride[i] = s[r];
  }
  std::size_t out = 0;
  for (std::size_t r = 0; r < w.rank; ++r) {
    if (out > 0 && w.stride[out - 1] == w.stride[r] * w.extent[r]) {
      w.extent[out - 1] *= w.extent[r];
      w.stride[out - 1] = w.stride[r];
    } else {
      w.extent[out] = w.extent[r];
      w.stride[out] = w.stride[r];
      ++out;
    }
  }
  w.rank = out;
  return w;
}

/// Nonzero elements of p[0, n). Counts go into 32-bit block accumulators so the compare
/// and add vectorise at full width; -0.0 == 0 is zero and NaN != 0 is nonzero, exactly as
/// torch.count_nonzero decides.
template <class T>
std::size_t count_nonzero_flat(const T* p, std::size_t n) noexcept {
  using V = std::remove_cv_t<T>;
  constexpr std::size_t block = std::size_t{1} << 16;
  const V zero{};
  std::size_t total = 0;
  while (n > 0) {
    const std::size_t m = n < block ? n : block;
    std::uint32_t c = 0;
    for (std::size_t i = 0; i < m; ++i) c += static_cast<std::uint32_t>(p[i] != zero);
    total += c;
    p += m;
    n -= m;
  }
  return total;
}

/// Nonzero elements among flat indices [b, e) of a normalised strided walk (rank >= 1):
/// one division per axis to find the start, then an odometer, never a division per element.
template <class T>
std::size_t count_nonzero_strided(const T* p, const walk_shape& w, std::size_t b,
                                  std::size_t e) noexcept {
  using V = std::remove_cv_t<T>;
  const V zero{};
  const std::size_t last = w.rank - 1;
  std::array<std::size_t, max_rank> idx{};
  std::size_t off = 0;
  for (std::size_t r = w.rank, f = b; r-- > 0;) {
    idx[r] = f % w.extent[r];
    f /= w.extent[r];
    off += idx[r] * w.stride[r];
  }
  const std::size_t inner_extent = w.extent[last], inner_stride = w.stride[last];
  std::size_t left = e - b, total = 0;
  while (left > 0) {
    const std::size_t len = std::min(left, inner_extent - idx[last]);
    const T* q = p + off;
    std::size_t c = 0;
    for (std::size_t i = 0; i < len; ++i) c += static_cast<std::size_t>(q[i * inner_stride] != zero);
    total += c;
    left -= len;
    if (left == 0) break;
    // The inner axis is exhausted: rewind it and carry into the outer axes. Elements remain,
    // so some outer axis always has room.
    off -= idx[last] * inner_stride;
    idx[last] = 0;
    for (std::size_t r = last; r-- > 0;) {
      ++idx[r];
      off += w.stride[r];
      if (idx[r] < w.extent[r]) break;
      off -= idx[r] * w.stride[r];
      idx[r] = 0;
    }
  }
  return total;
}

}  // namespace detail::metrics

/// The backend that counts nonzero elements of a tensor in memory space `Space`;
/// `count_nonzero` dispatches to it at compile time. spruce provides the host backend
/// here; a device backend (the CUDA layer) specialises this template in its own header, so
/// the primary template only reports which header is missing.
template <class Space>
struct count_nonzero_backend {
  static_assert(detail::metrics::always_false<Space>,
                "spruce::count_nonzero: no backend for this memory space. For cuda_space "
                "views include <spruce/cuda.hpp>, or copy the tensor to host memory.");
};

/// Host backend: contiguous tensors (and any permutation of a contiguous block, such as a
/// transpose) take a flat, vectorised pass; other strided tensors walk their offsets with an
/// odometer. Both split the work across OpenMP threads above `parallel_threshold` elements
/// and add the per-chunk counts, so the result does not depend on the thread count.
template <>
struct count_nonzero_backend<host_space> {
  template <class T>
  static std::size_t count(const tensor_ref<T, host_space>& t) noexcept {
    const std::size_t n = t.size();
    if (n == 0) return 0;
    const detail::metrics::walk_shape w = detail::metrics::normalize_walk(t.shape(), t.strides());
    const T* p = t.data();
    if (w.rank == 0) return p[0] != std::remove_cv_t<T>{} ? 1 : 0;
    const bool flat = w.rank == 1 && w.stride[0] == 1;
    std::atomic<std::size_t> total{0};
    parallel_chunks(n, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
      if (b == e) return;
      const std::size_t c = flat ? detail::metrics::count_nonzero_flat(p + b, e - b)
                                 : detail::metrics::count_nonzero_strided(p, w, b, e);
      total.fetch_add(c, std::memory_order_relaxed);
    });
    return total.load(std::memory_order_relaxed);
  }
};

namespace detail::metrics {

template <class T, class Space>
void check_data(const tensor_ref<T, Space>& t, const std::string& name) {
  if (t.data() == nullptr && t.size() != 0)
    throw error(tensor_label(name) + " of shape " + shape_string(t.shape()) +
                " has a null data pointer; view the tensor's storage (make_view) before "
                "measuring it");
}

}  // namespace detail::metrics

/// Number of elements of `t` that are not zero, as torch.count_nonzero counts them: -0.0 is
/// zero and NaN is nonzero (a NaN weight is not a pruned one). Works for any element type
/// that compares with its value-initialised zero and for any strides; an empty tensor has
/// none. Throws spruce::error for a null data pointer with a non-zero size.
template <any_view V>
std::size_t count_nonzero(const V& v) {
  const auto t = to_ref(v);
  detail::metrics::check_data(t, std::string());
  return count_nonzero_backend<view_space_t<V>>::count(t);
}

/// count_nonzero of a model parameter; a failure message names the parameter.
template <class T, class Space>
std::size_t count_nonzero(const named_tensor<T, Space>& t) {
  detail::metrics::check_data(t.view, t.name);
  return count_nonzero_backend<Space>::count(t.view);
}

/// Fraction of the elements of `t` that are exactly zero, `1 - count_nonzero / size`, in
/// double, which is the MIT lab's `get_sparsity` digit for digit. -0.0 counts as zero and
/// NaN as nonzero; an empty tensor has sparsity 0 (nothing has been pruned from it).
template <any_view V>
double sparsity(const V& v) {
  const std::size_t nnz = count_nonzero(v);
  const std::size_t n = v.size();
  return n == 0 ? 0.0 : 1.0 - static_cast<double>(nnz) / static_cast<double>(n);
}

/// sparsity of a model parameter; a failure message names the parameter.
template <class T, class Space>
double sparsity(const named_tensor<T, Space>& t) {
  const std::size_t nnz = count_nonzero(t);
  const std::size_t n = t.view.size();
  return n == 0 ? 0.0 : 1.0 - static_cast<double>(nnz) / static_cast<double>(n);
}

}  // namespace spruce
