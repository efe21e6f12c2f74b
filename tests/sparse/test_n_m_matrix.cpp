// N:M compressed format and its sparse x dense product against a dense reference (1e-4
// relative) for the patterns the kernels compile (N = 1..3 of 4, 1 of 2, 1, 2 and 4 of 8)
// and run-time ones, on random patterns with groups keeping fewer than N, empty rows,
// all-zero matrices, 1 x 1 and column counts M does not divide; the documented position
// packing; exact round trips; the validator; errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "spruce/spruce.hpp"
#include "spmm_check.hpp"
#include "spruce/sparse/n_m_matrix.hpp"

using namespace spruce;

namespace {

using shape2 = std::vector<std::size_t>;
using spmm_check::check_product;
using spmm_check::layout;

/// Random m x k weights (some -0) and a keep mask with the N:M pattern along the rows:
/// each group keeps a random number of at most N of its entries (N with probability
/// `full`, so most groups are full but some keep fewer); every third row keeps nothing.
template <class T>
std::pair<std::vector<T>, byte_buffer> random_n_m(std::size_t m, std::size_t k, std::size_t n_keep, std::size_t group,
                                                  double full, std::mt19937& rng) {
  std::normal_distribution<double> g;
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<T> w(m * k);
  for (auto& x : w) x = u(rng) < 0.05 ? T(-0.0) : static_cast<T>(g(rng));
  byte_buffer keep(m * k, 0);
  std::vector<std::size_t> order(group);
  for (std::size_t i = 0; i < m; ++i) {
    if (i % 3 == 1) continue;
    for (std::size_t j0 = 0; j0 < k; j0 += group) {
      const std::size_t len = std::min(group, k - j0);
      std::size_t count = u(rng) < full ? n_keep : std::uniform_int_distribution<std::size_t>(0, n_keep)(rng);
      count = std::min(count, len);
      order.resize(len);
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::shuffle(order.begin(), order.end(), rng);
      for (std::size_t t = 0; t < count; ++t) keep[i * k + j0 + order[t]] = 1;
    }
  }
  return {std::move(w), std::move(keep)};
}

constexpr std::array<std::pair<std::size_t, std::size_t>, 11> patterns{
    {{2, 4}, {1, 4}, {3, 4}, {1, 2}, {1, 8}, {2, 8}, {4, 8}, {3, 8}, {5, 16}, {1, 3}, {0, 4}}};

}  // namespace

TEST_CASE_TEMPLATE("n:m spmm matches the dense reference", T, float, double) {
  std::mt19937 rng(41);
  const std::array<std::pair<T, T>, 3> scalars{{{T(1), T(0)}, {T(0.5), T(-2)}, {T(2), T(1)}}};
  std::size_t round = 0;
  for (auto [nk, gm] : patterns)
    for (double full : {0.3, 1.0})
      for (auto [m, k, n] : {std::array<std::size_t, 3>{1, 1, 1}, {7, 10, 5}, {64, 100, 70}, {33, 257, 130}}) {
        CAPTURE(nk);
        CAPTURE(gm);
        CAPTURE(full);
        CAPTURE(m);
        CAPTURE(k);
        CAPTURE(n);
        auto [w, bytes] = random_n_m<T>(m, k, nk, gm, full, rng);
        const shape2 sa{m, k};
        const mask keep(sa, std::move(bytes));
        const auto a = sparse::n_m_matrix<T>::from_dense(tensor_ref<const T>(w.data(), sa), keep, nk, gm);
        CHECK_NOTHROW(a.validate());
        CHECK(a.n() == nk);
        CHECK(a.m() == gm);
        CHECK(a.stored_values() == m * ((k + gm - 1) / gm) * nk);
        // Round trip: exactly the masked weights (pruned entries +0).
        std::vector<T> masked = w;
        apply_mask(tensor_ref<T>(masked.data(), sa), keep);
        std::vector<T> back(m * k, T(7));
        a.to_dense(tensor_ref<T>(back.data(), sa));
        CHECK(std::memcmp(back.data(), masked.data(), back.size() * sizeof(T)) == 0);
        // The masked weights' nonzeros have the pattern too (a kept -0 that no slot holds
        // comes back as +0, hence == rather than bits).
        const auto from_nonzeros = sparse::n_m_matrix<T>::from_dense(tensor_ref<const T>(masked.data(), sa), nk, gm);
        std::fill(back.begin(), back.end(), T(7));
        from_nonzeros.to_dense(tensor_ref<T>(back.data(), sa));
        CHECK(back == masked);
        const auto [alpha, beta] = scalars[round++ % scalars.size()];
        check_product<T>(a, masked, m, k, n, rng, alpha, beta);
      }
}

