#pragma once
// spruce's CUDA layer (opt-in; include from a file compiled by nvcc): device buffers,
// views and copies, and the device backends of magnitude_mask / magnitude_prune,
// apply_mask, n_m_mask / n_m_prune and count_nonzero / sparsity, so those spruce::
// functions take cuda_space views and return device masks with the CPU's bytes; plus
// device selection (cuda::kth_smallest, cuda::lowest_mask), CSR compression and cuSPARSE
// products. Link CUDA::cudart and CUDA::cusparse.

#if !defined(__CUDACC__)
#error "<spruce/cuda.hpp> needs nvcc: include it from a .cu file (the host API is <spruce/spruce.hpp>)"
#endif

#include "spruce/spruce.hpp"

#include "spruce/cuda/error.hpp"
#include "spruce/cuda/global.hpp"
#include "spruce/cuda/memory.hpp"
#include "spruce/cuda/prune.hpp"
#include "spruce/cuda/pruner.hpp"
#include "spruce/cuda/select.hpp"
#include "spruce/cuda/sparse.hpp"
