// Wanda (|w_ij| * ||X_j||), its activation-norm accumulator, the per-output-row scope,
// Ln's p validation and the random criterion's stream, against naive references.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "spruce/spruce.hpp"

namespace {

using spruce::criterion::activation_norm_accumulator;
using spruce::criterion::activation_norms;
using spruce::criterion::inputs;
using spruce::criterion::wanda;

std::vector<float> random_vec(std::size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Scores drawn from a few values only, so rows are full of ties (and zeros, and -0).
std::vector<float> tied_vec(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  const float vals[] = {0.0f, -0.0f, 0.5f, -0.5f, 1.0f, 2.0f};
  std::vector<float> v(n);
  for (float& x : v) x = vals[rng() % 6];
  return v;
}

template <class T>
std::string error_of(T&& f) {
  try {
    f();
  } catch (const spruce::error& e) {
    return e.what();
  }
  return "no error";
}

// The naive per-row rules: `exact` prunes the `count` lowest of each row (lower index
// first among ties), `threshold` every score <= the count-th smallest.
std::vector<std::uint8_t> naive_rows(const std::vector<float>& s, std::size_t rows, double ratio,
                                     bool exact) {
  const std::size_t len = rows ? s.size() / rows : 0;
  std::vector<std::uint8_t> keep(s.size(), 1);
  for (std::size_t r = 0; r < rows; ++r) {
    const auto count = static_cast<std::size_t>(spruce::round_half_even(ratio * static_cast<double>(len)));
    if (count == 0) continue;
    std::vector<std::size_t> idx(len);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      return s[r * len + a] < s[r * len + b];
    });
    if (exact) {
      for (std::size_t k = 0; k < count; ++k) keep[r * len + idx[k]] = 0;
    } else {
      const float t = s[r * len + idx[count - 1]];
      for (std::size_t i = 0; i < len; ++i)
        if (s[r * len + i] <= t) keep[r * len + i] = 0;
    }
  }
  return keep;
}

std::vector<std::uint8_t> bytes(const spruce::mask& m) { return {m.data(), m.data() + m.size()}; }

}  // namespace

TEST_CASE("activation_norm_accumulator: linear, sequence and NCHW batches against a naive sum") {
  const std::size_t c = 7;
  activation_norm_accumulator<float> acc(c);
  CHECK(acc.norms().size() == c);
  CHECK(std::ranges::all_of(acc.norms(), [](float x) { return x == 0.0f; }));
  std::vector<double> ref(c, 0.0);

  // [tokens, in]
  const auto a = random_vec(5 * c, 1);
  acc.add(spruce::make_view(a.data(), 5, c), "fc1.in");
  for (std::size_t f = 0; f < a.size(); ++f) ref[f % c] += double(a[f]) * a[f];
  // [batch, tokens, in]
  const auto b = random_vec(2 * 3 * c, 2);
  acc.add(spruce::make_view(b.data(), 2, 3, c));
  for (std::size_t f = 0; f < b.size(); ++f) ref[f % c] += double(b[f]) * b[f];
  // A strided [tokens, in] view: every other token of a [6, in] buffer.
  const auto d = random_vec(6 * c, 3);
  const std::size_t shape[2] = {3, c}, strides[2] = {2 * c, 1};
  acc.add(spruce::tensor_ref<const float>(d.data(), shape, strides));
  for (std::size_t t = 0; t < 6; t += 2)
    for (std::size_t j = 0; j < c; ++j) ref[j] += double(d[t * c + j]) * d[t * c + j];
  CHECK(acc.batches() == 3);
  CHECK(acc.samples() == 5 + 6 + 3);
  for (std::size_t j = 0; j < c; ++j) CHECK(acc.norms()[j] == doctest::Approx(std::sqrt(ref[j])).epsilon(1e-6));

  // NCHW [batch, in, h, w]: channel = axis 1.
  activation_norm_accumulator<double> conv(3);
  std::vector<double> x(2 * 3 * 4 * 5);
  std::mt19937 rng(4);
  for (double& v : x) v = std::normal_distribution<double>(0, 1)(rng);
  conv.add(spruce::make_view(x.data(), 2, 3, 4, 5), "conv2.in");
  conv.add(spruce::make_view(x.data(), 2, 3, 4, 5), "conv2.in");
  std::vector<double> cref(3, 0.0);
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t i = 0; i < 20; ++i) cref[j] += 2 * x[(n * 3 + j) * 20 + i] * x[(n * 3 + j) * 20 + i];
  for (std::size_t j = 0; j < 3; ++j) CHECK(conv.norms()[j] == doctest::Approx(std::sqrt(cref[j])));
  CHECK(conv.samples() == 2 * 2 * 20);
  CHECK(conv.extra().norms.data() == conv.norms().data());

  // Errors name the tensor and leave the sums untouched.
  const auto before = std::vector<float>(acc.norms().begin(), acc.norms().end());
  const auto wrong = random_vec(4 * 6, 5);
  const std::string e = error_of([&] { acc.add(spruce::make_view(wrong.data(), 4, 6), "fc1.in"); });
  CHECK(e.find("'fc1.in'") != std::string::npos);
  CHECK(e.find("7 input channels") != std::string::npos);
  CHECK(error_of([&] { acc.add(spruce::make_view(wrong.data(), 24), "v"); }).find("'v'") != std::string::npos);
  CHECK(std::ranges::equal(acc.norms(), before));
  CHECK(acc.batches() == 3);
}