TEST_CASE_TEMPLATE("n:m spmm: column-major B and C, deep K, narrow and wide B", T, float, double) {
  std::mt19937 rng(43);
  // Every K here but the smallest spans several packed slices; n = 1, 3, 9, 33 select
  // narrower register tiles and leave fewer panels than threads.
  for (auto [nk, gm] : {std::pair<std::size_t, std::size_t>{2, 4}, {1, 4}, {2, 8}, {3, 5}})
    for (auto [m, k, n] : {std::array<std::size_t, 3>{9, 5001, 6}, {6, 11, 3}, {130, 70, 1}, {20, 300, 67}, {17, 40, 9},
                           {12, 64, 33}})
      for (layout lb : {layout::row, layout::col})
        for (layout lc : {layout::row, layout::col}) {
          if (k > 1000 && lb != lc) continue;  // the deep case is the slow one; two layouts suffice
          CAPTURE(nk);
          CAPTURE(gm);
          CAPTURE(m);
          CAPTURE(k);
          CAPTURE(n);
          CAPTURE(static_cast<int>(lb));
          CAPTURE(static_cast<int>(lc));
          auto [w, bytes] = random_n_m<T>(m, k, nk, gm, 0.9, rng);
          const shape2 sa{m, k};
          const mask keep(sa, std::move(bytes));
          apply_mask(tensor_ref<T>(w.data(), sa), keep);
          const auto a = sparse::n_m_matrix<T>::from_dense(tensor_ref<const T>(w.data(), sa), keep, nk, gm);
          check_product<T>(a, w, m, k, n, rng, T(1), T(0), lb, lc);
          check_product<T>(a, w, m, k, n, rng, T(-1.5), T(0.25), lb, lc);
        }
}

TEST_CASE_TEMPLATE("n:m from the mask of n_m_prune (2:4 and 1:4)", T, float, double) {
  std::mt19937 rng(47);
  std::normal_distribution<double> g;
  const shape2 sa{24, 98};  // 98 = 24 groups of 4 and a partial one of 2
  std::vector<T> w(24 * 98);
  for (auto& x : w) x = static_cast<T>(g(rng));
  std::vector<T> w14 = w;
  const mask m24 = n_m_prune(tensor_ref<T>(w.data(), sa), granularity::n_m<2, 4>{});
  const auto a = sparse::n_m_matrix<T>::from_dense(tensor_ref<const T>(w.data(), sa), m24, 2, 4);
  const auto b = sparse::n_m_matrix<T>::from_dense(tensor_ref<const T>(w.data(), sa), 2, 4);
  CHECK(a.values() == b.values());
  CHECK(a.positions() == b.positions());
  check_product<T>(a, w, 24, 98, 77, rng, T(1), T(0));
  const mask m14 = n_m_prune(tensor_ref<T>(w14.data(), sa), granularity::n_m<1, 4>{});
  const auto c = sparse::n_m_matrix<T>::from_dense(tensor_ref<const T>(w14.data(), sa), m14, 1, 4);
  check_product<T>(c, w14, 24, 98, 40, rng, T(1), T(0));
  // A 2:4 mask fits 3:4 storage too.
  const auto d = sparse::n_m_matrix<T>::from_dense(tensor_ref<const T>(w.data(), sa), m24, 3, 4);
  check_product<T>(d, w, 24, 98, 16, rng, T(1), T(0));
}

