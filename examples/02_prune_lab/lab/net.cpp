#include "lab/net.hpp"

#include <algorithm>
#include <string>

#include <spruce/core/error.hpp>
#include <spruce/metrics/macs.hpp>

namespace lab {
namespace {

std::string indexed(const char* prefix, std::size_t i, const char* suffix) {
  return std::string(prefix).append(std::to_string(i)).append(suffix);
}

spruce::named_tensor<float> named(std::string name, std::span<float> values,
                                  std::initializer_list<std::size_t> shape) {
  return {std::move(name),
          spruce::tensor_ref<float>(values.data(), std::span<const std::size_t>(shape.begin(), shape.size()))};
}

std::size_t checked_last(const std::vector<std::size_t>& channels) {
  if (channels.empty() || channels.size() % 2 != 0)
    throw spruce::error("flex_vgg: " + std::to_string(channels.size()) +
                        " conv widths; pass an even number (the lab's VGG pools after every second conv)");
  for (std::size_t i = 0; i < channels.size(); ++i)
    if (channels[i] == 0)
      throw spruce::error("flex_vgg: conv " + std::to_string(i) + " has no channel; keep at least one");
  return channels.back();
}

}  // namespace

flex_vgg::flex_vgg(std::vector<std::size_t> channels, std::size_t in_channels, std::size_t classes)
    : channels_(std::move(channels)),
      in_channels_(in_channels),
      classifier_(checked_last(channels_), classes) {
  std::size_t in = in_channels;
  blocks_.reserve(channels_.size());
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    blocks_.push_back(block{train::conv2d<float>(in, channels_[i], 3, 1, 1, false),
                            train::batchnorm2d<float>(channels_[i], true), pool_after(i), {}, {}, {}, {}, {}, {}});
    in = channels_[i];
  }
}

const train::tensor<float>& flex_vgg::forward(std::span<const float> images, std::size_t n, std::size_t h,
                                              std::size_t w) {
  if (n == 0 || images.size() != n * in_channels_ * h * w)
    throw spruce::error("flex_vgg forward: " + std::to_string(images.size()) + " values for " + std::to_string(n) +
                        " images of " + std::to_string(in_channels_) + " x " + std::to_string(h) + " x " +
                        std::to_string(w) + "; pass n * c * h * w values (NCHW), n >= 1");
  input_.resize(n, in_channels_, h, w);
  std::copy(images.begin(), images.end(), input_.data());
  const train::tensor<float>* x = &input_;
  for (auto& b : blocks_) {
    b.conv.forward(*x, b.conv_out);
    b.bn.forward(b.conv_out, b.act, training_);
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

void flex_vgg::backward(const train::tensor<float>& dlogits) {
  if (logits_.n() == 0 || dlogits.shape() != logits_.shape())
    throw spruce::error("flex_vgg backward: pass d(loss)/d(logits) of the last forward");
  classifier_.backward(features_, dlogits, &d_features_);
  auto out_grad = [](block& b) -> train::tensor<float>& { return b.pool ? b.d_pooled : b.d_act; };
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

std::vector<spruce::named_tensor<float>> flex_vgg::parameters() {
  std::vector<spruce::named_tensor<float>> out;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    auto& b = blocks_[i];
    const auto s = b.conv.weight_shape();
    out.push_back(named(indexed("backbone.conv", i, ".weight"), b.conv.weight(), {s[0], s[1], s[2], s[3]}));
    out.push_back(named(indexed("backbone.bn", i, ".weight"), b.bn.weight(), {b.bn.channels()}));
    out.push_back(named(indexed("backbone.bn", i, ".bias"), b.bn.bias(), {b.bn.channels()}));
  }
  const std::size_t k = classifier_.out_features(), f = classifier_.in_features();
  out.push_back(named("classifier.weight", classifier_.weight(), {k, f}));
  out.push_back(named("classifier.bias", classifier_.bias(), {k}));
  return out;
}

std::vector<spruce::named_tensor<float>> flex_vgg::gradients() {
  std::vector<spruce::named_tensor<float>> out;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    auto& b = blocks_[i];
    const auto s = b.conv.weight_shape();
    out.push_back(named(indexed("backbone.conv", i, ".weight"), b.conv.weight_grad(), {s[0], s[1], s[2], s[3]}));
    out.push_back(named(indexed("backbone.bn", i, ".weight"), b.bn.weight_grad(), {b.bn.channels()}));
    out.push_back(named(indexed("backbone.bn", i, ".bias"), b.bn.bias_grad(), {b.bn.channels()}));
  }
  const std::size_t k = classifier_.out_features(), f = classifier_.in_features();
  out.push_back(named("classifier.weight", classifier_.weight_grad(), {k, f}));
  out.push_back(named("classifier.bias", classifier_.bias_grad(), {k}));
  return out;
}

std::vector<spruce::named_tensor<float>> flex_vgg::buffers() {
  std::vector<spruce::named_tensor<float>> out;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    auto& bn = blocks_[i].bn;
    out.push_back(named(indexed("backbone.bn", i, ".running_mean"), bn.running_mean(), {bn.channels()}));
    out.push_back(named(indexed("backbone.bn", i, ".running_var"), bn.running_var(), {bn.channels()}));
  }
  return out;
}

std::size_t flex_vgg::num_parameters() const noexcept {
  std::size_t total = 0, in = in_channels_;
  for (std::size_t c : channels_) {
    total += c * in * 9 + 2 * c;
    in = c;
  }
  return total + classifier_.out_features() * (in + 1);
}

std::uint64_t flex_vgg::macs(std::size_t h, std::size_t w) const {
  std::uint64_t total = 0;
  std::size_t in = in_channels_;
  for (std::size_t i = 0; i < channels_.size(); ++i) {
    total += spruce::conv2d_macs({channels_[i], in, 3, 3}, h, w);
    in = channels_[i];
    if (pool_after(i)) {
      h = spruce::pool2d_output_extent(h, 2);
      w = spruce::pool2d_output_extent(w, 2);
    }
  }
  return total + spruce::linear_macs(classifier_.out_features(), classifier_.in_features());
}

}  // namespace lab
