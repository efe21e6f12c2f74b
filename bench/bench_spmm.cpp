// Sparse x dense products on the lab VGG's largest GEMM shape (512 x 4608 weight times a
// 4608 x 1024 im2col buffer): spruce CSR beside Eigen dense GEMM (2 threads) and Eigen's
// SparseMatrix * dense, at several sparsities. Sizes are "sparsity percent".
#include <benchmark/benchmark.h>

#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <cstdint>
#include <random>
#include <vector>

#include "spruce/spruce.hpp"

namespace {

constexpr std::size_t M = 512, K = 4608, N = 1024;

struct problem {
  std::vector<float> a, b, c;
  explicit problem(int sparsity_percent) : a(M * K), b(K * N), c(M * N) {
    std::mt19937 rng(11);
    std::normal_distribution<float> g;
    std::uniform_int_distribution<int> u(0, 99);
    for (float& x : a) x = u(rng) < sparsity_percent ? 0.0f : g(rng);
    for (float& x : b) x = g(rng);
  }
};

void set_flops(benchmark::State& st) {
  st.counters["dense_GFLOP/s"] = benchmark::Counter(static_cast<double>(st.iterations()) * 2.0 * M * K * N / 1e9,
                                                    benchmark::Counter::kIsRate);
}

void spmm_spruce(benchmark::State& st) {
  problem p(static_cast<int>(st.range(0)));
  const std::vector<std::size_t> sa{M, K}, sb{K, N}, sc{M, N};
  const auto csr = spruce::sparse::csr_matrix<float>::from_dense(spruce::tensor_ref<const float>(p.a.data(), sa));
  for (auto _ : st) {
    spruce::sparse::spmm(csr, spruce::tensor_ref<const float>(p.b.data(), sb), spruce::tensor_ref<float>(p.c.data(), sc));
    benchmark::DoNotOptimize(p.c.data());
  }
  set_flops(st);
}

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void spmm_eigen_dense(benchmark::State& st) {
  problem p(static_cast<int>(st.range(0)));
  Eigen::Map<const row_major> a(p.a.data(), M, K), b(p.b.data(), K, N);
  Eigen::Map<row_major> c(p.c.data(), M, N);
  Eigen::setNbThreads(2);
  for (auto _ : st) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(p.c.data());
  }
  set_flops(st);
}

void spmm_eigen_sparse(benchmark::State& st) {
  problem p(static_cast<int>(st.range(0)));
  Eigen::Map<const row_major> ad(p.a.data(), M, K), b(p.b.data(), K, N);
  Eigen::SparseMatrix<float, Eigen::RowMajor> a = ad.sparseView();
  Eigen::Map<row_major> c(p.c.data(), M, N);
  for (auto _ : st) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(p.c.data());
  }
  set_flops(st);
}

}  // namespace

int main(int argc, char** argv) {
  for (int s : {50, 70, 90, 95}) {
    benchmark::RegisterBenchmark("spmm_512x4608x1024/eigen_dense", spmm_eigen_dense)->Arg(s)->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("spmm_512x4608x1024/spruce", spmm_spruce)->Arg(s)->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("spmm_512x4608x1024/eigen_sparse", spmm_eigen_sparse)->Arg(s)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
