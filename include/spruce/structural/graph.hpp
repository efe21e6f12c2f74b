#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/make_view.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/criterion/l1.hpp"
#include "spruce/criterion/l2.hpp"
#include "spruce/metrics/macs.hpp"
#include "spruce/structural/channel_group.hpp"
#include "spruce/structural/slimming.hpp"

// Channel groups derived from a layer graph.
//
// A user describes their network once, over their own tensors, and spruce works out which
// tensor slices lose channels together:
//
//   structural::graph<float> net;
//   net.input("x", 3, 28, 28)
//      .conv("stem", "x", stem_w)                 // [16, 3, 3, 3]; conv_options{} = stride 1, padding 0
//      .batch_norm("stem.bn", "stem", g, b, m, v)  // four [16] vectors
//      .pass("stem.relu", "stem.bn")               // ReLU (any shape-keeping element-wise layer)
//      .conv("b1.conv1", "stem.relu", w1)          // ... a bottleneck's convs and BNs ...
//      .add("b1.add", {"b1.bn3", "b1.short.bn"})   // the residual addition couples its inputs
//      .global_pool("pool", "b1.relu")
//      .linear("fc", "pool", fc_w, fc_b);          // factor = positions per channel when flattened
//   for (const auto& g : net.groups()) ...        // names, members, frozen or prunable
//   auto sel = net.slimming_plan(0.5, 1);         // global |gamma| threshold over the prunable groups
//   auto cfg = net.cfg(sel.plan);                 // kept channels of every layer: rebuild from it
//   net.copy_kept(sel.plan, smaller);             // or net.prune(sel.plan) in place
//
// Every operation that moves channels goes through channel_group (one implementation of
// sorting and removal); the graph only derives the members and keeps the views current.

namespace spruce::structural {

/// Stride, zero padding and dilation of a graph convolution, (rows, columns) as torch's
/// Conv2d takes them, with torch's defaults (stride 1, padding 0, dilation 1). The kernel
/// size is the weight's kh x kw. They size the feature maps so that additions,
/// concatenations and flattened linear layers can be checked; groups are always 1.
struct conv_options {
  std::array<std::size_t, 2> stride{1, 1};
  std::array<std::size_t, 2> padding{0, 0};
  std::array<std::size_t, 2> dilation{1, 1};
};

/// What a graph layer is. Only convolutions and linear layers create channels; batch norm,
/// pass-through layers (ReLU, dropout) and pooling carry them; an addition couples the
/// channels of its inputs; a concatenation lays its inputs' channels side by side.
enum class layer_kind { input, conv, batch_norm, linear, add, concat, pass, pool, global_pool };

/// The name a layer kind has in spruce's messages ("conv", "batch_norm", ...).
constexpr const char* layer_kind_name(layer_kind k) noexcept {
  switch (k) {
    case layer_kind::input: return "input";
    case layer_kind::conv: return "conv";
    case layer_kind::batch_norm: return "batch_norm";
    case layer_kind::linear: return "linear";
    case layer_kind::add: return "add";
    case layer_kind::concat: return "concat";
    case layer_kind::pass: return "pass";
    case layer_kind::pool: return "pool";
    case layer_kind::global_pool: return "global_pool";
  }
  return "layer";
}

/// Which tensor of which layer a group member is, so that scores can be taken from one
/// kind of member (the next layers' inputs for the lab's L2 sorting, the BN scales for
/// network slimming): a producer's weight rows and bias, the four BatchNorm vectors, and a
/// consumer's weight columns (conv dim 1, linear columns with the flatten factor).
enum class member_role { out_weight, out_bias, bn_weight, bn_bias, bn_running_mean, bn_running_var, in_weight };

/// How importance() folds the scores of a group's members of one role: summed, or
/// averaged over them. Within a group the two orders agree; across groups (one global
/// threshold) the mean keeps a channel that additions couple over three BatchNorms on the
/// scale of one BN scale, where the sum would sit about three times higher.
enum class score_combine { sum, mean };

/// One derived member of a group: the tensor's name (`<layer>.weight`, `<layer>.bias`,
/// `<layer>.running_mean`, `<layer>.running_var`, as in a PyTorch state dict), its layer
/// and role, and where the group's channels lie in it (axis, positions per channel,
/// offset and count of its part of the axis as in `member`: count 0 = the whole axis).
struct member_info {
  std::string name;
  std::string layer;
  member_role role;
  std::size_t axis = 0;
  std::size_t factor = 1;
  std::size_t offset = 0;
  std::size_t count = 0;
};

/// One derived channel group: every slice that loses the same channels. `name` is its
/// first producer's name. A group is frozen when the user froze one of its layers, when an
/// addition joins it to the network input, when a layer carrying it is a network output
/// (no layer reads it), or when one layer holds its channels twice (reads them twice
/// through a concatenation, or reads and writes them: an addition around a single conv),
/// which no channel_group can move; `frozen_reason` says which. The producers are the convs and
/// linears whose outputs carry the channels (more than one when additions couple them),
/// the consumers the layers that read them.
struct group_info {
  std::string name;
  std::size_t channels = 0;
  bool frozen = false;
  std::string frozen_reason;
  std::vector<std::string> producers;
  std::vector<std::string> batch_norms;
  std::vector<std::string> consumers;
  std::vector<std::string> additions;
  std::vector<member_info> members;
};

/// The channels each group keeps: `keep[g]` lists kept channels of group g (indices into
/// its current channels, any order, each once); a frozen group's entry keeps them all.
/// Start from graph::keep_all() and edit the entries.
struct channel_plan {
  std::vector<std::vector<std::size_t>> keep;
};

/// The kept channels of one layer under a plan, for rebuilding the smaller network:
/// `kept` lists the original indices of the channels its output keeps, ascending (new
/// channel j is old channel kept[j]); `in_channels` is the width of its input after the
/// plan — for a conv its weight's dim 1, for a linear its in_features (channels x factor).
struct layer_channels {
  std::string name;
  layer_kind kind;
  std::vector<std::size_t> kept;
  std::size_t in_channels = 0;
};

/// What graph::slimming_plan decided: the plan and the reference threshold on the
/// (combined) |gamma| scores, as slimming_masks reports it.
template <class T>
struct graph_slimming {
  channel_plan plan;
  T threshold{};
};

/// A network described as a graph of named layers over the user's own tensors, from which
/// spruce derives every channel group: a conv's or linear's output channels (weight dim 0,
/// bias), the BatchNorms on them, every consumer's input channels (conv weight dim 1,
/// linear columns times the flatten factor), coupled across additions (one group, one
/// shared selection, scores summed over the coupled members) and laid out across
/// concatenations (each input owns its offset range of the consumer's input channels).
/// Layers may be declared in any order (a shortcut after the block it joins); each layer
/// checks its own tensors when added, and the graph checks the edges when first used: a
/// name no layer has, a cycle, or a shape that does not fit its edge is a spruce::error
/// naming the layer, raised before any tensor moves. The tensors stay the user's: sorting
/// and pruning move their elements through channel_group and the graph adopts the shrunk
/// views. Tensors must be contiguous row-major and must not share memory. The derived
/// groups are cached inside, so one graph is not for use from several threads at once.
template <class T>
class graph {
  static_assert(!std::is_const_v<T>, "structural::graph moves channels; use a non-const element type");

