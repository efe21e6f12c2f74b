// The training library's layers: forward passes against direct definitions, backward passes
// against central finite differences in double, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <spruce/core/error.hpp>

#include "gradient_check.hpp"
#include "train/layers.hpp"
#include "train/tensor.hpp"

using train::tensor;

namespace {

std::mt19937_64& rng() {
  static std::mt19937_64 r(20240611);
  return r;
}

/// Uniform values in [-1, 1], kept at least `gap` away from 0 (so that ReLU kinks are out
/// of a finite difference's reach).
void fill(std::span<double> v, double gap = 0) {
  std::uniform_real_distribution<double> u(-1, 1);
  for (double& x : v) {
    do x = u(rng());
    while (std::abs(x) < gap);
  }
}

tensor<double> random_tensor(std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                             double gap = 0) {
  tensor<double> t(n, c, h, w);
  fill(t.values(), gap);
  return t;
}

/// sum(y * r): a scalar whose gradient with respect to y is r, so that one backward pass with
/// dy = r gives the gradient of every input and parameter.
double weighted_sum(const tensor<double>& y, const tensor<double>& r) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

/// Norm-wise relative error between the analytic gradient and central differences of
/// `loss` over every element of `values`: ||a - n|| / max(||a|| + ||n||, tiny).
double gradient_error(std::span<double> values, std::span<const double> analytic,
                      const std::function<double()>& loss, double h = 1e-6) {
  REQUIRE(values.size() == analytic.size());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double numeric = test_support::central_difference(values[i], loss, h);
    diff += (numeric - analytic[i]) * (numeric - analytic[i]);
    norm += numeric * numeric + analytic[i] * analytic[i];
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

/// Direct definition of a convolution, for comparison with im2col + GEMM.
tensor<double> direct_conv(const tensor<double>& x, std::span<const double> w,
                           std::span<const double> b, std::size_t co, std::size_t k,
                           std::size_t s, std::size_t p) {
  const std::size_t ho = (x.h() + 2 * p - k) / s + 1, wo = (x.w() + 2 * p - k) / s + 1;
  tensor<double> y(x.n(), co, ho, wo);
  for (std::size_t n = 0; n < x.n(); ++n)
    for (std::size_t o = 0; o < co; ++o)
      for (std::size_t oy = 0; oy < ho; ++oy)
        for (std::size_t ox = 0; ox < wo; ++ox) {
          double acc = b.empty() ? 0 : b[o];
          for (std::size_t c = 0; c < x.c(); ++c)
            for (std::size_t ki = 0; ki < k; ++ki)
              for (std::size_t kj = 0; kj < k; ++kj) {
                const long iy = static_cast<long>(oy * s + ki) - static_cast<long>(p);
                const long ix = static_cast<long>(ox * s + kj) - static_cast<long>(p);
                if (iy < 0 || ix < 0 || iy >= static_cast<long>(x.h()) ||
                    ix >= static_cast<long>(x.w()))
                  continue;
                acc += w[((o * x.c() + c) * k + ki) * k + kj] *
                       x.at(n, c, static_cast<std::size_t>(iy), static_cast<std::size_t>(ix));
              }
          y.at(n, o, oy, ox) = acc;
        }
  return y;
}

struct conv_case {
  std::size_t n, c, h, w, co, k, s, p;
  bool bias;
};

std::string label(const conv_case& cc) {
  return std::string("n ")
      .append(std::to_string(cc.n))
      .append(" c ")
      .append(std::to_string(cc.c))
      .append(" ")
      .append(std::to_string(cc.h))
      .append("x")
      .append(std::to_string(cc.w))
      .append(" -> ")
      .append(std::to_string(cc.co))
      .append(" k ")
      .append(std::to_string(cc.k))
      .append(" stride ")
      .append(std::to_string(cc.s))
      .append(" pad ")
      .append(std::to_string(cc.p))
      .append(cc.bias ? " bias" : "");
}

// Stride 1 and 2, padding 0 to 2, with and without bias; the 3x3 and 2x2 maps make the
// layer batch several images per GEMM, the large ones one image per GEMM.
const conv_case conv_cases[] = {
    {2, 3, 7, 6, 4, 3, 1, 1, true},  {2, 3, 7, 6, 4, 3, 2, 1, false}, {3, 2, 8, 7, 3, 3, 2, 0, true},
    {1, 2, 5, 5, 2, 3, 1, 2, false}, {5, 3, 3, 3, 4, 3, 1, 1, true},  {7, 2, 2, 2, 3, 3, 1, 1, false},
    {2, 4, 6, 6, 3, 1, 1, 0, true},  {2, 1, 20, 20, 2, 3, 1, 1, false}};

}  // namespace

TEST_CASE("conv2d forward equals the direct definition of a convolution") {
  for (const auto& cc : conv_cases) {
    CAPTURE(label(cc));
    train::conv2d<double> conv(cc.c, cc.co, cc.k, cc.s, cc.p, cc.bias);
    fill(conv.weight());
    fill(conv.bias());
    const auto x = random_tensor(cc.n, cc.c, cc.h, cc.w);
    tensor<double> y;
    conv.forward(x, y);
    const auto want = direct_conv(x, conv.weight(), conv.bias(), cc.co, cc.k, cc.s, cc.p);
    REQUIRE(y.shape() == want.shape());
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == doctest::Approx(want[i]).epsilon(1e-12));
  }
}

