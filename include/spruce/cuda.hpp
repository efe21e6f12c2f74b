#pragma once
// spruce's CUDA layer (opt-in; include from a file compiled by nvcc): device buffers,
// views and copies, and the device backends of magnitude_mask / magnitude_prune,
// apply_mask, n_m_mask / n_m_prune, count_nonzero / sparsity, pruner compute / prune and
// global_masks / global_prune, so those spruce:: functions take cuda_space views (and
// ranges of device named tensors) and return device masks with the CPU's bytes; plus
// device selection (cuda::kth_smallest, cuda::lowest_mask), compression into the CSR,
// block-sparse and N:M formats' arrays, cuSPARSE CSR / BSR products, an exact N:M product
// and (only where <cusparseLt.h> is found) cuSPARSELt 2:4 products. Link CUDA::cudart
// and CUDA::cusparse (and cusparseLt when you use sparselt_product).

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
