#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/simd.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/metrics/macs.hpp"
#include "spruce/sparse/format.hpp"

namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {

/// Geometry of a 2-D convolution (PyTorch's Conv2d arguments, groups = 1).
struct conv2d_params {
  std::size_t kernel_h = 3, kernel_w = 3;
  std::size_t stride_h = 1, stride_w = 1;
  std::size_t pad_h = 0, pad_w = 0;
  std::size_t dilation_h = 1, dilation_w = 1;
};

/// Output positions [lo, hi) along one axis whose input position o * stride + offset - pad
/// (offset = kernel index * dilation) lies inside [0, in): the run of one kernel offset
/// that im2col copies (and its adjoint, col2im, adds back), padding on either side.
struct valid_run {
  std::size_t lo, hi;
};
inline valid_run valid_outputs(std::size_t in, std::size_t out, std::size_t offset, std::size_t stride,
                               std::size_t pad) noexcept {
  std::size_t lo = offset >= pad ? 0 : (pad - offset + stride - 1) / stride;
  std::size_t hi = in + pad > offset ? (in + pad - offset - 1) / stride + 1 : 0;
  hi = std::min(hi, out);
  return {std::min(lo, hi), hi};
}

/// Unfolds a batch of NCHW images into the im2col matrix [C * kh * kw, N * OH * OW]
/// (row (c, ky, kx), column (n, oy, ox)), zeros where a window reaches into the padding.
/// The weight viewed as [out, C * kh * kw] times this matrix is the convolution, with the
/// batch folded into the GEMM's N so that small feature maps still give wide products.
/// `cols` must hold C * kh * kw * N * OH * OW elements. Each output row is written as
/// runs: the valid span of every kernel offset is one copy (one shifted block copy of the
/// whole plane for "same" convolutions: stride 1, no dilation, output as large as the
/// input), padding is filled around it. Rows are split between threads. `input` is any
/// host view.
template <host_view V>
void im2col(const V& input_view, const conv2d_params& p, view_value_t<V>* cols) {
  using T = view_value_t<V>;
  const tensor_ref<const T> input = to_const_ref(input_view);
  if (input.rank() != 4 || !input.is_contiguous())
    throw error("im2col: input of shape " + shape_string(input.shape()) + " is not a packed NCHW batch");
  const std::size_t n = input.extent(0), c = input.extent(1), h = input.extent(2), w = input.extent(3);
  const std::size_t oh = conv2d_output_extent(h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  const std::size_t ow = conv2d_output_extent(w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  const std::size_t plane = oh * ow, rows = c * p.kernel_h * p.kernel_w, width = n * plane;
  const bool same = p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 && p.dilation_w == 1 && oh == h && ow == w;
  const T* in = input.data();
  parallel_for(0, rows, [&](std::size_t r) {
    const std::size_t ch = r / (p.kernel_h * p.kernel_w);
    const std::size_t ky = r / p.kernel_w % p.kernel_h, kx = r % p.kernel_w;
    const auto [xlo, xhi] = valid_outputs(w, ow, kx * p.dilation_w, p.stride_w, p.pad_w);
    const auto [ylo, yhi] = valid_outputs(h, oh, ky * p.dilation_h, p.stride_h, p.pad_h);
    T* row = cols + r * width;
    for (std::size_t b = 0; b < n; ++b) {
      const T* src = in + (b * c + ch) * h * w;
      T* dst = row + b * plane;
      if (same) {
        // Output (oy, ox) reads src[oy * w + ox + shift]: one block copy of the valid rows,
        // then the columns that wrapped around a row edge are zeroed.
        const auto shift = (static_cast<std::ptrdiff_t>(ky) - static_cast<std::ptrdiff_t>(p.pad_h)) *
                               static_cast<std::ptrdiff_t>(w) +
                           static_cast<std::ptrdiff_t>(kx) - static_cast<std::ptrdiff_t>(p.pad_w);
        // Clamped so that src + i + shift stays inside the plane (the first and last valid
        // rows can reach one element past it; those are wrapped columns, zeroed below).
        const auto total = static_cast<std::ptrdiff_t>(plane);
        // (A map smaller than the kernel's reach, 1 x 1 under a padded 3 x 3, has -shift > plane.)
        const std::ptrdiff_t begin = std::min(total, std::max(static_cast<std::ptrdiff_t>(ylo * ow), -shift));
        const std::ptrdiff_t end = std::max(begin, std::min(static_cast<std::ptrdiff_t>(yhi * ow), total - shift));
        std::fill(dst, dst + begin, T(0));
        std::copy(src + begin + shift, src + end + shift, dst + begin);
        std::fill(dst + end, dst + plane, T(0));
        for (std::size_t oy = ylo; oy < yhi; ++oy) {
          std::fill(dst + oy * ow, dst + oy * ow + xlo, T(0));
          std::fill(dst + oy * ow + xhi, dst + (oy + 1) * ow, T(0));
        }
        continue;
      }
      std::fill(dst, dst + ylo * ow, T(0));
      for (std::size_t oy = ylo; oy < yhi; ++oy) {
        T* out = dst + oy * ow;
        std::fill(out, out + xlo, T(0));
        if (xlo < xhi) {
          const std::size_t iy = oy * p.stride_h + ky * p.dilation_h - p.pad_h;
          const T* line = src + iy * w + (xlo * p.stride_w + kx * p.dilation_w - p.pad_w);
          if (p.stride_w == 1)
            std::copy(line, line + (xhi - xlo), out + xlo);
          else
            for (std::size_t ox = xlo; ox < xhi; ++ox) out[ox] = line[(ox - xlo) * p.stride_w];
        }
        std::fill(out + xhi, out + ow, T(0));
      }
      std::fill(dst + yhi * ow, dst + plane, T(0));
    }
  }, total_work{rows * width});
}

/// Scratch for `conv2d`: the im2col matrix and the [out, N * OH * OW] product. Reuse one
/// across calls to avoid reallocating per batch.
template <class T>
struct conv2d_workspace {
  std::vector<T> cols, product;
};

/// Conv2d forward with a sparse weight: `weight` is the conv weight [out, C, kh, kw]
/// viewed as [out, C * kh * kw] in any sparse_format (CSR, block, N:M, or a user's own);
/// `input` is NCHW [N, C, H, W], `output` NCHW [N, out, OH, OW] (any host views, packed),
/// `bias` is empty (no bias) or has `out` entries. Computes im2col of the whole batch, one
/// sparse x dense product, and scatters the [out, N * OH * OW] result into NCHW. Throws
/// spruce::error, writing nothing, when the shapes or the bias size disagree.
template <sparse_format S, host_view VI, host_view VO>
  requires mutable_view<VO> && std::same_as<view_value_t<VI>, typename S::value_type> &&
           std::same_as<view_value_t<VO>, typename S::value_type>
void conv2d(const S& weight, const VI& input_view, const VO& output_view, const conv2d_params& p,
            std::span<const typename S::value_type> bias, conv2d_workspace<typename S::value_type>& ws) {
  using T = typename S::value_type;
  const tensor_ref<const T> input = to_const_ref(input_view);
  const tensor_ref<T> output = to_ref(output_view);
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
  if (!bias.empty() && bias.size() != out)
    throw error("sparse::conv2d: the bias has " + std::to_string(bias.size()) + " entries but the weight has " +
                std::to_string(out) + " output channels; pass one bias per output channel, or none");
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
  const T* bias_data = bias.empty() ? nullptr : bias.data();
  parallel_for(0, n * out, [&](std::size_t job) {
    const std::size_t b = job / out, co = job % out;
    const T* src = prod + co * width + b * hw;
    T* dst = o + job * hw;
    const T add = bias_data ? bias_data[co] : T(0);
    for (std::size_t i = 0; i < hw; ++i) dst[i] = src[i] + add;
  }, total_work{out * width});
}

/// `conv2d` with a workspace of its own (allocates per call).
template <sparse_format S, host_view VI, host_view VO>
  requires mutable_view<VO> && std::same_as<view_value_t<VI>, typename S::value_type> &&
           std::same_as<view_value_t<VO>, typename S::value_type>
void conv2d(const S& weight, const VI& input, const VO& output, const conv2d_params& p,
            std::span<const typename S::value_type> bias = {}) {
  conv2d_workspace<typename S::value_type> ws;
  conv2d(weight, input, output, p, bias, ws);
}

}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
