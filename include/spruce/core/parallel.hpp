#pragma once

#include <cstddef>
#include <utility>

#include "spruce/core/config.hpp"

#if SPRUCE_HAS_OPENMP
#include <omp.h>
#endif

namespace spruce {

/// Below this many elements a kernel runs on the calling thread: forking a team costs a
/// few microseconds, which is more than a memory-bound pass over 32 K floats.
inline constexpr std::size_t parallel_threshold = std::size_t{1} << 15;

/// Upper bound on the number of chunks `parallel_chunks` hands out; size per-chunk
/// scratch (histograms, counters) with it.
inline int max_threads() noexcept {
#if SPRUCE_HAS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Splits [0, n) into one contiguous chunk per thread, in order, and calls
/// `f(chunk, chunk_count, begin, end)` once per chunk, concurrently (OpenMP) when n is at
/// least `min_parallel`. Chunk c always precedes chunk c + 1, so per-chunk results combine
/// in index order (the exact-k tie-break relies on it). `f` must not throw: an exception
/// cannot cross an OpenMP region, so record failures and report them after the call.
template <class F>
void parallel_chunks(std::size_t n, F&& f, std::size_t min_parallel = parallel_threshold) {
#if SPRUCE_HAS_OPENMP
  // Called from inside a parallel region (a caller's own OpenMP loop), the work stays on
  // the calling thread rather than nesting a team.
  if (n >= min_parallel && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
    {
      const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
      const std::size_t nt = static_cast<std::size_t>(omp_get_num_threads());
      // Divide first: n * t could overflow for very large n.
      const std::size_t q = n / nt, r = n % nt;
      const std::size_t b = t * q + (t < r ? t : r);
      const std::size_t e = b + q + (t < r ? 1 : 0);
      f(t, nt, b, e);
    }
    return;
  }
#endif
  (void)min_parallel;
  f(std::size_t{0}, std::size_t{1}, std::size_t{0}, n);
}

/// Calls `f(i)` for every i in [begin, end), split statically across the threads when the
/// range is large. `f` must not throw.
template <class F>
void parallel_for(std::size_t begin, std::size_t end, F&& f,
                  std::size_t min_parallel = parallel_threshold) {
  if (end <= begin) return;
  parallel_chunks(end - begin, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
    for (std::size_t i = begin + b; i < begin + e; ++i) f(i);
  }, min_parallel);
}

/// The total work of a loop (elements touched), for loops whose iteration count says
/// little about it (a few long rows, many tiny ones): the overloads below take it in place
/// of `min_parallel` and go parallel when it reaches `parallel_threshold` and there are at
/// least two iterations to split.
struct total_work {
  std::size_t elements = 0;
};

template <class F>
void parallel_chunks(std::size_t n, F&& f, total_work w) {
  parallel_chunks(n, std::forward<F>(f), w.elements >= parallel_threshold ? std::size_t{2} : n + 1);
}

template <class F>
void parallel_for(std::size_t begin, std::size_t end, F&& f, total_work w) {
  const std::size_t n = end > begin ? end - begin : 0;
  parallel_for(begin, end, std::forward<F>(f), w.elements >= parallel_threshold ? std::size_t{2} : n + 1);
}

}  // namespace spruce
