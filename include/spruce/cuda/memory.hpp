#pragma once
// Device memory, streams, device views and explicit copies.

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "spruce/core/error.hpp"
#include "spruce/core/memory_space.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/tensor_view.hpp"
#include "spruce/core/view.hpp"
#include "spruce/cuda/error.hpp"
#include "spruce/prune/mask.hpp"

namespace spruce::cuda {

/// The stream a call runs on. Every function of the CUDA layer takes one (default: the
/// legacy default stream) and only enqueues work on it; the few calls that must read a
/// result back (a status, a count, a size) say so and synchronise that stream only.
struct stream_ref {
  cudaStream_t handle = nullptr;
  constexpr stream_ref() noexcept = default;
  constexpr stream_ref(cudaStream_t s) noexcept : handle(s) {}  // NOLINT: implicit by design
  constexpr operator cudaStream_t() const noexcept { return handle; }
};

/// Row-major device view of rank R (the device twin of spruce::view).
template <class T, std::size_t R>
using view = tensor_view<T, extents<R>, layout_right, cuda_space>;

/// A spruce view whose elements live in device memory.
template <class V>
concept device_view = any_view<V> && std::same_as<view_space_t<V>, cuda_space>;

/// A run-time-rank view of device memory at `p` (a pointer from cudaMalloc, a framework's
/// tensor, a device_buffer): spruce never owns or copies it. Throws spruce::error for a
/// null pointer with a non-zero size or an unsupported rank.
template <class T>
tensor_ref<T, cuda_space> make_device_view(T* p, std::span<const std::size_t> shape,
                                           std::span<const std::size_t> strides = {}) {
  return tensor_ref<T, cuda_space>(p, shape, strides);
}
template <class T>
tensor_ref<T, cuda_space> make_device_view(T* p, std::initializer_list<std::size_t> shape) {
  return make_device_view(p, std::span<const std::size_t>(shape.begin(), shape.size()));
}

/// Owning, stream-ordered device allocation of `n` elements of T (cudaMallocAsync; freed
/// with cudaFreeAsync on the same stream). Move-only. The contents are uninitialised.
template <class T>
class device_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "spruce::cuda::device_buffer holds trivially copyable types");

 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t n, stream_ref s = {}) : n_(n), s_(s) {
    if (n) check(cudaMallocAsync(reinterpret_cast<void**>(&p_), n * sizeof(T), s), "cudaMallocAsync of " + std::to_string(n * sizeof(T)) + " bytes");
  }
  device_buffer(device_buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), s_(o.s_) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
      s_ = o.s_;
    }
    return *this;
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { release(); }

  T* data() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  stream_ref stream() const noexcept { return s_; }

  /// The buffer as a row-major device view of `shape` (whose size must be size()).
  tensor_ref<T, cuda_space> view(std::span<const std::size_t> shape) const {
    if (shape_size(shape) != n_)
      throw error("device_buffer of " + std::to_string(n_) + " elements viewed as shape " + shape_string(shape) +
                  "; pass a shape of the buffer's size");
    return tensor_ref<T, cuda_space>(p_, shape);
  }

 private:
  void release() noexcept {
    if (p_) (void)cudaFreeAsync(p_, s_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
  stream_ref s_{};
};

namespace detail {

/// Host-boundary checks of a device view: no null pointer with a non-zero size, and the
/// pointer really is device (or managed) memory, so a host pointer passed as a cuda_space
/// view is refused before a kernel faults on it.
template <class T>
void check_device_data(const tensor_ref<T, cuda_space>& t, const std::string& name) {
  if (t.size() == 0) return;
  if (t.data() == nullptr)
    throw error(spruce::detail::tensor_label(name) + " of shape " + shape_string(t.shape()) +
                " is a device view with a null pointer; view the tensor's device storage");
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, t.data()) != cudaSuccess) {
    (void)cudaGetLastError();
    throw error(spruce::detail::tensor_label(name) + " of shape " + shape_string(t.shape()) +
                ": its pointer is not known to the CUDA runtime; pass device memory (or copy the tensor with "
                "cuda::copy)");
  }
  if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
    throw error(spruce::detail::tensor_label(name) + " of shape " + shape_string(t.shape()) +
                " is a cuda_space view of host memory; copy it to the device (cuda::copy) or use a host view");
}

