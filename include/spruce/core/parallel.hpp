#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "spruce/core/config.hpp"

#if SPRUCE_HAS_OPENMP
#include <omp.h>
#endif

namespace spruce {

/// Below this many elements a kernel runs on the calling thread: waking a helper costs a
/// few microseconds, which is more than a memory-bound pass over 32 K floats.
inline constexpr std::size_t parallel_threshold = std::size_t{1} << 15;

namespace detail {

/// Chunks handed out per thread. More chunks than threads is what makes a kernel tolerate a
/// preempted helper: the threads that run claim the chunks one by one, so a helper that
/// the scheduler parks (another process on its core) holds up at most the chunk it is in,
/// never a fixed half of the work.
inline constexpr std::size_t chunks_per_thread = 4;

/// Threads a kernel may use: OpenMP's `omp_get_max_threads()` (so OMP_NUM_THREADS and
/// omp_set_num_threads keep working) when the translation unit is built with OpenMP, one
/// otherwise.
inline std::size_t kernel_threads() noexcept {
#if SPRUCE_HAS_OPENMP
  const int t = omp_get_max_threads();
  // At most 2^16 - 1 chunks fit the pool's job word.
  return t > 1 ? static_cast<std::size_t>(t < 4096 ? t : 4096) : 1;
#else
  return 1;
#endif
}

/// The helper threads behind `parallel_chunks`. OpenMP's own teams are not used for
/// spruce's kernels: a team ends in a barrier that waits for every member, so one member
/// preempted by another process costs the whole call a scheduler time slice (measured: a
/// 7-tensor prune went from 13 ms to 145-270 ms with one core busy), and a library cannot
/// ask its users to set OMP_WAIT_POLICY. Here the caller works too, chunks are claimed
/// from one atomic word, and the caller only ever waits for chunks a helper has actually
/// started; while it waits it blocks (futex), so the kernel may run the parked helper on
/// the caller's core. Helpers that wake late find nothing left and go back to sleep.
///
/// The pool is created on first use and intentionally never destroyed (no static
/// destruction order problems for kernels called from other static destructors); its
/// threads sleep in the kernel between jobs.
class thread_pool {
 public:
  using job_fn = void (*)(void* ctx, std::size_t chunk);

  static thread_pool& instance() {
    static thread_pool* pool = new thread_pool;  // never destroyed, see above
    return *pool;
  }

  /// Runs job(ctx, c) for every c in [0, chunks) on the caller and up to `threads - 1`
  /// helpers; returns false (having run nothing) when another thread is using the pool,
  /// so the caller runs the chunks itself.
  bool run(std::size_t chunks, std::size_t threads, job_fn job, void* ctx) {
    std::unique_lock<std::mutex> lock(busy_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    grow(threads - 1);
    job_ = job;
    ctx_ = ctx;
    finished_.store(0, std::memory_order_relaxed);
    epoch_ = (epoch_ + 1) & epoch_mask;
    word_.store(pack(epoch_, 0, chunks), std::memory_order_release);
    word_.notify_all();
    work(epoch_);
    // Every chunk has been claimed; wait (blocking) for those still running on helpers.
    for (std::uint64_t f = finished_.load(std::memory_order_acquire); f != chunks;
         f = finished_.load(std::memory_order_acquire))
      finished_.wait(f, std::memory_order_acquire);
    return true;
  }

  /// True on one of the pool's helper threads (a kernel called from inside a chunk).
  static bool on_helper() noexcept { return helper_flag(); }

 private:
  // word_ = epoch (32 bits) | next chunk (16) | chunk count (16).
  static constexpr std::uint64_t epoch_mask = 0xFFFFFFFFu;
  static constexpr std::uint64_t pack(std::uint64_t e, std::uint64_t next, std::uint64_t total) noexcept {
    return e << 32 | next << 16 | total;
  }
  static constexpr std::uint64_t epoch_of(std::uint64_t w) noexcept { return w >> 32; }

  static bool& helper_flag() noexcept {
    static thread_local bool flag = false;
    return flag;
  }

  /// Claims and runs chunks of job `epoch` until none is left (or a newer job appears).
  void work(std::uint64_t epoch) {
    std::uint64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      if (epoch_of(w) != epoch) return;
      const std::uint64_t next = (w >> 16) & 0xFFFFu, total = w & 0xFFFFu;
      if (next >= total) return;
      if (!word_.compare_exchange_weak(w, pack(epoch, next + 1, total), std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        continue;
      // The claim succeeded, so job `epoch` is live: job_ and ctx_ are its own (written
      // before the word was published, and the caller cannot start another job before
      // this chunk is counted as finished).
      job_(ctx_, static_cast<std::size_t>(next));
      if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == total) finished_.notify_all();
      w = word_.load(std::memory_order_acquire);
    }
  }

  void grow(std::size_t helpers) {
    // A thread that cannot be created (a process limit) only means fewer helpers: the
    // caller runs whatever chunks nobody claims.
    try {
      while (threads_.size() < helpers) threads_.emplace_back([this] { helper_loop(); });
    } catch (...) {
    }
  }

  void helper_loop() {
    helper_flag() = true;
    std::uint64_t seen = epoch_of(word_.load(std::memory_order_acquire));
    for (;;) {
      std::uint64_t w = word_.load(std::memory_order_acquire);
      // A short spin catches back-to-back kernels (a selection is several passes) without
      // a sleep and wake-up between them; then sleep in the kernel.
      for (int spin = 0; epoch_of(w) == seen && spin < 4000; ++spin) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        w = word_.load(std::memory_order_acquire);
      }
      while (epoch_of(w) == seen) {
        word_.wait(w, std::memory_order_acquire);
        w = word_.load(std::memory_order_acquire);
      }
      seen = epoch_of(w);
      work(seen);
    }
  }

