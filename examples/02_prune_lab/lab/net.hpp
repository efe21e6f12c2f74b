#pragma once
// The lab's VGG with any channel count per conv: what channel pruning and network slimming
// leave behind. train::vgg fixes its widths from a multiplier; a physically pruned network
// has per-layer widths, so the pipeline builds this one from the training library's
// layers. Parameter and buffer names are train::vgg's (`backbone.conv{i}.weight`, ...), so
// a pruned checkpoint reads like the dense one, with smaller shapes.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <spruce/core/tensor_ref.hpp>

#include "train/layers.hpp"
#include "train/tensor.hpp"

namespace lab {

/// Whether a 2x2 max pool follows conv i of the lab's VGG (cfg 64, 128, M, 256, 256, M, ...).
inline bool pool_after(std::size_t i) noexcept { return i % 2 == 1; }

/// The lab's VGG (conv3x3 without bias -> BN -> ReLU, pools after every second conv, mean
/// over H x W, linear classifier) with `channels[i]` outputs at conv i. Same interface as
/// train::vgg, so the pipeline's training and evaluation loops take either.
class flex_vgg {
 public:
  /// Zero weights, BN weight 1 / bias 0 / running variance 1: the caller loads a checkpoint
  /// or copies pruned tensors in. Throws spruce::error for no conv, a zero channel count or
  /// an odd number of convs (the pools come in pairs).
  flex_vgg(std::vector<std::size_t> channels, std::size_t in_channels = 1, std::size_t classes = 10);
  flex_vgg(const flex_vgg&) = delete;
  flex_vgg& operator=(const flex_vgg&) = delete;

  void train(bool on = true) noexcept { training_ = on; }
  void eval() noexcept { training_ = false; }
  const train::tensor<float>& forward(std::span<const float> images, std::size_t n, std::size_t h,
                                      std::size_t w);
  void backward(const train::tensor<float>& dlogits);

  std::vector<spruce::named_tensor<float>> parameters();
  std::vector<spruce::named_tensor<float>> gradients();
  std::vector<spruce::named_tensor<float>> buffers();
  const std::vector<std::size_t>& channels() const noexcept { return channels_; }
  std::size_t in_channels() const noexcept { return in_channels_; }
  std::size_t num_parameters() const noexcept;
  std::uint64_t macs(std::size_t h, std::size_t w) const;

 private:
  struct block {
    train::conv2d<float> conv;
    train::batchnorm2d<float> bn;
    bool pool;
    train::max_pool2d<float> pooler;
    train::tensor<float> conv_out, act, pooled, d_act, d_pooled;
  };
  std::vector<std::size_t> channels_;
  std::size_t in_channels_;
  bool training_ = true;
  std::vector<block> blocks_;
  train::global_avg_pool<float> gap_;
  train::linear<float> classifier_;
  train::tensor<float> input_, features_, logits_, d_features_;
};

}  // namespace lab