TEST_CASE("conv2d float forward agrees with double") {
  const conv_case cc{3, 4, 9, 9, 5, 3, 1, 1, true};
  train::conv2d<double> cd(cc.c, cc.co, cc.k, cc.s, cc.p, true);
  train::conv2d<float> cf(cc.c, cc.co, cc.k, cc.s, cc.p, true);
  fill(cd.weight());
  fill(cd.bias());
  for (std::size_t i = 0; i < cd.weight().size(); ++i) cf.weight()[i] = static_cast<float>(cd.weight()[i]);
  for (std::size_t i = 0; i < cd.bias().size(); ++i) cf.bias()[i] = static_cast<float>(cd.bias()[i]);
  const auto xd = random_tensor(cc.n, cc.c, cc.h, cc.w);
  tensor<float> xf(cc.n, cc.c, cc.h, cc.w);
  for (std::size_t i = 0; i < xd.size(); ++i) xf[i] = static_cast<float>(xd[i]);
  tensor<double> yd;
  tensor<float> yf;
  cd.forward(xd, yd);
  cf.forward(xf, yf);
  for (std::size_t i = 0; i < yd.size(); ++i) REQUIRE(yf[i] == doctest::Approx(yd[i]).epsilon(1e-4));
}

TEST_CASE("conv2d gradients match central differences (weight, bias, input)") {
  for (const auto& cc : conv_cases) {
    CAPTURE(label(cc));
    train::conv2d<double> conv(cc.c, cc.co, cc.k, cc.s, cc.p, cc.bias);
    fill(conv.weight());
    fill(conv.bias());
    auto x = random_tensor(cc.n, cc.c, cc.h, cc.w);
    tensor<double> y, dx;
    conv.forward(x, y);
    const auto r = random_tensor(y.n(), y.c(), y.h(), y.w());
    conv.backward(x, r, &dx);
    const std::vector<double> dw(conv.weight_grad().begin(), conv.weight_grad().end());
    const std::vector<double> db(conv.bias_grad().begin(), conv.bias_grad().end());
    const auto loss = [&] {
      tensor<double> out;
      conv.forward(x, out);
      return weighted_sum(out, r);
    };
    CHECK(gradient_error(conv.weight(), dw, loss) < 1e-7);
    if (cc.bias) CHECK(gradient_error(conv.bias(), db, loss) < 1e-7);
    CHECK(gradient_error(x.values(), dx.values(), loss) < 1e-7);

    // Without an input gradient the parameter gradients are the same.
    conv.backward(x, r, nullptr);
    for (std::size_t i = 0; i < dw.size(); ++i) REQUIRE(conv.weight_grad()[i] == doctest::Approx(dw[i]));
  }
}

