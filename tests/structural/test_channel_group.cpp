// Structural pruning core: channel groups, sorting and physical removal against the MIT
// lab's channel_prune / apply_channel_sorting (channel_pruning.json), and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "spruce/spruce.hpp"
#include "structural/lab_backbone.hpp"
#include "support/fixtures.hpp"

using namespace spruce;
namespace fx = spruce_test;

using structural_test::backbone;
using structural_test::ratio_of;

TEST_CASE("channel_pruning.json: rounding table") {
  const auto j = fx::load_fixture("channel_pruning.json");
  for (const auto& r : j["rounding"]) {
    CAPTURE(r.dump());
    CHECK(structural::keep_rule{}.keep(r["prune_ratio"].get<double>(), r["channels"].get<std::size_t>()) ==
          r["keep"].get<std::size_t>());
  }
  CHECK(structural::keep_rule{8, 1}.keep(0.3, 64) == 48);  // 45 rounded up to a multiple of 8
  CHECK(structural::keep_rule{1, 1}.keep(0.5, 1) == 1);    // the minimum keeps a layer alive
  CHECK(structural::keep_rule{16, 0}.keep(0.9, 20) == 16);
}

TEST_CASE("channel_pruning.json: naive first-k, sorted, and sorted then pruned") {
  const auto j = fx::load_fixture("channel_pruning.json");
  REQUIRE(j["cases"].size() == 2);
  for (const auto& c : j["cases"]) {
    CAPTURE(c["prune_ratio"].dump());
    SUBCASE("naive") {
      backbone m(c["original"]);
      for (std::size_t i = 0; i + 1 < m.convs.size(); ++i) m.prune_group(i, ratio_of(c["prune_ratio"], i));
      m.check(c["naive"]);
    }
    SUBCASE("sorted") {
      backbone m(c["original"]);
      for (std::size_t i = 0; i + 1 < m.convs.size(); ++i) m.sort_group(i);
      m.check(c["sorted"]);
    }
    SUBCASE("sorted then pruned") {
      backbone m(c["original"]);
      for (std::size_t i = 0; i + 1 < m.convs.size(); ++i) m.sort_group(i);
      for (std::size_t i = 0; i + 1 < m.convs.size(); ++i) m.prune_group(i, ratio_of(c["prune_ratio"], i));
      m.check(c["sorted_pruned"]);
    }
  }
}

TEST_CASE("a conv output flattened into a linear layer prunes whole spatial blocks") {
  // conv [4, 2, 1, 1] -> flatten (4 channels x 3 positions) -> linear [2, 12].
  std::vector<float> conv(8), fc(24);
  for (std::size_t i = 0; i < conv.size(); ++i) conv[i] = static_cast<float>(i);
  for (std::size_t i = 0; i < fc.size(); ++i) fc[i] = static_cast<float>(100 + i);
  const std::vector<std::size_t> cs{4, 2, 1, 1}, fs{2, 12};
  structural::channel_group<float> g("g", {{"conv", tensor_ref<float>(conv.data(), cs), 0},
                                           {"fc", tensor_ref<float>(fc.data(), fs), 1, 3}});
  CHECK(g.channels() == 4);
  const std::array<std::size_t, 2> keep{3, 1};
  g.keep(keep);
  CHECK(g.view("fc").extent(1) == 6);
  CHECK(std::vector<float>(conv.begin(), conv.begin() + 4) == std::vector<float>{2, 3, 6, 7});
  CHECK(std::vector<float>(fc.begin(), fc.begin() + 12) ==
        std::vector<float>{103, 104, 105, 109, 110, 111, 115, 116, 117, 121, 122, 123});
}

