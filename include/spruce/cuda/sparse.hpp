#pragma once
// Sparse formats and products on the device: compression of a masked weight into the CPU
// formats' exact arrays (sparse::csr_matrix, sparse::block_sparse_matrix,
// sparse::n_m_matrix), CSR and BSR x dense products through cuSPARSE with the handle,
// descriptors and workspace kept per weight, an exact-FP32 N:M product of spruce's own
// (bit for bit the CPU's accumulation order, see detail::n_m_dot), and, only where
// <cusparseLt.h> is found at compile time, a 2:4 fp16 / bf16 product through cuSPARSELt.
// cuSPARSELt is optional: nothing here needs it to build, and without it the
// sparselt_product class is simply not declared (SPRUCE_HAS_CUSPARSELT is 0).

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
#include "spruce/sparse/block_sparse.hpp"
#include "spruce/sparse/csr.hpp"
#include "spruce/sparse/n_m_matrix.hpp"

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

namespace detail {

/// What every cuSPARSE product of one weight keeps: the handle, the weight's descriptor
/// (made by the format's product class), the workspace, and the right-hand-side width
/// cuSPARSE's preprocessing last ran for, so repeated products (the forward pass of every
/// batch) pay the setup once. Not thread-safe; one per weight and stream.
template <class T>
class cusparse_spmm {
 public:
  cusparse_spmm(std::size_t rows, std::size_t cols, cusparseSpMMAlg_t alg, const char* what)
      : rows_(rows), cols_(cols), alg_(alg), what_(what) {
    check(cusparseCreate(&handle_), "cusparseCreate");
  }
  cusparse_spmm(const cusparse_spmm&) = delete;
  cusparse_spmm& operator=(const cusparse_spmm&) = delete;
  ~cusparse_spmm() {
    if (a_) (void)cusparseDestroySpMat(a_);
    if (handle_) (void)cusparseDestroy(handle_);
  }

  /// C = alpha * A * B + beta * C (contiguous row-major device views; B [cols, n], C
  /// [rows, n]); throws spruce::error, enqueuing nothing, for other shapes.
  template <any_view VB, any_view VC>
  void run(const VB& b_view, const VC& c_view, T alpha, T beta, stream_ref s) {
    const auto b = to_const_ref(b_view);
    const auto c = to_ref(c_view);
    if (b.rank() != 2 || c.rank() != 2 || b.extent(0) != cols_ || c.extent(0) != rows_ || b.extent(1) != c.extent(1))
      throw error("cuda::" + std::string(what_) + ": B of shape " + shape_string(b.shape()) + " and C of shape " + shape_string(c.shape()) +
                  " do not fit a " + std::to_string(rows_) + " x " + std::to_string(cols_) + " weight; pass B [" +
                  std::to_string(cols_) + ", n] and C [" + std::to_string(rows_) + ", n]");
    check_device_data(b, "B");
    check_device_data(c, "C");
    require_contiguous(b, "cuda::" + std::string(what_), "B");
    require_contiguous(c, "cuda::" + std::string(what_), "C");
    const std::int64_t n = static_cast<std::int64_t>(b.extent(1));
    check(cusparseSetStream(handle_, s), "cusparseSetStream");
    cusparseDnMatDescr_t bd = nullptr, cd = nullptr;
    check(cusparseCreateDnMat(&bd, static_cast<std::int64_t>(cols_), n, n, const_cast<T*>(b.data()), cuda_type<T>(), CUSPARSE_ORDER_ROW),
          "cusparseCreateDnMat");
    cusparseStatus_t st = cusparseCreateDnMat(&cd, static_cast<std::int64_t>(rows_), n, n, c.data(), cuda_type<T>(), CUSPARSE_ORDER_ROW);
    const auto op = CUSPARSE_OPERATION_NON_TRANSPOSE;
    std::size_t bytes = 0;
    if (st == CUSPARSE_STATUS_SUCCESS)
      st = cusparseSpMM_bufferSize(handle_, op, op, &alpha, a_, bd, &beta, cd, cuda_type<T>(), alg_, &bytes);
    if (st == CUSPARSE_STATUS_SUCCESS && bytes > work_.size()) work_ = device_buffer<unsigned char>(bytes, s);
    if (st == CUSPARSE_STATUS_SUCCESS && n != prepared_n_) {
      st = cusparseSpMM_preprocess(handle_, op, op, &alpha, a_, bd, &beta, cd, cuda_type<T>(), alg_, work_.data());
      if (st == CUSPARSE_STATUS_SUCCESS) prepared_n_ = n;
    }
    if (st == CUSPARSE_STATUS_SUCCESS) st = cusparseSpMM(handle_, op, op, &alpha, a_, bd, &beta, cd, cuda_type<T>(), alg_, work_.data());
    (void)cusparseDestroyDnMat(bd);
    if (cd) (void)cusparseDestroyDnMat(cd);
    check(st, std::string("cusparseSpMM (") + what_ + ")");
  }

