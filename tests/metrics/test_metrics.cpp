#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ranges>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "spruce/core/make_view.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/metrics/metrics.hpp"
#include "support/fixtures.hpp"

#if SPRUCE_HAS_OPENMP
#include <omp.h>
#endif

using namespace spruce;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
constexpr float inf_f = std::numeric_limits<float>::infinity();

// Runtime-rank view of a buffer with the given row-major shape.
tensor_ref<const float> ref_of(const std::vector<float>& buf, const std::vector<std::size_t>& s) {
  switch (s.size()) {
    case 1: return make_view(buf.data(), std::array<std::size_t, 1>{s[0]});
    case 2: return make_view(buf.data(), std::array<std::size_t, 2>{s[0], s[1]});
    case 4: return make_view(buf.data(), std::array<std::size_t, 4>{s[0], s[1], s[2], s[3]});
    default: FAIL("unexpected rank " << s.size()); return {};
  }
}

// The reference count: one comparison per element through the view's own indexing.
template <class V>
std::size_t naive_nonzero_2d(const V& v) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < v.extent(0); ++i)
    for (std::size_t j = 0; j < v.extent(1); ++j) n += v(i, j) != 0 ? 1 : 0;
  return n;
}

// Deterministic data with zeros, negative zeros and NaNs sprinkled in.
std::vector<float> sprinkled(std::size_t n, std::uint32_t seed) {
  std::vector<float> v(n);
  std::uint32_t x = seed;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    const std::uint32_t r = x >> 8;
    if (r % 10 < 3) v[i] = 0.0f;
    else if (r % 97 == 0) v[i] = -0.0f;
    else if (r % 89 == 0) v[i] = nan_f;
    else v[i] = static_cast<float>(r % 1000) / 100.0f - 5.0f + 0.001f;
  }
  return v;
}

// ---- the MIT lab VGG, walked layer by layer -------------------------------------------

struct vgg_layer {
  std::string name;
  std::vector<std::size_t> shape;
};

struct vgg_model {
  std::vector<vgg_layer> layers;
  std::uint64_t macs = 0;
};

// cfg = [64, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'] scaled by width;
// conv3x3 (stride 1, pad 1, no bias) - BN - ReLU, max-pool 2x2 at 'M', global mean pool,
// Linear(channels, 10). Module indices follow the lab's nn.Sequential numbering.
vgg_model walk_vgg(std::size_t in_channels, double width, std::size_t input_hw) {
  constexpr int pool = 0;
  const int cfg[] = {64, 128, pool, 256, 256, pool, 512, 512, pool, 512, 512, pool};
  vgg_model m;
  std::size_t c = in_channels, h = input_hw, w = input_hw, idx = 0;
  for (int entry : cfg) {
    if (entry == pool) {
      h = pool2d_output_extent(h, 2);
      w = pool2d_output_extent(w, 2);
      idx += 1;
      continue;
    }
    const auto out = static_cast<std::size_t>(entry * width);  // Python's int() truncates
    const std::vector<std::size_t> weight{out, c, 3, 3};
    h = conv2d_output_extent(h, 3, 1, 1);
    w = conv2d_output_extent(w, 3, 1, 1);
    m.macs += conv2d_macs(weight, h, w);
    m.layers.push_back({"backbone." + std::to_string(idx) + ".weight", weight});
    m.layers.push_back({"backbone." + std::to_string(idx + 1) + ".weight", {out}});
    m.layers.push_back({"backbone." + std::to_string(idx + 1) + ".bias", {out}});
    c = out;
    idx += 3;  // conv, bn, relu
  }
  // Global mean pooling costs nothing in torchprofile; the classifier sees `c` features.
  m.macs += linear_macs(10, c);
  m.layers.push_back({"classifier.weight", {10, c}});
  m.layers.push_back({"classifier.bias", {10}});
  return m;
}

}  // namespace

