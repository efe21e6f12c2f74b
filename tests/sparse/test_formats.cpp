// One conformance suite for every sparse format: CSR, block-sparse (several block shapes),
// N:M (several patterns) and a user's COO format defined outside spruce (user_format.hpp)
// all go through the same checks against a double-precision dense reference (1e-4
// relative): construction from a dense view and a mask, exact round trips, validate() on
// good and bad hand-built arrays, products for float and double with row- and column-major
// B and C, the alpha / beta rules (alpha == 0 does not read B, beta == 0 overwrites NaN),
// empty shapes, 1 x 1, odd shapes, deep K (several packed slices), narrow and wide B, and
// the errors that write nothing. Format-specific facts (the documented N:M position
// packing, -0 in stored blocks, 64-bit indices) follow as small cases of their own.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "spruce/spruce.hpp"
#include "spruce/sparse/block_sparse.hpp"
#include "spruce/sparse/csr.hpp"
#include "spruce/sparse/format.hpp"
#include "spruce/sparse/n_m_matrix.hpp"
#include "spmm_check.hpp"
#include "user_format.hpp"

using namespace spruce;

namespace {

using shape2 = std::vector<std::size_t>;
using spmm_check::check_product;
using spmm_check::layout;

static_assert(sparse::sparse_format<sparse::csr_matrix<float>>);
static_assert(sparse::sparse_format<sparse::csr_matrix<double, std::int64_t>>);
static_assert(sparse::sparse_format<sparse::block_sparse_matrix<float>>);
static_assert(sparse::sparse_format<sparse::n_m_matrix<double>>);
static_assert(sparse::sparse_format<user::coo_matrix<float>>);
static_assert(!sparse::sparse_format<std::vector<float>>);

/// Random weights, about 5% of them -0 (round trips are compared bit for bit).
template <class T>
std::vector<T> random_weights(std::size_t count, std::mt19937& rng) {
  std::normal_distribution<double> g;
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<T> w(count);
  for (auto& x : w) x = u(rng) < 0.05 ? T(-0.0) : static_cast<T>(g(rng));
  return w;
}

/// An unstructured keep mask: each entry kept with probability `density`; every third row
/// keeps nothing (unless density is 1).
byte_buffer random_unstructured(std::size_t m, std::size_t k, double density, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  byte_buffer keep(m * k, 0);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < k; ++j)
      keep[i * k + j] = (density >= 1.0 || (i % 3 != 0 && u(rng) < density)) ? 1 : 0;
  return keep;
}

/// A keep mask with block structure: each br x bc block kept with probability `density`;
/// inside a kept block each element kept with probability 0.7 (so stored blocks hold
/// pruned entries); every third block row is empty (unless density is 1).
byte_buffer random_blocks(std::size_t m, std::size_t k, std::size_t br, std::size_t bc, double density, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  byte_buffer keep(m * k, 0);
  for (std::size_t bi = 0; bi * br < m; ++bi)
    for (std::size_t bj = 0; bj * bc < k; ++bj) {
      const bool kept = density >= 1.0 || (bi % 3 != 1 && u(rng) < density);
      for (std::size_t i = bi * br; i < std::min(m, bi * br + br); ++i)
        for (std::size_t j = bj * bc; j < std::min(k, bj * bc + bc); ++j)
          keep[i * k + j] = kept && (density >= 1.0 || u(rng) < 0.7) ? 1 : 0;
    }
  return keep;
}

/// A keep mask with the N:M pattern along the rows: each group keeps N of its entries with
/// probability `density` (1: always), otherwise a random count up to N; every third row
/// keeps nothing; density 0 keeps nothing at all.
byte_buffer random_n_m(std::size_t m, std::size_t k, std::size_t n_keep, std::size_t group, double density,
                       std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  byte_buffer keep(m * k, 0);
  if (density <= 0.0) return keep;
  std::vector<std::size_t> order(group);
  for (std::size_t i = 0; i < m; ++i) {
    if (i % 3 == 1 && density < 1.0) continue;
    for (std::size_t j0 = 0; j0 < k; j0 += group) {
      const std::size_t len = std::min(group, k - j0);
      std::size_t count = u(rng) < density ? n_keep : std::uniform_int_distribution<std::size_t>(0, n_keep)(rng);
      count = std::min(count, len);
      order.resize(len);
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::shuffle(order.begin(), order.end(), rng);
      for (std::size_t t = 0; t < count; ++t) keep[i * k + j0 + order[t]] = 1;
    }
  }
  return keep;
}

