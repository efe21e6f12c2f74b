// Sparse x dense products on the lab VGG's GEMM shapes (a conv weight [out, in*3*3] times
// a batched im2col buffer): spruce's formats beside Eigen dense GEMM (2 threads) and
// Eigen's SparseMatrix * dense. Families are `spmm_<M>x<K>x<N>`, sizes the sparsity in
// percent (random unstructured masks) or `2:4`. Variants:
//   spruce         CSR of the weight (unstructured mask; 2:4 mask at size 2:4)
//   spruce_bsr1x4, spruce_bsr4x4, spruce_bsr8x8
//                  block-sparse with that block shape, on a weight pruned in such blocks
//                  to the same sparsity (the pattern block pruning produces)
//   spruce_nm      the N:M compressed format (size 2:4 only)
//   eigen_dense    Eigen GEMM on the dense (zero-filled) weight, 2 threads
//   eigen_sparse   Eigen::SparseMatrix<float, RowMajor> * dense (unstructured / 2:4 mask;
//                  Eigen parallelises this one with OpenMP)
//   eigen_sparse_colmajor
//                  Eigen::SparseMatrix<float> (Eigen's default, column-major) * dense
// The ratio table (scripts/bench.sh) divides every variant by `spruce` (CSR).
#include <benchmark/benchmark.h>

#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "spruce/spruce.hpp"

namespace {

struct gemm_shape {
  std::size_t m, k, n;
  std::string name() const {
    return std::string("spmm_").append(std::to_string(m)).append("x").append(std::to_string(k)).append("x").append(std::to_string(n));
  }
};

// The weight's sparsity pattern: unstructured, whole br x bc blocks, or 2:4 along K.
struct pattern {
  int sparsity = 0;  // percent; ignored for 2:4
  std::size_t br = 1, bc = 1;
  bool two_four = false;
  auto key() const { return std::tuple(sparsity, br, bc, two_four); }
};

struct problem {
  gemm_shape s;
  std::vector<float> a, b, c;
  problem(const gemm_shape& shape, const pattern& p) : s(shape), a(shape.m * shape.k), b(shape.k * shape.n), c(shape.m * shape.n) {
    std::mt19937 rng(11);
    std::normal_distribution<float> g;
    std::uniform_int_distribution<int> u(0, 99);
    for (float& x : b) x = g(rng);
    if (p.two_four) {
      for (std::size_t i = 0; i < s.m; ++i)
        for (std::size_t k0 = 0; k0 < s.k; k0 += 4) {
          std::array<int, 4> keep{1, 1, 0, 0};
          std::shuffle(keep.begin(), keep.end(), rng);
          for (std::size_t t = 0; t < 4 && k0 + t < s.k; ++t) a[i * s.k + k0 + t] = keep[t] ? g(rng) : 0.0f;
        }
      return;
    }
    // One keep decision per br x bc block (1 x 1 = unstructured).
    for (std::size_t i0 = 0; i0 < s.m; i0 += p.br)
      for (std::size_t j0 = 0; j0 < s.k; j0 += p.bc) {
        const bool keep = u(rng) >= p.sparsity;
        for (std::size_t i = i0; i < std::min(s.m, i0 + p.br); ++i)
          for (std::size_t j = j0; j < std::min(s.k, j0 + p.bc); ++j) a[i * s.k + j] = keep ? g(rng) : 0.0f;
      }
  }
  spruce::tensor_ref<const float> weight() const { return {a.data(), std::array<std::size_t, 2>{s.m, s.k}}; }
  spruce::tensor_ref<const float> rhs() const { return {b.data(), std::array<std::size_t, 2>{s.k, s.n}}; }
  spruce::tensor_ref<float> out() { return {c.data(), std::array<std::size_t, 2>{s.m, s.n}}; }
};

// Problems are built once per (shape, pattern) and shared by the variants that use them.
problem& get(const gemm_shape& s, const pattern& p) {
  static std::map<std::tuple<std::size_t, std::size_t, std::size_t, int, std::size_t, std::size_t, bool>, std::unique_ptr<problem>> cache;
  const auto [sp, br, bc, tf] = p.key();
  auto& slot = cache[std::tuple(s.m, s.k, s.n, sp, br, bc, tf)];
  if (!slot) {
    cache.clear();  // keep one problem alive: the large shapes hold ~100 MB each
    auto& fresh = cache[std::tuple(s.m, s.k, s.n, sp, br, bc, tf)];
    fresh = std::make_unique<problem>(s, p);
    return *fresh;
  }
  return *slot;
}

void set_flops(benchmark::State& st, const gemm_shape& s) {
  st.counters["dense_GFLOP/s"] = benchmark::Counter(static_cast<double>(st.iterations()) * 2.0 * static_cast<double>(s.m) *
                                                        static_cast<double>(s.k) * static_cast<double>(s.n) / 1e9,
                                                    benchmark::Counter::kIsRate);
}

template <class Sparse>
void run_spruce(benchmark::State& st, gemm_shape s, pattern p, Sparse (*build)(const problem&)) {
  problem& pr = get(s, p);
  const Sparse a = build(pr);
  for (auto _ : st) {
    spruce::sparse::spmm(a, pr.rhs(), pr.out());
    benchmark::DoNotOptimize(pr.c.data());
  }
  set_flops(st, s);
}

spruce::sparse::csr_matrix<float> build_csr(const problem& pr) {
  return spruce::sparse::csr_matrix<float>::from_dense(pr.weight());
}

template <std::size_t R, std::size_t C>
spruce::sparse::block_sparse_matrix<float> build_bsr(const problem& pr) {
  return spruce::sparse::block_sparse_matrix<float>::from_dense(pr.weight(), R, C);
}

spruce::sparse::n_m_matrix<float> build_nm(const problem& pr) {
  return spruce::sparse::n_m_matrix<float>::from_dense(pr.weight(), 2, 4);
}

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void run_eigen_dense(benchmark::State& st, gemm_shape s, pattern p) {
  problem& pr = get(s, p);
  Eigen::Map<const row_major> a(pr.a.data(), static_cast<Eigen::Index>(s.m), static_cast<Eigen::Index>(s.k));
  Eigen::Map<const row_major> b(pr.b.data(), static_cast<Eigen::Index>(s.k), static_cast<Eigen::Index>(s.n));
  Eigen::Map<row_major> c(pr.c.data(), static_cast<Eigen::Index>(s.m), static_cast<Eigen::Index>(s.n));
  Eigen::setNbThreads(2);
  for (auto _ : st) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(pr.c.data());
  }
  set_flops(st, s);
}

