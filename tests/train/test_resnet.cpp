// The bottleneck ResNet of the training library: names, shapes, parameter and MAC counts
// against hand counts, the cfg read back from shapes (dense and pruned), a whole-network
// gradient check in double (training-mode BN, projection and identity shortcuts), a
// checkpoint round trip, and forward equivalence after removing channels whose BN output is
// exactly zero (removing a live channel is caught).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <spruce/core/error.hpp>
#include <spruce/structural/channel_group.hpp>

#include "train/checkpoint.hpp"
#include "io_support.hpp"
#include "gradient_check.hpp"
#include "train/layers.hpp"
#include "train/resnet.hpp"

namespace {

using test_support::contains;
using test_support::error_of;

template <class T>
std::map<std::string, std::vector<std::size_t>> shapes_of(train::basic_resnet<T>& m) {
  std::map<std::string, std::vector<std::size_t>> out;
  auto all = m.parameters();
  for (auto& b : m.buffers()) all.push_back(b);
  for (auto& t : all) out[t.name] = {t.view.shape().begin(), t.view.shape().end()};
  return out;
}

template <class T>
std::vector<spruce::named_tensor<T>> all_tensors(train::basic_resnet<T>& m) {
  auto all = m.parameters();
  for (auto& b : m.buffers()) all.push_back(b);
  return all;
}

// BN affine parameters and running statistics away from their 1 / 0 start, so that the
// gradient check and the evaluation-mode checks exercise them.
template <class T>
void perturb_bn(train::basic_resnet<T>& m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto& p : all_tensors(m)) {
    if (p.view.rank() != 1 || p.name.starts_with("fc.")) continue;
    for (std::size_t i = 0; i < p.view.size(); ++i) {
      T& v = p.view.data()[i];
      if (p.name.ends_with("running_var")) v = static_cast<T>(0.5 + 0.5 * (u(rng) + 1));
      else v += static_cast<T>(0.3 * u(rng));
    }
  }
}

template <class T>
T max_abs_diff(const train::tensor<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  T d = 0;
  for (std::size_t i = 0; i < b.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

}  // namespace

TEST_CASE("resnet_channels: the dense design, its names, parameter count and MACs") {
  const std::array<std::size_t, 3> blocks{2, 1, 1};
  const train::resnet_cfg cfg = train::resnet_channels(0.5, blocks);
  CHECK(cfg.stem == 8);
  REQUIRE(cfg.stages.size() == 3);
  CHECK(cfg.stages[0].out == 32);
  CHECK(cfg.stages[1].out == 64);
  CHECK(cfg.stages[2].out == 128);
  CHECK(cfg.stages[0].stride == 1);
  CHECK(cfg.stages[2].stride == 2);
  CHECK(cfg.stages[0].blocks.size() == 2);
  CHECK(cfg.stages[1].blocks[0] == train::resnet_block_cfg{16, 16});

  train::resnet m(cfg);
  const auto params = m.parameters();
  const auto grads = m.gradients();
  const auto bufs = m.buffers();
  REQUIRE(params.size() == grads.size());
  CHECK(params.front().name == "conv1.weight");
  CHECK(params[1].name == "bn1.weight");
  CHECK(params[3].name == "stage1.0.conv1.weight");
  CHECK(params[4].name == "stage1.0.bn1.weight");
  CHECK(params[12].name == "stage1.0.downsample.0.weight");
  CHECK(params[13].name == "stage1.0.downsample.1.weight");
  CHECK(params[params.size() - 2].name == "fc.weight");
  CHECK(params.back().name == "fc.bias");
  std::size_t total = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    CHECK(grads[i].name == params[i].name);
    CHECK(grads[i].view.same_shape(params[i].view));
    total += params[i].view.size();
  }
  CHECK(total == m.num_parameters());
  // stage1.1 has no projection; each BN has running statistics.
  std::size_t bns = 0;
  for (const auto& p : params) bns += p.name.ends_with("bn1.weight") || p.name.ends_with("bn2.weight") ||
                                      p.name.ends_with("bn3.weight") || p.name.ends_with("downsample.1.weight");
  CHECK(bufs.size() == 2 * bns);
  CHECK(std::none_of(params.begin(), params.end(), [](const auto& p) { return p.name == "stage1.1.downsample.0.weight"; }));

  // MACs by hand at 28 x 28: stem 1->8 3x3 at 784, pooled to 14 x 14; stage1 at 196 (two
  // blocks, one projection 8->32); stage2: conv1 at 196, the rest at 49; stage3: conv1 at
  // 49, the rest at 16 (7 -> 4 with stride 2 and padding 1).
  const std::uint64_t stem = 8 * 9 * 784;
  const std::uint64_t s1 = (8 * 8 + 8 * 8 * 9 + 8 * 32 + 8 * 32) * 196 + (32 * 8 + 8 * 8 * 9 + 8 * 32) * 196;
  const std::uint64_t s2 = 32 * 16 * 196 + (16 * 16 * 9 + 16 * 64 + 32 * 64) * 49;
  const std::uint64_t s3 = 64 * 32 * 49 + (32 * 32 * 9 + 32 * 128 + 64 * 128) * 16;
  CHECK(m.macs(28, 28) == stem + s1 + s2 + s3 + 10 * 128);

  CHECK(contains(error_of([] { train::resnet_channels(0); }), "width"));
  CHECK(contains(error_of([] { train::resnet_channels(0.01); }), "without channels"));
  CHECK(contains(error_of([] { const std::array<std::size_t, 2> two{1, 1}; train::resnet_channels(1, two); }), "three"));
}

