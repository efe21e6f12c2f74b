// Block-sparse (BSR) format and its sparse x dense product against a dense reference (1e-4
// relative) for every block shape the kernels special-case and an odd one, on random
// block masks at several sparsities, empty block rows, all-zero and fully dense matrices,
// 1 x 1 and shapes the blocks do not divide; exact round trips; the validator; errors.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "spruce/spruce.hpp"
#include "spmm_check.hpp"
#include "spruce/sparse/block_sparse.hpp"

using namespace spruce;

namespace {

using shape2 = std::vector<std::size_t>;
using spmm_check::check_product;
using spmm_check::layout;

/// A random m x k matrix and element mask with block structure: each br x bc block is kept
/// with probability `keep_blocks`; inside a kept block each element is kept with
/// probability 0.7 (so stored blocks hold pruned entries), and every third block row is
/// empty. Returns (weights, mask bytes).
template <class T>
std::pair<std::vector<T>, byte_buffer> random_blocks(std::size_t m, std::size_t k, std::size_t br, std::size_t bc,
                                                     double keep_blocks, std::mt19937& rng) {
  std::normal_distribution<double> g;
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<T> w(m * k);
  byte_buffer keep(m * k, 0);
  for (auto& x : w) x = static_cast<T>(g(rng));
  for (std::size_t bi = 0; bi * br < m; ++bi)
    for (std::size_t bj = 0; bj * bc < k; ++bj) {
      const bool kept = keep_blocks >= 1.0 || (bi % 3 != 1 && u(rng) < keep_blocks);
      for (std::size_t i = bi * br; i < std::min(m, bi * br + br); ++i)
        for (std::size_t j = bj * bc; j < std::min(k, bj * bc + bc); ++j)
          keep[i * k + j] = kept && (keep_blocks >= 1.0 || u(rng) < 0.7) ? 1 : 0;
    }
  return {std::move(w), std::move(keep)};
}

constexpr std::array<std::pair<std::size_t, std::size_t>, 6> block_shapes{{{1, 4}, {4, 1}, {4, 4}, {8, 8}, {3, 5}, {2, 2}}};

}  // namespace

TEST_CASE_TEMPLATE("block-sparse spmm matches the dense reference", T, float, double) {
  std::mt19937 rng(17);
  const std::array<std::pair<T, T>, 3> scalars{{{T(1), T(0)}, {T(0.5), T(-2)}, {T(2), T(1)}}};
  std::size_t round = 0;
  for (auto [br, bc] : block_shapes)
    for (double keep_blocks : {0.0, 0.1, 0.5, 1.0})
      for (auto [m, k, n] : {std::array<std::size_t, 3>{1, 1, 1}, {7, 13, 5}, {64, 100, 70}, {33, 257, 130}}) {
        CAPTURE(br);
        CAPTURE(bc);
        CAPTURE(keep_blocks);
        CAPTURE(m);
        CAPTURE(k);
        CAPTURE(n);
        auto [w, bytes] = random_blocks<T>(m, k, br, bc, keep_blocks, rng);
        const shape2 sa{m, k};
        const mask keep(sa, std::move(bytes));
        const auto a = sparse::block_sparse_matrix<T>::from_dense(tensor_ref<const T>(w.data(), sa), keep, br, bc);
        CHECK_NOTHROW(a.validate());
        CHECK(a.block_rows() == br);
        CHECK(a.block_cols() == bc);
        CHECK(a.stored_values() == a.nnz_blocks() * br * bc);
        // Round trip: exactly the masked weights (pruned entries +0).
        std::vector<T> masked = w;
        apply_mask(tensor_ref<T>(masked.data(), sa), keep);
        std::vector<T> back(m * k, T(7));
        a.to_dense(tensor_ref<T>(back.data(), sa));
        CHECK(std::memcmp(back.data(), masked.data(), back.size() * sizeof(T)) == 0);
        const auto [alpha, beta] = scalars[round++ % scalars.size()];
        check_product<T>(a, masked, m, k, n, rng, alpha, beta);
      }
}