template <class T>
void require_contiguous(const tensor_ref<T, cuda_space>& t, const std::string& what, const std::string& name) {
  if (!t.is_contiguous())
    throw error(what + ": " + spruce::detail::tensor_label(name) + " of shape " + shape_string(t.shape()) +
                " is strided; pass a contiguous device view (copy it into a device_buffer first)");
}

template <class Src, class Dst>
cudaMemcpyKind copy_kind() {
  const bool sd = std::same_as<Src, cuda_space>, dd = std::same_as<Dst, cuda_space>;
  return sd ? (dd ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
            : (dd ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
}

}  // namespace detail

/// Copies the elements of `src` into `dst` (same shape, both contiguous, any spaces): one
/// cudaMemcpyAsync on `s`. Host memory should be pinned for the copy to be asynchronous;
/// with pageable host memory the runtime may return before or after the copy ends, so read
/// a host destination only after synchronising `s`. Throws spruce::error for another
/// shape or a strided view.
template <any_view S, any_view D>
void copy(const S& src, const D& dst, stream_ref s = {}) {
  static_assert(mutable_view<D>, "spruce::cuda::copy writes to dst: pass a mutable view");
  static_assert(std::same_as<view_value_t<S>, view_value_t<D>>, "spruce::cuda::copy: element types differ");
  const auto a = to_const_ref(src);
  const auto b = to_ref(dst);
  if (!std::ranges::equal(a.shape(), b.shape()))
    throw error("cuda::copy: source of shape " + shape_string(a.shape()) + " and destination of shape " +
                shape_string(b.shape()) + " differ; pass views of one shape");
  if (!a.is_contiguous() || !b.is_contiguous())
    throw error("cuda::copy: strided views are not copied; pass contiguous views");
  if (a.size() == 0) return;
  check(cudaMemcpyAsync(b.data(), a.data(), a.size() * sizeof(view_value_t<S>),
                        detail::copy_kind<view_space_t<S>, view_space_t<D>>(), s),
        "cuda::copy");
}

/// A keep mask in device memory: the device twin of spruce::mask (one byte per weight, 1 =
/// keep, in flat row-major order, with the shape it was computed for). What the device
/// paths return; `to_host` / `from_host` move it across explicitly.
class device_mask {
 public:
  device_mask() = default;
  /// An uninitialised mask of `shape` (the kernels write every byte).
  device_mask(std::span<const std::size_t> shape, stream_ref s)
      : rank_(shape.size()), bytes_(shape_size(shape), s) {
    if (rank_ > max_rank) throw error("device_mask rank " + std::to_string(rank_) + " exceeds " + std::to_string(max_rank));
    std::copy(shape.begin(), shape.end(), shape_.begin());
  }

  std::span<const std::size_t> shape() const noexcept { return {shape_.data(), rank_}; }
  std::size_t rank() const noexcept { return rank_; }
  std::size_t size() const noexcept { return bytes_.size(); }
  bool empty() const noexcept { return bytes_.empty(); }
  /// Device pointer to the bytes.
  std::uint8_t* data() const noexcept { return bytes_.data(); }
  /// The bytes as a read-only device view.
  tensor_ref<const std::uint8_t, cuda_space> ref() const { return bytes_.view(shape()); }

  /// Copies the mask to host memory (synchronises `s`: the documented read-back).
  mask to_host(stream_ref s = {}) const {
    byte_buffer b(size());
    if (size()) {
      check(cudaMemcpyAsync(b.data(), data(), size(), cudaMemcpyDeviceToHost, s), "device_mask::to_host");
      check(cudaStreamSynchronize(s), "device_mask::to_host");
    }
    return mask::adopt(shape(), std::move(b));
  }

  /// Copies a host mask to the device (enqueued on `s`; `m` must live until `s` reaches it).
  static device_mask from_host(const mask& m, stream_ref s = {}) {
    device_mask d(m.shape(), s);
    if (m.size()) check(cudaMemcpyAsync(d.data(), m.data(), m.size(), cudaMemcpyHostToDevice, s), "device_mask::from_host");
    return d;
  }

 private:
  std::array<std::size_t, max_rank> shape_{};
  std::size_t rank_ = 0;
  device_buffer<std::uint8_t> bytes_;
};

}  // namespace spruce::cuda
