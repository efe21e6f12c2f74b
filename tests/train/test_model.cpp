// The lab's VGG (shapes, parameter count and MACs against the PyTorch fixture, a whole-network
// gradient check, evaluation mode), SGD against hand-computed updates, the LR schedules, and
// a short training run that must learn.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <spruce/core/error.hpp>
#include <spruce/spruce.hpp>

#include "support/fixtures.hpp"
#include "gradient_check.hpp"
#include "train/layers.hpp"
#include "train/lr_schedule.hpp"
#include "train/model.hpp"
#include "train/optim.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fx = spruce_test;

namespace {

std::vector<std::size_t> shape_of(const spruce::named_tensor<float>& t) {
  return {t.view.shape().begin(), t.view.shape().end()};
}

}  // namespace

TEST_CASE("VGG shapes, parameter count and MACs equal the PyTorch fixture") {
  const auto j = fx::load_fixture("vgg_metrics.json");
  REQUIRE(j["cases"].size() >= 4);
  for (const auto& c : j["cases"]) {
    const train::vgg_config cfg{c["width"].get<double>(), c["in_channels"].get<std::size_t>(), 10};
    const std::size_t hw = c["input_hw"].get<std::size_t>();
    CAPTURE(cfg.width);
    CAPTURE(cfg.in_channels);
    train::vgg model(cfg);
    const auto params = model.parameters();
    const auto& layers = c["layers"];
    REQUIRE(params.size() == layers.size());
    std::size_t total = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      CAPTURE(params[i].name);
      CHECK(shape_of(params[i]) == fx::shape(layers[i]["shape"]));
      total += params[i].view.size();
    }
    CHECK(total == c["num_parameters"].get<std::size_t>());
    CHECK(model.num_parameters() == c["num_parameters"].get<std::size_t>());
    CHECK(model.macs(hw, hw) == c["macs"].get<std::uint64_t>());
  }
}

TEST_CASE("VGG names its parameters, gradients and buffers like the lab's modules") {
  train::vgg model(train::vgg_config{0.125, 1, 10});
  const auto params = model.parameters();
  const auto grads = model.gradients();
  const auto bufs = model.buffers();
  REQUIRE(params.size() == 26);
  REQUIRE(grads.size() == 26);
  REQUIRE(bufs.size() == 16);
  CHECK(params[0].name == "backbone.conv0.weight");
  CHECK(params[1].name == "backbone.bn0.weight");
  CHECK(params[2].name == "backbone.bn0.bias");
  CHECK(params[21].name == "backbone.conv7.weight");
  CHECK(params[23].name == "backbone.bn7.bias");
  CHECK(params[24].name == "classifier.weight");
  CHECK(params[25].name == "classifier.bias");
  CHECK(bufs[0].name == "backbone.bn0.running_mean");
  CHECK(bufs[15].name == "backbone.bn7.running_var");
  for (std::size_t i = 0; i < params.size(); ++i) {
    CHECK(grads[i].name == params[i].name);
    CHECK(grads[i].view.same_shape(params[i].view));
    CHECK(grads[i].view.data() != params[i].view.data());
  }
  CHECK(model.channels() == std::vector<std::size_t>{8, 16, 32, 32, 64, 64, 64, 64});
  // The views are the model's storage: writing through one changes what forward computes.
  std::vector<float> img(2 * 28 * 28, 0.5f);
  for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<float>(i % 7) / 7;
  const auto& first = model.forward(img, 2, 28, 28);
  const std::vector<float> before(first.values().begin(), first.values().end());
  params[25].view.data()[3] += 1.0f;
  const auto& after = model.forward(img, 2, 28, 28);
  CHECK(after[3] == doctest::Approx(before[3] + 1.0f));
  CHECK(after[2] == doctest::Approx(before[2]));
}

