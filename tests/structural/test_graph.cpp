// structural::graph: channel groups derived from a layer graph. The VGG chain against the
// hand-built groups and channel_pruning.json; a bottleneck block with a projection
// shortcut against hand-listed groups; concatenation offsets; two additions sharing a
// producer; forward equivalence on a small residual net (naive conv / BN / add
// references); bad graphs and bad plans (an error naming the layer, nothing moved).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "spruce/spruce.hpp"
#include "structural/lab_backbone.hpp"
#include "support/fixtures.hpp"

using namespace spruce;
namespace fx = spruce_test;
namespace st = spruce::structural;
using structural_test::backbone;
using structural_test::ratio_of;

namespace {

/// An owned tensor: shape and packed row-major values.
struct tensor {
  std::vector<std::size_t> shape;
  std::vector<float> data;
  tensor() = default;
  tensor(std::vector<std::size_t> s, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) : shape(std::move(s)) {
    std::uniform_real_distribution<float> d(lo, hi);
    data.resize(shape_size(shape));
    for (float& x : data) x = d(rng);
  }
  tensor_ref<float> ref() { return tensor_ref<float>(data.data(), shape); }
  // Adopts the graph's current view of it (same buffer, shape possibly smaller).
  void adopt(const st::graph<float>& g, const std::string& name) {
    const auto v = g.view(name);
    REQUIRE(v.data() == data.data());
    shape.assign(v.shape().begin(), v.shape().end());
  }
};

std::vector<std::size_t> shape_of(const tensor_ref<float>& v) { return {v.shape().begin(), v.shape().end()}; }

/// The members of two channel groups are the same tensors, axes and parts of the axis.
void check_same_members(const st::channel_group<float>& a, const st::channel_group<float>& b) {
  REQUIRE(a.members().size() == b.members().size());
  CHECK(a.channels() == b.channels());
  for (std::size_t k = 0; k < a.members().size(); ++k) {
    const auto &x = a.members()[k], &y = b.members()[k];
    CAPTURE(x.name);
    CHECK(x.view.data() == y.view.data());
    CHECK(shape_of(x.view) == shape_of(y.view));
    CHECK(x.axis == y.axis);
    CHECK(x.factor == y.factor);
    CHECK(x.offset == y.offset);
    CHECK(x.count == y.count);
  }
}

std::vector<std::string> member_names(const st::group_info& g) {
  std::vector<std::string> n;
  for (const auto& m : g.members) n.push_back(m.name);
  return n;
}

std::vector<std::string> bn_names(const std::string& bn) {
  return {bn + ".weight", bn + ".bias", bn + ".running_mean", bn + ".running_var"};
}

std::vector<std::string> cat(std::vector<std::vector<std::string>> parts) {
  std::vector<std::string> out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// ---- naive references for the forward pass (NCHW, batch 1) -------------------------------

struct fmap {
  std::size_t c = 0, h = 0, w = 0;
  std::vector<float> v;
};

fmap conv2d(const fmap& x, const tensor& k, std::size_t stride, std::size_t pad) {
  const std::size_t co = k.shape[0], ci = k.shape[1], kh = k.shape[2], kw = k.shape[3];
  REQUIRE(ci == x.c);
  fmap y{co, (x.h + 2 * pad - kh) / stride + 1, (x.w + 2 * pad - kw) / stride + 1, {}};
  y.v.assign(y.c * y.h * y.w, 0.0f);
  for (std::size_t o = 0; o < co; ++o)
    for (std::size_t i = 0; i < y.h; ++i)
      for (std::size_t j = 0; j < y.w; ++j) {
        float acc = 0.0f;
        for (std::size_t c = 0; c < ci; ++c)
          for (std::size_t u = 0; u < kh; ++u)
            for (std::size_t t = 0; t < kw; ++t) {
              const long ii = static_cast<long>(i * stride + u) - static_cast<long>(pad);
              const long jj = static_cast<long>(j * stride + t) - static_cast<long>(pad);
              if (ii < 0 || jj < 0 || ii >= static_cast<long>(x.h) || jj >= static_cast<long>(x.w)) continue;
              acc += k.data[((o * ci + c) * kh + u) * kw + t] * x.v[(c * x.h + static_cast<std::size_t>(ii)) * x.w +
                                                                   static_cast<std::size_t>(jj)];
            }
        y.v[(o * y.h + i) * y.w + j] = acc;
      }
  return y;
}

struct bn_params {
  tensor g, b, m, v;
  bn_params() = default;
  bn_params(std::size_t c, std::mt19937& rng)
      : g({c}, rng, 0.5f, 1.5f), b({c}, rng), m({c}, rng, -0.2f, 0.2f), v({c}, rng, 0.5f, 1.5f) {}
  void zero(std::size_t ch) { g.data[ch] = b.data[ch] = 0.0f; }
};

fmap batch_norm(fmap x, const bn_params& p, bool relu) {
  REQUIRE(p.g.shape[0] == x.c);
  const std::size_t hw = x.h * x.w;
  for (std::size_t c = 0; c < x.c; ++c)
    for (std::size_t q = 0; q < hw; ++q) {
      float& z = x.v[c * hw + q];
      z = p.g.data[c] * (z - p.m.data[c]) / std::sqrt(p.v.data[c] + 1e-5f) + p.b.data[c];
      if (relu) z = std::max(0.0f, z);
    }
  return x;
}

fmap add_relu(fmap a, const fmap& b) {
  REQUIRE(a.v.size() == b.v.size());
  for (std::size_t i = 0; i < a.v.size(); ++i) a.v[i] = std::max(0.0f, a.v[i] + b.v[i]);
  return a;
}

/// A small bottleneck ResNet: stem 3x3 conv-BN-ReLU; block 1 (1x1, 3x3 stride 2, 1x1 to
/// `out`, projection shortcut 1x1 stride 2 + BN); block 2 (identity shortcut); global
/// average pool; linear to 5 classes. Widths: stem, b1 inner (2), out, b2 inner (2).
struct widths {
  std::size_t stem, b1a, b1b, out, b2a, b2b;
};

struct tiny_resnet {
  tensor stem, b1c1, b1c2, b1c3, b1sc, b2c1, b2c2, b2c3, fc_w, fc_b;
  bn_params stem_bn, b1n1, b1n2, b1n3, b1nsc, b2n1, b2n2, b2n3;

  tiny_resnet(const widths& w, unsigned seed) {
    std::mt19937 rng(seed);
    stem = tensor({w.stem, 3, 3, 3}, rng);
    stem_bn = bn_params(w.stem, rng);
    b1c1 = tensor({w.b1a, w.stem, 1, 1}, rng);
    b1n1 = bn_params(w.b1a, rng);
    b1c2 = tensor({w.b1b, w.b1a, 3, 3}, rng);
    b1n2 = bn_params(w.b1b, rng);
    b1c3 = tensor({w.out, w.b1b, 1, 1}, rng);
    b1n3 = bn_params(w.out, rng);
    b1sc = tensor({w.out, w.stem, 1, 1}, rng);
    b1nsc = bn_params(w.out, rng);
    b2c1 = tensor({w.b2a, w.out, 1, 1}, rng);
    b2n1 = bn_params(w.b2a, rng);
    b2c2 = tensor({w.b2b, w.b2a, 3, 3}, rng);
    b2n2 = bn_params(w.b2b, rng);
    b2c3 = tensor({w.out, w.b2b, 1, 1}, rng);
    b2n3 = bn_params(w.out, rng);
    fc_w = tensor({5, w.out}, rng);
    fc_b = tensor({5}, rng);
  }

  std::vector<std::pair<std::string, tensor*>> tensors() {
    std::vector<std::pair<std::string, tensor*>> t{{"stem.weight", &stem},     {"b1.conv1.weight", &b1c1},
                                                   {"b1.conv2.weight", &b1c2}, {"b1.conv3.weight", &b1c3},
                                                   {"b1.short.weight", &b1sc}, {"b2.conv1.weight", &b2c1},
                                                   {"b2.conv2.weight", &b2c2}, {"b2.conv3.weight", &b2c3},
                                                   {"fc.weight", &fc_w},       {"fc.bias", &fc_b}};
    const std::pair<const char*, bn_params*> bns[] = {{"stem.bn", &stem_bn}, {"b1.bn1", &b1n1},  {"b1.bn2", &b1n2},
                                                      {"b1.bn3", &b1n3},     {"b1.short.bn", &b1nsc}, {"b2.bn1", &b2n1},
                                                      {"b2.bn2", &b2n2},     {"b2.bn3", &b2n3}};
    for (const auto& [n, p] : bns) {
      const std::string s(n);
      t.push_back({s + ".weight", &p->g});
      t.push_back({s + ".bias", &p->b});
      t.push_back({s + ".running_mean", &p->m});
      t.push_back({s + ".running_var", &p->v});
    }
    return t;
  }

  /// The network as a graph over this net's tensors (6 x 6 input, 3 channels).
  st::graph<float> describe() {
    st::graph<float> g;
    const st::conv_options pad1{{1, 1}, {1, 1}, {1, 1}}, s2p1{{2, 2}, {1, 1}, {1, 1}}, s2{{2, 2}, {0, 0}, {1, 1}};
    const auto bn = [&](const std::string& n, const std::string& from, bn_params& p) {
      g.batch_norm(n, from, p.g.ref(), p.b.ref(), p.m.ref(), p.v.ref());
    };
    g.input("x", 3, 6, 6);
    g.conv("stem", "x", stem.ref(), tensor_ref<float>{}, pad1);
    bn("stem.bn", "stem", stem_bn);
    g.pass("stem.relu", "stem.bn");
    g.conv("b1.conv1", "stem.relu", b1c1.ref());
    bn("b1.bn1", "b1.conv1", b1n1);
    g.pass("b1.relu1", "b1.bn1");
    g.conv("b1.conv2", "b1.relu1", b1c2.ref(), tensor_ref<float>{}, s2p1);
    bn("b1.bn2", "b1.conv2", b1n2);
    g.pass("b1.relu2", "b1.bn2");
    g.conv("b1.conv3", "b1.relu2", b1c3.ref());
    bn("b1.bn3", "b1.conv3", b1n3);
    g.conv("b1.short", "stem.relu", b1sc.ref(), tensor_ref<float>{}, s2);
    bn("b1.short.bn", "b1.short", b1nsc);
    g.add("b1.add", {"b1.bn3", "b1.short.bn"});
    g.pass("b1.relu", "b1.add");
    g.conv("b2.conv1", "b1.relu", b2c1.ref());
    bn("b2.bn1", "b2.conv1", b2n1);
    g.pass("b2.relu1", "b2.bn1");
    g.conv("b2.conv2", "b2.relu1", b2c2.ref(), tensor_ref<float>{}, pad1);
    bn("b2.bn2", "b2.conv2", b2n2);
    g.pass("b2.relu2", "b2.bn2");
    g.conv("b2.conv3", "b2.relu2", b2c3.ref());
    bn("b2.bn3", "b2.conv3", b2n3);
    g.add("b2.add", {"b2.bn3", "b1.relu"});
    g.pass("b2.relu", "b2.add");
    g.global_pool("pool", "b2.relu");
    g.linear("fc", "pool", fc_w.ref(), fc_b.ref());
    return g;
  }

  std::vector<float> forward(const fmap& x) const {
    const fmap s = batch_norm(conv2d(x, stem, 1, 1), stem_bn, true);
    fmap a = batch_norm(conv2d(s, b1c1, 1, 0), b1n1, true);
    a = batch_norm(conv2d(a, b1c2, 2, 1), b1n2, true);
    a = batch_norm(conv2d(a, b1c3, 1, 0), b1n3, false);
    const fmap r1 = add_relu(a, batch_norm(conv2d(s, b1sc, 2, 0), b1nsc, false));
    fmap b = batch_norm(conv2d(r1, b2c1, 1, 0), b2n1, true);
    b = batch_norm(conv2d(b, b2c2, 1, 1), b2n2, true);
    b = batch_norm(conv2d(b, b2c3, 1, 0), b2n3, false);
    const fmap r2 = add_relu(b, r1);
    const std::size_t hw = r2.h * r2.w;
    std::vector<float> pooled(r2.c, 0.0f), out(5);
    for (std::size_t c = 0; c < r2.c; ++c) {
      for (std::size_t q = 0; q < hw; ++q) pooled[c] += r2.v[c * hw + q];
      pooled[c] /= static_cast<float>(hw);
    }
    for (std::size_t o = 0; o < 5; ++o) {
      out[o] = fc_b.data[o];
      for (std::size_t c = 0; c < r2.c; ++c) out[o] += fc_w.data[o * fc_w.shape[1] + c] * pooled[c];
    }
    return out;
  }
};

widths widths_of(const std::vector<st::layer_channels>& cfg) {
  std::map<std::string, std::size_t> n;
  for (const auto& l : cfg) n[l.name] = l.kept.size();
  return {n.at("stem"), n.at("b1.conv1"), n.at("b1.conv2"), n.at("b1.conv3"), n.at("b2.conv1"), n.at("b2.conv2")};
}

/// The plan that removes every channel whose BN scales are all exactly zero.
st::channel_plan dead_channels_removed(const st::graph<float>& g) {
  st::channel_plan plan = g.keep_all();
  for (std::size_t i : g.prunable()) {
    const auto s = g.importance(i, criterion::l1{}, st::member_role::bn_weight);
    plan.keep[i].clear();
    for (std::size_t c = 0; c < s.size(); ++c)
      if (s[c] != 0.0f) plan.keep[i].push_back(c);
  }
  return plan;
}

std::vector<std::vector<float>> snapshot(tiny_resnet& n) {
  std::vector<std::vector<float>> s;
  for (auto& [name, t] : n.tensors()) s.push_back(t->data);
  return s;
}

}  // namespace

TEST_CASE("graph: the VGG chain's derived groups are the hand-built groups and reproduce channel_pruning.json") {
  const auto j = fx::load_fixture("channel_pruning.json");
  for (const auto& c : j["cases"]) {
    CAPTURE(c["prune_ratio"].dump());
    for (const char* mode : {"naive", "sorted", "sorted_pruned"}) {
      CAPTURE(mode);
      backbone m(c["original"]);
      st::graph<float> g;
      g.input("x", 3);
      std::string prev = "x";
      for (std::size_t i = 0; i < m.convs.size(); ++i) {
        const std::string n = std::to_string(i);
        auto& b = m.bns[i];
        g.conv("conv" + n, prev, tensor_ref<float>(m.convs[i].w.data(), m.convs[i].shape))
            .batch_norm("bn" + n, "conv" + n, tensor_ref<float>(b.gamma.data(), b.shape),
                        tensor_ref<float>(b.beta.data(), b.shape), tensor_ref<float>(b.mean.data(), b.shape),
                        tensor_ref<float>(b.var.data(), b.shape))
            .pass("relu" + n, "bn" + n);
        prev = "relu" + n;
      }
      REQUIRE(g.groups().size() == 4);
      CHECK(g.prunable() == std::vector<std::size_t>{0, 1, 2});
      CHECK(g.groups()[3].frozen);
      CHECK(g.groups()[3].frozen_reason.find("network output 'relu3'") != std::string::npos);
      for (std::size_t i = 0; i < 3; ++i) {
        const std::string n = std::to_string(i);
        CHECK(g.group_of("relu" + n) == i);
        CHECK(member_names(g.groups()[i]) ==
              cat({{"conv" + n + ".weight"}, bn_names("bn" + n), {"conv" + std::to_string(i + 1) + ".weight"}}));
        check_same_members(g.group(i), m.group(i));
      }
      if (std::string(mode) != "naive") g.sort_channels();
      if (std::string(mode) != "sorted") {
        st::channel_plan plan = g.keep_all();
        for (std::size_t i = 0; i < 3; ++i) {
          plan.keep[i].resize(st::keep_rule{}.keep(ratio_of(c["prune_ratio"], i), g.groups()[i].channels));
          std::iota(plan.keep[i].begin(), plan.keep[i].end(), std::size_t{0});
        }
        g.prune(plan);
      }
      for (std::size_t i = 0; i < m.convs.size(); ++i) {
        const std::string n = std::to_string(i);
        m.convs[i].shape = shape_of(g.view("conv" + n + ".weight"));
        m.bns[i].shape = shape_of(g.view("bn" + n + ".weight"));
      }
      m.check(c[mode]);
    }
  }
}

TEST_CASE("graph: slimming_plan is slimming_masks over the prunable groups' BN scales") {
  const auto j = fx::load_fixture("channel_pruning.json");
  backbone m(j["cases"][0]["original"]);
  st::graph<float> g;
  g.input("x", 3);
  std::vector<named_tensor<float>> gammas;
  std::string prev = "x";
  for (std::size_t i = 0; i < m.convs.size(); ++i) {
    const std::string n = std::to_string(i);
    auto& b = m.bns[i];
    g.conv("conv" + n, prev, tensor_ref<float>(m.convs[i].w.data(), m.convs[i].shape))
        .batch_norm("bn" + n, "conv" + n, make_view(b.gamma), make_view(b.beta), make_view(b.mean), make_view(b.var));
    prev = "bn" + n;
    if (i < 3) gammas.push_back({"conv" + n, make_view(b.gamma)});  // the last BN carries the output: frozen
  }
  for (double percent : {0.0, 0.3, 0.5, 0.9}) {
    CAPTURE(percent);
    const auto sel = g.slimming_plan(percent, 2);
    const auto ref = st::slimming_masks(gammas, percent, 2);
    CHECK(sel.threshold == ref.threshold);
    for (std::size_t i = 0; i < 3; ++i) {
      std::vector<std::size_t> want;
      for (std::size_t k = 0; k < ref[i].size(); ++k)
        if (ref[i].data()[k]) want.push_back(k);
      CHECK(sel.plan.keep[i] == want);
    }
    CHECK(sel.plan.keep[3].size() == 32);  // frozen: all kept
  }
}

TEST_CASE("graph: a bottleneck block with a projection shortcut derives the hand-listed groups") {
  tiny_resnet net({6, 4, 5, 8, 3, 4}, 1);
  st::graph<float> g = net.describe();
  const auto& gs = g.groups();
  REQUIRE(gs.size() == 7);
  std::vector<std::string> names;
  for (const auto& x : gs) names.push_back(x.name);
  CHECK(names == std::vector<std::string>{"stem", "b1.conv1", "b1.conv2", "b1.conv3", "b2.conv1", "b2.conv2", "fc"});
  // The stem's channels feed both the block and its shortcut.
  CHECK(member_names(gs[0]) == cat({{"stem.weight"}, bn_names("stem.bn"), {"b1.conv1.weight", "b1.short.weight"}}));
  // The bottleneck's inner channels: one conv, its BN, the next conv's inputs.
  CHECK(member_names(gs[1]) == cat({{"b1.conv1.weight"}, bn_names("b1.bn1"), {"b1.conv2.weight"}}));
  CHECK(member_names(gs[2]) == cat({{"b1.conv2.weight"}, bn_names("b1.bn2"), {"b1.conv3.weight"}}));
  CHECK(member_names(gs[4]) == cat({{"b2.conv1.weight"}, bn_names("b2.bn1"), {"b2.conv2.weight"}}));
  CHECK(member_names(gs[5]) == cat({{"b2.conv2.weight"}, bn_names("b2.bn2"), {"b2.conv3.weight"}}));
  // The residual stream: both additions couple conv3, the shortcut, block 2's conv3, and
  // every reader (block 2's conv1, the classifier) into one group.
  const st::group_info& stream = gs[3];
  CHECK(member_names(stream) == cat({{"b1.conv3.weight"}, bn_names("b1.bn3"), {"b1.short.weight"}, bn_names("b1.short.bn"),
                                     {"b2.conv1.weight", "b2.conv3.weight"}, bn_names("b2.bn3"), {"fc.weight"}}));
  CHECK(stream.producers == std::vector<std::string>{"b1.conv3", "b1.short", "b2.conv3"});
  CHECK(stream.additions == std::vector<std::string>{"b1.add", "b2.add"});
  CHECK(stream.consumers == std::vector<std::string>{"b2.conv1", "fc"});
  CHECK(stream.batch_norms == std::vector<std::string>{"b1.bn3", "b1.short.bn", "b2.bn3"});
  CHECK(stream.channels == 8);
  CHECK(!stream.frozen);
  for (std::size_t i = 0; i < 6; ++i) CHECK(!gs[i].frozen);
  CHECK(gs[6].frozen);
  CHECK(gs[6].frozen_reason.find("network output 'fc'") != std::string::npos);
  CHECK(member_names(gs[6]) == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(g.group_of("b2.relu") == 3);
  CHECK(g.group_of("pool") == 3);

  // The derived group is the hand-built one: the three branches joined, plus the readers.
  const auto bn_members = [](const std::string& n, bn_params& p) {
    return std::vector<st::member<float>>{{n + ".weight", p.g.ref(), 0}, {n + ".bias", p.b.ref(), 0},
                                          {n + ".running_mean", p.m.ref(), 0}, {n + ".running_var", p.v.ref(), 0}};
  };
  std::vector<st::member<float>> hand{{"b1.conv3.weight", net.b1c3.ref(), 0}};
  for (auto& x : bn_members("b1.bn3", net.b1n3)) hand.push_back(x);
  hand.push_back({"b1.short.weight", net.b1sc.ref(), 0});
  for (auto& x : bn_members("b1.short.bn", net.b1nsc)) hand.push_back(x);
  hand.push_back({"b2.conv1.weight", net.b2c1.ref(), 1});
  hand.push_back({"b2.conv3.weight", net.b2c3.ref(), 0});
  for (auto& x : bn_members("b2.bn3", net.b2n3)) hand.push_back(x);
  hand.push_back({"fc.weight", net.fc_w.ref(), 1});
  check_same_members(g.group(3), st::channel_group<float>("b1.conv3", hand));
  std::vector<st::member<float>> inner{{"b1.conv1.weight", net.b1c1.ref(), 0}};
  for (auto& x : bn_members("b1.bn1", net.b1n1)) inner.push_back(x);
  inner.push_back({"b1.conv2.weight", net.b1c2.ref(), 1});
  check_same_members(g.group(1), st::channel_group<float>("b1.conv1", inner));

  // The lab's rule: only the inner channels prunable — freeze the residual stream.
  st::graph<float> lab = net.describe();
  lab.freeze("b1.add");
  CHECK(lab.groups()[3].frozen);
  CHECK(lab.groups()[3].frozen_reason == "frozen at layer 'b1.add'");
  CHECK(lab.prunable() == std::vector<std::size_t>{0, 1, 2, 4, 5});
  CHECK_THROWS_WITH_AS(lab.group(3).keep_first(4), doctest::Contains("frozen"), spruce::error);

  // Slimming over the residual net: the stream's score is the mean |gamma| of its three
  // BatchNorms (or their sum), the inner groups' their own |gamma|; one global selection.
  net.b1n3.g.data[1] = -2.0f;  // a negative scale counts by magnitude
  std::vector<std::vector<float>> want(6);
  const std::array<bn_params*, 6> own{&net.stem_bn, &net.b1n1, &net.b1n2, nullptr, &net.b2n1, &net.b2n2};
  for (std::size_t i = 0; i < 6; ++i)
    for (std::size_t ch = 0; ch < gs[i].channels; ++ch)
      want[i].push_back(own[i] ? std::fabs(own[i]->g.data[ch])
                               : std::fabs(net.b1n3.g.data[ch]) + std::fabs(net.b1nsc.g.data[ch]) +
                                     std::fabs(net.b2n3.g.data[ch]));
  CHECK(g.importance(3, criterion::l1{}, st::member_role::bn_weight) == want[3]);
  for (float& s : want[3]) s /= 3.0f;
  CHECK(g.importance(3, criterion::l1{}, st::member_role::bn_weight, st::score_combine::mean) == want[3]);
  CHECK(g.importance(1, criterion::l1{}, st::member_role::bn_weight, st::score_combine::mean) == want[1]);
  std::vector<named_tensor<float>> scores;
  for (std::size_t i = 0; i < 6; ++i) scores.push_back({gs[i].name, make_view(want[i])});
  for (double percent : {0.2, 0.5, 0.8}) {
    CAPTURE(percent);
    const auto sel = g.slimming_plan(percent, 1);
    const auto ref = st::slimming_masks(scores, percent, 1);
    CHECK(sel.threshold == ref.threshold);
    for (std::size_t i = 0; i < 6; ++i) {
      std::vector<std::size_t> keep;
      for (std::size_t ch = 0; ch < gs[i].channels; ++ch)
        if (ref[i].data()[ch]) keep.push_back(ch);
      CHECK(sel.plan.keep[i] == keep);
    }
    CHECK(sel.plan.keep[6].size() == 5);
    // The frozen stream keeps all and takes no part in the selection.
    CHECK(lab.slimming_plan(percent, 1).plan.keep[3].size() == 8);
  }

  // Per-layer cost at the declared 6 x 6 input.
  const auto r = g.report();
  const auto cost = [&](const std::string& n) {
    return *std::find_if(r.begin(), r.end(), [&](const auto& x) { return x.name == n; });
  };
  CHECK(cost("stem").macs == 6 * 3 * 9 * 36);
  CHECK(cost("stem").params == 6 * 3 * 9);
  CHECK(cost("b1.conv2").macs == 5 * 4 * 9 * 9);  // stride 2: 3 x 3 out
  CHECK(cost("b1.short").macs == 8 * 6 * 9);
  CHECK(cost("b1.bn1").params == 8);
  CHECK(cost("fc").params == 5 * 8 + 5);
  CHECK(cost("fc").macs == 5 * 8);
}

TEST_CASE("graph: forward equivalence on a residual net — dead channels removed change nothing, live ones are caught") {
  const widths w{6, 4, 5, 8, 3, 4};
  tiny_resnet net(w, 7);
  // Exactly-zero BN outputs: stem channel 2; block 1's inner channels 1, 3 and 0; the
  // residual stream's channel 5 in all three of its BNs; block 2's inner channel 2.
  net.stem_bn.zero(2);
  net.b1n1.zero(1);
  net.b1n1.zero(3);
  net.b1n2.zero(0);
  net.b1n3.zero(5);
  net.b1nsc.zero(5);
  net.b2n3.zero(5);
  net.b2n1.zero(2);
  // Stream channel 6 is zero in one branch only: alive, so kept.
  net.b1n3.zero(6);
  fmap x{3, 6, 6, {}};
  std::mt19937 rng(3);
  std::normal_distribution<float> d;
  for (std::size_t i = 0; i < 3 * 36; ++i) x.v.push_back(d(rng));
  const auto before = net.forward(x);
  const auto original = snapshot(net);

  st::graph<float> g = net.describe();
  const st::channel_plan plan = dead_channels_removed(g);
  CHECK(plan.keep[0] == std::vector<std::size_t>{0, 1, 3, 4, 5});
  CHECK(plan.keep[1] == std::vector<std::size_t>{0, 2});
  CHECK(plan.keep[2] == std::vector<std::size_t>{1, 2, 3, 4});
  CHECK(plan.keep[3] == std::vector<std::size_t>{0, 1, 2, 3, 4, 6, 7});
  CHECK(plan.keep[4] == std::vector<std::size_t>{0, 1});
  CHECK(plan.keep[5].size() == 4);
  CHECK(plan.keep[6].size() == 5);

  // The cfg a smaller network is rebuilt from.
  const auto cfg = g.cfg(plan);
  const auto find = [&](const std::string& n) {
    return *std::find_if(cfg.begin(), cfg.end(), [&](const auto& l) { return l.name == n; });
  };
  CHECK(find("b1.conv1").kept == std::vector<std::size_t>{0, 2});
  CHECK(find("b1.conv1").in_channels == 5);
  CHECK(find("b1.add").kept == plan.keep[3]);
  CHECK(find("pool").kept == plan.keep[3]);
  CHECK(find("fc").in_channels == 7);
  CHECK(find("fc").kept.size() == 5);
  CHECK(find("x").kept.size() == 3);
  CHECK(find("b1.short").in_channels == 5);
  const widths small_w = widths_of(cfg);
  CHECK((small_w.stem == 5 && small_w.b1a == 2 && small_w.b1b == 4 && small_w.out == 7 && small_w.b2a == 2 &&
         small_w.b2b == 4));

  SUBCASE("copy_kept into a smaller network rebuilt from cfg") {
    tiny_resnet small(small_w, 99);
    st::graph<float> gs = small.describe();
    g.copy_kept(plan, gs);
    CHECK(snapshot(net) == original);  // the big network is untouched
    const auto after = small.forward(x);
    CHECK(after == before);  // exactly: only exact zeros were dropped from every sum
  }
  SUBCASE("prune in place") {
    g.prune(plan);
    for (auto& [name, t] : net.tensors()) t->adopt(g, name);
    CHECK(net.b1c2.shape == std::vector<std::size_t>{4, 2, 3, 3});
    CHECK(net.fc_w.shape == std::vector<std::size_t>{5, 7});
    CHECK(net.forward(x) == before);
    CHECK(g.groups()[3].channels == 7);
    // The pruned graph derives the smaller groups; pruning nothing more changes nothing.
    g.prune(g.keep_all());
    CHECK(net.forward(x) == before);
  }
  SUBCASE("removing a live channel is caught") {
    for (std::size_t group : {1u, 3u, 4u}) {
      CAPTURE(group);
      st::channel_plan live = plan;
      if (group == 3) {
        live.keep[3].erase(std::find(live.keep[3].begin(), live.keep[3].end(), 6));  // alive in the shortcut
      } else {
        live.keep[group].erase(live.keep[group].begin());
      }
      tiny_resnet small(widths_of(g.cfg(live)), 5);
      st::graph<float> gs = small.describe();
      g.copy_kept(live, gs);
      const auto after = small.forward(x);
      float diff = 0.0f;
      for (std::size_t o = 0; o < 5; ++o) diff = std::max(diff, std::fabs(after[o] - before[o]));
      CHECK(diff > 1e-4f);
    }
  }
}

TEST_CASE("graph: a concatenation gives each input its offset range of the consumers' inputs") {
  // x(2, 4x4) -> a 1x1 (3) and b 1x1 (5) -> cat -> BN(8) -> c 3x3 (2)
  //                                        -> cat2 -> 2x2 pool -> linear(4, 8 * 4), factor 4
  std::mt19937 rng(21);
  tensor a({3, 2, 1, 1}, rng), ab({3}, rng), b({5, 2, 1, 1}, rng), c({2, 8, 3, 3}, rng), fc({4, 32}, rng);
  bn_params bn(8, rng);
  const auto describe = [&] {
    st::graph<float> g;
    g.input("x", 2, 4, 4)
        .conv("a", "x", a.ref(), ab.ref())
        .conv("b", "x", b.ref())
        .concat("cat", {"a", "b"})
        .batch_norm("bn", "cat", bn.g.ref(), bn.b.ref(), bn.m.ref(), bn.v.ref())
        .conv("c", "bn", c.ref(), tensor_ref<float>{}, {{1, 1}, {1, 1}, {1, 1}})
        .concat("cat2", {"a", "b"})
        .pool("p", "cat2", 2)
        .linear("fc", "p", fc.ref(), tensor_ref<float>{}, 4);
    return g;
  };
  st::graph<float> g = describe();
  REQUIRE(g.groups().size() == 4);
  const auto& ga = g.groups()[0];
  const auto& gb = g.groups()[1];
  CHECK(ga.name == "a");
  CHECK(gb.name == "b");
  CHECK(member_names(ga) == cat({{"a.weight", "a.bias"}, bn_names("bn"), {"c.weight", "fc.weight"}}));
  CHECK(member_names(gb) == cat({{"b.weight"}, bn_names("bn"), {"c.weight", "fc.weight"}}));
  const auto part = [](const st::member_info& m) { return std::array<std::size_t, 4>{m.axis, m.factor, m.offset, m.count}; };
  CHECK(part(ga.members[2]) == std::array<std::size_t, 4>{0, 1, 0, 3});   // bn.weight
  CHECK(part(ga.members[6]) == std::array<std::size_t, 4>{1, 1, 0, 3});   // c.weight
  CHECK(part(ga.members[7]) == std::array<std::size_t, 4>{1, 4, 0, 3});   // fc.weight
  CHECK(part(gb.members[1]) == std::array<std::size_t, 4>{0, 1, 3, 5});
  CHECK(part(gb.members[5]) == std::array<std::size_t, 4>{1, 1, 3, 5});
  CHECK(part(gb.members[6]) == std::array<std::size_t, 4>{1, 4, 12, 5});
  CHECK_THROWS_WITH_AS(g.group_of("cat"), doctest::Contains("carries 2 groups"), spruce::error);

  // Importance on a part of the axis: the L2 norm of each channel's columns, per reader, summed.
  const auto naive_score = [&](std::size_t first, std::size_t n) {
    std::vector<float> s(n, 0.0f);
    for (std::size_t k = 0; k < n; ++k) {
      double cs = 0, fs = 0;
      for (std::size_t o = 0; o < 2; ++o)
        for (std::size_t q = 0; q < 9; ++q) cs += std::pow(c.data[(o * 8 + first + k) * 9 + q], 2);
      for (std::size_t o = 0; o < 4; ++o)
        for (std::size_t q = 0; q < 4; ++q) fs += std::pow(fc.data[o * 32 + (first + k) * 4 + q], 2);
      s[k] = static_cast<float>(std::sqrt(cs) + std::sqrt(fs));
    }
    return s;
  };
  const auto sb = g.importance(1, criterion::l2{});
  const auto na = naive_score(0, 3), nb = naive_score(3, 5);
  for (std::size_t k = 0; k < 5; ++k) CHECK(sb[k] == doctest::Approx(nb[k]).epsilon(1e-5));

  // Sorting permutes only each input's own range.
  const auto c0 = c.data, fc0 = fc.data, g0 = bn.g.data;
  g.sort_channels();
  std::vector<std::size_t> oa(3), ob(5);
  std::iota(oa.begin(), oa.end(), std::size_t{0});
  std::iota(ob.begin(), ob.end(), std::size_t{0});
  std::stable_sort(oa.begin(), oa.end(), [&](std::size_t p, std::size_t q) { return na[p] > na[q]; });
  std::stable_sort(ob.begin(), ob.end(), [&](std::size_t p, std::size_t q) { return nb[p] > nb[q]; });
  std::vector<std::size_t> full(oa);
  for (std::size_t k : ob) full.push_back(3 + k);
  for (std::size_t ch = 0; ch < 8; ++ch) {
    CHECK(bn.g.data[ch] == g0[full[ch]]);
    for (std::size_t o = 0; o < 2; ++o)
      for (std::size_t q = 0; q < 9; ++q) CHECK(c.data[(o * 8 + ch) * 9 + q] == c0[(o * 8 + full[ch]) * 9 + q]);
    for (std::size_t o = 0; o < 4; ++o)
      for (std::size_t q = 0; q < 4; ++q) CHECK(fc.data[o * 32 + ch * 4 + q] == fc0[o * 32 + full[ch] * 4 + q]);
  }

  // Removal: keep a {0, 2} and b {1, 3, 4}: the consumers keep inputs {0, 2, 4, 6, 7}.
  const auto c1 = c.data, fc1 = fc.data, g1 = bn.g.data;
  st::channel_plan plan = g.keep_all();
  plan.keep[0] = {2, 0};
  plan.keep[1] = {4, 1, 3};
  const auto cfg = g.cfg(plan);
  const std::vector<std::size_t> kin{0, 2, 4, 6, 7};
  CHECK(cfg[3].name == "cat");
  CHECK(cfg[3].kept == kin);
  CHECK(cfg[5].name == "c");
  CHECK(cfg[5].in_channels == 5);
  CHECK(cfg.back().in_channels == 20);
  g.prune(plan);
  CHECK(shape_of(g.view("c.weight")) == std::vector<std::size_t>{2, 5, 3, 3});
  CHECK(shape_of(g.view("fc.weight")) == std::vector<std::size_t>{4, 20});
  CHECK(shape_of(g.view("bn.running_var")) == std::vector<std::size_t>{5});
  CHECK(shape_of(g.view("a.bias")) == std::vector<std::size_t>{2});
  for (std::size_t k = 0; k < 5; ++k) {
    CHECK(bn.g.data[k] == g1[kin[k]]);
    for (std::size_t o = 0; o < 2; ++o)
      for (std::size_t q = 0; q < 9; ++q) CHECK(c.data[(o * 5 + k) * 9 + q] == c1[(o * 8 + kin[k]) * 9 + q]);
    for (std::size_t o = 0; o < 4; ++o)
      for (std::size_t q = 0; q < 4; ++q) CHECK(fc.data[o * 20 + k * 4 + q] == fc1[o * 32 + kin[k] * 4 + q]);
  }
  // After the removal the offsets follow the new widths.
  CHECK(part(g.groups()[1].members[5]) == std::array<std::size_t, 4>{1, 1, 2, 3});
  CHECK(part(g.groups()[1].members[6]) == std::array<std::size_t, 4>{1, 4, 8, 3});
}

TEST_CASE("graph: two additions sharing a producer couple all three branches") {
  // p, q1, q2 read x; a1 = p + q1, a2 = q2 + p; r1 reads a1, r2 reads a2; out = r1 + r2.
  std::mt19937 rng(5);
  tensor p({4, 3, 1, 1}, rng), pb({4}, rng), q1({4, 3, 1, 1}, rng), q2({4, 3, 3, 3}, rng), r1({2, 4, 1, 1}, rng),
      r2({2, 4, 1, 1}, rng);
  const auto p0 = p.data, pb0 = pb.data, q20 = q2.data, r10 = r1.data, r20 = r2.data;
  st::graph<float> g;
  g.input("x", 3, 5, 5)
      .conv("p", "x", p.ref(), pb.ref())
      .conv("q1", "x", q1.ref())
      .conv("q2", "x", q2.ref(), tensor_ref<float>{}, {{1, 1}, {1, 1}, {1, 1}})
      .add("a1", {"p", "q1"})
      .add("a2", {"q2", "p"})
      .conv("r1", "a1", r1.ref())
      .conv("r2", "a2", r2.ref())
      .add("out", {"r1", "r2"});
  REQUIRE(g.groups().size() == 2);
  const auto& s = g.groups()[0];
  CHECK(s.name == "p");
  CHECK(s.producers == std::vector<std::string>{"p", "q1", "q2"});
  CHECK(s.additions == std::vector<std::string>{"a1", "a2"});
  CHECK(s.consumers == std::vector<std::string>{"r1", "r2"});
  CHECK(member_names(s) ==
        std::vector<std::string>{"p.weight", "p.bias", "q1.weight", "q2.weight", "r1.weight", "r2.weight"});
  CHECK(!s.frozen);
  CHECK(g.groups()[1].frozen);  // r1 + r2 is the network output
  CHECK(g.groups()[1].producers == std::vector<std::string>{"r1", "r2"});
  // One shared selection: the score sums both readers.
  const auto sc = g.importance(0, criterion::l1{});
  for (std::size_t ch = 0; ch < 4; ++ch)
    CHECK(sc[ch] == doctest::Approx(std::fabs(r10[ch]) + std::fabs(r10[4 + ch]) + std::fabs(r20[ch]) +
                                    std::fabs(r20[4 + ch])));
  st::channel_plan plan = g.keep_all();
  plan.keep[0] = {0, 3};
  g.prune(plan);
  for (const char* n : {"p.weight", "q1.weight", "q2.weight"}) CHECK(g.view(n).extent(0) == 2);
  CHECK(g.view("r1.weight").extent(1) == 2);
  CHECK(g.view("r2.weight").extent(1) == 2);
  CHECK(std::vector<float>(p.data.begin(), p.data.begin() + 6) ==
        std::vector<float>{p0[0], p0[1], p0[2], p0[9], p0[10], p0[11]});
  CHECK((pb.data[0] == pb0[0] && pb.data[1] == pb0[3]));
  CHECK(std::equal(q2.data.begin(), q2.data.begin() + 27, q20.begin()));
  CHECK(std::equal(q2.data.begin() + 27, q2.data.begin() + 54, q20.begin() + 81));
  CHECK(std::vector<float>(r2.data.begin(), r2.data.begin() + 4) == std::vector<float>{r20[0], r20[3], r20[4], r20[7]});
}

TEST_CASE("graph: bad graphs are errors naming the layer, with nothing moved") {
  std::mt19937 rng(9);
  tensor w0({4, 3, 3, 3}, rng), w1({6, 4, 3, 3}, rng), w_bad({6, 5, 3, 3}, rng), fc({2, 6 * 4}, rng);
  bn_params bn(4, rng), bn5(5, rng);
  const auto snap = [&] { return std::vector<std::vector<float>>{w0.data, w1.data, w_bad.data, fc.data, bn.g.data}; };
  const auto before = snap();
  const auto base = [&] {
    st::graph<float> g;
    g.input("x", 3, 8, 8).conv("c0", "x", w0.ref(), tensor_ref<float>{}, {{1, 1}, {1, 1}, {1, 1}});
    return g;
  };
  const auto fails = [&](st::graph<float>& g, const std::string& text) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(g.groups(), doctest::Contains(text.c_str()), spruce::error);
    CHECK_THROWS_WITH_AS(g.sort_channels(), doctest::Contains(text.c_str()), spruce::error);
    CHECK_THROWS_AS(g.keep_all(), spruce::error);
    CHECK(snap() == before);
  };
  {
    auto g = base();
    g.conv("c1", "c0", w_bad.ref());
    fails(g, "conv 'c1' takes 5 input channels");
  }
  {
    auto g = base();
    g.batch_norm("bn", "c0", bn5.g.ref(), bn5.b.ref(), bn5.m.ref(), bn5.v.ref());
    fails(g, "batch_norm 'bn' has 5 channels but 'c0' gives it 4");
  }
  {
    auto g = base();
    g.conv("c1", "c0", w1.ref(), tensor_ref<float>{}, {{2, 2}, {1, 1}, {1, 1}})
        .conv("c2", "c0", w1.ref(), tensor_ref<float>{}, {{1, 1}, {1, 1}, {1, 1}});
    // (c1 and c2 share a weight; the sizes are checked first.)
    g.add("sum", {"c1", "c2"});
    fails(g, "add 'sum' adds 'c1' at 4 x 4 and 'c2' at 8 x 8");
  }
  {
    auto g = base();
    g.conv("c1", "c0", w1.ref()).conv("c2", "c0", w1.ref());
    fails(g, "conv 'c1' and conv 'c2' share tensor memory");
  }
  {
    auto g = base();
    g.add("sum", {"c0", "x"});
    fails(g, "add 'sum' adds 'c0' (4 channels) and 'x' (3 channels)");
  }
  {
    auto g = base();
    g.pool("p", "c0", 4).linear("fc", "p", fc.ref());
    fails(g, "linear 'fc' reads 'p' of 4 channels at 2 x 2 but its flatten factor is 1; pass factor 4");
  }
  {
    auto g = base();
    g.pool("p", "c0", 4).linear("fc", "p", fc.ref(), tensor_ref<float>{}, 4);
    fails(g, "linear 'fc' takes 24 inputs");
  }
  {
    auto g = base();
    g.conv("c1", "c0", w1.ref(), tensor_ref<float>{}, {{1, 1}, {0, 0}, {4, 4}});
    fails(g, "conv 'c1' on its 8 x 8 input from 'c0'");
  }
  {
    auto g = base();
    g.conv("c1", "relu9", w1.ref());
    fails(g, "conv 'c1' reads 'relu9', which is no layer of the graph");
  }
  {
    auto g = base();
    g.freeze("nope");
    fails(g, "no layer named 'nope'");
  }
  {
    // c1 -> r1 -> c2 -> r2 -> c1: a cycle (declared in any order, found when used).
    st::graph<float> g;
    tensor k({4, 4, 1, 1}, rng), k2({4, 4, 1, 1}, rng);
    g.input("x", 4).conv("c1", "r2", k.ref()).pass("r1", "c1").conv("c2", "r1", k2.ref()).pass("r2", "c2");
    fails(g, "layers 'c1' -> 'r1' -> 'c2' -> 'r2' -> 'c1' form a cycle");
    st::graph<float> self;
    self.input("x", 4).pass("loop", "loop");
    fails(self, "layers 'loop' -> 'loop' form a cycle");
  }
  // Checked when added: the layer is not added.
  {
    auto g = base();
    CHECK_THROWS_WITH_AS(g.conv("c0", "x", w1.ref()), doctest::Contains("'c0' already exists"), spruce::error);
    CHECK_THROWS_WITH_AS(g.conv("c9", "c0", bn.g.ref()), doctest::Contains("conv 'c9' weight has shape [4]"), spruce::error);
    CHECK_THROWS_WITH_AS(g.conv("c9", "c0", w1.ref(), bn.g.ref()), doctest::Contains("conv 'c9' bias has shape [4] for 6"),
                         spruce::error);
    CHECK_THROWS_WITH_AS(g.batch_norm("b", "c0", bn.g.ref(), bn.b.ref(), bn5.m.ref(), bn.v.ref()),
                         doctest::Contains("batch_norm 'b' running_mean has shape [5]"), spruce::error);
    CHECK_THROWS_WITH_AS(g.add("s", {"c0"}), doctest::Contains("add 's' has 1 inputs"), spruce::error);
    const auto strided = make_strided_view(w1.data.data(), std::array<std::size_t, 4>{6, 4, 3, 3},
                                           std::array<std::size_t, 4>{1, 6, 24, 72});
    CHECK_THROWS_WITH_AS(g.conv("c9", "c0", strided), doctest::Contains("not contiguous"), spruce::error);
    CHECK(g.groups().size() == 1);  // only c0 (frozen: the output)
  }
  CHECK(snap() == before);
}

TEST_CASE("graph: bad plans and mismatched smaller networks change nothing") {
  tiny_resnet net({6, 4, 5, 8, 3, 4}, 11);
  const auto original = snapshot(net);
  st::graph<float> g = net.describe();
  st::channel_plan plan = g.keep_all();
  const auto fails = [&](const st::channel_plan& p, const char* text) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(g.prune(p), doctest::Contains(text), spruce::error);
    CHECK_THROWS_WITH_AS(g.cfg(p), doctest::Contains(text), spruce::error);
    CHECK(snapshot(net) == original);
  };
  st::channel_plan p = plan;
  p.keep.pop_back();
  fails(p, "6 entries for 7 channel groups");
  p = plan;
  p.keep[1] = {0, 4};
  p.keep[2] = {0};  // valid, but must not move before group 1's entry is refused
  fails(p, "keeps channel 4, out of range for 4 channels");
  p = plan;
  p.keep[2] = {0, 0};
  fails(p, "lists channel 0 twice");
  p = plan;
  p.keep[4].clear();
  fails(p, "keeps 0 channels of group 'b2.conv1'");
  p = plan;
  p.keep[6] = {0, 1};
  fails(p, "group 'fc' is frozen (the network output 'fc'");
  CHECK_THROWS_WITH_AS(g.group(7), doctest::Contains("group 7 does not exist"), spruce::error);
  CHECK_THROWS_WITH_AS(g.view("b1.conv9.weight"), doctest::Contains("no tensor 'b1.conv9.weight'"), spruce::error);
  CHECK_THROWS_WITH_AS(g.group_of("x"), doctest::Contains("network input"), spruce::error);