TEST_CASE("structural bad input is an error and changes nothing") {
  std::vector<float> a(8 * 3 * 9), bnw(8), b(4 * 8 * 9), odd(7);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i);
  const auto a0 = a;
  const std::vector<std::size_t> sa{8, 3, 3, 3}, sbn{8}, sb{4, 8, 3, 3}, sodd{7};
  auto make = [&](bool frozen = false) {
    return structural::channel_group<float>("g", {{"conv", tensor_ref<float>(a.data(), sa), 0},
                                                  {"bn", tensor_ref<float>(bnw.data(), sbn), 0},
                                                  {"next", tensor_ref<float>(b.data(), sb), 1}},
                                            frozen);
  };
  CHECK_THROWS_WITH_AS(structural::channel_group<float>("g", {{"conv", tensor_ref<float>(a.data(), sa), 0},
                                                              {"bn", tensor_ref<float>(odd.data(), sodd), 0}}),
                       doctest::Contains("same channels"), spruce::error);
  CHECK_THROWS_WITH_AS(structural::channel_group<float>("g", {{"conv", tensor_ref<float>(a.data(), sa), 4}}),
                       doctest::Contains("out of range"), spruce::error);
  auto g = make();
  const std::array<std::size_t, 3> dup{1, 2, 1}, out{0, 9, 2};
  CHECK_THROWS_WITH_AS(g.keep(dup), doctest::Contains("twice"), spruce::error);
  CHECK_THROWS_WITH_AS(g.keep(out), doctest::Contains("out of range"), spruce::error);
  CHECK_THROWS_WITH_AS(g.keep(std::span<const std::size_t>{}), doctest::Contains("keeping 0 channels"), spruce::error);
  CHECK_THROWS_AS(g.keep_first(9), spruce::error);
  CHECK_THROWS_WITH_AS(g.keep_first(0), doctest::Contains("keeping 0 channels"), spruce::error);
  const std::array<std::size_t, 7> short_perm{0, 1, 2, 3, 4, 5, 6};
  CHECK_THROWS_WITH_AS(g.permute(short_perm), doctest::Contains("each channel once"), spruce::error);
  auto f = make(true);
  CHECK_THROWS_WITH_AS(f.keep_first(4), doctest::Contains("frozen"), spruce::error);
  CHECK(a == a0);
  CHECK(g.channels() == 8);
  CHECK(g.view("conv").extent(0) == 8);
  const structural::keep_rule zero_multiple{0, 0};
  CHECK_THROWS_AS(zero_multiple.keep(0.5, 8), spruce::error);
}

TEST_CASE("network_slimming.json through slimming_masks, and the safe rule") {
  const auto j = fx::load_fixture("network_slimming.json");
  for (const auto& c : j["cases"]) {
    const double percent = c["percent"].get<double>();
    CAPTURE(percent);
    std::vector<std::vector<float>> gammas;
    for (const auto& g : c["gammas"]) gammas.push_back(fx::values(g));
    std::vector<named_tensor<float>> views;
    for (std::size_t i = 0; i < gammas.size(); ++i)
      views.push_back({std::string("bn").append(std::to_string(i)), make_view(gammas[i])});
    const auto masks = structural::slimming_masks(std::span<const named_tensor<float>>(views), percent);
    for (std::size_t i = 0; i < gammas.size(); ++i) {
      CHECK(std::ranges::equal(masks[i].bytes(), fx::mask_bytes(c["masks"][i])));
      CHECK(masks[i].count_kept() == c["remaining"][i].get<std::size_t>());
    }
    // The safe rule: no layer below 4 channels, the reference count still cut overall.
    const auto safe = structural::slimming_masks(std::span<const named_tensor<float>>(views), percent, 4);
    std::size_t total = 0, pruned = 0;
    for (std::size_t i = 0; i < gammas.size(); ++i) {
      CHECK(safe[i].count_kept() >= 4);
      total += gammas[i].size();
      pruned += safe[i].count_pruned();
    }
    const bool starved = std::ranges::any_of(masks, [](const mask& m) { return m.count_kept() < 4; });
    if (starved) CHECK(pruned == selection::slimming{percent}.count(total));
    else CHECK(safe == masks);
  }
}

TEST_CASE("add_l1_subgradient adds lambda * sign(gamma)") {
  std::vector<float> gamma{0.5f, -0.25f, 0.0f, 2.0f}, grad{1.0f, 1.0f, 1.0f, 1.0f}, bad(3);
  structural::add_l1_subgradient(tensor_ref<float>(make_view(grad)), tensor_ref<const float>(make_view(gamma)), 0.1f, "bn");
  CHECK(grad == std::vector<float>{1.1f, 0.9f, 1.0f, 1.1f});
  CHECK_THROWS_WITH_AS(structural::add_l1_subgradient(tensor_ref<float>(make_view(bad)),
                                                      tensor_ref<const float>(make_view(gamma)), 0.1f, "bn"),
                       doctest::Contains("pass the gradient of this BN scale"), spruce::error);
}

