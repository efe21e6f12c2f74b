#pragma once

#include <cstddef>
#include <cstring>

/// SPRUCE_SIMD_ABI names the vector width a translation unit is compiled for. Every
/// function whose body depends on that width (the sparse products and whatever calls them)
/// is declared inside `inline namespace SPRUCE_SIMD_ABI`, so two translation units built
/// with different `-m` flags instantiate differently *named* functions instead of two
/// different bodies of one inline function (an ODR violation the linker resolves silently,
/// possibly to code the running CPU cannot execute). Names in source code do not change:
/// the namespace is inline.
#if defined(__AVX512F__)
#define SPRUCE_SIMD_ABI simd_w64
#elif defined(__AVX__)
#define SPRUCE_SIMD_ABI simd_w32
#else
#define SPRUCE_SIMD_ABI simd_w16
#endif

namespace spruce::detail {
// The width-dependent names themselves live in the namespace too: simd_load<float>'s
// mangled name spells its return type as the dependent `simd_pack<float>::type`, the same
// in every unit whatever its width, so without the namespace an unoptimised build (nothing
// inlined) linked the 32-byte products to a 16-byte load (caught by sparse:odr_simd_abi at -O0).
inline namespace SPRUCE_SIMD_ABI {

/// Bytes of the widest vector register the translation unit is compiled for: 64 with
/// AVX-512, 32 with AVX, 16 otherwise (SSE2 / NEON baseline). The sparse products size
/// their register tiles from it, so the same source is correct everywhere and faster with
/// -march=native.
#if defined(__AVX512F__)
inline constexpr std::size_t simd_bytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t simd_bytes = 32;
#else
inline constexpr std::size_t simd_bytes = 16;
#endif

#if defined(__GNUC__) || defined(__clang__)
/// A register-sized pack of T (GCC/Clang vector extension). Accumulators declared as packs
/// stay in registers; a plain T[16] accumulator is often left on the stack by GCC when the
/// loop around it is not the innermost one.
template <class T>
struct simd_pack {
  typedef T type __attribute__((vector_size(simd_bytes)));
};
template <class T>
using simd = typename simd_pack<T>::type;
#define SPRUCE_HAS_VECTOR_EXTENSIONS 1
#else
#define SPRUCE_HAS_VECTOR_EXTENSIONS 0
#endif

/// Elements of T in one register.
template <class T>
inline constexpr std::size_t simd_lanes = simd_bytes / sizeof(T);

#if SPRUCE_HAS_VECTOR_EXTENSIONS
/// Unaligned load/store of one pack (compiles to a single vector move).
template <class T>
inline simd<T> simd_load(const T* p) noexcept {
  simd<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
inline void simd_store(T* p, const simd<T>& v) noexcept {
  std::memcpy(p, &v, sizeof v);
}
#endif

}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::detail
