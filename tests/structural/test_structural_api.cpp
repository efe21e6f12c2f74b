// Structural API shape: slimming_masks over any contiguous range with its threshold, join
// over any range, views through the conversion point, and sequential_backbone::report for
// convolutions that are not 3x3 / padding 1 (hand-computed MACs).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "spruce/spruce.hpp"
#include "support/fixtures.hpp"

using namespace spruce;
namespace fx = spruce_test;

namespace {

/// The reference rule written from vggprune.py: sort every |gamma|, thre = sorted[floor(total * percent)].
float naive_threshold(const std::vector<std::vector<float>>& gammas, double percent) {
  std::vector<float> all;
  for (const auto& g : gammas)
    for (float x : g) all.push_back(std::fabs(x));
  std::sort(all.begin(), all.end());
  return all[static_cast<std::size_t>(std::floor(static_cast<double>(all.size()) * percent))];
}

}  // namespace

TEST_CASE("slimming_masks takes a std::vector and returns the reference threshold (network_slimming.json)") {
  const auto j = fx::load_fixture("network_slimming.json");
  for (const auto& c : j["cases"]) {
    const double percent = c["percent"].get<double>();
    CAPTURE(percent);
    std::vector<std::vector<float>> gammas;
    for (const auto& g : c["gammas"]) gammas.push_back(fx::values(g));
    std::vector<named_tensor<float>> views;
    for (std::size_t i = 0; i < gammas.size(); ++i) views.push_back({"bn" + std::to_string(i), make_view(gammas[i])});
    const auto [masks, threshold] = structural::slimming_masks(views, percent);  // a std::vector compiles
    CHECK(threshold == static_cast<float>(c["threshold"].get<double>()));
    CHECK(threshold == naive_threshold(gammas, percent));
    REQUIRE(masks.size() == gammas.size());
    for (std::size_t i = 0; i < gammas.size(); ++i) {
      CHECK(std::ranges::equal(masks[i].bytes(), fx::mask_bytes(c["masks"][i])));
      for (std::size_t k = 0; k < gammas[i].size(); ++k)
        CHECK(masks[i].data()[k] == (std::fabs(gammas[i][k]) > threshold ? 1 : 0));
    }
    // The safe rule reports the same reference threshold.
    const auto safe = structural::slimming_masks(views, percent, 4);
    CHECK(safe.threshold == threshold);
    // The result still reads as the former std::vector<mask>.
    const std::vector<mask> as_vector = structural::slimming_masks(views, percent);
    CHECK(as_vector == masks);
  }
}

TEST_CASE("slimming_masks with per-layer limits: a fraction kept in every layer, the reference count removed") {
  // Layer 1's scales are all below the others' (a late layer of a network not trained
  // sparse): without a cap the global threshold empties it; with max = 0.5 it keeps half,
  // and the count it would have lost is taken from the others, lowest |gamma| first
  // (max = 0.6 leaves room for the reference's 16 of 30: at most 7 + 4 + 6 pruned).
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> d(1, 40);
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<std::vector<float>> gammas = {std::vector<float>(12), std::vector<float>(8), std::vector<float>(10)};
    for (std::size_t l = 0; l < gammas.size(); ++l)
      for (float& x : gammas[l]) x = (l == 1 ? 0.001f : 0.01f) * static_cast<float>(d(rng)) * (d(rng) % 2 ? 1.0f : -1.0f);
    std::vector<named_tensor<float>> views;
    for (std::size_t i = 0; i < gammas.size(); ++i) views.push_back({"bn" + std::to_string(i), make_view(gammas[i])});
    const double percent = 0.5;
    sparsity_limits limits;
    limits.max = 0.6;
    const auto capped = structural::slimming_masks(views, percent, limits);
    const auto free = structural::slimming_masks(views, percent);
    CHECK(capped.threshold == free.threshold);  // the reference threshold, as reported
    std::size_t removed = 0, removed_free = 0;
    for (std::size_t i = 0; i < gammas.size(); ++i) {
      const std::size_t n = gammas[i].size(), kept = capped[i].count_kept();
      CHECK(static_cast<double>(n - kept) <= 0.6 * static_cast<double>(n));
      removed += n - kept;
      removed_free += n - free[i].count_kept();
    }
    // The reference count goes, give or take the channels tied at the threshold (the free
    // rule drops every tie, global scope its own tie rule).
    CHECK(removed + 2 >= removed_free);
    CHECK(removed <= removed_free + 2);
    CHECK(free[1].count_kept() == 0);
    CHECK(capped[1].count_kept() == 4);
    // It is global scope with these limits, exactly.
    const auto global = global_masks(pruner<granularity::element, criterion::l1, selection::slimming>{{}, {}, {percent}},
                                     std::span<const named_tensor<float>>(views), limits);
    for (std::size_t i = 0; i < gammas.size(); ++i) CHECK(global[i] == capped[i]);
    // The count form is min_kept.
    sparsity_limits two;
    two.min_kept = 2;
    const auto a = structural::slimming_masks(views, percent, 2);
    const auto b = structural::slimming_masks(views, percent, two);
    CHECK(a == b);
  }
  sparsity_limits bad;
  bad.max = 1.5;
  std::vector<float> g(4, 1.0f);
  const std::vector<named_tensor<float>> one = {{"bn", make_view(g)}};
  CHECK_THROWS_AS(structural::slimming_masks(one, 0.5, bad), error);
}

