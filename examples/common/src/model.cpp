#include "train/model.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <random>
#include <type_traits>
#include <string>

#include <spruce/core/error.hpp>
#include <spruce/metrics/macs.hpp>

#include "vgg_engine.hpp"

namespace train {
namespace {

// The lab's cfg: conv widths, and after which conv a 2x2 max pool follows.
constexpr std::array<std::size_t, 8> lab_channels = {64, 128, 256, 256, 512, 512, 512, 512};

std::string indexed(const char* prefix, std::size_t i, const char* suffix) {
  return std::string(prefix).append(std::to_string(i)).append(suffix);
}

// SPRUCE_TRAIN_REFERENCE=1 runs the float model through the layer classes too (the layout
// the double model and the gradient checks use): a way to measure or cross-check the fast
// path without rebuilding.
bool reference_path_requested() {
  static const bool on = [] {
    const char* v = std::getenv("SPRUCE_TRAIN_REFERENCE");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return on;
}

template <class T>
spruce::named_tensor<T> named(std::string name, std::span<T> values,
                              std::initializer_list<std::size_t> shape) {
  return {std::move(name), spruce::tensor_ref<T>(values.data(), std::span<const std::size_t>(
                                                                     shape.begin(), shape.size()))};
}

// An explicit per-conv channel list, validated.
std::vector<std::size_t> checked_channels(const std::vector<std::size_t>& channels) {
  if (channels.empty() || channels.size() % 2 != 0 || channels.size() > 16)
    throw spruce::error("vgg: " + std::to_string(channels.size()) +
                        " conv widths in vgg_config::channels; pass an even number from 2 to 16 (a max pool "
                        "follows every second conv)");
  for (std::size_t i = 0; i < channels.size(); ++i)
    if (channels[i] == 0)
      throw spruce::error("vgg: conv " + std::to_string(i) +
                          " has no channel in vgg_config::channels; keep at least one per layer");
  return channels;
}

}  // namespace

std::vector<std::size_t> vgg_channels(double width) {
  if (!(width > 0) || !std::isfinite(width))
    throw spruce::error(std::string("vgg: width ")
                            .append(std::to_string(width))
                            .append(" is not a positive number; pass e.g. 1.0 or 0.125"));
  std::vector<std::size_t> out;
  for (std::size_t c : lab_channels) {
    const double scaled = std::round(static_cast<double>(c) * width);
    if (scaled < 1)
      throw spruce::error(std::string("vgg: width ")
                              .append(std::to_string(width))
                              .append(" leaves the ")
                              .append(std::to_string(c))
                              .append("-channel layer with no channel; pass a width of at least ")
                              .append(std::to_string(0.5 / 64)));
    out.push_back(static_cast<std::size_t>(scaled));
  }
  return out;
}

template <class T>
basic_vgg<T>::basic_vgg(const vgg_config& config, std::uint64_t seed)
    : config_(config),
      channels_(config.channels.empty() ? vgg_channels(config.width) : checked_channels(config.channels)),
      classifier_(channels_.back(), config.num_classes == 0 ? 1 : config.num_classes) {
  if (config.in_channels == 0 || config.num_classes == 0)
    throw spruce::error(std::string("vgg: in_channels ")
                            .append(std::to_string(config.in_channels))
                            .append(", num_classes ")
                            .append(std::to_string(config.num_classes))
                            .append("; both must be at least 1"));
  std::mt19937_64 rng(seed);
  std::size_t in = config.in_channels;
  blocks_.reserve(channels_.size());
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    blocks_.push_back(block{conv2d<T>(in, channels_[i], 3, 1, 1, false), batchnorm2d<T>(channels_[i], true),
                            vgg_pool_after(i), {}, {}, {}, {}, {}, {}});
    auto& conv = blocks_.back().conv;
    std::normal_distribution<double> he(0.0, std::sqrt(2.0 / static_cast<double>(in * 9)));
    for (T& v : conv.weight()) v = static_cast<T>(he(rng));
    in = channels_[i];
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  std::uniform_real_distribution<double> uniform(-bound, bound);
  for (T& v : classifier_.weight()) v = static_cast<T>(uniform(rng));
  for (T& v : classifier_.bias()) v = static_cast<T>(uniform(rng));
}

template <class T>
void basic_vgg<T>::check_input(std::size_t n, std::size_t c, std::size_t h, std::size_t w) const {
  if (n == 0) throw spruce::error("vgg forward: the batch is empty; pass at least one image");
  if (c != config_.in_channels)
    throw spruce::error(std::string("vgg forward: the images have ")
                            .append(std::to_string(c))
                            .append(" channels but the model was built for ")
                            .append(std::to_string(config_.in_channels))
                            .append("; set vgg_config::in_channels to match the data"));
  const std::size_t pools = channels_.size() / 2, least = std::size_t{1} << pools;
  if (h < least || w < least)
    throw spruce::error(std::string("vgg forward: images of ")
                            .append(std::to_string(h))
                            .append(" x ")
                            .append(std::to_string(w))
                            .append(" are too small; the ")
                            .append(std::to_string(pools))
                            .append(" 2x2 max pools need at least ")
                            .append(std::to_string(least))
                            .append(" x ")
                            .append(std::to_string(least)));
}

template <class T>
const tensor<T>& basic_vgg<T>::forward(std::span<const T> images, std::size_t n, std::size_t h,
                                       std::size_t w) {
  const std::size_t c = config_.in_channels;
  check_input(n, c, h, w);
  if (images.size() != n * c * h * w)
    throw spruce::error(std::string("vgg forward: ")
                            .append(std::to_string(images.size()))
                            .append(" values for ")
                            .append(std::to_string(n))
                            .append(" images of ")
                            .append(std::to_string(c))
                            .append(" x ")
                            .append(std::to_string(h))
                            .append(" x ")
                            .append(std::to_string(w))
                            .append("; pass n * c * h * w values (NCHW)"));
  if constexpr (std::is_same_v<T, float>)
    if (!reference_path_requested()) return run_fast(images.data(), n, h, w);
  input_.resize(n, c, h, w);
  std::copy(images.begin(), images.end(), input_.data());
  return run();
}

template <class T>
const tensor<T>& basic_vgg<T>::forward(const tensor<T>& images) {
  check_input(images.n(), images.c(), images.h(), images.w());
  if constexpr (std::is_same_v<T, float>)
    if (!reference_path_requested())
      return run_fast(images.data(), images.n(), images.h(), images.w());
  if (&images != &input_) {
    input_.resize(images.n(), images.c(), images.h(), images.w());
    std::copy(images.values().begin(), images.values().end(), input_.data());
  }
  return run();
}

template <class T>
const tensor<T>& basic_vgg<T>::run() {
  const tensor<T>* x = &input_;
  for (auto& b : blocks_) {
    b.conv.forward(*x, b.conv_out);
    b.bn.forward(b.conv_out, b.act, training_);  // BN and ReLU in one pass
    x = &b.act;
    if (b.pool) {
      b.pooler.forward(b.act, b.pooled);
      x = &b.pooled;
    }
  }
  gap_.forward(*x, features_);
  classifier_.forward(features_, logits_);
  return logits_;
}

template <class T>
const tensor<T>& basic_vgg<T>::run_fast(const T* images, std::size_t n, std::size_t h,
                                        std::size_t w) {
  if constexpr (std::is_same_v<T, float>) {
    std::array<detail::engine_block, 16> refs{};
    if (blocks_.size() > refs.size()) throw spruce::error("vgg: more blocks than the fast path takes");
    for (std::size_t i = 0; i < blocks_.size(); ++i)
      refs[i] = {&blocks_[i].conv, &blocks_[i].bn, blocks_[i].pool};
    const std::span<const detail::engine_block> span(refs.data(), blocks_.size());
    detail::engine_forward(*engine_.get(), span, images, n, config_.in_channels, h, w, training_,
                           features_);
    classifier_.forward(features_, logits_);
    return logits_;
  } else {
    (void)images, (void)n, (void)h, (void)w;
    return run();
  }
}

template <class T>
void basic_vgg<T>::backward(const tensor<T>& dlogits) {
  if (logits_.n() == 0)
    throw spruce::error("vgg backward: no forward pass yet; call forward first");
  if (dlogits.shape() != logits_.shape())
    throw spruce::error(std::string("vgg backward: the gradient has shape ")
                            .append(shape_text(dlogits.shape()))
                            .append(" but the logits have ")
                            .append(shape_text(logits_.shape()))
                            .append("; pass d(loss)/d(logits) of the last forward"));
  if constexpr (std::is_same_v<T, float>) {
    if (detail::engine_ready(*engine_.get())) {
      std::array<detail::engine_block, 16> refs{};
      for (std::size_t i = 0; i < blocks_.size(); ++i)
        refs[i] = {&blocks_[i].conv, &blocks_[i].bn, blocks_[i].pool};
      classifier_.backward(features_, dlogits, &d_features_);
      detail::engine_backward(*engine_.get(),
                              std::span<const detail::engine_block>(refs.data(), blocks_.size()),
                              d_features_);
      return;
    }
  }
  classifier_.backward(features_, dlogits, &d_features_);
  // The gradient of each block's output lands in that block's d_pooled (after a pool) or
  // d_act; `grad_out` tracks where the next block down must write.
  auto out_grad = [](block& b) -> tensor<T>& { return b.pool ? b.d_pooled : b.d_act; };
  gap_.backward(d_features_, out_grad(blocks_.back()));
  for (std::size_t i = blocks_.size(); i-- > 0;) {
    block& b = blocks_[i];
    if (b.pool) b.pooler.backward(b.act, b.d_pooled, b.d_act);
    b.bn.backward(b.conv_out, b.d_act, &b.d_act);
    if (i == 0) {
      b.conv.backward(input_, b.d_act, nullptr);
    } else {
      block& prev = blocks_[i - 1];
      b.conv.backward(prev.pool ? prev.pooled : prev.act, b.d_act, &out_grad(prev));
    }
  }
}

template <class T>
std::vector<spruce::named_tensor<T>> basic_vgg<T>::parameters() {
  std::vector<spruce::named_tensor<T>> out;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    auto& b = blocks_[i];
    const auto s = b.conv.weight_shape();
    out.push_back(named(indexed("backbone.conv", i, ".weight"), b.conv.weight(), {s[0], s[1], s[2], s[3]}));
    out.push_back(named(indexed("backbone.bn", i, ".weight"), b.bn.weight(), {b.bn.channels()}));
    out.push_back(named(indexed("backbone.bn", i, ".bias"), b.bn.bias(), {b.bn.channels()}));
  }
  const std::size_t k = classifier_.out_features(), f = classifier_.in_features();
  out.push_back(named(std::string("classifier.weight"), classifier_.weight(), {k, f}));
  out.push_back(named(std::string("classifier.bias"), classifier_.bias(), {k}));
  return out;
}

template <class T>
std::vector<spruce::named_tensor<T>> basic_vgg<T>::gradients() {
  std::vector<spruce::named_tensor<T>> out;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    auto& b = blocks_[i];
    const auto s = b.conv.weight_shape();
    out.push_back(named(indexed("backbone.conv", i, ".weight"), b.conv.weight_grad(), {s[0], s[1], s[2], s[3]}));
    out.push_back(named(indexed("backbone.bn", i, ".weight"), b.bn.weight_grad(), {b.bn.channels()}));
    out.push_back(named(indexed("backbone.bn", i, ".bias"), b.bn.bias_grad(), {b.bn.channels()}));
  }
  const std::size_t k = classifier_.out_features(), f = classifier_.in_features();
  out.push_back(named(std::string("classifier.weight"), classifier_.weight_grad(), {k, f}));
  out.push_back(named(std::string("classifier.bias"), classifier_.bias_grad(), {k}));
  return out;
}

