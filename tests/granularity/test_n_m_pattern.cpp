// The run-time N:M pattern (granularity::n_m_pattern) against the compile-time n_m<N, M>
// and a naive reference: the fast-path patterns and the general path, random and
// adversarial data, conv shapes, partial groups, strided views; and its errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/granularity/n_m.hpp"
#include "spruce/spruce.hpp"

using namespace spruce;

namespace {

static_assert(std::is_trivially_copyable_v<granularity::n_m_pattern>);
static_assert(granularity::is_n_m_v<granularity::n_m_pattern>);
static_assert(granularity::n_m_granularity<granularity::n_m_pattern> &&
              granularity::n_m_granularity<granularity::n_m<1, 2>> &&
              !granularity::n_m_granularity<granularity::element>);
static_assert(granularity::n_m<2, 4>{}.pattern() == granularity::n_m_pattern{2, 4, true});
static_assert(granularity::n_m<3, 8>::sparsity() == 0.625);
static_assert(granularity::n_m_pattern{1, 4}.sparsity() == 0.75);

// Sort each group's indices by magnitude, larger first, lower index first among equals;
// keep the first min(n, len).
std::vector<std::uint8_t> reference(const std::vector<float>& w, const std::vector<std::size_t>& shape,
                                    std::size_t n, std::size_t m) {
  std::size_t outer = shape.size() == 1 ? 1 : shape[0], axis = shape.size() > 1 ? shape[1] : shape[0], inner = 1;
  for (std::size_t r = 2; r < shape.size(); ++r) inner *= shape[r];
  std::vector<std::uint8_t> keep(w.size(), 0);
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t t = 0; t < inner; ++t)
      for (std::size_t i0 = 0; i0 < axis; i0 += m) {
        std::vector<std::size_t> idx;
        for (std::size_t i = i0; i < std::min(axis, i0 + m); ++i) idx.push_back((o * axis + i) * inner + t);
        std::stable_sort(idx.begin(), idx.end(),
                         [&](std::size_t a, std::size_t b) { return std::fabs(w[a]) > std::fabs(w[b]); });
        for (std::size_t j = 0; j < std::min(n, idx.size()); ++j) keep[idx[j]] = 1;
      }
  return keep;
}

std::size_t product(const std::vector<std::size_t>& s) {
  std::size_t n = 1;
  for (std::size_t e : s) n *= e;
  return n;
}

std::vector<float> data(std::size_t n, std::mt19937& rng, bool ties) {
  const float inf = std::numeric_limits<float>::infinity();
  const float pool[] = {0.0f, -0.0f, 1.0f, -1.0f, 2.0f, -2.0f, inf, -inf, 0.5f};
  std::normal_distribution<float> g;
  std::uniform_int_distribution<int> pick(0, 8);
  std::vector<float> v(n);
  for (float& x : v) x = ties ? pool[pick(rng)] : g(rng);
  return v;
}

std::vector<std::vector<std::size_t>> shapes_for(std::size_t m) {
  return {{1, 1}, {1, m}, {3, m > 1 ? m - 1 : 1}, {7, 2 * m + 1}, {m + 3}, {9, 7, 3},
          {4, m + 2, 3, 3}, {300, 4 * m}, {64, 4 * m + 1, 3, 3}, {3, 2 * m + 1, 4, 5}, {9000 * m + 3}};
}

template <std::size_t N, std::size_t M>
void same_as_compile_time(std::mt19937& rng) {
  for (const auto& s : shapes_for(M))
    for (bool ties : {false, true}) {
      CAPTURE(N);
      CAPTURE(M);
      CAPTURE(shape_string(s));
      const auto w = data(product(s), rng, ties);
      const tensor_ref<const float> v(w.data(), s);
      const mask rt = n_m_mask(v, granularity::n_m_pattern{N, M});
      CHECK(rt == n_m_mask(v, granularity::n_m<N, M>{}));
      CHECK(std::ranges::equal(rt.bytes(), reference(w, s, N, M)));
    }
}

void against_reference(std::size_t n, std::size_t m, std::mt19937& rng) {
  for (const auto& s : shapes_for(m))
    for (bool ties : {false, true}) {
      CAPTURE(n);
      CAPTURE(m);
      CAPTURE(shape_string(s));
      const auto w = data(product(s), rng, ties);
      const mask got = n_m_mask(tensor_ref<const float>(w.data(), s), granularity::n_m_pattern{n, m});
      CHECK(std::ranges::equal(got.bytes(), reference(w, s, n, m)));
      CHECK(is_n_m(got, granularity::n_m_pattern{n, m}));
    }
}

}  // namespace

TEST_CASE("a run-time pattern gives the compile-time pattern's mask (fast paths and general ones)") {
  std::mt19937 rng(101);
  same_as_compile_time<1, 2>(rng);  // dispatched fast paths
  same_as_compile_time<2, 4>(rng);
  same_as_compile_time<1, 4>(rng);
  same_as_compile_time<3, 4>(rng);
  same_as_compile_time<2, 8>(rng);
  same_as_compile_time<4, 8>(rng);
  same_as_compile_time<3, 5>(rng);  // general path vs the compile-time tiled kernels
  same_as_compile_time<0, 4>(rng);
  same_as_compile_time<5, 16>(rng);
  same_as_compile_time<7, 40>(rng);  // past the pairwise limit: selection per group
}

TEST_CASE("the general run-time path matches the reference for patterns with no instantiation") {
  std::mt19937 rng(7);
  for (auto [n, m] : {std::pair<std::size_t, std::size_t>{1, 3}, {2, 6}, {6, 7}, {0, 9}, {11, 32}, {3, 33}, {20, 64}})
    against_reference(n, m, rng);
}

