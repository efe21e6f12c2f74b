// N:M granularity against NVIDIA ASP's mn_1d_best (fixtures), a naive reference on random
// and adversarial data (ties, signed zeros, inf, partial groups, conv weights, strided
// views), the pattern checker, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/granularity/n_m.hpp"
#include "spruce/spruce.hpp"
#include "support/fixtures.hpp"

using namespace spruce;
namespace fx = spruce_test;

namespace {

// The pattern is well-formed exactly when 0 <= N < M.
template <std::size_t N, std::size_t M>
concept forms_n_m = requires { typename granularity::n_m<N, M>; };
static_assert(forms_n_m<2, 4> && forms_n_m<0, 4> && forms_n_m<1, 2> && forms_n_m<7, 40>);
static_assert(!forms_n_m<4, 4> && !forms_n_m<5, 4> && !forms_n_m<0, 0>);
static_assert(std::is_trivially_copyable_v<granularity::n_m<2, 4>>);
static_assert(granularity::is_n_m_v<granularity::n_m<2, 4>> && !granularity::is_n_m_v<int>);

constexpr float inf = std::numeric_limits<float>::infinity();

// Straight from the definition: for every group (row o, position t, groups of M along the
// axis) sort the indices by magnitude, larger first, lower index first among equals; keep
// the first min(N, len).
template <class T>
std::vector<std::uint8_t> reference(const std::vector<T>& w, const std::vector<std::size_t>& shape,
                                    std::size_t n, std::size_t m) {
  std::size_t outer = shape[0], axis = shape.size() > 1 ? shape[1] : shape[0], inner = 1;
  if (shape.size() == 1) outer = 1;
  for (std::size_t r = 2; r < shape.size(); ++r) inner *= shape[r];
  std::vector<std::uint8_t> keep(w.size(), 0);
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t t = 0; t < inner; ++t)
      for (std::size_t i0 = 0; i0 < axis; i0 += m) {
        std::vector<std::size_t> idx;
        for (std::size_t i = i0; i < std::min(axis, i0 + m); ++i) idx.push_back((o * axis + i) * inner + t);
        std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
          return std::fabs(w[a]) > std::fabs(w[b]);
        });
        for (std::size_t j = 0; j < std::min(n, idx.size()); ++j) keep[idx[j]] = 1;
      }
  return keep;
}

template <std::size_t N, std::size_t M, class T>
mask spruce_mask(const std::vector<T>& w, const std::vector<std::size_t>& shape) {
  return n_m_mask(tensor_ref<const T>(w.data(), shape), granularity::n_m<N, M>{});
}

template <std::size_t N, std::size_t M, class T>
void check_against_reference(const std::vector<T>& w, const std::vector<std::size_t>& shape) {
  INFO("pattern " << N << ":" << M << " shape " << shape_string(shape));
  const mask got = spruce_mask<N, M>(w, shape);
  const auto want = reference(w, shape, N, M);
  REQUIRE(std::ranges::equal(got.shape(), shape));
  REQUIRE(got.size() == want.size());
  const auto diff = std::ranges::mismatch(got.bytes(), want);
  if (diff.in1 != got.bytes().end()) {
    const auto i = static_cast<std::size_t>(diff.in1 - got.bytes().begin());
    FAIL("first difference at flat index " << i << " (value " << w[i] << "): spruce "
                                           << int(*diff.in1) << ", reference " << int(*diff.in2));
  }
  CHECK(is_n_m(got, granularity::n_m<N, M>{}));
}

std::vector<int> bytes_of(const mask& m) { return {m.bytes().begin(), m.bytes().end()}; }

template <class T>
std::vector<T> normal(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<T> g(T(0), T(1));
  std::vector<T> v(n);
  for (T& x : v) x = g(rng);
  return v;
}

// Values from a tiny set: most groups hold ties, signed zeros and infinities.
template <class T = float>
std::vector<T> tie_heavy(std::size_t n, std::mt19937& rng) {
  const T big = std::numeric_limits<T>::infinity();
  const T pool[] = {T(0), -T(0), T(1), T(-1), T(2), T(-2), big, -big, T(0.5)};
  std::uniform_int_distribution<int> pick(0, 8);
  std::vector<T> v(n);
  for (T& x : v) x = pool[pick(rng)];
  return v;
}

std::size_t product(const std::vector<std::size_t>& s) {
  return std::accumulate(s.begin(), s.end(), std::size_t{1}, std::multiplies<>());
}

