#pragma once
// Shared by the benchmark programs: reproducible weights and the timing loop.

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"

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

/// The lab's VGG at full width: its 8 convolutions and the classifier (9.2 M weights), He
/// initialised with a fixed seed, as named parameters (`backbone.convN.weight`,
/// `classifier.weight`). Built once.
struct vgg_weights {
  std::vector<std::vector<float>> data;
  std::vector<std::vector<std::size_t>> shapes;
  std::vector<spruce::named_tensor<float>> params;
  std::size_t total = 0;
};

inline vgg_weights& lab_vgg() {
  static vgg_weights m = [] {
    vgg_weights v;
    const std::size_t cfg[] = {64, 128, 256, 256, 512, 512, 512, 512};
    std::size_t in = 3;
    std::mt19937 rng(5);
    for (std::size_t c : cfg) {
      v.shapes.push_back({c, in, 3, 3});
      in = c;
    }
    v.shapes.push_back({10, 512});
    for (const auto& s : v.shapes) {
      const std::size_t n = spruce::shape_size(s);
      std::normal_distribution<float> g(0.0f, std::sqrt(2.0f / static_cast<float>(n / s[0])));
      std::vector<float> w(n);
      for (float& x : w) x = g(rng);
      v.data.push_back(std::move(w));
      v.total += n;
    }
    for (std::size_t i = 0; i < v.data.size(); ++i)
      v.params.push_back({i < 8 ? "backbone.conv" + std::to_string(i) + ".weight" : std::string("classifier.weight"),
                          spruce::tensor_ref<float>(v.data[i].data(), v.shapes[i])});
    return v;
  }();
  return m;
}

}  // namespace spruce_bench