TEST_CASE("slimming_masks over std::array and strided gammas, with ties, zeros and negative scales") {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> d(-6, 6);  // many ties and zeros
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::vector<float>> gammas(3);
    std::vector<float> strided_buf;
    gammas[0].resize(5);
    gammas[1].resize(9);
    gammas[2].resize(4);
    for (auto& g : gammas)
      for (float& x : g) x = 0.25f * static_cast<float>(d(rng));
    // Layer 2 lives every other element of a larger buffer.
    strided_buf.assign(8, 99.0f);
    for (std::size_t k = 0; k < 4; ++k) strided_buf[2 * k] = gammas[2][k];
    const std::array<named_tensor<float>, 3> set{
        named_tensor<float>{"a", make_view(gammas[0])}, named_tensor<float>{"b", make_view(gammas[1])},
        named_tensor<float>{"c", make_strided_view(strided_buf.data(), std::array<std::size_t, 1>{4},
                                                   std::array<std::size_t, 1>{2})}};
    for (double percent : {0.0, 0.3, 0.5, 0.77, 0.95}) {
      CAPTURE(trial);
      CAPTURE(percent);
      const auto r = structural::slimming_masks(set, percent);
      REQUIRE(r.size() == 3);
      CHECK(r.threshold == naive_threshold(gammas, percent));
      for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t k = 0; k < gammas[i].size(); ++k)
          CHECK(r[i].data()[k] == (std::fabs(gammas[i][k]) > r.threshold ? 1 : 0));
      // A span of the same set is the same call.
      CHECK(structural::slimming_masks(std::span<const named_tensor<float>>(set), percent) == r);
    }
  }
}

TEST_CASE("slimming_masks: empty set, NaN and bad percent") {
  const std::vector<named_tensor<float>> none;
  const auto r = structural::slimming_masks(none, 0.5);
  CHECK(r.empty());
  CHECK(r.threshold == 0.0f);
  std::vector<float> g{0.5f, std::numeric_limits<float>::quiet_NaN(), 0.1f};
  const std::vector<named_tensor<float>> one{{"features.bn3", make_view(g)}};
  CHECK_THROWS_WITH_AS(structural::slimming_masks(one, 0.5), doctest::Contains("features.bn3"), spruce::error);
  g[1] = 0.2f;
  CHECK_THROWS_WITH_AS(structural::slimming_masks(one, 1.0), doctest::Contains("[0, 1)"), spruce::error);
  const auto ok = structural::slimming_masks(one, 0.5);  // sorted 0.1 0.2 0.5, index 1 -> 0.2
  CHECK(ok.threshold == 0.2f);
  CHECK(ok[0].count_kept() == 1);
}