TEST_CASE("VGG gradients match central differences through the whole network (double)") {
  // Width 1/64: channels 1, 2, 4, 4, 8, 8, 8, 8 on 16 x 16 inputs (down to 1 x 1).
  train::basic_vgg<double> model(train::vgg_config{1.0 / 64, 1, 3}, 7);
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto& p : model.parameters())  // BN affine away from its 1 / 0 start, to exercise it
    if (p.view.rank() == 1)
      for (std::size_t i = 0; i < p.view.size(); ++i) p.view.data()[i] += 0.3 * u(rng);
  const std::size_t n = 3;
  std::vector<double> images(n * 16 * 16);
  for (double& v : images) v = u(rng);
  const std::int32_t labels[] = {0, 2, 1};

  // Every element of the small tensors, about 150 spread over each large one.
  test_support::check_gradients_by_central_differences(model, images, n, 16, 16, labels, 150, false);
}

namespace {

// Largest |a - b| over the largest |b| (or 1 when that is below 1).
template <class A, class B>
double relative_gap(const A* a, const B* b, std::size_t size) {
  double gap = 0, scale = 1;
  for (std::size_t i = 0; i < size; ++i) {
    gap = std::max(gap, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return gap / scale;
}

}  // namespace

TEST_CASE("the float VGG (channels-last fast path) equals the double VGG (the layer classes)") {
  // The float model runs its own NHWC kernels; the double model runs the gradient-checked
  // layer classes. Same weights, same images: logits, every gradient and the running
  // statistics agree within float rounding, in training and in evaluation, over two steps
  // (the second reuses the first's buffers). Width 0.1 gives channel counts that are not
  // multiples of 8 (6, 13, 26, 51); 19 x 17 maps make every pool drop a row or a column.
  // The last case is a pruned cfg given as an explicit channel list (what channel pruning
  // and slimming rebuild): six convs, so three pools, and uneven widths.
  struct setup {
    double width;
    std::size_t in_channels, classes, n, h, w;
    std::vector<std::size_t> channels = {};
  };
  for (const setup& c : {setup{0.125, 1, 10, 5, 28, 28}, setup{0.1, 3, 7, 3, 19, 17},
                         setup{0.25, 2, 4, 2, 16, 16}, setup{0.125, 1, 10, 1, 32, 20},
                         setup{0, 1, 10, 3, 28, 28, {6, 11, 3, 22, 1, 45}}}) {
    CAPTURE(c.width);
    CAPTURE(c.h);
    CAPTURE(c.channels.size());
    train::vgg f(train::vgg_config{c.width, c.in_channels, c.classes, c.channels}, 11);
    train::basic_vgg<double> d(train::vgg_config{c.width, c.in_channels, c.classes, c.channels}, 11);
    if (!c.channels.empty()) {
      CHECK(f.channels() == c.channels);
      CHECK(f.parameters().size() == 3 * c.channels.size() + 2);
    }
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> u(-1, 1);
    {
      auto fp = f.parameters();
      auto dp = d.parameters();
      for (std::size_t t = 0; t < fp.size(); ++t)
        for (std::size_t i = 0; i < fp[t].view.size(); ++i) {
          if (fp[t].view.rank() == 1) fp[t].view.data()[i] += static_cast<float>(0.3 * u(rng));
          dp[t].view.data()[i] = fp[t].view.data()[i];
        }
    }
    const std::size_t count = c.n * c.in_channels * c.h * c.w;
    for (int step = 0; step < 2; ++step) {
      CAPTURE(step);
      std::vector<float> img(count);
      for (float& v : img) v = static_cast<float>(u(rng));
      const std::vector<double> imgd(img.begin(), img.end());
      const auto& lf = f.forward(img, c.n, c.h, c.w);
      const auto& ld = d.forward(imgd, c.n, c.h, c.w);
      REQUIRE(lf.shape() == ld.shape());
      CHECK(relative_gap(lf.data(), ld.data(), lf.size()) < 2e-5);
      train::tensor<float> gf(c.n, c.classes);
      train::tensor<double> gd(c.n, c.classes);
      for (std::size_t i = 0; i < gf.size(); ++i) gd[i] = gf[i] = static_cast<float>(u(rng));
      f.backward(gf);
      d.backward(gd);
      const auto a = f.gradients();
      const auto b = d.gradients();
      for (std::size_t t = 0; t < a.size(); ++t) {
        CAPTURE(a[t].name);
        CHECK(relative_gap(a[t].view.data(), b[t].view.data(), a[t].view.size()) < 1e-4);
      }
      const auto ba = f.buffers();
      const auto bb = d.buffers();
      for (std::size_t t = 0; t < ba.size(); ++t) {
        CAPTURE(ba[t].name);
        CHECK(relative_gap(ba[t].view.data(), bb[t].view.data(), ba[t].view.size()) < 1e-5);
      }
    }
    f.eval();
    d.eval();
    std::vector<float> img(count);
    for (float& v : img) v = static_cast<float>(u(rng));
    const std::vector<double> imgd(img.begin(), img.end());
    const auto& lf = f.forward(img, c.n, c.h, c.w);
    const auto& ld = d.forward(imgd, c.n, c.h, c.w);
    CHECK(relative_gap(lf.data(), ld.data(), lf.size()) < 2e-5);
    // Backward after an evaluation forward differentiates the affine (running-statistics) BN.
    train::tensor<float> gf(c.n, c.classes);
    train::tensor<double> gd(c.n, c.classes);
    for (std::size_t i = 0; i < gf.size(); ++i) gd[i] = gf[i] = static_cast<float>(u(rng));
    f.backward(gf);
    d.backward(gd);
    const auto a = f.gradients();
    const auto b = d.gradients();
    for (std::size_t t = 0; t < a.size(); ++t) {
      CAPTURE(a[t].name);
      CHECK(relative_gap(a[t].view.data(), b[t].view.data(), a[t].view.size()) < 1e-4);
    }
  }
}

TEST_CASE("the float VGG's gradients do not depend on the thread count, and copies keep state") {
#ifdef _OPENMP
  const int keep = omp_get_max_threads();
#endif
  const auto run = [](int threads) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    train::vgg model(train::vgg_config{0.125, 1, 10}, 3);
    std::vector<float> img(24 * 28 * 28);
    std::mt19937_64 rng(9);
    std::uniform_real_distribution<float> u(-1, 1);
    for (float& v : img) v = u(rng);
    std::vector<std::int32_t> labels(24);
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int32_t>(i % 10);
    train::softmax_cross_entropy<float> ce;
    ce.forward(model.forward(img, 24, 28, 28), labels);
    train::tensor<float> g;
    ce.backward(g);
    train::vgg copy = model;  // the copy carries the forward's activations
    copy.backward(g);
    model.backward(g);
    std::vector<float> out;
    for (auto& t : model.gradients()) out.insert(out.end(), t.view.data(), t.view.data() + t.view.size());
    std::vector<float> from_copy;
    for (auto& t : copy.gradients())
      from_copy.insert(from_copy.end(), t.view.data(), t.view.data() + t.view.size());
    CHECK(out == from_copy);
    return out;
  };
  const auto one = run(1);
  const auto two = run(2);
#ifdef _OPENMP
  omp_set_num_threads(keep);
#endif
  CHECK(one == two);
}

TEST_CASE("the float VGG passes NaN through like the layer classes") {
  train::vgg f(train::vgg_config{0.125, 1, 10}, 2);
  train::basic_vgg<double> d(train::vgg_config{0.125, 1, 10}, 2);
  auto fp = f.parameters();
  auto dp = d.parameters();
  for (std::size_t t = 0; t < fp.size(); ++t)
    for (std::size_t i = 0; i < fp[t].view.size(); ++i) dp[t].view.data()[i] = fp[t].view.data()[i];
  f.eval();
  d.eval();
  std::vector<float> img(2 * 28 * 28, 0.5f);
  img[3 * 28 + 5] = std::numeric_limits<float>::quiet_NaN();  // image 0 only
  const std::vector<double> imgd(img.begin(), img.end());
  const auto& lf = f.forward(img, 2, 28, 28);
  const auto& ld = d.forward(imgd, 2, 28, 28);
  for (std::size_t k = 0; k < 10; ++k) {
    CHECK(std::isnan(lf[k]) == std::isnan(ld[k]));
    CHECK(lf[10 + k] == doctest::Approx(ld[10 + k]).epsilon(1e-4));
  }
  CHECK(std::isnan(lf[0]));
}

TEST_CASE("VGG evaluation mode uses the running statistics") {
  train::vgg model(train::vgg_config{0.0625, 1, 10}, 1);
  std::vector<float> img(4 * 16 * 16);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(0, 1);
  for (float& v : img) v = u(rng);
  const auto& trained = model.forward(img, 4, 16, 16);
  const std::vector<float> train_out(trained.values().begin(), trained.values().end());
  const auto bufs = model.buffers();
  const float mean0 = bufs[0].view.data()[0];
  CHECK(mean0 != 0.0f);  // the training forward moved it
  model.eval();
  CHECK_FALSE(model.training());
  const auto& evaluated = model.forward(img, 4, 16, 16);
  const std::vector<float> a(evaluated.values().begin(), evaluated.values().end());
  CHECK(bufs[0].view.data()[0] == mean0);  // evaluation leaves the statistics alone
  // Per-sample in evaluation: the first image alone gives the same logits.
  const auto& single = model.forward(std::span<const float>(img.data(), 16 * 16), 1, 16, 16);
  for (std::size_t k = 0; k < 10; ++k) CHECK(single[k] == doctest::Approx(a[k]).epsilon(1e-5));
  bool differs = false;
  for (std::size_t i = 0; i < a.size(); ++i) differs |= std::abs(a[i] - train_out[i]) > 1e-4f;
  CHECK(differs);
}

TEST_CASE("VGG refuses bad input with spruce::error") {
  train::vgg model(train::vgg_config{0.125, 1, 10});
  std::vector<float> img(2 * 3 * 28 * 28);
  CHECK_THROWS_AS(model.forward(img, 2, 28, 28), spruce::error);  // 3 channels' worth of values
  train::tensor<float> rgb(2, 3, 28, 28);
  CHECK_THROWS_AS(model.forward(rgb), spruce::error);
  train::tensor<float> small(2, 1, 8, 8);
  CHECK_THROWS_AS(model.forward(small), spruce::error);
  CHECK_THROWS_AS(model.forward(std::span<const float>(), 0, 28, 28), spruce::error);
  train::tensor<float> dlogits(2, 10);
  CHECK_THROWS_AS(model.backward(dlogits), spruce::error);  // no forward yet
  try {
    model.forward(small);
  } catch (const spruce::error& e) {
    CHECK(std::string(e.what()).find("16 x 16") != std::string::npos);
  }
  CHECK_THROWS_AS(train::vgg(train::vgg_config{0.001, 1, 10}), spruce::error);
  CHECK_THROWS_AS(train::vgg(train::vgg_config{0.125, 0, 10}), spruce::error);
  CHECK_THROWS_AS(train::vgg(train::vgg_config{-1, 1, 10}), spruce::error);
  // An explicit channel list: an odd count (the pools come in pairs), a zero width, none.
  CHECK_THROWS_AS(train::vgg(train::vgg_config{0, 1, 10, {8, 8, 8}}), spruce::error);
  CHECK_THROWS_AS(train::vgg(train::vgg_config{0, 1, 10, {8, 0}}), spruce::error);
  CHECK(train::vgg(train::vgg_config{0.5, 1, 10, {3, 5}}).channels() == std::vector<std::size_t>{3, 5});
  {
    train::vgg two(train::vgg_config{0, 1, 10, {3, 5}});  // one pool: 2 x 2 is the least
    const std::vector<float> tiny(4, 0.5f);
    const auto& logits = two.forward(tiny, 1, 2, 2);
    CHECK(logits.n() == 1);
    CHECK(logits.size() == 10);
    CHECK_THROWS_AS(two.forward(std::vector<float>(1, 0.5f), 1, 1, 1), spruce::error);
  }
}

TEST_CASE("SGD follows PyTorch's update rule (momentum, dampening, Nesterov, weight decay)") {
  struct setting {
    double momentum, dampening, weight_decay;
    bool nesterov, decay_vectors;
  };
  const setting settings[] = {{0, 0, 0, false, true},     {0.9, 0, 0, false, true},
                              {0.9, 0, 0.01, true, true}, {0.8, 0.3, 0.05, false, true},
                              {0.9, 0, 0.1, true, false}, {0, 0, 0.1, false, true}};
  for (const auto& s : settings) {
    CAPTURE(s.momentum);
    CAPTURE(s.nesterov);
    CAPTURE(s.weight_decay);
    CAPTURE(s.decay_vectors);
    std::vector<double> w = {1.0, -2.0, 0.5, 3.0}, b = {0.25, -0.75};
    std::vector<double> gw(4), gb(2);
    const std::size_t w_shape[] = {2, 2}, b_shape[] = {2};
    std::vector<spruce::named_tensor<double>> params = {{"w", {w.data(), w_shape}}, {"b", {b.data(), b_shape}}};
    std::vector<spruce::named_tensor<double>> grads = {{"w", {gw.data(), w_shape}}, {"b", {gb.data(), b_shape}}};
    train::sgd_options opt;
    opt.lr = 0.1;
    opt.momentum = s.momentum;
    opt.dampening = s.dampening;
    opt.weight_decay = s.weight_decay;
    opt.nesterov = s.nesterov;
    opt.decay_vectors = s.decay_vectors;
    train::basic_sgd<double> sgd(params, grads, opt);

    // The reference, written out per element.
    std::vector<double> rw = w, rb = b, bw(4, 0), bb(2, 0);
    const auto reference_step = [&](std::vector<double>& p, const std::vector<double>& g,
                                    std::vector<double>& buf, bool decays, int step) {
      for (std::size_t i = 0; i < p.size(); ++i) {
        double d = g[i] + (decays ? s.weight_decay * p[i] : 0.0);
        if (s.momentum != 0) {
          buf[i] = step == 0 ? d : s.momentum * buf[i] + (1 - s.dampening) * d;
          d = s.nesterov ? d + s.momentum * buf[i] : buf[i];
        }
        p[i] -= 0.1 * d;
      }
    };
    for (int step = 0; step < 3; ++step) {
      for (std::size_t i = 0; i < 4; ++i) gw[i] = 0.1 * static_cast<double>(i + 1) * (step + 1) - 0.2;
      for (std::size_t i = 0; i < 2; ++i) gb[i] = 0.3 - 0.2 * static_cast<double>(i + step);
      sgd.step();
      reference_step(rw, gw, bw, true, step);
      reference_step(rb, gb, bb, s.decay_vectors, step);
      for (std::size_t i = 0; i < 4; ++i) REQUIRE(w[i] == doctest::Approx(rw[i]).epsilon(1e-14));
      for (std::size_t i = 0; i < 2; ++i) REQUIRE(b[i] == doctest::Approx(rb[i]).epsilon(1e-14));
    }
    CHECK(sgd.steps() == 3);
  }

  // One step with numbers worked by hand: momentum 0.9, Nesterov, weight decay 0.1, lr 0.5.
  // Step 1: d = 1 + 0.1 * 2 = 1.2, buf = 1.2, direction 1.2 + 0.9 * 1.2 = 2.28, p = 2 - 1.14.
  // Step 2 (grad 1): d = 1 + 0.1 * 0.86 = 1.086, buf = 0.9 * 1.2 + 1.086 = 2.166,
  // direction = 1.086 + 0.9 * 2.166 = 3.0354, p = 0.86 - 1.5177 = -0.6577.
  std::vector<double> p = {2.0}, g = {1.0};
  const std::size_t one[] = {1, 1};
  train::basic_sgd<double> sgd({{"p", {p.data(), one}}}, {{"p", {g.data(), one}}},
                               train::sgd_options{0.5, 0.9, 0, 0.1, true, true});
  sgd.step();
  CHECK(p[0] == doctest::Approx(0.86).epsilon(1e-14));
  sgd.step();
  CHECK(p[0] == doctest::Approx(-0.6577).epsilon(1e-13));
}

TEST_CASE("SGD hooks run after every step and pruning masks stay applied") {
  train::vgg model(train::vgg_config{0.125, 1, 10}, 2);
  auto params = model.parameters();
  auto masks = spruce::fine_grained_prune(params, {{"backbone.conv3.weight", 0.6}});
  train::sgd_options opt;
  opt.lr = 0.05;
  opt.momentum = 0.9;
  train::sgd sgd(params, model.gradients(), opt);
  std::vector<std::size_t> seen;
  sgd.add_hook([&](std::size_t step) { seen.push_back(step); });
  sgd.add_hook([&](std::size_t) { masks.apply(); });
  std::vector<float> img(8 * 28 * 28);
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> u(0, 1);
  for (float& v : img) v = u(rng);
  const std::int32_t labels[] = {0, 1, 2, 3, 4, 5, 6, 7};
  train::softmax_cross_entropy<float> ce;
  train::tensor<float> dlogits;
  for (int i = 0; i < 2; ++i) {
    ce.forward(model.forward(img, 8, 28, 28), labels);
    ce.backward(dlogits);
    model.backward(dlogits);
    sgd.step();
  }
  CHECK(seen == std::vector<std::size_t>{1, 2});
  const auto& conv3 = params[9];
  REQUIRE(conv3.name == "backbone.conv3.weight");
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < conv3.view.size(); ++i) zeros += conv3.view.data()[i] == 0.0f;
  CHECK(zeros == masks.at("backbone.conv3.weight").count_pruned());
  CHECK(zeros > conv3.view.size() / 2);
}

