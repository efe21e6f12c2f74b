#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/criterion/l1.hpp"
#include "spruce/granularity/element.hpp"
#include "spruce/granularity/group_layout.hpp"
#include "spruce/prune/magnitude.hpp"
#include "spruce/prune/mask.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/selection/rule.hpp"
#include "spruce/selection/threshold.hpp"

namespace spruce {

/// Which tensors a sensitivity scan visits. `min_rank` skips tensors of lower rank: 2 is
/// the lab's choice (conv and linear weights only; biases and BN parameters stay dense);
/// the default 1 visits every tensor (rank-0, i.e. default-constructed, views are always
/// skipped). `names`, when not empty, restricts the scan to those tensors; each must name
/// exactly one parameter of rank >= min_rank. Rows always follow the parameters' order.
struct sensitivity_options {
  std::size_t min_rank = 1;
  std::vector<std::string> names{};
};

/// One measurement: `tensor` pruned alone at the requested `sparsity`, the metric the
/// evaluation callback returned, how many of its `size` weights the mask pruned, and the
/// resulting `actual_sparsity` = pruned / size (it differs from the request through count
/// rounding, threshold ties or whole-group pruning; 0 for an empty tensor).
struct sensitivity_row {
  std::string tensor;
  double sparsity = 0.0;
  double metric = 0.0;
  std::size_t pruned = 0;
  std::size_t size = 0;
  double actual_sparsity = 0.0;
};

namespace detail {

/// False for an elementwise criterion that reads gradients or a Hessian, which a scan
/// over bare weights cannot supply.
template <class C>
consteval bool scores_from_weights() {
  if constexpr (criterion::elementwise_criterion<C>)
    return !C::needs_grad && !C::needs_hessian;
  else
    return true;
}

}  // namespace detail

/// What a sensitivity scan returns: the metric with nothing pruned (`baseline`, measured
/// once before any pruning) and one row per (tensor, sparsity), tensors in parameter order
/// and, within a tensor, sparsities in the order given.
/// `spruce::io::csv(table)` / `spruce::io::write_csv(table, path)` (the opt-in header
/// spruce/io/sensitivity_csv.hpp) turn it into a CSV file, written atomically.
struct sensitivity_table {
  double baseline = 0.0;
  std::vector<sensitivity_row> rows;
};

/// A mask maker for sensitivity_scan: called as `make_mask(tensor, sparsity)` with the
/// tensor's original weights, it returns the keep mask that prunes the tensor at that
/// sparsity. It may throw (nothing is pruned then) and may also provide
/// `validate(const named_tensor<T>&)`, which the scan calls for every tensor it will visit
/// before anything is evaluated, to reject a tensor it cannot prune (a rank a granularity
/// does not accept) up front.
template <class F, class T>
concept sensitivity_mask_maker = std::copy_constructible<F> &&
    std::invocable<F&, const named_tensor<T>&, double> &&
    std::convertible_to<std::invoke_result_t<F&, const named_tensor<T>&, double>, mask>;

/// An evaluation callback for sensitivity_scan: `evaluate()` measures the model as it is
/// now (validation accuracy, loss, ...) and returns a number convertible to double.
template <class E>
concept sensitivity_metric = std::copy_constructible<E> && std::invocable<E&> &&
    std::convertible_to<std::invoke_result_t<E&>, double>;

/// The MIT lab's mask maker: fine-grained magnitude pruning (|w|) under rule `S` built from
/// the sparsity (`S{sparsity}`; selection::threshold by default, selection::exact for
/// torch's exact count).
template <selection::rule S = selection::threshold>
  requires requires(double s) { S{s}; }
struct magnitude_masker {
  template <select::score_type T>
  mask operator()(const named_tensor<T>& t, double sparsity) const {
    return magnitude_mask(tensor_ref<const T>(t.view), S{sparsity}, t.name);
  }
};

/// A mask maker from any pruner: `policy` is copied per call and its selection replaced by
/// `S{sparsity}`, so the granularity's and criterion's runtime knobs (block sizes, Ln's p,
/// a random seed) come from the prototype. The criterion must score from the weights
/// alone; for gradients, Hessians or BN scales write a mask maker that supplies them.
/// `validate` checks each tensor's rank against the granularity before the scan starts.
template <granularity::group_granularity G, criterion::any_criterion C,
          selection::rule S = selection::threshold>
  requires requires(double s) { S{s}; }
struct pruner_masker {
  pruner<G, C, S> policy{};

  template <select::score_type T>
  mask operator()(const named_tensor<T>& t, double sparsity) const {
    pruner<G, C, S> p = policy;
    p.selection = S{sparsity};
    return p.compute(criterion::inputs<T, criterion::extra_t<C>>{tensor_ref<const T>(t.view)}, t.name);
  }

  static_assert(detail::scores_from_weights<C>(),
                "pruner_masker scores from the weights alone; for a criterion that reads "
                "gradients or a Hessian pass sensitivity_scan a mask maker that supplies them");