namespace {

// Naive reference layers for the forward-pass test (NCHW, batch 1, stride 1, padding 1).
std::vector<float> conv3x3(const std::vector<float>& x, std::size_t cin, std::size_t h, std::size_t w,
                           const std::vector<float>& k, std::size_t cout) {
  std::vector<float> y(cout * h * w, 0.0f);
  for (std::size_t o = 0; o < cout; ++o)
    for (std::size_t c = 0; c < cin; ++c)
      for (std::size_t i = 0; i < h; ++i)
        for (std::size_t j = 0; j < w; ++j)
          for (std::size_t u = 0; u < 3; ++u)
            for (std::size_t v = 0; v < 3; ++v) {
              const long ii = static_cast<long>(i + u) - 1, jj = static_cast<long>(j + v) - 1;
              if (ii < 0 || jj < 0 || ii >= static_cast<long>(h) || jj >= static_cast<long>(w)) continue;
              y[(o * h + i) * w + j] += k[((o * cin + c) * 3 + u) * 3 + v] * x[(c * h + ii) * w + jj];
            }
  return y;
}

void bn_relu(std::vector<float>& y, std::size_t c, std::size_t hw, const std::vector<float>& g,
             const std::vector<float>& b, const std::vector<float>& m, const std::vector<float>& v) {
  for (std::size_t ch = 0; ch < c; ++ch)
    for (std::size_t p = 0; p < hw; ++p) {
      float& z = y[ch * hw + p];
      z = std::max(0.0f, g[ch] * (z - m[ch]) / std::sqrt(v[ch] + 1e-5f) + b[ch]);
    }
}

}  // namespace

TEST_CASE("removing channels whose BN output is exactly zero leaves the network output unchanged") {
  // conv(2 -> 6) - BN - ReLU - conv(6 -> 5) - BN - ReLU - flatten - linear(5*4*4 -> 3)
  const std::size_t h = 4, w = 4, hw = h * w;
  std::mt19937 rng(17);
  std::normal_distribution<float> g;
  auto randv = [&](std::size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = g(rng);
    return v;
  };
  std::vector<float> x = randv(2 * hw), k0 = randv(6 * 2 * 9), k1 = randv(5 * 6 * 9), fc = randv(3 * 5 * hw);
  std::vector<float> g0 = randv(6), b0 = randv(6), m0 = randv(6), v0(6, 1.5f);
  std::vector<float> g1 = randv(5), b1 = randv(5), m1 = randv(5), v1(5, 0.5f);
  // Channels 1 and 4 of the first BN and channel 2 of the second produce exactly zero.
  for (std::size_t c : {1u, 4u}) g0[c] = b0[c] = 0.0f;
  g1[2] = b1[2] = 0.0f;

  auto forward = [&](std::size_t c0, std::size_t c1) {
    auto y0 = conv3x3(x, 2, h, w, k0, c0);
    bn_relu(y0, c0, hw, g0, b0, m0, v0);
    auto y1 = conv3x3(y0, c0, h, w, k1, c1);
    bn_relu(y1, c1, hw, g1, b1, m1, v1);
    std::vector<float> out(3, 0.0f);
    for (std::size_t o = 0; o < 3; ++o)
      for (std::size_t i = 0; i < c1 * hw; ++i) out[o] += fc[o * c1 * hw + i] * y1[i];
    return out;
  };
  const auto before = forward(6, 5);

  // Keep the channels whose BN scale is nonzero (slimming with a zero threshold).
  auto keep_of = [](const std::vector<float>& gamma) {
    std::vector<std::size_t> k;
    for (std::size_t c = 0; c < gamma.size(); ++c)
      if (gamma[c] != 0.0f) k.push_back(c);
    return k;
  };
  const auto keep0 = keep_of(g0), keep1 = keep_of(g1);
  const std::vector<std::size_t> sk0{6, 2, 3, 3}, sk1{5, 6, 3, 3}, s6{6}, s5{5}, sfc{3, 5 * hw};
  structural::channel_group<float> grp0("bn0", {{"conv0", tensor_ref<float>(k0.data(), sk0), 0},
                                                {"g", tensor_ref<float>(g0.data(), s6), 0},
                                                {"b", tensor_ref<float>(b0.data(), s6), 0},
                                                {"m", tensor_ref<float>(m0.data(), s6), 0},
                                                {"v", tensor_ref<float>(v0.data(), s6), 0},
                                                {"conv1", tensor_ref<float>(k1.data(), sk1), 1}});
  grp0.keep(keep0);
  const auto k1_shape = grp0.view("conv1").shape();
  const std::vector<std::size_t> sk1_new(k1_shape.begin(), k1_shape.end());
  structural::channel_group<float> grp1("bn1", {{"conv1", tensor_ref<float>(k1.data(), sk1_new), 0},
                                                {"g", tensor_ref<float>(g1.data(), s5), 0},
                                                {"b", tensor_ref<float>(b1.data(), s5), 0},
                                                {"m", tensor_ref<float>(m1.data(), s5), 0},
                                                {"v", tensor_ref<float>(v1.data(), s5), 0},
                                                {"fc", tensor_ref<float>(fc.data(), sfc), 1, hw}});
  grp1.keep(keep1);
  CHECK(grp0.channels() == 4);
  CHECK(grp1.channels() == 4);
  CHECK(grp1.view("fc").extent(1) == 4 * hw);
  const auto after = forward(4, 4);
  for (std::size_t o = 0; o < 3; ++o) CHECK(after[o] == doctest::Approx(before[o]).epsilon(1e-5));
}