// ---- The cases: a format, its options, masks it can store, and its hand-built arrays. --

template <class T>
struct csr_case {
  using value = T;
  using format = sparse::csr_matrix<T>;
  static constexpr bool spruce_messages = true;
  static typename format::options_type options() { return {}; }
  static byte_buffer random_keep(std::size_t m, std::size_t k, double d, std::mt19937& rng) {
    return random_unstructured(m, k, d, rng);
  }
  static format from_nonzeros(const tensor_ref<const T>& w) { return format::from_dense(w); }
  static void hand_built() {
    using csr = sparse::csr_matrix<T>;
    CHECK_NOTHROW(csr(2, 3, {0, 1, 3}, {2, 0, 1}, {1, 2, 3}));
    CHECK_THROWS_WITH_AS(csr(2, 3, {0, 2, 3}, {2, 0, 1}, {1, 2, 3}), doctest::Contains("not strictly increasing"), spruce::error);
    CHECK_THROWS_WITH_AS(csr(2, 3, {0, 1, 3}, {2, 0, 3}, {1, 2, 3}), doctest::Contains("outside [0, 3)"), spruce::error);
    CHECK_THROWS_WITH_AS(csr(2, 3, {0, 1}, {2}, {1}), doctest::Contains("rows + 1"), spruce::error);
    CHECK_THROWS_WITH_AS(csr(2, 3, {0, 100, 3}, {0, 1, 2}, {1, 2, 3}), doctest::Contains("decreases"), spruce::error);
    CHECK_THROWS_WITH_AS(csr(2, 3, {0, 1, 2}, {0, 1, 2}, {1, 2, 3}), doctest::Contains("row_ptr[rows]"), spruce::error);
    CHECK_THROWS_WITH_AS(csr(1, 3, {0, 2}, {0, 1}, {1}), doctest::Contains("2 column indices but 1 values"), spruce::error);
  }
};

template <class T, std::size_t BR, std::size_t BC>
struct bsr_case {
  using value = T;
  using format = sparse::block_sparse_matrix<T>;
  static constexpr bool spruce_messages = true;
  static typename format::options_type options() { return {BR, BC}; }
  static byte_buffer random_keep(std::size_t m, std::size_t k, double d, std::mt19937& rng) {
    return random_blocks(m, k, BR, BC, d, rng);
  }
  static format from_nonzeros(const tensor_ref<const T>& w) { return format::from_dense(w, BR, BC); }
  static void hand_built() {
    using bsr = sparse::block_sparse_matrix<T>;
    const std::vector<T> two_blocks(8, T(1));
    // 4 x 4 in 2 x 2 blocks: two block rows, two block columns.
    CHECK_NOTHROW(bsr(4, 4, 2, 2, {0, 1, 2}, {1, 0}, two_blocks));
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 2, 2}, {1, 0}, two_blocks), doctest::Contains("not strictly increasing"),
                         spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 2, 2}, {1, 1}, two_blocks), doctest::Contains("not strictly increasing"),
                         spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 1, 2}, {2, 0}, two_blocks), doctest::Contains("outside [0, 2)"), spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 1, 2}, {-1, 0}, two_blocks), doctest::Contains("outside [0, 2)"), spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 2}, {1, 0}, two_blocks), doctest::Contains("block rows + 1"), spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 3, 2}, {0, 1}, two_blocks), doctest::Contains("decreases"), spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {1, 1, 2}, {1, 0}, two_blocks), doctest::Contains("row_ptr[0]"), spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 1, 1}, {1, 0}, two_blocks), doctest::Contains("row_ptr[block rows]"),
                         spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 1, 2}, {1, 0}, std::vector<T>(7)), doctest::Contains("7 values for 2 blocks"),
                         spruce::error);
    CHECK_THROWS_WITH_AS(bsr(4, 4, 0, 2, {0}, {}, {}), doctest::Contains("block shape 0 x 2"), spruce::error);
    // 3 x 3 in 2 x 2 blocks: the block at (1, 1) covers only (2, 2); its padding must be 0.
    CHECK_NOTHROW(bsr::from_parts(3, 3, 2, 2, {0, 0, 1}, {1}, {5, 0, 0, 0}));
    CHECK_THROWS_WITH_AS(bsr::from_parts(3, 3, 2, 2, {0, 0, 1}, {1}, {5, 1, 0, 0}), doctest::Contains("padding must be zero"),
                         spruce::error);
    CHECK_THROWS_WITH_AS(bsr::from_parts(3, 3, 2, 2, {0, 0, 1}, {1}, {5, 0, std::numeric_limits<T>::quiet_NaN(), 0}),
                         doctest::Contains("padding must be zero"), spruce::error);
  }
};