TEST_CASE("batchnorm2d training: normalised output, PyTorch's running statistics") {
  train::batchnorm2d<double> bn(3);
  fill(bn.weight());
  fill(bn.bias());
  auto x = random_tensor(4, 3, 3, 2);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 2 * x[i] + 0.5;  // mean and scale off 0 / 1
  tensor<double> y;
  bn.forward(x, y, true);
  const double m = 4 * 3 * 2;
  for (std::size_t c = 0; c < 3; ++c) {
    double mean = 0, ymean = 0;
    for (std::size_t n = 0; n < 4; ++n)
      for (std::size_t i = 0; i < 6; ++i) {
        mean += x[(n * 3 + c) * 6 + i] / m;
        ymean += y[(n * 3 + c) * 6 + i] / m;
      }
    double var = 0, yvar = 0;
    for (std::size_t n = 0; n < 4; ++n)
      for (std::size_t i = 0; i < 6; ++i) {
        var += std::pow(x[(n * 3 + c) * 6 + i] - mean, 2) / m;
        yvar += std::pow(y[(n * 3 + c) * 6 + i] - ymean, 2) / m;
      }
    CHECK(ymean == doctest::Approx(bn.bias()[c]).epsilon(1e-12));
    CHECK(yvar == doctest::Approx(bn.weight()[c] * bn.weight()[c] * var / (var + 1e-5)).epsilon(1e-10));
    CHECK(bn.running_mean()[c] == doctest::Approx(0.1 * mean).epsilon(1e-12));
    CHECK(bn.running_var()[c] == doctest::Approx(0.9 + 0.1 * var * m / (m - 1)).epsilon(1e-12));
  }
}

TEST_CASE("batchnorm2d gradients match central differences in training and evaluation") {
  for (const bool fused : {false, true})
  for (const bool training : {true, false}) {
    CAPTURE(training);
    CAPTURE(fused);
    train::batchnorm2d<double> bn(3, fused);
    fill(bn.weight());
    fill(bn.bias());
    for (std::size_t c = 0; c < 3; ++c) {
      bn.running_mean()[c] = 0.1 * static_cast<double>(c);
      bn.running_var()[c] = 0.5 + static_cast<double>(c);
    }
    auto x = random_tensor(3, 3, 4, 3);
    tensor<double> y, dx;
    bn.forward(x, y, training);
    const auto r = random_tensor(3, 3, 4, 3);
    bn.backward(x, r, &dx);
    const std::vector<double> dw(bn.weight_grad().begin(), bn.weight_grad().end());
    const std::vector<double> db(bn.bias_grad().begin(), bn.bias_grad().end());
    const auto loss = [&] {
      train::batchnorm2d<double> probe = bn;  // forward in training mode moves the running stats
      tensor<double> out;
      probe.forward(x, out, training);
      return weighted_sum(out, r);
    };
    CHECK(gradient_error(x.values(), dx.values(), loss) < 1e-7);
    CHECK(gradient_error(bn.weight(), dw, loss) < 1e-7);
    CHECK(gradient_error(bn.bias(), db, loss) < 1e-7);

    // In place (dx = dy) gives the same input gradient.
    tensor<double> g = r;
    bn.backward(x, g, &g);
    for (std::size_t i = 0; i < g.size(); ++i) REQUIRE(g[i] == doctest::Approx(dx[i]).epsilon(1e-12));
  }
}

TEST_CASE("batchnorm2d with the fused ReLU equals batchnorm2d then relu") {
  for (const bool training : {true, false}) {
    CAPTURE(training);
    train::batchnorm2d<double> plain(4), fused(4, true);
    CHECK(fused.fused_relu());
    fill(plain.weight());
    fill(plain.bias());
    for (std::size_t c = 0; c < 4; ++c) {
      fused.weight()[c] = plain.weight()[c];
      fused.bias()[c] = plain.bias()[c];
    }
    const auto x = random_tensor(3, 4, 5, 3);
    tensor<double> y, act, yf;
    plain.forward(x, y, training);
    train::relu<double>().forward(y, act);
    fused.forward(x, yf, training);
    std::size_t zeros = 0;
    for (std::size_t i = 0; i < act.size(); ++i) {
      REQUIRE(yf[i] == doctest::Approx(act[i]).epsilon(1e-14));
      zeros += act[i] == 0;
    }
    CHECK(zeros > 0);
    CHECK(zeros < act.size());
    const auto r = random_tensor(3, 4, 5, 3);
    tensor<double> dact, dx, dxf;
    train::relu<double>().backward(y, r, dact);
    plain.backward(x, dact, &dx);
    fused.backward(x, r, &dxf);
    for (std::size_t i = 0; i < dx.size(); ++i) REQUIRE(dxf[i] == doctest::Approx(dx[i]).epsilon(1e-12));
    for (std::size_t c = 0; c < 4; ++c) {
      CHECK(fused.weight_grad()[c] == doctest::Approx(plain.weight_grad()[c]).epsilon(1e-12));
      CHECK(fused.bias_grad()[c] == doctest::Approx(plain.bias_grad()[c]).epsilon(1e-12));
    }
  }
}

