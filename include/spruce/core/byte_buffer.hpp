#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace spruce {

namespace detail {

/// An allocator whose value-less construct() default-initialises: resizing a vector of
/// bytes leaves them unwritten instead of zeroing memory that a kernel overwrites next
/// (a 10 MB memset is a tenth of a 10^7-element mask computation).
template <class T, class A = std::allocator<T>>
struct default_init_allocator : A {
  using A::A;
  template <class U>
  struct rebind {
    using other = default_init_allocator<U, typename std::allocator_traits<A>::template rebind_alloc<U>>;
  };
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    std::allocator_traits<A>::construct(static_cast<A&>(*this), p, std::forward<Args>(args)...);
  }
};

}  // namespace detail

/// Contiguous bytes for masks: a std::vector whose resize(n) does not zero the bytes.
using byte_buffer = std::vector<std::uint8_t, detail::default_init_allocator<std::uint8_t>>;

}  // namespace spruce
