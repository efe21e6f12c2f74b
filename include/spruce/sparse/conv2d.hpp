#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/metrics/macs.hpp"

namespace spruce::sparse {

/// Geometry of a 2-D convolution (PyTorch's Conv2d arguments, groups = 1).
struct conv2d_params {
  std::size_t kernel_h = 3, kernel_w = 3;
  std::size_t stride_h = 1, stride_w = 1;
  std::size_t pad_h = 0, pad_w = 0;
  std::size_t dilation_h = 1, dilation_w = 1;
};

/// Unfolds a batch of NCHW images into the im2col matrix [C * kh * kw, N * OH * OW]
/// (row (c, ky, kx), column (n, oy, ox)), zeros where a window reaches into the padding.
/// The weight viewed as [out, C * kh * kw] times this matrix is the convolution, with the
/// batch folded into the GEMM's N so that small feature maps still give wide products.
/// `cols` must hold C * kh * kw * N * OH * OW elements. Rows are split between threads.
template <class T>
void im2col(const tensor_ref<const T>& input, const conv2d_params& p, T* cols) {
  if (input.rank() != 4 || !input.is_contiguous())
    throw error("im2col: input of shape " + shape_string(input.shape()) + " is not a packed NCHW batch");
  const std::size_t n = input.extent(0), c = input.extent(1), h = input.extent(2), w = input.extent(3);
  const std::size_t oh = conv2d_output_extent(h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  const std::size_t ow = conv2d_output_extent(w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  const std::size_t rows = c * p.kernel_h * p.kernel_w, width = n * oh * ow;
  const T* in = input.data();
  parallel_for(0, rows, [&](std::size_t r) {
    const std::size_t ch = r / (p.kernel_h * p.kernel_w);
    const std::size_t ky = r / p.kernel_w % p.kernel_h, kx = r % p.kernel_w;
    T* dst = cols + r * width;
    for (std::size_t b = 0; b < n; ++b) {
      const T* plane = in + (b * c + ch) * h * w;
      for (std::size_t oy = 0; oy < oh; ++oy, dst += ow) {
        // Signed arithmetic: the padded row index may be negative.
        const long long y = static_cast<long long>(oy * p.stride_h + ky * p.dilation_h) - static_cast<long long>(p.pad_h);
        if (y < 0 || y >= static_cast<long long>(h)) {
          std::fill(dst, dst + ow, T(0));
          continue;
        }
        const T* src = plane + static_cast<std::size_t>(y) * w;
        for (std::size_t ox = 0; ox < ow; ++ox) {
          const long long x = static_cast<long long>(ox * p.stride_w + kx * p.dilation_w) - static_cast<long long>(p.pad_w);
          dst[ox] = (x < 0 || x >= static_cast<long long>(w)) ? T(0) : src[x];
        }
      }
    }
  }, rows * width >= parallel_threshold ? 2 : rows + 1);
}

/// Scratch for `conv2d`: the im2col matrix and the [out, N * OH * OW] product. Reuse one
/// across calls to avoid reallocating per batch.
template <class T>
struct conv2d_workspace {
  std::vector<T> cols, product;
};

/// A sparse x dense product `spmm(a, b, c, alpha, beta)` is defined for the format.
template <class S, class T>
concept sparse_operand = requires(const S& a, const tensor_ref<const T>& b, const tensor_ref<T>& c) {
  { a.rows() } -> std::convertible_to<std::size_t>;
  { a.cols() } -> std::convertible_to<std::size_t>;
  spmm(a, b, c, T(1), T(0));
};

/// Conv2d forward with a sparse weight: `weight` is the conv weight [out, C, kh, kw]
/// viewed as [out, C * kh * kw] in any sparse format with an `spmm` (CSR, block, N:M);
/// `input` is NCHW [N, C, H, W], `output` NCHW [N, out, OH, OW], `bias` (optional) has
/// `out` entries. Computes im2col of the whole batch, one sparse x dense product, and
/// scatters the [out, N * OH * OW] result into NCHW. Throws spruce::error, writing
/// nothing, when the shapes disagree.
template <class T, class Sparse>
  requires sparse_operand<Sparse, T>
void conv2d(const Sparse& weight, const tensor_ref<const T>& input, const tensor_ref<T>& output, const conv2d_params& p,
            const T* bias, conv2d_workspace<T>& ws) {
  if (input.rank() != 4 || output.rank() != 4 || !input.is_contiguous() || !output.is_contiguous())
    throw error("sparse::conv2d: input " + shape_string(input.shape()) + " and output " + shape_string(output.shape()) +
                " must be packed NCHW tensors");
  const std::size_t n = input.extent(0), c = input.extent(1);
  const std::size_t oh = conv2d_output_extent(input.extent(2), p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  const std::size_t ow = conv2d_output_extent(input.extent(3), p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  const std::size_t k = c * p.kernel_h * p.kernel_w, out = weight.rows();
  if (weight.cols() != k)
    throw error("sparse::conv2d: the weight has " + std::to_string(weight.cols()) + " columns but the input has " +
                std::to_string(c) + " channels and the kernel is " + std::to_string(p.kernel_h) + " x " +
                std::to_string(p.kernel_w) + " (need " + std::to_string(k) + "); view the weight as [out, in * kh * kw]");
  const std::array<std::size_t, 4> want{n, out, oh, ow};
  if (!std::ranges::equal(output.shape(), want))
    throw error("sparse::conv2d: output of shape " + shape_string(output.shape()) + "; this convolution produces " +
                shape_string(want));
  const std::size_t hw = oh * ow, width = n * hw;
  ws.cols.resize(k * width);
  ws.product.resize(out * width);
  im2col(input, p, ws.cols.data());
  const std::array<std::size_t, 2> sb{k, width}, sc{out, width};
  spmm(weight, tensor_ref<const T>(ws.cols.data(), sb), tensor_ref<T>(ws.product.data(), sc), T(1), T(0));
  T* o = output.data();
  const T* prod = ws.product.data();
  parallel_for(0, n * out, [&](std::size_t job) {
    const std::size_t b = job / out, co = job % out;
    const T* src = prod + co * width + b * hw;
    T* dst = o + job * hw;
    const T add = bias ? bias[co] : T(0);
    for (std::size_t i = 0; i < hw; ++i) dst[i] = src[i] + add;
  }, out * width >= parallel_threshold ? 2 : n * out + 1);
}

/// `conv2d` with a workspace of its own (allocates per call).
template <class T, class Sparse>
  requires sparse_operand<Sparse, T>
void conv2d(const Sparse& weight, const tensor_ref<const T>& input, const tensor_ref<T>& output, const conv2d_params& p,
            const T* bias = nullptr) {
  conv2d_workspace<T> ws;
  conv2d(weight, input, output, p, bias, ws);
}

}  // namespace spruce::sparse