TEST_CASE("resnet cfg: read back from shapes, dense and pruned, bad cfgs and shapes refused") {
  const std::array<std::size_t, 3> blocks{2, 2, 1};
  train::resnet_cfg cfg = train::resnet_channels(0.25, blocks);
  {
    train::basic_resnet<double> m(cfg);
    CHECK(train::resnet_cfg_from_shapes(shapes_of(m)) == cfg);
  }
  // A pruned network: every inner width and the stem different.
  cfg.stem = 3;
  cfg.stages[0].blocks = {{1, 4}, {2, 3}};
  cfg.stages[1].blocks = {{5, 1}, {7, 2}};
  cfg.stages[2].blocks = {{6, 6}};
  train::basic_resnet<double> m(cfg);
  auto shapes = shapes_of(m);
  CHECK(train::resnet_cfg_from_shapes(shapes) == cfg);
  CHECK(train::describe(cfg).starts_with("stem 3 | stage1 16: 1x4, 2x3 | stage2 32: 5x1, 7x2"));

  auto broken = shapes;
  broken["stage2.1.conv2.weight"][1] = 6;  // does not take conv1's 7 outputs
  CHECK(contains(error_of([&] { train::resnet_cfg_from_shapes(broken); }), "stage2.1.conv2.weight"));
  broken = shapes;
  broken.erase("stage1.0.downsample.0.weight");
  CHECK(contains(error_of([&] { train::resnet_cfg_from_shapes(broken); }), "stage1.0.downsample.0.weight"));
  broken = shapes;
  broken.erase("fc.weight");
  CHECK(contains(error_of([&] { train::resnet_cfg_from_shapes(broken); }), "fc.weight"));

  auto bad = cfg;
  bad.stages[1].blocks[1].conv2 = 0;
  CHECK(contains(error_of([&] { train::basic_resnet<double> x(bad); }), "stage2.1"));
  bad = cfg;
  bad.stages.clear();
  CHECK(contains(error_of([&] { train::basic_resnet<double> x(bad); }), "no stage"));
  bad = cfg;
  bad.stages[0].stride = 2;  // the identity block after a strided first block still fits
  train::basic_resnet<double> strided(bad);
  std::vector<double> img(2 * 9 * 9, 0.5);
  CHECK(strided.forward(img, 2, 9, 9).n() == 2);
  CHECK(contains(error_of([&] { strided.forward(img, 0, 9, 9); }), "empty"));
  CHECK(contains(error_of([&] { strided.forward(img, 2, 9, 8); }), "values"));
}

TEST_CASE("resnet gradients match central differences through the whole network (double)") {
  // Width 1/8: stem 2, planes 2 / 4 / 8, outputs 8 / 16 / 32; stage 1 has a projection and an
  // identity block. 12 x 12 inputs go 12 -> 6 (pool) -> 6 -> 3 -> 2, so every 3x3 tap is used.
  const std::array<std::size_t, 3> blocks{2, 1, 1};
  train::basic_resnet<double> model(train::resnet_channels(0.125, blocks, 1, 3), 5);
  perturb_bn(model, 11);
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  const std::size_t n = 3;
  std::vector<double> images(n * 12 * 12);
  for (double& v : images) v = u(rng);
  const std::int32_t labels[] = {0, 2, 1};

  test_support::check_gradients_by_central_differences(model, images, n, 12, 12, labels, 60, true);
}

