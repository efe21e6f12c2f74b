#pragma once

#include <array>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "spruce/core/parallel.hpp"
#include "spruce/core/tensor_ref.hpp"

namespace spruce::detail {

/// Walks flat row-major indices [b, e) of a strided view as runs along the innermost
/// axis, calling f(flat, pointer, stride, length) per run: one division per axis to find
/// the start, then an odometer (never a division per element).
template <class T, class F>
void for_each_run(const tensor_ref<T>& v, std::size_t b, std::size_t e, F&& f) {
  if (b >= e) return;
  const std::size_t rank = v.rank(), last = rank - 1;
  std::array<std::size_t, max_rank> idx{};
  std::size_t off = 0;
  for (std::size_t r = rank, q = b; r-- > 0;) {
    idx[r] = q % v.extent(r);
    q /= v.extent(r);
    off += idx[r] * v.stride(r);
  }
  std::size_t flat = b;
  while (flat < e) {
    const std::size_t len = std::min(e - flat, v.extent(last) - idx[last]);
    f(flat, v.data() + off, v.stride(last), len);
    flat += len;
    if (flat >= e) break;
    off -= idx[last] * v.stride(last);
    idx[last] = 0;
    for (std::size_t r = last; r-- > 0;) {
      ++idx[r];
      off += v.stride(r);
      if (idx[r] < v.extent(r)) break;
      off -= idx[r] * v.stride(r);
      idx[r] = 0;
    }
  }
}

/// Copies the elements of `v` in flat row-major order into `out` (size v.size()).
template <class T>
void gather(const tensor_ref<const T>& v, T* out) {
  const std::size_t n = v.size();
  if (v.is_contiguous()) {
    if (n) std::memcpy(out, v.data(), n * sizeof(T));
    return;
  }
  parallel_chunks(n, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
    for_each_run(v, b, e, [&](std::size_t flat, const T* p, std::size_t s, std::size_t len) {
      for (std::size_t i = 0; i < len; ++i) out[flat + i] = p[i * s];
    });
  });
}

/// w = keep ? w : 0 for every element, `keep` in flat row-major order. Pruned weights become
/// +0 (not -0, which some kernels treat as nonzero bit patterns).
template <class T>
void apply_keep(const tensor_ref<T>& w, const std::uint8_t* keep) {
  const std::size_t n = w.size();
  if (w.is_contiguous()) {
    T* __restrict p = w.data();
    parallel_chunks(n, [p, keep](std::size_t, std::size_t, std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) p[i] = keep[i] ? p[i] : T(0);
    });
    return;
  }
  parallel_chunks(n, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
    for_each_run(w, b, e, [&](std::size_t flat, T* p, std::size_t s, std::size_t len) {
      for (std::size_t i = 0; i < len; ++i) p[i * s] = keep[flat + i] ? p[i * s] : T(0);
    });
  });
}

}  // namespace spruce::detail