TEST_CASE("batchnorm2d evaluation uses the running statistics and leaves them alone") {
  train::batchnorm2d<double> bn(2);
  bn.weight()[0] = 2;
  bn.weight()[1] = -1;
  bn.bias()[0] = 0.5;
  bn.bias()[1] = 0;
  bn.running_mean()[0] = 1;
  bn.running_mean()[1] = -2;
  bn.running_var()[0] = 4;
  bn.running_var()[1] = 0.25;
  const auto x = random_tensor(2, 2, 2, 2);
  tensor<double> y;
  bn.forward(x, y, false);
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t c = 0; c < 2; ++c)
      for (std::size_t i = 0; i < 4; ++i) {
        const double want = (x[(n * 2 + c) * 4 + i] - bn.running_mean()[c]) /
                                std::sqrt(bn.running_var()[c] + 1e-5) * bn.weight()[c] +
                            bn.bias()[c];
        REQUIRE(y[(n * 2 + c) * 4 + i] == doctest::Approx(want).epsilon(1e-12));
      }
  CHECK(bn.running_mean()[0] == 1);
  CHECK(bn.running_var()[1] == 0.25);
  // A single value per channel is fine in evaluation, an error in training.
  const auto one = random_tensor(1, 2, 1, 1);
  CHECK_NOTHROW(bn.forward(one, y, false));
  CHECK_THROWS_AS(bn.forward(one, y, true), spruce::error);
}

TEST_CASE("relu: forward, in place, and gradient") {
  auto x = random_tensor(2, 3, 4, 5, 1e-3);
  tensor<double> y, dx;
  train::relu<double> relu;
  relu.forward(x, y);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == (x[i] > 0 ? x[i] : 0.0));
  const auto r = random_tensor(2, 3, 4, 5);
  relu.backward(x, r, dx);
  const auto loss = [&] {
    tensor<double> out;
    relu.forward(x, out);
    return weighted_sum(out, r);
  };
  CHECK(gradient_error(x.values(), dx.values(), loss) < 1e-8);
  // In place: output in the input's tensor, gradient from the output, dx in dy's tensor.
  tensor<double> inplace = x, g = r;
  relu.forward(inplace, inplace);
  relu.backward(inplace, g, g);
  for (std::size_t i = 0; i < x.size(); ++i) {
    REQUIRE(inplace[i] == y[i]);
    REQUIRE(g[i] == dx[i]);
  }
  tensor<double> nan(1, 1, 1, 1);
  nan[0] = std::numeric_limits<double>::quiet_NaN();
  relu.forward(nan, y);
  CHECK(std::isnan(y[0]));
}

