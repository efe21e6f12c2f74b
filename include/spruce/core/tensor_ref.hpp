#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_view.hpp"

namespace spruce {

/// A view whose rank is a run-time value (1 to max_rank): what a set of named tensors of
/// different ranks (a model's parameters) is made of. It is built implicitly from any
/// `tensor_view` of the same element type and memory space and, like it, owns nothing.
template <class T, class Space = host_space>
class tensor_ref {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using index_type = std::size_t;
  using memory_space = Space;

  constexpr tensor_ref() noexcept = default;

  template <class U, class E, class L>
    requires std::is_convertible_v<U (*)[], T (*)[]>
  constexpr tensor_ref(const tensor_view<U, E, L, Space>& v) noexcept  // NOLINT: implicit by design
      : p_(v.data_handle()), rank_(E::rank()) {
    for (std::size_t r = 0; r < rank_; ++r) {
      e_[r] = v.extent(r);
      s_[r] = v.stride(r);
    }
  }

  /// Row-major (or, with `strides`, strided) view of `p` with a run-time shape. Throws
  /// spruce::error for a rank outside [1, max_rank], a strides list of another length, or
  /// a null pointer with a non-zero size.
  tensor_ref(T* p, std::span<const index_type> shape, std::span<const index_type> strides = {})
      : p_(p), rank_(shape.size()) {
    if (rank_ == 0 || rank_ > max_rank)
      throw error("tensor rank " + std::to_string(rank_) + " is not supported; spruce views have "
                  "rank 1 to " + std::to_string(max_rank) + " (reshape the tensor)");
    if (!strides.empty() && strides.size() != rank_)
      throw error("shape " + shape_string(shape) + " has rank " + std::to_string(rank_) + " but " +
                  std::to_string(strides.size()) + " strides were given; pass one per axis");
    index_type run = 1;
    for (std::size_t r = rank_; r-- > 0;) {
      e_[r] = shape[r];
      s_[r] = strides.empty() ? run : strides[r];
      run *= shape[r];
    }
    if (p == nullptr && size() != 0)
      throw error("null data pointer for a tensor of shape " + shape_string(shape) +
                  "; pass the tensor's storage");
  }

  /// A view of non-const elements converts to a view of const ones.
  template <class U>
    requires(!std::is_same_v<U, T> && std::is_convertible_v<U (*)[], T (*)[]>)
  constexpr tensor_ref(const tensor_ref<U, Space>& o) noexcept  // NOLINT: implicit by design
      : p_(o.data()), rank_(o.rank()) {
    for (std::size_t r = 0; r < rank_; ++r) {
      e_[r] = o.extent(r);
      s_[r] = o.stride(r);
    }
  }

  constexpr T* data() const noexcept { return p_; }
  constexpr std::size_t rank() const noexcept { return rank_; }
  constexpr index_type extent(std::size_t r) const noexcept { return e_[r]; }
  constexpr index_type stride(std::size_t r) const noexcept { return s_[r]; }
  constexpr std::span<const index_type> shape() const noexcept { return {e_.data(), rank_}; }
  constexpr std::span<const index_type> strides() const noexcept { return {s_.data(), rank_}; }

  constexpr index_type size() const noexcept {
    if (rank_ == 0) return 0;
    index_type n = 1;
    for (std::size_t r = 0; r < rank_; ++r) n *= e_[r];
    return n;
  }
  constexpr bool empty() const noexcept { return size() == 0; }

  /// True when element with flat row-major index i lives at data()[i].
  constexpr bool is_contiguous() const noexcept {
    if (empty()) return true;  // nothing can be misplaced
    index_type expect = 1;
    for (std::size_t r = rank_; r-- > 0;) {
      if (e_[r] != 1 && s_[r] != expect) return false;
      expect *= e_[r];
    }
    return true;
  }

  /// Offset of the element with flat row-major index `flat` (slow path for strided refs).
  constexpr index_type offset_of(index_type flat) const noexcept {
    index_type off = 0;
    for (std::size_t r = rank_; r-- > 0;) {
      off += (flat % e_[r]) * s_[r];
      flat /= e_[r];
    }
    return off;
  }

  /// Same shape (extents), whatever the strides.
  template <class U>
  constexpr bool same_shape(const tensor_ref<U, Space>& o) const noexcept {
    if (rank_ != o.rank()) return false;
    for (std::size_t r = 0; r < rank_; ++r)
      if (e_[r] != o.extent(r)) return false;
    return true;
  }

 private:
  T* p_ = nullptr;
  std::size_t rank_ = 0;
  std::array<index_type, max_rank> e_{};
  std::array<index_type, max_rank> s_{};
};

template <class U, class E, class L, class S>
tensor_ref(const tensor_view<U, E, L, S>&) -> tensor_ref<U, S>;

/// A parameter of a model as spruce sees it: a name (`backbone.conv0.weight`) and a view.
template <class T, class Space = host_space>
struct named_tensor {
  std::string name;
  tensor_ref<T, Space> view;
};

}  // namespace spruce
