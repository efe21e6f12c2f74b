// GPU figures for the CUDA layer (scripts/gpu_check.sh runs it on a GPU machine; it needs
// no Google Benchmark). Every candidate is timed beside its baseline in the same run:
// mask / apply / N:M passes beside a device-to-device copy of the same bytes, select+mask
// (one tensor, and a global selection over four) beside cub::DeviceRadixSort of the same
// keys, CSR / block-sparse / N:M compression beside cusparseDenseToSparse, CSR, BSR and
// N:M SpMM (and cuSPARSELt 2:4 bf16 where <cusparseLt.h> is found) beside cuBLAS FP32 and
// TF32 (bf16 for cuSPARSELt). Prints one table.
#include <cublas_v2.h>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "spruce/cuda.hpp"

namespace {

using spruce::cuda::check;
namespace cd = spruce::cuda::detail;

__device__ std::uint64_t mix(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__global__ void generate(float* w, std::size_t n, int kind, std::uint64_t seed) {
  for (std::size_t i = cd::thread_index(); i < n; i += cd::thread_count()) {
    const std::uint64_t h = mix(seed, i);
    const float u1 = (static_cast<float>(h >> 40) + 1.0f) / 16777217.0f, u2 = static_cast<float>((h >> 16) & 0xFFFFFF) / 16777216.0f;
    const float g = 0.02f * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    w[i] = kind == 0 ? g : kind == 1 ? ((h & 0xFF) < 205 ? 0.0f : g) : 0.5f;
  }
}

__global__ void to_keys(const float* w, std::size_t n, std::uint32_t* k) {
  for (std::size_t i = cd::thread_index(); i < n; i += cd::thread_count()) k[i] = spruce::select::by_magnitude<float>::key(w[i]);
}

/// Milliseconds per call of f on the default stream (median of `reps` after one warm-up).
double time_ms(const std::function<void()>& f, int reps = 5) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  f();
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void row(const std::string& what, const std::string& size, const std::string& data, double ms, const std::string& baseline,
         double base_ms, const std::string& note) {
  std::printf("| %-22s | %-6s | %-8s | %10.3f | %-22s | %10.3f | %7.2f | %s |\n", what.c_str(), size.c_str(), data.c_str(), ms,
              baseline.c_str(), base_ms, base_ms / ms, note.c_str());
}

void mask_passes(std::size_t n, const char* size) {
  const char* names[] = {"normal", "zeros80", "equal"};
  spruce::cuda::device_buffer<float> w(n), copy(n);
  spruce::cuda::device_buffer<std::uint8_t> m(n);
  spruce::cuda::device_buffer<std::uint32_t> keys(n), keys_out(n);
  const std::size_t shape[2] = {n / 1000, 1000};
  for (int kind = 0; kind < 3; ++kind) {
    generate<<<4096, 256>>>(w.data(), n, kind, 7);
    check(cudaDeviceSynchronize(), "generate");
    // Copy bandwidth: 5 bytes per weight moved (the mask pass reads 4 and writes 1).
    const double copy_ms = time_ms([&] { check(cudaMemcpyAsync(copy.data(), w.data(), n * 5 / 2, cudaMemcpyDeviceToDevice), "copy"); });
    const double copy_gbs = static_cast<double>(n) * 5 / copy_ms / 1e6;
    const auto src = cd::contiguous_src<float>{w.data()};
    using O = spruce::select::by_magnitude<float>;
    const double mask_ms = time_ms([&] { cd::mask_kernel<O><<<cd::grid_for(n, 4), cd::block_threads>>>(src, n, O::key(0.01f), m.data()); });
    char note[128];
    std::snprintf(note, sizeof note, "%.0f%% of copy bandwidth", 100.0 * (static_cast<double>(n) * 5 / mask_ms / 1e6) / copy_gbs);
    row("mask pass", size, names[kind], mask_ms, "D2D copy (5 B/weight)", copy_ms, note);
    const double apply_ms = time_ms([&] {
      cd::apply_kernel<float, true><<<cd::grid_for(n, 4), cd::block_threads>>>(w.data(), cd::strided_shape{}, n, m.data());
    });
    row("apply", size, names[kind], apply_ms, "D2D copy (5 B/weight)", copy_ms, "apply moves 9 B/weight");
    generate<<<4096, 256>>>(w.data(), n, kind, 7);
    const auto wv = w.view(shape);
    spruce::cuda::device_mask nm;
    const double nm_ms = time_ms([&] { nm = spruce::cuda::n_m_mask<2, 4>(wv); });
    std::snprintf(note, sizeof note, "%.0f%% of copy bandwidth (incl. status read)", 100.0 * (static_cast<double>(n) * 5 / nm_ms / 1e6) / copy_gbs);
    row("N:M 2:4 mask", size, names[kind], nm_ms, "D2D copy (5 B/weight)", copy_ms, note);
    spruce::cuda::device_mask sm;
    const double sel_ms = time_ms([&] { sm = spruce::cuda::magnitude_mask(wv, spruce::selection::exact{0.5}); }, 3);
    to_keys<<<4096, 256>>>(w.data(), n, keys.data());
    std::size_t temp = 0;
    check(cub::DeviceRadixSort::SortKeys(nullptr, temp, keys.data(), keys_out.data(), n), "sort size");
    spruce::cuda::device_buffer<unsigned char> tb(temp);
    const double sort_ms = time_ms([&] { check(cub::DeviceRadixSort::SortKeys(tb.data(), temp, keys.data(), keys_out.data(), n), "sort"); }, 3);
    row("select+mask (exact .5)", size, names[kind], sel_ms, "cub::DeviceRadixSort", sort_ms, "target: ratio >= 4 at 1e9");
    // Global scope: the same weights as four tensors of unequal size, one selection.
    {
      const std::size_t cut[5] = {0, n / 10, n / 3, n / 2 + 17, n};
      std::vector<spruce::named_tensor<float, spruce::cuda_space>> parts;
      for (int t = 0; t < 4; ++t) {
        const std::size_t pshape[1] = {cut[t + 1] - cut[t]};
        parts.push_back({"layer" + std::to_string(t), spruce::tensor_ref<float, spruce::cuda_space>(w.data() + cut[t], pshape)});
      }
      const spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::exact> pe{{}, {}, spruce::selection::exact{0.5}};
      std::vector<spruce::cuda::device_mask> gm;
      const double glob_ms = time_ms([&] { gm = spruce::cuda::global_masks(pe, parts); }, 3);
      row("global select+mask (4)", size, names[kind], glob_ms, "cub::DeviceRadixSort", sort_ms, "4 tensors, one histogram per level");
    }
  }
}

void sparse_products() {
  const std::size_t rows = 4096, cols = 4096;
  spruce::cuda::device_buffer<float> a(rows * cols);
  generate<<<4096, 256>>>(a.data(), rows * cols, 0, 3);
  const std::size_t ashape[2] = {rows, cols};
  cublasHandle_t blas;
  cublasCreate(&blas);
  for (std::size_t n : {std::size_t{256}, std::size_t{4096}}) {
    spruce::cuda::device_buffer<float> b(cols * n), c(rows * n);
    generate<<<4096, 256>>>(b.data(), cols * n, 0, 5);
    const float one = 1, zero = 0;
    cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH);
    const double fp32 = time_ms([&] {
      cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(rows), static_cast<int>(cols), &one, b.data(),
                  static_cast<int>(n), a.data(), static_cast<int>(cols), &zero, c.data(), static_cast<int>(n));
    });
    cublasSetMathMode(blas, CUBLAS_TF32_TENSOR_OP_MATH);
    const double tf32 = time_ms([&] {
      cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(rows), static_cast<int>(cols), &one, b.data(),
                  static_cast<int>(n), a.data(), static_cast<int>(cols), &zero, c.data(), static_cast<int>(n));
    });
    for (double sp : {0.5, 0.8, 0.9, 0.95, 0.98}) {
      const auto mask = spruce::cuda::magnitude_mask(a.view(ashape), spruce::selection::exact{sp});
      const auto csr = spruce::cuda::csr_from_dense(a.view(ashape), mask);
      spruce::cuda::csr_product<float> prod(csr);
      const std::size_t bshape[2] = {cols, n}, cshape[2] = {rows, n};
      const double ms = time_ms([&] { prod(b.view(bshape), c.view(cshape)); });
      char size[32], data[32];
      std::snprintf(size, sizeof size, "x%zu", n);
      std::snprintf(data, sizeof data, "%.0f%%", sp * 100);
      row("CSR SpMM (cuSPARSE)", size, data, ms, "cuBLAS FP32", fp32, "vs TF32: " + std::to_string(tf32 / ms));
    }
  }
  // BSR (4 x 4 blocks pruned by their L2 norm) and N:M 2:4 (exact FP32, spruce's kernel),
  // beside the same cuBLAS FP32 / TF32 figures, for both right-hand sides.
  for (std::size_t n : {std::size_t{256}, std::size_t{4096}}) {
    spruce::cuda::device_buffer<float> b(cols * n), c(rows * n);
    generate<<<4096, 256>>>(b.data(), cols * n, 0, 5);
    const float one = 1, zero = 0;
    auto gemm = [&](cublasMath_t math) {
      cublasSetMathMode(blas, math);
      return time_ms([&] {
        cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(rows), static_cast<int>(cols), &one, b.data(),
                    static_cast<int>(n), a.data(), static_cast<int>(cols), &zero, c.data(), static_cast<int>(n));
      });
    };
    const double fp32 = gemm(CUBLAS_DEFAULT_MATH), tf32 = gemm(CUBLAS_TF32_TENSOR_OP_MATH);
    const std::size_t bshape[2] = {cols, n}, cshape[2] = {rows, n};
    char size[32], data[32];
    std::snprintf(size, sizeof size, "x%zu", n);
    for (double sp : {0.5, 0.8, 0.9, 0.95, 0.98}) {
      const spruce::pruner<spruce::granularity::block, spruce::criterion::l2, spruce::selection::exact> pb{{4, 4}, {}, spruce::selection::exact{sp}};
      const auto mask = pb.compute(a.view(ashape));
      const auto bsr = spruce::cuda::block_sparse_from_dense(a.view(ashape), mask, 4, 4);
      spruce::cuda::bsr_product<float> prod(bsr);
      const double ms = time_ms([&] { prod(b.view(bshape), c.view(cshape)); });
      std::snprintf(data, sizeof data, "%.0f%%", sp * 100);
      row("BSR 4x4 SpMM (cuSPARSE)", size, data, ms, "cuBLAS FP32", fp32, "vs TF32: " + std::to_string(tf32 / ms));
    }
    const auto nm_mask = spruce::cuda::n_m_mask<2, 4>(a.view(ashape));
    const auto nm = spruce::cuda::n_m_from_dense(a.view(ashape), nm_mask, 2, 4);
    const double nm_ms = time_ms([&] { spruce::cuda::spmm(nm, b.view(bshape), c.view(cshape)); });
    row("N:M 2:4 SpMM (exact)", size, "50%", nm_ms, "cuBLAS FP32", fp32, "vs TF32: " + std::to_string(tf32 / nm_ms));
  }
  cublasDestroy(blas);
  // Compression beside cusparseDenseToSparse (4096 x 4096 at 90%).
  const auto mask = spruce::cuda::magnitude_mask(a.view(ashape), spruce::selection::exact{0.9});
  spruce::cuda::device_buffer<float> pruned(rows * cols);
  check(cudaMemcpy(pruned.data(), a.data(), rows * cols * 4, cudaMemcpyDeviceToDevice), "copy");
  spruce::cuda::apply_mask(pruned.view(ashape), mask);
  const double ours = time_ms([&] { (void)spruce::cuda::csr_from_dense(a.view(ashape), mask); });
  cusparseHandle_t sp;
  cusparseCreate(&sp);
  cusparseDnMatDescr_t dn;
  cusparseCreateDnMat(&dn, rows, cols, cols, pruned.data(), CUDA_R_32F, CUSPARSE_ORDER_ROW);
  spruce::cuda::device_buffer<std::int32_t> rp(rows + 1);
  cusparseSpMatDescr_t sm;
  cusparseCreateCsr(&sm, rows, cols, 0, rp.data(), nullptr, nullptr, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F);
  std::size_t bytes = 0;
  cusparseDenseToSparse_bufferSize(sp, dn, sm, CUSPARSE_DENSETOSPARSE_ALG_DEFAULT, &bytes);
  spruce::cuda::device_buffer<unsigned char> work(bytes + 1);
  const auto nnz = static_cast<std::size_t>(rows * cols / 10 + rows);
  spruce::cuda::device_buffer<std::int32_t> ci(nnz);
  spruce::cuda::device_buffer<float> vals(nnz);
  const double theirs = time_ms([&] {
    cusparseDenseToSparse_analysis(sp, dn, sm, CUSPARSE_DENSETOSPARSE_ALG_DEFAULT, work.data());
    std::int64_t r, c, z;
    cusparseSpMatGetSize(sm, &r, &c, &z);
    cusparseCsrSetPointers(sm, rp.data(), ci.data(), vals.data());
    cusparseDenseToSparse_convert(sp, dn, sm, CUSPARSE_DENSETOSPARSE_ALG_DEFAULT, work.data());
  });
  row("CSR compression", "4096^2", "90%", ours, "cusparseDenseToSparse", theirs, "ours keeps explicit zeros of the mask");
  const double bsr_ms = time_ms([&] { (void)spruce::cuda::block_sparse_from_dense(a.view(ashape), mask, 4, 4); });
  row("BSR 4x4 compression", "4096^2", "90%", bsr_ms, "cusparseDenseToSparse", theirs, "element mask: most blocks stored");
  const auto nm_mask = spruce::cuda::n_m_mask<2, 4>(a.view(ashape));
  const double nm_ms = time_ms([&] { (void)spruce::cuda::n_m_from_dense(a.view(ashape), nm_mask, 2, 4); });
  row("N:M 2:4 compression", "4096^2", "50%", nm_ms, "cusparseDenseToSparse", theirs, "baseline at 90%: a reference only");
  cusparseDestroySpMat(sm);
  cusparseDestroyDnMat(dn);
  cusparseDestroy(sp);
}

