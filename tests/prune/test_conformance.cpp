// Policy conformance: every granularity x criterion pair, spruce's own and a user's, runs
// through the same invariants (mask shape, count rule, whole groups, score order,
// idempotence, monotonicity, weights restored after a sensitivity scan); then a granularity
// and a criterion written only here, as user code, go through the pruner, global scope, the
// sensitivity scan and the pruning schedules with no change to spruce.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/spruce.hpp"

// ---- user code: written against the public concepts only, outside namespace spruce ----

namespace user {

/// Pairs of consecutive output filters pruned together (filters 2k and 2k + 1 of a weight of
/// rank >= 2); an odd filter count leaves the last filter a group of its own.
struct pairs_of_rows {
  spruce::granularity::group_layout layout(std::span<const std::size_t> shape,
                                           const std::string& name = {}) const {
    if (shape.size() < 2 || shape.size() > spruce::max_rank)
      throw spruce::error(std::string("pairs_of_rows needs a weight of rank 2 to ")
                              .append(std::to_string(spruce::max_rank))
                              .append(", but '")
                              .append(name)
                              .append("' has rank ")
                              .append(std::to_string(shape.size())));
    spruce::granularity::group_layout l;
    l.rank = shape.size();
    for (std::size_t r = 0; r < l.rank; ++r) {
      l.extent[r] = shape[r];
      l.tile[r] = r == 0 ? 2 : std::max<std::size_t>(shape[r], 1);
    }
    return l;
  }
};

/// sum log(1 + |w|) over a group: a magnitude score that damps large outliers.
struct log_magnitude {
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = false;
  template <class T> T element(T w, T, T) const { return std::log1p(std::abs(w)); }
  template <class T> T reduce(T a, T s) const { return a + s; }
  template <class T> T finish(T a) const { return a; }
  template <class T> T identity() const { return T(0); }
};

}  // namespace user

static_assert(spruce::granularity::group_granularity<user::pairs_of_rows>);
static_assert(spruce::criterion::elementwise_criterion<user::log_magnitude>);
static_assert(std::is_trivially_copyable_v<user::pairs_of_rows>);
static_assert(std::is_trivially_copyable_v<user::log_magnitude>);

using namespace spruce;