template <class T, std::size_t N, std::size_t M>
struct nm_case {
  using value = T;
  using format = sparse::n_m_matrix<T>;
  static constexpr bool spruce_messages = true;
  static typename format::options_type options() { return {N, M}; }
  static byte_buffer random_keep(std::size_t m, std::size_t k, double d, std::mt19937& rng) {
    return random_n_m(m, k, N, M, d, rng);
  }
  static format from_nonzeros(const tensor_ref<const T>& w) { return format::from_dense(w, N, M); }
  static void hand_built() {
    using nm = sparse::n_m_matrix<T>;
    // 2 x 8, 2:4: two groups of two slots per row, positions in one byte per row.
    const std::uint8_t ok = 0 | 2 << 2 | 1 << 4 | 3 << 6;  // {0, 2} {1, 3}
    CHECK_NOTHROW(nm(2, 8, 2, 4, std::vector<T>(8, T(1)), {ok, ok}));
    CHECK_NOTHROW(nm::from_parts(2, 8, 2, 4, std::vector<T>(8, T(1)), {ok, ok}));
    const std::uint8_t dup = 1 | 1 << 2 | 1 << 4 | 3 << 6;       // {1, 1}
    const std::uint8_t unsorted = 2 | 0 << 2 | 1 << 4 | 3 << 6;  // {2, 0}
    CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<T>(8, T(1)), {ok, dup}), doctest::Contains("duplicated or unsorted"),
                         spruce::error);
    CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<T>(8, T(1)), {unsorted, ok}),
                         doctest::Contains("row 0, group 0 are not strictly increasing"), spruce::error);
    CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<T>(7, T(1)), {ok, ok}), doctest::Contains("7 values"), spruce::error);
    CHECK_THROWS_WITH_AS(nm(2, 8, 2, 4, std::vector<T>(8, T(1)), {ok}), doctest::Contains("1 position bytes"), spruce::error);
    // M = 3 stores 2-bit positions, so a position of 3 fits the bits but not the group.
    CHECK_THROWS_WITH_AS(nm(1, 3, 1, 3, {T(1)}, {3}),
                         doctest::Contains("position 3 at row 0, group 0, slot 0 is not below M = 3"), spruce::error);
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
};

template <class T>
struct user_case {
  using value = T;
  using format = user::coo_matrix<T>;
  static constexpr bool spruce_messages = false;  // its own words, spruce::error all the same
  static typename format::options_type options() { return {}; }
  static byte_buffer random_keep(std::size_t m, std::size_t k, double d, std::mt19937& rng) {
    return random_unstructured(m, k, d, rng);
  }
  static format from_nonzeros(const tensor_ref<const T>& w) { return format::from_nonzeros(w); }
  static void hand_built() {
    using coo = user::coo_matrix<T>;
    CHECK_NOTHROW(coo(2, 3, {{0, 2, T(1)}, {1, 0, T(2)}}));
    CHECK_THROWS_WITH_AS(coo(2, 3, {{1, 0, T(1)}, {0, 2, T(2)}}), doctest::Contains("not sorted"), spruce::error);
    CHECK_THROWS_WITH_AS(coo(2, 3, {{0, 3, T(1)}}), doctest::Contains("outside the matrix"), spruce::error);
  }
};