 protected:
  std::size_t rows_, cols_;
  cusparseSpMMAlg_t alg_;
  const char* what_;
  cusparseHandle_t handle_ = nullptr;
  cusparseSpMatDescr_t a_ = nullptr;
  device_buffer<unsigned char> work_;
  std::int64_t prepared_n_ = -1;
};

}  // namespace detail

/// C = alpha * A * B + beta * C on the device for a device CSR weight A [rows, cols], B
/// [cols, n] and C [rows, n] (contiguous row-major device views), through cuSPARSE SpMM
/// (CUSPARSE_SPMM_CSR_ALG2: deterministic, row-major operands). Keeps the handle, the
/// matrix descriptor and the workspace for its weight and runs cuSPARSE's preprocessing
/// once per right-hand-side width. Not thread-safe; one per weight and stream. The weight's
/// arrays must outlive it. cuSPARSE sums in its own order: results agree with the CPU's
/// spmm to rounding, not bit for bit.
template <class T, class Index = std::int32_t>
class csr_product : detail::cusparse_spmm<T> {
 public:
  explicit csr_product(const device_csr<T, Index>& a) : detail::cusparse_spmm<T>(a.rows(), a.cols(), CUSPARSE_SPMM_CSR_ALG2, "csr_product") {
    check(cusparseCreateCsr(&this->a_, static_cast<std::int64_t>(a.rows()), static_cast<std::int64_t>(a.cols()),
                            static_cast<std::int64_t>(a.nnz()), const_cast<Index*>(a.row_ptr()), const_cast<Index*>(a.col_idx()),
                            const_cast<T*>(a.values()), detail::cusparse_index<Index>(), detail::cusparse_index<Index>(),
                            CUSPARSE_INDEX_BASE_ZERO, detail::cuda_type<T>()),
          "cusparseCreateCsr");
  }

  template <any_view VB, any_view VC>
    requires std::same_as<view_space_t<VB>, cuda_space> && std::same_as<view_space_t<VC>, cuda_space>
  void operator()(const VB& b, const VC& c, T alpha = T(1), T beta = T(0), stream_ref s = {}) {
    this->run(b, c, alpha, beta, s);
  }
};

namespace detail {

/// The host-boundary checks every device compression makes: a device 2-D contiguous
/// weight and a device mask of its shape.
template <class T>
void check_compress_input(const tensor_ref<const T, cuda_space>& d, const device_mask& keep, const char* what, const std::string& name) {
  check_device_data(d, name);
  if (d.rank() != 2)
    throw error(std::string("cuda::") + what + ": " + spruce::detail::tensor_label(name) + " of shape " + shape_string(d.shape()) +
                " is not 2-D; view a conv weight as [out, in*kh*kw]");
  require_contiguous(d, std::string("cuda::") + what, name);
  if (!std::ranges::equal(keep.shape(), d.shape()))
    throw error(std::string("cuda::") + what + ": mask of shape " + shape_string(keep.shape()) + " for " + spruce::detail::tensor_label(name) +
                " of shape " + shape_string(d.shape()) + "; pass the mask computed for this weight");
  if (keep.size()) check_device_data(keep.ref(), name.empty() ? std::string("mask") : "mask of " + name);
}

template <class T>
std::vector<T> download(const T* p, std::size_t n, stream_ref s) {
  std::vector<T> h(n);
  if (n) check(cudaMemcpyAsync(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost, s), "device format to_host");
  return h;
}

}  // namespace detail