TEST_CASE("vgg_metrics fixture: parameters, size and MACs match PyTorch exactly") {
  const auto fx = spruce_test::load_fixture("vgg_metrics.json");
  REQUIRE(fx["cases"].size() >= 4);
  for (const auto& c : fx["cases"]) {
    const auto in_channels = c["in_channels"].get<std::size_t>();
    const auto width = c["width"].get<double>();
    const auto hw = c["input_hw"].get<std::size_t>();
    CAPTURE(in_channels);
    CAPTURE(width);
    CAPTURE(hw);

    const vgg_model model = walk_vgg(in_channels, width, hw);
    const auto& layers = c["layers"];
    REQUIRE(model.layers.size() == layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) {
      CHECK(model.layers[i].name == layers[i]["name"].get<std::string>());
      CHECK(model.layers[i].shape == spruce_test::shape(layers[i]["shape"]));
    }
    CHECK(model.macs == c["macs"].get<std::uint64_t>());

    // Real buffers for every parameter, every element nonzero.
    std::vector<std::vector<float>> storage;
    std::vector<named_tensor<const float>> params;
    storage.reserve(layers.size());
    for (const auto& l : layers) {
      const auto shape = spruce_test::shape(l["shape"]);
      std::vector<float> buf(static_cast<std::size_t>(num_elements(shape)));
      for (std::size_t k = 0; k < buf.size(); ++k)
        buf[k] = (k % 2 ? -0.25f : 0.5f) * static_cast<float>(k % 7 + 1);
      storage.push_back(std::move(buf));
      params.push_back({l["name"].get<std::string>(), ref_of(storage.back(), shape)});
    }
    const auto expected_params = c["num_parameters"].get<std::uint64_t>();
    const auto expected_bits = c["model_size_bits_fp32"].get<std::uint64_t>();
    CHECK(num_parameters(params) == expected_params);
    CHECK(num_parameters(params, true) == expected_params);
    CHECK(model_size_bits(params) == expected_bits);
    CHECK(model_size_bits(params, 32) == expected_bits);
    CHECK(model_size_bits(params, 32, true) == expected_bits);
    CHECK(model_sparsity(params) == 0.0);
    CHECK(num_parameters(std::span<const named_tensor<const float>>(params)) == expected_params);

    // Prune: every third weight of the first conv, and the classifier bias to -0.0.
    std::uint64_t zeroed = 0;
    for (std::size_t k = 0; k < storage[0].size(); k += 3, ++zeroed) storage[0][k] = 0.0f;
    for (float& b : storage.back()) b = -0.0f;
    zeroed += storage.back().size();
    const std::uint64_t kept = expected_params - zeroed;
    CHECK(num_parameters(params) == expected_params);
    CHECK(num_parameters(params, true) == kept);
    CHECK(model_size_bits(params, 8, true) == kept * 8);
    CHECK(model_size_bits(params, 32, false) == expected_bits);
    CHECK(model_sparsity(params) ==
          1.0 - static_cast<double>(kept) / static_cast<double>(expected_params));
    CHECK(count_nonzero(params.front()) == storage[0].size() - (storage[0].size() + 2) / 3);
    CHECK(sparsity(params.back()) == 1.0);
  }
}

TEST_CASE("count_nonzero and sparsity: -0.0 is zero, NaN and inf are not") {
  std::vector<float> buf{0.0f, -0.0f, nan_f, inf_f, 1.0f, -2.0f, 0.0f, 3.0f};
  const auto v = make_view(buf, 2, 4);
  CHECK(count_nonzero(v) == 5);
  CHECK(sparsity(v) == 1.0 - 5.0 / 8.0);
  CHECK(count_nonzero(make_view(buf)) == 5);
  const tensor_ref<float> mut = v;  // non-const refs work too
  CHECK(count_nonzero(mut) == 5);
  const tensor_ref<const float> cref = v;
  CHECK(sparsity(cref) == 0.375);
  const named_tensor<float> nt{"w", v};
  CHECK(count_nonzero(nt) == 5);
  CHECK(sparsity(nt) == 0.375);

  std::vector<int> ints{0, 1, 0, -3, 0, 0};
  CHECK(count_nonzero(make_view(ints, 2, 3)) == 2);
  CHECK(sparsity(make_view(ints, 3, 2)) == 1.0 - 2.0 / 6.0);
  std::vector<double> dbl{-0.0, 0.0, std::nan(""), 1e-300};
  CHECK(count_nonzero(make_view(dbl)) == 2);
}

