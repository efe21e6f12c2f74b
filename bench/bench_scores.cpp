// Group scores of a 512 x 512 x 3 x 3 conv weight (the lab VGG's widest layer): filter and
// channel L2 norms beside a naive loop and a memcpy of the same bytes (the bandwidth
// ceiling: a score pass reads the weight once).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "spruce/spruce.hpp"
#include "bench_common.hpp"

namespace {

constexpr std::size_t out = 512, in = 512, k = 9, n = out * in * k;

const std::vector<float>& weights() {
  static const std::vector<float> w = [] {
    std::vector<float> v(n);
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0.0f, 0.02f);
    for (float& x : v) x = g(rng);
    return v;
  }();
  return w;
}


template <class G>
void scores_spruce(benchmark::State& st) {
  const auto& w = weights();
  const auto v = spruce::make_view(w.data(), out, in, 3, 3);
  const spruce::pruner<G, spruce::criterion::l2, spruce::selection::exact> p{};
  spruce_bench::run(st, n, [&] {
    auto s = p.scores(spruce::criterion::inputs<float>{v}, "conv");
    benchmark::DoNotOptimize(s.data());
  });
}

// Baseline: the obvious loops (one running sum per group).
void filter_naive(benchmark::State& st) {
  const auto& w = weights();
  spruce_bench::run(st, n, [&] {
    std::vector<float> s(out);
    for (std::size_t o = 0; o < out; ++o) {
      float a = 0;
      for (std::size_t i = 0; i < in * k; ++i) a += w[o * in * k + i] * w[o * in * k + i];
      s[o] = std::sqrt(a);
    }
    benchmark::DoNotOptimize(s.data());
  });
}

void channel_naive(benchmark::State& st) {
  const auto& w = weights();
  spruce_bench::run(st, n, [&] {
    std::vector<float> s(in, 0.0f);
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t c = 0; c < in; ++c)
        for (std::size_t j = 0; j < k; ++j) s[c] += w[(o * in + c) * k + j] * w[(o * in + c) * k + j];
    for (float& x : s) x = std::sqrt(x);
    benchmark::DoNotOptimize(s.data());
  });
}

void scores_memcpy(benchmark::State& st) {
  const auto& w = weights();
  std::vector<float> dst(n);
  spruce_bench::run(st, n, [&] {
    std::memcpy(dst.data(), w.data(), n * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  });
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t size = static_cast<std::int64_t>(n);
  auto reg = [&](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->Arg(size)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  reg("filter_l2/memcpy", scores_memcpy);
  reg("filter_l2/spruce", scores_spruce<spruce::granularity::filter>);
  reg("filter_l2/naive", filter_naive);
  reg("channel_l2/memcpy", scores_memcpy);
  reg("channel_l2/spruce", scores_spruce<spruce::granularity::channel>);
  reg("channel_l2/naive", channel_naive);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