/// The case's format built from `w` (m x k) under `keep` through the generic entry point;
/// checks validate(), the shape, the stored count and the exact round trip; returns the
/// format and the masked weights it stands for.
template <class C>
std::pair<typename C::format, std::vector<typename C::value>> build_checked(const std::vector<typename C::value>& w,
                                                                            std::size_t m, std::size_t k, byte_buffer bytes) {
  using T = typename C::value;
  const shape2 sa{m, k};
  const mask keep(sa, std::move(bytes));
  auto a = sparse::from_dense<typename C::format>(tensor_ref<const T>(w.data(), sa), keep, C::options());
  CHECK_NOTHROW(a.validate());
  CHECK(a.rows() == m);
  CHECK(a.cols() == k);
  CHECK(a.stored_values() >= keep.count_kept());
  std::vector<T> masked = w;
  apply_mask(tensor_ref<T>(masked.data(), sa), keep);
  std::vector<T> back(m * k, T(7));
  a.to_dense(tensor_ref<T>(back.data(), sa));
  // -0 kept, pruned +0 (memcmp of an empty, null buffer is undefined: skip it).
  CHECK((back.empty() || std::memcmp(back.data(), masked.data(), back.size() * sizeof(T)) == 0));
  // From the masked weights' nonzeros (a kept -0 may come back +0, hence ==).
  const auto b = C::from_nonzeros(tensor_ref<const T>(masked.data(), sa));
  CHECK_NOTHROW(b.validate());
  std::fill(back.begin(), back.end(), T(7));
  b.to_dense(tensor_ref<T>(back.data(), sa));
  CHECK(back == masked);
  return {std::move(a), std::move(masked)};
}

}  // namespace

#define SPRUCE_FORMAT_CASES                                                                                           \
  csr_case<float>, csr_case<double>, bsr_case<float, 4, 4>, bsr_case<double, 1, 4>, bsr_case<float, 4, 1>,            \
      bsr_case<float, 8, 8>, bsr_case<double, 3, 5>, bsr_case<float, 2, 2>, nm_case<float, 2, 4>, nm_case<double, 2, 4>, \
      nm_case<float, 1, 4>, nm_case<float, 3, 4>, nm_case<float, 1, 2>, nm_case<double, 2, 8>, nm_case<float, 4, 8>,    \
      nm_case<float, 3, 5>, nm_case<float, 0, 4>, user_case<float>, user_case<double>

TEST_CASE_TEMPLATE("sparse formats: round trip and products match the dense reference", C, SPRUCE_FORMAT_CASES) {
  using T = typename C::value;
  std::mt19937 rng(17);
  const std::array<std::pair<T, T>, 3> scalars{{{T(1), T(0)}, {T(0.5), T(-2)}, {T(2), T(1)}}};
  for (double density : {0.0, 0.1, 0.5, 1.0})
    for (auto [m, k, n] :
         {std::array<std::size_t, 3>{1, 1, 1}, {7, 13, 5}, {64, 100, 70}, {33, 257, 130}, {20, 64, 1030}}) {
      CAPTURE(density);
      CAPTURE(m);
      CAPTURE(k);
      CAPTURE(n);
      const auto w = random_weights<T>(m * k, rng);
      const auto [a, masked] = build_checked<C>(w, m, k, C::random_keep(m, k, density, rng));
      for (const auto& [alpha, beta] : scalars) check_product<T>(a, masked, m, k, n, rng, alpha, beta);
    }
}