TEST_CASE("count_nonzero walks strided views") {
  // 3 x 4 row-major block; zeros at (0,1), (1,1), (2,3).
  std::vector<float> buf{1, 0, 2, 3, 4, -0.0f, 5, 6, 7, 8, 9, 0};
  const auto t = make_strided_view(buf.data(), std::array<std::size_t, 2>{4, 3},
                                   std::array<std::size_t, 2>{1, 4});  // transpose
  REQUIRE_FALSE(t.is_contiguous());
  CHECK(count_nonzero(t) == 9);
  CHECK(count_nonzero(t) == naive_nonzero_2d(t));
  CHECK(sparsity(t) == 1.0 - 9.0 / 12.0);
  const tensor_ref<const float> tr = t;
  CHECK(count_nonzero(tr) == 9);

  // Every other column of a 4 x 6 block: skipped elements must not be read as members.
  std::vector<float> wide(24, 0.0f);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 6; j += 2) wide[i * 6 + j] = static_cast<float>(i + j + 1);
  wide[2 * 6 + 4] = 0.0f;
  wide[3 * 6 + 2] = nan_f;
  const auto cols = make_strided_view(wide.data(), std::array<std::size_t, 2>{4, 3},
                                      std::array<std::size_t, 2>{6, 2});
  CHECK(count_nonzero(cols) == 11);
  CHECK(count_nonzero(cols) == naive_nonzero_2d(cols));

  // A permuted rank-3 view whose axes cannot merge: a three-level odometer.
  std::vector<float> cube = sprinkled(300, 42);
  const auto p3 = make_strided_view(cube.data(), std::array<std::size_t, 3>{7, 3, 5},
                                    std::array<std::size_t, 3>{1, 16, 60});
  REQUIRE(p3.mapping().required_span_size() <= cube.size());
  std::size_t expect = 0;
  for (std::size_t a = 0; a < 7; ++a)
    for (std::size_t b = 0; b < 3; ++b)
      for (std::size_t d = 0; d < 5; ++d) expect += p3(a, b, d) != 0 ? 1 : 0;
  CHECK(count_nonzero(p3) == expect);

  // Stride 0 broadcasts a row: each element counts once per row.
  std::vector<float> row{1, 0, 2, 3};
  const auto bcast = make_strided_view(row.data(), std::array<std::size_t, 2>{5, 4},
                                       std::array<std::size_t, 2>{0, 1});
  CHECK(count_nonzero(bcast) == 15);

  // Extents of 1 may carry any stride.
  const auto odd = make_strided_view(buf.data(), std::array<std::size_t, 3>{1, 3, 1},
                                     std::array<std::size_t, 3>{999, 1, 12345});
  CHECK(count_nonzero(odd) == 2);  // 1, 0, 2
  const auto one = make_strided_view(buf.data() + 1, std::array<std::size_t, 2>{1, 1},
                                     std::array<std::size_t, 2>{7, 7});
  CHECK(count_nonzero(one) == 0);
  CHECK(sparsity(one) == 1.0);
}

TEST_CASE("empty tensors and empty sets") {
  float* null = nullptr;
  const auto e = make_view(null, 0, 5);
  CHECK(count_nonzero(e) == 0);
  CHECK(sparsity(e) == 0.0);
  CHECK(count_nonzero(tensor_ref<const float>{}) == 0);
  CHECK(sparsity(tensor_ref<const float>{}) == 0.0);

  const std::vector<named_tensor<const float>> none;
  CHECK(num_parameters(none) == 0);
  CHECK(num_parameters(none, true) == 0);
  CHECK(model_size_bits(none) == 0);
  CHECK(model_sparsity(none) == 0.0);

  const std::vector<tensor_ref<const float>> empties{e, tensor_ref<const float>{}};
  CHECK(num_parameters(empties) == 0);
  CHECK(model_sparsity(empties) == 0.0);
}

