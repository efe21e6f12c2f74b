// The body of one translation unit of the ODR test (included by odr_base.cpp and
// odr_wide.cpp, which are built with different -m flags). ODR_UNIT names the unit's own
// namespace; everything it reports about spruce goes through the linker (a volatile
// function pointer), so a definition merged with the other unit's would show.
#pragma once

#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "spruce/core/simd.hpp"
#include "spruce/sparse/csr.hpp"

struct odr_report {
  std::size_t compiled_bytes;  // this unit's own vector width (a constant folded here)
  std::size_t linked_bytes;    // what the engine's width function, as linked, returns
  const void* spmm_address;    // the address of spmm<float> as this unit sees it
};

using odr_spmm_fn = void (*)(const spruce::sparse::csr_matrix<float>&, const spruce::tensor_ref<const float>&,
                             const spruce::tensor_ref<float>&, float, float);

namespace ODR_UNIT {

odr_report report() {
  std::size_t (*volatile width)() noexcept = &spruce::sparse::detail::compiled_simd_bytes<float>;
  const odr_spmm_fn spmm = &spruce::sparse::spmm;
  return {spruce::detail::simd_bytes, width(), reinterpret_cast<const void*>(spmm)};
}

/// Runs spmm<float> (through the linked address) on a random problem wide enough for the
/// vector path and returns the largest relative error against a naive product.
double product_error() {
  const std::size_t m = 9, k = 50, n = 70;
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> a(m * k), b(k * n), c(m * n);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = i % 3 == 0 ? g(rng) : 0.0f;
  for (auto& x : b) x = g(rng);
  const std::size_t sa[] = {m, k}, sb[] = {k, n}, sc[] = {m, n};
  const auto csr = spruce::sparse::csr_matrix<float>::from_dense(spruce::tensor_ref<const float>(a.data(), sa));
  volatile odr_spmm_fn spmm = &spruce::sparse::spmm;
  spmm(csr, spruce::tensor_ref<const float>(b.data(), sb), spruce::tensor_ref<float>(c.data(), sc), 1.0f, 0.0f);
  double worst = 0;
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double want = 0;
      for (std::size_t p = 0; p < k; ++p) want += static_cast<double>(a[i * k + p]) * b[p * n + j];
      worst = std::max(worst, std::abs(c[i * n + j] - want) / std::max(1.0, std::abs(want)));
    }
  return worst;
}

}  // namespace ODR_UNIT