TEST_CASE("add_l1_subgradient and the backbone take tensor_views directly") {
  std::vector<float> gamma{0.5f, -0.25f, 0.0f, 2.0f}, grad{1.0f, 1.0f, 1.0f, 1.0f};
  structural::add_l1_subgradient(make_view(grad), make_view(std::as_const(gamma)), 0.1f, "bn");
  CHECK(grad == std::vector<float>{1.1f, 0.9f, 1.0f, 1.1f});
  std::vector<float> w0(4 * 2 * 3 * 3, 1.0f), w1(3 * 4 * 1 * 1, 1.0f), fc(5 * 3, 1.0f);
  structural::sequential_backbone<float> net;
  net.add_conv("c0", make_view(w0.data(), 4, 2, 3, 3));
  net.add_conv("c1", make_view(w1.data(), 3, 4, 1, 1));
  net.set_classifier("fc", make_view(fc.data(), 5, 3));
  CHECK(net.groups() == 2);
  const auto rep = net.report(6, 6);
  REQUIRE(rep.size() == 3);
  CHECK(rep[0].macs == 72 * 36);
  CHECK(rep[1].macs == 12 * 36);
}

TEST_CASE("join deduces its element type from a std::vector of groups") {
  std::vector<float> a(4 * 2), b(4 * 3);
  const std::vector<std::size_t> sa{4, 2}, sb{4, 3};
  std::vector<structural::channel_group<float>> parts;
  parts.emplace_back("a", std::vector<structural::member<float>>{{"w", tensor_ref<float>(a.data(), sa), 0}});
  parts.emplace_back("b", std::vector<structural::member<float>>{{"w", tensor_ref<float>(b.data(), sb), 0}});
  auto j = structural::join("res", parts);
  CHECK(j.members().size() == 2);
  CHECK(j.channels() == 4);
}