#if SPRUCE_HAS_CUSPARSELT
__global__ void to_bf16(const float* x, std::size_t n, __nv_bfloat16* y) {
  for (std::size_t i = cd::thread_index(); i < n; i += cd::thread_count()) y[i] = __float2bfloat16(x[i]);
}

/// 2:4 bf16 at 8192 through cuSPARSELt beside cuBLAS bf16 (target: 1.2x).
void sparselt_products() {
  const std::size_t d = 8192;
  spruce::cuda::device_buffer<float> a(d * d);
  generate<<<4096, 256>>>(a.data(), d * d, 0, 3);
  const std::size_t shape[2] = {d, d};
  (void)spruce::n_m_prune<2, 4>(a.view(shape));
  spruce::cuda::device_buffer<__nv_bfloat16> ah(d * d), bh(d * d), ch(d * d);
  to_bf16<<<4096, 256>>>(a.data(), d * d, ah.data());
  to_bf16<<<4096, 256>>>(a.data(), d * d, bh.data());
  spruce::cuda::sparselt_product<__nv_bfloat16> lt(ah.view(shape), "a");
  const double ms = time_ms([&] { lt(bh.view(shape), ch.view(shape)); });
  cublasHandle_t blas;
  cublasCreate(&blas);
  const float one = 1, zero = 0;
  const int n = static_cast<int>(d);
  const double dense = time_ms([&] {
    cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, bh.data(), CUDA_R_16BF, n, ah.data(), CUDA_R_16BF, n, &zero, ch.data(),
                 CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  });
  cublasDestroy(blas);
  row("2:4 bf16 (cuSPARSELt)", "8192", "50%", ms, "cuBLAS bf16", dense, "target: ratio >= 1.2");
}
#else
void sparselt_products() { std::printf("(cuSPARSELt not found at compile time: the 2:4 bf16 row is not measured)\n"); }
#endif

}  // namespace

int main(int argc, char** argv) {
  if (spruce::cuda::device_count() == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  const bool big = !(argc > 1 && std::string(argv[1]) == "--small");
  std::printf("| what | size | data | ms | baseline | baseline ms | baseline/ours | note |\n|---|---|---|---|---|---|---|---|\n");
  mask_passes(1000000, "1e6");
  mask_passes(100000000, "1e8");
  if (big) mask_passes(1000000000, "1e9");
  sparse_products();
  sparselt_products();
  return 0;
}