template <std::size_t N, std::size_t M>
void all_shapes(std::mt19937& rng) {
  const std::vector<std::vector<std::size_t>> shapes = {
      {1, 1},   {1, M},       {3, M - 1},    {7, 2 * M + 1}, {5, 3 * M},     {M + 3},
      {16, 64}, {9, 7, 3},    {6, 2 * M, 5}, {4, M + 2, 3, 3}, {3, 2 * M, 1, 2},
      {300, 256},                  // parallel, whole groups: split by groups
      {257, 130},                  // parallel rows with a partial group
      {64, 4 * M + 1, 3, 3},       // parallel conv rows with a partial group
      {3, 20 * M + 2, 3, 3},       // 3x3 kernels: several tiles per row, the last one short
      {2, 50 * M + 1, 3},          // short run-time kernel: tiles
      {3, 2 * M + 1, 4, 5},        // long kernel rows: no tiles
      {2, M, 17},
      {9000 * M},                  // one long row of whole groups: split by groups
      {9000 * M + 3},              // one long row with a partial group
      {2, M, 1, 1, 3}};            // rank 5: trailing axes flatten into the position
  for (const auto& s : shapes) {
    check_against_reference<N, M>(normal<float>(product(s), rng), s);
    check_against_reference<N, M>(tie_heavy(product(s), rng), s);
  }
  for (const auto& s : {std::vector<std::size_t>{33, 2 * M + 3}, std::vector<std::size_t>{5, M, 3, 3},
                        std::vector<std::size_t>{300, 4 * M}, std::vector<std::size_t>{4, 20 * M + 1, 3, 3},
                        std::vector<std::size_t>{3, 2 * M, 20}}) {
    check_against_reference<N, M>(normal<double>(product(s), rng), s);
    check_against_reference<N, M>(tie_heavy<double>(product(s), rng), s);
  }
}

}  // namespace

TEST_CASE("N:M matches NVIDIA ASP mn_1d_best on every fixture case") {
  const auto j = fx::load_fixture("nm_asp.json");
  REQUIRE(j["cases"].size() == 5);
  std::size_t i = 0;
  for (const auto& c : j["cases"]) {
    const auto shape = fx::shape(c["shape"]);
    const auto w = fx::values(c["values"]);
    const auto want = fx::mask_bytes(c["mask"]);
    const std::size_t n = c["n"].get<std::size_t>(), m = c["m"].get<std::size_t>();
    INFO("case " << i << " shape " << c["shape"].dump() << " " << n << ":" << m);
    mask got;
    if (n == 2 && m == 4)
      got = spruce_mask<2, 4>(w, shape);
    else if (n == 1 && m == 4)
      got = spruce_mask<1, 4>(w, shape);
    else if (n == 4 && m == 8)
      got = spruce_mask<4, 8>(w, shape);
    else
      FAIL("the test does not instantiate pattern " << n << ":" << m);
    REQUIRE(std::ranges::equal(got.shape(), shape));
    CHECK(std::ranges::equal(got.bytes(), want));
    CHECK(reference(w, shape, n, m) == want);  // the reference agrees with ASP too
    ++i;
  }
}

TEST_CASE("2:4 fast path and the general paths agree with the reference") {
  std::mt19937 rng(11);
  SUBCASE("2:4") { all_shapes<2, 4>(rng); }
  SUBCASE("1:4") { all_shapes<1, 4>(rng); }
  SUBCASE("3:4") { all_shapes<3, 4>(rng); }
  SUBCASE("0:4 keeps nothing") { all_shapes<0, 4>(rng); }
  SUBCASE("1:2") { all_shapes<1, 2>(rng); }
  SUBCASE("2:8") { all_shapes<2, 8>(rng); }
  SUBCASE("4:8") { all_shapes<4, 8>(rng); }
  SUBCASE("5:16") { all_shapes<5, 16>(rng); }
  SUBCASE("7:40 (selection per group)") { all_shapes<7, 40>(rng); }
  SUBCASE("0:40") { all_shapes<0, 40>(rng); }
}