/// A block-sparse (BSR) matrix in device memory with sparse::block_sparse_matrix's exact
/// layout: row_ptr per block row (plus one), col_idx per stored block (increasing within
/// a block row), br * bc row-major values per stored block (pruned entries and the padding
/// of partial blocks +0). Built on the device by block_sparse_from_dense; `to_host` gives
/// the block_sparse_matrix the CPU builds from the same weight and mask.
template <class T, class Index = std::int32_t>
class device_block_sparse {
 public:
  device_block_sparse() = default;
  device_block_sparse(std::size_t rows, std::size_t cols, std::size_t br, std::size_t bc, device_buffer<Index> row_ptr,
                      device_buffer<Index> col_idx, device_buffer<T> values)
      : rows_(rows), cols_(cols), br_(br), bc_(bc), row_ptr_(std::move(row_ptr)), col_idx_(std::move(col_idx)), values_(std::move(values)) {}

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t block_rows() const noexcept { return br_; }
  std::size_t block_cols() const noexcept { return bc_; }
  std::size_t block_row_count() const noexcept { return (rows_ + br_ - 1) / br_; }
  std::size_t block_col_count() const noexcept { return (cols_ + bc_ - 1) / bc_; }
  std::size_t nnz_blocks() const noexcept { return col_idx_.size(); }
  const Index* row_ptr() const noexcept { return row_ptr_.data(); }
  const Index* col_idx() const noexcept { return col_idx_.data(); }
  const T* values() const noexcept { return values_.data(); }

  /// Copies the arrays to the host as a sparse::block_sparse_matrix (validated;
  /// synchronises `s`).
  sparse::block_sparse_matrix<T, Index> to_host(stream_ref s = {}) const {
    auto rp = detail::download(row_ptr(), block_row_count() + 1, s);
    auto ci = detail::download(col_idx(), nnz_blocks(), s);
    auto v = detail::download(values(), values_.size(), s);
    check(cudaStreamSynchronize(s), "device_block_sparse::to_host");
    return sparse::block_sparse_matrix<T, Index>::from_parts(rows_, cols_, br_, bc_, std::move(rp), std::move(ci), std::move(v));
  }

 private:
  std::size_t rows_ = 0, cols_ = 0, br_ = 1, bc_ = 1;
  device_buffer<Index> row_ptr_, col_idx_;
  device_buffer<T> values_;
};

/// Compresses a contiguous 2-D device weight and its device keep mask into a device
/// block-sparse matrix of br x bc blocks (the arrays sparse::block_sparse_matrix::from_dense
/// builds on the host from the same weight and mask): a hit flag per block, one exclusive
/// scan (every stored block's index; row_ptr read off it at each block row's first block),
/// a write pass per block. Synchronises `s` once, to read the block count and size the
/// arrays. Throws spruce::error, writing nothing, for a weight that is not 2-D or not
/// contiguous, a mask of another shape, a block shape with a zero side, or more block
/// columns or blocks than Index can count.
template <class Index = std::int32_t, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
device_block_sparse<view_value_t<V>, Index> block_sparse_from_dense(const V& dense, const device_mask& keep, std::size_t br, std::size_t bc,
                                                                    const std::string& name = {}, stream_ref s = {}) {
  using T = view_value_t<V>;
  const auto d = to_const_ref(dense);
  detail::check_compress_input(d, keep, "block_sparse_from_dense", name);
  if (br == 0 || bc == 0)
    throw error("cuda::block_sparse_from_dense: block shape " + std::to_string(br) + " x " + std::to_string(bc) + " for " +
                spruce::detail::tensor_label(name) + "; blocks need at least one row and one column (e.g. 4 x 4)");
  const std::size_t rows = d.extent(0), cols = d.extent(1), nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
  if (nbc > static_cast<std::size_t>(std::numeric_limits<Index>::max()))
    throw error("block_sparse_matrix: " + std::to_string(nbc) + " block columns do not fit the index type; use a wider Index");
  const std::size_t nblocks = nbr * nbc;
  device_buffer<unsigned long long> flag(nblocks + 1, s), at(nblocks + 1, s);
  detail::block_flag_kernel<><<<detail::grid_for(nblocks + 1), detail::block_threads, 0, s>>>(keep.data(), rows, cols, br, bc, nbc ? nbc : 1,
                                                                                          nblocks, flag.data());
  std::size_t temp_bytes = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, temp_bytes, flag.data(), at.data(), nblocks + 1, s), "block scan");
  device_buffer<unsigned char> temp(temp_bytes, s);
  check(cub::DeviceScan::ExclusiveSum(temp.data(), temp_bytes, flag.data(), at.data(), nblocks + 1, s), "block scan");
  unsigned long long stored = 0;
  check(cudaMemcpyAsync(&stored, at.data() + nblocks, sizeof(stored), cudaMemcpyDeviceToHost, s), "block_sparse_from_dense");
  check(cudaStreamSynchronize(s), "block_sparse_from_dense of " + spruce::detail::tensor_label(name));
  if (stored >= static_cast<unsigned long long>(std::numeric_limits<Index>::max()))
    throw error("block_sparse_matrix: more blocks than the index type can count; use a 64-bit Index");
  device_buffer<Index> row_ptr(nbr + 1, s), col_idx(stored, s);
  device_buffer<T> values(stored * br * bc, s);
  if (nblocks == 0)
    check(cudaMemsetAsync(row_ptr.data(), 0, (nbr + 1) * sizeof(Index), s), "block_sparse_from_dense");
  else
    detail::block_write_kernel<T, Index><<<detail::grid_for(nblocks), detail::block_threads, 0, s>>>(
        d.data(), keep.data(), rows, cols, br, bc, nbr, nbc, flag.data(), at.data(), row_ptr.data(), col_idx.data(), values.data());
  check(cudaGetLastError(), "the block-sparse compression kernels of " + spruce::detail::tensor_label(name));
  return device_block_sparse<T, Index>(rows, cols, br, bc, std::move(row_ptr), std::move(col_idx), std::move(values));
}

