// Channel sorting and physical removal on the full-width lab VGG (8 convs with BN and the
// classifier, 9.2 M weights): sort every group by the next layer's input-channel L2 norm,
// then keep 70% of the channels of every conv but the last, in place. Bytes moved are
// the weights read and written by the permutations and compactions; the baseline is a
// memcpy of the same number of bytes.
//
// Slice scores (granularity::slice, torch's ln_structured(dim=d)): the L2 norm of every
// slice of a 512x512x3x3 conv weight along each dim, against a naive single-thread loop
// nest (outer, slice, inner) that adds each element's square into its slice's double
// accumulator (bytes = the weight read once).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "spruce/spruce.hpp"

namespace {

struct vgg {
  std::vector<std::vector<float>> w, bn;
  std::vector<std::vector<std::size_t>> shapes;
  std::vector<float> fc;
  std::size_t total = 0;

  vgg() {
    const std::size_t cfg[] = {64, 128, 256, 256, 512, 512, 512, 512};
    std::size_t in = 3;
    std::mt19937 rng(5);
    std::normal_distribution<float> g;
    for (std::size_t c : cfg) {
      shapes.push_back({c, in, 3, 3});
      w.emplace_back(c * in * 9);
      for (float& x : w.back()) x = g(rng);
      for (int k = 0; k < 4; ++k) bn.emplace_back(c, 1.0f);
      total += c * in * 9;
      in = c;
    }
    fc.assign(10 * 512, 0.5f);
    total += fc.size();
  }

  spruce::structural::sequential_backbone<float> net() {
    spruce::structural::sequential_backbone<float> n;
    for (std::size_t i = 0; i < w.size(); ++i) {
      n.add_conv("conv" + std::to_string(i), spruce::tensor_ref<float>(w[i].data(), shapes[i]));
      const std::vector<std::size_t> s{shapes[i][0]};
      n.add_bn({spruce::tensor_ref<float>(bn[4 * i].data(), s), spruce::tensor_ref<float>(bn[4 * i + 1].data(), s),
                spruce::tensor_ref<float>(bn[4 * i + 2].data(), s), spruce::tensor_ref<float>(bn[4 * i + 3].data(), s)});
    }
    const std::vector<std::size_t> fs{10, 512};
    n.set_classifier("classifier", spruce::tensor_ref<float>(fc.data(), fs));
    return n;
  }
};

// Each sort permutes every conv twice (as an output and as an input: copy + scatter), and
// the prune compacts each at most twice; count one read and one write per element per pass.
constexpr std::size_t passes = 4;

void structural_spruce(benchmark::State& st) {
  vgg fresh;
  const std::vector<double> ratios(7, 0.3);
  for (auto _ : st) {
    st.PauseTiming();
    vgg m = fresh;
    auto net = m.net();
    st.ResumeTiming();
    net.sort_channels();
    net.prune(ratios);
    benchmark::DoNotOptimize(m.w[0].data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(fresh.total * sizeof(float) * 2 * passes));
}

void structural_memcpy(benchmark::State& st) {
  vgg fresh;
  std::vector<float> src(fresh.total * passes), dst(fresh.total * passes);
  for (auto _ : st) {
    std::memcpy(dst.data(), src.data(), src.size() * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(fresh.total * sizeof(float) * 2 * passes));
}

const std::vector<std::size_t> slice_shape{512, 512, 3, 3};

std::vector<float> slice_weight() {
  std::vector<float> w(512 * 512 * 9);
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  for (float& x : w) x = g(rng);
  return w;
}

void slice_spruce(benchmark::State& st) {
  const auto w = slice_weight();
  const int dim = static_cast<int>(st.range(0));
  const spruce::pruner<spruce::granularity::slice, spruce::criterion::l2, spruce::selection::exact> p{{dim}, {}, {}};
  const spruce::tensor_ref<const float> v(w.data(), slice_shape);
  for (auto _ : st) {
    auto s = p.scores(spruce::criterion::inputs<float>{v}, "w");
    benchmark::DoNotOptimize(s.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(w.size() * sizeof(float)));
}

void slice_naive(benchmark::State& st) {
  const auto w = slice_weight();
  const auto dim = static_cast<std::size_t>(st.range(0));
  std::size_t inner = 1;
  for (std::size_t r = dim + 1; r < 4; ++r) inner *= slice_shape[r];
  const std::size_t n = slice_shape[dim];
  for (auto _ : st) {
    std::vector<double> acc(n, 0.0);
    const float* x = w.data();
    for (std::size_t o = 0; o < w.size() / (n * inner); ++o)
      for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < inner; ++i, ++x) acc[k] += static_cast<double>(*x) * *x;
    std::vector<float> s(n);
    for (std::size_t k = 0; k < n; ++k) s[k] = static_cast<float>(std::sqrt(acc[k]));
    benchmark::DoNotOptimize(s.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(w.size() * sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
  const auto size = static_cast<std::int64_t>(vgg().total);
  benchmark::RegisterBenchmark("sort_and_prune/memcpy", structural_memcpy)->Arg(size)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("sort_and_prune/spruce", structural_spruce)->Arg(size)->UseRealTime()->Unit(benchmark::kMillisecond);
  for (int dim = 0; dim < 4; ++dim) {
    benchmark::RegisterBenchmark("slice_l2_scores/naive", slice_naive)->Arg(dim)->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("slice_l2_scores/spruce", slice_spruce)->Arg(dim)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
