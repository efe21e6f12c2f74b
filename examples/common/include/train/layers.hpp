#pragma once
// The layers of the lab's VGG with their backward passes. Every layer is a class template
// over the scalar: float trains, double runs the finite-difference gradient checks; both are
// instantiated in src/layers.cpp. Activations are NCHW tensors owned by the caller, so a
// model can keep them from batch to batch. Layers validate their input and throw
// spruce::error before writing anything.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "train/tensor.hpp"

namespace train {

/// A 2-D convolution (square kernel, equal stride and padding on both axes, optional
/// bias), computed as im2col + GEMM. The batch is cut into chunks that the threads take in
/// parallel: a chunk is one image where a feature map is large and several where it is
/// small, so that every GEMM is wide enough to run at full speed. Each thread owns its
/// buffers, so after the first batch a pass allocates nothing. `backward` sets (does not
/// accumulate) the parameter gradients, summing the chunks' contributions in chunk order,
/// so that for a given thread count the result does not depend on the OS's scheduling.
template <class T>
class conv2d {
 public:
  /// Weight shape [out_channels, in_channels, kernel, kernel], zero-filled; the model
  /// initialises it. Throws spruce::error for a zero channel count, kernel or stride.
  conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
         std::size_t stride = 1, std::size_t padding = 0, bool bias = false);

  /// y = conv(x) (+ bias). Throws spruce::error when x has no sample, the wrong channel
  /// count, or a map smaller than the kernel.
  void forward(const tensor<T>& x, tensor<T>& y);
  /// Gradients of the weight (and bias) from the layer input `x` and the output gradient
  /// `dy`; the input gradient goes to `*dx` unless dx is null (the first layer needs none).
  void backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>* dx);

  std::size_t in_channels() const noexcept { return in_; }
  std::size_t out_channels() const noexcept { return out_; }
  std::size_t kernel() const noexcept { return k_; }
  std::size_t stride() const noexcept { return stride_; }
  std::size_t padding() const noexcept { return pad_; }
  bool has_bias() const noexcept { return !bias_.empty(); }
  std::array<std::size_t, 4> weight_shape() const noexcept { return {out_, in_, k_, k_}; }

  std::span<T> weight() noexcept { return weight_; }
  std::span<T> weight_grad() noexcept { return weight_grad_; }
  /// Empty when the layer was built without a bias.
  std::span<T> bias() noexcept { return bias_; }
  std::span<T> bias_grad() noexcept { return bias_grad_; }

 private:
  struct plan {
    std::size_t ho, wo, per_chunk, chunks, threads, parts;  // parts: runs of chunks, one scratch each
  };
  plan make_plan(const tensor<T>& x, const char* pass) const;
  // A 1x1 kernel with stride 1 and no padding: each image's input is its im2col matrix,
  // so the passes multiply it in place.
  bool pointwise() const noexcept { return k_ == 1 && stride_ == 1 && pad_ == 0; }
  void add_bias(tensor<T>& y, std::size_t first, std::size_t g) const;
  struct scratch {
    std::vector<T> cols, tmp, dcols;
  };
  void reserve(const plan& p);

  std::size_t in_, out_, k_, stride_, pad_;
  std::vector<T> weight_, weight_grad_, bias_, bias_grad_;
  std::vector<scratch> scratch_;       // one per thread
  std::vector<T> chunk_grads_;         // backward: weight and bias gradient of each chunk
};

/// Batch normalisation over (N, H, W) for each channel, PyTorch's BatchNorm2d: in training
/// it normalises with the batch statistics (biased variance) and moves the running mean
/// and variance (unbiased) by `momentum`; in evaluation it uses the running statistics.
/// The affine weight starts at 1 and the bias at 0, the running variance at 1. `backward`
/// differentiates the mode of the last forward and sets the parameter gradients.
///
/// With `relu` the layer is BatchNorm followed by ReLU in one pass over memory each way (the
/// VGG's pairing): the output is max(bn(x), 0), and backward recomputes which outputs were
/// positive from x instead of reading a separate activation, so the separate ReLU's two
/// passes over every activation disappear.
template <class T>
class batchnorm2d {
 public:
  explicit batchnorm2d(std::size_t channels, bool relu = false, double eps = 1e-5,
                       double momentum = 0.1);