/// block_sparse_from_dense with a sparse::block_shape (the format's options_type).
template <class Index = std::int32_t, any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
device_block_sparse<view_value_t<V>, Index> block_sparse_from_dense(const V& dense, const device_mask& keep, const sparse::block_shape& b,
                                                                    const std::string& name = {}, stream_ref s = {}) {
  return block_sparse_from_dense<Index>(dense, keep, b.rows, b.cols, name, s);
}

/// An N:M matrix in device memory with sparse::n_m_matrix's exact layout (rows x
/// ceil(cols / M) x N values, row-major; positions packed index_bits() bits each, row by
/// row in row_bytes() bytes, low bits first). Built on the device by n_m_from_dense;
/// multiplied by cuda::spmm; `to_host` gives the n_m_matrix the CPU builds from the same
/// weight and mask.
template <class T>
class device_n_m {
 public:
  device_n_m() = default;
  device_n_m(std::size_t rows, std::size_t cols, std::size_t n, std::size_t m, device_buffer<T> values, device_buffer<std::uint8_t> positions)
      : rows_(rows), cols_(cols), n_(n), m_(m), values_(std::move(values)), positions_(std::move(positions)) {}

  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  std::size_t n() const noexcept { return n_; }
  std::size_t m() const noexcept { return m_; }
  std::size_t groups_per_row() const noexcept { return (cols_ + m_ - 1) / m_; }
  std::size_t index_bits() const noexcept { return sparse::n_m_matrix<T>::index_bits_for(m_); }
  std::size_t row_bytes() const noexcept { return (groups_per_row() * n_ * index_bits() + 7) / 8; }
  std::size_t stored_values() const noexcept { return values_.size(); }
  const T* values() const noexcept { return values_.data(); }
  const std::uint8_t* positions() const noexcept { return positions_.data(); }

  /// Copies the arrays to the host as a sparse::n_m_matrix (validated; synchronises `s`).
  sparse::n_m_matrix<T> to_host(stream_ref s = {}) const {
    auto v = detail::download(values(), values_.size(), s);
    auto p = detail::download(positions(), positions_.size(), s);
    check(cudaStreamSynchronize(s), "device_n_m::to_host");
    return sparse::n_m_matrix<T>::from_parts(rows_, cols_, n_, m_, std::move(v), std::move(p));
  }

 private:
  std::size_t rows_ = 0, cols_ = 0, n_ = 0, m_ = 1;
  device_buffer<T> values_;
  device_buffer<std::uint8_t> positions_;
};