TEST_CASE("run-time pattern: double weights, strided views, tensor_view and in-place pruning") {
  std::mt19937 rng(3);
  std::normal_distribution<double> g;
  std::vector<double> wd(6 * 10 * 3);
  for (double& x : wd) x = g(rng);
  const std::vector<std::size_t> s{6, 10, 3};
  const tensor_ref<const double> vd(wd.data(), s);
  CHECK(n_m_mask(vd, granularity::n_m_pattern{3, 5}) == n_m_mask(vd, granularity::n_m<3, 5>{}));
  // A strided (transposed) view is gathered first.
  std::vector<float> buf(8 * 12);
  for (float& x : buf) x = static_cast<float>(g(rng));
  const std::vector<std::size_t> shape{12, 8}, strides{1, 12};
  const tensor_ref<const float> tv(buf.data(), shape, strides);
  std::vector<float> copy(buf.size());
  for (std::size_t i = 0; i < 12; ++i)
    for (std::size_t j = 0; j < 8; ++j) copy[i * 8 + j] = buf[j * 12 + i];
  CHECK(n_m_mask(tv, granularity::n_m_pattern{1, 3}) ==
        n_m_mask(tensor_ref<const float>(copy.data(), shape), granularity::n_m_pattern{1, 3}));
  CHECK(n_m_mask(make_view(std::as_const(copy), 12, 8), granularity::n_m_pattern{2, 4}) ==
        n_m_mask(tensor_ref<const float>(copy.data(), shape), granularity::n_m<2, 4>{}));
  // n_m_prune zeroes the pruned weights and returns the mask.
  std::vector<float> w = copy;
  const mask m = n_m_prune(make_view(w, 12, 8), granularity::n_m_pattern{1, 3}, "fc");
  for (std::size_t i = 0; i < w.size(); ++i) CHECK(w[i] == (m.bytes()[i] ? copy[i] : 0.0f));
  CHECK(m == n_m_mask(tensor_ref<const float>(copy.data(), shape), granularity::n_m_pattern{1, 3}));
  CHECK_NOTHROW(check_n_m(m, granularity::n_m_pattern{1, 3}, "fc"));
  CHECK_THROWS_WITH_AS(check_n_m(mask(shape), granularity::n_m_pattern{1, 3}, "fc"),
                       doctest::Contains("keeps 3 weights"), spruce::error);
}

TEST_CASE("a run-time pattern that does not form is an error naming the tensor, nothing is written") {
  std::vector<float> w{1, 2, 3, 4, 5, 6, 7, 8};
  const auto before = w;
  const std::vector<std::size_t> s{2, 4};
  for (auto p : {granularity::n_m_pattern{4, 4}, granularity::n_m_pattern{5, 4}, granularity::n_m_pattern{0, 0},
                 granularity::n_m_pattern{1, 0}}) {
    CAPTURE(p.n);
    CAPTURE(p.m);
    CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(w.data(), s), p, "fc1.weight"),
                         doctest::Contains("'fc1.weight'"), spruce::error);
    CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(w.data(), s), p, "fc1.weight"),
                         doctest::Contains("0 <= N < M"), spruce::error);
    CHECK_THROWS_AS(n_m_prune(tensor_ref<float>(w.data(), s), p, "fc1.weight"), spruce::error);
    CHECK(w == before);
    CHECK_THROWS_AS(is_n_m(mask(s), p), spruce::error);
    CHECK_THROWS_WITH_AS(check_n_m(mask(s), p, "fc1.weight"), doctest::Contains("'fc1.weight'"), spruce::error);
  }
  // Padding off, NaN weights: the compile-time errors.
  CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(w.data(), std::vector<std::size_t>{2, 4}),
                                granularity::n_m_pattern{1, 3, false}, "fc"),
                       doctest::Contains("not a multiple of 3"), spruce::error);
  w[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(w.data(), s), granularity::n_m_pattern{1, 3}, "fc"),
                       doctest::Contains("flat index 5"), spruce::error);
  CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(w.data(), s), granularity::n_m_pattern{2, 4}, "fc"),
                       doctest::Contains("flat index 5"), spruce::error);
  CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(w.data(), s), granularity::n_m_pattern{20, 40}, "fc"),
                       doctest::Contains("flat index 5"), spruce::error);
}

TEST_CASE("run-time and compile-time patterns: empty tensors and pattern checks agree") {
  const std::vector<std::size_t> e{0, 8};
  const mask m = n_m_mask(tensor_ref<const float>(nullptr, e), granularity::n_m_pattern{3, 7});
  CHECK(m.size() == 0);
  std::vector<std::uint8_t> b{1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0};
  const mask k(std::vector<std::size_t>{2, 6}, byte_buffer(b.begin(), b.end()));
  for (std::size_t n = 0; n < 6; ++n)
    for (std::size_t mm = n + 1; mm <= 7; ++mm) {
      CAPTURE(n);
      CAPTURE(mm);
      const granularity::n_m_pattern p{n, mm};
      bool want = true;  // naive: every group of mm along each row keeps at most n
      for (std::size_t r = 0; r < 2; ++r)
        for (std::size_t i0 = 0; i0 < 6; i0 += mm) {
          std::size_t kept = 0;
          for (std::size_t i = i0; i < std::min<std::size_t>(6, i0 + mm); ++i) kept += b[r * 6 + i];
          want = want && kept <= n;
        }
      CHECK(is_n_m(k, p) == want);
    }
  CHECK(is_n_m(k, granularity::n_m_pattern{2, 4}) == is_n_m(k, granularity::n_m<2, 4>{}));
}
