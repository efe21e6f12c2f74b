#pragma once
// The MIT lab's VGG as a trainable model whose parameters spruce sees as named views.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <spruce/core/tensor_ref.hpp>

#include "train/layers.hpp"
#include "train/tensor.hpp"

namespace train {

namespace detail {
class vgg_engine;  // the float model's fast path (src/vgg_engine.cpp)

/// Owns a vgg_engine: its activations and packed weights, the float model's scratch. A copy
/// copies them (a copied model can run backward of the original's last forward); a
/// moved-from holder is empty and a copy of it starts fresh.
class vgg_engine_ptr {
 public:
  vgg_engine_ptr();
  ~vgg_engine_ptr();
  vgg_engine_ptr(const vgg_engine_ptr& other);
  vgg_engine_ptr(vgg_engine_ptr&& other) noexcept;
  vgg_engine_ptr& operator=(const vgg_engine_ptr& other);
  vgg_engine_ptr& operator=(vgg_engine_ptr&& other) noexcept;
  vgg_engine* get() const noexcept { return p_.get(); }

 private:
  std::unique_ptr<vgg_engine> p_;
};
}  // namespace detail

/// The knobs of the lab's VGG that the examples vary: the width multiplier (each channel
/// count is round(c * width)), the input channels (1 for Fashion-MNIST, 3 for CIFAR-10)
/// and the class count. `channels`, when not empty, gives every conv's output channels
/// explicitly and replaces the width: what channel pruning and network slimming leave
/// behind (per-layer widths), rebuilt as the same model so it trains and runs on the same
/// fast path. It needs an even count (a 2x2 max pool follows every second conv), each >= 1.
struct vgg_config {
  double width = 0.125;
  std::size_t in_channels = 1;
  std::size_t num_classes = 10;
  std::vector<std::size_t> channels = {};
};

/// Whether a 2x2 max pool follows conv `i` of the lab's VGG (after every second conv: cfg
/// 64, 128, M, 256, 256, M, ...), for a pruned cfg too.
constexpr bool vgg_pool_after(std::size_t i) noexcept { return i % 2 == 1; }

/// The conv layers' output channels at `width`: the lab's cfg (64, 128, 256, 256, 512,
/// 512, 512, 512) scaled and rounded to nearest. Throws spruce::error when a layer would
/// get no channel or the width is not a positive finite number.
std::vector<std::size_t> vgg_channels(double width);

/// The lab's VGG: cfg (64, 128, M, 256, 256, M, 512, 512, M, 512, 512, M) where a number is
/// conv3x3 (padding 1, no bias) -> BatchNorm -> ReLU and M a 2x2 max pool, then the mean
/// over H and W and a linear classifier. The parameter names follow the lab's modules
/// (`backbone.conv0.weight`, `backbone.bn0.weight`, ..., `classifier.bias`) so that pruning
/// code and checkpoints address layers by name. The model owns its parameters and every
/// activation buffer; the views it hands out stay valid for its lifetime (and across
/// moves), and a training step allocates nothing after the first batch of a given size.
template <class T>
class basic_vgg {
 public:
  /// A freshly initialised model: He-normal convolutions (std sqrt(2 / fan_in)), BN
  /// weight 1 and bias 0, and PyTorch's default uniform(+-1/sqrt(in)) classifier, drawn
  /// from `seed`. Throws spruce::error for a bad width or a zero channel or class count.
  explicit basic_vgg(const vgg_config& config = {}, std::uint64_t seed = 0);

  /// Training mode normalises with batch statistics and updates the running ones;
  /// evaluation mode uses the running statistics. A new model is in training mode.
  void train(bool on = true) noexcept { training_ = on; }
  void eval() noexcept { training_ = false; }
  bool training() const noexcept { return training_; }

  /// Logits [n, num_classes] of `n` images of in_channels x h x w (NCHW, copied in).
  /// Throws spruce::error for n == 0, a size mismatch, or a map under 16 x 16 (the four
  /// pools would leave nothing).
  const tensor<T>& forward(std::span<const T> images, std::size_t n, std::size_t h,
                           std::size_t w);
  /// forward() of an NCHW tensor; throws when its channel count is not in_channels.
  const tensor<T>& forward(const tensor<T>& images);
  /// Sets every parameter gradient from d(loss)/d(logits) of the last forward.
  void backward(const tensor<T>& dlogits);

  /// Parameters in the lab's order: per block conv weight, BN weight, BN bias; then
  /// classifier weight and bias.
  std::vector<spruce::named_tensor<T>> parameters();
  /// The gradients, with the same names, shapes and order as parameters().
  std::vector<spruce::named_tensor<T>> gradients();
  /// The BN running statistics (`backbone.bn{i}.running_mean`, `.running_var`), which a
  /// checkpoint must carry beside the parameters.
  std::vector<spruce::named_tensor<T>> buffers();

  std::size_t num_parameters() const noexcept;
  /// Multiply-accumulates of one h x w image (convolutions and classifier, torchprofile's
  /// convention, as spruce::conv2d_macs and linear_macs count them).
  std::uint64_t macs(std::size_t h, std::size_t w) const;
  const vgg_config& config() const noexcept { return config_; }
  /// Output channels of each conv block (after the width multiplier, or config().channels).
  const std::vector<std::size_t>& channels() const noexcept { return channels_; }

 private:
  struct block {
    conv2d<T> conv;
    batchnorm2d<T> bn;
    bool pool;
    max_pool2d<T> pooler;
    tensor<T> conv_out, act, pooled;  // act: ReLU(BN(conv_out)), one fused layer
    tensor<T> d_act, d_pooled;
  };
  void check_input(std::size_t n, std::size_t c, std::size_t h, std::size_t w) const;
  const tensor<T>& run();
  const tensor<T>& run_fast(const T* images, std::size_t n, std::size_t h, std::size_t w);

  vgg_config config_;
  std::vector<std::size_t> channels_;
  bool training_ = true;
  std::vector<block> blocks_;
  global_avg_pool<T> gap_;
  linear<T> classifier_;
  tensor<T> input_, features_, logits_, d_features_;
  // float only: the channels-last fast path, which replaces the layer objects' own passes
  // (the layers keep owning the parameters).
  detail::vgg_engine_ptr engine_;
};

/// The model the examples train (float); basic_vgg<double> serves the gradient checks.
using vgg = basic_vgg<float>;

}  // namespace train
