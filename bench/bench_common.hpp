#pragma once
// Shared by the benchmark programs: reproducible weights and the timing loop.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace spruce_bench {

/// n Gaussian weights (sigma 0.05, fixed seed), regenerated only when n changes.
inline const std::vector<float>& weights(std::size_t n) {
  static std::vector<float> w;
  if (w.size() != n) {
    w.resize(n);
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0.0f, 0.05f);
    for (float& x : w) x = g(rng);
  }
  return w;
}

/// Times `body` over the benchmark's iterations, after one untimed call: glibc adapts its
/// mmap threshold after the first large free, so without it whichever variant runs first
/// pays page faults on every iteration. Counts n items and 4n bytes per iteration.
template <class F>
void run(benchmark::State& st, std::size_t n, F&& body) {
  body();
  for (auto _ : st) body();
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(n * sizeof(float)));
}

}  // namespace spruce_bench