  /// Throws spruce::error for the wrong channel count, an empty batch, or (in training)
  /// a single value per channel, whose variance is undefined.
  void forward(const tensor<T>& x, tensor<T>& y, bool training);
  /// `x` is the input of the last forward; dx may be &dy (computed in place).
  void backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>* dx);

  std::size_t channels() const noexcept { return weight_.size(); }
  bool fused_relu() const noexcept { return relu_; }
  double eps() const noexcept { return eps_; }
  double momentum() const noexcept { return momentum_; }
  std::span<T> weight() noexcept { return weight_; }
  std::span<T> bias() noexcept { return bias_; }
  std::span<T> weight_grad() noexcept { return weight_grad_; }
  std::span<T> bias_grad() noexcept { return bias_grad_; }
  std::span<T> running_mean() noexcept { return running_mean_; }
  std::span<T> running_var() noexcept { return running_var_; }

 private:
  bool relu_;
  double eps_, momentum_;
  bool trained_ = false;  // mode of the last forward
  std::vector<T> weight_, bias_, weight_grad_, bias_grad_, running_mean_, running_var_;
  std::vector<T> mean_, invstd_;  // statistics the last forward normalised with
  std::vector<T> scale_, shift_;  // and its affine map x * scale + shift
};

/// max(x, 0), NaN passed through. It may run in place (y the same tensor as x): the
/// backward pass only asks whether each value was positive, which the output answers too.
template <class T>
struct relu {
  void forward(const tensor<T>& x, tensor<T>& y) const;
  /// `x` is the forward input or output; dx may be &dy.
  void backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>& dx) const;
};

/// 2x2 max pooling with stride 2, rounding the output size down (PyTorch's MaxPool2d(2)).
/// The first maximum of each window in row-major order wins, and a NaN wins over any
/// number, as in PyTorch. Nothing is kept between the passes: backward finds each window's
/// winner again in the input, which costs less than storing and reloading its position.
template <class T>
struct max_pool2d {
  /// Throws spruce::error for an empty batch or a map smaller than 2 x 2.
  void forward(const tensor<T>& x, tensor<T>& y) const;
  /// `x` is the forward input; dx gets dy at each window's winner and 0 elsewhere.
  void backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>& dx) const;
};

/// The mean over H and W of each channel: [N, C, H, W] -> [N, C, 1, 1], the lab's
/// `x.mean([2, 3])` before the classifier.
template <class T>
class global_avg_pool {
 public:
  void forward(const tensor<T>& x, tensor<T>& y);
  void backward(const tensor<T>& dy, tensor<T>& dx) const;

 private:
  std::array<std::size_t, 4> in_shape_{};
};

/// y = x W^T + b with W [out_features, in_features]; x is read as [N, C*H*W] (flattened).
/// `backward` sets the parameter gradients.
template <class T>
class linear {
 public:
  linear(std::size_t in_features, std::size_t out_features, bool bias = true);

  /// Throws spruce::error for an empty batch or when C*H*W is not in_features.
  void forward(const tensor<T>& x, tensor<T>& y) const;
  void backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>* dx);

  std::size_t in_features() const noexcept { return in_; }
  std::size_t out_features() const noexcept { return out_; }
  std::span<T> weight() noexcept { return weight_; }
  std::span<T> bias() noexcept { return bias_; }
  std::span<T> weight_grad() noexcept { return weight_grad_; }
  std::span<T> bias_grad() noexcept { return bias_grad_; }

 private:
  std::size_t in_, out_;
  std::vector<T> weight_, bias_, weight_grad_, bias_grad_;
};

/// Softmax followed by the cross-entropy with integer labels, averaged over the batch
/// (PyTorch's CrossEntropyLoss). The log-sum-exp is shifted by each row's maximum, so
/// large logits neither overflow nor lose the loss. The probabilities are kept for the
/// backward pass and for `correct()`.
template <class T>
class softmax_cross_entropy {
 public:
  /// Mean loss of logits [N, K] (read as [N, C*H*W]). Throws spruce::error for an empty
  /// batch, a label count other than N, or a label outside [0, K).
  double forward(const tensor<T>& logits, std::span<const std::int32_t> labels);
  /// d(mean loss)/d(logits) = (softmax - one_hot) / N.
  void backward(tensor<T>& dlogits) const;
  /// Samples of the last forward whose largest logit (first on ties) is the label.
  std::size_t correct() const noexcept { return correct_; }

 private:
  tensor<T> prob_;
  std::vector<std::int32_t> labels_;
  std::size_t correct_ = 0;
};

}  // namespace train
