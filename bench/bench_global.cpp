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

struct model {
  std::vector<std::vector<float>> data;
  std::vector<std::vector<std::size_t>> shapes;
  std::vector<spruce::named_tensor<float>> params;
  std::size_t total = 0;
};

const model& vgg() {
  static model m = [] {
    model v;
    const std::size_t cfg[] = {64, 128, 256, 256, 512, 512, 512, 512};
    std::size_t in = 3;
    std::mt19937 rng(5);
    for (std::size_t c : cfg) {
      v.shapes.push_back({c, in, 3, 3});
      in = c;
    }
    v.shapes.push_back({10, 512});
    for (const auto& s : v.shapes) {
      std::size_t n = 1;
      for (std::size_t e : s) n *= e;
      std::normal_distribution<float> g(0.0f, std::sqrt(2.0f / static_cast<float>(n / s[0])));
      std::vector<float> w(n);
      for (float& x : w) x = g(rng);
      v.data.push_back(std::move(w));
      v.total += n;
    }
    for (std::size_t i = 0; i < v.data.size(); ++i)
      v.params.push_back({std::string("w").append(std::to_string(i)), spruce::tensor_ref<float>(v.data[i].data(), v.shapes[i])});
    return v;
  }();
  return m;
}


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