TEST_CASE("sequential_backbone report: non-3x3 kernels, paddings, strides, dilation and pools, by hand") {
  // 28 x 20 input.
  //  c0 [8, 3, 5, 5], padding (2, 1), then a 2x2 pool: 28 x 18 -> 14 x 9
  //     MACs 8*3*25 * 28*18 = 600 * 504 = 302400; params 600 + 8 bias = 608
  //  c1 [16, 8, 1, 1], padding 0, stride 2: (14-1)/2+1 = 7, (9-1)/2+1 = 5
  //     MACs 128 * 35 = 4480; params 128 + 2*16 BN = 160
  //  c2 [4, 16, 3, 3], padding (1, 0), dilation 2 (a 5-wide kernel): 7+2-5+1 = 5, 5-5+1 = 1
  //     MACs 576 * 5 = 2880; params 576
  //  fc [10, 4 * 5]: MACs 200, params 210
  std::vector<float> w0(8 * 3 * 25), b0(8), w1(16 * 8), w2(4 * 16 * 9), fc(10 * 20);
  std::vector<std::vector<float>> bn(4, std::vector<float>(16));
  structural::sequential_backbone<float> net;
  net.add_conv("c0", make_view(w0.data(), 8, 3, 5, 5), make_view(b0.data(), 8));
  net.add_conv("c1", make_view(w1.data(), 16, 8, 1, 1));
  net.add_bn({make_view(bn[0]), make_view(bn[1]), make_view(bn[2]), make_view(bn[3])});
  net.add_conv("c2", make_view(w2.data(), 4, 16, 3, 3));
  net.set_classifier("fc", make_view(fc.data(), 10, 20), 5);
  using geo = structural::conv_geometry;
  std::array<geo, 3> g{};
  g[0].padding = {2, 1};
  g[0].pool = 2;
  g[1].padding = {0, 0};
  g[1].stride = {2, 2};
  g[2].padding = {1, 0};
  g[2].dilation = {2, 2};
  const auto r = net.report(28, 20, g);
  REQUIRE(r.size() == 4);
  CHECK(r[0].macs == 302400);
  CHECK(r[0].params == 608);
  CHECK((r[0].out_h == 14 && r[0].out_w == 9));
  CHECK(r[1].macs == 4480);
  CHECK(r[1].params == 160);
  CHECK((r[1].out_h == 7 && r[1].out_w == 5));
  CHECK(r[2].macs == 2880);
  CHECK(r[2].params == 576);
  CHECK((r[2].out_h == 5 && r[2].out_w == 1));
  CHECK(r[3].macs == 200);
  CHECK(r[3].params == 210);
  // A 3x3 pool with stride 2 (torch MaxPool2d(3, 2)) after c0: 28 x 18 -> 13 x 8.
  g[0].pool = 3;
  g[0].pool_stride = 2;
  g[1].stride = {1, 1};
  g[2] = geo{};  // 'same'
  const auto r2 = net.report(28, 20, g);
  CHECK((r2[0].out_h == 13 && r2[0].out_w == 8));
  CHECK(r2[1].macs == 128 * 13 * 8);
  CHECK(r2[2].macs == 576 * 13 * 8);
  // Explicit padding 1 on 3x3 convs is the default 'same' geometry.
  std::vector<float> v0(4 * 3 * 9), v1(6 * 4 * 9);
  structural::sequential_backbone<float> lab;
  lab.add_conv("a", make_view(v0.data(), 4, 3, 3, 3));
  lab.add_conv("b", make_view(v1.data(), 6, 4, 3, 3));
  std::array<geo, 2> pad1{};
  pad1[0].padding = pad1[1].padding = {1, 1};
  pad1[0].pool = 2;
  const std::array<bool, 2> pool{true, false};
  const auto x = lab.report(10, 10, pad1), y = lab.report(10, 10, pool);
  REQUIRE(x.size() == y.size());
  for (std::size_t i = 0; i < x.size(); ++i) CHECK((x[i].macs == y[i].macs && x[i].out_h == y[i].out_h));
  CHECK(y[1].macs == 6 * 4 * 9 * 25);
}

TEST_CASE("sequential_backbone report: geometry that does not fit is an error naming the conv") {
  std::vector<float> w0(2 * 1 * 7 * 7), w1(2 * 2 * 3 * 3);
  structural::sequential_backbone<float> net;
  net.add_conv("stem", make_view(w0.data(), 2, 1, 7, 7));
  net.add_conv("body", make_view(w1.data(), 2, 2, 3, 3));
  std::array<structural::conv_geometry, 2> g{};
  g[0].padding = {0, 0};
  CHECK_THROWS_WITH_AS(net.report(5, 5, g), doctest::Contains("'stem'"), spruce::error);
  g[0].padding = {3, 3};
  g[0].stride = {2, 2};
  g[1].stride = {2, 2};  // with 'same' padding
  CHECK_THROWS_WITH_AS(net.report(8, 8, g), doctest::Contains("'body' has 'same' padding with stride"), spruce::error);
  g[1] = {};
  g[1].pool = 8;
  CHECK_THROWS_WITH_AS(net.report(8, 8, g), doctest::Contains("pool after conv 'body'"), spruce::error);
  g[1].pool = 0;
  g[0].stride = {0, 1};
  CHECK_THROWS_WITH_AS(net.report(8, 8, g), doctest::Contains("stride 0"), spruce::error);
  const std::array<structural::conv_geometry, 1> one{};
  CHECK_THROWS_WITH_AS(net.report(8, 8, one), doctest::Contains("one per conv"), spruce::error);
  const std::array<bool, 3> flags{};
  CHECK_THROWS_WITH_AS(net.report(8, 8, flags), doctest::Contains("at most one per conv"), spruce::error);
  g[0].stride = {2, 2};
  const auto r = net.report(8, 8, g);  // (8+6-7)/2+1 = 4
  CHECK((r[0].out_h == 4 && r[1].out_h == 4));
  CHECK(r[0].macs == 98 * 16);
}
