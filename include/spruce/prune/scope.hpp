#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/rounding.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/granularity/detail/n_m_kernels.hpp"
#include "spruce/granularity/n_m.hpp"
#include "spruce/prune/global.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/prune/pruner.hpp"
#include "spruce/prune/tensor_range.hpp"
#include "spruce/schedule/base.hpp"
#include "spruce/selection/exact.hpp"
#include "spruce/selection/threshold.hpp"

namespace spruce {

/// How much of a tensor to prune, as torch.nn.utils.prune's `amount`: an integer is a
/// count of groups, a floating-point value a ratio of them. It converts implicitly from
/// both (so `{"conv1.weight", 0.6}` and `{"conv1.weight", 120}` are both table entries) and
/// back to double (the number as given: the ratio, or the count), so code that reads a
/// table as numbers keeps working. A selection rule turns it into its own parameter for
/// each tensor (see amount_rule); a count is checked against the tensor's groups there.
/// A negative count is an error; bool is not an amount.
class amount {
 public:
  constexpr amount() noexcept = default;
  template <std::floating_point F>
  constexpr amount(F ratio) noexcept : ratio_(static_cast<double>(ratio)) {}  // NOLINT: implicit by design
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  constexpr amount(I count) : is_count_(true) {  // NOLINT: implicit by design
    if constexpr (std::is_signed_v<I>)
      if (count < 0)
        throw error("amount " + std::to_string(count) +
                    " is a negative count; pass a count >= 0 or a ratio in [0, 1]");
    count_ = static_cast<std::size_t>(count);
  }

  constexpr bool is_count() const noexcept { return is_count_; }
  constexpr bool is_ratio() const noexcept { return !is_count_; }
  /// The count (meaningful when is_count()).
  constexpr std::size_t count() const noexcept { return count_; }
  /// The ratio (meaningful when is_ratio()).
  constexpr double ratio() const noexcept { return ratio_; }
  /// The number as given: the ratio, or the count as a double.
  constexpr operator double() const noexcept {  // NOLINT: implicit by design
    return is_count_ ? static_cast<double>(count_) : ratio_;
  }

  /// A count must not exceed the tensor's `groups`; throws spruce::error naming `name`.
  void check_count(std::size_t groups, const std::string& name) const {
    if (is_count_ && count_ > groups)
      throw error("amount " + std::to_string(count_) + " for " + detail::tensor_label(name) +
                  " is a count of groups, but the tensor has only " + std::to_string(groups) +
                  " under this granularity; pass a count <= " + std::to_string(groups) +
                  " or a ratio (a floating-point value, e.g. 0.5)");
  }
  /// The amount as a ratio of `groups`: a count c becomes c / groups (0 for no groups).
  double ratio_of(std::size_t groups, const std::string& name) const {
    if (!is_count_) return ratio_;
    check_count(groups, name);
    return groups == 0 ? 0.0 : static_cast<double>(count_) / static_cast<double>(groups);
  }