TEST_CASE("resnet checkpoint round trip: rebuilt from the file's shapes, same logits") {
  test_support::temp_dir dir("resnet");
  const std::array<std::size_t, 3> blocks{1, 2, 1};
  train::resnet_cfg cfg = train::resnet_channels(0.25, blocks);
  cfg.stages[1].blocks[1] = {3, 5};  // a pruned block
  train::resnet a(cfg, 9);
  perturb_bn(a, 2);
  a.eval();
  std::vector<float> img(4 * 28 * 28);
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<float>((i * 37) % 17) / 17.0f - 0.5f;
  const auto& la = a.forward(img, 4, 28, 28);
  const std::vector<float> want(la.values().begin(), la.values().end());
  train::save_safetensors(dir / "r.safetensors", all_tensors(a));

  std::map<std::string, std::vector<std::size_t>> shapes;
  for (const auto& t : train::read_safetensors(dir / "r.safetensors"))
    shapes[t.name] = {t.shape.begin(), t.shape.end()};
  const train::resnet_cfg back = train::resnet_cfg_from_shapes(shapes);
  CHECK(back == cfg);
  train::resnet b(back);
  train::load_safetensors(dir / "r.safetensors", all_tensors(b));
  b.eval();
  const auto& lb = b.forward(img, 4, 28, 28);
  // Equal up to the last bits: Eigen's vectorised loops peel by the buffers' alignment.
  CHECK(max_abs_diff(lb, want) <= 1e-5f);

  // resnet_from_tensors: the same network from views; a missing or extra tensor is named.
  auto views = all_tensors(a);
  train::resnet c = train::resnet_from_tensors(views);
  c.eval();
  const auto& lc = c.forward(img, 4, 28, 28);
  CHECK(max_abs_diff(lc, want) <= 1e-5f);
  auto fewer = views;
  fewer.erase(std::find_if(fewer.begin(), fewer.end(), [](const auto& t) { return t.name == "stage2.0.bn2.running_var"; }));
  CHECK(contains(error_of([&] { train::resnet_from_tensors(fewer); }), "stage2.0.bn2.running_var"));
  auto more = views;
  more.push_back({"extra.weight", views.front().view});
  CHECK(contains(error_of([&] { train::resnet_from_tensors(more); }), "extra.weight"));
}

namespace {

// A channel set of the bottleneck net listed by hand: (tensor, axis) pairs.
using member_list = std::vector<std::pair<std::string, std::size_t>>;

member_list bn_members(const std::string& bn) {
  return {{bn + ".weight", 0}, {bn + ".bias", 0}, {bn + ".running_mean", 0}, {bn + ".running_var", 0}};
}

// Keeps `keep` of the channel set in place (channel_group::keep), updating the current views
// so that the next group sees the shapes this one left.
void keep_channels(std::map<std::string, spruce::tensor_ref<double>>& cur, const std::string& name,
                   const member_list& list, const std::vector<std::size_t>& keep) {
  std::vector<spruce::structural::member<double>> members;
  for (const auto& [t, axis] : list) members.push_back({t, cur.at(t), axis, 1});
  spruce::structural::channel_group<double> g(name, std::move(members));
  g.keep(keep);
  for (const auto& m : g.members()) cur.at(m.name) = m.view;
}

std::vector<spruce::named_tensor<double>> as_list(const std::map<std::string, spruce::tensor_ref<double>>& cur) {
  std::vector<spruce::named_tensor<double>> out;
  for (const auto& [name, v] : cur) out.push_back({name, v});
  return out;
}

}  // namespace