TEST_CASE("n:m positions are packed as documented: 2 bits each for M = 4, fillers at the lowest free positions") {
  // One row, K = 10: groups {0-3}, {4-7} and the partial {8-9}.
  std::vector<float> w{0, 1, 0, 2, 3, 0, 0, 0, 0, 4};
  const shape2 s{1, 10};
  const auto a = sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 2, 4);
  CHECK(a.groups_per_row() == 3);
  CHECK(a.index_bits() == 2);
  CHECK(a.row_bytes() == 2);
  CHECK(a.values() == std::vector<float>{1, 2, 3, 0, 0, 4});
  // Positions 1, 3 | 0, 1 | 0, 1, two bits each, low bits first.
  CHECK(a.positions() == std::vector<std::uint8_t>{1 | 3 << 2 | 0 << 4 | 1 << 6, 0 | 1 << 2});
  CHECK(a.position(0, 0, 1) == 3);
  CHECK(a.position(0, 2, 1) == 1);
  // 3:4 on two columns: the third slot points past the matrix and holds a zero.
  std::vector<float> two{5, 6};
  const shape2 s2{1, 2};
  const auto b = sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(two.data(), s2), 3, 4);
  CHECK(b.values() == std::vector<float>{5, 6, 0});
  CHECK(b.positions() == std::vector<std::uint8_t>{0 | 1 << 2 | 2 << 4});
  std::mt19937 rng(53);
  check_product<float>(b, two, 1, 2, 7, rng, 1.0f, 0.0f);
  // Index widths: 1 bit for M = 2, 4 bits up to 16, 8 bits past it.
  CHECK(sparse::n_m_matrix<float>::index_bits_for(2) == 1);
  CHECK(sparse::n_m_matrix<float>::index_bits_for(3) == 2);
  CHECK(sparse::n_m_matrix<float>::index_bits_for(8) == 4);
  CHECK(sparse::n_m_matrix<float>::index_bits_for(16) == 4);
  CHECK(sparse::n_m_matrix<float>::index_bits_for(17) == 8);
  // -0 in a filler slot of a matrix built from its nonzeros survives the round trip.
  std::vector<float> neg{-0.0f, 0, 0, 7};
  const shape2 s4{1, 4};
  const auto c = sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(neg.data(), s4), 2, 4);
  std::vector<float> back(4, 1.0f);
  c.to_dense(tensor_ref<float>(back.data(), s4));
  CHECK(std::signbit(back[0]));
  CHECK(std::memcmp(back.data(), neg.data(), sizeof(float) * 4) == 0);
}

TEST_CASE("n:m from_dense rejects groups that keep more than N and says how to fix it") {
  std::vector<float> w(3 * 12, 1.0f);
  const shape2 s{3, 12};
  byte_buffer bytes(36, 0);
  bytes[1 * 12 + 8] = bytes[1 * 12 + 9] = bytes[1 * 12 + 11] = 1;  // row 1, group 2 keeps 3 of 4
  const mask keep(s, std::move(bytes));
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep, 2, 4),
                       doctest::Contains("keeps 3 entries in row 1, group 2 (columns 8 to 11)"), spruce::error);
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep, 2, 4),
                       doctest::Contains("prune with spruce::n_m_prune first"), spruce::error);
  CHECK_NOTHROW(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep, 3, 4));
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 2, 4),
                       doctest::Contains("the matrix has 4 entries in row 0, group 0"), spruce::error);
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 4, 4),
                       doctest::Contains("0 <= N < M <= 256"), spruce::error);
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 0, 0),
                       doctest::Contains("0 <= N < M <= 256"), spruce::error);
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 2, 257),
                       doctest::Contains("0 <= N < M <= 256"), spruce::error);
  const shape2 wrong{12, 3};
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), mask(wrong), 2, 4),
                       doctest::Contains("pass the mask computed for this weight"), spruce::error);
  const shape2 s3{3, 3, 4};
  CHECK_THROWS_WITH_AS(sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s3), 2, 4),
                       doctest::Contains("not 2-D"), spruce::error);
}