/// Compresses a contiguous 2-D device weight and its device keep mask (with the pattern:
/// from cuda::n_m_mask / n_m_prune) into a device N:M matrix, groups along the last axis
/// (the arrays sparse::n_m_matrix::from_dense builds on the host): a check pass over the
/// groups, then one thread per byte-aligned chunk of groups writing values and positions.
/// Synchronises `s` once (the check's read-back). Throws spruce::error with the CPU's
/// message for a group keeping more than N (naming its row and group) or a bad pattern,
/// and for a weight that is not 2-D or not contiguous or a mask of another shape.
template <any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
device_n_m<view_value_t<V>> n_m_from_dense(const V& dense, const device_mask& keep, std::size_t n, std::size_t m, const std::string& name = {},
                                           stream_ref s = {}) {
  using T = view_value_t<V>;
  const auto d = to_const_ref(dense);
  if (m == 0 || m > 256 || n >= m)
    throw error("n_m_matrix::from_dense: pattern " + std::to_string(n) + ":" + std::to_string(m) + "; N:M needs 0 <= N < M <= 256 (e.g. 2:4)");
  detail::check_compress_input(d, keep, "n_m_from_dense", name);
  const std::size_t rows = d.extent(0), cols = d.extent(1), groups = (cols + m - 1) / m;
  const std::size_t bits = sparse::n_m_matrix<T>::index_bits_for(m), rb = (groups * n * bits + 7) / 8;
  const std::size_t step = sparse::detail::n_m_step_groups(n, bits);
  device_buffer<T> values(rows * groups * n, s);
  device_buffer<std::uint8_t> positions(rows * rb, s);
  if (rows * groups == 0) return device_n_m<T>(rows, cols, n, m, std::move(values), std::move(positions));
  device_buffer<detail::scan_status> st(1, s);
  detail::status_init_kernel<int><<<1, 1, 0, s>>>(st.data());
  detail::n_m_check_kernel<><<<detail::grid_for(rows * groups), detail::block_threads, 0, s>>>(keep.data(), rows, cols, n, m, st.data());
  detail::scan_status back{};
  check(cudaMemcpyAsync(&back, st.data(), sizeof(back), cudaMemcpyDeviceToHost, s), "n_m_from_dense");
  check(cudaStreamSynchronize(s), "n_m_from_dense of " + spruce::detail::tensor_label(name));
  if (back.nan_count) {
    const std::size_t f = static_cast<std::size_t>(back.first_nan), i = f / groups, g = f % groups, j0 = g * m;
    const std::size_t len = std::min(m, cols - j0);
    const auto bytes = detail::download(keep.data() + i * cols + j0, len, s);
    check(cudaStreamSynchronize(s), "n_m_from_dense");
    std::size_t count = 0;
    for (const std::uint8_t k : bytes) count += k != 0;
    throw error("n_m_matrix::from_dense: the mask keeps " + std::to_string(count) + " entries in row " + std::to_string(i) + ", group " +
                std::to_string(g) + " (columns " + std::to_string(j0) + " to " + std::to_string(j0 + len - 1) + "); the " +
                std::to_string(n) + ":" + std::to_string(m) + " pattern stores at most " + std::to_string(n) + " of every " +
                std::to_string(m) + " consecutive columns; prune with spruce::n_m_prune first");
  }
  const std::size_t chunks = rows * ((groups + step - 1) / step);
  detail::n_m_write_kernel<T><<<detail::grid_for(chunks), detail::block_threads, 0, s>>>(d.data(), keep.data(), rows, cols, n, m, bits, step, rb,
                                                                                       values.data(), positions.data());
  check(cudaGetLastError(), "the N:M compression kernels of " + spruce::detail::tensor_label(name));
  return device_n_m<T>(rows, cols, n, m, std::move(values), std::move(positions));
}

/// n_m_from_dense with a granularity::n_m_pattern (the format's options_type).
template <any_view V>
  requires std::same_as<view_space_t<V>, cuda_space>
device_n_m<view_value_t<V>> n_m_from_dense(const V& dense, const device_mask& keep, const granularity::n_m_pattern& p,
                                           const std::string& name = {}, stream_ref s = {}) {
  return n_m_from_dense(dense, keep, p.n, p.m, name, s);
}