 public:
  using value_type = T;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  /// The network input: `channels` channels of `height` x `width` (0 x 0 = size unknown;
  /// sizes are then not checked until a global pool). Its channels are data, never pruned.
  graph& input(std::string name, std::size_t channels, std::size_t height = 0, std::size_t width = 0) {
    if (channels == 0) throw error("graph: input '" + name + "' has 0 channels; pass the input's channel count");
    if ((height == 0) != (width == 0))
      throw error("graph: input '" + name + "' is " + std::to_string(height) + " x " + std::to_string(width) +
                  "; pass both sizes, or 0 x 0 for an unknown size");
    layer l{std::move(name), layer_kind::input, {}};
    l.channels = channels;
    l.height = height;
    l.width = width;
    return push(std::move(l));
  }

  /// A convolution (groups 1) reading layer `from`: weight [out, in, kh, kw], an optional
  /// [out] bias, stride / padding / dilation in `o`. Any host view of T.
  template <host_view W, host_view B = tensor_ref<T>>
    requires std::convertible_to<decltype(to_ref(std::declval<const W&>())), tensor_ref<T>> &&
             std::convertible_to<decltype(to_ref(std::declval<const B&>())), tensor_ref<T>>
  graph& conv(std::string name, std::string from, const W& weight, const B& bias = {}, const conv_options& o = {}) {
    layer l{std::move(name), layer_kind::conv, {std::move(from)}};
    l.t[0] = to_ref(weight);
    l.t[1] = to_ref(bias);
    l.conv = o;
    if (l.t[0].rank() != 4)
      throw error("graph: conv '" + l.name + "' weight has shape " + shape_string(l.t[0].shape()) +
                  "; pass [out, in, kh, kw] (groups 1)");
    for (std::size_t a = 0; a < 2; ++a)
      if (o.stride[a] == 0 || o.dilation[a] == 0)
        throw error("graph: conv '" + l.name + "' has " + (o.stride[a] == 0 ? "stride" : "dilation") +
                    " 0; pass 1 or more");
    check_bias(l);
    return push(std::move(l));
  }

  /// A BatchNorm reading `from`: scale (gamma), shift (beta), running mean and variance,
  /// four 1-D views of one channel count.
  template <host_view G, host_view Bt, host_view M, host_view V>
    requires std::convertible_to<decltype(to_ref(std::declval<const G&>())), tensor_ref<T>> &&
             std::convertible_to<decltype(to_ref(std::declval<const Bt&>())), tensor_ref<T>> &&
             std::convertible_to<decltype(to_ref(std::declval<const M&>())), tensor_ref<T>> &&
             std::convertible_to<decltype(to_ref(std::declval<const V&>())), tensor_ref<T>>
  graph& batch_norm(std::string name, std::string from, const G& gamma, const Bt& beta, const M& mean, const V& var) {
    layer l{std::move(name), layer_kind::batch_norm, {std::move(from)}};
    l.t = {to_ref(gamma), to_ref(beta), to_ref(mean), to_ref(var)};
    for (std::size_t s = 0; s < 4; ++s)
      if (l.t[s].rank() != 1 || l.t[s].extent(0) != l.t[0].extent(0))
        throw error("graph: batch_norm '" + l.name + "' " + param_name(layer_kind::batch_norm, s) + " has shape " +
                    shape_string(l.t[s].shape()) + "; pass four 1-D vectors of one channel count (weight, bias, " +
                    "running_mean, running_var)");
    return push(std::move(l));
  }

  /// A linear layer reading `from`: weight [out, in], an optional [out] bias. `factor` is
  /// the number of positions each input channel has when a feature map is flattened into
  /// it (in = channels x factor; 1 after a global pool or another linear).
  template <host_view W, host_view B = tensor_ref<T>>
    requires std::convertible_to<decltype(to_ref(std::declval<const W&>())), tensor_ref<T>> &&
             std::convertible_to<decltype(to_ref(std::declval<const B&>())), tensor_ref<T>>
  graph& linear(std::string name, std::string from, const W& weight, const B& bias = {}, std::size_t factor = 1) {
    layer l{std::move(name), layer_kind::linear, {std::move(from)}};
    l.t[0] = to_ref(weight);
    l.t[1] = to_ref(bias);
    l.factor = factor;
    if (l.t[0].rank() != 2)
      throw error("graph: linear '" + l.name + "' weight has shape " + shape_string(l.t[0].shape()) +
                  "; pass [out, in]");
    if (factor == 0) throw error("graph: linear '" + l.name + "' has flatten factor 0; pass 1 or the positions per channel");
    check_bias(l);
    return push(std::move(l));
  }