TEST_CASE_TEMPLATE("sparse formats: column-major B and C, deep K, narrow and wide B", C, SPRUCE_FORMAT_CASES) {
  using T = typename C::value;
  std::mt19937 rng(23);
  // 13000 rows of B exceed one packed slice of every format at every vector width, so the
  // product runs in several K passes; n = 1, 3, 9, 33 select narrower register tiles (and
  // CSR's narrow path) and leave fewer panels than threads.
  for (auto [m, k, n] : {std::array<std::size_t, 3>{9, 13000, 6}, {9, 7000, 37}, {1, 1, 1}, {6, 11, 3}, {130, 70, 1},
                         {20, 300, 67}, {17, 40, 9}, {12, 64, 33}, {20, 300, 129}})
    for (layout lb : {layout::row, layout::col})
      for (layout lc : {layout::row, layout::col}) {
        if (k > 1000 && lb != lc) continue;  // the deep cases are the slow ones; two layouts suffice
        CAPTURE(m);
        CAPTURE(k);
        CAPTURE(n);
        CAPTURE(static_cast<int>(lb));
        CAPTURE(static_cast<int>(lc));
        for (double density : {0.3, 0.9}) {
          const auto w = random_weights<T>(m * k, rng);
          const auto [a, masked] = build_checked<C>(w, m, k, C::random_keep(m, k, density, rng));
          check_product<T>(a, masked, m, k, n, rng, T(1), T(0), lb, lc);
          check_product<T>(a, masked, m, k, n, rng, T(-1.5), T(0.25), lb, lc);
        }
      }
}

TEST_CASE_TEMPLATE("sparse formats: empty shapes and alpha == 0 leave C as beta * C", C, SPRUCE_FORMAT_CASES) {
  using T = typename C::value;
  std::mt19937 rng(29);
  for (auto [m, k, n] : {std::array<std::size_t, 3>{0, 5, 3}, {4, 5, 0}, {4, 0, 6}, {5, 7, 4}, {5, 7, 40}}) {
    CAPTURE(m);
    CAPTURE(k);
    CAPTURE(n);
    const auto w = random_weights<T>(m * k, rng);
    const auto [a, masked] = build_checked<C>(w, m, k, C::random_keep(m, k, 0.5, rng));
    check_product<T>(a, masked, m, k, n, rng, T(1), T(0));  // no K: C = 0, NaN overwritten
    check_product<T>(a, masked, m, k, n, rng, T(1), T(2));
    check_product<T>(a, masked, m, k, n, rng, T(0), T(0));  // beta 0 clears NaN
    check_product<T>(a, masked, m, k, n, rng, T(0), T(-3));
    check_product<T>(a, masked, m, k, n, rng, T(0), T(0.5));
  }
  // alpha == 0 does not read B: an infinite B leaves beta * C.
  const std::vector<T> w{1, 2, 3, 4};
  const auto [a, masked] = build_checked<C>(w, 2, 2, C::random_keep(2, 2, 1.0, rng));
  std::vector<T> inf(4, std::numeric_limits<T>::infinity()), c{1, 2, 3, 4};
  const shape2 s{2, 2};
  spmm(a, tensor_ref<const T>(inf.data(), s), tensor_ref<T>(c.data(), s), T(0), T(2));
  CHECK(c == std::vector<T>{2, 4, 6, 8});
}

TEST_CASE_TEMPLATE("sparse formats: validate() rejects bad hand-built arrays", C, SPRUCE_FORMAT_CASES) {
  C::hand_built();
}