  std::mutex busy_;
  std::vector<std::thread> threads_;
  std::atomic<std::uint64_t> word_{0};
  std::atomic<std::uint64_t> finished_{0};
  std::uint64_t epoch_ = 0;
  job_fn job_ = nullptr;
  void* ctx_ = nullptr;
};

}  // namespace detail

/// Upper bound on the number of chunks `parallel_chunks` hands out; size per-chunk scratch
/// (histograms, counters) with it. (The name predates chunking finer than threads.)
inline int max_threads() noexcept {
  const std::size_t t = detail::kernel_threads();
  return static_cast<int>(t > 1 ? t * detail::chunks_per_thread : 1);
}

/// Splits [0, n) into contiguous chunks, in order, and calls `f(chunk, chunk_count, begin,
/// end)` once per chunk, on several threads when n is at least `min_parallel`. Chunk c
/// always covers indices before chunk c + 1, so per-chunk results combine in index order
/// (the exact-k tie-break relies on it); chunks may run in any order and concurrently.
/// Called from inside a chunk, from a caller's own OpenMP region, or while another thread
/// is using the helpers, the work stays on the calling thread. `f` must not throw: record
/// failures and report them after the call.
template <class F>
void parallel_chunks(std::size_t n, F&& f, std::size_t min_parallel = parallel_threshold) {
  const std::size_t threads = detail::kernel_threads();
  bool nested = detail::thread_pool::on_helper();
#if SPRUCE_HAS_OPENMP
  nested = nested || omp_in_parallel();
#endif
  if (n >= min_parallel && n >= 2 && threads > 1 && !nested) {
    std::size_t chunks = threads * detail::chunks_per_thread;
    if (chunks > n) chunks = n;
    struct context {
      F* f;
      std::size_t n, chunks;
    } ctx{&f, n, chunks};
    const auto job = [](void* p, std::size_t c) {
      const context& x = *static_cast<const context*>(p);
      // Divide first: n * c could overflow for very large n.
      const std::size_t q = x.n / x.chunks, r = x.n % x.chunks;
      const std::size_t b = c * q + (c < r ? c : r);
      (*x.f)(c, x.chunks, b, b + q + (c < r ? 1 : 0));
    };
    if (detail::thread_pool::instance().run(chunks, threads, job, &ctx)) return;
  }
  (void)min_parallel;
  f(std::size_t{0}, std::size_t{1}, std::size_t{0}, n);
}

/// Calls `f(i)` for every i in [begin, end), split into chunks across the threads when the
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