  // copy_kept into a network that is not sized as the plan leaves it.
  p = plan;
  p.keep[1] = {0, 2};
  tiny_resnet wrong({6, 3, 5, 8, 3, 4}, 12);
  const auto wrong0 = snapshot(wrong);
  st::graph<float> gw = wrong.describe();
  CHECK_THROWS_WITH_AS(g.copy_kept(p, gw), doctest::Contains("'b1.conv1.weight' of the smaller network has shape [3, 6, 1, 1]"),
                       spruce::error);
  CHECK(snapshot(wrong) == wrong0);
  st::graph<float> other;
  other.input("x", 3, 6, 6);
  CHECK_THROWS_WITH_AS(g.copy_kept(p, other), doctest::Contains("describe both the same way"), spruce::error);
  CHECK(snapshot(net) == original);
}

TEST_CASE("graph: layers declared in any order, and a layer that reads its channels twice") {
  std::mt19937 rng(13);
  tensor a({4, 2, 1, 1}, rng), c({3, 8, 1, 1}, rng);
  st::graph<float> g;
  // The consumer is declared first; the graph sorts the layers by data flow.
  g.conv("c", "cat", c.ref()).concat("cat", {"a", "a"}).conv("a", "x", a.ref()).input("x", 2);
  REQUIRE(g.groups().size() == 2);
  CHECK(g.groups()[0].name == "a");
  CHECK(g.cfg(g.keep_all()).front().name == "x");
  // a's channels reach c twice: no single channel_group can move them; such a group is refused.
  CHECK_THROWS_WITH_AS(g.group(0), doctest::Contains("conv 'c' reads these channels twice"), spruce::error);
  CHECK(g.groups()[0].frozen);  // so sorting and slimming leave it alone
  CHECK(g.prunable().empty());
  g.sort_channels();
  st::channel_plan p = g.keep_all();
  p.keep[0] = {1};
  CHECK_THROWS_WITH_AS(g.prune(p), doctest::Contains("its plan entry must keep all 4"), spruce::error);
  // A conv inside an addition around itself: pre + conv(pre) reads and writes one group.
  tensor e({4, 4, 1, 1}, rng);
  st::graph<float> s;
  s.input("x0", 2).conv("pre", "x0", a.ref()).conv("conv", "pre", e.ref()).add("sum", {"pre", "conv"}).pass("out", "sum");
  CHECK_THROWS_WITH_AS(s.group(0), doctest::Contains("conv 'conv' both reads and writes these channels"), spruce::error);
}