TEST_CASE("ties keep the lower index, signed zeros tie, infinities are the largest") {
  const std::vector<std::size_t> s{1, 4};
  const auto keep = [&](std::vector<float> w) { return bytes_of(spruce_mask<2, 4>(w, s)); };
  CHECK(keep({1.0f, -1.0f, 1.0f, -1.0f}) == std::vector<int>{1, 1, 0, 0});
  CHECK(keep({-1.0f, 1.0f, 2.0f, 1.0f}) == std::vector<int>{1, 0, 1, 0});
  CHECK(keep({0.0f, -0.0f, 0.0f, -0.0f}) == std::vector<int>{1, 1, 0, 0});
  CHECK(keep({-0.0f, 0.0f, 0.0f, 5.0f}) == std::vector<int>{1, 0, 0, 1});
  CHECK(keep({1.0f, -inf, 3.0f, inf}) == std::vector<int>{0, 1, 0, 1});
  CHECK(keep({inf, -inf, inf, 1e30f}) == std::vector<int>{1, 1, 0, 0});
  CHECK(keep({1e-45f, 0.0f, -1e-45f, 0.0f}) == std::vector<int>{1, 0, 1, 0});  // denormals
  // General path, the same rule.
  const std::vector<float> eight{3.0f, 1.0f, 3.0f, -3.0f, 1.0f, 0.0f, -0.0f, 3.0f};
  const auto b = bytes_of(spruce_mask<3, 8>(eight, {1, 8}));
  CHECK(b == std::vector<int>{1, 0, 1, 1, 0, 0, 0, 0});
}

TEST_CASE("a partial group behaves as if zero-padded: it keeps min(N, length)") {
  // [2, 6] with 2:4: groups of 4 then 2; the pair keeps both, even when both are zero
  // (the padding loses the tie).
  const std::vector<float> w{1, 2, 3, 4, 0.0f, -0.0f, 4, 3, 2, 1, -5, 0.5f};
  const auto b = bytes_of(spruce_mask<2, 4>(w, {2, 6}));
  CHECK(b == std::vector<int>{0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1});
  // [1, 5] with 3:4: a partial group of one keeps it; an axis shorter than M is one partial group.
  CHECK(spruce_mask<3, 4>(std::vector<float>{1, 2, 3, 4, 0}, {1, 5}).count_kept() == 4);
  CHECK(spruce_mask<2, 4>(std::vector<float>{0.0f, 7}, {1, 2}).count_kept() == 2);
  CHECK(spruce_mask<1, 4>(std::vector<float>{0.0f, 7, 7}, {1, 3}).count_kept() == 1);
  // 1 x 1
  CHECK(spruce_mask<2, 4>(std::vector<float>{-3}, {1, 1}).count_kept() == 1);
  CHECK(spruce_mask<0, 4>(std::vector<float>{-3}, {1, 1}).count_kept() == 0);
}

TEST_CASE("axes: rank 1 is one row, rank 3 and 4 group the input axis per position") {
  // Rank 1: groups along axis 0.
  const std::vector<float> v{4, 3, 2, 1, 1, 2, 3, 4, 9};
  const auto b = bytes_of(spruce_mask<2, 4>(v, {9}));
  CHECK(b == std::vector<int>{1, 1, 0, 0, 0, 0, 1, 1, 1});
  // [1, 4, 2, 1] conv weight: position (kh=0) and (kh=1) hold independent groups along in.
  const std::vector<float> c{1, 8,   //
                             2, 7,   //
                             3, 6,   //
                             4, 5};  // flat (in, kh)
  const auto cb = bytes_of(spruce_mask<2, 4>(c, {1, 4, 2, 1}));
  CHECK(cb == std::vector<int>{0, 1, 0, 1, 1, 0, 1, 0});
  const auto rb = bytes_of(spruce_mask<2, 4>(c, {1, 4, 2}));  // rank 3 [out, in, k]: the same
  CHECK(rb == std::vector<int>{0, 1, 0, 1, 1, 0, 1, 0});
}

TEST_CASE("empty tensors give empty masks") {
  for (const auto& s : {std::vector<std::size_t>{0, 8}, std::vector<std::size_t>{8, 0},
                        std::vector<std::size_t>{0}, std::vector<std::size_t>{4, 8, 0, 3}}) {
    const std::vector<float> w;
    const mask m = n_m_mask(tensor_ref<const float>(w.data(), s), granularity::n_m<2, 4>{});
    CHECK(m.size() == 0);
    CHECK(std::ranges::equal(m.shape(), s));
    CHECK(is_n_m(m, granularity::n_m<2, 4>{}));
  }
}