TEST_CASE_TEMPLATE("block-sparse spmm: column-major B and C, deep K, narrow and wide B", T, float, double) {
  std::mt19937 rng(23);
  // 13000 rows of B exceed one packed slice for every tile at every vector width, so the
  // product runs in several K passes; n = 1, 3, 9, 33 select narrower register tiles and
  // leave fewer panels than threads.
  for (auto [br, bc] : {std::pair<std::size_t, std::size_t>{8, 8}, {1, 4}, {4, 1}, {4, 4}, {3, 5}})
    for (auto [m, k, n] : {std::array<std::size_t, 3>{9, 13000, 6}, {6, 11, 3}, {130, 70, 1}, {20, 300, 67}, {17, 40, 9},
                           {12, 64, 33}})
      for (layout lb : {layout::row, layout::col})
        for (layout lc : {layout::row, layout::col}) {
          if (k > 1000 && lb != lc) continue;  // the deep case is the slow one; two layouts suffice
          CAPTURE(br);
          CAPTURE(bc);
          CAPTURE(m);
          CAPTURE(k);
          CAPTURE(n);
          CAPTURE(static_cast<int>(lb));
          CAPTURE(static_cast<int>(lc));
          auto [w, bytes] = random_blocks<T>(m, k, br, bc, 0.3, rng);
          const shape2 sa{m, k};
          apply_mask(tensor_ref<T>(w.data(), sa), mask(sa, std::move(bytes)));
          const auto a = sparse::block_sparse_matrix<T>::from_dense(tensor_ref<const T>(w.data(), sa), br, bc);
          check_product<T>(a, w, m, k, n, rng, T(1), T(0), lb, lc);
          check_product<T>(a, w, m, k, n, rng, T(-1.5), T(0.25), lb, lc);
        }
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
  CHECK(a.row_ptr() == std::vector<std::int32_t>{0, 1, 2});
  CHECK(a.col_idx() == std::vector<std::int32_t>{0, 1});
  CHECK(a.values() == std::vector<float>{0, 2, 0, 0, 0, 12, 0, 0});
  // A strided view of the same weights (every other column of a wider buffer) gives the
  // same matrix.
  std::vector<float> wide(3 * 8);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) wide[i * 8 + 2 * j] = w[i * 4 + j];
  const shape2 strides{8, 2};
  const auto b = sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(wide.data(), s, strides), keep, 2, 2);
  CHECK(b.values() == a.values());
  const shape2 wrong{4, 3};
  CHECK_THROWS_WITH_AS(sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), mask(wrong), 2, 2),
                       doctest::Contains("pass the mask computed for this weight"), spruce::error);
  CHECK_THROWS_WITH_AS(sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), 0, 2),
                       doctest::Contains("at least one row"), spruce::error);
  const shape2 s1{12};
  CHECK_THROWS_WITH_AS(sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s1), 2, 2),
                       doctest::Contains("not 2-D"), spruce::error);
}

