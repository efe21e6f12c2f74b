#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"

namespace spruce {

/// A keep mask: one byte per weight, 1 = keep, 0 = pruned, in the weight's flat row-major
/// order whatever the weight's layout. It owns its bytes and remembers the shape it was
/// computed for, so applying it to a tensor of another shape is caught. Bytes rather than
/// bits because applying a byte mask vectorises at memory speed.
class mask {
 public:
  mask() = default;

  /// A mask of `shape` with every byte set to `value` (1: keep everything).
  explicit mask(std::span<const std::size_t> shape, std::uint8_t value = 1)
      : mask(shape, byte_buffer(checked_size(shape), value ? 1 : 0), no_check{}) {}

  /// Adopts `bytes` (each 0 or 1) as the mask of `shape`. Throws spruce::error when the
  /// size disagrees with the shape or a byte is neither 0 nor 1.
  mask(std::span<const std::size_t> shape, byte_buffer bytes)
      : mask(shape, std::move(bytes), no_check{}) {
    if (bytes_.size() != checked_size(shape))
      throw error("mask bytes: " + std::to_string(bytes_.size()) + " given for shape " +
                  shape_string(shape) + " of " + std::to_string(checked_size(shape)) +
                  " elements; pass one byte per element");
    const auto bad = std::find_if(bytes_.begin(), bytes_.end(), [](std::uint8_t b) { return b > 1; });
    if (bad != bytes_.end())
      throw error("mask byte at flat index " + std::to_string(bad - bytes_.begin()) + " is " +
                  std::to_string(*bad) + "; mask bytes must be 0 (pruned) or 1 (kept)");
  }

  std::span<const std::size_t> shape() const noexcept { return {shape_.data(), rank_}; }
  std::size_t rank() const noexcept { return rank_; }
  std::size_t size() const noexcept { return bytes_.size(); }
  bool empty() const noexcept { return bytes_.empty(); }
  const std::uint8_t* data() const noexcept { return bytes_.data(); }
  std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }

  /// The mask as a read-only tensor view of its bytes.
  tensor_ref<const std::uint8_t> ref() const { return {bytes_.data(), shape()}; }

  std::size_t count_kept() const noexcept {
    std::size_t c = 0;
    for (std::uint8_t b : bytes_) c += b;
    return c;
  }
  std::size_t count_pruned() const noexcept { return size() - count_kept(); }
  /// Fraction of pruned elements (0 for an empty mask).
  double sparsity() const noexcept {
    return empty() ? 0.0 : static_cast<double>(count_pruned()) / static_cast<double>(size());
  }

  /// Adopts bytes that spruce itself produced (each 0 or 1 by construction), skipping the
  /// validation pass of the public constructor; only the size is checked.
  static mask adopt(std::span<const std::size_t> shape, byte_buffer bytes) {
    if (bytes.size() != checked_size(shape))
      throw error("mask bytes: " + std::to_string(bytes.size()) + " given for shape " +
                  shape_string(shape) + "; pass one byte per element");
    return mask(shape, std::move(bytes), no_check{});
  }

  friend bool operator==(const mask& a, const mask& b) {
    return std::ranges::equal(a.shape(), b.shape()) && a.bytes_ == b.bytes_;
  }

 private:
  struct no_check {};
  mask(std::span<const std::size_t> shape, byte_buffer bytes, no_check)
      : rank_(shape.size()), bytes_(std::move(bytes)) {
    if (rank_ > max_rank)
      throw error("mask rank " + std::to_string(rank_) + " exceeds " + std::to_string(max_rank) +
                  "; spruce tensors have rank 1 to 8 (reshape the tensor)");
    std::copy(shape.begin(), shape.end(), shape_.begin());
  }
  static std::size_t checked_size(std::span<const std::size_t> shape) {
    std::size_t n = 1;
    for (std::size_t e : shape) n *= e;
    return shape.empty() ? 0 : n;
  }

  std::array<std::size_t, max_rank> shape_{};
  std::size_t rank_ = 0;
  byte_buffer bytes_;
};

namespace detail {

template <class T, class U, class Space = host_space>
void check_same_shape(const tensor_ref<T, Space>& w, std::span<const std::size_t> other,
                      const std::string& what, const std::string& name) {
  if (!std::ranges::equal(w.shape(), other))
    throw error(what + " of shape " + shape_string(other) + " does not match " +
                tensor_label(name) + " of shape " + shape_string(w.shape()) +
                "; pass one computed for this tensor");
}

}  // namespace detail

/// The backend that applies keep masks to tensors in memory space `Space`, and the mask
/// type of that space (`mask_type`: a mask lives in the space of its tensor). The host
/// backend is below; the CUDA layer specialises it for cuda_space (cuda::device_mask), so
/// the primary template only says which header is missing.
template <class Space>
struct mask_backend {
  static_assert(sizeof(Space) == 0,
                "spruce::apply_mask: no mask backend for this memory space. For cuda_space views "
                "include <spruce/cuda.hpp> from a file compiled by nvcc, or copy the tensor to host "
                "memory.");
};

template <>
struct mask_backend<host_space> {
  using mask_type = mask;
  template <class T>
  static void apply(const tensor_ref<T>& w, const mask& m, const std::string& name) {
    detail::check_same_shape<T, std::uint8_t>(w, m.shape(), "mask", name);
    detail::apply_keep(w, m.data());
  }
};

/// The keep-mask type for tensors in memory space `Space` (spruce::mask on the host).
template <class Space>
using mask_t = typename mask_backend<Space>::mask_type;

/// Zeroes the elements of `w` whose mask byte is 0 (sets them to +0). `w` may be any view,
/// strided included, with a mask of its own space (spruce::mask for host views,
/// cuda::device_mask for cuda_space ones); use it on weights after an optimizer step and on
/// gradients to keep pruned weights at zero. Throws spruce::error, leaving `w` untouched,
/// when the shapes differ.
template <any_view V>
void apply_mask(const V& w, const mask_t<view_space_t<V>>& m, const std::string& name = {}) {
  static_assert(mutable_view<V>, "spruce::apply_mask writes to the tensor: pass a mutable view");
  mask_backend<view_space_t<V>>::apply(to_ref(w), m, name);
}

}  // namespace spruce
