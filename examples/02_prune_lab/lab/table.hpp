#pragma once
// The fine-grained stage's per-layer sparsity table, derived from a sensitivity scan the
// way the lab does it by hand: each layer gets the largest sparsity whose accuracy stays
// within a budget of the dense baseline, and when the model is then still larger than the
// size target the budget is widened, for every layer at once, just far enough to meet it.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <spruce/core/error.hpp>
#include <spruce/prune/scope.hpp>
#include <spruce/prune/sensitivity.hpp>

namespace lab {

/// What derive_table decided: the table (ratios per layer), the accuracy budget it used
/// (the requested one, or the wider one the size target needed), and the nonzero parameter
/// count the table leaves (pruned counts rounded down, so the real count is at most this
/// plus the layers' rounding).
struct derived_table {
  spruce::sparsity_table table;
  double budget = 0;
  std::size_t nonzero = 0;
  std::size_t dense = 0;
  bool widened = false;
};

namespace detail {

/// One layer's curve: (sparsity, accuracy drop) points in increasing sparsity, starting at
/// (0, 0).
struct curve {
  std::string name;
  std::size_t size = 0;
  std::vector<std::pair<double, double>> points;
};

inline std::vector<curve> curves_of(const spruce::sensitivity_table& scan) {
  std::map<std::string, curve> by_name;
  std::vector<std::string> order;
  for (const auto& r : scan.rows) {
    if (!(r.sparsity >= 0 && r.sparsity <= 1) || !std::isfinite(r.metric))
      throw spruce::error("derive_table: scan row for '" + r.tensor + "' has sparsity " + std::to_string(r.sparsity) +
                          " and metric " + std::to_string(r.metric) + "; pass a finished scan");
    auto [it, fresh] = by_name.try_emplace(r.tensor);
    if (fresh) {
      order.push_back(r.tensor);
      it->second.name = r.tensor;
      it->second.size = r.size;
      it->second.points.push_back({0.0, 0.0});
    }
    it->second.points.push_back({r.sparsity, scan.baseline - r.metric});
  }
  std::vector<curve> out;
  for (const auto& n : order) {
    curve c = std::move(by_name[n]);
    std::stable_sort(c.points.begin(), c.points.end());
    out.push_back(std::move(c));
  }
  return out;
}

/// The largest sparsity s such that the linearly interpolated drop stays <= budget on all
/// of [0, s] (a prefix, so a wider budget never gives a smaller s), capped at the largest
/// sparsity scanned.
inline double max_sparsity(const curve& c, double budget) {
  double s = 0;
  for (std::size_t i = 1; i < c.points.size(); ++i) {
    const auto [s0, d0] = c.points[i - 1];
    const auto [s1, d1] = c.points[i];
    if (d1 <= budget) {
      s = s1;
      continue;
    }
    // The drop crosses the budget inside (s0, s1]: interpolate where.
    if (d1 > d0 && budget >= d0) s = s0 + (s1 - s0) * (budget - d0) / (d1 - d0);
    break;
  }
  return s;
}

inline std::size_t pruned_count(double s, std::size_t size) {
  return static_cast<std::size_t>(std::floor(s * static_cast<double>(size)));
}

}  // namespace detail

/// Derives the fine-grained table from `scan` (one curve per layer: spruce::sensitivity_scan
/// rows). `dense_params` counts every parameter of the model (the scanned weights and
/// everything that stays dense: BN scales, biases). Each layer gets the largest sparsity
/// within `budget` (an accuracy drop, in the scan's metric units, e.g. 0.005 for half a
/// point) by linear interpolation between scanned sparsities; when the model's nonzero
/// count is then above `size_fraction * dense_params` the budget is widened (bisection,
/// the same budget for every layer) until it is not. So the table depends monotonically on
/// `budget`: a larger budget never gives any layer a smaller sparsity, and the size bound
/// always holds. Sparsities are rounded up to 1e-4. Throws spruce::error when even the
/// largest scanned sparsities leave the model above the target (scan to higher
/// sparsities), for an empty scan, a negative budget or a fraction outside (0, 1].
inline derived_table derive_table(const spruce::sensitivity_table& scan, std::size_t dense_params, double budget,
                                  double size_fraction) {
  if (!(budget >= 0) || !std::isfinite(budget))
    throw spruce::error("derive_table: accuracy budget " + std::to_string(budget) + " is not a number >= 0");
  if (!(size_fraction > 0 && size_fraction <= 1))
    throw spruce::error("derive_table: size fraction " + std::to_string(size_fraction) + " is not in (0, 1]");
  const std::vector<detail::curve> curves = detail::curves_of(scan);
  if (curves.empty()) throw spruce::error("derive_table: the scan has no rows; scan at least one layer");
  std::size_t scanned = 0;
  for (const auto& c : curves) scanned += c.size;
  if (scanned > dense_params)
    throw spruce::error("derive_table: the scanned layers hold " + std::to_string(scanned) +
                        " weights, more than the model's " + std::to_string(dense_params) + " parameters");
  const auto target = static_cast<std::size_t>(std::floor(size_fraction * static_cast<double>(dense_params)));
  const auto round_up = [](double s) { return std::min(1.0, std::ceil(s * 1e4 - 1e-9) / 1e4); };
  const auto nonzero_at = [&](double b) {
    std::size_t pruned = 0;
    for (const auto& c : curves) pruned += detail::pruned_count(round_up(detail::max_sparsity(c, b)), c.size);
    return dense_params - pruned;
  };
  derived_table out;
  out.dense = dense_params;
  out.budget = budget;
  if (nonzero_at(budget) > target) {
    double hi = budget;
    for (const auto& c : curves)
      for (const auto& p : c.points) hi = std::max(hi, p.second);
    if (nonzero_at(hi) > target)
      throw spruce::error("derive_table: even the largest scanned sparsities leave " + std::to_string(nonzero_at(hi)) +
                          " of " + std::to_string(dense_params) + " parameters, above the target " +
                          std::to_string(target) + " (" + std::to_string(size_fraction) +
                          " of dense); scan higher sparsities or relax the size target");
    double lo = budget;
    for (int i = 0; i < 60; ++i) {
      const double mid = 0.5 * (lo + hi);
      (nonzero_at(mid) > target ? lo : hi) = mid;
    }
    out.budget = hi;
    out.widened = true;
  }
  for (const auto& c : curves) {
    const double s = round_up(detail::max_sparsity(c, out.budget));
    if (s > 0) out.table.emplace(c.name, s);
  }
  out.nonzero = nonzero_at(out.budget);
  return out;
}

/// Reads a sparsity table file: one `name sparsity` (or `name,sparsity`) per line, `#`
/// comments and blank lines ignored. Every name must be one of `known` and every sparsity a
/// number in [0, 1]; anything else throws spruce::error naming the line, before any work.
spruce::sparsity_table read_table_file(const std::string& path, const std::vector<std::string>& known);

}  // namespace lab