TEST_CASE("SGD refuses mismatched lists and bad options") {
  std::vector<float> a(4), ga(4), b(2);
  const std::size_t s4[] = {4}, s2[] = {2};
  using list = std::vector<spruce::named_tensor<float>>;
  const list params = {{"a", {a.data(), s4}}};
  CHECK_THROWS_AS(train::sgd(params, list{}, {}), spruce::error);
  CHECK_THROWS_AS(train::sgd(params, list{{"x", {ga.data(), s4}}}, {}), spruce::error);
  CHECK_THROWS_AS(train::sgd(params, list{{"a", {b.data(), s2}}}, {}), spruce::error);
  train::sgd_options nesterov_alone;
  nesterov_alone.nesterov = true;
  CHECK_THROWS_AS(train::sgd(params, list{{"a", {ga.data(), s4}}}, nesterov_alone), spruce::error);
  train::sgd_options negative;
  negative.lr = -1;
  CHECK_THROWS_AS(train::sgd(params, list{{"a", {ga.data(), s4}}}, negative), spruce::error);
  train::sgd ok(params, list{{"a", {ga.data(), s4}}}, {});
  CHECK_THROWS_AS(ok.set_lr(-0.1), spruce::error);
  CHECK(ok.lr() == 0.1);
}

TEST_CASE("LR schedules: values at known steps, composition") {
  using namespace train;
  const auto c = lr::cosine(0.1, 0.0, 100);
  CHECK(c(0) == doctest::Approx(0.1));
  CHECK(c(50) == doctest::Approx(0.05));
  CHECK(c(25) == doctest::Approx(0.05 * (1 + std::cos(std::numbers::pi / 4))));
  CHECK(c(100) == doctest::Approx(0.0));
  CHECK(c(500) == doctest::Approx(0.0));

  const auto w = lr::linear(0.01, 0.1, 10);
  CHECK(w(0) == doctest::Approx(0.01));
  CHECK(w(5) == doctest::Approx(0.055));
  CHECK(w(10) == doctest::Approx(0.1));
  CHECK(w(11) == doctest::Approx(0.1));

  const auto wc = lr::warmup_cosine(0.2, 10, 110, 0.1, 0.0);
  CHECK(wc(0) == doctest::Approx(0.02));
  CHECK(wc(5) == doctest::Approx(0.11));
  CHECK(wc(10) == doctest::Approx(0.2));
  CHECK(wc(60) == doctest::Approx(0.1));
  CHECK(wc(110) == doctest::Approx(0.0));

  const auto seq = lr::then(lr::constant(1.0), 3, lr::linear(0.5, 0.0, 5));
  CHECK(seq(2) == 1.0);
  CHECK(seq(3) == doctest::Approx(0.5));
  CHECK(seq(8) == doctest::Approx(0.0));

  // OneCycleLR(max_lr=0.1, total_steps=100): peak at step 29 (0.3 * 100 - 1), end at 99.
  const auto oc = lr::one_cycle(0.1, 100);
  CHECK(oc(0) == doctest::Approx(0.004));
  CHECK(oc(29) == doctest::Approx(0.1));
  CHECK(oc(14) == doctest::Approx(0.004 + (0.1 - 0.004) * (1 - std::cos(std::numbers::pi * 14 / 29)) / 2));
  CHECK(oc(64) == doctest::Approx(4e-7 + (0.1 - 4e-7) * (1 + std::cos(std::numbers::pi * 35 / 70)) / 2));
  CHECK(oc(99) == doctest::Approx(4e-7));
  CHECK(oc(150) == doctest::Approx(4e-7));

  CHECK_THROWS_AS(lr::cosine(0.1, 0, 0), spruce::error);
  CHECK_THROWS_AS(lr::linear(-0.1, 0, 5), spruce::error);
  CHECK_THROWS_AS(lr::warmup_cosine(0.1, 10, 10), spruce::error);
  CHECK_THROWS_AS(lr::one_cycle(0.1, 2), spruce::error);
  CHECK_THROWS_AS(lr::one_cycle(0.1, 100, 1.0), spruce::error);
  CHECK_THROWS_AS(lr::then(lr_schedule{}, 1, lr::constant(1)), spruce::error);
}