TEST_CASE("large tensors take the parallel path and agree with a naive loop") {
  const std::vector<float> flat = sprinkled(100003, 7);
  std::size_t naive = 0;
  for (float x : flat) naive += x != 0.0f ? 1 : 0;
  REQUIRE(flat.size() > parallel_threshold);

  std::vector<float> big = sprinkled(500 * 600, 11);
  // Transpose of 400 x 750: a permutation of a contiguous block (the flat path).
  const auto tr = make_strided_view(big.data(), std::array<std::size_t, 2>{750, 400},
                                    std::array<std::size_t, 2>{1, 750});
  // Every other column of 500 x 600: a genuine strided walk of 150000 elements.
  const auto cols = make_strided_view(big.data(), std::array<std::size_t, 2>{500, 300},
                                      std::array<std::size_t, 2>{600, 2});
  // Rank 3 with gaps between rows and planes and the planes axis last: no axis merges.
  const auto cube = make_strided_view(big.data(), std::array<std::size_t, 3>{60, 50, 40},
                                      std::array<std::size_t, 3>{61, 1, 3700});
  REQUIRE(cube.mapping().required_span_size() <= big.size());
  std::size_t naive_cube = 0;
  for (std::size_t a = 0; a < 60; ++a)
    for (std::size_t b = 0; b < 50; ++b)
      for (std::size_t d = 0; d < 40; ++d) naive_cube += cube(a, b, d) != 0 ? 1 : 0;
  const std::size_t naive_tr = naive_nonzero_2d(tr), naive_cols = naive_nonzero_2d(cols);

  std::vector<int> thread_counts{1};
#if SPRUCE_HAS_OPENMP
  const int saved = omp_get_max_threads();
  thread_counts = {1, 2, 3, 7};  // uneven chunk boundaries exercise the odometer's restart
#endif
  for (int threads : thread_counts) {
    CAPTURE(threads);
#if SPRUCE_HAS_OPENMP
    omp_set_num_threads(threads);
#endif
    CHECK(count_nonzero(make_view(flat)) == naive);
    CHECK(sparsity(make_view(flat)) ==
          1.0 - static_cast<double>(naive) / static_cast<double>(flat.size()));
    CHECK(count_nonzero(tr) == naive_tr);
    CHECK(count_nonzero(cols) == naive_cols);
    CHECK(count_nonzero(cube) == naive_cube);
  }
#if SPRUCE_HAS_OPENMP
  omp_set_num_threads(saved);
#endif
}

TEST_CASE("tensor sets: any range of named tensors, refs or views") {
  std::vector<float> a{1, 0, 2, 0, 0, 3};  // 3 of 6 nonzero
  std::vector<float> b{0, 0, 0, 4};        // 1 of 4
  const std::vector<named_tensor<float>> named{{"a", make_view(a, 2, 3)}, {"b", make_view(b)}};
  CHECK(num_parameters(named) == 10);
  CHECK(num_parameters(named, true) == 4);
  CHECK(model_size_bits(named) == 320);
  CHECK(model_size_bits(named, 8, true) == 32);
  CHECK(model_sparsity(named) == 1.0 - 4.0 / 10.0);

  const std::vector<tensor_ref<const float>> refs{make_view(a, 3, 2), make_view(b, 2, 2)};
  CHECK(num_parameters(refs, true) == 4);
  const std::array<view<float, 2>, 2> views{make_view(a, 2, 3), make_view(b, 1, 4)};
  CHECK(num_parameters(views) == 10);
  CHECK(model_sparsity(views) == 0.6);
  CHECK(num_parameters(std::span(named)) == 10);
  const auto first = std::span(named).first(1);
  CHECK(num_parameters(first, true) == 3);
  CHECK(model_sparsity(first) == 0.5);
#if !defined(__clang__) || __clang_major__ >= 15  // clang 14 cannot parse libstdc++ 12 views
  auto only_b = named | std::views::filter([](const auto& t) { return t.name == "b"; });
  CHECK(num_parameters(only_b, true) == 1);
  CHECK(model_sparsity(only_b) == 0.75);
#endif
}

