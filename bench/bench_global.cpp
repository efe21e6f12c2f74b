// Global exact selection over the lab VGG's nine weight tensors (8 convs + classifier,
// 9.2 M weights): spruce's segmented selection beside concatenate + std::nth_element
// (what a C++ port of torch's global_unstructured does) and a memcpy of the weights.
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

const spruce_bench::vgg_weights& vgg() { return spruce_bench::lab_vgg(); }

void global_spruce(benchmark::State& st) {
  const auto& m = vgg();
  const spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::exact> p{
      {}, {}, spruce::selection::exact(0.5)};
  spruce_bench::run(st, vgg().total, [&] {
    auto masks = spruce::global_masks(p, m.params);
    benchmark::DoNotOptimize(masks.data());
  });
}

// Baseline: concatenate |w|, nth_element, then one mask per tensor.
void global_concat_nth_element(benchmark::State& st) {
  const auto& m = vgg();
  const std::size_t k = spruce::count_from_ratio(0.5, m.total);
  spruce_bench::run(st, vgg().total, [&] {
    std::vector<float> all;
    all.reserve(m.total);
    for (const auto& w : m.data)
      for (float x : w) all.push_back(std::abs(x));
    std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k - 1), all.end());
    const float t = all[k - 1];
    std::vector<std::vector<std::uint8_t>> masks;
    for (const auto& w : m.data) {
      std::vector<std::uint8_t> mk(w.size());
      for (std::size_t i = 0; i < w.size(); ++i) mk[i] = std::abs(w[i]) > t;
      masks.push_back(std::move(mk));
    }
    benchmark::DoNotOptimize(masks.data());
  });
}

void global_memcpy(benchmark::State& st) {
  const auto& m = vgg();
  std::vector<float> dst(m.total);
  spruce_bench::run(st, vgg().total, [&] {
    std::size_t at = 0;
    for (const auto& w : m.data) {
      std::memcpy(dst.data() + at, w.data(), w.size() * sizeof(float));
      at += w.size();
    }
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  });
}

}  // namespace

int main(int argc, char** argv) {
  const auto size = static_cast<std::int64_t>(vgg().total);
  auto reg = [&](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->Arg(size)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  reg("global_exact/memcpy", global_memcpy);
  reg("global_exact/spruce", global_spruce);
  reg("global_exact/concat_nth_element", global_concat_nth_element);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
