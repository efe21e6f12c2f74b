// Selection and the fine-grained magnitude mask at 1e5, 1e6 and 1e7 elements: spruce beside
// the std::nth_element route (abs copy + nth_element + compare) and a memcpy of the same
// bytes, in one process so that ratios come from one run.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "spruce/spruce.hpp"
#include "bench_common.hpp"

namespace {

using spruce_bench::run;
using spruce_bench::weights;

constexpr double sparsity = 0.7;




// Candidate: score (|w| fused into the key), select, write the byte mask; the threshold
// rule (ties pruned together) or the exact rule (ties by lower index).
template <spruce::select::tie_break Ties>
void mask_spruce(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto& w = weights(n);
  const std::size_t count = spruce::count_from_ratio(sparsity, n);
  run(st, n, [&] {
    auto m = spruce::select::lowest_mask<spruce::select::by_magnitude>(w, count, Ties);
    benchmark::DoNotOptimize(m.data());
  });
}

// The count-th smallest |w| the way a direct port of the lab finds it: abs copy, then
// std::nth_element.
float nth_element_threshold(const std::vector<float>& w, std::size_t count) {
  std::vector<float> a(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) a[i] = std::abs(w[i]);
  std::nth_element(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(count - 1), a.end());
  return a[count - 1];
}

// Baseline: what a C++ port of the lab does: abs copy, nth_element, compare.
void threshold_mask_nth_element(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto& w = weights(n);
  const std::size_t count = spruce::count_from_ratio(sparsity, n);
  run(st, n, [&] {
    const float t = nth_element_threshold(w, count);
    std::vector<std::uint8_t> m(n);
    for (std::size_t i = 0; i < n; ++i) m[i] = std::abs(w[i]) > t;
    benchmark::DoNotOptimize(m.data());
  });
}

// The bandwidth ceiling: copying the weights once.
void threshold_mask_memcpy(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto& w = weights(n);
  std::vector<float> dst(n);
  run(st, n, [&] {
    std::memcpy(dst.data(), w.data(), n * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  });
}

void kth_spruce(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto& w = weights(n);
  const std::size_t count = spruce::count_from_ratio(sparsity, n);
  run(st, n, [&] {
    auto r = spruce::select::kth_smallest<spruce::select::by_magnitude>(w, count);
    benchmark::DoNotOptimize(r);
  });
}

void kth_nth_element(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  const auto& w = weights(n);
  const std::size_t count = spruce::count_from_ratio(sparsity, n);
  run(st, n, [&] { benchmark::DoNotOptimize(nth_element_threshold(w, count)); });
}

}  // namespace

// Size-major order, memcpy first: the data is generated once per size and every variant
// at that size then runs on the same warm data, one after another.
int main(int argc, char** argv) {
  struct variant {
    const char* name;
    void (*fn)(benchmark::State&);
  };
  const variant variants[] = {{"threshold_mask/memcpy", threshold_mask_memcpy},
                              {"threshold_mask/spruce", mask_spruce<spruce::select::tie_break::all_equal>},
                              {"threshold_mask/spruce_exact", mask_spruce<spruce::select::tie_break::lower_index>},
                              {"threshold_mask/nth_element", threshold_mask_nth_element},
                              {"kth/spruce", kth_spruce},
                              {"kth/nth_element", kth_nth_element}};
  for (std::int64_t n : {100000, 1000000, 10000000})
    for (const auto& v : variants)
      benchmark::RegisterBenchmark(v.name, v.fn)->Arg(n)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