  /// An element-wise addition of two or more layers (a residual join): their channels
  /// become one group, pruned with one selection.
  graph& add(std::string name, std::vector<std::string> from) {
    if (from.size() < 2) throw error("graph: add '" + name + "' has " + std::to_string(from.size()) + " inputs; pass two or more");
    return push(layer{std::move(name), layer_kind::add, std::move(from)});
  }

  /// A concatenation along the channels of one or more layers, in order: input k's
  /// channels follow those of inputs 0..k-1 in every consumer.
  graph& concat(std::string name, std::vector<std::string> from) {
    if (from.empty()) throw error("graph: concat '" + name + "' has no inputs; pass the layers it joins");
    return push(layer{std::move(name), layer_kind::concat, std::move(from)});
  }

  /// A layer that keeps the shape and each channel's place: ReLU, dropout, any
  /// element-wise activation.
  graph& pass(std::string name, std::string from) { return push(layer{std::move(name), layer_kind::pass, {std::move(from)}}); }

  /// Max or average pooling with a square `window`, `stride` (0 = the window, torch's
  /// default) and zero `padding`, floor mode: changes the size, not the channels.
  graph& pool(std::string name, std::string from, std::size_t window, std::size_t stride = 0, std::size_t padding = 0) {
    layer l{std::move(name), layer_kind::pool, {std::move(from)}};
    if (window == 0) throw error("graph: pool '" + l.name + "' has window 0; pass 1 or more");
    l.window = window;
    l.stride = stride == 0 ? window : stride;
    l.padding = padding;
    return push(std::move(l));
  }

  /// Global (adaptive 1x1) pooling: every channel becomes one value.
  graph& global_pool(std::string name, std::string from) {
    return push(layer{std::move(name), layer_kind::global_pool, {std::move(from)}});
  }

  /// Freezes the group that carries layer `layer`'s output channels (every group, for a
  /// concatenation): it is listed but never sorted or pruned.
  graph& freeze(std::string layer) {
    frozen_.push_back(std::move(layer));
    cache_.reset();
    return *this;
  }

  /// Every channel group, checking the graph first (see the class comment). Order: by
  /// first producer, in the graph's order (declaration order where data flow allows).
  const std::vector<group_info>& groups() const { return state().groups; }