TEST_CASE("the n:m validator catches hand-built mistakes") {
  using nm = sparse::n_m_matrix<float>;
  // 2 x 8, 2:4: two groups of two slots per row, positions in one byte per row.
  const std::uint8_t ok = 0 | 2 << 2 | 1 << 4 | 3 << 6;  // {0, 2} {1, 3}
  CHECK_NOTHROW(nm(2, 8, 2, 4, std::vector<float>(8, 1.0f), {ok, ok}));
  CHECK_NOTHROW(nm::from_parts(2, 8, 2, 4, std::vector<float>(8, 1.0f), {ok, ok}));
  const std::uint8_t dup = 1 | 1 << 2 | 1 << 4 | 3 << 6;       // {1, 1}
  const std::uint8_t unsorted = 2 | 0 << 2 | 1 << 4 | 3 << 6;  // {2, 0}
  CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<float>(8, 1.0f), {ok, dup}), doctest::Contains("duplicated or unsorted"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<float>(8, 1.0f), {unsorted, ok}),
                       doctest::Contains("row 0, group 0 are not strictly increasing"), spruce::error);
  CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<float>(7, 1.0f), {ok, ok}), doctest::Contains("7 values"), spruce::error);
  CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<float>(8, 1.0f), {ok}), doctest::Contains("1 position bytes"),
                       spruce::error);
  // M = 3 stores 2-bit positions, so a position of 3 fits the bits but not the group.
  CHECK_THROWS_WITH_AS(nm(1, 3, 1, 3, {1.0f}, {3}), doctest::Contains("position 3 at row 0, group 0, slot 0 is not below M = 3"),
                       spruce::error);
  // 1 x 6, 2:4: the second group covers columns 4-5; a nonzero in slot position 2 or 3
  // would lie past the matrix.
  CHECK_NOTHROW(nm(1, 6, 2, 4, {1, 2, 3, 0}, {0 | 1 << 2 | 1 << 4 | 2 << 6}));
  CHECK_THROWS_WITH_AS(nm(1, 6, 2, 4, {1, 2, 3, 4}, {0 | 1 << 2 | 1 << 4 | 2 << 6}),
                       doctest::Contains("past the 6 columns (padding must be zero)"), spruce::error);
  // 1 x 4, 2:4 uses 4 bits of its byte; the other 4 must be zero.
  CHECK_NOTHROW(nm(1, 4, 2, 4, {1, 2}, {0 | 1 << 2}));
  CHECK_THROWS_WITH_AS(nm(1, 4, 2, 4, {1, 2}, {0 | 1 << 2 | 1 << 5}), doctest::Contains("nonzero unused bits"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(nm(1, 4, 4, 4, {1, 2, 3, 4}, {0}), doctest::Contains("0 <= N < M <= 256"), spruce::error);
}

TEST_CASE("n:m spmm on empty shapes and alpha == 0 leaves C as beta * C, and shape errors write nothing") {
  std::mt19937 rng(59);
  for (auto [m, k, n] : {std::array<std::size_t, 3>{0, 5, 3}, {4, 5, 0}, {4, 0, 6}, {5, 7, 4}}) {
    CAPTURE(m);
    CAPTURE(k);
    CAPTURE(n);
    auto [w, bytes] = random_n_m<float>(m, k, 2, 4, 0.8, rng);
    const shape2 sa{m, k};
    const mask keep(sa, std::move(bytes));
    apply_mask(tensor_ref<float>(w.data(), sa), keep);
    const auto a = sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), sa), keep, 2, 4);
    check_product<float>(a, w, m, k, n, rng, 1.0f, 0.0f);  // NaN in C is overwritten
    check_product<float>(a, w, m, k, n, rng, 1.0f, 2.0f);
    check_product<float>(a, w, m, k, n, rng, 0.0f, 0.0f);
    check_product<float>(a, w, m, k, n, rng, 0.0f, -3.0f);
  }
  const auto a = sparse::n_m_matrix<float>::from_parts(2, 3, 1, 2, {1, 2, 3, 4}, {0, 1});
  std::vector<float> b(4 * 2), c(2 * 2, 9.0f);
  const shape2 sb{4, 2}, sc{2, 2};
  CHECK_THROWS_WITH_AS(sparse::spmm(a, tensor_ref<const float>(b.data(), sb), tensor_ref<float>(c.data(), sc)),
                       doctest::Contains("A is 2 x 3, B [4, 2], C [2, 2]; need B [A.cols, N] and C [A.rows, N]"),
                       spruce::error);
  CHECK(c == std::vector<float>(4, 9.0f));
  const shape2 sb3{3, 2}, strided{8, 2};
  std::vector<float> wide(3 * 2 * 4);
  CHECK_THROWS_WITH_AS(sparse::spmm(a, tensor_ref<const float>(wide.data(), sb3, strided), tensor_ref<float>(c.data(), sc)),
                       doctest::Contains("row-major or column-major"), spruce::error);
  CHECK(c == std::vector<float>(4, 9.0f));
  std::vector<float> out(5);
  const shape2 s5{5};
  CHECK_THROWS_WITH_AS(a.to_dense(tensor_ref<float>(out.data(), s5)), doctest::Contains("pass a packed matrix"),
                       spruce::error);
}