// Eigen's SparseMatrix * dense with the sparse operand stored row-major (Eigen
// parallelises that product) or column-major (Eigen's default storage).
template <int Storage>
void run_eigen_sparse(benchmark::State& st, gemm_shape s, pattern p) {
  problem& pr = get(s, p);
  Eigen::Map<const row_major> ad(pr.a.data(), static_cast<Eigen::Index>(s.m), static_cast<Eigen::Index>(s.k));
  Eigen::Map<const row_major> b(pr.b.data(), static_cast<Eigen::Index>(s.k), static_cast<Eigen::Index>(s.n));
  const Eigen::SparseMatrix<float, Storage> a = ad.sparseView();
  Eigen::Map<row_major> c(pr.c.data(), static_cast<Eigen::Index>(s.m), static_cast<Eigen::Index>(s.n));
  Eigen::setNbThreads(2);
  for (auto _ : st) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(pr.c.data());
  }
  set_flops(st, s);
}

template <class F, class... Args>
void add(const std::string& name, F f, Args... args) {
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { f(st, args...); })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  const std::array<gemm_shape, 3> shapes{{{512, 4608, 1024}, {256, 2304, 4096}, {128, 576, 16384}}};
  for (const auto& s : shapes) {
    const std::string fam = s.name();
    for (int sp : {50, 70, 80, 90, 95}) {
      const std::string size = std::to_string(sp);
      const pattern un{sp, 1, 1, false};
      add(fam + "/eigen_dense/" + size, run_eigen_dense, s, un);
      add(fam + "/spruce/" + size, run_spruce<spruce::sparse::csr_matrix<float>>, s, un, &build_csr);
      add(fam + "/eigen_sparse/" + size, run_eigen_sparse<Eigen::RowMajor>, s, un);
      add(fam + "/eigen_sparse_colmajor/" + size, run_eigen_sparse<Eigen::ColMajor>, s, un);
      add(fam + "/spruce_bsr1x4/" + size, run_spruce<spruce::sparse::block_sparse_matrix<float>>, s, pattern{sp, 1, 4, false}, &build_bsr<1, 4>);
      add(fam + "/spruce_bsr4x1/" + size, run_spruce<spruce::sparse::block_sparse_matrix<float>>, s, pattern{sp, 4, 1, false}, &build_bsr<4, 1>);
      add(fam + "/spruce_bsr4x4/" + size, run_spruce<spruce::sparse::block_sparse_matrix<float>>, s, pattern{sp, 4, 4, false}, &build_bsr<4, 4>);
      add(fam + "/spruce_bsr8x8/" + size, run_spruce<spruce::sparse::block_sparse_matrix<float>>, s, pattern{sp, 8, 8, false}, &build_bsr<8, 8>);
    }
    const pattern tf{50, 1, 1, true};
    add(fam + "/eigen_dense/2:4", run_eigen_dense, s, tf);
    add(fam + "/spruce/2:4", run_spruce<spruce::sparse::csr_matrix<float>>, s, tf, &build_csr);
    add(fam + "/spruce_nm/2:4", run_spruce<spruce::sparse::n_m_matrix<float>>, s, tf, &build_nm);
    add(fam + "/eigen_sparse/2:4", run_eigen_sparse<Eigen::RowMajor>, s, tf);
    add(fam + "/eigen_sparse_colmajor/2:4", run_eigen_sparse<Eigen::ColMajor>, s, tf);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
