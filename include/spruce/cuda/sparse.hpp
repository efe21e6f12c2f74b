#pragma once
// Sparse formats and products on the device: CSR compression of a masked weight into the
// CPU format's exact arrays (sparse::csr_matrix), and CSR x dense products through
// cuSPARSE with the handle, descriptors and workspace kept per weight.

#include <cuda_runtime.h>
#include <cusparse.h>

#include <cub/device/device_scan.cuh>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/cuda/kernels.hpp"
#include "spruce/cuda/memory.hpp"
#include "spruce/sparse/csr.hpp"

namespace spruce::cuda {

/// Throws spruce::error when a cuSPARSE call fails.
inline void check(cusparseStatus_t status, const std::string& what) {
  if (status != CUSPARSE_STATUS_SUCCESS)
    throw error("cuSPARSE error in " + what + ": " + cusparseGetErrorString(status));
}

/// A CSR matrix in device memory with sparse::csr_matrix's exact layout: row_ptr (rows + 1
/// offsets, from 0), col_idx (strictly increasing within a row) and values, every kept
/// entry stored, explicit zeros included. Built on the device by csr_from_dense;
/// `to_host` gives the csr_matrix the CPU builds from the same weight and mask.
template <class T, class Index = std::int32_t>
class device_csr {
 public:
  device_csr() = default;
  device_csr(std::size_t rows, std::size_t cols, device_buffer<Index> row_ptr, device_buffer<Index> col_idx,
             device_buffer<T> values)
      : rows_(rows), cols_(cols), row_ptr_(std::move(row_ptr)), col_idx_(std::move(col_idx)), values_(std::move(values)) {}

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t nnz() const noexcept { return values_.size(); }
  const Index* row_ptr() const noexcept { return row_ptr_.data(); }
  const Index* col_idx() const noexcept { return col_idx_.data(); }
  const T* values() const noexcept { return values_.data(); }

  /// Copies the arrays to the host as a sparse::csr_matrix (validated; synchronises `s`).
  sparse::csr_matrix<T, Index> to_host(stream_ref s = {}) const {
    std::vector<Index> rp(rows_ + 1), ci(nnz());
    std::vector<T> v(nnz());
    check(cudaMemcpyAsync(rp.data(), row_ptr(), rp.size() * sizeof(Index), cudaMemcpyDeviceToHost, s), "device_csr::to_host");
    if (nnz()) {
      check(cudaMemcpyAsync(ci.data(), col_idx(), ci.size() * sizeof(Index), cudaMemcpyDeviceToHost, s), "device_csr::to_host");
      check(cudaMemcpyAsync(v.data(), values(), v.size() * sizeof(T), cudaMemcpyDeviceToHost, s), "device_csr::to_host");
    }
    check(cudaStreamSynchronize(s), "device_csr::to_host");
    return sparse::csr_matrix<T, Index>(rows_, cols_, std::move(rp), std::move(ci), std::move(v));
  }

