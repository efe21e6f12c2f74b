// Kernels under a shared machine: the four calls issue 10 names (fine-grained prune of the
// lab VGG, global exact selection, a 2:4 mask, a CSR product), each with the kernels
// allowed 1 thread and 2 threads (omp_set_num_threads). scripts/bench_loaded.sh runs this
// program on a quiet machine and with one core kept busy by another process and prints the
// 2-thread / 1-thread ratio of each: a kernel that tolerates a preempted helper stays near
// (or below) 1.0 under load.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "spruce/spruce.hpp"
#include "bench_common.hpp"

namespace {

const spruce_bench::vgg_weights& vgg() { return spruce_bench::lab_vgg(); }

void set_threads(benchmark::State& st) {
#if defined(_OPENMP)
  omp_set_num_threads(static_cast<int>(st.range(0)));
#else
  (void)st;
#endif
}

// The demo's table: seven convolutions pruned alone (conv0 and the classifier stay dense).
void fine_grained(benchmark::State& st) {
  set_threads(st);
  const auto& m = vgg();
  const spruce::sparsity_table table{{"backbone.conv1.weight", 0.6}, {"backbone.conv2.weight", 0.5},
                                     {"backbone.conv3.weight", 0.5}, {"backbone.conv4.weight", 0.5},
                                     {"backbone.conv5.weight", 0.6}, {"backbone.conv6.weight", 0.6},
                                     {"backbone.conv7.weight", 0.75}};
  // Masks only: pruning in place would change the weights between iterations.
  const spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::threshold> p{};
  spruce_bench::run(st, m.total, [&] {
    auto reg = spruce::per_layer_masks(p, std::span<const spruce::named_tensor<float>>(m.params), table);
    benchmark::DoNotOptimize(reg.size());
  });
}

void global_exact(benchmark::State& st) {
  set_threads(st);
  const auto& m = vgg();
  const spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::exact> p{
      {}, {}, spruce::selection::exact(0.5)};
  spruce_bench::run(st, m.total, [&] {
    auto masks = spruce::global_masks(p, std::span<const spruce::named_tensor<float>>(m.params));
    benchmark::DoNotOptimize(masks.data());
  });
}

void mask_2_4(benchmark::State& st) {
  set_threads(st);
  const std::array<std::size_t, 4> shape{512, 512, 3, 3};
  const std::vector<float>& w = spruce_bench::weights(spruce::shape_size(shape));
  spruce_bench::run(st, w.size(), [&] {
    auto mk = spruce::n_m_mask(spruce::tensor_ref<const float>(w.data(), shape), spruce::granularity::n_m<2, 4>{});
    benchmark::DoNotOptimize(mk.data());
  });
}

// The lab VGG's largest GEMM (512 x 4608 x 1024) at 90% unstructured sparsity.
void csr_spmm(benchmark::State& st) {
  set_threads(st);
  const std::size_t rows = 512, depth = 4608, cols = 1024;
  static const auto a = [] {
    std::vector<float> w = spruce_bench::weights(rows * depth);
    const std::array<std::size_t, 2> shape{rows, depth};
    spruce::tensor_ref<float> ref(w.data(), shape);
    const auto mk = spruce::magnitude_prune(ref, spruce::selection::exact(0.9));
    return spruce::sparse::csr_matrix<float>::from_dense(spruce::tensor_ref<const float>(ref), mk);
  }();
  static std::vector<float> b = [] {
    std::vector<float> v(depth * cols);
    std::mt19937 rng(3);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (float& x : v) x = g(rng);
    return v;
  }();
  std::vector<float> c(rows * cols);
  const std::array<std::size_t, 2> bs{depth, cols}, cs{rows, cols};
  spruce_bench::run(st, a.nnz() * cols, [&] {
    spruce::sparse::spmm(a, spruce::tensor_ref<const float>(b.data(), bs), spruce::tensor_ref<float>(c.data(), cs));
    benchmark::DoNotOptimize(c.data());
  });
}

}  // namespace

int main(int argc, char** argv) {
  const struct {
    const char* name;
    void (*fn)(benchmark::State&);
  } cases[] = {{"fine_grained_vgg", fine_grained}, {"global_exact_vgg", global_exact},
               {"mask_2_4_512x512x3x3", mask_2_4}, {"csr_spmm_90pct", csr_spmm}};
  for (const auto& c : cases)
    for (int t : {1, 2})
      benchmark::RegisterBenchmark((std::string(c.name) + "/threads").c_str(), c.fn)
          ->Arg(t)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