TEST_CASE("removing channels whose BN output is exactly zero leaves every logit unchanged, a live one is caught") {
  const std::array<std::size_t, 3> blocks{2, 1, 1};
  const train::resnet_cfg cfg = train::resnet_channels(0.5, blocks);  // stem 8, planes 8 / 16 / 32
  train::basic_resnet<double> src(cfg, 4);
  perturb_bn(src, 8);
  std::vector<double> img(5 * 28 * 28);
  std::mt19937_64 rng(1);
  std::normal_distribution<double> nd;
  for (double& v : img) v = nd(rng);
  // Give the running statistics realistic values: a few training-mode passes.
  for (int i = 0; i < 3; ++i) src.forward(img, 5, 28, 28);
  src.eval();

  // Dead channels: gamma = beta = 0, so BN(+ReLU) outputs exactly 0 for every input.
  const auto kill = [](train::basic_resnet<double>& m, const std::string& bn, const std::vector<std::size_t>& ch) {
    for (auto& p : m.parameters())
      if (p.name == bn + ".weight" || p.name == bn + ".bias")
        for (std::size_t c : ch) p.view.data()[c] = 0;
  };
  kill(src, "bn1", {0, 5});
  kill(src, "stage1.1.bn1", {1, 2, 7});
  kill(src, "stage2.0.bn2", {3, 4, 9, 15});
  kill(src, "stage3.0.bn1", {0});
  const auto& ref = src.forward(img, 5, 28, 28);
  const std::vector<double> want(ref.values().begin(), ref.values().end());

  const auto keep_except = [](std::size_t c, std::vector<std::size_t> drop) {
    std::vector<std::size_t> k;
    for (std::size_t i = 0; i < c; ++i)
      if (std::find(drop.begin(), drop.end(), i) == drop.end()) k.push_back(i);
    return k;
  };
  const auto prune = [&](train::basic_resnet<double>& m, std::size_t live_stem_extra) {
    std::map<std::string, spruce::tensor_ref<double>> cur;
    for (auto& t : all_tensors(m)) cur.emplace(t.name, t.view);
    // stem: its conv's outputs, its BN, and both consumers of stage1.0 (conv1, projection)
    member_list stem = {{"conv1.weight", 0}, {"stage1.0.conv1.weight", 1}, {"stage1.0.downsample.0.weight", 1}};
    for (auto& b : bn_members("bn1")) stem.push_back(b);
    std::vector<std::size_t> stem_drop = {0, 5};
    if (live_stem_extra) stem_drop.push_back(live_stem_extra);
    keep_channels(cur, "stem", stem, keep_except(8, stem_drop));
    member_list s11 = {{"stage1.1.conv1.weight", 0}, {"stage1.1.conv2.weight", 1}};
    for (auto& b : bn_members("stage1.1.bn1")) s11.push_back(b);
    keep_channels(cur, "stage1.1.inner1", s11, keep_except(8, {1, 2, 7}));
    member_list s20 = {{"stage2.0.conv2.weight", 0}, {"stage2.0.conv3.weight", 1}};
    for (auto& b : bn_members("stage2.0.bn2")) s20.push_back(b);
    keep_channels(cur, "stage2.0.inner2", s20, keep_except(16, {3, 4, 9, 15}));
    member_list s30 = {{"stage3.0.conv1.weight", 0}, {"stage3.0.conv2.weight", 1}};
    for (auto& b : bn_members("stage3.0.bn1")) s30.push_back(b);
    keep_channels(cur, "stage3.0.inner1", s30, keep_except(32, {0}));
    return train::resnet_from_tensors(as_list(cur));
  };

  train::basic_resnet<double> copy = src;  // pruning compacts the source's storage in place
  train::basic_resnet<double> small = prune(copy, 0);
  CHECK(small.cfg().stem == 6);
  CHECK(small.cfg().stages[0].blocks[1] == train::resnet_block_cfg{5, 8});
  CHECK(small.cfg().stages[1].blocks[0] == train::resnet_block_cfg{16, 12});
  CHECK(small.cfg().stages[2].blocks[0] == train::resnet_block_cfg{31, 32});
  CHECK(small.num_parameters() < src.num_parameters());
  CHECK(small.macs(28, 28) < src.macs(28, 28));
  small.eval();
  CHECK(max_abs_diff(small.forward(img, 5, 28, 28), want) <= 1e-12);

  // Removing one live stem channel as well changes the logits: the check can fail.
  train::basic_resnet<double> copy2 = src;
  train::basic_resnet<double> wrong = prune(copy2, 3);
  wrong.eval();
  CHECK(max_abs_diff(wrong.forward(img, 5, 28, 28), want) > 1e-6);
}
