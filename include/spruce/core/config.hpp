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