 private:
  std::size_t rows_ = 0, cols_ = 0;
  device_buffer<Index> row_ptr_, col_idx_;
  device_buffer<T> values_;
};

/// Compresses the kept entries of a contiguous 2-D device weight into a device CSR matrix
/// (the arrays sparse::csr_matrix::from_dense builds on the host from the same weight and
/// mask): a count pass per row, a scan for row_ptr, a write pass per row. Synchronises `s`
/// once, to read the entry count and size the arrays. Throws spruce::error for a weight
/// that is not 2-D or not contiguous, a mask of another shape, or more entries than Index
/// can count.
template <class Index = std::int32_t, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
device_csr<view_value_t<V>, Index> csr_from_dense(const V& dense, const device_mask& keep, const std::string& name = {},
                                                  stream_ref s = {}) {
  using T = view_value_t<V>;
  const auto d = to_const_ref(dense);
  detail::check_device_data(d, name);
  if (d.rank() != 2)
    throw error("cuda::csr_from_dense: " + spruce::detail::tensor_label(name) + " of shape " + shape_string(d.shape()) +
                " is not 2-D; view a conv weight as [out, in*kh*kw]");
  detail::require_contiguous(d, "cuda::csr_from_dense", name);
  if (!std::ranges::equal(keep.shape(), d.shape()))
    throw error("cuda::csr_from_dense: mask of shape " + shape_string(keep.shape()) + " for " + spruce::detail::tensor_label(name) +
                " of shape " + shape_string(d.shape()) + "; pass the mask computed for this weight");
  const std::size_t rows = d.extent(0), cols = d.extent(1);
  device_buffer<Index> counts(rows + 1, s), row_ptr(rows + 1, s);
  check(cudaMemsetAsync(counts.data(), 0, (rows + 1) * sizeof(Index), s), "csr_from_dense");
  if (rows) detail::csr_count_kernel<Index><<<detail::grid_for(rows), detail::block_threads, 0, s>>>(keep.data(), rows, cols, counts.data());
  // 64-bit sums first: an Index overflow must be reported, not wrapped.
  device_buffer<unsigned long long> total(1, s);
  check(cudaMemsetAsync(total.data(), 0, sizeof(unsigned long long), s), "csr_from_dense");
  if (rows) detail::count_nonzero_kernel<<<detail::grid_for(rows * cols, 8), detail::block_threads, 0, s>>>(
      detail::contiguous_src<std::uint8_t>{keep.data()}, rows * cols, total.data());
  unsigned long long nnz = 0;
  check(cudaMemcpyAsync(&nnz, total.data(), sizeof(nnz), cudaMemcpyDeviceToHost, s), "csr_from_dense");
  check(cudaStreamSynchronize(s), "csr_from_dense of " + spruce::detail::tensor_label(name));
  if (nnz >= static_cast<unsigned long long>(std::numeric_limits<Index>::max()))
    throw error("csr_matrix: more nonzeros than the index type can count; use a 64-bit Index");
  std::size_t temp_bytes = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, counts.data(), row_ptr.data(), rows + 1, s), "csr row_ptr scan");
  device_buffer<unsigned char> temp(temp_bytes, s);
  check(cub::DeviceScan::ExclusiveSum(temp.data(), temp_bytes, counts.data(), row_ptr.data(), rows + 1, s), "csr row_ptr scan");
  device_buffer<Index> col_idx(nnz, s);
  device_buffer<T> values(nnz, s);
  if (rows && nnz)
    detail::csr_write_kernel<T, Index><<<detail::grid_for(rows), detail::block_threads, 0, s>>>(d.data(), keep.data(), rows, cols, row_ptr.data(),
                                                                                               col_idx.data(), values.data());
  check(cudaGetLastError(), "the CSR compression kernels");
  return device_csr<T, Index>(rows, cols, std::move(row_ptr), std::move(col_idx), std::move(values));
}

namespace detail {
template <class T>
constexpr cudaDataType cuda_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "cuSPARSE products: float or double");
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_64F;
}
template <class Index>
constexpr cusparseIndexType_t cusparse_index() {
  static_assert(sizeof(Index) == 4 || sizeof(Index) == 8, "cuSPARSE indices: 32 or 64 bit");
  return sizeof(Index) == 4 ? CUSPARSE_INDEX_32I : CUSPARSE_INDEX_64I;
}
}  // namespace detail

/// C = alpha * A * B + beta * C on the device for a device CSR weight A [rows, cols], B
/// [cols, n] and C [rows, n] (contiguous row-major device views), through cuSPARSE SpMM.
/// Holds the cuSPARSE handle, the matrix descriptor and the workspace for its weight, and
/// runs cuSPARSE's preprocessing once per right-hand-side width, so repeated products (the
/// forward pass of every batch) pay the setup once. Not thread-safe; one per weight and
/// stream. The weight's arrays must outlive it.
template <class T, class Index = std::int32_t>
class csr_product {
 public:
  explicit csr_product(const device_csr<T, Index>& a) : rows_(a.rows()), cols_(a.cols()) {
    check(cusparseCreate(&handle_), "cusparseCreate");
    check(cusparseCreateCsr(&a_, static_cast<std::int64_t>(a.rows()), static_cast<std::int64_t>(a.cols()), static_cast<std::int64_t>(a.nnz()),
                            const_cast<Index*>(a.row_ptr()), const_cast<Index*>(a.col_idx()), const_cast<T*>(a.values()),
                            detail::cusparse_index<Index>(), detail::cusparse_index<Index>(), CUSPARSE_INDEX_BASE_ZERO,
                            detail::cuda_type<T>()),
          "cusparseCreateCsr");
  }
  csr_product(const csr_product&) = delete;
  csr_product& operator=(const csr_product&) = delete;
  ~csr_product() {
    if (a_) (void)cusparseDestroySpMat(a_);
    if (handle_) (void)cusparseDestroy(handle_);
  }