TEST_CASE("sequential_backbone reproduces the lab's sort-then-prune on channel_pruning.json") {
  const auto j = fx::load_fixture("channel_pruning.json");
  for (const auto& c : j["cases"]) {
    backbone m(c["original"]);
    structural::sequential_backbone<float> net;
    for (std::size_t i = 0; i < m.convs.size(); ++i) {
      net.add_conv("conv" + std::to_string(i), tensor_ref<float>(m.convs[i].w.data(), m.convs[i].shape));
      auto& b = m.bns[i];
      net.add_bn({tensor_ref<float>(b.gamma.data(), b.shape), tensor_ref<float>(b.beta.data(), b.shape),
                  tensor_ref<float>(b.mean.data(), b.shape), tensor_ref<float>(b.var.data(), b.shape)});
    }
    REQUIRE(net.groups() == 3);
    std::vector<double> ratios;
    for (std::size_t i = 0; i < 3; ++i) ratios.push_back(ratio_of(c["prune_ratio"], i));
    net.sort_channels();
    net.prune(ratios);
    for (std::size_t i = 0; i < 4; ++i) {
      const auto s = net.convs()[i].weight.shape();
      m.convs[i].shape.assign(s.begin(), s.end());
      if (net.convs()[i].bn) {
        const auto bs = net.convs()[i].bn->gamma.shape();
        m.bns[i].shape.assign(bs.begin(), bs.end());
      }
    }
    m.check(c["sorted_pruned"]);
  }
}