 private:
  bool is_count_ = false;
  std::size_t count_ = 0;
  double ratio_ = 0.0;
};

/// Per-tensor amounts, by parameter name (`{"backbone.conv0.weight", 0.6}, ...`): ratios,
/// or counts of groups (`{"fc.weight", 100}`), see amount.
using sparsity_table = std::map<std::string, amount, std::less<>>;

/// How selection rule S is built from an amount for a tensor of `groups` groups (named
/// `name` in errors): the customisation point of the per-layer tables and schedules. A rule
/// declaring `static S from_amount(const amount&, std::size_t groups, const std::string&)`
/// is built by it; otherwise a ratio r gives `S{r}` (its one parameter) and a count is
/// refused, since spruce cannot know what a count means to a foreign rule. spruce's rules:
/// `exact` takes a count as torch does; `threshold` turns count c into the ratio c / groups,
/// which gives back exactly c (ties still prune more, as the rule says); `quantile` and
/// `slimming` refuse counts (a quantile or percent of a sort is not a number of groups).
template <class S>
struct amount_rule {
  static S make(const amount& a, std::size_t groups, const std::string& name) {
    if constexpr (requires { { S::from_amount(a, groups, name) } -> std::same_as<S>; }) {
      return S::from_amount(a, groups, name);
    } else {
      if (a.is_count())
        throw error("amount " + std::to_string(a.count()) + " for " + detail::tensor_label(name) +
                    " is a count (an integer), but this selection rule takes a ratio and has no "
                    "meaning for a count; pass a ratio (a floating-point value, e.g. 0.5), or use "
                    "selection::exact or selection::threshold, which take counts");
      return S{a.ratio()};
    }
  }
};

template <>
struct amount_rule<selection::exact> {
  static selection::exact make(const amount& a, std::size_t groups, const std::string& name) {
    if (a.is_count()) {
      a.check_count(groups, name);
      return selection::exact(a.count());
    }
    return selection::exact(a.ratio());
  }
};

template <>
struct amount_rule<selection::threshold> {
  static selection::threshold make(const amount& a, std::size_t groups, const std::string& name) {
    return selection::threshold{a.ratio_of(groups, name)};
  }
};

namespace detail {

/// Groups the pruner's granularity cuts `shape` into (weights, for N:M).
template <class G>
std::size_t groups_of(const G& g, std::span<const std::size_t> shape, const std::string& name) {
  if constexpr (granularity::n_m_granularity<G>)
    return shape_size(shape);
  else
    return g.layout(shape, name).groups();
}

/// Under an N:M granularity the pattern fixes the sparsity: an amount must say the same.
inline constexpr double n_m_sparsity_tolerance = 1e-9;

inline void check_n_m_amount(const granularity::n_m_pattern& p, const amount& a,
                             std::span<const std::size_t> shape, const std::string& name) {
  const std::string pat = n_m_string(p.n, p.m);
  if (a.is_count()) {
    const std::size_t want = n_m_pruned_count(shape, p.n, p.m);
    if (a.count() != want)
      throw error("per-layer table prunes " + std::to_string(a.count()) + " weights of " +
                  tensor_label(name) + ", but the pruner's " + pat + " pattern fixes the count at " +
                  std::to_string(want) + " for shape " + shape_string(shape) + " (N of every M "
                  "weights kept); set the entry to " + std::to_string(want) + " or to the ratio " +
                  shortest_decimal(p.sparsity()) + ", or use a group granularity for other amounts");
    return;
  }
  if (!(std::fabs(a.ratio() - p.sparsity()) <= n_m_sparsity_tolerance))
    throw error("per-layer table gives " + tensor_label(name) + " sparsity " +
                shortest_decimal(a.ratio()) + ", but the pruner's " + pat +
                " pattern fixes it at 1 - N/M = " + shortest_decimal(p.sparsity()) +
                " (N of every M weights kept); set the entry to " + shortest_decimal(p.sparsity()) +
                ", or use a group granularity for other sparsities");
}

/// Validates every table entry against the parameters and the pruner (unknown or
/// duplicate names, NaN ratios, counts beyond a tensor's groups, amounts an N:M pattern
/// cannot give) and builds each named tensor's rule, before any mask is computed.
template <class G, class S, class T>
std::vector<std::optional<S>> rules_for(const G& g, std::span<const named_tensor<T>> params,
                                        const sparsity_table& table) {
  for (const auto& entry : table) {
    const std::string& name = entry.first;
    const auto hit = std::count_if(params.begin(), params.end(),
                                   [&](const named_tensor<T>& p) { return p.name == name; });
    if (hit == 0)
      throw error("sparsity table names " + tensor_label(name) +
                  ", which is not among the parameters; fix the name or add the parameter");
    if (hit > 1)
      throw error("parameter name '" + name + "' appears " + std::to_string(hit) +
                  " times; give every parameter a unique name");
    if (entry.second.is_ratio()) clamp_ratio(entry.second.ratio(), "sparsity of " + tensor_label(name));
  }
  std::vector<std::optional<S>> rules(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto it = table.find(params[i].name);
    if (it == table.end()) continue;
    const auto shape = params[i].view.shape();
    if constexpr (granularity::n_m_granularity<G>) {
      g.validate(params[i].name);
      check_n_m_amount(g.pattern(), it->second, shape, params[i].name);
      rules[i].emplace();  // the pattern fixes the sparsity: the rule is not consulted
    } else {
      const std::size_t groups = groups_of(g, shape, params[i].name);
      it->second.check_count(groups, params[i].name);
      rules[i].emplace(amount_rule<S>::make(it->second, groups, params[i].name));
    }
  }
  return rules;
}

template <class G, class C, class S, class T>
masked_parameters<T> per_layer_masks_of(const pruner<G, C, S>& proto,
                                        std::span<const named_tensor<T>> params,
                                        const sparsity_table& table) {
  const std::vector<std::optional<S>> rules = rules_for<G, S>(proto.granularity, params, table);
  std::vector<mask> masks(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!rules[i]) continue;
    const pruner<G, C, S> layer{proto.granularity, proto.criterion, *rules[i]};
    masks[i] = layer.compute(tensor_ref<const T>(params[i].view), params[i].name);
  }
  masked_parameters<T> reg;
  for (std::size_t i = 0; i < params.size(); ++i)
    if (rules[i]) reg.add(params[i].name, params[i].view, std::move(masks[i]));
  return reg;
}

}  // namespace detail