TEST_CASE("channel_group: a member owning part of its axis (offset, count) moves only its part") {
  // [2, 7, 3]: the member owns axis-1 positions [2, 6) as 2 channels of factor 2.
  std::vector<float> t(2 * 7 * 3), own(2 * 5);
  std::iota(t.begin(), t.end(), 0.0f);
  std::iota(own.begin(), own.end(), 100.0f);
  const auto t0 = t, own0 = own;
  const std::vector<std::size_t> st_shape{2, 7, 3}, own_shape{2, 5};
  const auto make = [&] {
    return st::channel_group<float>("g", {{"own", tensor_ref<float>(own.data(), own_shape), 0},
                                          {"part", tensor_ref<float>(t.data(), st_shape), 1, 2, 2, 2}});
  };
  auto g = make();
  CHECK(g.channels() == 2);
  // The naive rule: element (o, p, i) of the part belongs to channel (p - 2) / 2.
  const auto naive = [&](const std::vector<std::size_t>& keep) {
    std::vector<float> out;
    for (std::size_t o = 0; o < 2; ++o)
      for (std::size_t p = 0; p < 7; ++p) {
        const bool in = p >= 2 && p < 6;
        if (in && std::find(keep.begin(), keep.end(), (p - 2) / 2) == keep.end()) continue;
        for (std::size_t i = 0; i < 3; ++i) out.push_back(t0[(o * 7 + p) * 3 + i]);
      }
    return out;
  };
  const std::array<std::size_t, 1> one{1};
  const auto copies = g.keep_copy(one);
  CHECK(copies[1].shape == std::vector<std::size_t>{2, 5, 3});
  CHECK(copies[1].data == naive({1}));
  CHECK(t == t0);
  const std::array<std::size_t, 2> swap{1, 0};
  g.permute(swap);
  for (std::size_t o = 0; o < 2; ++o)
    for (std::size_t p = 0; p < 7; ++p)
      for (std::size_t i = 0; i < 3; ++i) {
        const std::size_t from = p < 2 || p >= 6 ? p : (p < 4 ? p + 2 : p - 2);
        CHECK(t[(o * 7 + p) * 3 + i] == t0[(o * 7 + from) * 3 + i]);
      }
  g.permute(swap);
  CHECK(t == t0);
  const auto score = g.importance(criterion::l1{}, "part");
  for (std::size_t ch = 0; ch < 2; ++ch) {
    float s = 0;
    for (std::size_t o = 0; o < 2; ++o)
      for (std::size_t p = 2 + 2 * ch; p < 4 + 2 * ch; ++p)
        for (std::size_t i = 0; i < 3; ++i) s += t0[(o * 7 + p) * 3 + i];
    CHECK(score[ch] == doctest::Approx(s));
  }
  g.keep(one);
  CHECK(shape_of(g.view("part")) == std::vector<std::size_t>{2, 5, 3});
  CHECK(g.members()[1].count == 1);
  CHECK(std::vector<float>(t.begin(), t.begin() + 30) == naive({1}));
  CHECK(std::vector<float>(own.begin(), own.begin() + 5) == std::vector<float>(own0.begin() + 5, own0.end()));
  // A part that does not fit its axis.
  CHECK_THROWS_WITH_AS(st::channel_group<float>("g", {{"part", tensor_ref<float>(t.data(), st_shape), 1, 2, 4, 2}}),
                       doctest::Contains("do not fit axis 1"), spruce::error);
}