  template <any_view VB, any_view VC>
    requires std::same_as<view_space_t<VB>, cuda_space> && std::same_as<view_space_t<VC>, cuda_space>
  void operator()(const VB& b_view, const VC& c_view, T alpha = T(1), T beta = T(0), stream_ref s = {}) {
    const auto b = to_const_ref(b_view);
    const auto c = to_ref(c_view);
    if (b.rank() != 2 || c.rank() != 2 || b.extent(0) != cols_ || c.extent(0) != rows_ || b.extent(1) != c.extent(1))
      throw error("cuda::csr_product: B of shape " + shape_string(b.shape()) + " and C of shape " + shape_string(c.shape()) +
                  " do not fit a " + std::to_string(rows_) + " x " + std::to_string(cols_) + " weight; pass B [" +
                  std::to_string(cols_) + ", n] and C [" + std::to_string(rows_) + ", n]");
    detail::require_contiguous(b, "cuda::csr_product", "B");
    detail::require_contiguous(c, "cuda::csr_product", "C");
    const std::int64_t n = static_cast<std::int64_t>(b.extent(1));
    check(cusparseSetStream(handle_, s), "cusparseSetStream");
    cusparseDnMatDescr_t bd = nullptr, cd = nullptr;
    check(cusparseCreateDnMat(&bd, static_cast<std::int64_t>(cols_), n, n, const_cast<T*>(b.data()), detail::cuda_type<T>(), CUSPARSE_ORDER_ROW),
          "cusparseCreateDnMat");
    check(cusparseCreateDnMat(&cd, static_cast<std::int64_t>(rows_), n, n, c.data(), detail::cuda_type<T>(), CUSPARSE_ORDER_ROW),
          "cusparseCreateDnMat");
    const auto op = CUSPARSE_OPERATION_NON_TRANSPOSE;
    const auto alg = CUSPARSE_SPMM_CSR_ALG2;  // deterministic, row-major operands
    std::size_t bytes = 0;
    cusparseStatus_t st = cusparseSpMM_bufferSize(handle_, op, op, &alpha, a_, bd, &beta, cd, detail::cuda_type<T>(), alg, &bytes);
    if (st == CUSPARSE_STATUS_SUCCESS && bytes > work_.size()) work_ = device_buffer<unsigned char>(bytes, s);
    if (st == CUSPARSE_STATUS_SUCCESS && n != prepared_n_) {
      st = cusparseSpMM_preprocess(handle_, op, op, &alpha, a_, bd, &beta, cd, detail::cuda_type<T>(), alg, work_.data());
      if (st == CUSPARSE_STATUS_SUCCESS) prepared_n_ = n;
    }
    if (st == CUSPARSE_STATUS_SUCCESS)
      st = cusparseSpMM(handle_, op, op, &alpha, a_, bd, &beta, cd, detail::cuda_type<T>(), alg, work_.data());
    (void)cusparseDestroyDnMat(bd);
    (void)cusparseDestroyDnMat(cd);
    check(st, "cusparseSpMM");
  }

 private:
  std::size_t rows_, cols_;
  cusparseHandle_t handle_ = nullptr;
  cusparseSpMatDescr_t a_ = nullptr;
  device_buffer<unsigned char> work_;
  std::int64_t prepared_n_ = -1;
};

}  // namespace spruce::cuda