TEST_CASE("wanda scores |w_ij| * ||X_j|| with j = axis 1, for linear and conv weights") {
  const std::size_t out = 5, in = 6;
  const auto w = random_vec(out * in, 10);
  const auto norms = random_vec(in, 11, 0.0f, 3.0f);
  const inputs<float, activation_norms<float>> lin{.weight = spruce::make_view(w.data(), out, in), .extra = {norms}};
  const auto s = spruce::pruner<spruce::granularity::element, wanda>{}.scores(lin, "fc");
  REQUIRE(s.size() == w.size());
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t j = 0; j < in; ++j) CHECK(s[o * in + j] == std::abs(w[o * in + j]) * norms[j]);

  // Conv [out, in, kh, kw]: every kernel position of channel j shares ||X_j||.
  const auto cw = random_vec(4 * 3 * 2 * 3, 12);
  const std::vector<float> cn{0.5f, 0.0f, 2.0f};
  const inputs<float, activation_norms<float>> conv{.weight = spruce::make_view(cw.data(), 4, 3, 2, 3), .extra = {cn}};
  const auto cs = spruce::scores(spruce::granularity::element{}, wanda{}, conv, "conv");
  for (std::size_t f = 0; f < cw.size(); ++f) CHECK(cs[f] == std::abs(cw[f]) * cn[(f / 6) % 3]);
  // Coarser groups sum their elements' scores (filter: one per output channel).
  const auto fs = spruce::scores(spruce::granularity::filter{}, wanda{}, conv, "conv");
  REQUIRE(fs.size() == 4);
  for (std::size_t o = 0; o < 4; ++o) {
    float ref = 0;
    for (std::size_t i = 0; i < 18; ++i) ref += cs[o * 18 + i];
    CHECK(fs[o] == doctest::Approx(ref));
  }

  // Double weights read activation_norms<double>.
  const std::vector<double> dw{1, -2, 3, -4}, dn{0.5, 2};
  const inputs<double, activation_norms<double>> d{.weight = spruce::make_view(dw.data(), 2, 2), .extra = {dn}};
  CHECK(spruce::scores(spruce::granularity::element{}, wanda{}, d) == std::vector<double>{0.5, 4, 1.5, 8});

  // Errors name the tensor: wrong norm count, a negative or NaN norm, a vector weight.
  const std::vector<float> few{1.0f, 2.0f};
  const inputs<float, activation_norms<float>> bad{.weight = spruce::make_view(w.data(), out, in), .extra = {few}};
  const std::string e = error_of([&] { (void)spruce::scores(spruce::granularity::element{}, wanda{}, bad, "fc2"); });
  CHECK(e.find("'fc2'") != std::string::npos);
  CHECK(e.find("2 activation norms for 6 input channels") != std::string::npos);
  CHECK(error_of([&] { (void)spruce::scores(spruce::granularity::element{}, wanda{},
                                             inputs<float, activation_norms<float>>{.weight = spruce::make_view(w.data(), out, in)}, "fc3"); })
            .find("'fc3'") != std::string::npos);
  std::vector<float> nan_norms = norms;
  nan_norms[4] = std::numeric_limits<float>::quiet_NaN();
  const std::string en = error_of([&] {
    (void)spruce::scores(spruce::granularity::element{}, wanda{},
                         inputs<float, activation_norms<float>>{.weight = spruce::make_view(w.data(), out, in), .extra = {nan_norms}}, "fc4");
  });
  CHECK(en.find("'fc4'") != std::string::npos);
  CHECK(en.find("input channel 4") != std::string::npos);
  nan_norms[4] = -1.0f;
  CHECK(error_of([&] {
          (void)spruce::scores(spruce::granularity::element{}, wanda{},
                               inputs<float, activation_norms<float>>{.weight = spruce::make_view(w.data(), out, in), .extra = {nan_norms}}, "fc5");
        }).find("channel 4") != std::string::npos);
  CHECK(error_of([&] {
          (void)spruce::scores(spruce::granularity::element{}, wanda{},
                               inputs<float, activation_norms<float>>{.weight = spruce::make_view(w.data(), 6), .extra = {norms}}, "bias");
        }).find("'bias'") != std::string::npos);
}