TEST_CASE_TEMPLATE("sparse formats: bad shapes and layouts throw and write nothing", C, SPRUCE_FORMAT_CASES) {
  using T = typename C::value;
  std::mt19937 rng(31);
  const auto w = random_weights<T>(2 * 3, rng);
  const auto [a, masked] = build_checked<C>(w, 2, 3, C::random_keep(2, 3, 1.0, rng));
  std::vector<T> b(4 * 2), c(2 * 2, T(9));
  const shape2 sb{4, 2}, sc{2, 2}, sb3{3, 2}, sc_wrong{3, 2};
  const auto message = [](const char* text) { return doctest::Contains(C::spruce_messages ? text : ""); };
  CHECK_THROWS_WITH_AS(spmm(a, tensor_ref<const T>(b.data(), sb), tensor_ref<T>(c.data(), sc), T(1), T(0)),
                       message("A is 2 x 3, B [4, 2], C [2, 2]; need B [A.cols, N] and C [A.rows, N]"), spruce::error);
  CHECK_THROWS_WITH_AS(spmm(a, tensor_ref<const T>(b.data(), sb3), tensor_ref<T>(c.data(), sc_wrong), T(1), T(0)),
                       message("need B [A.cols, N] and C [A.rows, N]"), spruce::error);
  CHECK(c == std::vector<T>(4, T(9)));
  if constexpr (C::spruce_messages) {
    // A B that is neither row- nor column-major (every other element of a wider buffer).
    std::vector<T> wide(3 * 2 * 4);
    const shape2 strided{8, 2};
    CHECK_THROWS_WITH_AS(spmm(a, tensor_ref<const T>(wide.data(), sb3, strided), tensor_ref<T>(c.data(), sc)),
                         doctest::Contains("row-major or column-major"), spruce::error);
    CHECK(c == std::vector<T>(4, T(9)));
  }
  std::vector<T> out(5);
  const shape2 s5{5};
  CHECK_THROWS_WITH_AS(a.to_dense(tensor_ref<T>(out.data(), s5)), doctest::Contains("pass a packed matrix"), spruce::error);
  // Construction: a mask of another shape, a matrix that is not 2-D.
  const shape2 s23{2, 3}, wrong{3, 2}, s6{6};
  using F = typename C::format;
  CHECK_THROWS_WITH_AS(sparse::from_dense<F>(tensor_ref<const T>(w.data(), s23), mask(wrong), C::options()),
                       doctest::Contains("pass the mask computed for this weight"), spruce::error);
  CHECK_THROWS_WITH_AS(sparse::from_dense<F>(tensor_ref<const T>(w.data(), s6), mask(s6), C::options()),
                       doctest::Contains("not 2-D"), spruce::error);
}

TEST_CASE_TEMPLATE("sparse formats: any host view goes in, compile-time tensor_view included", T, float, double) {
  // The public products, from_dense and to_dense take tensor_view as well as tensor_ref.
  std::vector<T> w{1, 0, 2, 0, 0, 3, 4, 0}, b(4 * 3), c(2 * 3), back(8);
  std::iota(b.begin(), b.end(), T(1));
  const auto wv = make_view(static_cast<const T*>(w.data()), 2, 4);
  const auto bv = make_view(static_cast<const T*>(b.data()), 4, 3);
  const auto cv = make_view(c.data(), 2, 3);
  const std::vector<T> want{1 * 1 + 2 * 7, 1 * 2 + 2 * 8, 1 * 3 + 2 * 9, 3 * 4 + 4 * 7, 3 * 5 + 4 * 8, 3 * 6 + 4 * 9};
  const auto check = [&](const auto& a) {
    std::fill(c.begin(), c.end(), T(-1));
    spmm(a, bv, cv);
    CHECK(c == want);
    a.to_dense(make_view(back.data(), 2, 4));
    CHECK(back == w);
  };
  check(sparse::csr_matrix<T>::from_dense(wv));
  check(sparse::block_sparse_matrix<T>::from_dense(wv, 2, 2));
  check(sparse::n_m_matrix<T>::from_dense(wv, 2, 4));
  check(sparse::from_dense<sparse::n_m_matrix<T>>(wv, mask(std::vector<std::size_t>{2, 4}, byte_buffer{1, 0, 1, 0, 0, 1, 1, 0}),
                                                  granularity::n_m<2, 4>{}));
}

// ---- Format-specific facts ------------------------------------------------------------

TEST_CASE("csr from a keep mask stores every kept entry, zeros included") {
  std::vector<float> w{1, 0, 3, 4, 5, 0};
  const shape2 s{2, 3};
  const mask keep(s, byte_buffer{1, 1, 0, 0, 1, 1});
  const auto csr = sparse::csr_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep);
  CHECK(csr.nnz() == 4);
  CHECK(csr.stored_values() == 4);
  CHECK(csr.row_ptr() == std::vector<std::int32_t>{0, 2, 4});
  CHECK(csr.col_idx() == std::vector<std::int32_t>{0, 1, 1, 2});
  CHECK(csr.values() == std::vector<float>{1, 0, 5, 0});
}

