#pragma once
// A bottleneck ResNet for small images (Fashion-MNIST's 28 x 28, CIFAR's 32 x 32) built from
// an explicit per-layer channel list, so that a network whose channels were pruned is
// rebuilt exactly — the model issue 14's slimming stage prunes through graph-derived groups.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <spruce/core/tensor_ref.hpp>

#include "train/layers.hpp"
#include "train/tensor.hpp"

namespace train {

/// The output channels of one bottleneck block's two inner convolutions (1x1 `conv1` and
/// 3x3 `conv2`): the channels structural pruning may remove without touching the residual
/// stream. The block's `conv3` writes the stage's width (resnet_stage_cfg::out).
struct resnet_block_cfg {
  std::size_t conv1 = 0, conv2 = 0;
  bool operator==(const resnet_block_cfg&) const = default;
};

/// One stage: its blocks, their shared output width (every block of a stage adds into the
/// same residual stream, so they carry one channel set) and the stride of its first block.
/// The first block of every stage has a projection shortcut (1x1 conv with the stride, then
/// BN); the others add their input unchanged.
struct resnet_stage_cfg {
  std::size_t out = 0;
  std::size_t stride = 1;
  std::vector<resnet_block_cfg> blocks;
  bool operator==(const resnet_stage_cfg&) const = default;
};

/// Every channel count of the network, layer by layer: the stem (3x3 conv + BN + ReLU + 2x2
/// max pool), the
/// stages, and the classifier's classes. A dense network comes from resnet_channels(); a
/// pruned one is this list with smaller numbers (read back from a checkpoint's shapes by
/// resnet_cfg_from_shapes), so no width rule has to be re-derived after pruning.
struct resnet_cfg {
  std::size_t in_channels = 1;
  std::size_t num_classes = 10;
  std::size_t stem = 0;
  std::vector<resnet_stage_cfg> stages;
  bool operator==(const resnet_cfg&) const = default;
};

/// The dense bottleneck ResNet at `width`: three stages of planes round(16w), round(32w),
/// round(64w) with expansion 4 (stage outputs 4x planes), a stem of round(16w) channels whose
/// 2x2 max pool halves the map, then strides 1, 2, 2 (28 -> 14 -> 14 -> 7 -> 4), and `blocks[s]`
/// blocks in stage s. Like ImageNet ResNets (stride-2 stem and pool), the stages start at a
/// reduced map: at 28 x 28 the pool cuts the MACs about fourfold for a small accuracy cost. Throws spruce::error
/// for a non-positive width, one that leaves a layer without channels, or a stage count
/// other than three, or a stage without blocks.
resnet_cfg resnet_channels(double width, std::span<const std::size_t> blocks = {}, std::size_t in_channels = 1,
                           std::size_t num_classes = 10);

/// The cfg of the network whose tensors have these names and shapes (a checkpoint's, a
/// pruned model's): the inverse of basic_resnet's naming. Strides follow the dense design
/// (1 for stage 1, 2 after). Throws spruce::error naming the first tensor that is missing or
/// whose shape does not fit its neighbours.
resnet_cfg resnet_cfg_from_shapes(const std::map<std::string, std::vector<std::size_t>>& shapes);

/// "stem 16 | stage1 64: 16x16 | stage2 128: 32x32, 32x32 | ..." for logs and metadata.
std::string describe(const resnet_cfg& cfg);

/// The bottleneck ResNet (torchvision's v1.5 Bottleneck: the stride sits on the 3x3 conv):
/// stem conv3x3 -> BN -> ReLU -> 2x2 max pool, then per block
///   relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))
/// with shortcut = bn(conv1x1 stride s)(x) on each stage's first block and x otherwise,
/// then the mean over H x W and a linear classifier. Convolutions have no bias. Parameter
/// names follow PyTorch's modules: `conv1.weight`, `bn1.weight` (stem),
/// `stage1.0.conv1.weight`, `stage1.0.bn1.weight`, ..., `stage1.0.downsample.0.weight`
/// (projection conv), `stage1.0.downsample.1.weight` (its BN), `fc.weight`, `fc.bias`.
///
/// The network runs on the training library's layer classes (conv2d: im2col + GEMM with the
/// batch split across the threads; batchnorm2d with the fused ReLU where one follows), so
/// double gives the gradient checks and float trains. It owns its parameters and
/// activations; the views it hands out stay valid for its lifetime, and after the first
/// batch of a given size a training step allocates nothing.
template <class T>
class basic_resnet {
 public:
  /// A freshly initialised network: He-normal convolutions (std sqrt(2 / fan_in)), BN
  /// weight 1 and bias 0, PyTorch's uniform(+-1/sqrt(in)) classifier, drawn from `seed`.
  /// Throws spruce::error for a cfg with a zero channel count, no stage, a stage without
  /// blocks or a zero stride.
  explicit basic_resnet(const resnet_cfg& cfg, std::uint64_t seed = 0);