TEST_CASE("per_row_mask: exact and threshold per row against a naive reference, ties included") {
  struct shape_case {
    std::size_t rows, cols;
  };
  for (const shape_case sc : {shape_case{1, 1}, shape_case{3, 1}, shape_case{1, 9}, shape_case{5, 7},
                              shape_case{16, 33}, shape_case{64, 1024}}) {
    for (unsigned seed = 0; seed < 3; ++seed) {
      const std::size_t n = sc.rows * sc.cols;
      const auto w = seed == 2 ? tied_vec(n, seed) : random_vec(n, seed + 100);
      const auto v = spruce::make_view(w.data(), sc.rows, sc.cols);
      std::vector<float> mag(n);
      for (std::size_t i = 0; i < n; ++i) mag[i] = std::abs(w[i]);
      for (double ratio : {0.0, 0.25, 0.5, 0.7, 1.0}) {
        CAPTURE(sc.rows);
        CAPTURE(sc.cols);
        CAPTURE(seed);
        CAPTURE(ratio);
        const auto ex = spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::exact(ratio), v, "fc");
        CHECK(bytes(ex) == naive_rows(mag, sc.rows, ratio, true));
        CHECK((ex.shape().size() == 2 && ex.shape()[0] == sc.rows && ex.shape()[1] == sc.cols));
        const auto th = spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::threshold{ratio}, v, "fc");
        CHECK(bytes(th) == naive_rows(mag, sc.rows, ratio, false));
        // The score-buffer path (L2 does not declare orders_like_magnitude) agrees: w^2
        // orders as |w|.
        CHECK(spruce::per_row_mask(spruce::criterion::l2{}, spruce::selection::exact(ratio), v, "fc") == ex);
        CHECK(spruce::per_row_mask(spruce::criterion::l2{}, spruce::selection::threshold{ratio}, v, "fc") == th);
      }
      // exact(0.5) prunes exactly round_half_even(cols / 2) of every row.
      const auto half = spruce::per_row_mask(spruce::criterion::l2{}, spruce::selection::exact(0.5), v);
      const auto want = static_cast<std::size_t>(spruce::round_half_even(0.5 * double(sc.cols)));
      for (std::size_t r = 0; r < sc.rows; ++r)
        CHECK(std::count(half.data() + r * sc.cols, half.data() + (r + 1) * sc.cols, 0) == static_cast<std::ptrdiff_t>(want));
    }
  }
}

