#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/metrics/size.hpp"

// Multiply-accumulate counts follow torchprofile, the MIT lab's profiler: only convolutions
// and linear layers count (batch norm, activations and pooling are free), and a layer costs
// one MAC per weight per output position. Counts are 64-bit; sizes are in elements.

namespace spruce {

namespace detail::metrics {

inline std::string axis_text(std::size_t in, std::size_t kernel, std::size_t stride,
                             std::size_t padding, std::size_t dilation) {
  return "(input " + std::to_string(in) + ", kernel " + std::to_string(kernel) + ", stride " +
         std::to_string(stride) + ", padding " + std::to_string(padding) + ", dilation " +
         std::to_string(dilation) + ")";
}

/// Validates one sliding-window axis and returns how far the window can travel:
/// (padded input) - (effective kernel) + `overhang`, where `overhang` is how far the last
/// window may run past the padded input (0 for convolution, stride - 1 for a ceil-mode
/// pool). Shared by convolution and pooling, which PyTorch sizes with the same formula.
inline std::uint64_t window_travel(const char* op, std::size_t in, std::size_t kernel,
                                   std::size_t stride, std::size_t padding, std::size_t dilation,
                                   bool ceil_mode = false) {
  const auto what = [&] {
    return std::string(op) + " " + axis_text(in, kernel, stride, padding, dilation);
  };
  if (stride == 0) throw error(what() + ": stride is 0; pass a stride of at least 1");
  if (kernel == 0) throw error(what() + ": kernel size is 0; pass a kernel of at least 1");
  if (dilation == 0)
    throw error(what() + ": dilation is 0; pass 1 for an ordinary (undilated) kernel");
  std::uint64_t effective = 0, padded = 0, two_p = 0, reach = 0;
  if (!mul_fits(dilation, kernel - 1, effective) || !add_fits(effective, 1, effective) ||
      !mul_fits(2, padding, two_p) || !add_fits(in, two_p, padded) ||
      !add_fits(padded, ceil_mode ? stride - 1 : 0, reach))
    throw overflow_error(what());
  if (effective > reach)
    throw error(what() + ": the kernel spans " + std::to_string(effective) +
                " elements (dilation * (kernel - 1) + 1) but the padded input has only " +
                std::to_string(padded) +
                "; use a smaller kernel or dilation, more padding, or a larger input");
  return reach - effective;
}

}  // namespace detail::metrics

/// Output length of one spatial axis of a 2-D convolution, PyTorch's Conv2d rule:
/// `floor((in + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1`. Call it once for
/// the height and once for the width. Throws spruce::error when stride, kernel or dilation
/// is 0 or when the (dilated) kernel does not fit in the padded input, where PyTorch would
/// fail at run time.
inline std::size_t conv2d_output_extent(std::size_t in, std::size_t kernel, std::size_t stride = 1,
                                        std::size_t padding = 0, std::size_t dilation = 1) {
  const std::uint64_t travel =
      detail::metrics::window_travel("conv2d_output_extent", in, kernel, stride, padding, dilation);
  return static_cast<std::size_t>(travel / stride + 1);
}

/// How a pooling layer rounds a window that would run past the input: down (drop it,
/// PyTorch's default) or up (keep it, `ceil_mode=True`).
enum class pool_rounding { floor, ceil };

/// Output length of one spatial axis of a 2-D max or average pool, PyTorch's
/// MaxPool2d / AvgPool2d rule: the convolution formula, rounded down by default; with
/// `pool_rounding::ceil` rounded up (the last window may then run past the input), except
/// that the last window must start inside the input or its left padding. Throws
/// spruce::error for a stride, kernel or dilation of 0, for padding above half the kernel
/// size (PyTorch refuses it), and when not even one window fits.
inline std::size_t pool2d_output_extent(std::size_t in, std::size_t kernel, std::size_t stride,
                                        std::size_t padding = 0, std::size_t dilation = 1,
                                        pool_rounding rounding = pool_rounding::floor) {
  const bool ceil_mode = rounding == pool_rounding::ceil;
  const std::uint64_t travel = detail::metrics::window_travel(
      "pool2d_output_extent", in, kernel, stride, padding, dilation, ceil_mode);
  if (padding > kernel / 2)
    throw error("pool2d_output_extent " +
                detail::metrics::axis_text(in, kernel, stride, padding, dilation) +
                ": padding is more than half the kernel size; PyTorch rejects such a pool, so "
                "pass padding <= kernel / 2");
  std::uint64_t out = travel / stride + 1;
  // In ceil mode a window that would start in the right padding is dropped:
  // (out - 1) * stride >= in + padding, written without the product so it cannot overflow.
  const std::uint64_t start_limit = static_cast<std::uint64_t>(in) + padding;
  if (ceil_mode && out - 1 >= start_limit / stride + (start_limit % stride != 0)) --out;
  if (out == 0)
    throw error("pool2d_output_extent " +
                detail::metrics::axis_text(in, kernel, stride, padding, dilation) +
                ": no window starts inside the input; pass a non-empty input or padding");
  return static_cast<std::size_t>(out);
}

/// pool2d_output_extent with the stride equal to the kernel, PyTorch's default: a 2x2 max
/// pool halves an axis, rounding down (`pool2d_output_extent(7, 2) == 3`).
inline std::size_t pool2d_output_extent(std::size_t in, std::size_t kernel) {
  return pool2d_output_extent(in, kernel, kernel);
}

/// Multiply-accumulates of a 2-D convolution with weight shape
/// `[out_channels, in_channels / groups, kernel_h, kernel_w]` producing an
/// `out_h x out_w` map for each of `batch` samples:
/// `out_channels * (in_channels / groups) * kernel_h * kernel_w * out_h * out_w * batch`.
/// The weight shape already carries the grouping, so depthwise and grouped convolutions
/// need no extra argument; bias additions are not counted (torchprofile). Get out_h and
/// out_w from conv2d_output_extent. Throws spruce::error when the weight is not rank 4 or
/// the count overflows 64 bits.
inline std::uint64_t conv2d_macs(std::span<const std::size_t> weight_shape, std::size_t out_h,
                                 std::size_t out_w, std::size_t batch = 1) {
  if (weight_shape.size() != 4)
    throw error("conv2d_macs: weight shape " + shape_string(weight_shape) + " has rank " +
                std::to_string(weight_shape.size()) +
                "; pass a conv2d weight shape [out_channels, in_channels / groups, kernel_h, "
                "kernel_w]");
  const std::size_t factors[] = {weight_shape[0], weight_shape[1], weight_shape[2],
                                 weight_shape[3], out_h, out_w, batch};
  std::uint64_t macs = 1;
  for (std::size_t f : factors)
    if (!detail::metrics::mul_fits(macs, f, macs))
      throw detail::metrics::overflow_error(
          "conv2d_macs for weight " + shape_string(weight_shape) + ", output " +
          std::to_string(out_h) + " x " + std::to_string(out_w) + ", batch " +
          std::to_string(batch));
  return macs;
}

/// conv2d_macs with the weight shape written in place: `conv2d_macs({64, 3, 3, 3}, 32, 32)`.
inline std::uint64_t conv2d_macs(std::initializer_list<std::size_t> weight_shape, std::size_t out_h,
                                 std::size_t out_w, std::size_t batch = 1) {
  return conv2d_macs(std::span<const std::size_t>(weight_shape.begin(), weight_shape.size()),
                     out_h, out_w, batch);
}

/// Multiply-accumulates of a linear (fully connected) layer with an
/// `[out_features, in_features]` weight applied to `batch` input vectors:
/// `out_features * in_features * batch`; the bias is not counted (torchprofile). Throws
/// spruce::error when the count overflows 64 bits.
inline std::uint64_t linear_macs(std::size_t out_features, std::size_t in_features,
                                 std::size_t batch = 1) {
  std::uint64_t macs = 0;
  if (!detail::metrics::mul_fits(out_features, in_features, macs) ||
      !detail::metrics::mul_fits(macs, batch, macs))
    throw detail::metrics::overflow_error(
        "linear_macs for " + std::to_string(out_features) + " x " + std::to_string(in_features) +
        ", batch " + std::to_string(batch));
  return macs;
}

}  // namespace spruce
