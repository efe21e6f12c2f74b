#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/criterion/l2.hpp"
#include "spruce/structural/channel_group.hpp"
#include "spruce/structural/graph.hpp"

namespace spruce::structural {

/// How one conv of a sequential backbone maps its input size to its output size, for
/// sequential_backbone::report (the kernel size is the weight's kh x kw, so it cannot
/// disagree with the tensors). Values are (rows, columns), as torch's Conv2d takes them.
/// `padding` is zeros added on each side; `same` (the default) keeps the input size, like
/// torch's padding='same' and the lab VGG's 3x3 convs with padding 1. After the conv (and
/// its BN and activation) an optional pool: window `pool` x `pool` (0 = none), stride
/// `pool_stride` (0 = the window, torch's MaxPool2d default), no padding, floor mode.
struct conv_geometry {
  static constexpr std::size_t same = static_cast<std::size_t>(-1);
  std::array<std::size_t, 2> padding{same, same};
  std::array<std::size_t, 2> stride{1, 1};
  std::array<std::size_t, 2> dilation{1, 1};
  std::size_t pool = 0;
  std::size_t pool_stride = 0;
};

namespace detail {

// torch's Conv2d output size: floor((in + 2p - d(k-1) - 1) / s) + 1.
inline std::size_t conv_out(std::size_t in, std::size_t k, std::size_t pad, std::size_t stride, std::size_t dilation,
                            const std::string& name, const char* axis) {
  if (stride == 0 || dilation == 0)
    throw error("report: conv '" + name + "' has " + (stride == 0 ? "stride" : "dilation") + " 0 along its " + axis +
                "; pass 1 or more");
  if (pad == conv_geometry::same) {
    if (stride != 1)
      throw error("report: conv '" + name + "' has 'same' padding with stride " + std::to_string(stride) +
                  " along its " + axis + " (torch refuses it too); pass the padding explicitly");
    return in;
  }
  const std::size_t span = dilation * (k - 1) + 1;
  if (in + 2 * pad < span)
    throw error("report: conv '" + name + "' has a " + std::to_string(span) + "-wide (dilated) kernel along its " + axis +
                " but its input is " + std::to_string(in) + " + 2 * " + std::to_string(pad) +
                " padding; check the input size, paddings and pool positions");
  return (in + 2 * pad - span) / stride + 1;
}

// torch's MaxPool2d / AvgPool2d(window, stride) output size without padding, floor mode.
inline std::size_t pool_out(std::size_t in, std::size_t window, std::size_t stride, const std::string& name,
                            const char* axis) {
  if (window == 0) return in;
  if (stride == 0) stride = window;
  if (in < window)
    throw error("report: the " + std::to_string(window) + "-wide pool after conv '" + name + "' does not fit its " +
                axis + " of " + std::to_string(in) + "; check the input size and pool positions");
  return (in - window) / stride + 1;
}

}  // namespace detail

/// A sequential backbone, the lab's VGG: conv (-> BN) -> ReLU ... -> classifier. It holds
/// the current views of every coupled tensor; its groups are those of the chain described
/// as a structural::graph (conv i's outputs and bias, BN i named `<conv>.bn`, the next
/// conv's inputs, or the classifier's inputs times `spatial` positions after the last
/// conv), built on demand, and it adopts the new shapes after each prune, so groups that
/// share a tensor never see a stale view.
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

