#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "spruce/core/parallel.hpp"
#include "spruce/core/simd.hpp"
#include "spruce/sparse/detail/operands.hpp"

// The one product engine of the sparse formats. Every format's spmm is the same loop: C's
// columns are cut into panels a register tile wide; for each panel, B is packed slice by
// slice (rows of K that fit in a cache level) into a contiguous buffer; every row (or
// block row) of A accumulates its stored values of the slice against the packed rows in
// registers and stores the tile into C. Panels, or panels times row ranges, are split
// between threads. A format supplies only its register kernel (how its values and indices
// walk a packed slice) and how deep a slice should be; the packing, the slicing, the
// scratch, the thread split, the store and the cache knobs are here, once.

#ifndef SPRUCE_SPMM_PANEL_KIB
/// Bytes (KiB) of the packed B slice that must stay in L2 while the rows of A stream over
/// it; the default suits a 512 KiB - 2 MiB L2. Define it before including spruce to tune
/// for another cache: it reaches every format (CSR slices, and block / N:M slices whose
/// rows of B are reused or whose rows of A are sparse).
#define SPRUCE_SPMM_PANEL_KIB 384
#endif

#ifndef SPRUCE_SPMM_L1_SLICE_KIB
/// Bytes (KiB) of a packed B slice that L1 holds with room to spare: the slice a format
/// uses when every FMA loads its own element of B (an N:M row, a 1-row block), which must
/// answer at L1 speed. Define it before including spruce to tune for another L1.
#define SPRUCE_SPMM_L1_SLICE_KIB 32
#endif

namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {
namespace detail {

/// Bytes of a packed slice meant for L1 (SPRUCE_SPMM_L1_SLICE_KIB).
inline constexpr std::size_t l1_slice_bytes = std::size_t{SPRUCE_SPMM_L1_SLICE_KIB} * 1024;

/// Bytes of a packed slice meant for L2 (SPRUCE_SPMM_PANEL_KIB).
inline constexpr std::size_t l2_slice_bytes = std::size_t{SPRUCE_SPMM_PANEL_KIB} * 1024;

/// Vector registers a register tile may use for accumulators: half the register file
/// (32 with AVX-512, 16 otherwise), the rest holding loaded rows of B and broadcasts.
inline constexpr std::size_t tile_registers = spruce::detail::simd_bytes >= 64 ? 16 : 8;

/// The vector width, in bytes, that this translation unit's products are compiled for.
/// Not constexpr on purpose: a call goes through the linker, so a test can tell whether
/// two units built with different `-m` flags kept their own instantiations (the
/// SPRUCE_SIMD_ABI namespace) or were merged into one.
template <class T>
std::size_t compiled_simd_bytes() noexcept {
  return spruce::detail::simd_lanes<T> * sizeof(T);
}

/// Rows of B per packed slice for panels of P elements: L2-sized when a loaded row of B is
/// reused by several rows of A (`reused`); otherwise L1-sized, grown towards the L2 size
/// until a row of A with the given fraction of stored values finds about 32 of them in a
/// slice.
template <class T, std::size_t P>
std::size_t slice_depth(double density, bool reused) noexcept {
  const std::size_t l1 = std::max<std::size_t>(1, l1_slice_bytes / (P * sizeof(T)));
  const std::size_t l2 = std::max(l1, l2_slice_bytes / (P * sizeof(T)));
  if (reused) return l2;
  const double want = 32.0 / std::max(density, 1e-6);
  return want >= static_cast<double>(l2) ? l2 : std::max(l1, static_cast<std::size_t>(want));
}

/// `scratch` rounded up to the next 64-byte boundary (callers over-allocate by
/// cache_align_slack): a register-wide load that straddles two cache lines costs two.
template <class T>
T* cache_aligned(T* scratch) noexcept {
  const auto addr = reinterpret_cast<std::uintptr_t>(scratch);
  return scratch + ((64 - addr % 64) % 64) / sizeof(T);
}

/// Extra elements to allocate so that cache_aligned stays inside the allocation.
template <class T>
inline constexpr std::size_t cache_align_slack = (64 + sizeof(T) - 1) / sizeof(T);

/// The smallest power of two at least x (x >= 1), capped at `cap`.
inline constexpr std::size_t pow2_at_least(std::size_t x, std::size_t cap) noexcept {
  std::size_t p = 1;
  while (p < x && p < cap) p *= 2;
  return p;
}

/// Calls `f(std::integral_constant<std::size_t, W>{})` for the register count `wv` of a
/// panel (1, 2, 4, or 8 for anything larger): the compile-time tile width a format's
/// kernel is instantiated for.
template <class F>
void with_panel_registers(std::size_t wv, F&& f) {
  switch (wv) {
    case 1: return f(std::integral_constant<std::size_t, 1>{});
    case 2: return f(std::integral_constant<std::size_t, 2>{});
    case 4: return f(std::integral_constant<std::size_t, 4>{});
    default: return f(std::integral_constant<std::size_t, 8>{});
  }
}

/// Copies B[k0:k1, j0:j0+len) into `panel` (width P, zero past len) so the product reads
/// one contiguous, cache-resident block whatever B's layout and however its rows alias in
/// the cache (a 4 KiB row stride would map every row to the same L1 set).
template <class T, std::size_t P>
void pack_panel(const dense_operand<const T>& b, std::size_t k0, std::size_t k1, std::size_t j0, std::size_t len,
                T* __restrict panel) {
  if (b.cs == 1) {
    for (std::size_t k = k0; k < k1; ++k) {
      const T* src = b.data + k * b.rs + j0;
      T* dst = panel + (k - k0) * P;
      std::memcpy(dst, src, len * sizeof(T));
      std::fill(dst + len, dst + P, T(0));
    }
  } else {
    if (len < P)
      for (std::size_t k = k0; k < k1; ++k) std::fill(panel + (k - k0) * P + len, panel + (k - k0 + 1) * P, T(0));
    for (std::size_t jj = 0; jj < len; ++jj) {
      const T* src = b.data + (j0 + jj) * b.cs;
      for (std::size_t k = k0; k < k1; ++k) panel[(k - k0) * P + jj] = src[k * b.rs];
    }
  }
}

/// Runs `panel_job(j0, len, row_begin, row_end, scratch)` over every column panel of C,
/// split between threads: whole panels per thread when there are enough of them (each
/// thread keeps its packed B panel to itself), otherwise panels times row ranges. Scratch
/// (`scratch_size` elements per thread) is allocated before the parallel region, so
/// nothing inside it can throw.
template <class T, std::size_t P, class Job>
void for_each_panel(std::size_t rows, std::size_t cols, std::size_t work, std::size_t scratch_size, Job&& panel_job) {
  const std::size_t panels = (cols + P - 1) / P;
  if (panels == 0 || rows == 0) return;
  const bool parallel = work >= (std::size_t{1} << 17) && max_threads() > 1;
  const std::size_t threads = parallel ? static_cast<std::size_t>(max_threads()) : 1;
  const std::size_t row_parts = panels >= threads ? 1 : std::min(rows, (threads + panels - 1) / panels);
  const std::size_t tasks = panels * row_parts;
  std::vector<T> scratch(threads * scratch_size);
  parallel_chunks(tasks, [&](std::size_t t, std::size_t, std::size_t b, std::size_t e) {
    T* mine = scratch.data() + t * scratch_size;
    for (std::size_t task = b; task < e; ++task) {
      const std::size_t q = task / row_parts, r = task % row_parts;
      const std::size_t j0 = q * P;
      panel_job(j0, std::min(P, cols - j0), rows * r / row_parts, rows * (r + 1) / row_parts, mine);
    }
  }, parallel ? 1 : tasks + 1);
}

/// How a format cuts K: B has `k_total` rows; the format addresses `k_padded` of them
/// (k_total rounded up to whole blocks or groups; the rows past k_total read as zero);
/// each slice holds `depth` rows, a whole number of `unit`s (1, the block width, M).
struct slicing {
  std::size_t k_total = 0, k_padded = 0, depth = 1, unit = 1;
  /// Rows of the packed buffer: one slice, no more than the format addresses.
  std::size_t panel_rows() const noexcept { return std::max(unit, std::min(depth, k_padded)); }
  /// Slices of K; at least one, so that K = 0 still writes beta * C.
  std::size_t count() const noexcept { return std::max<std::size_t>(1, (k_padded + depth - 1) / depth); }
};

/// One packed slice of B for one panel of C, as a format's kernel sees it: rows [k0, k1)
/// of B at `panel` (P elements a row, zero past k1 up to the slice's padded end), columns
/// [j0, j0 + len) of C, the rows [r0, r1) of the format's row units that this task
/// covers, the format's own scratch, and `store` for a finished row of accumulators.
template <class T, std::size_t P>
struct panel_slice {
  std::size_t k0, k1, j0, len, r0, r1;
  const T* panel;
  T* scratch;
  bool first;  // the first slice applies beta; later ones add
  const dense_operand<T>* c;
  T alpha, beta;
  /// C[i, j0:j0+len) = alpha * acc (+ beta * C on the first slice, + C on later ones).
  void store(std::size_t i, const T* acc) const { store_panel(*c, i, j0, len, acc, alpha, beta, first); }
};

/// The engine: C = alpha * A * B + beta * C (alpha != 0, operands checked) for a format
/// with `units` row units (rows, or block rows) and `extra` elements of per-thread scratch
/// of its own, `work` its FMA count (decides threading). `job(slice)` adds every row
/// unit in [slice.r0, slice.r1) for one packed slice and stores it; slices of a panel come
/// in order of K on one thread.
template <class T, std::size_t P, class Job>
void panel_product(const dense_operand<const T>& b, const dense_operand<T>& c, T alpha, T beta, const slicing& k,
                   std::size_t units, std::size_t work, std::size_t extra, Job&& job) {
  const std::size_t panel_rows = k.panel_rows(), slices = k.count();
  const std::size_t scratch = panel_rows * P + extra + cache_align_slack<T>;
  for_each_panel<T, P>(units, b.cols, work, scratch,
                       [&](std::size_t j0, std::size_t len, std::size_t r0, std::size_t r1, T* raw) {
    T* panel = cache_aligned(raw);
    for (std::size_t s = 0; s < slices; ++s) {
      const std::size_t k0 = s * k.depth, k1 = std::min(k.k_total, k0 + k.depth);
      const std::size_t padded_end = std::min(k.k_padded, k0 + k.depth);
      pack_panel<T, P>(b, k0, k1, j0, len, panel);
      // Rows a partial last block column or N:M group reaches past the end of B: zeros, so
      // a zero A entry there multiplies zero, never stale data.
      if (padded_end > k1) std::fill(panel + (k1 - k0) * P, panel + (padded_end - k0) * P, T(0));
      job(panel_slice<T, P>{k0, k1, j0, len, r0, r1, panel, panel + panel_rows * P, s == 0, &c, alpha, beta});
    }
  });
}

}  // namespace detail
}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