TEST_CASE("graph: the README's example compiles and does what it says") {
  using namespace spruce;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  auto filled = [&](std::size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
  };
  // README begin
  namespace st = spruce::structural;
  std::vector<float> stem_w = filled(16 * 1 * 3 * 3), a_w = filled(8 * 16 * 3 * 3), b_w = filled(16 * 8 * 1 * 1),
                     fc_w = filled(10 * 16), fc_b = filled(10);
  std::vector<std::vector<float>> bn = {filled(16), filled(16), filled(16), std::vector<float>(16, 1.0f),  // stem.bn
                                        filled(8),  filled(8),  filled(8),  std::vector<float>(8, 1.0f),   // a.bn
                                        filled(16), filled(16), filled(16), std::vector<float>(16, 1.0f)}; // b.bn
  auto bn_of = [&](st::graph<float>& g, const std::string& name, const std::string& from, std::size_t k) {
    g.batch_norm(name, from, make_view(bn[4 * k]), make_view(bn[4 * k + 1]), make_view(bn[4 * k + 2]),
                 make_view(bn[4 * k + 3]));
  };
  const st::conv_options pad1{{1, 1}, {1, 1}, {1, 1}};  // stride, padding, dilation (torch's defaults: 1, 0, 1)
  st::graph<float> net;
  net.input("x", 1, 28, 28).conv("stem", "x", make_view(stem_w.data(), 16, 1, 3, 3), tensor_ref<float>{}, pad1);
  bn_of(net, "stem.bn", "stem", 0);
  net.pass("stem.relu", "stem.bn").conv("a", "stem.relu", make_view(a_w.data(), 8, 16, 3, 3), tensor_ref<float>{}, pad1);
  bn_of(net, "a.bn", "a", 1);
  net.pass("a.relu", "a.bn").conv("b", "a.relu", make_view(b_w.data(), 16, 8, 1, 1));
  bn_of(net, "b.bn", "b", 2);
  net.add("add", {"b.bn", "stem.relu"})  // the residual join: stem's and b's channels are one group
      .pass("relu", "add")
      .global_pool("pool", "relu")
      .linear("fc", "pool", make_view(fc_w.data(), 10, 16), make_view(fc_b));  // flatten factor 1 after the pool
  for (const st::group_info& g : net.groups())
    std::printf("%-4s %2zu channels, %2zu members%s%s\n", g.name.c_str(), g.channels, g.members.size(),
                g.frozen ? ", frozen: " : "", g.frozen_reason.c_str());
  // stem 16 channels, 12 members   stem, stem.bn, a's input columns, b, b.bn, fc's columns
  // a     8 channels,  6 members   a, a.bn, b's input columns
  // fc   10 channels,  2 members, frozen: the network output 'fc' (no layer reads it)
  auto [plan, threshold] = net.slimming_plan(0.5);      // global |gamma| threshold, >= 1 channel per group
  std::vector<st::layer_channels> cfg = net.cfg(plan);  // kept channels of every layer: rebuild from it
  net.prune(plan);                                      // in place (or net.copy_kept(plan, smaller))
  // README end
  const auto& gs = net.groups();
  REQUIRE(gs.size() == 3);
  CHECK(gs[0].members.size() == 12);
  CHECK(gs[1].members.size() == 6);
  CHECK(gs[2].frozen);
  // The reference rule cuts every score up to sorted index floor(24 * 0.5): 13 of the 24.
  CHECK(gs[0].channels + gs[1].channels == 11);
  CHECK(net.view("a.weight").extent(1) == gs[0].channels);
  CHECK(cfg.back().in_channels == gs[0].channels);
  CHECK(threshold > 0.0f);
}