template <class T>
std::vector<spruce::named_tensor<T>> basic_vgg<T>::buffers() {
  std::vector<spruce::named_tensor<T>> out;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    auto& bn = blocks_[i].bn;
    out.push_back(named(indexed("backbone.bn", i, ".running_mean"), bn.running_mean(), {bn.channels()}));
    out.push_back(named(indexed("backbone.bn", i, ".running_var"), bn.running_var(), {bn.channels()}));
  }
  return out;
}

template <class T>
std::size_t basic_vgg<T>::num_parameters() const noexcept {
  std::size_t total = 0, in = config_.in_channels;
  for (std::size_t c : channels_) {
    total += c * in * 9 + 2 * c;
    in = c;
  }
  return total + classifier_.out_features() * (in + 1);
}

template <class T>
std::uint64_t basic_vgg<T>::macs(std::size_t h, std::size_t w) const {
  std::uint64_t total = 0;
  for (const auto& b : blocks_) {
    const auto s = b.conv.weight_shape();
    h = spruce::conv2d_output_extent(h, 3, 1, 1);
    w = spruce::conv2d_output_extent(w, 3, 1, 1);
    total += spruce::conv2d_macs({s[0], s[1], s[2], s[3]}, h, w);
    if (b.pool) {
      h = spruce::pool2d_output_extent(h, 2);
      w = spruce::pool2d_output_extent(w, 2);
    }
  }
  return total + spruce::linear_macs(classifier_.out_features(), classifier_.in_features());
}

template class basic_vgg<float>;
template class basic_vgg<double>;

}  // namespace train