TEST_CASE("block-sparse spmm on empty shapes and alpha == 0 leaves C as beta * C") {
  std::mt19937 rng(29);
  for (auto [m, k, n] : {std::array<std::size_t, 3>{0, 5, 3}, {4, 5, 0}, {4, 0, 6}, {5, 7, 4}}) {
    CAPTURE(m);
    CAPTURE(k);
    CAPTURE(n);
    auto [w, bytes] = random_blocks<float>(m, k, 2, 3, 0.5, rng);
    const shape2 sa{m, k};
    apply_mask(tensor_ref<float>(w.data(), sa), mask(sa, std::move(bytes)));
    const auto a = sparse::block_sparse_matrix<float>::from_dense(tensor_ref<const float>(w.data(), sa), 2, 3);
    check_product<float>(a, w, m, k, n, rng, 1.0f, 0.0f);  // NaN in C is overwritten
    check_product<float>(a, w, m, k, n, rng, 1.0f, 2.0f);
    check_product<float>(a, w, m, k, n, rng, 0.0f, 0.0f);
    check_product<float>(a, w, m, k, n, rng, 0.0f, -3.0f);
  }
  // alpha == 0 does not read B: an infinite B leaves beta * C.
  const auto a = sparse::block_sparse_matrix<float>::from_parts(2, 2, 2, 2, {0, 1}, {0}, {1, 2, 3, 4});
  std::vector<float> b(4, std::numeric_limits<float>::infinity()), c{1, 2, 3, 4};
  const shape2 s{2, 2};
  sparse::spmm(a, tensor_ref<const float>(b.data(), s), tensor_ref<float>(c.data(), s), 0.0f, 2.0f);
  CHECK(c == std::vector<float>{2, 4, 6, 8});
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

TEST_CASE("the block-sparse validator catches hand-built mistakes") {
  using bsr = sparse::block_sparse_matrix<float>;
  const std::vector<float> two_blocks(8, 1.0f);
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
  CHECK_THROWS_WITH_AS(bsr(4, 4, 2, 2, {0, 1, 2}, {1, 0}, std::vector<float>(7)), doctest::Contains("7 values for 2 blocks"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(bsr(4, 4, 0, 2, {0}, {}, {}), doctest::Contains("block shape 0 x 2"), spruce::error);
  // 3 x 3 in 2 x 2 blocks: the block at (1, 1) covers only (2, 2); its padding must be 0.
  CHECK_NOTHROW(bsr::from_parts(3, 3, 2, 2, {0, 0, 1}, {1}, {5, 0, 0, 0}));
  CHECK_THROWS_WITH_AS(bsr::from_parts(3, 3, 2, 2, {0, 0, 1}, {1}, {5, 1, 0, 0}), doctest::Contains("padding must be zero"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(bsr::from_parts(3, 3, 2, 2, {0, 0, 1}, {1}, {5, 0, std::nanf(""), 0}),
                       doctest::Contains("padding must be zero"), spruce::error);
}

TEST_CASE("block-sparse spmm checks shapes and layouts before writing anything") {
  const auto a = sparse::block_sparse_matrix<float>::from_parts(2, 3, 2, 2, {0, 1}, {1}, {1, 0, 2, 0});
  std::vector<float> b(4 * 2), c(2 * 2, 9.0f);
  const shape2 sb{4, 2}, sc{2, 2};
  CHECK_THROWS_WITH_AS(sparse::spmm(a, tensor_ref<const float>(b.data(), sb), tensor_ref<float>(c.data(), sc)),
                       doctest::Contains("A is 2 x 3, B [4, 2], C [2, 2]"), spruce::error);
  CHECK(c == std::vector<float>(4, 9.0f));
  const shape2 sb3{3, 2}, sc_wrong{3, 2};
  CHECK_THROWS_WITH_AS(sparse::spmm(a, tensor_ref<const float>(b.data(), sb3), tensor_ref<float>(c.data(), sc_wrong)),
                       doctest::Contains("need B [A.cols, N] and C [A.rows, N]"), spruce::error);
  std::vector<float> wide(3 * 2 * 4);
  const shape2 strided{8, 2};
  CHECK_THROWS_WITH_AS(sparse::spmm(a, tensor_ref<const float>(wide.data(), sb3, strided), tensor_ref<float>(c.data(), sc)),
                       doctest::Contains("row-major or column-major"), spruce::error);
  CHECK(c == std::vector<float>(4, 9.0f));
  std::vector<float> out(5);
  const shape2 s5{5};
  CHECK_THROWS_WITH_AS(a.to_dense(tensor_ref<float>(out.data(), s5)), doctest::Contains("pass a packed matrix"),
                       spruce::error);
}
