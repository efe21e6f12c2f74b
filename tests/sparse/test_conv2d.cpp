// Sparse conv2d (im2col + sparse x dense) against a direct convolution in double.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <random>
#include <span>
#include <vector>

#include "spruce/sparse/block_sparse.hpp"
#include "spruce/sparse/conv2d.hpp"
#include "spruce/sparse/csr.hpp"
#include "spruce/sparse/n_m_matrix.hpp"
#include "user_format.hpp"

using namespace spruce;

namespace {

struct geometry {
  std::size_t n, c, h, w, out;
  sparse::conv2d_params p;
};

// out[b, o, y, x] = bias[o] + sum_{c, ky, kx} W[o, c, ky, kx] * in[b, c, y*s + ky*d - pad, x*s + kx*d - pad]
std::vector<double> direct(const geometry& g, const std::vector<float>& in, const std::vector<float>& wt,
                           const std::vector<float>* bias, std::size_t oh, std::size_t ow) {
  const auto& p = g.p;
  std::vector<double> o(g.n * g.out * oh * ow);
  for (std::size_t b = 0; b < g.n; ++b)
    for (std::size_t co = 0; co < g.out; ++co)
      for (std::size_t y = 0; y < oh; ++y)
        for (std::size_t x = 0; x < ow; ++x) {
          double s = bias ? (*bias)[co] : 0.0;
          for (std::size_t ci = 0; ci < g.c; ++ci)
            for (std::size_t ky = 0; ky < p.kernel_h; ++ky)
              for (std::size_t kx = 0; kx < p.kernel_w; ++kx) {
                const long long iy = static_cast<long long>(y * p.stride_h + ky * p.dilation_h) - static_cast<long long>(p.pad_h);
                const long long ix = static_cast<long long>(x * p.stride_w + kx * p.dilation_w) - static_cast<long long>(p.pad_w);
                if (iy < 0 || ix < 0 || iy >= static_cast<long long>(g.h) || ix >= static_cast<long long>(g.w)) continue;
                s += static_cast<double>(wt[((co * g.c + ci) * p.kernel_h + ky) * p.kernel_w + kx]) *
                     in[((b * g.c + ci) * g.h + static_cast<std::size_t>(iy)) * g.w + static_cast<std::size_t>(ix)];
              }
          o[((b * g.out + co) * oh + y) * ow + x] = s;
        }
  return o;
}

}  // namespace