TEST_CASE("a few dozen SGD steps on a separable toy set drive the loss down") {
  // Two classes of 16 x 16 images: a bright top half or a bright bottom half, plus noise.
  const std::size_t n = 16, hw = 16;
  std::vector<float> images(n * hw * hw);
  std::vector<std::int32_t> labels(n);
  std::mt19937_64 rng(11);
  std::normal_distribution<float> noise(0, 0.3f);
  for (std::size_t i = 0; i < n; ++i) {
    labels[i] = static_cast<std::int32_t>(i % 2);
    for (std::size_t y = 0; y < hw; ++y)
      for (std::size_t x = 0; x < hw; ++x)
        images[(i * hw + y) * hw + x] = ((y < hw / 2) == (labels[i] == 0) ? 1.0f : 0.0f) + noise(rng);
  }
  train::vgg model(train::vgg_config{1.0 / 32, 1, 2}, 4);
  train::sgd_options opt;
  opt.lr = 0.05;
  opt.momentum = 0.9;
  opt.weight_decay = 5e-4;
  opt.nesterov = true;
  train::sgd sgd(model.parameters(), model.gradients(), opt);
  train::softmax_cross_entropy<float> ce;
  train::tensor<float> dlogits;
  const auto eval_loss = [&] {
    model.eval();
    const double l = ce.forward(model.forward(images, n, hw, hw), labels);
    model.train();
    return l;
  };
  const double initial = ce.forward(model.forward(images, n, hw, hw), labels);
  for (int step = 0; step < 20; ++step) {
    ce.forward(model.forward(images, n, hw, hw), labels);
    ce.backward(dlogits);
    model.backward(dlogits);
    sgd.step();
  }
  const double final_train = ce.forward(model.forward(images, n, hw, hw), labels);
  CAPTURE(initial);
  CAPTURE(final_train);
  CHECK(final_train < 0.25 * initial);
  CHECK(ce.correct() == n);
  CHECK(eval_loss() < initial);
}
