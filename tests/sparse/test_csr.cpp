// CSR format and sparse x dense products against a dense reference (1e-4 relative) on
// random data, empty rows, all-zero and fully dense matrices, 1 x 1 and odd shapes.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "spruce/spruce.hpp"
#include "spruce/sparse/csr.hpp"
#include "spmm_check.hpp"

using namespace spruce;

namespace {

using spmm_check::check_product;
using spmm_check::layout;

template <class T>
void check_case(std::size_t m, std::size_t k, std::size_t n, double density, std::mt19937& rng, T alpha, T beta,
                layout lb = layout::row, layout lc = layout::row) {
  std::normal_distribution<double> g;
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<T> a(m * k);
  for (auto& x : a) x = u(rng) < density ? static_cast<T>(g(rng)) : T(0);
  for (std::size_t i = 0; i < m; i += 3)  // some empty rows
    for (std::size_t p = 0; p < k && density < 1.0; ++p) a[i * k + p] = T(0);
  const std::vector<std::size_t> sa{m, k};
  const auto csr = sparse::csr_matrix<T>::from_dense(tensor_ref<const T>(a.data(), sa));
  csr.validate();
  // Round trip exact.
  std::vector<T> back(m * k, T(7));
  csr.to_dense(tensor_ref<T>(back.data(), sa));
  CHECK(back == a);
  check_product(csr, a, m, k, n, rng, alpha, beta, lb, lc);
}

}  // namespace

TEST_CASE_TEMPLATE("csr spmm matches the dense reference", T, float, double) {
  std::mt19937 rng(3);
  for (double density : {0.0, 0.05, 0.3, 1.0})
    for (auto [m, k, n] : {std::array<std::size_t, 3>{1, 1, 1}, {7, 13, 5}, {64, 100, 700}, {33, 257, 1030}}) {
      CAPTURE(density);
      CAPTURE(m);
      CAPTURE(k);
      CAPTURE(n);
      check_case<T>(m, k, n, density, rng, T(1), T(0));
      check_case<T>(m, k, n, density, rng, T(0.5), T(-2));
      check_case<T>(m, k, n, density, rng, T(2), T(1));
    }
}

TEST_CASE_TEMPLATE("csr spmm with column-major B and C (a linear layer's X * W^T) and deep K", T, float, double) {
  std::mt19937 rng(5);
  // 7000 rows of B exceed one L2 slice of the packed panel at every vector width, so the
  // product runs in several K passes; n = 1 and 3 leave fewer panels than threads.
  for (auto [m, k, n] : {std::array<std::size_t, 3>{9, 7000, 37}, {1, 1, 1}, {6, 11, 3}, {130, 70, 1}, {20, 300, 129}})
    for (layout lb : {layout::row, layout::col})
      for (layout lc : {layout::row, layout::col}) {
        CAPTURE(m);
        CAPTURE(k);
        CAPTURE(n);
        CAPTURE(static_cast<int>(lb));
        CAPTURE(static_cast<int>(lc));
        check_case<T>(m, k, n, 0.2, rng, T(1), T(0), lb, lc);
        check_case<T>(m, k, n, 0.7, rng, T(-1.5), T(0.25), lb, lc);
      }
}

TEST_CASE("csr spmm on empty shapes leaves C as beta * C") {
  std::mt19937 rng(9);
  check_case<float>(0, 5, 3, 0.5, rng, 1.0f, 0.0f);
  check_case<float>(4, 5, 0, 0.5, rng, 1.0f, 0.0f);
  check_case<float>(4, 0, 6, 0.5, rng, 1.0f, 0.0f);  // no K: C = beta * C, NaN overwritten
  check_case<float>(4, 0, 6, 0.5, rng, 1.0f, 2.0f);
  // alpha == 0: C = beta * C without reading A or B (beta 0 clears NaN).
  check_case<float>(5, 7, 40, 0.5, rng, 0.0f, 0.5f);
  check_case<float>(5, 7, 40, 0.5, rng, 0.0f, 0.0f);
}

TEST_CASE("csr from a keep mask stores every kept entry, zeros included") {
  std::vector<float> w{1, 0, 3, 4, 5, 0};
  const std::vector<std::size_t> s{2, 3};
  const mask keep(s, byte_buffer{1, 1, 0, 0, 1, 1});
  const auto csr = sparse::csr_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), keep);
  CHECK(csr.nnz() == 4);
  CHECK(csr.row_ptr() == std::vector<std::int32_t>{0, 2, 4});
  CHECK(csr.col_idx() == std::vector<std::int32_t>{0, 1, 1, 2});
  CHECK(csr.values() == std::vector<float>{1, 0, 5, 0});
  const std::vector<std::size_t> wrong{3, 2};
  CHECK_THROWS_WITH_AS(sparse::csr_matrix<float>::from_dense(tensor_ref<const float>(w.data(), s), mask(wrong)),
                       doctest::Contains("pass the mask computed for this weight"), spruce::error);
}

TEST_CASE("the validator catches hand-built mistakes and spmm checks shapes") {
  using csr = sparse::csr_matrix<float>;
  CHECK_NOTHROW(csr(2, 3, {0, 1, 3}, {2, 0, 1}, {1, 2, 3}));
  CHECK_THROWS_WITH_AS(csr(2, 3, {0, 2, 3}, {2, 0, 1}, {1, 2, 3}), doctest::Contains("not strictly increasing"), spruce::error);
  CHECK_THROWS_WITH_AS(csr(2, 3, {0, 1, 3}, {2, 0, 3}, {1, 2, 3}), doctest::Contains("outside [0, 3)"), spruce::error);
  CHECK_THROWS_WITH_AS(csr(2, 3, {0, 1}, {2}, {1}), doctest::Contains("rows + 1"), spruce::error);
  CHECK_THROWS_WITH_AS(csr(2, 3, {0, 100, 3}, {0, 1, 2}, {1, 2, 3}), doctest::Contains("decreases"), spruce::error);
  CHECK_THROWS_WITH_AS(csr(2, 3, {0, 1, 2}, {0, 1, 2}, {1, 2, 3}), doctest::Contains("row_ptr[rows]"), spruce::error);
  CHECK_THROWS_WITH_AS(csr(1, 3, {0, 2}, {0, 1}, {1}), doctest::Contains("2 column indices but 1 values"), spruce::error);
  const csr a(2, 3, {0, 1, 3}, {2, 0, 1}, {1, 2, 3});
  std::vector<float> b(4 * 2), c(2 * 2, 9.0f);
  const std::vector<std::size_t> sb{4, 2}, sc{2, 2};
  CHECK_THROWS_WITH_AS(sparse::spmm(a, tensor_ref<const float>(b.data(), sb), tensor_ref<float>(c.data(), sc)),
                       doctest::Contains("need B [A.cols, N]"), spruce::error);
  CHECK(c == std::vector<float>(4, 9.0f));
  // A B that is neither row- nor column-major (every other element of a wider buffer).
  std::vector<float> wide(3 * 2 * 4);
  const std::vector<std::size_t> sb3{3, 2}, strided{8, 2};
  CHECK_THROWS_WITH_AS(sparse::spmm(a, tensor_ref<const float>(wide.data(), sb3, strided), tensor_ref<float>(c.data(), sc)),
                       doctest::Contains("row-major or column-major"), spruce::error);
  CHECK(c == std::vector<float>(4, 9.0f));
}