  /// Indices of the groups that may be pruned (not frozen).
  std::vector<std::size_t> prunable() const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < groups().size(); ++i)
      if (!groups()[i].frozen) out.push_back(i);
    return out;
  }

  /// The group that carries layer `layer`'s output channels. Throws when no layer has that
  /// name, when it carries several (a concatenation) or only network-input channels.
  std::size_t group_of(std::string_view layer) const {
    const analysis& a = state();
    const std::size_t l = index_of(layer, "group_of");
    const auto& segs = a.values[l].segs;
    if (segs.size() != 1)
      throw error("graph: layer '" + std::string(layer) + "' carries " + std::to_string(segs.size()) +
                  " groups (a concatenation); ask for one of its inputs");
    const std::size_t g = a.space_group[segs[0].space];
    if (g == npos)
      throw error("graph: layer '" + std::string(layer) + "' carries the network input's channels, which no group holds");
    return g;
  }

  /// Group i as a channel_group over the current views, members named as in member_info
  /// (frozen groups come frozen). Throws for a group that cannot be moved as one (a layer
  /// that reads the same channels twice, or both reads and writes them).
  channel_group<T> group(std::size_t i) const {
    const analysis& a = state();
    check_group(a, i);
    const group_info& g = a.groups[i];
    if (!a.unsupported[i].empty())
      throw error("graph: group '" + g.name + "' cannot be moved as one: " + a.unsupported[i] + "; freeze it");
    std::vector<member<T>> m;
    m.reserve(g.members.size());
    for (std::size_t k = 0; k < g.members.size(); ++k) {
      const member_info& mi = g.members[k];
      m.push_back({mi.name, layers_[a.sources[i][k].first].t[a.sources[i][k].second], mi.axis, mi.factor, mi.offset,
                   mi.count});
    }
    return channel_group<T>(g.name, std::move(m), g.frozen);
  }

  /// The current view of tensor `name` (`<layer>.weight`, `.bias`, `.running_mean`,
  /// `.running_var`); its shape shrinks after pruning.
  tensor_ref<T> view(std::string_view name) const {
    const std::size_t dot = name.rfind('.');
    if (dot != std::string_view::npos) {
      const auto it = names_.find(name.substr(0, dot));
      if (it != names_.end()) {
        const layer& l = layers_[it->second];
        for (std::size_t s = 0; s < 4; ++s)
          if (l.t[s].rank() && name.substr(dot + 1) == param_name(l.kind, s)) return l.t[s];
      }
    }
    throw error("graph: no tensor '" + std::string(name) + "'; name it <layer>.weight, .bias, .running_mean or .running_var");
  }

  /// One score per channel of group i: channel_group::importance under `c` on every member
  /// of role `role`, summed in member order (or then divided by their number: `combine`;
  /// one member: its scores unchanged). The lab's sorting score is criterion::l2 on
  /// member_role::in_weight; network slimming's is criterion::l1 on member_role::bn_weight.
  /// Throws when the group has no member of that role.
  template <criterion::elementwise_criterion C>
  std::vector<T> importance(std::size_t i, const C& c, member_role role = member_role::in_weight,
                            score_combine combine = score_combine::sum) const {
    const channel_group<T> g = group(i);
    std::vector<T> sum;
    std::size_t n = 0;
    for (const member_info& m : groups()[i].members) {
      if (m.role != role) continue;
      const std::vector<T> s = g.importance(c, m.name);
      if (n++ == 0) sum = s;
      else for (std::size_t k = 0; k < s.size(); ++k) sum[k] += s[k];
    }
    if (combine == score_combine::mean && n > 1)
      for (T& x : sum) x /= static_cast<T>(n);
    if (n == 0)
      throw error("graph: group '" + groups()[i].name + "' has no member of the requested role (" +
                  (role == member_role::bn_weight ? "no BatchNorm on its channels" : "see member_info::role") +
                  "); score it from another role");
    return sum;
  }

  /// Sorts every prunable group by importance(i, c, role), most important first (the
  /// lab's channel sorting is the default): after it, keeping the first k channels keeps
  /// the best k. Shapes do not change.
  template <criterion::elementwise_criterion C = criterion::l2>
  void sort_channels(const C& c = {}, member_role role = member_role::in_weight) {
    const auto ids = prunable();
    std::vector<std::vector<T>> scores;  // all scored before any group moves
    for (std::size_t i : ids) scores.push_back(importance(i, c, role));
    for (std::size_t k = 0; k < ids.size(); ++k) group(ids[k]).sort_by(scores[k]);
  }

  /// A plan that keeps every channel of every group.
  channel_plan keep_all() const {
    channel_plan p;
    for (const group_info& g : groups()) {
      p.keep.emplace_back(g.channels);
      std::iota(p.keep.back().begin(), p.keep.back().end(), std::size_t{0});
    }
    return p;
  }

  /// Network slimming over the graph: one global selection (slimming_masks) over the
  /// |gamma| scores of every prunable group that has a BatchNorm — for a group coupled by
  /// additions the |gamma| of its BatchNorms averaged per channel (`combine`; see
  /// score_combine for why the mean is the default) — with `percent` of those channels cut
  /// and at least `min_keep` kept per group (1 by default: a group cannot lose every
  /// channel). Groups without a BatchNorm keep all. Returns the plan and the threshold.
  graph_slimming<T> slimming_plan(double percent, std::size_t min_keep = 1,
                                  score_combine combine = score_combine::mean) const {
    sparsity_limits limits;
    limits.min_kept = min_keep;
    return slimming_plan(percent, limits, combine);
  }

  /// slimming_plan with every per-group limit of slimming_masks(gammas, percent, limits):
  /// `limits.max` caps each group's pruned fraction (0.75 keeps at least a quarter of every
  /// group, a per-layer minimum that scales with the layer, where min_kept is one count for
  /// all), `limits.min_kept` is the count minimum.
  graph_slimming<T> slimming_plan(double percent, const sparsity_limits& limits,
                                  score_combine combine = score_combine::mean) const {
    std::vector<std::size_t> ids;
    std::vector<std::vector<T>> scores;
    for (std::size_t i : prunable())
      if (!groups()[i].batch_norms.empty()) {
        ids.push_back(i);
        scores.push_back(importance(i, criterion::l1{}, member_role::bn_weight, combine));
      }
    std::vector<named_tensor<T>> views;
    for (std::size_t k = 0; k < ids.size(); ++k) views.push_back({groups()[ids[k]].name, make_view(scores[k])});
    const auto sel = slimming_masks(views, percent, limits);
    graph_slimming<T> out{keep_all(), sel.threshold};
    for (std::size_t k = 0; k < ids.size(); ++k) {
      auto& keep = out.plan.keep[ids[k]];
      keep.clear();
      for (std::size_t c = 0; c < scores[k].size(); ++c)
        if (sel.masks[k].data()[c]) keep.push_back(c);
    }
    return out;
  }

  /// The kept channels of every layer under `plan`, in the graph's order (see
  /// layer_channels): what a smaller network is rebuilt from. Checks the plan like prune().
  std::vector<layer_channels> cfg(const channel_plan& plan) const {
    const analysis& a = state();
    check_plan(a, plan);
    std::vector<std::vector<std::size_t>> kept(layers_.size());
    std::vector<layer_channels> out;
    for (std::size_t l : a.order) {
      std::size_t off = 0;
      for (const segment& s : a.values[l].segs) {
        const std::size_t g = a.space_group[s.space];
        std::vector<std::size_t> k;
        if (g == npos) {
          k.resize(s.channels);
          std::iota(k.begin(), k.end(), std::size_t{0});
        } else {
          k = plan.keep[g];
          std::sort(k.begin(), k.end());
        }
        for (std::size_t c : k) kept[l].push_back(off + c);
        off += s.channels;
      }
      const layer& L = layers_[l];
      std::size_t in = 0;
      if (L.kind == layer_kind::input) in = L.channels;
      else if (L.kind == layer_kind::concat)
        for (const auto& f : L.from) in += kept[names_.find(f)->second].size();
      else in = kept[names_.find(L.from[0])->second].size() * (L.kind == layer_kind::linear ? L.factor : 1);
      out.push_back({L.name, L.kind, kept[l], in});
    }
    return out;
  }

  /// Removes every channel the plan does not keep, in place: each group through
  /// channel_group::keep (every member compacted at the start of its buffer), and the
  /// graph adopts the smaller views. The whole plan is checked first (one entry per group,
  /// indices in range and each once, at least one per group, frozen groups whole); a plan
  /// that fails changes nothing.
  void prune(const channel_plan& plan) {
    const analysis& a = state();
    check_plan(a, plan);
    std::vector<std::size_t> changing;
    for (std::size_t i = 0; i < a.groups.size(); ++i)
      if (plan.keep[i].size() != a.groups[i].channels) changing.push_back(i);
    for (std::size_t i : changing) (void)group(i);  // every group buildable before any moves
    for (std::size_t i : changing) {
      channel_group<T> g = group(i);
      g.keep(plan.keep[i]);
      const auto src = state().sources[i];
      for (std::size_t k = 0; k < src.size(); ++k) layers_[src[k].first].t[src[k].second] = g.members()[k].view;
      cache_.reset();  // channel counts and concatenation offsets changed
    }
  }

  /// The removal into a smaller network: writes the weights `plan` keeps into the
  /// tensors of `smaller`, a graph of the same layers (names, kinds, inputs) over tensors
  /// already sized as the plan leaves them (build it from cfg(plan)). This graph's tensors
  /// are not changed: a copy of them goes through prune() and is written out. Throws,
  /// writing nothing, when the layers differ or a tensor of `smaller` has another shape.
  void copy_kept(const channel_plan& plan, graph& smaller) const {
    const analysis& a = state();
    check_plan(a, plan);
    (void)smaller.state();
    if (smaller.layers_.size() != layers_.size())
      throw error("graph: copy_kept: the smaller network has " + std::to_string(smaller.layers_.size()) +
                  " layers, this one " + std::to_string(layers_.size()) + "; describe both the same way");
    // The shapes the plan leaves: each member's axis shrinks by the channels its group loses.
    std::vector<std::array<std::vector<std::size_t>, 4>> want(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l)
      for (std::size_t s = 0; s < 4; ++s) want[l][s].assign(layers_[l].t[s].shape().begin(), layers_[l].t[s].shape().end());
    for (std::size_t i = 0; i < a.groups.size(); ++i)
      for (std::size_t k = 0; k < a.sources[i].size(); ++k) {
        const member_info& m = a.groups[i].members[k];
        want[a.sources[i][k].first][a.sources[i][k].second][m.axis] -= (a.groups[i].channels - plan.keep[i].size()) * m.factor;
      }
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const layer &L = layers_[l], &S = smaller.layers_[l];
      if (L.name != S.name || L.kind != S.kind || L.from != S.from)
        throw error("graph: copy_kept: layer " + std::to_string(l) + " of the smaller network is " +
                    layer_kind_name(S.kind) + " '" + S.name + "' but this one's is " + layer_kind_name(L.kind) + " '" +
                    L.name + "' (or their inputs differ); describe both networks the same way");
      for (std::size_t s = 0; s < 4; ++s) {
        const auto have = S.t[s].shape();
        if (!std::equal(have.begin(), have.end(), want[l][s].begin(), want[l][s].end()))
          throw error("graph: copy_kept: '" + L.name + "." + param_name(L.kind, s) + "' of the smaller network has shape " +
                      shape_string(have) + " but the plan leaves " + shape_string(want[l][s]) +
                      "; build the smaller network from cfg(plan)");
      }
    }
    graph scratch(*this);
    std::vector<std::vector<T>> store;
    for (auto& L : scratch.layers_)
      for (auto& t : L.t)
        if (t.rank()) {
          store.emplace_back(t.data(), t.data() + t.size());
          t = tensor_ref<T>(store.back().data(), t.shape());
        }
    scratch.cache_.reset();
    scratch.prune(plan);
    for (std::size_t l = 0; l < layers_.size(); ++l)
      for (std::size_t s = 0; s < 4; ++s) {
        const tensor_ref<T>& from = scratch.layers_[l].t[s];
        if (from.rank()) std::copy(from.data(), from.data() + from.size(), smaller.layers_[l].t[s].data());
      }
  }

  /// Parameters (weights, biases, BN scale and shift; running statistics are buffers) and
  /// multiply-accumulates (torchprofile's rule: convs and linears only) of one layer at the
  /// graph's input size.
  struct layer_cost {
    std::string name;
    layer_kind kind;
    std::size_t params = 0;
    std::size_t macs = 0;
  };

  /// Per-layer parameters and MACs, in the graph's order (every conv needs a known size:
  /// declare the input's height and width).
  std::vector<layer_cost> report() const {
    const analysis& a = state();
    std::vector<layer_cost> out;
    for (std::size_t l : a.order) {
      const layer& L = layers_[l];
      layer_cost c{L.name, L.kind};
      if (L.kind == layer_kind::conv || L.kind == layer_kind::linear)
        c.params = L.t[0].size() + (L.t[1].rank() ? L.t[1].size() : 0);
      if (L.kind == layer_kind::batch_norm) c.params = 2 * L.t[0].size();
      if (L.kind == layer_kind::conv) {
        const value& v = a.values[l];
        if (!v.known())
          throw error("graph: report: conv '" + L.name + "' has an unknown input size; declare the input's height and width");
        c.macs = static_cast<std::size_t>(conv2d_macs(L.t[0].shape(), v.h, v.w));
      }
      if (L.kind == layer_kind::linear) c.macs = static_cast<std::size_t>(linear_macs(L.t[0].extent(0), L.t[0].extent(1)));
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  struct layer {
    std::string name;
    layer_kind kind;
    std::vector<std::string> from;
    std::array<tensor_ref<T>, 4> t{};  // conv / linear: weight, bias; batch_norm: gamma, beta, mean, var
    conv_options conv{};
    std::size_t factor = 1;
    std::size_t window = 0, stride = 0, padding = 0;
    std::size_t channels = 0, height = 0, width = 0;
  };
  struct segment {
    std::size_t space, channels;
  };
  struct value {
    std::vector<segment> segs;
    std::size_t h = 0, w = 0;
    bool flat = false;
    std::size_t channels() const noexcept {
      std::size_t c = 0;
      for (const auto& s : segs) c += s.channels;
      return c;
    }
    bool known() const noexcept { return h != 0; }
  };
  struct analysis {
    std::vector<std::size_t> order;
    std::vector<value> values;
    std::vector<std::size_t> space_group;  // per channel space: its group, or npos
    std::vector<group_info> groups;
    std::vector<std::vector<std::pair<std::size_t, std::size_t>>> sources;  // per member: (layer, tensor slot)
    std::vector<std::string> unsupported;
  };

  static const char* param_name(layer_kind k, std::size_t s) {
    static constexpr const char* bn[] = {"weight", "bias", "running_mean", "running_var"};
    static constexpr const char* wb[] = {"weight", "bias", "", ""};
    return k == layer_kind::batch_norm ? bn[s] : wb[s];
  }
  static std::string who(const layer& l) { return std::string(layer_kind_name(l.kind)) + " '" + l.name + "'"; }
  static std::string size_text(const value& v) {
    return v.flat ? "a flat vector" : v.known() ? std::to_string(v.h) + " x " + std::to_string(v.w) : "an unknown size";
  }

  static void check_bias(const layer& l) {
    const tensor_ref<T>& b = l.t[1];
    if (b.rank() && (b.rank() != 1 || b.extent(0) != l.t[0].extent(0)))
      throw error("graph: " + who(l) + " bias has shape " + shape_string(b.shape()) + " for " +
                  std::to_string(l.t[0].extent(0)) + " outputs; pass a [" + std::to_string(l.t[0].extent(0)) +
                  "] bias or none");
  }

  graph& push(layer l) {
    if (l.name.empty()) throw error("graph: a " + std::string(layer_kind_name(l.kind)) + " layer has an empty name; name every layer");
    if (names_.contains(l.name))
      throw error("graph: a layer named '" + l.name + "' already exists; layer names must be unique");
    for (const auto& t : l.t)
      if (t.rank() && !t.is_contiguous())
        throw error("graph: " + who(l) + " has a tensor that is not contiguous row-major; structural pruning moves "
                    "memory and needs packed tensors");
    names_.emplace(l.name, layers_.size());
    layers_.push_back(std::move(l));
    cache_.reset();
    return *this;
  }

  std::size_t index_of(std::string_view name, const char* what) const {
    const auto it = names_.find(name);
    if (it == names_.end())
      throw error("graph: " + std::string(what) + ": no layer named '" + std::string(name) + "' (names are case-sensitive)");
    return it->second;
  }

  static void check_group(const analysis& a, std::size_t i) {
    if (i >= a.groups.size())
      throw error("graph: group " + std::to_string(i) + " does not exist; the graph has " + std::to_string(a.groups.size()) +
                  " channel groups");
  }

  static void check_plan(const analysis& a, const channel_plan& plan) {
    if (plan.keep.size() != a.groups.size())
      throw error("graph: the plan has " + std::to_string(plan.keep.size()) + " entries for " +
                  std::to_string(a.groups.size()) + " channel groups; start from keep_all()");
    for (std::size_t i = 0; i < a.groups.size(); ++i) {
      const group_info& g = a.groups[i];
      const auto& k = plan.keep[i];
      if (k.empty())
        throw error("graph: the plan keeps 0 channels of group '" + g.name + "', which would cut the network; keep at least one");
      std::vector<char> seen(g.channels, 0);
      for (std::size_t c : k) {
        if (c >= g.channels)
          throw error("graph: the plan for group '" + g.name + "' keeps channel " + std::to_string(c) + ", out of range for " +
                      std::to_string(g.channels) + " channels");
        if (seen[c]++)
          throw error("graph: the plan for group '" + g.name + "' lists channel " + std::to_string(c) + " twice; list each once");
      }
      if (k.size() != g.channels && g.frozen)
        throw error("graph: group '" + g.name + "' is frozen (" + g.frozen_reason + "); its plan entry must keep all " +
                    std::to_string(g.channels) + " channels");
    }
  }

  const analysis& state() const {
    if (!cache_) cache_ = derive();
    return *cache_;
  }

  // Topological order, smallest declaration index first among the ready layers.
  std::vector<std::size_t> sort_layers() const {
    const std::size_t n = layers_.size();
    std::vector<std::vector<std::size_t>> readers(n);
    std::vector<std::size_t> pending(n, 0);
    for (std::size_t l = 0; l < n; ++l)
      for (const auto& f : layers_[l].from) {
        const auto it = names_.find(f);
        if (it == names_.end())
          throw error("graph: " + who(layers_[l]) + " reads '" + f + "', which is no layer of the graph; define '" + f +
                      "' or fix the input name (names are case-sensitive)");
        readers[it->second].push_back(l);
        ++pending[l];
      }
    std::set<std::size_t> ready;
    for (std::size_t l = 0; l < n; ++l)
      if (pending[l] == 0) ready.insert(l);
    std::vector<std::size_t> order;
    while (!ready.empty()) {
      const std::size_t l = *ready.begin();
      ready.erase(ready.begin());
      order.push_back(l);
      for (std::size_t r : readers[l])
        if (--pending[r] == 0) ready.insert(r);
    }
    if (order.size() == n) return order;
    // Every layer left reads another one left: walk inputs until a layer repeats.
    std::size_t l = 0;
    while (pending[l] == 0) ++l;
    std::vector<std::size_t> path;
    std::vector<std::size_t> at(n, npos);
    while (at[l] == npos) {
      at[l] = path.size();
      path.push_back(l);
      for (const auto& f : layers_[l].from) {
        const std::size_t p = names_.find(f)->second;
        if (pending[p] != 0) {
          l = p;
          break;
        }
      }
    }
    std::string cycle = "'" + layers_[l].name + "'";
    for (std::size_t k = path.size(); k-- > at[l];) cycle += " -> '" + layers_[path[k]].name + "'";
    throw error("graph: layers " + cycle + " form a cycle (each feeds the next); a network's layers must not feed "
                "themselves — check the input names");
  }

  analysis derive() const {
    if (layers_.empty()) throw error("graph: no layers; describe the network first (input, conv, batch_norm, ...)");
    for (const auto& f : frozen_) (void)index_of(f, "freeze");
    analysis a;
    a.order = sort_layers();
    a.values.resize(layers_.size());
    std::vector<std::size_t> parent;                  // union-find over channel spaces
    std::vector<std::size_t> space_layer;             // the layer that creates each space
    const auto find = [&](std::size_t s) {
      while (parent[s] != s) s = parent[s] = parent[parent[s]];
      return s;
    };
    const auto new_space = [&](std::size_t l) {
      parent.push_back(parent.size());
      space_layer.push_back(l);
      return parent.size() - 1;
    };
    std::vector<char> read(layers_.size(), 0);
    for (std::size_t l : a.order) {
      const layer& L = layers_[l];
      std::vector<const value*> in;
      for (const auto& f : L.from) {
        const std::size_t p = names_.find(f)->second;
        in.push_back(&a.values[p]);
        read[p] = 1;
      }
      value& v = a.values[l];
      const auto from = [&](std::size_t k) { return "'" + L.from[k] + "'"; };
      switch (L.kind) {
        case layer_kind::input:
          v.segs = {{new_space(l), L.channels}};
          v.h = L.height, v.w = L.width;
          break;
        case layer_kind::conv: {
          const value& x = *in[0];
          if (x.flat)
            throw error("graph: " + who(L) + " reads " + from(0) + ", a flat vector of features; a convolution needs a feature map");
          if (L.t[0].extent(1) != x.channels())
            throw error("graph: " + who(L) + " takes " + std::to_string(L.t[0].extent(1)) + " input channels (weight " +
                        shape_string(L.t[0].shape()) + ") but " + from(0) + " gives it " + std::to_string(x.channels()) +
                        "; pass this layer's weight or fix its input");
          if (x.known()) {
            try {
              v.h = conv2d_output_extent(x.h, L.t[0].extent(2), L.conv.stride[0], L.conv.padding[0], L.conv.dilation[0]);
              v.w = conv2d_output_extent(x.w, L.t[0].extent(3), L.conv.stride[1], L.conv.padding[1], L.conv.dilation[1]);
            } catch (const error& e) {
              throw error("graph: " + who(L) + " on its " + size_text(x) + " input from " + from(0) + ": " + e.what());
            }
          }
          v.segs = {{new_space(l), L.t[0].extent(0)}};
          break;
        }
        case layer_kind::batch_norm:
          if (L.t[0].extent(0) != in[0]->channels())
            throw error("graph: " + who(L) + " has " + std::to_string(L.t[0].extent(0)) + " channels but " + from(0) +
                        " gives it " + std::to_string(in[0]->channels()) + "; pass the BatchNorm of this layer");
          v = *in[0];
          break;
        case layer_kind::linear: {
          const value& x = *in[0];
          if ((x.flat || x.known()) && L.factor != (x.flat ? 1 : x.h * x.w))
            throw error("graph: " + who(L) + " reads " + from(0) + " of " + std::to_string(x.channels()) + " channels at " +
                        size_text(x) + " but its flatten factor is " + std::to_string(L.factor) + "; pass factor " +
                        std::to_string(x.flat ? 1 : x.h * x.w) + " (positions per channel)");
          if (L.t[0].extent(1) != x.channels() * L.factor)
            throw error("graph: " + who(L) + " takes " + std::to_string(L.t[0].extent(1)) + " inputs (weight " +
                        shape_string(L.t[0].shape()) + ") but " + from(0) + " gives it " + std::to_string(x.channels()) +
                        " channels x factor " + std::to_string(L.factor) + " = " +
                        std::to_string(x.channels() * L.factor) + "; pass this layer's weight, or the flatten factor");
          v.segs = {{new_space(l), L.t[0].extent(0)}};
          v.flat = true;
          break;
        }
        case layer_kind::add: {
          const value& x = *in[0];
          for (std::size_t k = 1; k < in.size(); ++k) {
            const value& y = *in[k];
            if (y.channels() != x.channels())
              throw error("graph: " + who(L) + " adds " + from(0) + " (" + std::to_string(x.channels()) + " channels) and " +
                          from(k) + " (" + std::to_string(y.channels()) + " channels); the inputs of an addition must carry the same "
                          "channels");
            if (x.flat != y.flat || (x.known() && y.known() && (x.h != y.h || x.w != y.w)))
              throw error("graph: " + who(L) + " adds " + from(0) + " at " + size_text(x) + " and " + from(k) + " at " +
                          size_text(y) + "; check the strides and paddings of both branches (a projection shortcut "
                          "needs the block's stride)");
            if (y.segs.size() != x.segs.size() ||
                !std::equal(x.segs.begin(), x.segs.end(), y.segs.begin(),
                            [](const segment& p, const segment& q) { return p.channels == q.channels; }))
              throw error("graph: " + who(L) + " adds concatenations whose parts differ (" + from(0) + " and " + from(k) +
                          "); spruce couples an addition part by part — make the parts line up");
            for (std::size_t s = 0; s < x.segs.size(); ++s) parent[find(y.segs[s].space)] = find(x.segs[s].space);
          }
          v = x;
          for (const value* y : in)
            if (y->known()) v.h = y->h, v.w = y->w;
          break;
        }
        case layer_kind::concat:
          v = *in[0];
          for (std::size_t k = 1; k < in.size(); ++k) {
            const value& y = *in[k];
            if (y.flat != v.flat || (v.known() && y.known() && (v.h != y.h || v.w != y.w)))
              throw error("graph: " + who(L) + " joins " + from(0) + " at " + size_text(*in[0]) + " and " + from(k) + " at " +
                          size_text(y) + "; the inputs of a concatenation must have one size");
            v.segs.insert(v.segs.end(), y.segs.begin(), y.segs.end());
            if (y.known()) v.h = y.h, v.w = y.w;
          }
          break;
        case layer_kind::pass: v = *in[0]; break;
        case layer_kind::pool:
          v = *in[0];
          if (v.flat) throw error("graph: " + who(L) + " reads " + from(0) + ", a flat vector; pooling needs a feature map");
          if (v.known()) {
            try {
              v.h = pool2d_output_extent(v.h, L.window, L.stride, L.padding);
              v.w = pool2d_output_extent(v.w, L.window, L.stride, L.padding);
            } catch (const error& e) {
              throw error("graph: " + who(L) + " on its " + size_text(*in[0]) + " input from " + from(0) + ": " + e.what());
            }
          }
          break;
        case layer_kind::global_pool:
          v = *in[0];
          if (v.flat) throw error("graph: " + who(L) + " reads " + from(0) + ", a flat vector; pooling needs a feature map");
          v.h = v.w = 1;
          break;
      }
    }

    // Two layers over one buffer would have it moved twice (by two groups).
    struct extent_of {
      const T* begin;
      const T* end;
      std::size_t layer;
    };
    std::vector<extent_of> spans;
    for (std::size_t l = 0; l < layers_.size(); ++l)
      for (const auto& t : layers_[l].t)
        if (t.rank() && t.size()) spans.push_back({t.data(), t.data() + t.size(), l});
    std::sort(spans.begin(), spans.end(), [](const extent_of& x, const extent_of& y) { return x.begin < y.begin; });
    for (std::size_t k = 1, far = 0; k < spans.size(); ++k) {
      if (spans[k].begin < spans[far].end)
        throw error("graph: " + who(layers_[spans[far].layer]) + " and " + who(layers_[spans[k].layer]) +
                    " share tensor memory; pruning would move it twice — give each layer its own tensors");
      if (spans[k].end > spans[far].end) far = k;
    }

    // Classes of coupled spaces become groups, ordered by their first producer.
    const std::size_t spaces = parent.size();
    std::vector<std::size_t> root_group(spaces, npos);
    std::vector<std::size_t> roots;
    for (std::size_t l : a.order)
      if (layers_[l].kind == layer_kind::conv || layers_[l].kind == layer_kind::linear) {
        const std::size_t r = find(a.values[l].segs[0].space);
        if (root_group[r] == npos) {
          root_group[r] = roots.size();
          roots.push_back(r);
        }
      }
    a.space_group.resize(spaces);
    for (std::size_t s = 0; s < spaces; ++s) a.space_group[s] = root_group[find(s)];
    a.groups.resize(roots.size());
    a.sources.resize(roots.size());
    a.unsupported.resize(roots.size());
    const auto freeze_value = [&](const value& v, const std::string& why) {
      for (const segment& s : v.segs) {
        const std::size_t g = a.space_group[s.space];
        if (g != npos && !a.groups[g].frozen) {
          a.groups[g].frozen = true;
          a.groups[g].frozen_reason = why;
        }
      }
    };
    const auto add_member = [&](std::size_t g, std::size_t l, std::size_t slot, member_role role, std::size_t axis,
                                std::size_t factor, std::size_t offset, std::size_t count) {
      for (std::size_t k = 0; k < a.sources[g].size(); ++k)
        if (a.sources[g][k] == std::pair{l, slot} && a.unsupported[g].empty())
          a.unsupported[g] = who(layers_[l]) + (a.groups[g].members[k].role == role ? " reads these channels twice"
                                                                                    : " both reads and writes these channels");
      a.groups[g].members.push_back({layers_[l].name + "." + param_name(layers_[l].kind, slot), layers_[l].name, role, axis,
                                     factor, offset, count});
      a.sources[g].push_back({l, slot});
    };
    const auto note = [](std::vector<std::string>& list, const std::string& name) {
      if (std::find(list.begin(), list.end(), name) == list.end()) list.push_back(name);
    };
    for (std::size_t l : a.order) {
      const layer& L = layers_[l];
      // Reading: a consumer's input columns, one member per part of its input.
      if (L.kind == layer_kind::conv || L.kind == layer_kind::linear || L.kind == layer_kind::batch_norm ||
          L.kind == layer_kind::add) {
        const value& x = a.values[names_.find(L.from[0])->second];
        const bool whole = x.segs.size() == 1;
        std::size_t off = 0;
        for (const segment& s : x.segs) {
          const std::size_t g = a.space_group[s.space];
          if (g != npos) {
            if (L.kind == layer_kind::batch_norm) {
              note(a.groups[g].batch_norms, L.name);
              static constexpr member_role roles[] = {member_role::bn_weight, member_role::bn_bias,
                                                      member_role::bn_running_mean, member_role::bn_running_var};
              for (std::size_t k = 0; k < 4; ++k) add_member(g, l, k, roles[k], 0, 1, whole ? 0 : off, whole ? 0 : s.channels);
            } else if (L.kind == layer_kind::add) {
              note(a.groups[g].additions, L.name);
            } else {
              note(a.groups[g].consumers, L.name);
              add_member(g, l, 0, member_role::in_weight, 1, L.factor, whole ? 0 : off * L.factor, whole ? 0 : s.channels);
            }
          }
          off += s.channels;
        }
      }
      // Writing: a producer's weight rows and bias.
      if (L.kind == layer_kind::conv || L.kind == layer_kind::linear) {
        const std::size_t g = a.space_group[a.values[l].segs[0].space];
        group_info& G = a.groups[g];
        if (G.producers.empty()) {
          G.name = L.name;
          G.channels = L.t[0].extent(0);
        }
        G.producers.push_back(L.name);
        add_member(g, l, 0, member_role::out_weight, 0, 1, 0, 0);
        if (L.t[1].rank()) add_member(g, l, 1, member_role::out_bias, 0, 1, 0, 0);
      }
    }
    for (std::size_t l : a.order) {
      const layer& L = layers_[l];
      if (L.kind == layer_kind::input) freeze_value(a.values[l], "joined to the network input '" + L.name + "'");
    }
    for (const auto& f : frozen_) freeze_value(a.values[names_.find(f)->second], "frozen at layer '" + f + "'");
    for (std::size_t l : a.order)
      if (!read[l]) freeze_value(a.values[l], "the network output '" + layers_[l].name + "' (no layer reads it)");
    for (std::size_t g = 0; g < a.groups.size(); ++g)
      if (!a.unsupported[g].empty() && !a.groups[g].frozen) {
        a.groups[g].frozen = true;
        a.groups[g].frozen_reason = a.unsupported[g] + "; no one channel_group can move them";
      }
    return a;
  }

  std::vector<layer> layers_;
  std::map<std::string, std::size_t, std::less<>> names_;
  std::vector<std::string> frozen_;
  mutable std::optional<analysis> cache_;
};

}  // namespace spruce::structural
