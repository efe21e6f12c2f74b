#pragma once

#include <cstddef>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/granularity/group_layout.hpp"
#include "spruce/prune/group_scores.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/select/key.hpp"
#include "spruce/selection/rule.hpp"

namespace spruce {

namespace detail {

/// Throws, naming the tensor, the flat index and the row, for the first NaN in `s`.
template <class T>
void check_row_scores(std::span<const T> s, std::size_t row_len, const std::string& name) {
  for (std::size_t i = 0; i < s.size(); ++i)
    if (s[i] != s[i])
      throw error("score of " + tensor_label(name) + " at flat index " + std::to_string(i) +
                  " (row " + std::to_string(i / row_len) + ") is NaN; NaN has no order, so "
                  "nothing was selected. Replace or drop NaN values (e.g. check for a diverged "
                  "training step, or NaN calibration activations) before pruning");
}

/// The per-row keep mask of flat scores `s` ([rows, row_len] row-major) under `rule`,
/// ordered by `Order`. Rows are independent selections, split between threads; the first
/// failing row's error (in row order) is rethrown after every row has run, and no mask is
/// returned then.
template <template <class> class Order, selection::rule S, class T>
byte_buffer per_row_keep(const S& rule, std::span<const T> s, std::size_t rows,
                         std::size_t row_len, const std::string& name) {
  check_row_scores(s, row_len, name);
  byte_buffer keep(s.size());
  std::vector<std::exception_ptr> failed(rows);
  parallel_chunks(rows, [&](std::size_t, std::size_t, std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      try {
        const byte_buffer k = selection::keep_mask<Order>(
            rule, s.subspan(r * row_len, row_len), tensor_label(name) + " row " + std::to_string(r));
        std::copy(k.begin(), k.end(), keep.begin() + static_cast<std::ptrdiff_t>(r * row_len));
      } catch (...) {
        failed[r] = std::current_exception();
        return;
      }
    }
  }, total_work{s.size()});
  for (const std::exception_ptr& e : failed)
    if (e) std::rethrow_exception(e);
  return keep;
}

}  // namespace detail

/// The per-output-row comparison scope (Wanda's): for a weight [out, ...], every row — the
/// axis-0 slice `w[o]`, its in * kh * kw weights for a conv — gets its own selection
/// under `rule`, as if each row were a tensor of its own. `selection::exact(0.5)` prunes
/// exactly half of every row (ties: lower index first within the row); `threshold` cuts
/// each row at its own count-th smallest score; `quantile` takes each row's own quantile.
/// Scores are element scores (element granularity) from any element-wise or group
/// criterion, `criterion::wanda` included, read from `in` with whatever extension the
/// criterion needs. A criterion that orders like |w| selects on the weights directly.
///
/// Validates everything first: rank >= 2 (a vector has no rows to compare within), the
/// criterion's inputs (group_scores), the rule's parameters (per row, the message names
/// the row) and NaN scores (the message names the tensor, the flat index and its row);
/// throws spruce::error and returns no mask then. An empty tensor keeps everything.
template <criterion::any_criterion C, selection::rule S, select::score_type T, class Extra>
mask per_row_mask(const C& c, const S& rule, const criterion::inputs<T, Extra>& in,
                  const std::string& name = {}) {
  const std::span<const std::size_t> shape = in.weight.shape();
  if (shape.size() < 2)
    throw error("per_row_mask: " + detail::tensor_label(name) + " has shape " + shape_string(shape) +
                "; the per-row scope compares weights within each output row of a weight "
                "[out, in, ...] (rank >= 2); prune a vector with a layer-wide rule instead");
  const std::size_t n = in.weight.size(), rows = shape[0];
  const std::size_t row_len = rows ? n / rows : 0;
  if constexpr (criterion::orders_like_magnitude_v<C>) {
    if constexpr (requires { c.validate(name); }) c.validate(name);
    if (n == 0) return mask(shape);
    std::vector<T> scratch;
    const T* w = detail::contiguous(in.weight, scratch);
    return mask::adopt(shape, detail::per_row_keep<select::by_magnitude>(
                                  rule, std::span<const T>(w, n), rows, row_len, name));
  } else {
    const granularity::group_layout layout = granularity::element{}.layout(shape, name);
    const std::vector<T> s = group_scores(c, in, layout, name);
    if (n == 0) return mask(shape);
    return mask::adopt(shape, detail::per_row_keep<select::by_value>(
                                  rule, std::span<const T>(s), rows, row_len, name));
  }
}

/// per_row_mask of a weight alone (criteria that read nothing but the weight): any host
/// view.
template <criterion::any_criterion C, selection::rule S, host_view V>
  requires select::score_type<view_value_t<V>>
mask per_row_mask(const C& c, const S& rule, const V& w, const std::string& name = {}) {
  return per_row_mask(c, rule, criterion::inputs<view_value_t<V>, criterion::extra_t<C>>{to_const_ref(w)},
                      name);
}

/// per_row_mask with the criterion and rule of a pruner; its granularity must have one
/// weight per group (element), since the scope compares single weights.
template <class G, criterion::any_criterion C, selection::rule S, select::score_type T, class Extra>
mask per_row_mask(const pruner<G, C, S>& p, const criterion::inputs<T, Extra>& in,
                  const std::string& name = {}) {
  static_assert(granularity::one_weight_per_group_v<G>,
                "per_row_mask compares single weights within each row: use a pruner with "
                "element granularity (one_weight_per_group)");
  return per_row_mask(p.criterion, p.selection, in, name);
}

template <class G, criterion::any_criterion C, selection::rule S, host_view V>
  requires select::score_type<view_value_t<V>>
mask per_row_mask(const pruner<G, C, S>& p, const V& w, const std::string& name = {}) {
  return per_row_mask(p, criterion::inputs<view_value_t<V>, criterion::extra_t<C>>{to_const_ref(w)}, name);
}

}  // namespace spruce