/// Per-layer table scope: every parameter named in `table` is pruned alone by `proto`'s
/// granularity and criterion with the selection rule its amount builds (amount_rule<S>:
/// S{ratio}, or a count for the rules that take one); the others stay dense and
/// unregistered. Returns the registry of masks; the weights are not written (call
/// `apply()`, or use `per_layer_prune`). `params` is any contiguous range of named tensors.
/// Everything is validated and every mask computed before returning: an unknown or
/// duplicate name, a NaN sparsity, a count larger than the tensor's groups, or a NaN weight
/// throws, naming the tensor. With an N:M granularity the pattern fixes each tensor's
/// sparsity: an entry must be the pattern's 1 - N/M (within 1e-9) or the exact count of
/// weights the pattern prunes, and anything else is refused with that value in the message.
template <pruner_granularity G, criterion::any_criterion C, class S, named_tensor_range R>
  requires select::score_type<named_tensor_value_t<R>> && (granularity::n_m_granularity<G> || selection::rule<S>)
masked_parameters<named_tensor_value_t<R>> per_layer_masks(const pruner<G, C, S>& proto, const R& params,
                                                          const sparsity_table& table) {
  return detail::per_layer_masks_of(proto, detail::as_tensor_span(params), table);
}

/// per_layer_masks, applied: the pruned groups are zeroed (only after every mask exists).
template <pruner_granularity G, criterion::any_criterion C, class S, named_tensor_range R>
  requires select::score_type<named_tensor_value_t<R>> && (granularity::n_m_granularity<G> || selection::rule<S>)
masked_parameters<named_tensor_value_t<R>> per_layer_prune(const pruner<G, C, S>& proto, const R& params,
                                                          const sparsity_table& table) {
  auto reg = per_layer_masks(proto, params, table);
  reg.apply();
  return reg;
}

/// How a schedule's sparsity is spread over a set of tensors.
enum class scope {
  per_tensor,  ///< every tensor pruned alone to the scheduled sparsity
  global,      ///< one selection over all of them (see global_masks)
};

/// One step of a pruning schedule: when `schedule.should_prune(step)`, the masks of every
/// tensor in `params` (any contiguous range of named tensors) for sparsity
/// `schedule.sparsity_at(step)` under `where`, with `proto`'s granularity and criterion and
/// the rule amount_rule<S> builds from that sparsity, applied to the weights and returned
/// as a registry (re-apply it after each optimizer step until the next pruning step);
/// otherwise nothing happens and the result is empty.
///
/// With an N:M granularity every scheduled prune applies the pattern (each tensor its own
/// mask, per tensor and globally alike). A pattern has one sparsity, 1 - N/M, so it cannot
/// follow a ramp: a scheduled sparsity that differs from it (by more than 1e-9) is an error
/// that says to schedule the pattern with one_shot or constant at 1 - N/M.
template <schedule::schedule_policy Sch, pruner_granularity G, criterion::any_criterion C, class S,
          named_tensor_range R>
  requires select::score_type<named_tensor_value_t<R>> &&
           (granularity::n_m_granularity<G> || selection::count_rule<S>)
std::optional<masked_parameters<named_tensor_value_t<R>>> prune_at_step(
    const Sch& sched, std::int64_t step, const pruner<G, C, S>& proto, const R& params,
    scope where = scope::per_tensor, const sparsity_limits& limits = {}) {
  const auto ps = detail::as_tensor_span(params);
  if (!sched.should_prune(step)) return std::nullopt;
  const double s = sched.sparsity_at(step);
  if constexpr (granularity::n_m_granularity<G>) {
    const granularity::n_m_pattern pat = proto.granularity.pattern();
    proto.granularity.validate("the scheduled tensors");
    if (!(std::fabs(s - pat.sparsity()) <= detail::n_m_sparsity_tolerance))
      throw error("the schedule asks for sparsity " + detail::shortest_decimal(s) + " at step " +
                  std::to_string(step) + ", but the pruner's " + detail::n_m_string(pat.n, pat.m) +
                  " pattern has exactly one sparsity, 1 - N/M = " + detail::shortest_decimal(pat.sparsity()) +
                  " (N of every M weights kept), so it cannot follow a ramp; schedule it with "
                  "schedule::one_shot(" + detail::shortest_decimal(pat.sparsity()) +
                  ", step) or schedule::constant(" + detail::shortest_decimal(pat.sparsity()) +
                  ", begin, end, frequency)");
    if (where == scope::global) return global_prune(proto, ps, limits);
    sparsity_table table;
    for (const auto& t : ps) table.emplace(t.name, s);
    return per_layer_prune(proto, ps, table);
  } else {
    const pruner<G, C, S> p{proto.granularity, proto.criterion,
                            amount_rule<S>::make(amount(s), 0, "the scheduled sparsity")};
    if (where == scope::global) return global_prune(p, ps, limits);
    sparsity_table table;
    for (const auto& t : ps) table.emplace(t.name, s);
    return per_layer_prune(p, ps, table);
  }
}

}  // namespace spruce