  /// Appends conv `name` with `weight` [out, in, kh, kw] (and an optional [out] bias);
  /// any host view of T (tensor_view or tensor_ref) is accepted and held as a tensor_ref.
  /// Throws when the weight is not 4-D or does not take the previous conv's outputs.
  template <host_view W, host_view B = tensor_ref<T>>
    requires std::convertible_to<decltype(to_ref(std::declval<const W&>())), tensor_ref<T>> &&
             std::convertible_to<decltype(to_ref(std::declval<const B&>())), tensor_ref<T>>
  void add_conv(std::string name, const W& weight_view, const B& bias_view = {}) {
    const tensor_ref<T> weight = to_ref(weight_view);
    const tensor_ref<T> bias = to_ref(bias_view);
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
  /// Sets the classifier [out, in] that follows the last conv; `spatial` positions of each
  /// channel feed it (a flattened conv output), 1 after global pooling. Any host view of T.
  template <host_view W>
    requires std::convertible_to<decltype(to_ref(std::declval<const W&>())), tensor_ref<T>>
  void set_classifier(std::string name, const W& weight_view, std::size_t spatial = 1) {
    const tensor_ref<T> weight = to_ref(weight_view);
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

  /// The channel group of conv i's outputs: the graph's group, its consumer member named
  /// "next".
  channel_group<T> group(std::size_t i) const {
    if (i >= groups())
      throw error("backbone has " + std::to_string(groups()) + " channel groups; group " + std::to_string(i) +
                  " does not exist");
    const graph<T> g = as_graph();
    const channel_group<T> d = g.group(g.group_of(convs_[i].name));
    std::vector<member<T>> m(d.members().begin(), d.members().end());
    const auto& info = g.groups()[g.group_of(convs_[i].name)].members;
    for (std::size_t k = 0; k < m.size(); ++k)
      if (info[k].role == member_role::in_weight) m[k].name = "next";
    return channel_group<T>(d.name(), std::move(m));
  }

  /// The lab's channel sorting: every group ordered by the L2 norm of the next layer's
  /// input slices, most important first (graph::sort_channels).
  void sort_channels() {
    if (groups() == 0) return;
    as_graph().sort_channels(criterion::l2{}, member_role::in_weight);
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
    if (ratios.empty()) return;
    graph<T> g = as_graph();
    channel_plan plan = g.keep_all();
    for (std::size_t i = 0; i < ratios.size(); ++i) {
      auto& k = plan.keep[g.group_of(convs_[i].name)];
      k.resize(keep[i]);
      std::iota(k.begin(), k.end(), std::size_t{0});
    }
    g.prune(plan);
    adopt(g);
  }

  /// Per-layer size and cost as report() gives it: the weight shape, parameters (weight,
  /// bias, BN scale and shift; running statistics are buffers), multiply-accumulates, and
  /// the spatial size the layer produces (after its pool, if any).
  struct layer_report {
    std::string name;
    std::vector<std::size_t> shape;
    std::size_t params;
    std::size_t macs;
    std::size_t out_h = 0;
    std::size_t out_w = 0;
  };

  /// Parameters and MACs of the backbone at input size h x w, each conv with the geometry
  /// `geometry[i]` (padding, stride, dilation, the pool after it; kernel sizes are the
  /// weights' own kh x kw), per layer and in total: a conv costs out*in*kh*kw MACs per output
  /// position, the classifier out*in. `geometry` holds one entry per conv, or none for the
  /// defaults everywhere (size-keeping 'same' padding, stride 1, no pool). Every size is
  /// checked before anything is reported: a kernel or pool window that does not fit its
  /// input, 'same' padding with a stride, a zero stride or dilation are spruce::errors
  /// naming the layer.
  std::vector<layer_report> report(std::size_t h, std::size_t w, std::span<const conv_geometry> geometry) const {
    if (!geometry.empty() && geometry.size() != convs_.size())
      throw error("report: " + std::to_string(geometry.size()) + " conv geometries for " +
                  std::to_string(convs_.size()) + " convs; pass one per conv, or none for the defaults");
    std::vector<layer_report> out;
    for (std::size_t i = 0; i < convs_.size(); ++i) {
      const auto& c = convs_[i];
      const conv_geometry g = geometry.empty() ? conv_geometry{} : geometry[i];
      const auto s = c.weight.shape();
      const std::size_t oh = detail::conv_out(h, s[2], g.padding[0], g.stride[0], g.dilation[0], c.name, "height");
      const std::size_t ow = detail::conv_out(w, s[3], g.padding[1], g.stride[1], g.dilation[1], c.name, "width");
      h = detail::pool_out(oh, g.pool, g.pool_stride, c.name, "height");
      w = detail::pool_out(ow, g.pool, g.pool_stride, c.name, "width");
      const std::size_t params = c.weight.size() + (c.bias.rank() ? c.bias.size() : 0) + (c.bn ? 2 * c.bn->gamma.size() : 0);
      out.push_back({c.name, {s.begin(), s.end()}, params, c.weight.size() * oh * ow, h, w});
    }
    if (classifier_.rank()) {
      const auto s = classifier_.shape();
      out.push_back({classifier_name_, {s.begin(), s.end()}, classifier_.size() + s[0], classifier_.size(), 1, 1});
    }
    return out;
  }

  /// The lab VGG's form: every conv keeps the size (3x3 with padding 1, or any 'same'
  /// convolution) and `pool_after[i]` puts a 2x2 stride-2 pool after conv i (at most one flag per conv;
  /// missing flags are false).
  std::vector<layer_report> report(std::size_t h, std::size_t w, std::span<const bool> pool_after = {}) const {
    if (pool_after.size() > convs_.size())
      throw error("report: " + std::to_string(pool_after.size()) + " pool flags for " +
                  std::to_string(convs_.size()) + " convs; pass at most one per conv");
    std::vector<conv_geometry> g(convs_.size());
    for (std::size_t i = 0; i < pool_after.size(); ++i) g[i].pool = pool_after[i] ? 2 : 0;
    return report(h, w, std::span<const conv_geometry>(g));
  }

 private:
  // The chain as a graph: input -> conv (-> BN `<conv>.bn`) -> ... (-> classifier).
  graph<T> as_graph() const {
    graph<T> g;
    std::string prev = "(input)";
    g.input(prev, convs_.front().weight.extent(1));
    for (const conv_layer& c : convs_) {
      g.conv(c.name, prev, c.weight, c.bias);
      prev = c.name;
      if (c.bn) {
        g.batch_norm(c.name + ".bn", prev, c.bn->gamma, c.bn->beta, c.bn->mean, c.bn->var);
        prev = c.name + ".bn";
      }
    }
    if (classifier_.rank()) g.linear(classifier_name_, prev, classifier_, tensor_ref<T>{}, spatial_);
    return g;
  }

  void adopt(const graph<T>& g) {
    for (conv_layer& c : convs_) {
      c.weight = g.view(c.name + ".weight");
      if (c.bias.rank()) c.bias = g.view(c.name + ".bias");
      if (c.bn) c.bn = bn_refs{g.view(c.name + ".bn.weight"), g.view(c.name + ".bn.bias"),
                               g.view(c.name + ".bn.running_mean"), g.view(c.name + ".bn.running_var")};
    }
    if (classifier_.rank()) classifier_ = g.view(classifier_name_ + ".weight");
  }

  std::vector<conv_layer> convs_;
  std::string classifier_name_;
  tensor_ref<T> classifier_{};
  std::size_t spatial_ = 1;
};

}  // namespace spruce::structural