TEST_CASE("max_pool2d: 2x2 windows rounded down, first maximum wins, gradient to the winner") {
  tensor<double> x(1, 1, 5, 5);
  for (std::size_t i = 0; i < 25; ++i) x[i] = static_cast<double>((i * 7) % 11);
  x.at(0, 0, 0, 0) = 20;
  x.at(0, 0, 1, 1) = 20;  // tie: (0, 0) comes first
  tensor<double> y, dx;
  train::max_pool2d<double> pool;
  pool.forward(x, y);
  REQUIRE(y.shape() == std::array<std::size_t, 4>{1, 1, 2, 2});
  for (std::size_t oy = 0; oy < 2; ++oy)
    for (std::size_t ox = 0; ox < 2; ++ox) {
      double best = -1;
      for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 2; ++j) best = std::max(best, x.at(0, 0, 2 * oy + i, 2 * ox + j));
      CHECK(y.at(0, 0, oy, ox) == best);
    }
  tensor<double> g(1, 1, 2, 2);
  g[0] = 1;
  g[1] = 2;
  g[2] = 3;
  g[3] = 4;
  pool.backward(x, g, dx);
  CHECK(dx.at(0, 0, 0, 0) == 1);
  CHECK(dx.at(0, 0, 1, 1) == 0);
  double total = 0;
  for (double v : dx.values()) total += v;
  CHECK(total == 10);
  for (std::size_t i = 0; i < 5; ++i) {  // the dropped last row and column get nothing
    CHECK(dx.at(0, 0, 4, i) == 0);
    CHECK(dx.at(0, 0, i, 4) == 0);
  }

  // Ties across rows: the top row's winner beats an equal value below it.
  tensor<double> tie(1, 1, 2, 4);
  const double tv[] = {1, 5, 3, 0, 5, 0, 2, 3};  // windows (1 5 / 5 0) and (3 0 / 2 3)
  for (std::size_t i = 0; i < 8; ++i) tie[i] = tv[i];
  tensor<double> tg(1, 1, 1, 2);
  tg[0] = 1;
  tg[1] = 2;
  pool.backward(tie, tg, dx);
  const double want_tie[] = {0, 1, 2, 0, 0, 0, 0, 0};
  for (std::size_t i = 0; i < 8; ++i) CHECK(dx[i] == want_tie[i]);

  auto xr = random_tensor(2, 3, 6, 7);
  pool.forward(xr, y);
  const auto r = random_tensor(y.n(), y.c(), y.h(), y.w());
  pool.backward(xr, r, dx);
  const auto loss = [&] {
    const train::max_pool2d<double> probe;
    tensor<double> out;
    probe.forward(xr, out);
    return weighted_sum(out, r);
  };
  CHECK(gradient_error(xr.values(), dx.values(), loss) < 1e-8);

  tensor<double> nan(1, 1, 2, 2);
  nan[0] = 1;
  nan[1] = std::numeric_limits<double>::quiet_NaN();
  nan[2] = 5;
  nan[3] = 2;
  pool.forward(nan, y);
  CHECK(std::isnan(y[0]));
}

TEST_CASE("global_avg_pool and linear: values and gradients") {
  auto x = random_tensor(3, 4, 3, 5);
  tensor<double> y, dx;
  train::global_avg_pool<double> gap;
  gap.forward(x, y);
  REQUIRE(y.shape() == std::array<std::size_t, 4>{3, 4, 1, 1});
  double first = 0;
  for (std::size_t i = 0; i < 15; ++i) first += x[i] / 15;
  CHECK(y[0] == doctest::Approx(first).epsilon(1e-14));
  const auto r = random_tensor(3, 4, 1, 1);
  gap.backward(r, dx);
  const auto gap_loss = [&] {
    train::global_avg_pool<double> probe;
    tensor<double> out;
    probe.forward(x, out);
    return weighted_sum(out, r);
  };
  CHECK(gradient_error(x.values(), dx.values(), gap_loss) < 1e-8);

  train::linear<double> fc(6, 3);
  fill(fc.weight());
  fill(fc.bias());
  auto in = random_tensor(4, 6, 1, 1);
  fc.forward(in, y);
  REQUIRE(y.shape() == std::array<std::size_t, 4>{4, 3, 1, 1});
  double y12 = fc.bias()[2];
  for (std::size_t k = 0; k < 6; ++k) y12 += in[6 + k] * fc.weight()[2 * 6 + k];
  CHECK(y[1 * 3 + 2] == doctest::Approx(y12).epsilon(1e-14));
  const auto rl = random_tensor(4, 3, 1, 1);
  fc.backward(in, rl, &dx);
  const std::vector<double> dw(fc.weight_grad().begin(), fc.weight_grad().end());
  const std::vector<double> db(fc.bias_grad().begin(), fc.bias_grad().end());
  const auto fc_loss = [&] {
    tensor<double> out;
    fc.forward(in, out);
    return weighted_sum(out, rl);
  };
  CHECK(gradient_error(in.values(), dx.values(), fc_loss) < 1e-8);
  CHECK(gradient_error(fc.weight(), dw, fc_loss) < 1e-8);
  CHECK(gradient_error(fc.bias(), db, fc_loss) < 1e-8);
  // A [N, C, H, W] input is read flattened.
  auto map = random_tensor(2, 2, 1, 3);
  CHECK_NOTHROW(fc.forward(map, y));
}