/// C = alpha * A * B + beta * C on the device for a device block-sparse weight A [rows,
/// cols] through cuSPARSE SpMM (CUSPARSE_SPMM_BSR_ALG1, blocks row-major), B [cols, n] and
/// C [rows, n] contiguous row-major device views; the cuSPARSE state is kept as for
/// csr_product (preprocessing once per right-hand-side width). cuSPARSE's BSR covers whole
/// blocks only, so the block shape must divide the matrix (a partial last block row or
/// column is refused with spruce::error: pad the weight, or use CSR). Not thread-safe; one
/// per weight and stream; the weight's arrays must outlive it. cuSPARSE sums in its own
/// order: results agree with the CPU's spmm to rounding, not bit for bit.
template <class T, class Index = std::int32_t>
class bsr_product : detail::cusparse_spmm<T> {
 public:
  explicit bsr_product(const device_block_sparse<T, Index>& a)
      : detail::cusparse_spmm<T>(a.rows(), a.cols(), CUSPARSE_SPMM_BSR_ALG1, "bsr_product") {
    if (a.rows() % a.block_rows() != 0 || a.cols() % a.block_cols() != 0)
      throw error("cuda::bsr_product: a " + std::to_string(a.rows()) + " x " + std::to_string(a.cols()) + " weight in " +
                  std::to_string(a.block_rows()) + " x " + std::to_string(a.block_cols()) +
                  " blocks has partial blocks, which cuSPARSE's BSR does not take; pick a block shape that divides the weight, or use "
                  "csr_product");
    check(cusparseCreateBsr(&this->a_, static_cast<std::int64_t>(a.block_row_count()), static_cast<std::int64_t>(a.block_col_count()),
                            static_cast<std::int64_t>(a.nnz_blocks()), static_cast<std::int64_t>(a.block_rows()),
                            static_cast<std::int64_t>(a.block_cols()), const_cast<Index*>(a.row_ptr()), const_cast<Index*>(a.col_idx()),
                            const_cast<T*>(a.values()), detail::cusparse_index<Index>(), detail::cusparse_index<Index>(),
                            CUSPARSE_INDEX_BASE_ZERO, detail::cuda_type<T>(), CUSPARSE_ORDER_ROW),
          "cusparseCreateBsr");
  }

  template <any_view VB, any_view VC>
    requires std::same_as<view_space_t<VB>, cuda_space> && std::same_as<view_space_t<VC>, cuda_space>
  void operator()(const VB& b, const VC& c, T alpha = T(1), T beta = T(0), stream_ref s = {}) {
    this->run(b, c, alpha, beta, s);
  }
};

/// C = alpha * A * B + beta * C on the device for a device N:M weight A [rows, cols] (any
/// pattern), B [cols, n] and C [rows, n] contiguous row-major device views: spruce's own
/// exact product, FP32 (or FP64) multiply and add, no TF32 and no FMA contraction, one
/// thread per output. Order of accumulation (detail::n_m_dot): from +0, the row's stored
/// slots in storage order, then alpha * sum (+ beta * C); the CPU's sparse::spmm adds in
/// the same order whenever a row fits one of its K slices, and then the two agree bit for
/// bit. Needs no setup and no workspace; enqueues one kernel on `s`. Throws spruce::error,
/// enqueuing nothing, for other shapes or strided views.
template <class T, any_view VB, any_view VC>
  requires std::same_as<view_space_t<VB>, cuda_space> && std::same_as<view_space_t<VC>, cuda_space>
void spmm(const device_n_m<T>& a, const VB& b_view, const VC& c_view, std::type_identity_t<T> alpha = T(1),
          std::type_identity_t<T> beta = T(0), stream_ref s = {}) {
  const auto b = to_const_ref(b_view);
  const auto c = to_ref(c_view);
  static_assert(std::same_as<view_value_t<VB>, T> && std::same_as<view_value_t<VC>, T>, "cuda::spmm: B and C hold the weight's type");
  if (b.rank() != 2 || c.rank() != 2 || b.extent(0) != a.cols() || c.extent(0) != a.rows() || b.extent(1) != c.extent(1))
    throw error("cuda::spmm: B of shape " + shape_string(b.shape()) + " and C of shape " + shape_string(c.shape()) + " do not fit a " +
                std::to_string(a.rows()) + " x " + std::to_string(a.cols()) + " N:M weight; pass B [" + std::to_string(a.cols()) +
                ", n] and C [" + std::to_string(a.rows()) + ", n]");
  detail::check_device_data(b, "B");
  detail::check_device_data(c, "C");
  detail::require_contiguous(b, "cuda::spmm", "B");
  detail::require_contiguous(c, "cuda::spmm", "C");
  const std::size_t outputs = a.rows() * b.extent(1);
  if (outputs == 0) return;
  detail::n_m_spmm_kernel<T><<<detail::grid_for(outputs), detail::block_threads, 0, s>>>(
      a.values(), a.positions(), a.rows(), a.cols(), a.n(), a.m(), a.index_bits(), a.row_bytes(), b.data(), b.extent(1), c.data(), alpha, beta);
  check(cudaGetLastError(), "the N:M product kernel");
}

}  // namespace spruce::cuda

