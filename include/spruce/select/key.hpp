#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "spruce/core/config.hpp"

namespace spruce::select {

/// Unsigned integer with the same width as the score type: selection works on these
/// keys, whose unsigned order is the order of the scores, so a radix pass can bucket them.
template <class T>
struct key_traits;
template <>
struct key_traits<float> {
  using key_type = std::uint32_t;
};
template <>
struct key_traits<double> {
  using key_type = std::uint64_t;
};

namespace detail {
/// The sign bit and the bits of +inf of T, as keys.
template <class T>
struct float_bits {
  using key_type = typename key_traits<T>::key_type;
  static constexpr key_type sign = key_type{1} << (sizeof(T) * 8 - 1);
  // +inf: every exponent bit set, mantissa clear (IEEE 754 binary32 / binary64).
  static constexpr key_type inf = sizeof(T) == 4 ? key_type(0x7F800000u) : key_type(0x7FF0000000000000ull);
};
}  // namespace detail

template <class T>
using key_t = typename key_traits<T>::key_type;

template <class T>
concept score_type = std::is_same_v<T, float> || std::is_same_v<T, double>;

/// Orders scores by value: -inf < ... < -0 == +0 < ... < +inf. Signed zeros share one key
/// (a score of -0 and one of +0 tie, as `<=` says they do). NaN maps outside
/// [min_key, max_key], which is how the kernels detect it.
template <score_type T>
struct by_value : private detail::float_bits<T> {
  using value_type = T;
  using key_type = key_t<T>;
  using detail::float_bits<T>::sign;

  SPRUCE_HD static constexpr key_type key(T x) noexcept {
    key_type b = spruce::detail::bit_cast<key_type>(x);
    if ((b & ~sign) == 0) b = 0;  // -0 -> +0
    return (b & sign) ? ~b : (b | sign);
  }
  SPRUCE_HD static constexpr T value(key_type k) noexcept {
    return spruce::detail::bit_cast<T>((k & sign) ? (k & ~sign) : ~k);
  }
  static constexpr key_type min_key = ~(detail::float_bits<T>::inf | sign);  // key(-inf)
  static constexpr key_type max_key = detail::float_bits<T>::inf | sign;     // key(+inf)
};

/// Orders scores by magnitude |x| without computing it: clearing the sign bit of an IEEE
/// float gives an integer whose order is the order of |x|. This is the L1 criterion fused
/// into the key, so fine-grained magnitude pruning never materialises a score buffer.
template <score_type T>
struct by_magnitude : private detail::float_bits<T> {
  using value_type = T;
  using key_type = key_t<T>;
  using detail::float_bits<T>::sign;

  SPRUCE_HD static constexpr key_type key(T x) noexcept {
    return spruce::detail::bit_cast<key_type>(x) & ~sign;
  }
  SPRUCE_HD static constexpr T value(key_type k) noexcept { return spruce::detail::bit_cast<T>(k); }
  static constexpr key_type min_key = 0;         // key(0)
  static constexpr key_type max_key = detail::float_bits<T>::inf;  // key(inf)
};

/// A key order: maps a score to an unsigned key and back, and names the valid key range.
template <class O>
concept key_order = requires(typename O::value_type x, typename O::key_type k) {
  { O::key(x) } -> std::same_as<typename O::key_type>;
  { O::value(k) } -> std::same_as<typename O::value_type>;
  O::min_key;
  O::max_key;
};

/// True when `k` is not the key of a NaN. One unsigned compare, so it vectorises.
template <key_order O>
SPRUCE_HD constexpr bool valid_key(typename O::key_type k) noexcept {
  return static_cast<typename O::key_type>(k - O::min_key) <=
         static_cast<typename O::key_type>(O::max_key - O::min_key);
}

}  // namespace spruce::select