TEST_CASE("sequential_backbone report: the lab VGG's parameters and MACs, before and after 30% channel pruning") {
  const auto j = fx::load_fixture("vgg_metrics.json");
  const auto& c = j["cases"][0];  // 3 input channels, width 1, 32 x 32
  std::vector<std::vector<float>> bufs;
  std::vector<std::vector<std::size_t>> shapes;
  for (const auto& l : c["layers"]) {
    shapes.push_back(fx::shape(l["shape"]));
    std::size_t n = 1;
    for (std::size_t e : shapes.back()) n *= e;
    bufs.emplace_back(n, 1.0f);
  }
  std::mt19937 rng(2);
  std::normal_distribution<float> g;
  for (auto& b : bufs)
    for (float& x : b) x = g(rng);
  structural::sequential_backbone<float> net;
  std::vector<std::vector<float>> stats;
  stats.reserve(16);
  std::size_t li = 0;
  for (std::size_t conv = 0; conv < 8; ++conv) {
    auto ref = [&](std::size_t k) { return tensor_ref<float>(bufs[k].data(), shapes[k]); };
    net.add_conv("conv" + std::to_string(conv), ref(li));
    // The fixture lists BN weight and bias; running statistics are buffers, not parameters.
    stats.emplace_back(shapes[li + 1][0], 0.0f);
    stats.emplace_back(shapes[li + 1][0], 1.0f);
    const std::vector<std::size_t> sc{shapes[li + 1][0]};
    net.add_bn({ref(li + 1), ref(li + 2), tensor_ref<float>(stats[stats.size() - 2].data(), sc),
                tensor_ref<float>(stats.back().data(), sc)});
    li += 3;
  }
  net.set_classifier("classifier", tensor_ref<float>(bufs[li].data(), shapes[li]));
  const std::array<bool, 8> pool{false, true, false, true, false, true, false, true};
  auto totals = [&] {
    std::size_t p = 0, macs = 0;
    for (const auto& r : net.report(32, 32, pool)) p += r.params, macs += r.macs;
    return std::pair{p, macs};
  };
  const auto [p0, m0] = totals();
  CHECK(p0 == c["num_parameters"].get<std::size_t>());
  CHECK(m0 == c["macs"].get<std::size_t>());
  // The lab: 30% of every conv's channels but the last -> about 5.01 M parameters, 305 M MACs.
  const std::vector<double> ratios(7, 0.3);
  net.prune(ratios);
  const auto [p1, m1] = totals();
  CHECK(p1 == doctest::Approx(5.01e6).epsilon(0.002));
  CHECK(m1 == doctest::Approx(305e6).epsilon(0.004));
  CHECK_THROWS_WITH_AS(net.prune(std::vector<double>(9, 0.3)), doctest::Contains("at most one per group"), spruce::error);
  // Members that share memory are refused: pruning would move the buffer twice.
  const std::vector<std::size_t> s8{8};
  std::vector<float> shared(8);
  CHECK_THROWS_WITH_AS(structural::channel_group<float>("g", {{"a", tensor_ref<float>(shared.data(), s8), 0},
                                                              {"b", tensor_ref<float>(shared.data(), s8), 0}}),
                       doctest::Contains("share memory"), spruce::error);
}

TEST_CASE("keep_copy prunes into new storage and joined groups move together") {
  std::vector<float> a(4 * 2), b(3 * 4), c(4 * 5);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(10 + i);
  for (std::size_t i = 0; i < c.size(); ++i) c[i] = static_cast<float>(100 + i);
  const auto a0 = a, b0 = b;
  const std::vector<std::size_t> sa{4, 2}, sb{3, 4}, sc{4, 5};
  structural::channel_group<float> g("g", {{"a", tensor_ref<float>(a.data(), sa), 0}, {"b", tensor_ref<float>(b.data(), sb), 1}});
  const std::array<std::size_t, 2> keep{2, 0};
  const auto copies = g.keep_copy(keep);
  REQUIRE(copies.size() == 2);
  CHECK(copies[0].shape == std::vector<std::size_t>{2, 2});
  CHECK(copies[0].data == std::vector<float>{0, 1, 4, 5});
  CHECK(copies[1].shape == std::vector<std::size_t>{3, 2});
  CHECK(copies[1].data == std::vector<float>{10, 12, 14, 16, 18, 20});
  CHECK(a == a0);
  CHECK(b == b0);
  CHECK(g.channels() == 4);
  // Two residual branches that add: one selection for both.
  structural::channel_group<float> h("h", {{"c", tensor_ref<float>(c.data(), sc), 0}});
  const std::array<structural::channel_group<float>, 2> parts{g, h};
  auto j = structural::join<float>("joined", parts);
  CHECK(j.members().size() == 3);
  j.keep(keep);
  CHECK(std::vector<float>(c.begin(), c.begin() + 10) == std::vector<float>{100, 101, 102, 103, 104, 110, 111, 112, 113, 114});
  CHECK(std::vector<float>(a.begin(), a.begin() + 4) == std::vector<float>{0, 1, 4, 5});
  std::vector<float> d(3);
  const std::vector<std::size_t> sd{3};
  structural::channel_group<float> other("o", {{"d", tensor_ref<float>(d.data(), sd), 0}});
  const std::array<structural::channel_group<float>, 2> bad{j, other};
  CHECK_THROWS_WITH_AS(structural::join<float>("x", bad), doctest::Contains("only groups that add together"), spruce::error);
}
