#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "spruce/core/error.hpp"

namespace spruce::io {

/// The element types of a checkpoint, named as safetensors names them. Only the four
/// floating types are ever pruned (scores computed in float, or double for F64); every
/// other type is carried through byte for byte, which is all a pruner may do with an index
/// buffer or a quantised table.
enum class dtype : std::uint8_t { boolean, u8, i8, u16, i16, f16, bf16, u32, i32, f32, u64, i64, f64, f8_e4m3, f8_e5m2 };

namespace detail {
struct dtype_row {
  dtype d;
  std::string_view name;
  std::size_t size;
};
inline constexpr dtype_row dtype_rows[] = {
    {dtype::boolean, "BOOL", 1}, {dtype::u8, "U8", 1},       {dtype::i8, "I8", 1},
    {dtype::u16, "U16", 2},      {dtype::i16, "I16", 2},     {dtype::f16, "F16", 2},
    {dtype::bf16, "BF16", 2},    {dtype::u32, "U32", 4},     {dtype::i32, "I32", 4},
    {dtype::f32, "F32", 4},      {dtype::u64, "U64", 8},     {dtype::i64, "I64", 8},
    {dtype::f64, "F64", 8},      {dtype::f8_e4m3, "F8_E4M3", 1}, {dtype::f8_e5m2, "F8_E5M2", 1}};
}  // namespace detail

/// The dtype a safetensors header names ("F32", "BF16", ...), or nothing for a name the
/// format does not define (the readers turn that into an error naming the tensor).
constexpr std::optional<dtype> parse_dtype(std::string_view name) noexcept {
  for (const auto& r : detail::dtype_rows)
    if (r.name == name) return r.d;
  return std::nullopt;
}

/// The safetensors name of `d` ("F32").
constexpr std::string_view dtype_name(dtype d) noexcept { return detail::dtype_rows[static_cast<int>(d)].name; }

/// Bytes per element of `d`.
constexpr std::size_t dtype_size(dtype d) noexcept { return detail::dtype_rows[static_cast<int>(d)].size; }

/// True for the dtypes spruce prunes: F16, BF16, F32, F64.
constexpr bool is_prunable(dtype d) noexcept {
  return d == dtype::f16 || d == dtype::bf16 || d == dtype::f32 || d == dtype::f64;
}

/// The exact float value of IEEE binary16 bits `h` (every half is a float: subnormals,
/// infinities and NaN payloads included). Branch-free (three candidate encodings and a
/// select), so a loop over a tensor vectorises: normals re-bias the exponent, subnormals
/// are their integer mantissa times 2^-24 (exact in float), inf / NaN keep the payload.
constexpr float f16_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t mag = h & 0x7FFFu;
  const std::uint32_t normal = (mag << 13) + (std::uint32_t{127 - 15} << 23);
  const std::uint32_t special = 0x7F800000u | ((mag & 0x3FFu) << 13);
  const std::uint32_t tiny = std::bit_cast<std::uint32_t>(static_cast<float>(mag) * 0x1p-24f);
  const std::uint32_t bits = mag >= 0x7C00u ? special : (mag >= 0x400u ? normal : tiny);
  return std::bit_cast<float>(sign | bits);
}

/// `f` rounded to the nearest binary16 (ties to even; overflow to infinity; NaN stays NaN
/// with its payload's top bits), so that f16_to_float followed by this is the identity on
/// all 65536 bit patterns.
constexpr std::uint16_t float_to_f16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t exp = (x >> 23) & 0xFFu;
  std::uint32_t man = x & 0x7FFFFFu;
  if (exp == 0xFF) {
    if (man == 0) return static_cast<std::uint16_t>(sign | 0x7C00u);
    const std::uint16_t m = static_cast<std::uint16_t>(man >> 13);
    return static_cast<std::uint16_t>(sign | 0x7C00u | (m ? m : 0x200u));
  }
  const int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 0x1F) return static_cast<std::uint16_t>(sign | 0x7C00u);
  if (e <= 0) {  // subnormal or zero in half
    if (e < -10) return sign;
    man |= 0x800000u;
    const int shift = 14 - e;  // 24-bit mantissa down to (10 + e) bits
    const std::uint32_t q = man >> shift;
    const std::uint32_t rem = man & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    const std::uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t q = (static_cast<std::uint32_t>(e) << 10) | (man >> 13);
  const std::uint32_t rem = man & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // may carry into the exponent: correct
  return static_cast<std::uint16_t>(sign | q);
}

