#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/criterion/l2.hpp"
#include "spruce/structural/channel_group.hpp"

namespace spruce::structural {

/// A sequential backbone, the lab's VGG: conv (-> BN) -> ReLU ... -> classifier. It holds
/// the current views of every coupled tensor, builds the channel group between layer i and
/// layer i+1 on demand (conv i's outputs and bias, BN i, the next conv's inputs, or the
/// classifier's inputs times `spatial` positions after the last conv), and adopts the new
/// shapes after each prune, so groups that share a tensor never see a stale view.
template <class T>
class sequential_backbone {
 public:
  struct bn_refs {
    tensor_ref<T> gamma, beta, mean, var;
  };
  struct conv_layer {
    std::string name;
    tensor_ref<T> weight;  // [out, in, kh, kw]
    tensor_ref<T> bias{};
    std::optional<bn_refs> bn{};
  };

  void add_conv(std::string name, const tensor_ref<T>& weight, const tensor_ref<T>& bias = {}) {
    if (weight.rank() != 4)
      throw error("conv '" + name + "' weight has shape " + shape_string(weight.shape()) + "; pass [out, in, kh, kw]");
    if (!convs_.empty() && convs_.back().weight.extent(0) != weight.extent(1))
      throw error("conv '" + name + "' takes " + std::to_string(weight.extent(1)) + " input channels but '" +
                  convs_.back().name + "' produces " + std::to_string(convs_.back().weight.extent(0)) +
                  "; add the layers in order");
    convs_.push_back({std::move(name), weight, bias, std::nullopt});
  }
  void add_bn(const bn_refs& bn) {
    if (convs_.empty()) throw error("add_bn: add the conv the BatchNorm follows first");
    convs_.back().bn = bn;
  }
  void set_classifier(std::string name, const tensor_ref<T>& weight, std::size_t spatial = 1) {
    if (weight.rank() != 2)
      throw error("classifier '" + name + "' weight has shape " + shape_string(weight.shape()) + "; pass [out, in]");
    classifier_name_ = std::move(name);
    classifier_ = weight;
    spatial_ = spatial;
  }

  /// Number of channel groups: one per conv followed by another layer.
  std::size_t groups() const noexcept {
    return convs_.empty() ? 0 : convs_.size() - (classifier_.rank() ? 0 : 1);
  }
  std::span<const conv_layer> convs() const noexcept { return convs_; }
  const tensor_ref<T>& classifier() const noexcept { return classifier_; }

  /// The channel group of conv i's outputs.
  channel_group<T> group(std::size_t i) const {
    if (i >= groups())
      throw error("backbone has " + std::to_string(groups()) + " channel groups; group " + std::to_string(i) +
                  " does not exist");
    const conv_layer& c = convs_[i];
    std::vector<member<T>> m{{c.name + ".weight", c.weight, 0}};
    if (c.bias.rank()) m.push_back({c.name + ".bias", c.bias, 0});
    if (c.bn) {
      m.push_back({c.name + ".bn.weight", c.bn->gamma, 0});
      m.push_back({c.name + ".bn.bias", c.bn->beta, 0});
      m.push_back({c.name + ".bn.running_mean", c.bn->mean, 0});
      m.push_back({c.name + ".bn.running_var", c.bn->var, 0});
    }
    if (i + 1 < convs_.size()) m.push_back({"next", convs_[i + 1].weight, 1});
    else m.push_back({"next", classifier_, 1, spatial_});
    return channel_group<T>(c.name, std::move(m));
  }

  /// The lab's channel sorting: every group ordered by the L2 norm of the next layer's
  /// input slices, most important first.
  void sort_channels() {
    for (std::size_t i = 0; i < groups(); ++i) {
      channel_group<T> g = group(i);
      g.sort_by(g.importance(criterion::l2{}, "next"));
    }
  }

  /// Prunes group i to its first `rule.keep(ratio_i, channels)` channels for every ratio
  /// given (ratios.size() <= groups(); the lab passes one per conv but the last). All keep
  /// counts are checked before any tensor moves.
  void prune(std::span<const double> ratios, const keep_rule& rule = {}) {
    if (ratios.size() > groups())
      throw error(std::to_string(ratios.size()) + " prune ratios for " + std::to_string(groups()) +
                  " channel groups; pass at most one per group");
    std::vector<std::size_t> keep(ratios.size());
    for (std::size_t i = 0; i < ratios.size(); ++i) {
      keep[i] = rule.keep(ratios[i], convs_[i].weight.extent(0), convs_[i].name);
      if (keep[i] == 0)
        throw error("prune ratio " + std::to_string(ratios[i]) + " keeps 0 of the " +
                    std::to_string(convs_[i].weight.extent(0)) + " channels of '" + convs_[i].name +
                    "'; lower the ratio or set keep_rule::minimum");
    }
    for (std::size_t i = 0; i < ratios.size(); ++i) {
      channel_group<T> g = group(i);
      g.keep_first(keep[i]);
      adopt(i, g);
    }
  }

  /// Parameters and MACs of the backbone at input size h x w (3x3 convs with padding 1
  /// keep the size; `pool_after[i]` halves it after conv i), per layer and in total.
  struct layer_report {
    std::string name;
    std::vector<std::size_t> shape;
    std::size_t params;
    std::size_t macs;
  };
  std::vector<layer_report> report(std::size_t h, std::size_t w, std::span<const bool> pool_after = {}) const {
    std::vector<layer_report> out;
    for (std::size_t i = 0; i < convs_.size(); ++i) {
      const auto& c = convs_[i];
      const auto s = c.weight.shape();
      std::size_t params = c.weight.size() + (c.bias.rank() ? c.bias.size() : 0) + (c.bn ? 2 * c.bn->gamma.size() : 0);
      out.push_back({c.name, {s.begin(), s.end()}, params, c.weight.size() * h * w});
      if (i < pool_after.size() && pool_after[i]) h /= 2, w /= 2;
    }
    if (classifier_.rank()) {
      const auto s = classifier_.shape();
      out.push_back({classifier_name_, {s.begin(), s.end()}, classifier_.size() + s[0], classifier_.size()});
    }
    return out;
  }

 private:
  void adopt(std::size_t i, const channel_group<T>& g) {
    conv_layer& c = convs_[i];
    c.weight = g.view(c.name + ".weight");
    if (c.bias.rank()) c.bias = g.view(c.name + ".bias");
    if (c.bn) c.bn = bn_refs{g.view(c.name + ".bn.weight"), g.view(c.name + ".bn.bias"),
                             g.view(c.name + ".bn.running_mean"), g.view(c.name + ".bn.running_var")};
    if (i + 1 < convs_.size()) convs_[i + 1].weight = g.view("next");
    else classifier_ = g.view("next");
  }

  std::vector<conv_layer> convs_;
  std::string classifier_name_;
  tensor_ref<T> classifier_{};
  std::size_t spatial_ = 1;
};

}  // namespace spruce::structural