TEST_CASE("block-sparse from nonzeros keeps every entry of a stored block bit for bit, -0 included") {
  // 5 x 6 with 2 x 4 blocks: block rows {0-1, 2-3, 4}, block columns {0-3, 4-5}.
  std::vector<float> w{0, 0, 0, 0, 0, 0,      //
                       0, -0.0f, 0, 2, 0, 0,  //
                       0, 0, 0, 0, 0, 0,      //
                       0, 0, 0, 0, 0, 0,      //
                       0, 0, 0, 0, 5, -0.0f};
  const shape2 s{5, 6};
  const auto a = sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 2, 4);
  CHECK(a.block_row_count() == 3);
  CHECK(a.block_col_count() == 2);
  CHECK(a.row_ptr() == std::vector<std::int32_t>{0, 1, 1, 2});
  CHECK(a.col_idx() == std::vector<std::int32_t>{0, 1});
  REQUIRE(a.values().size() == 16);
  CHECK(std::signbit(a.values()[5]));  // (1, 1) of the first block is -0
  // The partial block (row 4, columns 4-5) is padded with zeros past the matrix.
  CHECK(a.values()[8] == 5);
  CHECK(std::signbit(a.values()[9]));
  for (std::size_t i : {10, 11, 12, 13, 14, 15}) CHECK(a.values()[i] == 0);
  std::vector<float> back(w.size(), 1.0f);
  a.to_dense(tensor_ref<float>(back.data(), s));
  CHECK(std::memcmp(back.data(), w.data(), w.size() * sizeof(float)) == 0);
}

TEST_CASE("block-sparse from a keep mask stores a block when it keeps anything, pruned entries as +0") {
  std::vector<float> w{1, 2, 3, 4,  //
                       5, 6, 7, 8,  //
                       9, 10, 11, 12};
  const shape2 s{3, 4};
  const mask keep(s, byte_buffer{0, 1, 0, 0,  //
                                 0, 0, 0, 0,  //
                                 0, 0, 0, 1});
  const auto a = sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep, 2, 2);
  CHECK(a.block_rows() == 2);
  CHECK(a.block_cols() == 2);
  CHECK(a.stored_values() == a.nnz_blocks() * 4);
  CHECK(a.row_ptr() == std::vector<std::int32_t>{0, 1, 2});
  CHECK(a.col_idx() == std::vector<std::int32_t>{0, 1});
  CHECK(a.values() == std::vector<float>{0, 2, 0, 0, 0, 12, 0, 0});
  // The sparse_format form (a block_shape) builds the same matrix.
  CHECK(sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep, sparse::block_shape{2, 2})
            .values() == a.values());
  // A strided view of the same weights (every other column of a wider buffer) gives the
  // same matrix.
  std::vector<float> wide(3 * 8);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) wide[i * 8 + 2 * j] = w[i * 4 + j];
  const shape2 strides{8, 2};
  const auto b = sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(wide.data(), s, strides), keep, 2, 2);
  CHECK(b.values() == a.values());
  CHECK_THROWS_WITH_AS(sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 0, 2),
                       doctest::Contains("at least one row"), spruce::error);
}

TEST_CASE("block-sparse with a 64-bit index and a hand-built matrix from parts") {
  using bsr64 = sparse::block_sparse_matrix<double, std::int64_t>;
  // 3 x 5 with 2 x 2 blocks: block (0, 2) holds column 4 and a padding column.
  const auto a = bsr64::from_parts(3, 5, 2, 2, {0, 2, 3}, {0, 2, 1}, {1, 2, 3, 4, 5, 0, 6, 0, 7, 8, 0, 0});
  std::vector<double> dense(15);
  const shape2 s{3, 5};
  a.to_dense(tensor_ref<double>(dense.data(), s));
  CHECK(dense == std::vector<double>{1, 2, 0, 0, 5,  //
                                     3, 4, 0, 0, 6,  //
                                     0, 0, 7, 8, 0});
  std::mt19937 rng(31);
  check_product<double>(a, dense, 3, 5, 19, rng, 1.0, 0.0);
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
  CHECK(a.n() == 2);
  CHECK(a.m() == 4);
  CHECK(a.stored_values() == 24 * 25 * 2);
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
  CHECK_THROWS_WITH_AS(
      sparse::n_m_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep, granularity::n_m_pattern{4, 4}),
      doctest::Contains("0 <= N < M <= 256"), spruce::error);
}