  void train(bool on = true) noexcept { training_ = on; }
  void eval() noexcept { training_ = false; }
  bool training() const noexcept { return training_; }

  /// Logits [n, num_classes] of `n` images of in_channels x h x w (NCHW, copied in). Throws
  /// spruce::error for n == 0, a size mismatch, or a map under 2 x 2 (the stem's pool).
  const tensor<T>& forward(std::span<const T> images, std::size_t n, std::size_t h, std::size_t w);
  /// forward() of an NCHW tensor; throws when its channel count is not in_channels.
  const tensor<T>& forward(const tensor<T>& images);
  /// Sets every parameter gradient from d(loss)/d(logits) of the last forward.
  void backward(const tensor<T>& dlogits);

  /// Parameters in PyTorch's state-dict order (stem, then each block's conv1, bn1, conv2,
  /// bn2, conv3, bn3, downsample, then fc).
  std::vector<spruce::named_tensor<T>> parameters();
  /// The gradients, with the same names, shapes and order as parameters().
  std::vector<spruce::named_tensor<T>> gradients();
  /// The BN running statistics (`<bn>.running_mean`, `<bn>.running_var`).
  std::vector<spruce::named_tensor<T>> buffers();

  std::size_t num_parameters() const noexcept;
  /// Multiply-accumulates of one h x w image (convolutions and classifier, torchprofile's
  /// convention, as spruce::conv2d_macs and linear_macs count them).
  std::uint64_t macs(std::size_t h, std::size_t w) const;
  const resnet_cfg& cfg() const noexcept { return cfg_; }

 private:
  struct block {
    block(std::size_t in, const resnet_block_cfg& inner, std::size_t out, std::size_t stride, bool projection);
    conv2d<T> conv1, conv2, conv3;
    batchnorm2d<T> bn1, bn2, bn3;
    std::optional<conv2d<T>> ds_conv;
    std::optional<batchnorm2d<T>> ds_bn;
    // forward: conv outputs, BN(+ReLU) outputs, the projection, the block output
    tensor<T> c1, a1, c2, a2, c3, b3, dsc, dsb, out;
    // backward: gradient of the output (written by the block above), of the sum, scratch
    tensor<T> d_out, d_sum, d1, d2, d3, d_ds, d_short;
  };
  const tensor<T>& run();
  std::vector<spruce::named_tensor<T>> walk(bool grad);
  void check_input(std::size_t n, std::size_t c) const;

  resnet_cfg cfg_;
  bool training_ = true;
  conv2d<T> stem_conv_;
  batchnorm2d<T> stem_bn_;
  max_pool2d<T> stem_pool_;
  std::vector<std::vector<block>> stages_;
  global_avg_pool<T> gap_;
  linear<T> fc_;
  tensor<T> input_, stem_c_, stem_a_, stem_p_, d_stem_, d_stem_p_, features_, logits_, d_features_;
};

/// A network rebuilt from named tensors — a pruned network's, whose channel groups were
/// compacted, or a checkpoint's: the cfg is read from their shapes (resnet_cfg_from_shapes)
/// and every parameter and BN statistic is copied in by name, so the new network computes
/// what the tensors describe. The views may be strided. Throws spruce::error, building
/// nothing, naming every tensor that is missing, unexpected or mis-shaped.
template <class T>
basic_resnet<T> resnet_from_tensors(const std::vector<spruce::named_tensor<T>>& tensors);

/// The network the examples train (float); basic_resnet<double> serves the gradient checks.
using resnet = basic_resnet<float>;

}  // namespace train