TEST_CASE("shape-only helpers") {
  CHECK(num_elements({}) == 1);
  CHECK(num_elements({0, 5}) == 0);
  CHECK(num_elements({2, 3, 4}) == 24);
  const std::vector<std::size_t> s{64, 3, 3, 3};
  CHECK(num_elements(s) == 1728);
  CHECK(num_elements(std::array<std::size_t, 2>{10, 512}) == 5120);
  const std::size_t big = std::size_t{1} << 40;
  CHECK_THROWS_WITH_AS(num_elements({big, big}), doctest::Contains("64 bits"), spruce::error);
  CHECK(num_elements({big, big, 0}) == 0);
}

TEST_CASE("conv and pool output extents follow PyTorch") {
  CHECK(conv2d_output_extent(32, 3, 1, 1) == 32);
  CHECK(conv2d_output_extent(32, 3, 2, 1) == 16);
  CHECK(conv2d_output_extent(224, 7, 2, 3) == 112);
  CHECK(conv2d_output_extent(10, 3, 1, 0, 2) == 6);
  CHECK(conv2d_output_extent(28, 5) == 24);
  CHECK(conv2d_output_extent(5, 3, 2) == 2);
  CHECK(conv2d_output_extent(3, 3) == 1);
  CHECK(conv2d_output_extent(2, 5, 1, 2) == 2);

  CHECK(pool2d_output_extent(32, 2) == 16);
  CHECK(pool2d_output_extent(7, 2) == 3);
  CHECK(pool2d_output_extent(3, 2) == 1);
  CHECK(pool2d_output_extent(7, 3, 2) == 3);
  CHECK(pool2d_output_extent(7, 2, 2, 0, 1, pool_rounding::ceil) == 4);
  CHECK(pool2d_output_extent(6, 3, 2, 0, 1, pool_rounding::floor) == 2);
  CHECK(pool2d_output_extent(6, 3, 2, 0, 1, pool_rounding::ceil) == 3);
  // ceil would start a window in the right padding: PyTorch drops it.
  CHECK(pool2d_output_extent(5, 2, 2, 1, 1, pool_rounding::ceil) == 3);
  CHECK(pool2d_output_extent(8, 2, 2, 0, 1, pool_rounding::ceil) == 4);
  // ceil mode keeps a window that runs past the input: a 2x2 pool of a 1-pixel map.
  CHECK(pool2d_output_extent(1, 2, 2, 0, 1, pool_rounding::ceil) == 1);
}

TEST_CASE("output extents agree with PyTorch's formula over a grid of arguments") {
  // ATen's pooling_output_shape in signed arithmetic, rounding toward -inf; the convolution
  // rule is the floor case without the start check. Output below 1 is an error there.
  const auto torch_out = [](long in, long k, long s, long p, long d, bool ceil) {
    const long num = in + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0);
    long out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
    if (ceil && (out - 1) * s >= in + p) --out;
    return out;
  };
  int checked = 0;
  for (long in = 0; in <= 12; ++in)
    for (long k = 1; k <= 5; ++k)
      for (long s = 1; s <= 4; ++s)
        for (long d = 1; d <= 3; ++d)
          for (long p = 0; p <= 3; ++p) {
            CAPTURE(in);
            CAPTURE(k);
            CAPTURE(s);
            CAPTURE(p);
            CAPTURE(d);
            const auto u = [](long x) { return static_cast<std::size_t>(x); };
            const long conv = torch_out(in, k, s, p, d, false);
            if (conv >= 1)
              REQUIRE(conv2d_output_extent(u(in), u(k), u(s), u(p), u(d)) == u(conv));
            else
              REQUIRE_THROWS_AS(conv2d_output_extent(u(in), u(k), u(s), u(p), u(d)),
                                spruce::error);
            for (bool ceil : {false, true}) {
              CAPTURE(ceil);
              const long pool = torch_out(in, k, s, p, d, ceil);
              const auto r = ceil ? pool_rounding::ceil : pool_rounding::floor;
              if (pool >= 1 && 2 * p <= k)
                REQUIRE(pool2d_output_extent(u(in), u(k), u(s), u(p), u(d), r) == u(pool));
              else
                REQUIRE_THROWS_AS(pool2d_output_extent(u(in), u(k), u(s), u(p), u(d), r),
                                  spruce::error);
              ++checked;
            }
          }
  CHECK(checked > 1000);
}