// ---- 2:4 fp16 / bf16 through cuSPARSELt (optional) -------------------------------------
// Declared only when <cusparseLt.h> is found (SPRUCE_HAS_CUSPARSELT == 1); nothing else in
// spruce needs it, and a toolkit without it builds everything else unchanged. Link
// cusparseLt yourself when you use sparselt_product; define SPRUCE_HAS_CUSPARSELT=0 to leave
// it out where the header exists but the library does not.
#if defined(__has_include) && !defined(SPRUCE_HAS_CUSPARSELT)
#if __has_include(<cusparseLt.h>)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cusparseLt.h>
#define SPRUCE_HAS_CUSPARSELT 1
#endif
#endif
#if !defined(SPRUCE_HAS_CUSPARSELT)
#define SPRUCE_HAS_CUSPARSELT 0
#endif

#if SPRUCE_HAS_CUSPARSELT
namespace spruce::cuda {

/// C = alpha * A * B + beta * C with a 2:4-pruned fp16 or bf16 weight A [rows, cols] on
/// the sparse tensor cores, through cuSPARSELt (>= 0.6; compute in FP32): the weight is
/// checked for the pattern (cusparseLtSpMMAPruneCheck: 2 of every 4 consecutive entries of
/// a row nonzero at most, what cuda::n_m_prune<2, 4> leaves) and compressed once; the
/// matmul plan (and the compressed copy it lays out) is made once per right-hand-side
/// width, since that is where cuSPARSELt's setup cost goes. B [cols, n] and C [rows, n]
/// are contiguous row-major device views of T. Not thread-safe; one per weight and stream;
/// the dense weight may be freed after construction. Only declared where <cusparseLt.h> is
/// found at compile time.
template <class T>
class sparselt_product {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "cuda::sparselt_product: __half or __nv_bfloat16 weights");
  static void ok(cusparseStatus_t st, const char* what) {
    if (st != CUSPARSE_STATUS_SUCCESS) throw error(std::string("cuSPARSELt error in ") + what + ": status " + std::to_string(static_cast<int>(st)));
  }
  static constexpr cudaDataType type = std::is_same_v<T, __half> ? CUDA_R_16F : CUDA_R_16BF;

 public:
  template <any_view V>
    requires std::same_as<view_space_t<V>, cuda_space> && std::same_as<std::remove_cv_t<view_value_t<V>>, T>
  explicit sparselt_product(const V& weight, const std::string& name = {}, stream_ref s = {}) {
    const auto w = to_const_ref(weight);
    detail::check_device_data(w, name);
    if (w.rank() != 2) throw error("cuda::sparselt_product: " + spruce::detail::tensor_label(name) + " of shape " + shape_string(w.shape()) + " is not 2-D");
    detail::require_contiguous(w, "cuda::sparselt_product", name);
    rows_ = w.extent(0);
    cols_ = w.extent(1);
    dense_ = device_buffer<T>(w.size(), s);
    check(cudaMemcpyAsync(dense_.data(), w.data(), w.size() * sizeof(T), cudaMemcpyDeviceToDevice, s), "sparselt_product");
    ok(cusparseLtInit(&handle_), "cusparseLtInit");
    live_ = true;
    name_ = name;
  }
  sparselt_product(const sparselt_product&) = delete;
  sparselt_product& operator=(const sparselt_product&) = delete;
  ~sparselt_product() {
    release_plan();
    if (live_) (void)cusparseLtDestroy(&handle_);
  }

  template <any_view VB, any_view VC>
    requires std::same_as<view_space_t<VB>, cuda_space> && std::same_as<view_space_t<VC>, cuda_space>
  void operator()(const VB& b_view, const VC& c_view, float alpha = 1.0f, float beta = 0.0f, stream_ref s = {}) {
    const auto b = to_const_ref(b_view);
    const auto c = to_ref(c_view);
    if (b.rank() != 2 || c.rank() != 2 || b.extent(0) != cols_ || c.extent(0) != rows_ || b.extent(1) != c.extent(1))
      throw error("cuda::sparselt_product: B of shape " + shape_string(b.shape()) + " and C of shape " + shape_string(c.shape()) +
                  " do not fit a " + std::to_string(rows_) + " x " + std::to_string(cols_) + " weight");
    detail::require_contiguous(b, "cuda::sparselt_product", "B");
    detail::require_contiguous(c, "cuda::sparselt_product", "C");
    const std::size_t n = b.extent(1);
    if (n != planned_n_) make_plan(n, s);
    cudaStream_t st = s;
    ok(cusparseLtMatmul(&handle_, &plan_, &alpha, compressed_.data(), b.data(), &beta, c.data(), c.data(), work_.data(), &st, 1),
       "cusparseLtMatmul");
  }