  template <select::score_type T>
  void validate(const named_tensor<T>& t) const {
    (void)policy.granularity.layout(t.view.shape(), t.name);
  }
};

namespace detail {

/// Writes saved[flat] back into every element of `w` bit for bit (memcpy, so -0, NaN
/// payloads and denormals survive whatever the floating-point environment).
template <class T>
void restore_elements(const tensor_ref<T>& w, const T* saved) noexcept {
  const std::size_t n = w.size();
  if (w.is_contiguous()) {
    if (n) std::memcpy(w.data(), saved, n * sizeof(T));
    return;
  }
  parallel_chunks(n, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
    for_each_run(w, b, e, [&](std::size_t flat, T* p, std::size_t s, std::size_t len) {
      for (std::size_t i = 0; i < len; ++i) std::memcpy(p + i * s, saved + flat + i, sizeof(T));
    });
  });
}

/// Puts a tensor's saved weights back when it goes out of scope, on return or during
/// unwinding alike, so a throwing evaluation callback cannot leave a layer pruned.
template <class T>
class restore_guard {
 public:
  restore_guard(const tensor_ref<T>& w, const T* saved) noexcept : w_(w), saved_(saved) {}
  restore_guard(const restore_guard&) = delete;
  restore_guard& operator=(const restore_guard&) = delete;
  ~restore_guard() { restore_elements(w_, saved_); }

 private:
  tensor_ref<T> w_;
  const T* saved_;
};

template <class T>
concept scan_element = std::is_arithmetic_v<T> && !std::is_const_v<T>;

/// The indices of the parameters a scan visits, after validating everything it is given.
template <class T>
std::vector<std::size_t> sensitivity_targets(std::span<const named_tensor<T>> params,
                                             std::span<const double> sparsities,
                                             const sensitivity_options& opt) {
  if (sparsities.empty())
    throw error("sensitivity_scan: the sparsity list is empty; pass at least one sparsity "
                "in [0, 1]");
  for (std::size_t i = 0; i < sparsities.size(); ++i)
    if (!(sparsities[i] >= 0.0 && sparsities[i] <= 1.0))
      throw error("sensitivity_scan: sparsity #" + std::to_string(i) + " is " +
                  shortest_decimal(sparsities[i]) + ", which is not in [0, 1]; pass sparsities "
                  "between 0 and 1");
  std::vector<std::string_view> sorted;
  sorted.reserve(params.size());
  for (const auto& p : params) sorted.push_back(p.name);
  std::ranges::sort(sorted);
  if (const auto d = std::ranges::adjacent_find(sorted); d != sorted.end())
    throw error("sensitivity_scan: parameter name '" + std::string(*d) + "' appears " +
                std::to_string(std::ranges::count(sorted, *d)) +
                " times; give every parameter a unique name");

  const std::size_t min_rank = std::max<std::size_t>(opt.min_rank, 1);
  std::vector<char> chosen(params.size(), opt.names.empty() ? 1 : 0);
  for (std::size_t i = 0; i < opt.names.size(); ++i) {
    const std::string& n = opt.names[i];
    if (std::count(opt.names.begin(), opt.names.begin() + static_cast<std::ptrdiff_t>(i), n))
      throw error("sensitivity_options::names lists '" + n + "' twice; list each tensor once");
    const auto it = std::ranges::find(params, n, &named_tensor<T>::name);
    if (it == params.end())
      throw error("sensitivity_options::names lists '" + n + "', which is not among the "
                  "parameters; fix the name or remove it");
    if (it->view.rank() < min_rank)
      throw error("sensitivity_options::names lists '" + n + "' of shape " +
                  shape_string(it->view.shape()) + ", below min_rank = " +
                  std::to_string(min_rank) + "; lower min_rank or remove the name");
    chosen[static_cast<std::size_t>(it - params.begin())] = 1;
  }
  std::vector<std::size_t> targets;
  for (std::size_t i = 0; i < params.size(); ++i)
    if (chosen[i] && params[i].view.rank() >= min_rank) targets.push_back(i);
  if (targets.empty())
    throw error("sensitivity_scan: none of the " + std::to_string(params.size()) +
                " parameters has rank >= " + std::to_string(min_rank) +
                "; pass the model's weights or lower sensitivity_options::min_rank");
  return targets;
}

}  // namespace detail

