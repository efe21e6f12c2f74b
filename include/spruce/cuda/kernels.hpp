#pragma once
// The CUDA kernels: thin grid-stride loops around the SPRUCE_HD bodies of
// cuda/detail/bodies.hpp (which the host tests check index by index against the CPU path).
// Indices are std::size_t throughout, so tensors past 2^31 elements work. Kernels never
// throw and never report through printf: problems (NaN) go to a status word that the host
// reads back before anything user-visible is written.

#include <cuda_runtime.h>

#include <cub/block/block_scan.cuh>

#include <cstddef>
#include <cstdint>

#include "spruce/cuda/detail/bodies.hpp"
#include "spruce/select/key.hpp"

namespace spruce::cuda::detail {

inline constexpr unsigned block_threads = 256;

/// Flat-index loaders: element i of a contiguous or a strided device tensor.
template <class T>
struct contiguous_src {
  const T* p;
  SPRUCE_HD T operator()(std::size_t i) const noexcept { return p[i]; }
};
template <class T>
struct strided_src {
  const T* p;
  strided_shape s;
  SPRUCE_HD T operator()(std::size_t i) const noexcept { return p[offset_of(s, i)]; }
};

/// NaN found by a scan: how many, and the lowest flat index (~0 when none).
struct scan_status {
  unsigned long long nan_count;
  unsigned long long first_nan;
};

/// What a device selection keeps between its kernels, in one allocation (the NaN
/// statuses, one per tensor, live beside it).
template <class Key>
struct select_state {
  radix_plan<Key> plan;
  unsigned long long hist[radix_bins];
};

inline unsigned grid_for(std::size_t n, unsigned per_thread = 1) {
  const std::size_t want = (n + std::size_t{block_threads} * per_thread - 1) / (std::size_t{block_threads} * per_thread);
  return static_cast<unsigned>(want < 1 ? 1 : (want > 65536 ? 65536 : want));
}

__device__ inline std::size_t thread_index() { return std::size_t{blockIdx.x} * blockDim.x + threadIdx.x; }
__device__ inline std::size_t thread_count() { return std::size_t{gridDim.x} * blockDim.x; }

__device__ inline void note_nan(scan_status* st, std::size_t i) {
  atomicAdd(&st->nan_count, 1ull);
  atomicMin(&st->first_nan, static_cast<unsigned long long>(i));
}

template <class Key>
__global__ void select_init_kernel(select_state<Key>* s, unsigned long long rank) {
  for (std::size_t b = threadIdx.x; b < radix_bins; b += blockDim.x) s->hist[b] = 0;
  if (threadIdx.x == 0) {
    s->plan = radix_plan<Key>{};
    s->plan.rank = rank;
  }
}

/// One radix level: histogram of the current digit of the keys that match the plan's
/// prefix. NaN keys never match; the first level also records them in `nan_status` (null
/// on the later levels). A global selection runs it once per tensor and level into the
/// same histogram, each tensor with its own status.
template <class O, class Src>
__global__ void __launch_bounds__(block_threads) histogram_kernel(Src src, std::size_t n, select_state<typename O::key_type>* s,
                                                                  scan_status* nan_status) {
  using Key = typename O::key_type;
  __shared__ unsigned bins[radix_bins];
  for (unsigned b = threadIdx.x; b < radix_bins; b += blockDim.x) bins[b] = 0;
  __syncthreads();
  const radix_plan<Key> plan = s->plan;
  for (std::size_t i = thread_index(); i < n; i += thread_count()) {
    const Key k = O::key(src(i));
    if (!select::valid_key<O>(k)) {
      if (nan_status) note_nan(nan_status, i);
      continue;
    }
    if (plan_matches(plan, k)) atomicAdd(&bins[plan_bin(plan, k)], 1u);
  }
  __syncthreads();
  for (unsigned b = threadIdx.x; b < radix_bins; b += blockDim.x)
    if (bins[b]) atomicAdd(&s->hist[b], static_cast<unsigned long long>(bins[b]));
}

/// Advances the plan (one thread: the same plan_step the host test runs) and clears the
/// histogram for the next level.
template <class Key>
__global__ void plan_step_kernel(select_state<Key>* s) {
  if (threadIdx.x == 0) plan_step(s->plan, s->hist);
  __syncthreads();
  for (std::size_t b = threadIdx.x; b < radix_bins; b += blockDim.x) s->hist[b] = 0;
}

/// Records NaN keys only (a count-0 selection still refuses NaN, as the CPU does).
template <class O, class Src>
__global__ void nan_scan_kernel(Src src, std::size_t n, scan_status* st) {
  for (std::size_t i = thread_index(); i < n; i += thread_count())
    if (!select::valid_key<O>(O::key(src(i)))) note_nan(st, i);
}

template <class Key>
__global__ void status_init_kernel(scan_status* st, std::size_t count = 1) {
  for (std::size_t i = thread_index(); i < count; i += thread_count()) st[i] = scan_status{0, ~0ull};
}

/// Keep bytes when no tie straddles the cut: keep = key > t.
template <class O, class Src>
__global__ void __launch_bounds__(block_threads) mask_kernel(Src src, std::size_t n, typename O::key_type t, std::uint8_t* __restrict__ m) {
  for (std::size_t i = thread_index(); i < n; i += thread_count()) m[i] = keep_of(O::key(src(i)), t, false, 0, 0);
}

inline constexpr unsigned tie_items = 16;                            // per thread
inline constexpr std::size_t tie_tile = std::size_t{block_threads} * tie_items;  // per block
static_assert(tie_tile == tie_tile_size, "the host tests model tiles of tie_tile_size keys");

/// Lower-index ties, pass 1: keys equal to t per tile of tie_tile elements.
template <class O, class Src>
__global__ void __launch_bounds__(block_threads) tie_count_kernel(Src src, std::size_t n, typename O::key_type t, unsigned long long* tile_equal) {
  using block_reduce_scan = cub::BlockScan<unsigned, block_threads>;
  __shared__ typename block_reduce_scan::TempStorage tmp;
  const std::size_t base = std::size_t{blockIdx.x} * tie_tile + std::size_t{threadIdx.x} * tie_items;
  unsigned c = 0;
  for (unsigned j = 0; j < tie_items; ++j) {
    const std::size_t i = base + j;
    if (i < n) c += O::key(src(i)) == t;
  }
  unsigned total = 0;
  block_reduce_scan(tmp).ExclusiveSum(c, c, total);
  if (threadIdx.x == 0) tile_equal[blockIdx.x] = total;
}

/// Lower-index ties, pass 2: with each tile's count of earlier equal keys (an exclusive
/// scan of pass 1) and a block scan inside the tile, every equal key knows how many equal
/// keys precede it in flat order; the first `need` are pruned.
template <class O, class Src>
__global__ void __launch_bounds__(block_threads) tie_mask_kernel(Src src, std::size_t n, typename O::key_type t, const unsigned long long* tile_before,
                                unsigned long long need, std::uint8_t* __restrict__ m) {
  using Key = typename O::key_type;
  using block_scan = cub::BlockScan<unsigned, block_threads>;
  __shared__ typename block_scan::TempStorage tmp;
  const std::size_t base = std::size_t{blockIdx.x} * tie_tile + std::size_t{threadIdx.x} * tie_items;
  Key k[tie_items];
  unsigned c = 0;
  for (unsigned j = 0; j < tie_items; ++j) {
    const std::size_t i = base + j;
    k[j] = i < n ? O::key(src(i)) : Key(0);
    c += i < n && k[j] == t;
  }
  unsigned before = 0;
  block_scan(tmp).ExclusiveSum(c, before);
  unsigned long long seen = tile_before[blockIdx.x] + before;
  for (unsigned j = 0; j < tie_items; ++j) {
    const std::size_t i = base + j;
    if (i >= n) break;
    m[i] = keep_of(k[j], t, true, seen, need);
    seen += k[j] == t;
  }
}

template <class B>
__global__ void fill_kernel(B* m, std::size_t n, B v) {
  for (std::size_t i = thread_index(); i < n; i += thread_count()) m[i] = v;
}

/// w = keep ? w : +0 over a contiguous (shape.rank == 0) or strided weight.
template <class T, bool Contiguous>
__global__ void __launch_bounds__(block_threads) apply_kernel(T* w, strided_shape shape, std::size_t n, const std::uint8_t* __restrict__ keep) {
  for (std::size_t i = thread_index(); i < n; i += thread_count()) {
    T& x = w[Contiguous ? i : offset_of(shape, i)];
    x = apply_one(x, keep[i]);
  }
}

/// Nonzero elements, summed per block and added to *out.
template <class Src>
__global__ void __launch_bounds__(block_threads) count_nonzero_kernel(Src src, std::size_t n, unsigned long long* out) {
  using block_scan = cub::BlockScan<unsigned long long, block_threads>;
  __shared__ typename block_scan::TempStorage tmp;
  unsigned long long c = 0;
  for (std::size_t i = thread_index(); i < n; i += thread_count()) c += nonzero_one(src(i));
  unsigned long long total = 0, ignored = 0;
  block_scan(tmp).ExclusiveSum(c, ignored, total);
  if (threadIdx.x == 0) atomicAdd(out, total);
}

/// Copies a strided tensor into flat row-major order.
template <class T, class Src>
__global__ void gather_kernel(Src src, std::size_t n, T* __restrict__ out) {
  for (std::size_t i = thread_index(); i < n; i += thread_count()) out[i] = src(i);
}

template <class T>
__device__ void n_m_note_nan(const T* w, std::size_t off, std::size_t len, std::size_t stride, scan_status* st) {
  for (std::size_t j = 0; j < len; ++j)
    if (spruce::detail::n_m_abs_key(w[off + j * stride]) > spruce::detail::n_m_key<T>::inf) note_nan(st, off + j * stride);
}

/// N:M keep bytes of a contiguous [outer, axis, inner] weight, one group per thread: full
/// groups run the compile-time ranking network, a short last group the general body.
template <std::size_t N, std::size_t M, class T>
__global__ void __launch_bounds__(block_threads) n_m_fixed_kernel(const T* __restrict__ w, std::uint8_t* __restrict__ k, std::size_t outer, std::size_t axis,
                                 std::size_t inner, scan_status* st) {
  const std::size_t groups = n_m_group_count(outer, axis, inner, M);
  for (std::size_t g = thread_index(); g < groups; g += thread_count()) {
    const n_m_group_at at = inner == 1 && axis % M == 0 ? n_m_group_at{g * M, M, 1} : n_m_group(g, outer, axis, inner, M);
    const std::uint32_t bad = at.len == M ? n_m_group_keep_fixed<N, M>(w + at.offset, k + at.offset, at.stride)
                                          : n_m_group_keep(w + at.offset, k + at.offset, at.len, at.stride, N);
    if (bad) n_m_note_nan(w, at.offset, at.len, at.stride, st);
  }
}

/// N:M keep bytes for a run-time pattern n:m, one group per thread (the general body).
template <class T>
__global__ void __launch_bounds__(block_threads) n_m_general_kernel(const T* __restrict__ w, std::uint8_t* __restrict__ k, std::size_t outer, std::size_t axis,
                                   std::size_t inner, std::size_t n, std::size_t m, scan_status* st) {
  const std::size_t groups = n_m_group_count(outer, axis, inner, m);
  for (std::size_t g = thread_index(); g < groups; g += thread_count()) {
    const n_m_group_at at = n_m_group(g, outer, axis, inner, m);
    if (n_m_group_keep(w + at.offset, k + at.offset, at.len, at.stride, n)) n_m_note_nan(w, at.offset, at.len, at.stride, st);
  }
}

/// CSR compression, pass 1: stored entries per row (thread per row).
template <class Index>
__global__ void csr_count_kernel(const std::uint8_t* __restrict__ keep, std::size_t rows, std::size_t cols, Index* __restrict__ counts) {
  for (std::size_t r = thread_index(); r < rows; r += thread_count())
    counts[r] = static_cast<Index>(csr_row_count(keep + r * cols, cols));
}

/// CSR compression, pass 2: each row writes its slice at row_ptr[row].
template <class T, class Index>
__global__ void csr_write_kernel(const T* __restrict__ dense, const std::uint8_t* __restrict__ keep, std::size_t rows, std::size_t cols,
                                 const Index* __restrict__ row_ptr, Index* __restrict__ col_idx, T* __restrict__ values) {
  for (std::size_t r = thread_index(); r < rows; r += thread_count()) {
    const std::size_t p = static_cast<std::size_t>(row_ptr[r]);
    csr_row_write(dense + r * cols, keep + r * cols, cols, col_idx + p, values + p);
  }
}

/// Block-sparse compression, pass 1: a hit flag per block (thread per block, row-major
/// block order); flag[nblocks] stays 0, so an exclusive scan over nblocks + 1 flags ends
/// with the stored-block count.
template <int = 0>  // a template: a header kernel defined once per program
__global__ void block_flag_kernel(const std::uint8_t* __restrict__ keep, std::size_t rows, std::size_t cols, std::size_t br,
                                         std::size_t bc, std::size_t nbc, std::size_t nblocks, unsigned long long* __restrict__ flag) {
  for (std::size_t b = thread_index(); b <= nblocks; b += thread_count())
    flag[b] = b < nblocks ? block_hit(keep, rows, cols, br, bc, b / nbc, b % nbc) : 0;
}

/// Block-sparse compression, pass 2: every stored block writes its column index and its
/// br * bc values at its scanned position; block row bi starts at at[bi * nbc].
template <class T, class Index>
__global__ void block_write_kernel(const T* __restrict__ dense, const std::uint8_t* __restrict__ keep, std::size_t rows, std::size_t cols,
                                   std::size_t br, std::size_t bc, std::size_t nbr, std::size_t nbc, const unsigned long long* __restrict__ flag,
                                   const unsigned long long* __restrict__ at, Index* __restrict__ row_ptr, Index* __restrict__ col_idx,
                                   T* __restrict__ values) {
  const std::size_t nblocks = nbr * nbc;
  for (std::size_t b = thread_index(); b < nblocks; b += thread_count()) {
    if (b % nbc == 0) row_ptr[b / nbc] = static_cast<Index>(at[b]);
    if (!flag[b]) continue;
    const std::size_t p = static_cast<std::size_t>(at[b]);
    col_idx[p] = static_cast<Index>(b % nbc);
    block_write(dense, keep, rows, cols, br, bc, b / nbc, b % nbc, values + p * br * bc);
  }
  if (thread_index() == 0) row_ptr[nbr] = static_cast<Index>(at[nblocks]);
}

/// N:M compression, check pass: groups keeping more than n are reported (count and the
/// lowest flat group index row * groups + g) through the status word.
template <int = 0>
__global__ void n_m_check_kernel(const std::uint8_t* __restrict__ keep, std::size_t rows, std::size_t cols, std::size_t n,
                                        std::size_t m, scan_status* st) {
  const std::size_t groups = (cols + m - 1) / m;
  for (std::size_t f = thread_index(); f < rows * groups; f += thread_count())
    if (n_m_group_kept(keep + (f / groups) * cols, cols, m, f % groups) > n) note_nan(st, f);
}

/// N:M compression, write pass: one thread per chunk of `step` groups of a row (a chunk
/// starts and ends on a byte of positions, so chunks never share a byte).
template <class T>
__global__ void n_m_write_kernel(const T* __restrict__ dense, const std::uint8_t* __restrict__ keep, std::size_t rows, std::size_t cols,
                                 std::size_t n, std::size_t m, std::size_t bits, std::size_t step, std::size_t row_bytes,
                                 T* __restrict__ values, std::uint8_t* __restrict__ positions) {
  const std::size_t groups = (cols + m - 1) / m, chunks = (groups + step - 1) / step;
  for (std::size_t f = thread_index(); f < rows * chunks; f += thread_count()) {
    const std::size_t i = f / chunks, g0 = (f % chunks) * step, g1 = g0 + step < groups ? g0 + step : groups;
    n_m_write_groups(dense + i * cols, keep + i * cols, cols, n, m, bits, g0, g1, groups, row_bytes, values + i * groups * n,
                     positions + i * row_bytes);
  }
}

/// Exact-FP32 (or FP64) N:M product C = alpha * A * B + beta * C, B [cols, nb] and C [rows,
/// nb] row-major: one thread per output, neighbouring threads on neighbouring columns of B
/// and C (coalesced), the row's values and positions shared by the warp. The inner loop is
/// n_m_dot (its order: see there).
template <class T>
__global__ void __launch_bounds__(block_threads) n_m_spmm_kernel(const T* __restrict__ values, const std::uint8_t* __restrict__ positions,
                                                                std::size_t rows, std::size_t cols, std::size_t n, std::size_t m,
                                                                std::size_t bits, std::size_t row_bytes, const T* __restrict__ b,
                                                                std::size_t nb, T* __restrict__ c, T alpha, T beta) {
  const std::size_t groups = (cols + m - 1) / m;
  for (std::size_t f = thread_index(); f < rows * nb; f += thread_count()) {
    const std::size_t i = f / nb, j = f % nb;
    const T acc = n_m_dot(values + i * groups * n, positions + i * row_bytes, groups, n, m, bits, cols, b, nb, j);
    c[f] = spmm_store_one(acc, alpha, beta, c[f]);
  }
}

}  // namespace spruce::cuda::detail