 private:
  void release_plan() noexcept {
    if (!planned_) return;
    (void)cusparseLtMatmulPlanDestroy(&plan_);
    (void)cusparseLtMatDescriptorDestroy(&a_);
    (void)cusparseLtMatDescriptorDestroy(&b_);
    (void)cusparseLtMatDescriptorDestroy(&c_);
    planned_ = false;
  }

  void make_plan(std::size_t n, stream_ref s) {
    release_plan();
    const auto r = static_cast<std::int64_t>(rows_), k = static_cast<std::int64_t>(cols_), nn = static_cast<std::int64_t>(n);
    const auto op = CUSPARSE_OPERATION_NON_TRANSPOSE;
    ok(cusparseLtStructuredDescriptorInit(&handle_, &a_, r, k, k, 16, type, CUSPARSE_ORDER_ROW, CUSPARSELT_SPARSITY_50_PERCENT),
       "cusparseLtStructuredDescriptorInit");
    ok(cusparseLtDenseDescriptorInit(&handle_, &b_, k, nn, nn, 16, type, CUSPARSE_ORDER_ROW), "cusparseLtDenseDescriptorInit");
    ok(cusparseLtDenseDescriptorInit(&handle_, &c_, r, nn, nn, 16, type, CUSPARSE_ORDER_ROW), "cusparseLtDenseDescriptorInit");
    ok(cusparseLtMatmulDescriptorInit(&handle_, &matmul_, op, op, &a_, &b_, &c_, &c_, CUSPARSE_COMPUTE_32F), "cusparseLtMatmulDescriptorInit");
    ok(cusparseLtMatmulAlgSelectionInit(&handle_, &alg_, &matmul_, CUSPARSELT_MATMUL_ALG_DEFAULT), "cusparseLtMatmulAlgSelectionInit");
    ok(cusparseLtMatmulPlanInit(&handle_, &plan_, &matmul_, &alg_), "cusparseLtMatmulPlanInit");
    planned_ = true;
    device_buffer<int> bad(1, s);
    ok(cusparseLtSpMMAPruneCheck(&handle_, &matmul_, dense_.data(), bad.data(), s), "cusparseLtSpMMAPruneCheck");
    int back = 0;
    check(cudaMemcpyAsync(&back, bad.data(), sizeof(int), cudaMemcpyDeviceToHost, s), "sparselt_product");
    check(cudaStreamSynchronize(s), "the 2:4 check of " + spruce::detail::tensor_label(name_));
    if (back != 0)
      throw error("cuda::sparselt_product: " + spruce::detail::tensor_label(name_) +
                  " does not have the 2:4 pattern along its rows; prune it with cuda::n_m_prune<2, 4> first");
    std::size_t size = 0, buffer = 0, work = 0;
    ok(cusparseLtSpMMACompressedSize(&handle_, &plan_, &size, &buffer), "cusparseLtSpMMACompressedSize");
    compressed_ = device_buffer<unsigned char>(size, s);
    device_buffer<unsigned char> tmp(buffer, s);
    ok(cusparseLtSpMMACompress(&handle_, &plan_, dense_.data(), compressed_.data(), tmp.data(), s), "cusparseLtSpMMACompress");
    ok(cusparseLtMatmulGetWorkspace(&handle_, &plan_, &work), "cusparseLtMatmulGetWorkspace");
    work_ = device_buffer<unsigned char>(work, s);
    planned_n_ = n;
  }

  std::size_t rows_ = 0, cols_ = 0, planned_n_ = 0;
  std::string name_;
  bool live_ = false, planned_ = false;
  cusparseLtHandle_t handle_{};
  cusparseLtMatDescriptor_t a_{}, b_{}, c_{};
  cusparseLtMatmulDescriptor_t matmul_{};
  cusparseLtMatmulAlgSelection_t alg_{};
  cusparseLtMatmulPlan_t plan_{};
  device_buffer<T> dense_;
  device_buffer<unsigned char> compressed_, work_;
};

}  // namespace spruce::cuda
#endif
