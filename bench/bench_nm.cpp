// N:M masks (2:4, and 4:8 for the general path): spruce beside NVIDIA ASP's mn_1d_best
// algorithm written plainly in C++ and a memcpy of the same bytes, in one process so that
// ratios come from one run. The size part of a name is the weight's shape: 4096/4096 is a
// [4096, 4096] linear weight, 512/512/3/3 a [512, 512, 3, 3] conv weight (groups along
// the input axis for each (out, kh, kw)).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "spruce/granularity/n_m.hpp"
#include "spruce/prune/n_m.hpp"
#include "spruce/spruce.hpp"
#include "bench_common.hpp"

namespace {

using spruce_bench::run;
using spruce_bench::weights;

std::vector<std::size_t> shape_of(const benchmark::State& st, std::size_t rank) {
  std::vector<std::size_t> s;
  for (std::size_t r = 0; r < rank; ++r) s.push_back(static_cast<std::size_t>(st.range(static_cast<int>(r))));
  return s;
}

std::size_t count(const std::vector<std::size_t>& s) {
  std::size_t n = 1;
  for (std::size_t e : s) n *= e;
  return n;
}



template <std::size_t N, std::size_t M>
spruce::mask spruce_mask(const std::vector<float>& w, const std::vector<std::size_t>& shape) {
  return spruce::n_m_mask(spruce::tensor_ref<const float>(w.data(), shape),
                          spruce::granularity::n_m<N, M>{});
}

// The same mask from the run-time pattern (granularity::n_m_pattern): the dispatch to the
// compile-time kernels should cost nothing measurable.
template <std::size_t N, std::size_t M, std::size_t Rank>
void nm_spruce_runtime(benchmark::State& st) {
  const auto shape = shape_of(st, Rank);
  const auto& w = weights(count(shape));
  const spruce::granularity::n_m_pattern p{N, M};
  run(st, w.size(), [&] {
    auto m = spruce::n_m_mask(spruce::tensor_ref<const float>(w.data(), shape), p);
    benchmark::DoNotOptimize(m.data());
  });
}

// Candidate: spruce::n_m_mask, the mask returned as a spruce::mask (allocation included).
template <std::size_t N, std::size_t M, std::size_t Rank>
void nm_spruce(benchmark::State& st) {
  const auto shape = shape_of(st, Rank);
  const auto& w = weights(count(shape));
  run(st, w.size(), [&] {
    auto m = spruce_mask<N, M>(w, shape);
    benchmark::DoNotOptimize(m.data());
  });
}

// Baseline: NVIDIA ASP's mn_1d_best (apex.contrib.sparsity.sparse_masklib) as a direct
// C++ port would write it, single-threaded, with naive loops: view the weight as a matrix
// whose rows run along the input axis (a conv weight is permuted to [kh, kw, out, in]
// first), zero-pad the columns to a multiple of M, take |w|, cut it into rows of M, score
// every row against every one of the C(M, N) patterns with N ones (rows x patterns =
// |w| @ patterns^T, float accumulation like the float32 matmul), take the first argmax
// per row, write that pattern as the mask and undo the padding and permutation.
std::vector<std::uint8_t> asp_mn_1d_best(const std::vector<float>& w,
                                         const std::vector<std::size_t>& shape, std::size_t n,
                                         std::size_t m) {
  const std::size_t out = shape[0], in = shape[1];
  std::size_t k = 1;
  for (std::size_t r = 2; r < shape.size(); ++r) k *= shape[r];
  // Patterns: every length-m 0/1 vector with n ones.
  std::vector<std::vector<float>> patterns;
  for (std::uint32_t bits = 0; bits < (1u << m); ++bits) {
    std::vector<float> p(m);
    std::size_t ones = 0;
    for (std::size_t j = 0; j < m; ++j) {
      p[j] = static_cast<float>((bits >> j) & 1u);
      ones += (bits >> j) & 1u;
    }
    if (ones == n) patterns.push_back(p);
  }
  // Permute to rows (kh*kw*out) x in, |w|, zero-padded to a multiple of m.
  const std::size_t rows = k * out, cols = (in + m - 1) / m * m;
  std::vector<float> mat(rows * cols, 0.0f);
  for (std::size_t t = 0; t < k; ++t)
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t i = 0; i < in; ++i) mat[(t * out + o) * cols + i] = std::abs(w[(o * in + i) * k + t]);
  // (rows*cols/m) x m  @  m x P  ->  scores, then argmax per row.
  const std::size_t groups = rows * cols / m, np = patterns.size();
  std::vector<float> scores(groups * np);
  for (std::size_t g = 0; g < groups; ++g)
    for (std::size_t p = 0; p < np; ++p) {
      float s = 0.0f;
      for (std::size_t j = 0; j < m; ++j) s += mat[g * m + j] * patterns[p][j];
      scores[g * np + p] = s;
    }
  std::vector<float> mask_mat(rows * cols);
  for (std::size_t g = 0; g < groups; ++g) {
    std::size_t best = 0;
    for (std::size_t p = 1; p < np; ++p)
      if (scores[g * np + p] > scores[g * np + best]) best = p;
    for (std::size_t j = 0; j < m; ++j) mask_mat[g * m + j] = patterns[best][j];
  }
  std::vector<std::uint8_t> keep(w.size());
  for (std::size_t t = 0; t < k; ++t)
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t i = 0; i < in; ++i)
        keep[(o * in + i) * k + t] = mask_mat[(t * out + o) * cols + i] != 0.0f;
  return keep;
}

