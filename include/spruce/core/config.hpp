#pragma once

/// SPRUCE_HD marks kernel bodies that the CPU and CUDA backends share: `__host__
/// __device__` under nvcc, plain `inline` elsewhere, so the CPU tests exercise the same
/// arithmetic the GPU runs.
#if defined(__CUDACC__)
#define SPRUCE_HD __host__ __device__ inline
#else
#define SPRUCE_HD inline
#endif

/// SPRUCE_HAS_OPENMP is 1 when the translation unit is compiled with OpenMP. It only
/// decides whether kernels fork threads; results are identical either way.
#if defined(_OPENMP)
#define SPRUCE_HAS_OPENMP 1
#else
#define SPRUCE_HAS_OPENMP 0
#endif

namespace spruce::detail {

/// std::bit_cast for the shared kernel bodies: std::bit_cast is a host-only constexpr
/// function under nvcc, the builtin behind it works in host and device code alike.
template <class To, class From>
SPRUCE_HD constexpr To bit_cast(const From& x) noexcept {
  static_assert(sizeof(To) == sizeof(From), "spruce::detail::bit_cast: sizes differ");
  return __builtin_bit_cast(To, x);
}

}  // namespace spruce::detail
