#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/simd.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/prune/n_m.hpp"
#include "spruce/sparse/block_sparse.hpp"
#include "spruce/sparse/csr.hpp"
#include "spruce/sparse/format.hpp"
#include "spruce/sparse/n_m_matrix.hpp"

namespace spruce::sparse {
inline namespace SPRUCE_SIMD_ABI {

/// What `choose_execution` measured: every candidate's time for one product, and the
/// winner. `format` is "dense" when the dense GEMM was fastest, else the sparse format's
/// name ("csr", "bsr 4x4", "n:m 2:4", ...).
struct execution_choice {
  std::string format;
  double dense_seconds = 0;
  double sparse_seconds = std::numeric_limits<double>::infinity();  // fastest sparse candidate
  std::vector<std::pair<std::string, double>> timings;             // every candidate, dense first
  bool use_sparse() const noexcept { return format != "dense"; }
  /// Dense time over the fastest sparse time: above 1 the sparse path wins.
  double speedup() const noexcept { return dense_seconds / sparse_seconds; }
};

/// Knobs of `choose_execution`: timed runs per candidate (the minimum is kept, after one
/// untimed warm-up), how much faster sparse must be to be chosen (hysteresis against
/// noise), and the seed of the random right-hand side.
struct choose_options {
  int repeats = 1;
  double min_speedup = 1.0;
  std::uint64_t seed = 1;
};

/// A sparse format worth timing for one weight: its name and a product
/// `run(B, C)` computing C = W * B with the format built beforehand.
template <class T>
struct spmm_candidate {
  std::string name;
  std::function<void(const tensor_ref<const T>&, const tensor_ref<T>&)> run;
};

namespace detail {

template <class F>
double best_seconds(F&& f, int repeats) {
  f();  // warm-up: first touch of C, packing buffers, thread start-up
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

template <class T>
void check_choose_inputs(const tensor_ref<const T>& weight, const mask& keep, std::size_t columns) {
  if (weight.rank() != 2 || !weight.is_contiguous())
    throw error("choose_execution: weight of shape " + shape_string(weight.shape()) +
                " must be a packed 2-D matrix; view a conv weight as [out, in*kh*kw]");
  if (!std::ranges::equal(keep.shape(), weight.shape()))
    throw error("choose_execution: mask of shape " + shape_string(keep.shape()) + " for a weight of shape " +
                shape_string(weight.shape()) + "; pass the weight's own mask");
  if (columns == 0) throw error("choose_execution: columns is 0; pass the N of the products the weight will do");
}

}  // namespace detail

/// A candidate for `choose_execution` in any sparse_format S (spruce's or a user's): S
/// is built from the 2-D `weight` (any host view) and `keep` with `options` once, here,
/// and the candidate's product is `spmm(S, B, C)`. Throws what S's from_dense throws when
/// the mask does not fit the format.
template <sparse_format S, host_view V>
  requires std::same_as<view_value_t<V>, typename S::value_type>
spmm_candidate<typename S::value_type> make_candidate(std::string name, const V& weight, const mask& keep,
                                                      const typename S::options_type& options = {}) {
  using T = typename S::value_type;
  auto a = std::make_shared<const S>(S::from_dense(to_const_ref(weight), keep, options));
  return {std::move(name), [a](const tensor_ref<const T>& b, const tensor_ref<T>& c) { spmm(*a, b, c, T(1), T(0)); }};
}

/// The sparse formats `choose_execution` times for `weight` under `keep`: CSR always; the
/// 2:4 compressed format when the mask is 2:4 along rows; block-sparse 1x4, 4x1, 4x4 and
/// 8x8 when that block shape stores at most 1.5x the kept entries (the mask is mostly
/// made of such blocks). A user may append candidates of their own and call the overload
/// that takes a candidate list (`make_candidate` builds one for any sparse_format).
/// `weight` is any host view.
template <host_view V>
std::vector<spmm_candidate<view_value_t<V>>> default_candidates(const V& weight_view, const mask& keep) {
  using T = view_value_t<V>;
  const tensor_ref<const T> weight = to_const_ref(weight_view);
  detail::check_choose_inputs(weight, keep, 1);
  std::vector<spmm_candidate<T>> out;
  out.push_back(make_candidate<csr_matrix<T>>("csr", weight, keep));
  if (keep.size() > 0 && is_n_m(keep, granularity::n_m<2, 4>{}))
    out.push_back(make_candidate<n_m_matrix<T>>("n:m 2:4", weight, keep, granularity::n_m_pattern{2, 4}));
  const std::size_t kept = keep.count_kept();
  for (auto [br, bc] : {std::pair<std::size_t, std::size_t>{1, 4}, {4, 1}, {4, 4}, {8, 8}}) {
    if (kept == 0) break;
    auto bsr = std::make_shared<block_sparse_matrix<T>>(block_sparse_matrix<T>::from_dense(weight, keep, br, bc));
    if (2 * bsr->stored_values() > 3 * kept) continue;
    out.push_back({std::string("bsr ").append(std::to_string(br)).append("x").append(std::to_string(bc)),
                   [bsr](const tensor_ref<const T>& b, const tensor_ref<T>& c) { spmm(*bsr, b, c); }});
  }
  return out;
}

/// Times the pruned weight's product with a [K, columns] right-hand side (the shape of
/// the work it will do: K = weight columns, `columns` = batch * output pixels for a conv)
/// once densely, through `dense(W, B, C)` (the caller's GEMM, e.g. spruce::eigen_gemm{}),
/// and once per sparse candidate, and says which to use. A fixed sparsity threshold (the
/// usual rule) ignores the shape, the machine and the pattern; this measures them.
/// The weight is 2-D [M, K] (any host view; view a conv weight as [out, in*kh*kw]);
/// `keep` has its shape.
template <host_view V, class DenseGemm>
execution_choice choose_execution(const V& weight_view, const mask& keep, std::size_t columns, DenseGemm&& dense,
                                  const std::vector<spmm_candidate<view_value_t<V>>>& candidates,
                                  const choose_options& opt = {}) {
  using T = view_value_t<V>;
  const tensor_ref<const T> weight = to_const_ref(weight_view);
  detail::check_choose_inputs(weight, keep, columns);
  if (candidates.empty()) throw error("choose_execution: no sparse candidates to time");
  const std::size_t m = weight.extent(0), k = weight.extent(1);
  std::vector<T> pruned(m * k), b(k * columns), c(m * columns);
  for (std::size_t i = 0; i < pruned.size(); ++i) pruned[i] = keep.data()[i] ? weight.data()[i] : T(0);
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<double> g;
  for (auto& x : b) x = static_cast<T>(g(rng));
  const std::array<std::size_t, 2> sw{m, k}, sb{k, columns}, sc{m, columns};
  const tensor_ref<const T> wv(pruned.data(), sw), bv(b.data(), sb);
  const tensor_ref<T> cv(c.data(), sc);

  execution_choice out;
  out.dense_seconds = detail::best_seconds([&] { dense(wv, bv, cv); }, opt.repeats);
  out.timings.emplace_back("dense", out.dense_seconds);
  std::string best = "dense";
  for (const auto& cand : candidates) {
    const double t = detail::best_seconds([&] { cand.run(bv, cv); }, opt.repeats);
    out.timings.emplace_back(cand.name, t);
    if (t < out.sparse_seconds) {
      out.sparse_seconds = t;
      best = cand.name;
    }
  }
  out.format = out.dense_seconds >= opt.min_speedup * out.sparse_seconds ? best : "dense";
  return out;
}

/// `choose_execution` over `default_candidates(weight, keep)`.
template <host_view V, class DenseGemm>
execution_choice choose_execution(const V& weight, const mask& keep, std::size_t columns, DenseGemm&& dense,
                                  const choose_options& opt = {}) {
  detail::check_choose_inputs(to_const_ref(weight), keep, columns);
  return choose_execution(weight, keep, columns, std::forward<DenseGemm>(dense), default_candidates(weight, keep), opt);
}

/// `choose_execution` over the default candidates plus the sparse_format S built with
/// `options` (named `name`): how a user's own format competes with spruce's.
template <sparse_format S, host_view V, class DenseGemm>
  requires std::same_as<view_value_t<V>, typename S::value_type>
execution_choice choose_execution_with(std::string name, const V& weight, const mask& keep, std::size_t columns,
                                       DenseGemm&& dense, const typename S::options_type& options = {},
                                       const choose_options& opt = {}) {
  detail::check_choose_inputs(to_const_ref(weight), keep, columns);
  auto candidates = default_candidates(weight, keep);
  candidates.push_back(make_candidate<S>(std::move(name), weight, keep, options));
  return choose_execution(weight, keep, columns, std::forward<DenseGemm>(dense), candidates, opt);
}

}  // namespace SPRUCE_SIMD_ABI
}  // namespace spruce::sparse