template <std::size_t N, std::size_t M, std::size_t Rank>
void nm_asp_pattern_matmul(benchmark::State& st) {
  const auto shape = shape_of(st, Rank);
  const auto& w = weights(count(shape));
  // Same answer as spruce? Float sums can tie two patterns whose magnitudes differ, so a
  // handful of differing weights is possible; the counter shows how many.
  const auto asp = asp_mn_1d_best(w, shape, N, M);
  const auto ours = spruce_mask<N, M>(w, shape);
  double differ = 0;
  for (std::size_t i = 0; i < asp.size(); ++i) differ += asp[i] != ours.bytes()[i];
  run(st, w.size(), [&] {
    auto keep = asp_mn_1d_best(w, shape, N, M);
    benchmark::DoNotOptimize(keep.data());
  });
  st.counters["differ"] = differ;
}

// The bandwidth ceiling: copying the weights once.
template <std::size_t Rank>
void nm_memcpy(benchmark::State& st) {
  const auto shape = shape_of(st, Rank);
  const auto& w = weights(count(shape));
  std::vector<float> dst(w.size());
  run(st, w.size(), [&] {
    std::memcpy(dst.data(), w.data(), w.size() * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  });
}

struct variant {
  const char* name;
  void (*fn2)(benchmark::State&);
  void (*fn4)(benchmark::State&);
};

}  // namespace

// Size-major order, memcpy first: the data is generated once per shape and every variant
// at that shape then runs on the same warm data, one after another.
int main(int argc, char** argv) {
  const variant nm24[] = {
      {"nm_mask/memcpy", nm_memcpy<2>, nm_memcpy<4>},
      {"nm_mask/spruce", nm_spruce<2, 4, 2>, nm_spruce<2, 4, 4>},
      {"nm_mask/spruce_runtime", nm_spruce_runtime<2, 4, 2>, nm_spruce_runtime<2, 4, 4>},
      {"nm_mask/asp_pattern_matmul", nm_asp_pattern_matmul<2, 4, 2>, nm_asp_pattern_matmul<2, 4, 4>}};
  const variant nm48[] = {
      {"nm_mask_4_8/memcpy", nm_memcpy<2>, nm_memcpy<4>},
      {"nm_mask_4_8/spruce", nm_spruce<4, 8, 2>, nm_spruce<4, 8, 4>},
      {"nm_mask_4_8/spruce_runtime", nm_spruce_runtime<4, 8, 2>, nm_spruce_runtime<4, 8, 4>},
      {"nm_mask_4_8/asp_pattern_matmul", nm_asp_pattern_matmul<4, 8, 2>, nm_asp_pattern_matmul<4, 8, 4>}};
  const auto add = [](const variant& v, const std::vector<std::int64_t>& shape) {
    benchmark::RegisterBenchmark(v.name, shape.size() == 2 ? v.fn2 : v.fn4)
        ->Args(shape)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  for (const std::vector<std::int64_t>& s : {std::vector<std::int64_t>{1024, 1024},
                                             std::vector<std::int64_t>{4096, 4096},
                                             std::vector<std::int64_t>{512, 512, 3, 3}})
    for (const auto& v : nm24) add(v, s);
  for (const std::vector<std::int64_t>& s : {std::vector<std::int64_t>{4096, 4096},
                                             std::vector<std::int64_t>{512, 512, 3, 3}})
    for (const auto& v : nm48) add(v, s);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