/// The sensitivity scan of the MIT lab: for every selected tensor and every sparsity,
/// prunes that tensor alone with `make_mask(tensor, sparsity)`, calls `evaluate()` with
/// the rest of the model dense, and restores the tensor's weights bit for bit before the
/// next measurement. `evaluate()` is first called once with nothing pruned (the
/// baseline), then once per row, in row order.
///
/// Everything is validated before the first call: an empty sparsity list, a sparsity that
/// is NaN or outside [0, 1], duplicate parameter names, a name in `opt.names` that is
/// unknown, repeated or below `opt.min_rank`, nothing left to scan, or a tensor the mask
/// maker's `validate` rejects throws spruce::error without evaluating or writing anything.
/// Masks are computed from the original weights; a mask of the wrong shape throws
/// spruce::error. Weights are restored also when `make_mask` or `evaluate` (or the
/// conversion of its result) throws, and after a mask maker that pruned in place; the
/// exception then propagates with every tensor bitwise as it was. One tensor's copy is
/// held at a time. Nothing else may write the weights during the scan: each restore puts
/// back the values saved before that tensor's first measurement (an `evaluate` that
/// trains is undone).
template <detail::scan_element T, sensitivity_mask_maker<T> MakeMask, sensitivity_metric Eval>
sensitivity_table sensitivity_scan(std::span<const named_tensor<T>> params,
                                   std::span<const double> sparsities, MakeMask make_mask,
                                   Eval evaluate, const sensitivity_options& opt = {}) {
  const std::vector<std::size_t> targets = detail::sensitivity_targets(params, sparsities, opt);
  if constexpr (requires(const named_tensor<T>& t) { make_mask.validate(t); })
    for (std::size_t i : targets) make_mask.validate(params[i]);

  sensitivity_table table;
  table.baseline = static_cast<double>(std::invoke(evaluate));
  table.rows.reserve(targets.size() * sparsities.size());
  std::vector<T> saved;
  for (std::size_t i : targets) {
    const named_tensor<T>& t = params[i];
    const std::size_t n = t.view.size();
    saved.resize(n);
    detail::gather(tensor_ref<const T>(t.view), saved.data());
    for (double s : sparsities) {
      // Guarded from before the mask is made, so a mask maker that prunes in place
      // (magnitude_prune instead of magnitude_mask) is undone as well.
      const detail::restore_guard<T> guard(t.view, saved.data());
      const mask m = std::invoke(make_mask, t, s);
      if (!std::ranges::equal(m.shape(), t.view.shape()))
        throw error("sensitivity_scan: the mask maker returned a mask of shape " +
                    shape_string(m.shape()) + " for " + detail::tensor_label(t.name) +
                    " of shape " + shape_string(t.view.shape()) +
                    "; return a mask computed for this tensor");
      detail::apply_keep(t.view, m.data());
      const double metric = static_cast<double>(std::invoke(evaluate));
      table.rows.push_back({t.name, s, metric, m.count_pruned(), n, m.sparsity()});
    }
  }
  return table;
}

template <detail::scan_element T, sensitivity_mask_maker<T> MakeMask, sensitivity_metric Eval>
sensitivity_table sensitivity_scan(const std::vector<named_tensor<T>>& params,
                                   std::span<const double> sparsities, MakeMask make_mask,
                                   Eval evaluate, const sensitivity_options& opt = {}) {
  return sensitivity_scan(std::span<const named_tensor<T>>(params), sparsities,
                          std::move(make_mask), std::move(evaluate), opt);
}

/// The scan with a policy spelled as types: each tensor is pruned by
/// `pruner<G, C, S>{{}, {}, S{sparsity}}`. The defaults are the lab's fine-grained magnitude
/// rule (element / L1 / threshold, computed by magnitude_mask), so
/// `sensitivity_scan(params, sparsities, evaluate)` is the lab's scan and
/// `sensitivity_scan<granularity::filter, criterion::l2>(params, sparsities, evaluate,
/// {.min_rank = 2})` scans filter pruning. Policies with runtime knobs go through
/// pruner_masker; the validation and guarantees are those of the mask-maker overload, and
/// a tensor whose rank the granularity rejects fails before anything is evaluated.
template <granularity::group_granularity G = granularity::element,
          criterion::any_criterion C = criterion::l1, selection::rule S = selection::threshold,
          detail::scan_element T, sensitivity_metric Eval>
  requires select::score_type<T> && requires(double s) { S{s}; }
sensitivity_table sensitivity_scan(std::span<const named_tensor<T>> params,
                                   std::span<const double> sparsities, Eval evaluate,
                                   const sensitivity_options& opt = {}) {
  // The lab's fast path whenever the policy means "rank single weights by |w|": asked of
  // the traits, so a user granularity or criterion that declares them gets it too.
  if constexpr (granularity::one_weight_per_group_v<G> && criterion::orders_like_magnitude_v<C>)
    return sensitivity_scan(params, sparsities, magnitude_masker<S>{}, std::move(evaluate), opt);
  else
    return sensitivity_scan(params, sparsities, pruner_masker<G, C, S>{}, std::move(evaluate), opt);
}

template <granularity::group_granularity G = granularity::element,
          criterion::any_criterion C = criterion::l1, selection::rule S = selection::threshold,
          detail::scan_element T, sensitivity_metric Eval>
  requires select::score_type<T> && requires(double s) { S{s}; }
sensitivity_table sensitivity_scan(const std::vector<named_tensor<T>>& params,
                                   std::span<const double> sparsities, Eval evaluate,
                                   const sensitivity_options& opt = {}) {
  return sensitivity_scan<G, C, S>(std::span<const named_tensor<T>>(params), sparsities,
                                   std::move(evaluate), opt);
}

}  // namespace spruce
