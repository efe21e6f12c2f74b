#include "train/resnet.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>

#include <spruce/core/error.hpp>
#include <spruce/core/parallel.hpp>
#include <spruce/metrics/macs.hpp>

namespace train {
namespace {

constexpr std::array<std::size_t, 3> dense_planes = {16, 32, 64};
constexpr std::size_t expansion = 4;

std::string block_prefix(std::size_t stage, std::size_t b) {
  return "stage" + std::to_string(stage + 1) + "." + std::to_string(b) + ".";
}

template <class T>
spruce::named_tensor<T> named(std::string name, std::span<T> values, std::initializer_list<std::size_t> shape) {
  return {std::move(name),
          spruce::tensor_ref<T>(values.data(), std::span<const std::size_t>(shape.begin(), shape.size()))};
}

template <class T>
void push_conv(std::vector<spruce::named_tensor<T>>& out, const std::string& name, conv2d<T>& c, bool grad) {
  const auto s = c.weight_shape();
  out.push_back(named(name + ".weight", grad ? c.weight_grad() : c.weight(), {s[0], s[1], s[2], s[3]}));
}

template <class T>
void push_bn(std::vector<spruce::named_tensor<T>>& out, const std::string& name, batchnorm2d<T>& bn, bool grad) {
  out.push_back(named(name + ".weight", grad ? bn.weight_grad() : bn.weight(), {bn.channels()}));
  out.push_back(named(name + ".bias", grad ? bn.bias_grad() : bn.bias(), {bn.channels()}));
}

template <class T>
void push_stats(std::vector<spruce::named_tensor<T>>& out, const std::string& name, batchnorm2d<T>& bn) {
  out.push_back(named(name + ".running_mean", bn.running_mean(), {bn.channels()}));
  out.push_back(named(name + ".running_var", bn.running_var(), {bn.channels()}));
}

template <class T>
void he_normal(conv2d<T>& c, std::mt19937_64& rng) {
  const double fan_in = static_cast<double>(c.in_channels() * c.kernel() * c.kernel());
  std::normal_distribution<double> he(0.0, std::sqrt(2.0 / fan_in));
  for (T& v : c.weight()) v = static_cast<T>(he(rng));
}

// y = max(a + b, 0) (NaN passes, as the layers' ReLU): the residual addition and the ReLU
// after it in one pass. Its backward is relu::backward on y.
template <class T>
void add_relu(const tensor<T>& a, const tensor<T>& b, tensor<T>& y) {
  y.resize(a.n(), a.c(), a.h(), a.w());
  const T* pa = a.data();
  const T* pb = b.data();
  T* py = y.data();
  spruce::parallel_chunks(a.size(), [&](std::size_t, std::size_t, std::size_t first, std::size_t last) {
    for (std::size_t i = first; i < last; ++i) {
      const T v = pa[i] + pb[i];
      py[i] = v < T(0) ? T(0) : v;
    }
  });
}

// x += y, elementwise (the two branches' input gradients meeting at a block's input).
template <class T>
void accumulate(tensor<T>& x, const tensor<T>& y) {
  T* px = x.data();
  const T* py = y.data();
  spruce::parallel_chunks(x.size(), [&](std::size_t, std::size_t, std::size_t first, std::size_t last) {
    for (std::size_t i = first; i < last; ++i) px[i] += py[i];
  });
}

std::string cfg_error(const std::string& what) { return "resnet cfg: " + what; }

void validate(const resnet_cfg& c) {
  if (c.in_channels == 0 || c.num_classes == 0 || c.stem == 0)
    throw spruce::error(cfg_error("in_channels " + std::to_string(c.in_channels) + ", num_classes " +
                                  std::to_string(c.num_classes) + ", stem " + std::to_string(c.stem) +
                                  "; each must be at least 1"));
  if (c.stages.empty()) throw spruce::error(cfg_error("no stage; pass at least one (resnet_channels gives three)"));
  for (std::size_t s = 0; s < c.stages.size(); ++s) {
    const auto& st = c.stages[s];
    const std::string where = "stage" + std::to_string(s + 1);
    if (st.out == 0 || st.stride == 0 || st.blocks.empty())
      throw spruce::error(cfg_error(where + ": out " + std::to_string(st.out) + ", stride " +
                                    std::to_string(st.stride) + ", " + std::to_string(st.blocks.size()) +
                                    " blocks; each must be at least 1"));
    for (std::size_t b = 0; b < st.blocks.size(); ++b)
      if (st.blocks[b].conv1 == 0 || st.blocks[b].conv2 == 0)
        throw spruce::error(cfg_error(where + "." + std::to_string(b) + ": conv1 " +
                                      std::to_string(st.blocks[b].conv1) + ", conv2 " +
                                      std::to_string(st.blocks[b].conv2) +
                                      " channels; a block keeps at least one channel in each (keep_rule::minimum)"));
  }
}

}  // namespace

resnet_cfg resnet_channels(double width, std::span<const std::size_t> blocks, std::size_t in_channels,
                           std::size_t num_classes) {
  if (!(width > 0) || !std::isfinite(width))
    throw spruce::error("resnet: width " + std::to_string(width) + " is not a positive number; pass e.g. 0.5 or 1");
  const std::array<std::size_t, 3> one_each = {1, 1, 1};
  if (blocks.empty()) blocks = one_each;
  if (blocks.size() != dense_planes.size())
    throw spruce::error("resnet: " + std::to_string(blocks.size()) +
                        " block counts; pass three, one per stage (e.g. {1, 1, 1})");
  resnet_cfg c;
  c.in_channels = in_channels;
  c.num_classes = num_classes;
  for (std::size_t s = 0; s < dense_planes.size(); ++s) {
    const double scaled = std::round(static_cast<double>(dense_planes[s]) * width);
    if (scaled < 1)
      throw spruce::error("resnet: width " + std::to_string(width) + " leaves stage " + std::to_string(s + 1) +
                          " without channels; pass a width of at least " + std::to_string(0.5 / 16));
    const auto planes = static_cast<std::size_t>(scaled);
    if (s == 0) c.stem = planes;
    if (blocks[s] == 0)
      throw spruce::error("resnet: stage " + std::to_string(s + 1) + " has 0 blocks; pass at least 1");
    c.stages.push_back({planes * expansion, s == 0 ? 1u : 2u,
                        std::vector<resnet_block_cfg>(blocks[s], resnet_block_cfg{planes, planes})});
  }
  validate(c);
  return c;
}

resnet_cfg resnet_cfg_from_shapes(const std::map<std::string, std::vector<std::size_t>>& shapes) {
  const auto get = [&](const std::string& name, std::size_t rank) -> const std::vector<std::size_t>& {
    const auto it = shapes.find(name);
    if (it == shapes.end())
      throw spruce::error("resnet cfg from shapes: no tensor '" + name + "'; pass every tensor of a basic_resnet");
    if (it->second.size() != rank || std::find(it->second.begin(), it->second.end(), 0u) != it->second.end())
      throw spruce::error("resnet cfg from shapes: '" + name + "' has rank " + std::to_string(it->second.size()) +
                          " (or an empty axis) but a basic_resnet stores it with rank " + std::to_string(rank));
    return it->second;
  };
  const auto expect = [&](const std::string& name, std::size_t axis, std::size_t want) {
    const auto& s = shapes.at(name);
    if (s[axis] != want)
      throw spruce::error("resnet cfg from shapes: '" + name + "' has " + std::to_string(s[axis]) +
                          " channels on axis " + std::to_string(axis) + " but its neighbours give " +
                          std::to_string(want) + "; the shapes do not form one network");
  };
  resnet_cfg c;
  const auto& stem = get("conv1.weight", 4);
  c.stem = stem[0];
  c.in_channels = stem[1];
  std::size_t in = c.stem;
  for (std::size_t s = 0; shapes.count(block_prefix(s, 0) + "conv1.weight"); ++s) {
    resnet_stage_cfg st;
    st.stride = s == 0 ? 1 : 2;
    for (std::size_t b = 0; shapes.count(block_prefix(s, b) + "conv1.weight"); ++b) {
      const std::string p = block_prefix(s, b);
      const auto& w1 = get(p + "conv1.weight", 4);
      const auto& w2 = get(p + "conv2.weight", 4);
      const auto& w3 = get(p + "conv3.weight", 4);
      expect(p + "conv1.weight", 1, in);
      expect(p + "conv2.weight", 1, w1[0]);
      expect(p + "conv3.weight", 1, w2[0]);
      if (b == 0) {
        st.out = w3[0];
        get(p + "downsample.0.weight", 4);
        expect(p + "downsample.0.weight", 0, st.out);
        expect(p + "downsample.0.weight", 1, in);
      } else {
        expect(p + "conv3.weight", 0, st.out);
      }
      st.blocks.push_back({w1[0], w2[0]});
      in = st.out;
    }
    c.stages.push_back(std::move(st));
  }
  const auto& fc = get("fc.weight", 2);
  c.num_classes = fc[0];
  expect("fc.weight", 1, in);
  validate(c);
  return c;
}

std::string describe(const resnet_cfg& c) {
  std::string out = "stem " + std::to_string(c.stem);
  for (std::size_t s = 0; s < c.stages.size(); ++s) {
    out += " | stage" + std::to_string(s + 1) + " " + std::to_string(c.stages[s].out) + ":";
    for (std::size_t b = 0; b < c.stages[s].blocks.size(); ++b)
      out += (b ? ", " : " ") + std::to_string(c.stages[s].blocks[b].conv1) + "x" +
             std::to_string(c.stages[s].blocks[b].conv2);
  }
  return out;
}

template <class T>
basic_resnet<T>::block::block(std::size_t in, const resnet_block_cfg& inner, std::size_t out, std::size_t stride,
                              bool projection)
    : conv1(in, inner.conv1, 1),
      conv2(inner.conv1, inner.conv2, 3, stride, 1),
      conv3(inner.conv2, out, 1),
      bn1(inner.conv1, true),
      bn2(inner.conv2, true),
      bn3(out, false) {
  if (projection) {
    ds_conv.emplace(in, out, 1, stride, 0);
    ds_bn.emplace(out, false);
  }
}

// The cfg is validated before any layer is built: the member initialisers below only read
// it after validate() ran in the first one.
template <class T>
basic_resnet<T>::basic_resnet(const resnet_cfg& cfg, std::uint64_t seed)
    : cfg_((validate(cfg), cfg)),
      stem_conv_(cfg.in_channels, cfg.stem, 3, 1, 1, false),
      stem_bn_(cfg.stem, true),
      fc_(cfg.stages.back().out, cfg.num_classes) {
  std::mt19937_64 rng(seed);
  he_normal(stem_conv_, rng);
  std::size_t in = cfg.stem;
  stages_.resize(cfg.stages.size());
  for (std::size_t s = 0; s < cfg.stages.size(); ++s) {
    const auto& st = cfg.stages[s];
    stages_[s].reserve(st.blocks.size());
    for (std::size_t b = 0; b < st.blocks.size(); ++b) {
      stages_[s].emplace_back(in, st.blocks[b], st.out, b == 0 ? st.stride : 1, b == 0);
      block& k = stages_[s].back();
      he_normal(k.conv1, rng);
      he_normal(k.conv2, rng);
      he_normal(k.conv3, rng);
      if (k.ds_conv) he_normal(*k.ds_conv, rng);
      in = st.out;
    }
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  std::uniform_real_distribution<double> uniform(-bound, bound);
  for (T& v : fc_.weight()) v = static_cast<T>(uniform(rng));
  for (T& v : fc_.bias()) v = static_cast<T>(uniform(rng));
}

template <class T>
void basic_resnet<T>::check_input(std::size_t n, std::size_t c) const {
  if (n == 0) throw spruce::error("resnet forward: the batch is empty; pass at least one image");
  if (c != cfg_.in_channels)
    throw spruce::error("resnet forward: the images have " + std::to_string(c) + " channels but the model was built for " +
                        std::to_string(cfg_.in_channels) + "; set resnet_cfg::in_channels to match the data");
}

template <class T>
const tensor<T>& basic_resnet<T>::forward(std::span<const T> images, std::size_t n, std::size_t h, std::size_t w) {
  const std::size_t c = cfg_.in_channels;
  check_input(n, c);
  if (images.size() != n * c * h * w)
    throw spruce::error("resnet forward: " + std::to_string(images.size()) + " values for " + std::to_string(n) +
                        " images of " + std::to_string(c) + " x " + std::to_string(h) + " x " + std::to_string(w) +
                        "; pass n * c * h * w values (NCHW)");
  input_.resize(n, c, h, w);
  std::copy(images.begin(), images.end(), input_.data());
  return run();
}

template <class T>
const tensor<T>& basic_resnet<T>::forward(const tensor<T>& images) {
  check_input(images.n(), images.c());
  if (&images != &input_) {
    input_.resize(images.n(), images.c(), images.h(), images.w());
    std::copy(images.values().begin(), images.values().end(), input_.data());
  }
  return run();
}

template <class T>
const tensor<T>& basic_resnet<T>::run() {
  stem_conv_.forward(input_, stem_c_);
  stem_bn_.forward(stem_c_, stem_a_, training_);
  stem_pool_.forward(stem_a_, stem_p_);
  const tensor<T>* x = &stem_p_;
  for (auto& stage : stages_)
    for (auto& k : stage) {
      k.conv1.forward(*x, k.c1);
      k.bn1.forward(k.c1, k.a1, training_);
      k.conv2.forward(k.a1, k.c2);
      k.bn2.forward(k.c2, k.a2, training_);
      k.conv3.forward(k.a2, k.c3);
      k.bn3.forward(k.c3, k.b3, training_);
      const tensor<T>* shortcut = x;
      if (k.ds_conv) {
        k.ds_conv->forward(*x, k.dsc);
        k.ds_bn->forward(k.dsc, k.dsb, training_);
        shortcut = &k.dsb;
      }
      if (shortcut->shape() != k.b3.shape())
        throw spruce::error("resnet forward: a block's residual branch gives " + shape_text(k.b3.shape()) +
                            " but its shortcut " + shape_text(shortcut->shape()) +
                            "; a block without projection needs stride 1 and equal widths");
      add_relu(k.b3, *shortcut, k.out);
      x = &k.out;
    }
  gap_.forward(*x, features_);
  fc_.forward(features_, logits_);
  return logits_;
}

template <class T>
void basic_resnet<T>::backward(const tensor<T>& dlogits) {
  if (logits_.n() == 0) throw spruce::error("resnet backward: no forward pass yet; call forward first");
  if (dlogits.shape() != logits_.shape())
    throw spruce::error("resnet backward: the gradient has shape " + shape_text(dlogits.shape()) +
                        " but the logits have " + shape_text(logits_.shape()) +
                        "; pass d(loss)/d(logits) of the last forward");
  fc_.backward(features_, dlogits, &d_features_);
  gap_.backward(d_features_, stages_.back().back().d_out);
  const relu<T> r;
  for (std::size_t s = stages_.size(); s-- > 0;)
    for (std::size_t b = stages_[s].size(); b-- > 0;) {
      block& k = stages_[s][b];
      const bool first = s == 0 && b == 0;
      const tensor<T>& x = first ? stem_p_ : b > 0 ? stages_[s][b - 1].out : stages_[s - 1].back().out;
      tensor<T>& dx = first ? d_stem_p_ : b > 0 ? stages_[s][b - 1].d_out : stages_[s - 1].back().d_out;
      r.backward(k.out, k.d_out, k.d_sum);
      k.bn3.backward(k.c3, k.d_sum, &k.d3);
      k.conv3.backward(k.a2, k.d3, &k.d2);
      k.bn2.backward(k.c2, k.d2, &k.d2);
      k.conv2.backward(k.a1, k.d2, &k.d1);
      k.bn1.backward(k.c1, k.d1, &k.d1);
      k.conv1.backward(x, k.d1, &dx);
      if (k.ds_conv) {
        k.ds_bn->backward(k.dsc, k.d_sum, &k.d_ds);
        k.ds_conv->backward(x, k.d_ds, &k.d_short);
        accumulate(dx, k.d_short);
      } else {
        accumulate(dx, k.d_sum);
      }
    }
  stem_pool_.backward(stem_a_, d_stem_p_, d_stem_);
  stem_bn_.backward(stem_c_, d_stem_, &d_stem_);
  stem_conv_.backward(input_, d_stem_, nullptr);
}

// parameters() and gradients(): one walk, the values or their gradients.
template <class T>
std::vector<spruce::named_tensor<T>> basic_resnet<T>::walk(bool grad) {
  std::vector<spruce::named_tensor<T>> out;
  push_conv(out, "conv1", stem_conv_, grad);
  push_bn(out, "bn1", stem_bn_, grad);
  for (std::size_t s = 0; s < stages_.size(); ++s)
    for (std::size_t b = 0; b < stages_[s].size(); ++b) {
      block& k = stages_[s][b];
      const std::string p = block_prefix(s, b);
      push_conv(out, p + "conv1", k.conv1, grad);
      push_bn(out, p + "bn1", k.bn1, grad);
      push_conv(out, p + "conv2", k.conv2, grad);
      push_bn(out, p + "bn2", k.bn2, grad);
      push_conv(out, p + "conv3", k.conv3, grad);
      push_bn(out, p + "bn3", k.bn3, grad);
      if (k.ds_conv) {
        push_conv(out, p + "downsample.0", *k.ds_conv, grad);
        push_bn(out, p + "downsample.1", *k.ds_bn, grad);
      }
    }
  out.push_back(named(std::string("fc.weight"), grad ? fc_.weight_grad() : fc_.weight(),
                      {fc_.out_features(), fc_.in_features()}));
  out.push_back(named(std::string("fc.bias"), grad ? fc_.bias_grad() : fc_.bias(), {fc_.out_features()}));
  return out;
}

template <class T>
std::vector<spruce::named_tensor<T>> basic_resnet<T>::parameters() {
  return walk(false);
}

template <class T>
std::vector<spruce::named_tensor<T>> basic_resnet<T>::gradients() {
  return walk(true);
}

template <class T>
std::vector<spruce::named_tensor<T>> basic_resnet<T>::buffers() {
  std::vector<spruce::named_tensor<T>> out;
  push_stats(out, "bn1", stem_bn_);
  for (std::size_t s = 0; s < stages_.size(); ++s)
    for (std::size_t b = 0; b < stages_[s].size(); ++b) {
      block& k = stages_[s][b];
      const std::string p = block_prefix(s, b);
      push_stats(out, p + "bn1", k.bn1);
      push_stats(out, p + "bn2", k.bn2);
      push_stats(out, p + "bn3", k.bn3);
      if (k.ds_bn) push_stats(out, p + "downsample.1", *k.ds_bn);
    }
  return out;
}

template <class T>
std::size_t basic_resnet<T>::num_parameters() const noexcept {
  const auto conv = [](const conv2d<T>& c) { return c.out_channels() * c.in_channels() * c.kernel() * c.kernel(); };
  std::size_t total = conv(stem_conv_) + 2 * cfg_.stem;
  for (const auto& stage : stages_)
    for (const auto& k : stage) {
      total += conv(k.conv1) + conv(k.conv2) + conv(k.conv3) + 2 * (k.bn1.channels() + k.bn2.channels() + k.bn3.channels());
      if (k.ds_conv) total += conv(*k.ds_conv) + 2 * k.ds_bn->channels();
    }
  return total + fc_.out_features() * (fc_.in_features() + 1);
}

template <class T>
std::uint64_t basic_resnet<T>::macs(std::size_t h, std::size_t w) const {
  const auto conv = [&](const conv2d<T>& c, std::size_t& ch, std::size_t& cw) {
    const auto s = c.weight_shape();
    ch = spruce::conv2d_output_extent(ch, c.kernel(), c.stride(), c.padding());
    cw = spruce::conv2d_output_extent(cw, c.kernel(), c.stride(), c.padding());
    return spruce::conv2d_macs({s[0], s[1], s[2], s[3]}, ch, cw);
  };
  std::uint64_t total = conv(stem_conv_, h, w);
  h = spruce::pool2d_output_extent(h, 2);
  w = spruce::pool2d_output_extent(w, 2);
  for (const auto& stage : stages_)
    for (const auto& k : stage) {
      std::size_t bh = h, bw = w;
      total += conv(k.conv1, bh, bw);
      total += conv(k.conv2, bh, bw);
      total += conv(k.conv3, bh, bw);
      if (k.ds_conv) {
        std::size_t sh = h, sw = w;
        total += conv(*k.ds_conv, sh, sw);
      }
      h = bh, w = bw;
    }
  return total + spruce::linear_macs(fc_.out_features(), fc_.in_features());
}

template <class T>
basic_resnet<T> resnet_from_tensors(const std::vector<spruce::named_tensor<T>>& tensors) {
  std::map<std::string, std::vector<std::size_t>> shapes;
  std::map<std::string, const spruce::named_tensor<T>*> by_name;
  for (const auto& t : tensors) {
    if (!by_name.emplace(t.name, &t).second)
      throw spruce::error("resnet_from_tensors: '" + t.name + "' is given twice; pass each tensor once");
    shapes.emplace(t.name, std::vector<std::size_t>(t.view.shape().begin(), t.view.shape().end()));
  }
  basic_resnet<T> model(resnet_cfg_from_shapes(shapes));
  auto into = model.parameters();
  for (auto& b : model.buffers()) into.push_back(b);
  std::string problems;
  for (const auto& dst : into) {
    const auto it = by_name.find(dst.name);
    if (it == by_name.end()) {
      problems += " '" + dst.name + "' missing;";
      continue;
    }
    if (!it->second->view.same_shape(dst.view))
      problems += " '" + dst.name + "' is " + spruce::shape_string(it->second->view.shape()) + ", the cfg needs " +
                  spruce::shape_string(dst.view.shape()) + ";";
    by_name.erase(it);
  }
  for (const auto& [name, t] : by_name) problems += " '" + name + "' is not a tensor of this network;";
  if (!problems.empty())
    throw spruce::error("resnet_from_tensors:" + problems + " pass every parameter and BN statistic, each once");
  for (const auto& dst : into) {
    const auto& src = *std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.name == dst.name; });
    for (std::size_t i = 0; i < dst.view.size(); ++i) dst.view.data()[i] = src.view.data()[src.view.offset_of(i)];
  }
  return model;
}

template class basic_resnet<float>;
template class basic_resnet<double>;
template basic_resnet<float> resnet_from_tensors(const std::vector<spruce::named_tensor<float>>&);
template basic_resnet<double> resnet_from_tensors(const std::vector<spruce::named_tensor<double>>&);

}  // namespace train