TEST_CASE("views: tensor_view, strided views and mutable refs") {
  std::mt19937 rng(5);
  const std::size_t rows = 37, cols = 200;
  auto buf = normal<float>(rows * cols, rng);
  // The transposed [cols, rows] view and its contiguous copy give the same mask.
  const auto t = make_strided_view(buf.data(), std::array<std::size_t, 2>{cols, rows},
                                   std::array<std::size_t, 2>{1, cols});
  std::vector<float> copy(rows * cols);
  for (std::size_t a = 0; a < cols; ++a)
    for (std::size_t r = 0; r < rows; ++r) copy[a * rows + r] = buf[r * cols + a];
  const mask mt = n_m_mask(t, granularity::n_m<2, 4>{});
  CHECK(mt == spruce_mask<2, 4>(copy, {cols, rows}));
  CHECK(std::ranges::equal(mt.bytes(), reference(copy, {cols, rows}, 2, 4)));

  const auto v = make_view(buf, rows, cols);
  CHECK(n_m_mask(v, granularity::n_m<2, 4>{}) == spruce_mask<2, 4>(buf, {rows, cols}));
  CHECK(n_m_mask<2, 4>(tensor_ref<float>(v)) == spruce_mask<2, 4>(buf, {rows, cols}));
  CHECK(n_m_mask<2, 4>(make_view(std::as_const(buf), rows, cols)) ==
        spruce_mask<2, 4>(buf, {rows, cols}));
}

TEST_CASE("n_m_prune zeroes the pruned weights to +0 and returns the mask") {
  std::mt19937 rng(9);
  std::vector<std::size_t> s{24, 18, 3, 3};
  auto w = normal<float>(product(s), rng);
  for (std::size_t i = 0; i < w.size(); i += 7) w[i] = -0.0f;
  const auto original = w;
  const mask want = spruce_mask<2, 4>(w, s);
  const mask got = n_m_prune(tensor_ref<float>(w.data(), s), granularity::n_m<2, 4>{}, "conv");
  CHECK(got == want);
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (want.bytes()[i]) {
      REQUIRE(std::bit_cast<std::uint32_t>(w[i]) == std::bit_cast<std::uint32_t>(original[i]));
    } else {
      REQUIRE(std::bit_cast<std::uint32_t>(w[i]) == 0u);
    }
  }
  // Strided and tensor_view overloads prune in place too.
  std::vector<float> m2{1, 2, 3, 4, 5, 6, 7, 8};
  const auto tv = make_strided_view(m2.data(), std::array<std::size_t, 2>{1, 4},
                                    std::array<std::size_t, 2>{8, 2});  // 1, 3, 5, 7
  n_m_prune(tv, granularity::n_m<1, 4>{});
  CHECK(m2 == std::vector<float>{0, 2, 0, 4, 0, 6, 7, 8});
  CHECK(is_n_m(n_m_mask(make_view(m2, 2, 4), granularity::n_m<3, 4>{}), granularity::n_m<3, 4>{}));
}

TEST_CASE("is_n_m and check_n_m") {
  const std::vector<std::size_t> s{2, 10};
  const mask ones(s);
  CHECK(!is_n_m(ones, granularity::n_m<2, 4>{}));
  CHECK(is_n_m(mask(s, 0), granularity::n_m<2, 4>{}));
  std::vector<float> w(20);
  std::iota(w.begin(), w.end(), 1.0f);
  const mask m = spruce_mask<2, 4>(w, s);
  CHECK(is_n_m(m, granularity::n_m<2, 4>{}));
  CHECK(is_n_m(m, granularity::n_m<3, 4>{}));    // at most N: fewer is fine
  CHECK(!is_n_m(m, granularity::n_m<1, 4>{}));
  CHECK(!is_n_m(m, granularity::n_m<2, 4>{.allow_padding = false}));  // 10 % 4 != 0
  CHECK_NOTHROW(check_n_m(m, granularity::n_m<2, 4>{}, "fc"));
  CHECK_THROWS_WITH_AS(check_n_m(ones, granularity::n_m<2, 4>{}, "fc"),
                       doctest::Contains("mask of tensor 'fc'"), spruce::error);
  CHECK_THROWS_WITH_AS(check_n_m(ones, granularity::n_m<2, 4>{}, "fc"),
                       doctest::Contains("flat index 0"), spruce::error);
  CHECK_THROWS_WITH_AS(check_n_m(m, granularity::n_m<2, 4>{.allow_padding = false}, "fc"),
                       doctest::Contains("allow_padding"), spruce::error);
  // The partial group alone breaks the pattern: {2, 6} keeps 3 in its last (partial) group.
  byte_buffer b(12, 0);
  b[4] = b[5] = 1;
  b[6 + 4] = 1;
  CHECK(is_n_m(mask(std::vector<std::size_t>{2, 6}, b), granularity::n_m<2, 4>{}));
  CHECK(!is_n_m(mask(std::vector<std::size_t>{2, 6}, b), granularity::n_m<1, 4>{}));
  CHECK_THROWS_WITH_AS(check_n_m(mask(std::vector<std::size_t>{2, 6}, b), granularity::n_m<1, 4>{}),
                       doctest::Contains("flat index 4"), spruce::error);
  // Conv masks: groups per (out, kh, kw).
  std::mt19937 rng(2);
  const std::vector<std::size_t> cs{6, 9, 3, 3};
  const mask cm = spruce_mask<2, 4>(normal<float>(product(cs), rng), cs);
  CHECK(is_n_m(cm, granularity::n_m<2, 4>{}));
  CHECK(!is_n_m(mask(cs), granularity::n_m<2, 4>{}));
  CHECK(is_n_m(mask(), granularity::n_m<2, 4>{}));
}