// Runs sparse::conv2d with the weight in format F (built from its nonzeros through the
// sparse_format entry point) against the direct convolution.
template <class F>
void check_conv(const geometry& g, const std::vector<float>& in, const std::vector<float>& wt, const std::vector<float>& bias,
                bool with_bias, const typename F::options_type& options = {}) {
  const auto& p = g.p;
  const std::size_t oh = conv2d_output_extent(g.h, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  const std::size_t ow = conv2d_output_extent(g.w, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  const std::size_t k = g.c * p.kernel_h * p.kernel_w;
  const std::array<std::size_t, 2> ws{g.out, k};
  spruce::byte_buffer nonzero(wt.size());
  for (std::size_t i = 0; i < wt.size(); ++i) nonzero[i] = wt[i] != 0.0f;
  const auto w = sparse::from_dense<F>(tensor_ref<const float>(wt.data(), ws), spruce::mask(ws, std::move(nonzero)), options);
  std::vector<float> out(g.n * g.out * oh * ow, std::nanf(""));
  const std::array<std::size_t, 4> si{g.n, g.c, g.h, g.w}, so{g.n, g.out, oh, ow};
  sparse::conv2d_workspace<float> work;
  sparse::conv2d(w, tensor_ref<const float>(in.data(), si), tensor_ref<float>(out.data(), so), p,
                 with_bias ? std::span<const float>(bias) : std::span<const float>(), work);
  const auto want = direct(g, in, wt, with_bias ? &bias : nullptr, oh, ow);
  for (std::size_t i = 0; i < out.size(); ++i) {
    CAPTURE(i);
    REQUIRE(std::abs(out[i] - want[i]) <= 1e-4 * std::max(1.0, std::abs(want[i])));
  }
}

TEST_CASE("sparse conv2d equals a direct convolution") {
  std::mt19937 rng(17);
  std::normal_distribution<float> gauss;
  std::uniform_real_distribution<float> u(0, 1);
  const std::vector<geometry> cases{
      {2, 3, 8, 8, 5, {3, 3, 1, 1, 1, 1, 1, 1}},    // the lab's conv3x3, padding 1
      {1, 1, 1, 1, 1, {1, 1, 1, 1, 0, 0, 1, 1}},    // 1 x 1 everything
      {3, 4, 7, 9, 6, {3, 3, 2, 2, 1, 1, 1, 1}},    // stride 2, odd sizes
      {2, 2, 9, 6, 3, {3, 2, 1, 2, 2, 0, 2, 1}},    // rectangular kernel, dilation, asymmetric stride
      {1, 16, 4, 4, 33, {3, 3, 1, 1, 1, 1, 1, 1}},  // many channels, 4 x 4 map
      {4, 8, 5, 5, 7, {5, 5, 1, 1, 2, 2, 1, 1}},
  };
  for (const auto& g : cases)
    for (float density : {0.0f, 0.1f, 0.5f, 1.0f})
      for (bool with_bias : {false, true}) {
        CAPTURE(g.c);
        CAPTURE(g.out);
        CAPTURE(density);
        const std::size_t k = g.c * g.p.kernel_h * g.p.kernel_w;
        std::vector<float> in(g.n * g.c * g.h * g.w), wt(g.out * k), bias(g.out);
        for (auto& x : in) x = gauss(rng);
        for (auto& x : wt) x = u(rng) < density ? gauss(rng) : 0.0f;
        for (auto& x : bias) x = gauss(rng);
        check_conv<sparse::csr_matrix<float>>(g, in, wt, bias, with_bias);
        check_conv<sparse::block_sparse_matrix<float>>(g, in, wt, bias, with_bias, {4, 4});
        check_conv<user::coo_matrix<float>>(g, in, wt, bias, with_bias);
        // N:M: the weight pruned 2:4 along its rows first.
        std::vector<float> w24 = wt;
        for (std::size_t i = 0; i < g.out; ++i)
          for (std::size_t j = 0; j < k; ++j)
            if (j % 4 >= 2) w24[i * k + j] = 0.0f;
        check_conv<sparse::n_m_matrix<float>>(g, in, w24, bias, with_bias, {2, 4});
      }
}

TEST_CASE("sparse conv2d rejects mismatched shapes and writes nothing") {
  std::vector<float> wt(4 * 2 * 9, 1.0f), in(1 * 3 * 5 * 5, 1.0f), out(4 * 25, 7.0f);
  const std::array<std::size_t, 2> ws{4, 18};
  const auto w = sparse::csr_matrix<float>::from_dense(tensor_ref<const float>(wt.data(), ws));
  const sparse::conv2d_params p{3, 3, 1, 1, 1, 1, 1, 1};
  const std::array<std::size_t, 4> si{1, 3, 5, 5}, so{1, 4, 5, 5};
  CHECK_THROWS_WITH_AS(sparse::conv2d(w, tensor_ref<const float>(in.data(), si), tensor_ref<float>(out.data(), so), p),
                       doctest::Contains("need 27"), spruce::error);
  const std::array<std::size_t, 4> si2{1, 2, 5, 5}, so_bad{1, 4, 4, 4};
  CHECK_THROWS_WITH_AS(sparse::conv2d(w, tensor_ref<const float>(in.data(), si2), tensor_ref<float>(out.data(), so_bad), p),
                       doctest::Contains("produces [1, 4, 5, 5]"), spruce::error);
  CHECK(out == std::vector<float>(4 * 25, 7.0f));
  // A bias of the wrong size is named, with how to fix it.
  const std::vector<float> bias3(3, 1.0f), bias4(4, 1.0f);
  const std::array<std::size_t, 4> si18{1, 2, 5, 5};
  CHECK_THROWS_WITH_AS(sparse::conv2d(w, tensor_ref<const float>(in.data(), si18), tensor_ref<float>(out.data(), so), p,
                                      std::span<const float>(bias3)),
                       doctest::Contains("the bias has 3 entries but the weight has 4 output channels; pass one bias per "
                                         "output channel, or none"),
                       spruce::error);
  CHECK(out == std::vector<float>(4 * 25, 7.0f));
  CHECK_NOTHROW(sparse::conv2d(w, tensor_ref<const float>(in.data(), si18), tensor_ref<float>(out.data(), so), p,
                               std::span<const float>(bias4)));
  CHECK(out[0] == doctest::Approx(1.0f + 8.0f));  // a corner: 2 channels x 2 x 2 ones, plus the bias
  std::fill(out.begin(), out.end(), 7.0f);
  const sparse::conv2d_params too_big{7, 7, 1, 1, 0, 0, 1, 1};
  CHECK_THROWS_AS(sparse::conv2d(w, tensor_ref<const float>(in.data(), si2), tensor_ref<float>(out.data(), so), too_big),
                  spruce::error);
  CHECK(out == std::vector<float>(4 * 25, 7.0f));
}