/// The exact float value of bfloat16 bits `b` (the top half of a binary32).
constexpr float bf16_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// `f` rounded to the nearest bfloat16 (ties to even); NaN stays a (quiet) NaN, so that
/// bf16_to_float followed by this is the identity on every non-NaN pattern and on NaN
/// patterns with a payload in the top bits.
constexpr std::uint16_t float_to_bf16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) {
    const std::uint16_t t = static_cast<std::uint16_t>(x >> 16);
    return (t & 0x7Fu) ? t : static_cast<std::uint16_t>(t | 0x40u);
  }
  const std::uint32_t r = x + 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(r >> 16);
}

namespace detail {
/// The bytes of `u` in reverse order (std::byteswap is C++23).
template <class U>
constexpr U byte_swap(U u) noexcept {
  U r = 0;
  for (std::size_t k = 0; k < sizeof(U); ++k) r = static_cast<U>((r << 8) | ((u >> (8 * k)) & 0xFFu));
  return r;
}
}  // namespace detail

/// Reads element `i` of a buffer of `d` (F16, BF16, F32 or F64) as T, byte-swapping when
/// `swap` (a big-endian .npy on a little-endian host). Exact for every value T can hold.
template <class T>
inline T load_element(dtype d, const std::byte* p, std::size_t i, bool swap = false) noexcept {
  auto get = [&](auto tag) {
    using U = decltype(tag);
    U u;
    std::memcpy(&u, p + i * sizeof(U), sizeof(U));
    if (swap) u = detail::byte_swap(u);
    return u;
  };
  switch (d) {
    case dtype::f16: return static_cast<T>(f16_to_float(get(std::uint16_t{})));
    case dtype::bf16: return static_cast<T>(bf16_to_float(get(std::uint16_t{})));
    case dtype::f32: return static_cast<T>(std::bit_cast<float>(get(std::uint32_t{})));
    case dtype::f64: return static_cast<T>(std::bit_cast<double>(get(std::uint64_t{})));
    default: return T(0);
  }
}

/// Converts `n` elements of `d` at `src` to T at `out` (see load_element); throws
/// spruce::error naming `what` for a dtype that is not floating.
template <class T>
void to_values(dtype d, const std::byte* src, std::size_t n, T* out, bool swap = false,
               const std::string& what = "the tensor") {
  if (!is_prunable(d))
    throw error(what + " has dtype " + std::string(dtype_name(d)) +
                ", which has no floating value; only F16, BF16, F32 and F64 tensors are read as numbers");
  if (!swap && ((d == dtype::f32 && sizeof(T) == 4) || (d == dtype::f64 && sizeof(T) == 8))) {
    if (n) std::memcpy(out, src, n * sizeof(T));
    return;
  }
  // One loop per dtype, so the conversion is not a switch per element.
  auto each = [&](auto tag, auto convert) {
    using U = decltype(tag);
    for (std::size_t i = 0; i < n; ++i) {
      U u;
      std::memcpy(&u, src + i * sizeof(U), sizeof(U));
      if (swap) u = detail::byte_swap(u);
      out[i] = static_cast<T>(convert(u));
    }
  };
  switch (d) {
    case dtype::f16: each(std::uint16_t{}, [](std::uint16_t u) { return f16_to_float(u); }); break;
    case dtype::bf16: each(std::uint16_t{}, [](std::uint16_t u) { return bf16_to_float(u); }); break;
    case dtype::f32: each(std::uint32_t{}, [](std::uint32_t u) { return std::bit_cast<float>(u); }); break;
    default: each(std::uint64_t{}, [](std::uint64_t u) { return std::bit_cast<double>(u); }); break;
  }
}

}  // namespace spruce::io
