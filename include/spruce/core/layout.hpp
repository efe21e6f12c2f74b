#pragma once

#include <array>
#include <cstddef>
#include <utility>

#include "spruce/core/config.hpp"
#include "spruce/core/extents.hpp"

namespace spruce {

/// Row-major layout policy (C order), shaped like `std::layout_right`: the last index
/// varies fastest and the mapping covers a contiguous block exactly.
struct layout_right {
  template <class Extents>
  class mapping {
   public:
    using extents_type = Extents;
    using index_type = typename Extents::index_type;
    static constexpr std::size_t rank = Extents::rank();

    constexpr mapping() noexcept = default;
    constexpr explicit mapping(const Extents& e) noexcept : e_(e) {}

    SPRUCE_HD constexpr const Extents& extents() const noexcept { return e_; }

    SPRUCE_HD constexpr index_type stride(std::size_t r) const noexcept {
      index_type s = 1;
      for (std::size_t q = r + 1; q < rank; ++q) s *= e_.extent(q);
      return s;
    }

    template <class... I>
    SPRUCE_HD constexpr index_type operator()(I... idx) const noexcept {
      static_assert(sizeof...(I) == rank, "spruce: wrong number of indices for this view");
      const index_type ii[] = {static_cast<index_type>(idx)...};
      index_type off = 0;
      for (std::size_t r = 0; r < rank; ++r) off = off * e_.extent(r) + ii[r];
      return off;
    }

    SPRUCE_HD constexpr index_type required_span_size() const noexcept { return e_.size(); }
    static constexpr bool is_always_exhaustive() noexcept { return true; }
    SPRUCE_HD constexpr bool is_exhaustive() const noexcept { return true; }
    SPRUCE_HD constexpr bool is_unique() const noexcept { return true; }

   private:
    Extents e_{};
  };
};

/// Arbitrary-stride layout policy, shaped like `std::layout_stride`: offset = sum of
/// index * stride (strides in elements). Used for transposes, slices, column-major Eigen
/// matrices and anything else that is not plain row-major.
struct layout_stride {
  template <class Extents>
  class mapping {
   public:
    using extents_type = Extents;
    using index_type = typename Extents::index_type;
    static constexpr std::size_t rank = Extents::rank();

    constexpr mapping() noexcept = default;
    constexpr mapping(const Extents& e, const std::array<index_type, rank>& s) noexcept : e_(e) {
      for (std::size_t r = 0; r < rank; ++r) s_[r] = s[r];
    }
    /// Any row-major mapping is also a strided one.
    constexpr mapping(const layout_right::mapping<Extents>& m) noexcept : e_(m.extents()) {
      for (std::size_t r = 0; r < rank; ++r) s_[r] = m.stride(r);
    }

    SPRUCE_HD constexpr const Extents& extents() const noexcept { return e_; }
    SPRUCE_HD constexpr index_type stride(std::size_t r) const noexcept { return s_[r]; }
    /// The strides as a std::array (a copy).
    constexpr std::array<index_type, rank> strides() const noexcept {
      std::array<index_type, rank> a{};
      for (std::size_t r = 0; r < rank; ++r) a[r] = s_[r];
      return a;
    }

    template <class... I>
    SPRUCE_HD constexpr index_type operator()(I... idx) const noexcept {
      static_assert(sizeof...(I) == rank, "spruce: wrong number of indices for this view");
      const index_type ii[] = {static_cast<index_type>(idx)...};
      index_type off = 0;
      for (std::size_t r = 0; r < rank; ++r) off += ii[r] * s_[r];
      return off;
    }

    /// One past the largest offset the mapping can produce (0 for an empty view).
    SPRUCE_HD constexpr index_type required_span_size() const noexcept {
      index_type last = 0;
      for (std::size_t r = 0; r < rank; ++r) {
        if (e_.extent(r) == 0) return 0;
        last += (e_.extent(r) - 1) * s_[r];
      }
      return last + 1;
    }
    static constexpr bool is_always_exhaustive() noexcept { return false; }
    /// True when the strides are exactly row-major (extents of 1 may carry any stride):
    /// the flat row-major index then equals the offset, and kernels take the flat path.
    SPRUCE_HD constexpr bool is_row_major_contiguous() const noexcept {
      if (e_.size() == 0) return true;  // an empty view has nothing to misplace
      index_type expect = 1;
      for (std::size_t r = rank; r-- > 0;) {
        if (e_.extent(r) != 1 && s_[r] != expect) return false;
        expect *= e_.extent(r);
      }
      return true;
    }
    SPRUCE_HD constexpr bool is_exhaustive() const noexcept {
      return required_span_size() == e_.size();
    }

   private:
    Extents e_{};
    index_type s_[rank]{};  // a plain array: device code reads it (see extents)
  };
};

}  // namespace spruce