TEST_CASE("per_row_mask with wanda, a pruner, a conv weight, and its errors") {
  const std::size_t out = 8, in = 5, k = 3;
  const auto w = random_vec(out * in * k, 7);
  const auto norms = random_vec(in, 8, 0.0f, 2.0f);
  const inputs<float, activation_norms<float>> x{.weight = spruce::make_view(w.data(), out, in, 1, k), .extra = {norms}};
  std::vector<float> ref(w.size());
  for (std::size_t f = 0; f < w.size(); ++f) ref[f] = std::abs(w[f]) * norms[(f / k) % in];
  const auto m = spruce::per_row_mask(wanda{}, spruce::selection::exact(0.5), x, "conv");
  CHECK(bytes(m) == naive_rows(ref, out, 0.5, true));
  const spruce::pruner<spruce::granularity::element, wanda, spruce::selection::exact> p{{}, {}, spruce::selection::exact(0.5)};
  CHECK(spruce::per_row_mask(p, x, "conv") == m);
  // A per-row selection differs from the layer-wide one on skewed rows.
  std::vector<float> skew(4 * 4);
  for (std::size_t i = 0; i < skew.size(); ++i) skew[i] = float(i + 1);
  const auto sv = spruce::make_view(skew.data(), 4, 4);
  const auto rows = spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::exact(0.5), sv);
  const auto layer = spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::exact>{
      {}, {}, spruce::selection::exact(0.5)}.compute(sv);
  CHECK(rows.count_pruned() == 8);
  CHECK(layer.count_pruned() == 8);
  CHECK(!(rows == layer));

  // NaN: names the tensor, the flat index and its row, on both paths.
  std::vector<float> bad = w;
  bad[2 * in * k + 4] = std::numeric_limits<float>::quiet_NaN();
  const auto bv = spruce::make_view(bad.data(), out, in * k);
  for (const std::string& e :
       {error_of([&] { (void)spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::exact(0.5), bv, "fc7"); }),
        error_of([&] { (void)spruce::per_row_mask(spruce::criterion::l2{}, spruce::selection::threshold{0.5}, bv, "fc7"); })}) {
    CHECK(e.find("'fc7'") != std::string::npos);
    CHECK(e.find("flat index " + std::to_string(2 * in * k + 4)) != std::string::npos);
    CHECK(e.find("row 2") != std::string::npos);
  }
  // A bad rule parameter names the tensor; a vector has no rows.
  CHECK(error_of([&] { (void)spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::exact(99), bv, "fc8"); })
            .find("fc8") != std::string::npos);
  CHECK(error_of([&] { (void)spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::exact(0.5),
                                                   spruce::make_view(w.data(), w.size()), "b"); })
            .find("'b'") != std::string::npos);
  // A rule that computes its own mask (quantile) is applied to each row on its own.
  const auto qv = spruce::make_view(w.data(), out, in * k);
  const auto q = spruce::per_row_mask(spruce::criterion::l2{}, spruce::selection::quantile{0.3}, qv, "fcq");
  for (std::size_t r = 0; r < out; ++r) {
    std::vector<float> row(in * k);
    for (std::size_t i = 0; i < row.size(); ++i) row[i] = w[r * in * k + i] * w[r * in * k + i];
    const auto want = spruce::selection::quantile{0.3}.keep(std::span<const float>(row));
    CHECK(std::equal(want.begin(), want.end(), q.data() + r * in * k));
  }
  CHECK(error_of([&] { (void)spruce::per_row_mask(spruce::criterion::l2{}, spruce::selection::quantile{2.0}, qv, "fcq"); })
            .find("fcq") != std::string::npos);
  // An empty tensor keeps everything (nothing to keep).
  const std::size_t zshape[2] = {0, 4};
  const auto empty = spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::exact(0.5),
                                          spruce::tensor_ref<const float>(w.data(), zshape));
  CHECK(empty.size() == 0);
}

