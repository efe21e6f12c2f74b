// Shared by the sparse format tests: a double-precision dense reference for
// C = alpha * A * B + beta * C, and a check that runs a format's spmm with row- or
// column-major B and C against it.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "spruce/core/tensor_ref.hpp"
#include "spruce/sparse/format.hpp"

namespace spmm_check {

using namespace spruce;
using shape2 = std::vector<std::size_t>;

/// Layout of a dense operand in a test: row-major, or column-major (the transpose).
enum class layout { row, col };

/// C = alpha * A * B + beta * C in double, with |A| * |B| per entry for the tolerance.
template <class T>
std::vector<T> dense_ref(const std::vector<T>& a, std::size_t m, std::size_t k, const std::vector<T>& b, std::size_t n,
                         const std::vector<T>& c0, T alpha, T beta, std::vector<double>& abs_sum) {
  std::vector<T> c(m * n);
  abs_sum.assign(m * n, 0.0);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double s = 0, sa = 0;
      for (std::size_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(a[i * k + p]) * b[p * n + j];
        s += t;
        sa += std::abs(t);
      }
      abs_sum[i * n + j] = sa;
      c[i * n + j] = static_cast<T>(alpha * s + (beta == T(0) ? 0.0 : static_cast<double>(beta) * c0[i * n + j]));
    }
  return c;
}

/// Runs spmm(sparse, B, C) on random B and C (NaN-filled when beta is 0) in the given
/// layouts and compares with the dense product of `a`, the matrix `sparse` stands for.
template <class T, class Sparse>
void check_product(const Sparse& sparse, const std::vector<T>& a, std::size_t m, std::size_t k, std::size_t n,
                   std::mt19937& rng, T alpha, T beta, layout lb = layout::row, layout lc = layout::row) {
  std::normal_distribution<double> g;
  std::vector<T> b(k * n), c(m * n);
  for (auto& x : b) x = static_cast<T>(g(rng));
  for (auto& x : c) x = beta == T(0) ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(g(rng));
  std::vector<double> abs_sum;
  const auto want = dense_ref(a, m, k, b, n, c, alpha, beta, abs_sum);
  std::vector<T> bs(b.size()), cs(c.size());
  for (std::size_t p = 0; p < k; ++p)
    for (std::size_t j = 0; j < n; ++j) bs[lb == layout::row ? p * n + j : j * k + p] = b[p * n + j];
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) cs[lc == layout::row ? i * n + j : j * m + i] = c[i * n + j];
  const shape2 sb{k, n}, sc{m, n};
  const shape2 b_strides = lb == layout::row ? shape2{n, 1} : shape2{1, k};
  const shape2 c_strides = lc == layout::row ? shape2{n, 1} : shape2{1, m};
  // Unqualified: found by argument-dependent lookup for spruce's formats and a user's alike.
  spmm(sparse, tensor_ref<const T>(bs.data(), sb, b_strides), tensor_ref<T>(cs.data(), sc, c_strides), alpha, beta);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const T got = cs[lc == layout::row ? i * n + j : j * m + i];
      const T w = want[i * n + j];
      CAPTURE(i);
      CAPTURE(j);
      // 1e-4 relative, plus the rounding a float sum of many terms may lose to cancellation.
      const double tol =
          1e-4 * std::max(1.0, std::abs(static_cast<double>(w))) + 1e-6 * std::abs(alpha) * abs_sum[i * n + j];
      REQUIRE(std::abs(got - w) <= tol);
    }
}

}  // namespace spmm_check
