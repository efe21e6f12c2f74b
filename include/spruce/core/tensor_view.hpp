#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <type_traits>

#include "spruce/core/config.hpp"
#include "spruce/core/extents.hpp"
#include "spruce/core/layout.hpp"
#include "spruce/core/memory_space.hpp"

namespace spruce {

/// A non-owning view of a tensor, shaped like `std::mdspan`: an element type, run-time
/// extents of a compile-time rank, a layout policy (`layout_right` or `layout_stride`)
/// and a memory-space tag (`host_space` or `cuda_space`). It never copies or owns memory;
/// adapt foreign containers with `make_view` (see make_view.hpp, eigen.hpp, xtensor.hpp).
/// Index with `v(i, j, ...)`; the logical ("flat") order of elements is always row-major,
/// whatever the layout, and masks use that order.
template <class T, class Extents, class Layout = layout_right, class Space = host_space>
class tensor_view {
  static_assert(is_memory_space_v<Space>, "spruce::tensor_view: Space must be a memory-space tag");

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using extents_type = Extents;
  using layout_type = Layout;
  using mapping_type = typename Layout::template mapping<Extents>;
  using memory_space = Space;
  using index_type = typename Extents::index_type;
  using data_handle_type = T*;
  using reference = T&;

  SPRUCE_HD static constexpr std::size_t rank() noexcept { return Extents::rank(); }

  constexpr tensor_view() noexcept = default;
  constexpr tensor_view(T* p, const mapping_type& m) noexcept : p_(p), m_(m) {}
  constexpr tensor_view(T* p, const Extents& e) noexcept
    requires std::same_as<Layout, layout_right>
      : p_(p), m_(e) {}

  /// A view of non-const elements converts to a view of const ones, and a row-major view
  /// converts to a strided one.
  template <class U, class L2>
    requires(std::is_convertible_v<U (*)[], T (*)[]> &&
             std::is_constructible_v<mapping_type,
                                     const typename L2::template mapping<Extents>&>)
  constexpr tensor_view(const tensor_view<U, Extents, L2, Space>& o) noexcept
      : p_(o.data_handle()), m_(o.mapping()) {}

  SPRUCE_HD constexpr T* data_handle() const noexcept { return p_; }
  SPRUCE_HD constexpr const mapping_type& mapping() const noexcept { return m_; }
  SPRUCE_HD constexpr const Extents& extents() const noexcept { return m_.extents(); }
  SPRUCE_HD constexpr index_type extent(std::size_t r) const noexcept {
    return m_.extents().extent(r);
  }
  SPRUCE_HD constexpr index_type stride(std::size_t r) const noexcept { return m_.stride(r); }
  SPRUCE_HD constexpr index_type size() const noexcept { return m_.extents().size(); }
  SPRUCE_HD constexpr bool empty() const noexcept { return size() == 0; }
  SPRUCE_HD constexpr bool is_exhaustive() const noexcept { return m_.is_exhaustive(); }

  /// True when element (i0, ..., in) lives at data_handle()[flat row-major index], i.e.
  /// kernels may treat the view as one contiguous array.
  SPRUCE_HD constexpr bool is_contiguous() const noexcept {
    if constexpr (std::same_as<Layout, layout_right>) {
      return true;
    } else {
      return m_.is_row_major_contiguous();
    }
  }

  template <std::integral... I>
  SPRUCE_HD constexpr reference operator()(I... idx) const noexcept {
    static_assert(sizeof...(I) == rank(), "spruce: wrong number of indices for this view");
    return p_[m_(idx...)];
  }

  /// The shape as an array (handy for messages and for building other views).
  constexpr std::array<index_type, rank()> shape() const noexcept {
    return m_.extents().array();
  }

 private:
  T* p_ = nullptr;
  mapping_type m_{};
};

/// Row-major host view of rank R: the common case.
template <class T, std::size_t R>
using view = tensor_view<T, extents<R>, layout_right, host_space>;

/// Strided host view of rank R.
template <class T, std::size_t R>
using strided_view = tensor_view<T, extents<R>, layout_stride, host_space>;

template <class V>
inline constexpr bool is_tensor_view_v = false;
template <class T, class E, class L, class S>
inline constexpr bool is_tensor_view_v<tensor_view<T, E, L, S>> = true;

/// Anything spruce accepts as a tensor view.
template <class V>
concept tensor_view_like = is_tensor_view_v<std::remove_cvref_t<V>>;

/// A tensor view whose elements live in host memory.
template <class V>
concept host_tensor_view = tensor_view_like<V> &&
    std::same_as<typename std::remove_cvref_t<V>::memory_space, host_space>;

}  // namespace spruce