TEST_CASE("bad input: padding off with a short or ragged axis, NaN weights") {
  std::vector<float> w{1, 2, 3, 4, 5, 6};
  const auto original = w;
  const granularity::n_m<2, 4> strict{.allow_padding = false};
  // Axis shorter than M.
  CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(w.data(), std::vector<std::size_t>{2, 3}),
                                strict, "fc1.weight"),
                       doctest::Contains("tensor 'fc1.weight'"), spruce::error);
  // Axis not a multiple of M.
  CHECK_THROWS_WITH_AS(n_m_prune(tensor_ref<float>(w.data(), std::vector<std::size_t>{1, 6}),
                                 strict, "fc1.weight"),
                       doctest::Contains("length 6 is not a multiple of 4"), spruce::error);
  CHECK(w == original);
  // Multiple of M: fine; and padding allowed: fine.
  CHECK_NOTHROW(n_m_mask(tensor_ref<const float>(w.data(), std::vector<std::size_t>{3, 1, 2}),
                         granularity::n_m<0, 1>{.allow_padding = false}));
  CHECK_NOTHROW(n_m_mask(tensor_ref<const float>(w.data(), std::vector<std::size_t>{2, 3}),
                         granularity::n_m<2, 4>{}));

  // NaN: the message names the tensor and the first NaN's flat index; nothing is written.
  std::mt19937 rng(4);
  for (const auto& s : {std::vector<std::size_t>{2, 10}, std::vector<std::size_t>{300, 256},
                        std::vector<std::size_t>{64, 17, 3, 3}, std::vector<std::size_t>{3, 80}}) {
    auto x = normal<float>(product(s), rng);
    const std::size_t at = x.size() * 2 / 3 + 1;
    x[at] = std::numeric_limits<float>::quiet_NaN();
    x[x.size() - 1] = -std::numeric_limits<float>::quiet_NaN();
    const auto before = x;
    const std::string where = "flat index " + std::to_string(at);
    CHECK_THROWS_WITH_AS(n_m_prune(tensor_ref<float>(x.data(), s), granularity::n_m<2, 4>{}, "layer"),
                         doctest::Contains(where.c_str()), spruce::error);
    CHECK_THROWS_WITH_AS(n_m_prune(tensor_ref<float>(x.data(), s), granularity::n_m<3, 8>{}, "layer"),
                         doctest::Contains("tensor 'layer'"), spruce::error);
    CHECK_THROWS_WITH_AS(n_m_mask(tensor_ref<const float>(x.data(), s), granularity::n_m<5, 40>{}, "layer"),
                         doctest::Contains(where.c_str()), spruce::error);
    CHECK(std::memcmp(x.data(), before.data(), x.size() * sizeof(float)) == 0);
  }
  std::vector<double> d{1, std::numeric_limits<double>::quiet_NaN(), 3};
  CHECK_THROWS_WITH_AS(n_m_mask(make_view(d), granularity::n_m<1, 2>{}, "bias"),
                       doctest::Contains("tensor 'bias' at flat index 1"), spruce::error);
}