namespace {

// ---- policies with runtime knobs, spelled as types so that a combo names them ----

struct block_2x3 {
  using type = granularity::block;
  static type make() { return {2, 3}; }
};
struct ln_3 {
  using type = criterion::ln;
  static type make() { return {3.0}; }
};
struct ln_inf {
  using type = criterion::ln;
  static type make() { return {std::numeric_limits<double>::infinity()}; }
};
struct random_42 {
  using type = criterion::random;
  static type make() { return {42}; }
};

/// A policy type itself (default knobs), or one of the knob holders above.
template <class X>
struct spec {
  using type = X;
  static X make() { return {}; }
};
template <class X>
  requires requires { typename X::type; }
struct spec<X> {
  using type = typename X::type;
  static type make() { return X::make(); }
};

/// One granularity x criterion pair of the conformance suite.
template <class G, class C>
struct combo {
  using granularity = typename spec<G>::type;
  using criterion = typename spec<C>::type;
  static granularity make_granularity() { return spec<G>::make(); }
  static criterion make_criterion() { return spec<C>::make(); }
};

template <class C>
consteval bool reads_grad() {
  if constexpr (criterion::elementwise_criterion<C>) return C::needs_grad;
  else return false;
}
template <class C>
consteval bool reads_hessian() {
  if constexpr (criterion::elementwise_criterion<C>) return C::needs_hessian;
  else return false;
}
template <class C>
inline constexpr bool reads_gamma = std::is_same_v<C, criterion::bn_scale>;
/// Criteria that score from the weights alone, so that pruner::prune and pruner_masker fit.
template <class C>
inline constexpr bool weights_only = !reads_grad<C>() && !reads_hessian<C>() && !reads_gamma<C>;

constexpr std::array<double, 5> sparsities{0.0, 0.25, 0.5, 0.9, 1.0};

/// A conv weight with everything a criterion may read. Weights, gradients and Hessian
/// diagonals are bounded away from zero and the Hessian is positive (as the squared-gradient
/// estimate is), so a group scores 0 exactly when its weights were zeroed: the premise of
/// the idempotence check. `ties` quantises weights and BN scales to multiples of 1/4, so
/// equal scores meet the cut.
struct sample {
  std::vector<std::size_t> shape;
  std::vector<float> w, g, h, gamma;
};

float away_from_zero(float x, bool ties) {
  const float m = ties ? (1.0f + std::floor(std::abs(x) * 4.0f)) / 4.0f : 0.05f + std::abs(x);
  return x < 0.0f ? -m : m;
}

sample make_sample(std::vector<std::size_t> shape, std::size_t groups, bool ties, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  sample s;
  std::size_t n = 1;
  for (std::size_t e : shape) n *= e;
  s.shape = std::move(shape);
  s.w.resize(n);
  s.g.resize(n);
  s.h.resize(n);
  s.gamma.resize(groups);
  for (float& x : s.w) x = away_from_zero(nd(rng), ties);
  for (float& x : s.g) x = away_from_zero(nd(rng), false);
  for (float& x : s.h) x = 0.01f + std::abs(nd(rng) * nd(rng));
  for (float& x : s.gamma) x = away_from_zero(nd(rng), ties);
  return s;
}

/// What criterion C reads of `smp`, with `w` as the weight (the sample's own or a pruned copy).
template <class C>
criterion::inputs<float> inputs_for(const sample& smp, tensor_ref<const float> w) {
  criterion::inputs<float> in{w};
  if constexpr (reads_grad<C>()) in.grad = tensor_ref<const float>(smp.g.data(), smp.shape);
  if constexpr (reads_hessian<C>()) in.hessian = tensor_ref<const float>(smp.h.data(), smp.shape);
  if constexpr (reads_gamma<C>) in.gamma = smp.gamma;
  return in;
}

template <class C>
criterion::inputs<float> inputs_for(const sample& smp, const std::vector<float>& w) {
  return inputs_for<C>(smp, tensor_ref<const float>(w.data(), smp.shape));
}

/// The keep byte of each group read off an element mask through layout.group_of; `whole`
/// turns false when a group holds both kept and pruned elements or no element at all.
std::vector<std::uint8_t> group_keep(const granularity::group_layout& l, const mask& m, bool& whole) {
  std::vector<int> k(l.groups(), -1);
  whole = true;
  for (std::size_t i = 0; i < m.size(); ++i) {
    int& g = k[l.group_of(i)];
    const int b = m.data()[i];
    if (g < 0) g = b;
    else if (g != b) whole = false;
  }
  std::vector<std::uint8_t> out(k.size());
  for (std::size_t g = 0; g < k.size(); ++g) {
    if (k[g] < 0) whole = false;
    out[g] = static_cast<std::uint8_t>(k[g] == 1);
  }
  return out;
}

std::size_t count_zero(std::span<const std::uint8_t> keep) {
  return static_cast<std::size_t>(std::count(keep.begin(), keep.end(), std::uint8_t{0}));
}

/// The obvious selection: sort by (score, index); `exact` prunes the first `count`, the
/// threshold rule every score <= the count-th smallest.
std::vector<std::uint8_t> reference_keep(std::span<const float> scores, std::size_t count,
                                         select::tie_break ties) {
  std::vector<std::uint8_t> keep(scores.size(), 1);
  if (count == 0) return keep;
  std::vector<std::size_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  if (ties == select::tie_break::lower_index) {
    for (std::size_t k = 0; k < count; ++k) keep[idx[k]] = 0;
  } else {
    const float t = scores[idx[count - 1]];
    for (std::size_t i = 0; i < scores.size(); ++i)
      if (scores[i] <= t) keep[i] = 0;
  }
  return keep;
}

/// Element mask bytes of a per-group keep vector, the slow way.
std::vector<std::uint8_t> expand_naive(const granularity::group_layout& l, std::span<const std::uint8_t> keep) {
  std::vector<std::uint8_t> out(l.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = keep[l.group_of(i)];
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Group scores folded the slow way (element by element through group_of).
template <class C>
std::vector<float> naive_scores(const C& c, const granularity::group_layout& l,
                                const criterion::inputs<float>& in) {
  std::vector<float> acc(l.groups(), c.template identity<float>());
  for (std::size_t i = 0; i < l.size(); ++i) {
    const float g = reads_grad<C>() ? in.grad.data()[i] : 0.0f;
    const float h = reads_hessian<C>() ? in.hessian.data()[i] : 0.0f;
    float& a = acc[l.group_of(i)];
    a = c.reduce(a, c.element(in.weight.data()[i], g, h));
  }
  for (float& a : acc) a = c.finish(a);
  return acc;
}

enum class rule_kind { exact, threshold };

/// One pair, type-erased: each member calls the real pruner<G, C, S> (or pruner_masker) of
/// the pair, so every policy goes through the library's own templates, while the checks
/// below are compiled once rather than once per pair.
struct policy_under_test {
  enum class kind { elementwise, bn_scale, random } scoring = kind::elementwise;
  std::function<granularity::group_layout(std::span<const std::size_t>)> layout;
  std::function<criterion::inputs<float>(const sample&, tensor_ref<const float>)> inputs;
  std::function<std::vector<float>(const criterion::inputs<float>&)> scores;
  std::function<std::vector<float>(const criterion::inputs<float>&)> naive;  // element-wise only
  std::function<mask(const criterion::inputs<float>&, rule_kind, double)> compute;
  std::function<mask(const tensor_ref<float>&, rule_kind, double)> prune;  // weights-only only
  /// A sensitivity-scan mask maker for rule r, given the samples the tensors "t<i>" hold.
  std::function<std::function<mask(const named_tensor<float>&, double)>(rule_kind, const std::vector<sample>*)>
      masker;
};

template <class P>
policy_under_test make_policy() {
  using G = typename P::granularity;
  using C = typename P::criterion;
  const G gran = P::make_granularity();
  const C crit = P::make_criterion();
  policy_under_test pol;
  pol.scoring = reads_gamma<C> ? policy_under_test::kind::bn_scale
                : criterion::elementwise_criterion<C> ? policy_under_test::kind::elementwise
                                                      : policy_under_test::kind::random;
  pol.layout = [gran](std::span<const std::size_t> shape) { return gran.layout(shape, "w"); };
  pol.inputs = [](const sample& smp, tensor_ref<const float> w) { return inputs_for<C>(smp, w); };
  pol.scores = [gran, crit](const criterion::inputs<float>& in) {
    return pruner<G, C, selection::exact>{gran, crit, {}}.scores(in, "w");
  };
  if constexpr (criterion::elementwise_criterion<C>)
    pol.naive = [gran, crit](const criterion::inputs<float>& in) {
      return naive_scores(crit, gran.layout(in.weight.shape(), "w"), in);
    };
  pol.compute = [gran, crit](const criterion::inputs<float>& in, rule_kind r, double s) {
    if (r == rule_kind::exact) return pruner<G, C, selection::exact>{gran, crit, selection::exact(s)}.compute(in, "w");
    return pruner<G, C, selection::threshold>{gran, crit, selection::threshold{s}}.compute(in, "w");
  };
  if constexpr (weights_only<C>)
    pol.prune = [gran, crit](const tensor_ref<float>& w, rule_kind r, double s) {
      if (r == rule_kind::exact) return pruner<G, C, selection::exact>{gran, crit, selection::exact(s)}.prune(w, "w");
      return pruner<G, C, selection::threshold>{gran, crit, selection::threshold{s}}.prune(w, "w");
    };
  pol.masker = [gran, crit](rule_kind r, const std::vector<sample>* samples)
      -> std::function<mask(const named_tensor<float>&, double)> {
    if constexpr (weights_only<C>) {
      (void)samples;
      if (r == rule_kind::exact) return pruner_masker<G, C, selection::exact>{{gran, crit, {}}};
      return pruner_masker<G, C, selection::threshold>{{gran, crit, {}}};
    } else {
      // The criterion reads more than the weights: supply the tensor's gradient, Hessian
      // or BN scales beside the scan's (unpruned) weights.
      return [gran, crit, r, samples](const named_tensor<float>& t, double s) {
        const sample& smp = (*samples)[static_cast<std::size_t>(std::stoul(t.name.substr(1)))];
        const auto in = inputs_for<C>(smp, tensor_ref<const float>(t.view));
        if (r == rule_kind::exact)
          return pruner<G, C, selection::exact>{gran, crit, selection::exact(s)}.compute(in, t.name);
        return pruner<G, C, selection::threshold>{gran, crit, selection::threshold{s}}.compute(in, t.name);
      };
    }
  };
  return pol;
}

/// Every invariant at every sparsity under rule r for one sample.
void check_rule(const policy_under_test& pol, const sample& smp, rule_kind r) {
  const select::tie_break ties =
      r == rule_kind::exact ? selection::exact::ties : selection::threshold::ties;
  const granularity::group_layout layout = pol.layout(smp.shape);
  const std::size_t groups = layout.groups();
  REQUIRE(groups > 0);
  REQUIRE(layout.size() == smp.w.size());

  std::vector<std::uint8_t> prev_keep(groups, 1);
  std::size_t prev_pruned = 0;
  for (double s : sparsities) {
    CAPTURE(s);
    const criterion::inputs<float> in = pol.inputs(smp, tensor_ref<const float>(smp.w.data(), smp.shape));
    const std::vector<float> sc = pol.scores(in);
    REQUIRE(sc.size() == groups);
    const mask m = pol.compute(in, r, s);

    // Mask shape: the weight's.
    CHECK(std::ranges::equal(m.shape(), smp.shape));
    REQUIRE(m.size() == smp.w.size());

    // Whole groups kept or pruned together.
    bool whole = false;
    const std::vector<std::uint8_t> keep = group_keep(layout, m, whole);
    CHECK(whole);

    // Count rule: exact prunes exactly count groups, the threshold rule at least (ties).
    const std::size_t count = count_from_ratio(s, groups);
    const std::size_t pruned = count_zero(keep);
    if (ties == select::tie_break::lower_index) CHECK(pruned == count);
    else CHECK(pruned >= count);

    // Score order: no pruned group outscores a kept one; the threshold rule leaves no kept
    // group tied with the cut. The selection agrees with the obvious one.
    float max_pruned = -std::numeric_limits<float>::infinity();
    float min_kept = std::numeric_limits<float>::infinity();
    for (std::size_t g = 0; g < groups; ++g) {
      if (keep[g]) min_kept = std::min(min_kept, sc[g]);
      else max_pruned = std::max(max_pruned, sc[g]);
    }
    if (ties == select::tie_break::lower_index) CHECK(max_pruned <= min_kept);
    else CHECK(max_pruned < min_kept);
    CHECK(keep == reference_keep(sc, count, ties));

    // Monotone in sparsity: never fewer pruned, and what was pruned stays pruned.
    CHECK(pruned >= prev_pruned);
    bool nested = true;
    for (std::size_t g = 0; g < groups; ++g) nested = nested && (prev_keep[g] || !keep[g]);
    CHECK(nested);
    prev_pruned = pruned;
    prev_keep = keep;

    // Idempotence: the mask of the pruned weights is the same mask, and applying it again
    // writes nothing. For magnitude-like criteria (L1, L2, Ln, the user's, Taylor, OBD with
    // a positive Hessian) a zeroed group scores 0, below every kept group; gradient, BN
    // scale and random do not read the weights, so their scores and mask cannot move.
    std::vector<float> once = smp.w;
    apply_mask(tensor_ref<float>(once.data(), smp.shape), m, "w");
    const mask again = pol.compute(pol.inputs(smp, tensor_ref<const float>(once.data(), smp.shape)), r, s);
    CHECK(again == m);
    std::vector<float> twice = once;
    apply_mask(tensor_ref<float>(twice.data(), smp.shape), again, "w");
    CHECK(bitwise_equal(twice, once));
    if (pol.prune) {
      // pruner::prune in place, twice, is the same as the mask applied once.
      std::vector<float> w = smp.w;
      const tensor_ref<float> v(w.data(), smp.shape);
      CHECK(pol.prune(v, r, s) == m);
      CHECK(bitwise_equal(w, once));
      CHECK(pol.prune(v, r, s) == m);
      CHECK(bitwise_equal(w, once));
    }
  }
}

/// The scores: element-wise criteria fold like the naive walk over group_of; BN scale is
/// |gamma| per group; random is a fixed draw in [0, 1) per group.
void check_scores(const policy_under_test& pol, const sample& smp) {
  const auto in = pol.inputs(smp, tensor_ref<const float>(smp.w.data(), smp.shape));
  const std::vector<float> sc = pol.scores(in);
  switch (pol.scoring) {
    case policy_under_test::kind::elementwise: {
      const std::vector<float> want = pol.naive(in);
      REQUIRE(sc.size() == want.size());
      for (std::size_t g = 0; g < sc.size(); ++g) {
        CAPTURE(g);
        CHECK(std::abs(sc[g] - want[g]) <= 1e-5f * std::max(1.0f, std::abs(want[g])));
      }
      break;
    }
    case policy_under_test::kind::bn_scale:
      REQUIRE(sc.size() == smp.gamma.size());
      for (std::size_t g = 0; g < sc.size(); ++g) CHECK(sc[g] == std::abs(smp.gamma[g]));
      break;
    case policy_under_test::kind::random:
      for (float x : sc) CHECK((x >= 0.0f && x < 1.0f));
      CHECK(pol.scores(in) == sc);
      break;
  }
}

/// A sensitivity scan over two tensors with a mask maker built from the pruner: each row
/// prunes exactly one tensor by the pruner's mask, and every weight is bitwise as it was
/// after the scan.
void check_scan(const policy_under_test& pol, const std::vector<sample>& samples, rule_kind r) {
  std::vector<std::vector<float>> data;
  std::vector<named_tensor<float>> params;
  for (const sample& smp : samples) data.push_back(smp.w);
  for (std::size_t i = 0; i < samples.size(); ++i)
    params.push_back({std::string("t").append(std::to_string(i)), tensor_ref<float>(data[i].data(), samples[i].shape)});
  auto zeros = [&data] {
    std::size_t z = 0;
    for (const auto& d : data) z += static_cast<std::size_t>(std::count(d.begin(), d.end(), 0.0f));
    return static_cast<double>(z);
  };
  const sensitivity_table table = sensitivity_scan(params, sparsities, pol.masker(r, &samples), zeros);
  CHECK(table.baseline == 0.0);
  REQUIRE(table.rows.size() == samples.size() * sparsities.size());
  for (std::size_t k = 0; k < table.rows.size(); ++k) {
    const sensitivity_row& row = table.rows[k];
    const std::size_t i = k / sparsities.size();
    CAPTURE(row.tensor);
    CAPTURE(row.sparsity);
    CHECK(row.tensor == params[i].name);
    CHECK(row.sparsity == sparsities[k % sparsities.size()]);
    const sample& smp = samples[i];
    const mask want = pol.compute(pol.inputs(smp, tensor_ref<const float>(smp.w.data(), smp.shape)), r, row.sparsity);
    CHECK(row.pruned == want.count_pruned());
    CHECK(row.metric == static_cast<double>(row.pruned));  // this tensor alone, by that mask
  }
  for (std::size_t i = 0; i < samples.size(); ++i) CHECK(bitwise_equal(data[i], samples[i].w));
}

void run_conformance(const policy_under_test& pol) {
  // A full-size conv weight, and an odd one whose blocks and filter pairs are partial.
  const std::vector<std::vector<std::size_t>> shapes{{12, 6, 3, 3}, {7, 5, 3, 3}};
  std::vector<sample> plain;
  unsigned seed = 11;
  for (const auto& shape : shapes) {
    const std::size_t groups = pol.layout(shape).groups();
    for (bool ties : {false, true}) {
      CAPTURE(shape[0]);
      CAPTURE(ties);
      const sample smp = make_sample(shape, groups, ties, seed++);
      check_scores(pol, smp);
      {
        INFO("selection::exact");
        check_rule(pol, smp, rule_kind::exact);
      }
      {
        INFO("selection::threshold");
        check_rule(pol, smp, rule_kind::threshold);
      }
      if (!ties) plain.push_back(smp);
    }
  }
  {
    INFO("sensitivity scan, selection::threshold");
    check_scan(pol, plain, rule_kind::threshold);
  }
  {
    INFO("sensitivity scan, selection::exact");
    check_scan(pol, plain, rule_kind::exact);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("policy conformance: granularity x criterion", P, policy_conformance) {
  run_conformance(make_policy<P>());
}

// Every granularity, spruce's and the user's, with criterion C.
#define SPRUCE_TEST_EVERY_GRANULARITY(C)                                                       \
  combo<granularity::element, C>, combo<granularity::vector, C>, combo<granularity::kernel, C>, \
      combo<granularity::filter, C>, combo<granularity::channel, C>, combo<block_2x3, C>,       \
      combo<user::pairs_of_rows, C>

TEST_CASE_TEMPLATE_INVOKE(policy_conformance, SPRUCE_TEST_EVERY_GRANULARITY(criterion::l1),
                          SPRUCE_TEST_EVERY_GRANULARITY(criterion::l2), SPRUCE_TEST_EVERY_GRANULARITY(ln_3),
                          SPRUCE_TEST_EVERY_GRANULARITY(ln_inf),
                          SPRUCE_TEST_EVERY_GRANULARITY(user::log_magnitude));
// Criteria that read a gradient or a Hessian diagonal, and the group criteria: random with
// every granularity, BN scale (one gamma per filter) with filters.
TEST_CASE_TEMPLATE_INVOKE(policy_conformance, SPRUCE_TEST_EVERY_GRANULARITY(criterion::gradient),
                          SPRUCE_TEST_EVERY_GRANULARITY(criterion::taylor),
                          SPRUCE_TEST_EVERY_GRANULARITY(criterion::hessian_diagonal),
                          SPRUCE_TEST_EVERY_GRANULARITY(random_42),
                          combo<granularity::filter, criterion::bn_scale>);

#undef SPRUCE_TEST_EVERY_GRANULARITY

// ---- extensibility: the user's granularity and criterion with the rest of spruce ----

namespace {

using user_exact = pruner<user::pairs_of_rows, user::log_magnitude, selection::exact>;

/// Three tensors for global scope: a conv weight, an odd one (a partial last pair) and a
/// linear weight holding the first one's values, so that scores tie across tensors.
struct model {
  std::vector<std::vector<std::size_t>> shapes{{12, 6, 3, 3}, {7, 5, 3, 3}, {12, 54}};
  std::vector<std::vector<float>> data;

  model() {
    for (std::size_t i = 0; i < 2; ++i)
      data.push_back(make_sample(shapes[i], 1, true, 100 + static_cast<unsigned>(i)).w);
    std::vector<float> copy = data[0];
    data.push_back(std::move(copy));
  }
  std::vector<named_tensor<float>> params() {
    std::vector<named_tensor<float>> p;
    for (std::size_t i = 0; i < data.size(); ++i)
      p.push_back({std::string("t").append(std::to_string(i)), tensor_ref<float>(data[i].data(), shapes[i])});
    return p;
  }
};

}  // namespace

TEST_CASE("a user granularity cuts the groups it describes and is validated like spruce's") {
  const user::pairs_of_rows g;
  const std::vector<std::size_t> shape{7, 5, 3, 3};
  const auto l = g.layout(shape, "w");
  REQUIRE(l.groups() == 4);
  for (std::size_t i = 0; i < l.size(); ++i) CHECK(l.group_of(i) == i / 45 / 2);
  std::vector<float> w(5, 1.0f);
  const user_exact p{{}, {}, selection::exact(0.5)};
  CHECK_THROWS_WITH_AS(p.compute(tensor_ref<const float>(w.data(), std::vector<std::size_t>{5}), "bias"),
                       doctest::Contains("'bias' has rank 1"), spruce::error);
}

TEST_CASE_TEMPLATE("global scope with the user policies equals one selection over the concatenated scores",
                   S, selection::exact, selection::threshold) {
  model m;
  const auto params = m.params();
  const std::span<const named_tensor<float>> ps(params);
  for (double s : sparsities) {
    CAPTURE(s);
    const pruner<user::pairs_of_rows, user::log_magnitude, S> p{{}, {}, S{s}};
    const std::vector<mask> masks = global_masks(p, ps);
    REQUIRE(masks.size() == params.size());
    std::vector<float> all;
    std::vector<std::size_t> sizes;
    for (const auto& t : params) {
      const auto sc = p.scores(criterion::inputs<float>{t.view}, t.name);
      sizes.push_back(sc.size());
      all.insert(all.end(), sc.begin(), sc.end());
    }
    const std::vector<std::uint8_t> keep = reference_keep(all, count_from_ratio(s, all.size()), S::ties);
    std::size_t at = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      CAPTURE(i);
      const auto layout = p.granularity.layout(params[i].view.shape(), params[i].name);
      CHECK(std::ranges::equal(masks[i].shape(), params[i].view.shape()));
      CHECK(std::ranges::equal(masks[i].bytes(),
                               expand_naive(layout, std::span<const std::uint8_t>(keep).subspan(at, sizes[i]))));
      at += sizes[i];
    }
  }
}

TEST_CASE("global scope with the user policies: limits, and global_prune writes the masks") {
  model m;
  const auto params = m.params();
  const std::span<const named_tensor<float>> ps(params);
  const user_exact p{{}, {}, selection::exact(0.9)};
  // max 0.5: no tensor loses more than half its filter pairs, so none is emptied.
  const std::vector<mask> masks = global_masks(p, ps, {0.0, 0.5});
  for (std::size_t i = 0; i < params.size(); ++i) {
    CAPTURE(i);
    const auto layout = p.granularity.layout(params[i].view.shape(), params[i].name);
    bool whole = false;
    const auto keep = group_keep(layout, masks[i], whole);
    CHECK(whole);
    CHECK(count_zero(keep) <= layout.groups() / 2);
  }
  const std::vector<std::vector<float>> before = m.data;
  const std::vector<mask> want = global_masks(p, ps);
  auto reg = global_prune(p, ps);
  for (std::size_t i = 0; i < params.size(); ++i) {
    CAPTURE(i);
    for (std::size_t j = 0; j < before[i].size(); ++j)
      if (m.data[i][j] != (want[i].data()[j] ? before[i][j] : 0.0f)) FAIL_CHECK("weight " << j << " is wrong");
  }
}

TEST_CASE("the typed sensitivity scan takes the user policies and restores the weights") {
  model m;
  const auto params = m.params();
  const std::vector<std::vector<float>> before = m.data;
  auto zeros = [&m] {
    std::size_t z = 0;
    for (const auto& d : m.data) z += static_cast<std::size_t>(std::count(d.begin(), d.end(), 0.0f));
    return static_cast<double>(z);
  };
  const auto table = sensitivity_scan<user::pairs_of_rows, user::log_magnitude, selection::exact>(
      params, sparsities, zeros, {.min_rank = 2});
  REQUIRE(table.rows.size() == params.size() * sparsities.size());
  for (const auto& row : table.rows) {
    CAPTURE(row.tensor);
    CAPTURE(row.sparsity);
    CHECK(row.metric == static_cast<double>(row.pruned));
  }
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(bitwise_equal(m.data[i], before[i]));
}

TEST_CASE("the user policies follow the pruning schedules") {
  // AGP counted in steps (prune every 2nd step up to 12) and a quadratic polynomial ramp
  // from 0.1 to 0.75 over steps 4..24, pruning every 4th step; the run goes past the end.
  const std::array<schedule::polynomial, 2> schedules{schedule::agp(0.0, 0.9, 0, 12, 2),
                                                      schedule::polynomial(0.1, 0.75, 4, 24, 2.0, 4)};
  const std::array<std::size_t, 2> prunes_expected{7, 6};
  for (std::size_t k = 0; k < schedules.size(); ++k) {
    const schedule::polynomial sched = schedules[k];
    CAPTURE(k);
    static_assert(schedule::schedule_policy<schedule::polynomial>);

    // Per tensor: every prune leaves count_from_ratio(sparsity_at(step)) pairs pruned.
    model m;
    const auto params = m.params();
    std::vector<std::vector<std::uint8_t>> prev(params.size());
    std::size_t prunes = 0;
    double last = 0.0;
    for (std::int64_t step = 0; step <= 30; ++step) {
      if (!sched.should_prune(step)) continue;
      ++prunes;
      const double s = sched.sparsity_at(step);
      last = s;
      CAPTURE(step);
      CAPTURE(s);
      const user_exact p{{}, {}, selection::exact(s)};
      for (std::size_t i = 0; i < params.size(); ++i) {
        CAPTURE(i);
        const auto layout = p.granularity.layout(params[i].view.shape(), params[i].name);
        const mask mk = p.prune(params[i].view, params[i].name);
        bool whole = false;
        const auto keep = group_keep(layout, mk, whole);
        CHECK(whole);
        CHECK(count_zero(keep) == count_from_ratio(s, layout.groups()));
        // Pruned pairs are zero in the weights, kept ones untouched.
        std::size_t zero_groups = 0;
        std::vector<char> nonzero(layout.groups(), 0);
        for (std::size_t j = 0; j < m.data[i].size(); ++j)
          if (m.data[i][j] != 0.0f) nonzero[layout.group_of(j)] = 1;
        for (char c : nonzero) zero_groups += c ? 0 : 1;
        CHECK(zero_groups == count_zero(keep));
        // A pair once pruned stays pruned (its score is 0, the lowest).
        if (!prev[i].empty())
          for (std::size_t g = 0; g < keep.size(); ++g) CHECK((prev[i][g] || !keep[g]));
        prev[i] = keep;
      }
    }
    CHECK(prunes == prunes_expected[k]);
    CHECK(last == sched.final_sparsity);

    // Global scope on the same schedule: the pruned fraction of all pairs follows it.
    model g;
    const auto gparams = g.params();
    std::size_t total = 0;
    for (const auto& t : gparams) total += user_exact{}.granularity.layout(t.view.shape(), t.name).groups();
    for (std::int64_t step = 0; step <= 30; ++step) {
      if (!sched.should_prune(step)) continue;
      const double s = sched.sparsity_at(step);
      CAPTURE(step);
      const user_exact p{{}, {}, selection::exact(s)};
      const auto reg = global_prune(p, std::span<const named_tensor<float>>(gparams));
      const auto masks = global_masks(p, std::span<const named_tensor<float>>(gparams));
      std::size_t pruned = 0;
      for (std::size_t i = 0; i < gparams.size(); ++i) {
        bool whole = false;
        const auto layout = p.granularity.layout(gparams[i].view.shape(), gparams[i].name);
        pruned += count_zero(group_keep(layout, masks[i], whole));
        CHECK(whole);
      }
      CHECK(pruned == count_from_ratio(s, total));
    }
  }
}