TEST_CASE("softmax cross-entropy: value, stability, gradient, accuracy count") {
  tensor<double> logits(2, 3);
  const double v[] = {1, 2, 3, 0, 0, 0};
  for (std::size_t i = 0; i < 6; ++i) logits[i] = v[i];
  const std::int32_t labels[] = {2, 1};
  train::softmax_cross_entropy<double> ce;
  const double loss = ce.forward(logits, labels);
  const double want = ((std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3) + std::log(3.0)) / 2;
  CHECK(loss == doctest::Approx(want).epsilon(1e-14));
  CHECK(ce.correct() == 1);  // row 2 ties everywhere: index 0 wins, label 1 loses

  // Shifting all logits by 1000 changes nothing (no overflow, no lost loss).
  for (double& x : logits.values()) x += 1000;
  CHECK(ce.forward(logits, labels) == doctest::Approx(want).epsilon(1e-12));

  auto z = random_tensor(5, 4, 1, 1);
  for (double& x : z.values()) x *= 3;
  const std::int32_t l5[] = {0, 3, 1, 1, 2};
  ce.forward(z, l5);
  tensor<double> dz;
  ce.backward(dz);
  const auto f = [&] {
    train::softmax_cross_entropy<double> probe;
    return probe.forward(z, l5);
  };
  CHECK(gradient_error(z.values(), dz.values(), f) < 1e-8);
}

TEST_CASE("layers refuse bad input with spruce::error and write nothing") {
  train::conv2d<double> conv(3, 4, 3, 1, 0);
  tensor<double> y(1, 1, 1, 1), dx;
  y[0] = 42;
  CHECK_THROWS_AS(conv.forward(tensor<double>(2, 2, 5, 5), y), spruce::error);  // channels
  CHECK_THROWS_AS(conv.forward(tensor<double>(2, 3, 2, 5), y), spruce::error);  // smaller than the kernel
  CHECK_THROWS_AS(conv.forward(tensor<double>(0, 3, 5, 5), y), spruce::error);  // empty batch
  CHECK(y.size() == 1);
  CHECK(y[0] == 42);
  CHECK_THROWS_AS(conv.backward(tensor<double>(2, 3, 5, 5), tensor<double>(2, 4, 2, 2), &dx), spruce::error);
  CHECK_THROWS_AS(train::conv2d<double>(0, 4, 3), spruce::error);
  CHECK_THROWS_AS(train::conv2d<double>(3, 4, 3, 0), spruce::error);
  try {
    conv.forward(tensor<double>(2, 2, 5, 5), y);
  } catch (const spruce::error& e) {
    CHECK(std::string(e.what()).find("2 channels") != std::string::npos);
  }

  train::batchnorm2d<double> bn(3);
  CHECK_THROWS_AS(bn.forward(tensor<double>(2, 2, 2, 2), y, true), spruce::error);
  CHECK_THROWS_AS(bn.forward(tensor<double>(0, 3, 2, 2), y, true), spruce::error);
  CHECK_THROWS_AS(train::batchnorm2d<double>(0), spruce::error);

  train::max_pool2d<double> pool;
  CHECK_THROWS_AS(pool.forward(tensor<double>(1, 1, 1, 4), y), spruce::error);
  CHECK_THROWS_AS(pool.backward(tensor<double>(1, 1, 4, 4), tensor<double>(1, 1, 3, 3), dx), spruce::error);

  train::linear<double> fc(6, 3);
  CHECK_THROWS_AS(fc.forward(tensor<double>(2, 5), y), spruce::error);
  CHECK_THROWS_AS(fc.forward(tensor<double>(0, 6), y), spruce::error);

  train::softmax_cross_entropy<double> ce;
  const std::int32_t bad[] = {0, 3};
  const std::int32_t neg[] = {-1, 0};
  const std::int32_t one[] = {0};
  CHECK_THROWS_AS(ce.forward(tensor<double>(2, 3), bad), spruce::error);
  CHECK_THROWS_AS(ce.forward(tensor<double>(2, 3), neg), spruce::error);
  CHECK_THROWS_AS(ce.forward(tensor<double>(2, 3), one), spruce::error);
  CHECK_THROWS_AS(ce.backward(dx), spruce::error);  // no forward yet
}