TEST_CASE("MAC counts of conv and linear layers") {
  CHECK(conv2d_macs({64, 3, 3, 3}, 32, 32) == 64ull * 3 * 9 * 1024);
  CHECK(conv2d_macs({64, 3, 3, 3}, 32, 32, 8) == 8ull * 64 * 3 * 9 * 1024);
  CHECK(conv2d_macs({32, 1, 3, 3}, 16, 16) == 32ull * 9 * 256);  // depthwise
  CHECK(conv2d_macs({512, 512, 3, 3}, 2, 4) == 512ull * 512 * 9 * 8);
  CHECK(conv2d_macs({0, 3, 3, 3}, 8, 8) == 0);
  std::vector<float> w(16 * 8 * 9, 1.0f);
  const auto wv = make_view(w, 16, 8, 3, 3);
  CHECK(conv2d_macs(wv.shape(), 10, 10) == 16ull * 8 * 9 * 100);
  const tensor_ref<const float> wr = wv;
  CHECK(conv2d_macs(wr.shape(), 10, 10) == 16ull * 8 * 9 * 100);
  CHECK(linear_macs(10, 512) == 5120);
  CHECK(linear_macs(10, 512, 4) == 20480);
  CHECK(linear_macs(0, 512) == 0);
  // Big but representable: 64-bit counts do not wrap at 2^32.
  CHECK(conv2d_macs({1024, 1024, 7, 7}, 256, 256, 16) ==
        1024ull * 1024 * 49 * 65536 * 16);
}

TEST_CASE("invalid input throws spruce::error with a useful message") {
  CHECK_THROWS_WITH_AS(conv2d_output_extent(32, 3, 0), doctest::Contains("stride is 0"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(conv2d_output_extent(2, 5), doctest::Contains("padded input has only 2"),
                       spruce::error);
  CHECK_THROWS_AS(conv2d_output_extent(2, 5, 1, 1), spruce::error);  // 4 < 5
  CHECK_THROWS_WITH_AS(conv2d_output_extent(9, 3, 1, 0, 5), doctest::Contains("spans 11"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(conv2d_output_extent(8, 0), doctest::Contains("kernel size is 0"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(conv2d_output_extent(8, 3, 1, 0, 0), doctest::Contains("dilation is 0"),
                       spruce::error);
  CHECK_THROWS_AS(pool2d_output_extent(1, 2), spruce::error);
  CHECK_THROWS_AS(pool2d_output_extent(8, 2, 0), spruce::error);
  CHECK_THROWS_WITH_AS(pool2d_output_extent(8, 3, 2, 2), doctest::Contains("half the kernel"),
                       spruce::error);

  CHECK_THROWS_WITH_AS(conv2d_macs({64, 3, 3}, 8, 8), doctest::Contains("rank 3"),
                       spruce::error);
  const std::size_t big = std::size_t{1} << 40;
  CHECK_THROWS_WITH_AS(conv2d_macs({big, big, 3, 3}, 8, 8), doctest::Contains("64 bits"),
                       spruce::error);
  CHECK_THROWS_AS(linear_macs(big, big, 1 << 20), spruce::error);

  std::vector<float> a{1, 0, 2};
  const std::vector<named_tensor<float>> set{{"a", make_view(a)}};
  CHECK_THROWS_WITH_AS(model_size_bits(set, 0), doctest::Contains("data_width_bits is 0"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(model_size_bits(set, std::uint64_t{1} << 63),
                       doctest::Contains("64 bits"), spruce::error);

  // A view built around a null pointer with elements: refused, naming the tensor.
  const view<const float, 2> dangling(nullptr, extents<2>(3, 4));
  CHECK_THROWS_WITH_AS(count_nonzero(dangling), doctest::Contains("null data pointer"),
                       spruce::error);
  const std::vector<named_tensor<const float>> bad{{"backbone.0.weight", dangling}};
  CHECK(num_parameters(bad) == 12);  // sizes need no data
  CHECK_THROWS_WITH_AS(num_parameters(bad, true), doctest::Contains("'backbone.0.weight'"),
                       spruce::error);
  CHECK_THROWS_AS(model_sparsity(bad), spruce::error);
}