TEST_CASE("criterion::ln validates p, naming the tensor, p = inf is the max") {
  const auto w = random_vec(4 * 6, 20);
  const auto v = spruce::make_view(w.data(), 4, 6);
  for (double p : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::infinity()}) {
    CAPTURE(p);
    const std::string e = error_of([&] {
      (void)spruce::scores(spruce::granularity::filter{}, spruce::criterion::ln{p}, v, "conv3");
    });
    CHECK(e.find("criterion::ln") != std::string::npos);
    CHECK(e.find("'conv3'") != std::string::npos);
    CHECK(e.find("p > 0") != std::string::npos);
    CHECK(error_of([&] {
            (void)spruce::pruner<spruce::granularity::element, spruce::criterion::ln, spruce::selection::exact>{
                {}, {p}, spruce::selection::exact(0.5)}.compute(v, "conv4");
          }).find("'conv4'") != std::string::npos);
  }
  const auto inf = spruce::scores(spruce::granularity::filter{},
                                  spruce::criterion::ln{std::numeric_limits<double>::infinity()}, v);
  for (std::size_t o = 0; o < 4; ++o) {
    float mx = 0;
    for (std::size_t i = 0; i < 6; ++i) mx = std::max(mx, std::abs(w[o * 6 + i]));
    CHECK(inf[o] == mx);
  }
  const auto l1 = spruce::scores(spruce::granularity::filter{}, spruce::criterion::ln{1.0}, v);
  for (std::size_t o = 0; o < 4; ++o) {
    double s = 0;
    for (std::size_t i = 0; i < 6; ++i) s += std::abs(w[o * 6 + i]);
    CHECK(l1[o] == doctest::Approx(s));
  }
}

TEST_CASE("criterion::random keeps its splitmix64 stream") {
  const auto w = random_vec(10 * 3, 30);
  const auto s = spruce::scores(spruce::granularity::filter{}, spruce::criterion::random{42}, spruce::make_view(w.data(), 10, 3));
  REQUIRE(s.size() == 10);
  for (std::size_t i = 0; i < s.size(); ++i) {
    // The stream as it was written before it shared core/shape.hpp's splitmix64.
    std::uint64_t z = 42 + 0x9E3779B97F4A7C15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    CHECK(s[i] == static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-53));
  }
}

namespace user {
// A criterion written outside spruce that reads its own per-tensor data.
struct scale_extra {
  float scale = 1.0f;
  std::size_t offset = 0;
};
struct shifted_magnitude {
  using extra_type = scale_extra;
  template <class T>
  void group_scores(const spruce::criterion::inputs<T, scale_extra>& in, const spruce::granularity::group_layout& l,
                    std::span<T> out, const std::string& name) const {
    if (in.extra.scale <= 0) throw spruce::error("shifted_magnitude for " + name + ": scale must be > 0");
    for (std::size_t g = 0; g < l.groups(); ++g) out[g] = 0;
    for (std::size_t f = 0; f < in.weight.size(); ++f)
      out[l.group_of(f)] += in.extra.scale * std::abs(in.weight.data()[f]) + static_cast<T>(in.extra.offset);
  }
};
static_assert(spruce::criterion::group_criterion<shifted_magnitude>);
}  // namespace user

TEST_CASE("a user criterion with its own extra inputs composes with pruner, scores and per_row_mask") {
  const auto w = random_vec(6 * 4, 40);
  const inputs<float, user::scale_extra> in{.weight = spruce::make_view(w.data(), 6, 4), .extra = {2.0f, 1}};
  const auto s = spruce::scores(spruce::granularity::element{}, user::shifted_magnitude{}, in, "u");
  for (std::size_t f = 0; f < w.size(); ++f) CHECK(s[f] == 2.0f * std::abs(w[f]) + 1.0f);
  const spruce::pruner<spruce::granularity::element, user::shifted_magnitude, spruce::selection::exact> p{
      {}, {}, spruce::selection::exact(0.5)};
  const auto m = p.compute(in, "u");
  std::vector<float> mag(w.size());
  for (std::size_t f = 0; f < w.size(); ++f) mag[f] = std::abs(w[f]);
  const auto want = spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::exact>{
      {}, {}, spruce::selection::exact(0.5)}.compute(spruce::make_view(w.data(), 6, 4));
  CHECK(m == want);
  CHECK(spruce::per_row_mask(p, in, "u") ==
        spruce::per_row_mask(spruce::criterion::l1{}, spruce::selection::exact(0.5), spruce::make_view(w.data(), 6, 4)));
  const inputs<float, user::scale_extra> bad{.weight = spruce::make_view(w.data(), 6, 4), .extra = {-1.0f, 0}};
  CHECK(error_of([&] { (void)p.compute(bad, "u9"); }).find("u9") != std::string::npos);
}
