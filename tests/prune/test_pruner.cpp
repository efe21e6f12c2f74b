// Policy composition: criteria, group granularities, quantile selection and pruner<G, C, S>
// against the agreed PyTorch references and a naive group walk.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "spruce/spruce.hpp"
#include "support/fixtures.hpp"

using namespace spruce;
namespace fx = spruce_test;

namespace {

void check_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  CAPTURE(what);
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(std::abs(got[i] - want[i]) <= 1e-6f * std::max(1.0f, std::abs(want[i])));
  }
}

template <class C>
std::vector<float> element_scores(const C& c, const std::vector<float>& w, const std::vector<float>& g,
                                  const std::vector<float>& h) {
  std::vector<float> s(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) s[i] = c.element(w[i], g[i], h[i]);
  return s;
}

template <class G, class C>
std::vector<float> naive_group_scores(const G& gran, const C& c, const std::vector<float>& w,
                                      std::span<const std::size_t> shape) {
  const auto l = gran.layout(shape, "w");
  std::vector<float> acc(l.groups(), 0.0f);
  for (std::size_t i = 0; i < w.size(); ++i) {
    float& a = acc[l.group_of(i)];
    a = c.reduce(a, c.element(w[i], 0.0f, 0.0f));
  }
  for (float& a : acc) a = c.finish(a);
  return acc;
}

}  // namespace

TEST_CASE("criteria.json: per-element scores and group reductions") {
  const auto j = fx::load_fixture("criteria.json");
  const auto& c = j["cases"][0];
  const auto shape = fx::shape(c["shape"]);
  const auto w = fx::values(c["weight"]), g = fx::values(c["grad"]), h = fx::values(c["hessian_diag"]);
  check_close(element_scores(criterion::l1{}, w, g, h), fx::values(c["l1"]), "l1");
  check_close(element_scores(criterion::l2{}, w, g, h), fx::values(c["l2"]), "l2");
  check_close(element_scores(criterion::gradient{}, w, g, h), fx::values(c["gradient"]), "gradient");
  check_close(element_scores(criterion::taylor{}, w, g, h), fx::values(c["taylor"]), "taylor");
  check_close(element_scores(criterion::hessian_diagonal{}, w, g, h), fx::values(c["obd"]), "obd");

  const tensor_ref<const float> wv(w.data(), shape), gv(g.data(), shape), hv(h.data(), shape);
  const auto gamma = fx::values(c["bn_gamma"]);
  const criterion::inputs<float> in{wv, gv, hv, gamma};
  check_close(pruner<granularity::filter, criterion::l1, selection::exact>{}.scores(in, "w"),
              fx::values(c["filter_l1"]), "filter_l1");
  check_close(pruner<granularity::filter, criterion::l2, selection::exact>{}.scores(in, "w"),
              fx::values(c["filter_l2"]), "filter_l2");
  check_close(pruner<granularity::channel, criterion::l2, selection::exact>{}.scores(in, "w"),
              fx::values(c["input_channel_l2"]), "input_channel_l2");
  check_close(pruner<granularity::kernel, criterion::l2, selection::exact>{}.scores(in, "w"),
              fx::values(c["kernel_l2"]), "kernel_l2");
  check_close(pruner<granularity::vector, criterion::l2, selection::exact>{}.scores(in, "w"),
              fx::values(c["row_l2"]), "row_l2");
  check_close(pruner<granularity::filter, criterion::bn_scale, selection::exact>{}.scores(in, "w"),
              fx::values(c["bn_scale"]), "bn_scale");
  // Taylor and OBD reduce the same way per filter: the sum of their element scores.
  const auto taylor = pruner<granularity::filter, criterion::taylor, selection::exact>{}.scores(in, "w");
  const auto t_el = fx::values(c["taylor"]);
  for (std::size_t f = 0; f < shape[0]; ++f) {
    double s = 0;
    for (std::size_t i = 0; i < w.size() / shape[0]; ++i) s += t_el[f * (w.size() / shape[0]) + i];
    CHECK(taylor[f] == doctest::Approx(s).epsilon(1e-5));
  }
}

TEST_CASE("granularity_quantile.json: L2 group scores and quantile masks") {
  const auto j = fx::load_fixture("granularity_quantile.json");
  REQUIRE(j["cases"].size() == 8);
  for (const auto& c : j["cases"]) {
    const std::string gname = c["granularity"];
    CAPTURE(gname);
    CAPTURE(c["percentile"].get<double>());
    const auto w = fx::values(c["values"]);
    const auto shape = fx::shape(c["shape"]);
    const tensor_ref<const float> wv(w.data(), shape);
    const selection::quantile q{c["percentile"].get<double>()};
    auto run = [&](auto gran) {
      const pruner<decltype(gran), criterion::l2, selection::quantile> p{gran, {}, q};
      check_close(p.scores(criterion::inputs<float>{wv}, "w"), fx::values(c["group_scores"]), "scores");
      const mask m = p.compute(wv, "w");
      CHECK(std::ranges::equal(m.bytes(), fx::mask_bytes(c["mask"])));
    };
    if (gname == "vector") run(granularity::vector{});
    else if (gname == "kernel") run(granularity::kernel{});
    else if (gname == "filter") run(granularity::filter{});
    else if (gname == "channel") run(granularity::channel{});
    else FAIL("unknown granularity " << gname);
  }
}

TEST_CASE("torch_ln_structured.json: exact-k over Ln norms of slices") {
  const auto j = fx::load_fixture("torch_ln_structured.json");
  REQUIRE(j["cases"].size() == 54);
  for (const auto& c : j["cases"]) {
    const auto w = fx::values(c["values"]);
    const auto shape = fx::shape(c["shape"]);
    CAPTURE(c["shape"].dump());
    CAPTURE(c["n"].dump());
    CAPTURE(c["dim"].get<int>());
    CAPTURE(c["amount"].dump());
    const double p = c["n"].is_string() ? std::numeric_limits<double>::infinity() : c["n"].get<double>();
    const selection::exact sel = c["amount_is_count"].get<bool>() ? selection::exact(c["amount"].get<long>())
                                                                   : selection::exact(c["amount"].get<double>());
    const tensor_ref<const float> wv(w.data(), shape);
    const mask m = c["dim"].get<int>() == 0
                       ? pruner<granularity::filter, criterion::ln, selection::exact>{{}, {p}, sel}.compute(wv, "w")
                       : pruner<granularity::channel, criterion::ln, selection::exact>{{}, {p}, sel}.compute(wv, "w");
    CHECK(std::ranges::equal(m.bytes(), fx::mask_bytes(c["mask"])));
  }
}

TEST_CASE_TEMPLATE("group walks match the naive group_of reference", G, granularity::element,
                   granularity::vector, granularity::kernel, granularity::filter,
                   granularity::channel, granularity::block) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g;
  const std::vector<std::vector<std::size_t>> shapes{
      {1, 1, 1, 1}, {3, 5, 2, 7}, {64, 33, 3, 3}, {5, 7}, {130, 260}, {2, 3, 4}, {300, 4, 3, 3}};
  for (const auto& shape : shapes) {
    if constexpr (std::is_same_v<G, granularity::kernel>)
      if (shape.size() < 3) continue;
    CAPTURE(shape_string(shape));
    std::size_t n = 1;
    for (std::size_t e : shape) n *= e;
    std::vector<float> w(n);
    for (float& x : w) x = g(rng);
    G gran{};
    if constexpr (std::is_same_v<G, granularity::block>) gran = {3, 5};
    const tensor_ref<const float> wv(w.data(), shape);
    for (auto scores : {pruner<G, criterion::l2, selection::exact>{gran, {}, {}}.scores(criterion::inputs<float>{wv}, "w")}) {
      const auto want = naive_group_scores(gran, criterion::l2{}, w, shape);
      REQUIRE(scores.size() == want.size());
      for (std::size_t i = 0; i < want.size(); ++i) CHECK(scores[i] == doctest::Approx(want[i]).epsilon(1e-5));
    }
    // Whole groups are kept or pruned together, and exactly the lowest half of groups go.
    const pruner<G, criterion::l2, selection::exact> p{gran, {}, selection::exact(0.5)};
    const mask m = p.compute(wv, "w");
    const auto l = gran.layout(shape, "w");
    std::vector<int> seen(l.groups(), -1);
    for (std::size_t i = 0; i < n; ++i) {
      int& s = seen[l.group_of(i)];
      if (s < 0) s = m.data()[i];
      REQUIRE(s == m.data()[i]);
    }
    std::size_t pruned_groups = 0;
    for (int s : seen) pruned_groups += s == 0;
    CHECK(pruned_groups == count_from_ratio(0.5, l.groups()));
  }
}

TEST_CASE("strided weights score like their contiguous copies") {
  std::vector<float> buf(40 * 24);
  std::mt19937 rng(1);
  std::normal_distribution<float> g;
  for (float& x : buf) x = g(rng);
  const auto t = make_strided_view(buf.data(), std::array<std::size_t, 2>{24, 40}, std::array<std::size_t, 2>{1, 24});
  std::vector<float> copy(buf.size());
  for (std::size_t a = 0; a < 24; ++a)
    for (std::size_t b = 0; b < 40; ++b) copy[a * 40 + b] = t(a, b);
  const pruner<granularity::channel, criterion::l1, selection::threshold> p{{}, {}, {0.4}};
  CHECK(p.compute(t, "t") == p.compute(make_view(copy, 24, 40), "t"));
}

TEST_CASE("criterion inputs are validated before anything is computed") {
  std::vector<float> w(24, 1.0f), g(12, 1.0f);
  const std::vector<std::size_t> shape{4, 6}, gshape{4, 3};
  const tensor_ref<const float> wv(w.data(), shape), gv(g.data(), gshape);
  const pruner<granularity::filter, criterion::taylor, selection::exact> p{{}, {}, selection::exact(1)};
  CHECK_THROWS_WITH_AS(p.compute(criterion::inputs<float>{wv}, "fc.weight"),
                       doctest::Contains("needs the grad of tensor 'fc.weight'"), spruce::error);
  CHECK_THROWS_WITH_AS(p.compute(criterion::inputs<float>{wv, gv}, "fc.weight"),
                       doctest::Contains("has shape [4, 3] but the weight has shape [4, 6]"), spruce::error);
  CHECK_THROWS_WITH_AS((pruner<granularity::vector, criterion::l1, selection::exact>{{5}, {}, {}}.compute(wv, "fc.weight")),
                       doctest::Contains("axis 5 is out of range"), spruce::error);
  CHECK_THROWS_WITH_AS((pruner<granularity::kernel, criterion::l1, selection::exact>{}.compute(wv, "fc.weight")),
                       doctest::Contains("rank >= 3"), spruce::error);
  const std::vector<float> gamma(3, 1.0f);
  CHECK_THROWS_WITH_AS((pruner<granularity::filter, criterion::bn_scale, selection::exact>{}.compute(
                           criterion::inputs<float>{wv, {}, {}, gamma}, "fc.weight")),
                       doctest::Contains("3 BN scales for 4 groups"), spruce::error);
  CHECK_THROWS_WITH_AS((pruner<granularity::filter, criterion::l1, selection::quantile>{{}, {}, {1.5}}.compute(wv, "fc.weight")),
                       doctest::Contains("not in [0, 1]"), spruce::error);
  CHECK_THROWS_AS((pruner<granularity::block, criterion::l1, selection::exact>{{0, 2}, {}, {}}.compute(wv, "fc.weight")),
                  spruce::error);
}

TEST_CASE("hessian_accumulator estimates the diagonal as the mean squared gradient") {
  const std::vector<std::size_t> shape{2, 2};
  criterion::hessian_accumulator<double> acc(shape);
  std::vector<double> g1{1, 2, 3, 4}, g2{3, 0, -1, 2};
  acc.add(tensor_ref<const double>(g1.data(), shape));
  acc.add(tensor_ref<const double>(g2.data(), shape));
  const auto d = acc.diagonal();
  CHECK(acc.batches() == 2);
  CHECK(d.data()[0] == 5.0);
  CHECK(d.data()[1] == 2.0);
  CHECK(d.data()[2] == 5.0);
  CHECK(d.data()[3] == 10.0);
  const std::vector<std::size_t> other{4};
  CHECK_THROWS_AS(acc.add(tensor_ref<const double>(g1.data(), other)), spruce::error);
}

TEST_CASE("random criterion is reproducible for a seed and differs across seeds") {
  std::vector<float> w(64 * 9, 1.0f);
  const auto v = make_view(w, 64, 9);
  const pruner<granularity::filter, criterion::random, selection::exact> a{{}, {42}, selection::exact(0.5)};
  const pruner<granularity::filter, criterion::random, selection::exact> b{{}, {43}, selection::exact(0.5)};
  CHECK(a.compute(v) == a.compute(v));
  CHECK_FALSE(a.compute(v) == b.compute(v));
  CHECK(a.compute(v).count_pruned() == 32 * 9);
}

TEST_CASE("network_slimming.json: the reference global BN-scale threshold and masks") {
  const auto j = fx::load_fixture("network_slimming.json");
  REQUIRE(j["cases"].size() == 3);
  for (const auto& c : j["cases"]) {
    const double percent = c["percent"].get<double>();
    CAPTURE(percent);
    // One selection over every layer's |gamma| as if concatenated (small vectors here).
    std::vector<float> all;
    std::vector<std::size_t> sizes;
    for (const auto& g : c["gammas"]) {
      const auto v = fx::values(g);
      sizes.push_back(v.size());
      all.insert(all.end(), v.begin(), v.end());
    }
    const selection::slimming rule{percent};
    const auto t = select::kth_smallest<select::by_magnitude>(all, rule.count(all.size()));
    CHECK(t.value == static_cast<float>(c["threshold"].get<double>()));
    const byte_buffer keep = selection::keep_mask<select::by_magnitude>(rule, std::span<const float>(all));
    std::size_t at = 0;
    for (std::size_t layer = 0; layer < sizes.size(); ++layer) {
      const auto want = fx::mask_bytes(c["masks"][layer]);
      CHECK(std::equal(want.begin(), want.end(), keep.begin() + static_cast<std::ptrdiff_t>(at)));
      CHECK(static_cast<std::size_t>(std::count(want.begin(), want.end(), 1)) ==
            c["remaining"][layer].get<std::size_t>());
      at += sizes[layer];
    }
  }
  CHECK_THROWS_WITH_AS(selection::slimming{1.0}.count(10, "bn"), doctest::Contains("not in [0, 1)"), spruce::error);
}

TEST_CASE("torch_global_unstructured.json: one exact selection over every tensor") {
  const auto j = fx::load_fixture("torch_global_unstructured.json");
  REQUIRE(j["cases"].size() == 3);
  for (const auto& c : j["cases"]) {
    CAPTURE(c["amount"].get<double>());
    std::vector<std::vector<float>> data;
    std::vector<std::vector<std::size_t>> shapes;
    for (const auto& t : c["tensors"]) {
      data.push_back(fx::values(t["values"]));
      shapes.push_back(fx::shape(t["shape"]));
    }
    std::vector<named_tensor<float>> params;
    for (std::size_t i = 0; i < data.size(); ++i)
      params.push_back({std::string("t").append(std::to_string(i)), tensor_ref<float>(data[i].data(), shapes[i])});
    const pruner<granularity::element, criterion::l1, selection::exact> p{{}, {}, selection::exact(c["amount"].get<double>())};
    const auto masks = global_masks(p, std::span<const named_tensor<float>>(params));
    REQUIRE(masks.size() == data.size());
    for (std::size_t i = 0; i < data.size(); ++i)
      CHECK(std::ranges::equal(masks[i].bytes(), fx::mask_bytes(c["tensors"][i]["mask"])));
  }
}

TEST_CASE_TEMPLATE("global scope equals one selection over the concatenated scores", G, granularity::element,
                   granularity::filter, granularity::channel) {
  std::mt19937 rng(21);
  std::normal_distribution<float> g;
  const std::vector<std::vector<std::size_t>> shapes{{64, 3, 3, 3}, {128, 64, 3, 3}, {10, 128}, {300, 400}};
  std::vector<std::vector<float>> data;
  std::vector<named_tensor<float>> params;
  for (const auto& s : shapes) {
    std::size_t n = 1;
    for (std::size_t e : s) n *= e;
    std::vector<float> w(n);
    for (float& x : w) x = std::round(g(rng) * 16.0f) / 16.0f;  // plenty of ties across tensors
    data.push_back(std::move(w));
  }
  for (std::size_t i = 0; i < shapes.size(); ++i)
    params.push_back({std::string("t").append(std::to_string(i)), tensor_ref<float>(data[i].data(), shapes[i])});
  for (double s : {0.0, 0.3, 0.7, 1.0}) {
    CAPTURE(s);
    auto check = [&](auto rule) {
      const pruner<G, criterion::l1, decltype(rule)> p{{}, {}, rule};
      const auto masks = global_masks(p, std::span<const named_tensor<float>>(params));
      // Reference: concatenate the group scores, select once, split.
      std::vector<float> all;
      std::vector<std::size_t> sizes;
      for (const auto& t : params) {
        const auto sc = p.scores(criterion::inputs<float>{t.view}, t.name);
        sizes.push_back(sc.size());
        all.insert(all.end(), sc.begin(), sc.end());
      }
      const byte_buffer keep = selection::keep_mask(rule, std::span<const float>(all));
      std::size_t at = 0;
      for (std::size_t i = 0; i < params.size(); ++i) {
        const auto layout = G{}.layout(params[i].view.shape(), "t");
        const byte_buffer want = expand_groups(layout, std::span<const std::uint8_t>(keep.data() + at, sizes[i]));
        CHECK(std::ranges::equal(masks[i].bytes(), want));
        at += sizes[i];
      }
    };
    check(selection::threshold{s});
    check(selection::exact(s));
  }
}

TEST_CASE("global scope with per-tensor limits never empties a layer and keeps the budget") {
  // One layer of tiny weights would lose everything to a global cut.
  std::vector<float> small(1000), big(9000);
  std::mt19937 rng(4);
  std::normal_distribution<float> g;
  for (float& x : small) x = 1e-3f * g(rng);
  for (float& x : big) x = g(rng);
  const std::vector<std::size_t> s1{10, 100}, s2{90, 100};
  const std::vector<named_tensor<float>> params{{"small", tensor_ref<float>(small.data(), s1)},
                                                {"big", tensor_ref<float>(big.data(), s2)}};
  const pruner<granularity::element, criterion::l1, selection::exact> p{{}, {}, selection::exact(0.3)};
  const auto free = global_masks(p, std::span<const named_tensor<float>>(params));
  CHECK(free[0].count_kept() == 0);  // the failure the limits exist for
  const auto bounded = global_masks(p, std::span<const named_tensor<float>>(params), {0.1, 0.8});
  CHECK(bounded[0].count_pruned() == 800);
  CHECK(bounded[1].count_pruned() == 3000 - 800);  // the rest of the budget moves to 'big'
  CHECK(bounded[1].sparsity() >= 0.1);
  // Filters: max < 1 always leaves a group.
  const pruner<granularity::filter, criterion::l2, selection::exact> pf{{}, {}, selection::exact(0.5)};
  const auto fm = global_masks(pf, std::span<const named_tensor<float>>(params), {0.0, 0.9});
  CHECK(fm[0].count_kept() >= 100);
  CHECK_THROWS_WITH_AS(global_masks(p, std::span<const named_tensor<float>>(params), {0.5, 0.2}),
                       doctest::Contains("not an interval"), spruce::error);
  const std::vector<named_tensor<float>> dup{params[0], params[0]};
  CHECK_THROWS_WITH_AS(global_masks(p, std::span<const named_tensor<float>>(dup)), doctest::Contains("twice"),
                       spruce::error);
  // global_prune writes the masks and returns the registry.
  auto copy_small = small, copy_big = big;
  const std::vector<named_tensor<float>> cp{{"small", tensor_ref<float>(copy_small.data(), s1)},
                                            {"big", tensor_ref<float>(copy_big.data(), s2)}};
  auto reg = global_prune(p, std::span<const named_tensor<float>>(cp), {0.1, 0.8});
  CHECK(count_nonzero(tensor_ref<const float>(cp[0].view)) == 200);
  CHECK(reg.size() == 2);
}

TEST_CASE("per-layer table scope with a structured pruner") {
  std::vector<float> a(16 * 8 * 3 * 3), b(32 * 16 * 3 * 3), bias(16);
  std::mt19937 rng(8);
  std::normal_distribution<float> g;
  for (auto* v : {&a, &b, &bias})
    for (float& x : *v) x = g(rng);
  const std::vector<std::size_t> sa{16, 8, 3, 3}, sb{32, 16, 3, 3}, sbias{16};
  const std::vector<named_tensor<float>> params{{"conv0.weight", tensor_ref<float>(a.data(), sa)},
                                                {"conv1.weight", tensor_ref<float>(b.data(), sb)},
                                                {"conv0.bias", tensor_ref<float>(bias.data(), sbias)}};
  const auto bias0 = bias;
  const pruner<granularity::filter, criterion::l2, selection::exact> proto{};
  auto reg = per_layer_prune(proto, std::span<const named_tensor<float>>(params),
                             {{"conv0.weight", 0.25}, {"conv1.weight", 0.5}});
  CHECK(reg.size() == 2);
  CHECK(reg.at("conv0.weight").count_pruned() == 4 * 8 * 9);
  CHECK(reg.at("conv1.weight").count_pruned() == 16 * 16 * 9);
  CHECK(bias == bias0);
  // Whole filters are zero.
  std::size_t zero_filters = 0;
  for (std::size_t f = 0; f < 16; ++f)
    zero_filters += std::all_of(a.begin() + static_cast<std::ptrdiff_t>(f * 72),
                                a.begin() + static_cast<std::ptrdiff_t>((f + 1) * 72), [](float x) { return x == 0.0f; });
  CHECK(zero_filters == 4);
  CHECK_THROWS_WITH_AS(per_layer_masks(proto, std::span<const named_tensor<float>>(params), {{"conv9.weight", 0.5}}),
                       doctest::Contains("not among the parameters"), spruce::error);
}

TEST_CASE("prune_at_step follows a schedule, per tensor and globally") {
  std::vector<float> a(4096), b(8192);
  std::mt19937 rng(12);
  std::normal_distribution<float> g;
  for (float& x : a) x = g(rng);
  for (float& x : b) x = 0.1f * g(rng);
  const std::vector<std::size_t> sa{64, 64}, sb{64, 128};
  const std::vector<named_tensor<float>> params{{"a", tensor_ref<float>(a.data(), sa)},
                                                {"b", tensor_ref<float>(b.data(), sb)}};
  const auto sched = schedule::agp(0.0, 0.8, 0, 100, 10);
  const pruner<granularity::element, criterion::l1, selection::exact> proto{};
  const std::span<const named_tensor<float>> ps(params);
  const auto a0 = a, b0 = b;
  CHECK_FALSE(prune_at_step(sched, 5, proto, ps).has_value());
  for (std::int64_t step : {10, 50, 100}) {
    CAPTURE(step);
    auto reg = prune_at_step(sched, step, proto, ps);
    REQUIRE(reg.has_value());
    const double s = sched.sparsity_at(step);
    CHECK(reg->at("a").count_pruned() == count_from_ratio(s, a.size()));
    CHECK(reg->at("b").count_pruned() == count_from_ratio(s, b.size()));
  }
  a = a0;
  b = b0;
  auto reg = prune_at_step(sched, 100, proto, ps, scope::global, {0.0, 0.95});
  REQUIRE(reg.has_value());
  CHECK(reg->at("a").count_pruned() + reg->at("b").count_pruned() == count_from_ratio(0.8, a.size() + b.size()));
  CHECK(reg->at("b").sparsity() > reg->at("a").sparsity());  // global: the small weights go first
}

TEST_CASE("pruner composes an N:M granularity with element-wise criteria") {
  std::vector<float> w(16 * 8 * 3 * 3), g(w.size());
  std::mt19937 rng(31);
  std::normal_distribution<float> nd;
  for (float& x : w) x = nd(rng);
  for (float& x : g) x = nd(rng);
  const std::vector<std::size_t> shape{16, 8, 3, 3};
  const tensor_ref<const float> wv(w.data(), shape), gv(g.data(), shape);
  // L1 is ASP's rule exactly.
  const pruner<granularity::n_m<2, 4>, criterion::l1, selection::exact> asp{};
  CHECK(asp.compute(wv, "w") == n_m_mask(wv, granularity::n_m<2, 4>{}, "w"));
  // Taylor keeps the two largest |w*g| of each group; the selection rule is not consulted.
  const pruner<granularity::n_m<2, 4>, criterion::taylor, selection::exact> tp{{}, {}, selection::exact(0.9)};
  const mask m = tp.compute(criterion::inputs<float>{wv, gv}, "w");
  CHECK(is_n_m(m, granularity::n_m<2, 4>{}));
  CHECK(m.count_pruned() == w.size() / 2);
  std::vector<float> taylor(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) taylor[i] = std::abs(w[i] * g[i]);
  CHECK(m == n_m_mask(tensor_ref<const float>(taylor.data(), shape), granularity::n_m<2, 4>{}, "w"));
  CHECK_THROWS_WITH_AS(tp.compute(criterion::inputs<float>{wv}, "w"), doctest::Contains("needs the grad"), spruce::error);
}

// ---- open composition, N:M composition, ranges, amounts, scores without a rule ----

namespace {

// |w| scaled: orders exactly like |w|; counts its element() calls so a test can see
// whether the fused path (which never scores) was taken.
template <bool Declares>
struct scaled_abs {
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = false;
  static constexpr bool orders_like_magnitude = Declares;
  static inline std::size_t calls = 0;
  template <class T>
  T element(T w, T, T) const {
    ++calls;
    return T(3) * std::abs(w);
  }
  template <class T>
  T reduce(T a, T b) const { return a + b; }
  template <class T>
  T finish(T a) const { return a; }
  template <class T>
  T identity() const { return T(0); }
};

// A user granularity that declares one weight per group (the element layout).
struct my_element {
  static constexpr bool one_weight_per_group = true;
  granularity::group_layout layout(std::span<const std::size_t> shape, const std::string& name = {}) const {
    return granularity::element{}.layout(shape, name);
  }
};

// A user criterion that reads its own per-tensor data through inputs::extra: the score of
// group g is extra.bias[g] + sum |w| over the group.
struct biased_l1 {
  struct extra_type {
    std::vector<float> bias;
  };
  template <class T>
  void group_scores(const criterion::inputs<T, extra_type>& in, const granularity::group_layout& l,
                    std::span<T> out, const std::string& name) const {
    if (in.extra.bias.size() != out.size()) throw spruce::error("bias of " + name + " has the wrong size");
    for (std::size_t g = 0; g < out.size(); ++g) out[g] = in.extra.bias[g];
    for (std::size_t i = 0; i < in.weight.size(); ++i) out[l.group_of(i)] += std::abs(in.weight.data()[i]);
  }
};

std::vector<float> randn(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

template <class P>
concept can_compute = requires(const P& p, const tensor_ref<const float>& w) { p.compute(w); };

}  // namespace

TEST_CASE("a user criterion declaring orders_like_magnitude takes the fused paths") {
  const std::vector<std::size_t> s{32, 48};
  auto w = randn(32 * 48, 5);
  for (std::size_t i = 0; i < w.size(); i += 7) w[i] = -w[i + 1 < w.size() ? i + 1 : i];  // ties
  const tensor_ref<const float> v(w.data(), s);
  const pruner<granularity::element, criterion::l1, selection::exact> ref{{}, {}, selection::exact(0.4)};
  const pruner<granularity::element, scaled_abs<true>, selection::exact> fused{{}, {}, selection::exact(0.4)};
  const pruner<granularity::element, scaled_abs<false>, selection::exact> plain{{}, {}, selection::exact(0.4)};
  const pruner<my_element, scaled_abs<true>, selection::exact> user_g{{}, {}, selection::exact(0.4)};
  scaled_abs<true>::calls = scaled_abs<false>::calls = 0;
  CHECK(fused.compute(v) == ref.compute(v));
  CHECK(user_g.compute(v) == ref.compute(v));
  CHECK(scaled_abs<true>::calls == 0);  // selected on |w| directly
  CHECK(plain.compute(v) == ref.compute(v));
  CHECK(scaled_abs<false>::calls == w.size());  // scored every weight
  // N:M: the fused path ranks |w| directly.
  const pruner<granularity::n_m<2, 4>, scaled_abs<true>> nm_fused{};
  const pruner<granularity::n_m<2, 4>, scaled_abs<false>> nm_plain{};
  scaled_abs<true>::calls = scaled_abs<false>::calls = 0;
  CHECK(nm_fused.compute(v) == n_m_mask(v, granularity::n_m<2, 4>{}));
  CHECK(nm_plain.compute(v) == n_m_mask(v, granularity::n_m<2, 4>{}));
  CHECK(scaled_abs<true>::calls == 0);
  CHECK(scaled_abs<false>::calls == w.size());
  // Global scope: fused too, same masks as L1.
  std::vector<named_tensor<float>> params{{"a", tensor_ref<float>(w.data(), s)}};
  scaled_abs<true>::calls = 0;
  CHECK(global_masks(fused, params) == global_masks(ref, params));
  CHECK(scaled_abs<true>::calls == 0);
}

TEST_CASE("criterion inputs carry a user criterion's extra data through the pruner") {
  const std::vector<std::size_t> s{6, 5};
  const auto w = randn(30, 9);
  const tensor_ref<const float> v(w.data(), s);
  const criterion::inputs<float, biased_l1::extra_type> in{v, {}, {}, {}, {{0, 100, 0, 0, 100, 0}}};
  const pruner<granularity::filter, biased_l1, selection::exact> p{{}, {}, selection::exact(std::size_t{2})};
  const auto sc = p.scores(in, "w");
  REQUIRE(sc.size() == 6);
  for (std::size_t g = 0; g < 6; ++g) {
    float want = in.extra.bias[g];
    for (std::size_t j = 0; j < 5; ++j) want += std::abs(w[g * 5 + j]);
    CHECK(sc[g] == doctest::Approx(want));
  }
  const mask m = p.compute(in, "w");
  CHECK(m.bytes()[1 * 5] == 1);
  CHECK(m.bytes()[4 * 5] == 1);
  CHECK(m.count_pruned() == 2 * 5);
  CHECK(scores(granularity::filter{}, biased_l1{}, in, "w") == sc);
}

TEST_CASE("scores need no selection rule: pruner<G, C> and spruce::scores") {
  const std::vector<std::size_t> s{8, 4, 3, 3};
  auto w = randn(8 * 4 * 9, 17);
  const tensor_ref<const float> v(w.data(), s);
  const pruner<granularity::filter, criterion::l2> p{};
  static_assert(std::is_same_v<decltype(p.selection), selection::none>);
  static_assert(!can_compute<pruner<granularity::filter, criterion::l2>>);
  static_assert(can_compute<pruner<granularity::filter, criterion::l2, selection::exact>>);
  static_assert(can_compute<pruner<granularity::n_m<2, 4>, criterion::l1>>);  // N:M needs no rule
  const auto want = group_scores(criterion::l2{}, criterion::inputs<float>{v}, granularity::filter{}.layout(s));
  CHECK(p.scores(v) == want);
  CHECK(p.scores(make_view(w, 8, 4, 3, 3)) == want);
  CHECK(scores(granularity::filter{}, criterion::l2{}, v) == want);
  CHECK(scores(granularity::filter{}, criterion::l2{}, criterion::inputs<float>{v}, "w") == want);
  // N:M scores are element scores; a run-time pattern that does not form is refused.
  CHECK(scores(granularity::n_m_pattern{2, 4}, criterion::l1{}, v).size() == w.size());
  CHECK_THROWS_WITH_AS(scores(granularity::n_m_pattern{4, 4}, criterion::l1{}, v, "conv"),
                       doctest::Contains("'conv'"), spruce::error);
}

TEST_CASE("multi-tensor functions take any contiguous range of named tensors") {
  const std::vector<std::size_t> sa{16, 16}, sb{8, 32};
  const auto a0 = randn(256, 1), b0 = randn(256, 2);
  auto a = a0, b = b0;
  const std::vector<named_tensor<float>> vec{{"a", tensor_ref<float>(a.data(), sa)}, {"b", tensor_ref<float>(b.data(), sb)}};
  const std::array<named_tensor<float>, 2> arr{vec[0], vec[1]};
  const std::span<const named_tensor<float>> cspan(vec);
  std::vector<named_tensor<float>> mvec = vec;
  const std::span<named_tensor<float>> mspan(mvec);
  const pruner<granularity::element, criterion::l1, selection::exact> p{{}, {}, selection::exact(0.5)};
  const auto want = global_masks(p, cspan);
  CHECK(global_masks(p, vec) == want);
  CHECK(global_masks(p, arr) == want);
  CHECK(global_masks(p, mspan) == want);
  const sparsity_table table{{"a", 0.5}, {"b", 0.25}};
  const auto want_a = per_layer_masks(p, cspan, table).at("a");
  CHECK(per_layer_masks(p, vec, table).at("a") == want_a);
  CHECK(per_layer_masks(p, arr, table).at("a") == want_a);
  CHECK(per_layer_masks(p, mspan, table).at("a") == want_a);
  const auto sched = schedule::one_shot(0.5, 3);
  const mask want_b = p.compute(vec[1].view);
  CHECK(prune_at_step(sched, 3, p, vec)->at("b") == want_b);
  a = a0, b = b0;
  CHECK(prune_at_step(sched, 3, p, arr, scope::global).has_value());
  a = a0, b = b0;
  auto reg = global_prune(p, vec, {});
  CHECK(reg.at("a") == want[0]);
  a = a0, b = b0;
  auto reg2 = per_layer_prune(p, arr, table);
  CHECK(reg2.at("a") == want_a);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == (want_a.bytes()[i] ? a0[i] : 0.0f));
}

TEST_CASE("global scope with an N:M pruner: each tensor its own N:M mask, bounded limits are refused") {
  const std::vector<std::size_t> sa{16, 8, 3, 3}, sb{10, 30};
  auto a = randn(16 * 8 * 9, 3), b = randn(300, 4);
  for (float& x : b) x *= 0.01f;  // tiny weights: a global cut would empty b, the pattern cannot
  const std::vector<named_tensor<float>> params{{"a", tensor_ref<float>(a.data(), sa)}, {"b", tensor_ref<float>(b.data(), sb)}};
  const pruner<granularity::n_m<2, 4>, criterion::l1> p{};
  const auto masks = global_masks(p, params);
  REQUIRE(masks.size() == 2);
  CHECK(masks[0] == n_m_mask(params[0].view, granularity::n_m<2, 4>{}));
  CHECK(masks[1] == n_m_mask(params[1].view, granularity::n_m<2, 4>{}));
  const pruner<granularity::n_m_pattern, criterion::l1, selection::exact> rt{{1, 4}, {}, selection::exact(0.9)};
  const auto rm = global_masks(rt, params);
  CHECK(rm[0] == n_m_mask(params[0].view, granularity::n_m<1, 4>{}));
  CHECK(rm[1] == n_m_mask(params[1].view, granularity::n_m<1, 4>{}));
  CHECK_THROWS_WITH_AS(global_masks(p, params, {0.0, 0.9}), doctest::Contains("fixes every tensor's sparsity"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(global_masks(p, params, {0.0, 1.0, 1}), doctest::Contains("2:4"), spruce::error);
  const std::vector<named_tensor<float>> dup{params[0], params[0]};
  CHECK_THROWS_WITH_AS(global_masks(p, dup), doctest::Contains("twice"), spruce::error);
  const pruner<granularity::n_m_pattern, criterion::l1> bad{{4, 4}};
  CHECK_THROWS_WITH_AS(global_masks(bad, params), doctest::Contains("'a'"), spruce::error);
  const auto a0 = a;
  auto reg = global_prune(p, params);
  CHECK(reg.at("a") == masks[0]);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == (masks[0].bytes()[i] ? a0[i] : 0.0f));
}

TEST_CASE("prune_at_step with an N:M pruner applies the pattern at the scheduled steps only") {
  const std::vector<std::size_t> sa{8, 16}, sb{4, 8, 3, 3};
  const auto a0 = randn(128, 5), b0 = randn(288, 6);
  auto a = a0, b = b0;
  const std::vector<named_tensor<float>> params{{"a", tensor_ref<float>(a.data(), sa)}, {"b", tensor_ref<float>(b.data(), sb)}};
  const pruner<granularity::n_m<2, 4>, criterion::l1> p{};
  const auto want_a = n_m_mask(tensor_ref<const float>(a0.data(), sa), granularity::n_m<2, 4>{});
  const auto want_b = n_m_mask(tensor_ref<const float>(b0.data(), sb), granularity::n_m<2, 4>{});
  const auto c = schedule::constant(0.5, 10, 30, 10);
  CHECK_FALSE(prune_at_step(c, 5, p, params).has_value());
  CHECK(a == a0);
  for (auto where : {scope::per_tensor, scope::global}) {
    a = a0, b = b0;
    auto reg = prune_at_step(c, 20, p, params, where);
    REQUIRE(reg.has_value());
    CHECK(reg->at("a") == want_a);
    CHECK(reg->at("b") == want_b);
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(b[i] == (want_b.bytes()[i] ? b0[i] : 0.0f));
  }
  a = a0;
  CHECK(prune_at_step(schedule::one_shot(0.5, 0), 0, pruner<granularity::n_m_pattern, criterion::l1>{{2, 4}}, params)
            ->at("a") == want_a);
  // A ramp (or any other sparsity) cannot be an N:M pattern: refused, saying what to use.
  a = a0;
  const auto ramp = schedule::agp(0.0, 0.5, 0, 100, 10);
  CHECK_FALSE(prune_at_step(ramp, 5, p, params).has_value());
  CHECK_THROWS_WITH_AS(prune_at_step(ramp, 50, p, params), doctest::Contains("one_shot(0.5"), spruce::error);
  CHECK_THROWS_WITH_AS(prune_at_step(ramp, 50, p, params), doctest::Contains("2:4"), spruce::error);
  CHECK(a == a0);  // nothing written
  CHECK_NOTHROW(prune_at_step(ramp, 100, p, params));  // the ramp's end is the pattern's sparsity
  CHECK_THROWS_WITH_AS(prune_at_step(schedule::one_shot(0.75, 0), 0, p, params),
                       doctest::Contains("constant(0.5"), spruce::error);
}

TEST_CASE("per-layer tables with an N:M pruner: the entry must be the pattern's sparsity") {
  const std::vector<std::size_t> sa{8, 10}, sb{4, 8, 3, 3};  // a: rows of 10 = two groups + a partial one of 2
  auto a = randn(80, 7), b = randn(288, 8);
  const std::vector<named_tensor<float>> params{{"a", tensor_ref<float>(a.data(), sa)}, {"b", tensor_ref<float>(b.data(), sb)}};
  const pruner<granularity::n_m<2, 4>, criterion::l1> p{};
  auto reg = per_layer_masks(p, params, {{"a", 0.5}, {"b", 144}});  // b: a count, exactly the pattern's
  CHECK(reg.at("a") == n_m_mask(params[0].view, granularity::n_m<2, 4>{}));
  CHECK(reg.at("b") == n_m_mask(params[1].view, granularity::n_m<2, 4>{}));
  // a prunes 2 of each full group and none of its partial groups: 8 * 4 = 32 weights.
  CHECK(reg.at("a").count_pruned() == 32);
  CHECK_NOTHROW(per_layer_masks(p, params, {{"a", 32}}));
  CHECK_THROWS_WITH_AS(per_layer_masks(p, params, {{"a", 0.6}}), doctest::Contains("fixes it at 1 - N/M = 0.5"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(per_layer_masks(p, params, {{"a", 0.6}}), doctest::Contains("'a'"), spruce::error);
  CHECK_THROWS_WITH_AS(per_layer_masks(p, params, {{"a", 40}}), doctest::Contains("fixes the count at 32"),
                       spruce::error);
  const auto a0 = a;
  CHECK_THROWS_AS(per_layer_prune(p, params, {{"b", 0.5}, {"a", 0.25}}), spruce::error);
  CHECK(a == a0);
  const mask want_b14 = n_m_mask(tensor_ref<const float>(b.data(), sb), granularity::n_m<1, 4>{});
  auto applied = per_layer_prune(pruner<granularity::n_m_pattern, criterion::l1>{{1, 4}}, params, {{"b", 0.75}});
  CHECK(applied.at("b") == want_b14);
}

TEST_CASE("per-layer tables hold counts or ratios (torch's amount)") {
  const std::vector<std::size_t> sa{12, 10}, sb{6, 4, 3, 3};
  auto a = randn(120, 11), b = randn(216, 12);
  for (std::size_t i = 0; i < a.size(); i += 3) a[i] = 0.25f;  // ties
  const std::vector<named_tensor<float>> params{{"a", tensor_ref<float>(a.data(), sa)}, {"b", tensor_ref<float>(b.data(), sb)}};
  // The existing syntax keeps compiling, and values read back as numbers.
  sparsity_table table{{"a", 0.6}, {"b", 0.5}};
  const double read = table.at("a");
  CHECK(read == 0.6);
  table["b"] = 2;  // a count
  CHECK(table.at("b").is_count());
  CHECK(table.at("b").count() == 2);
  CHECK(table.at("a").is_ratio());
  // exact: a count prunes exactly that many groups (torch's integer amount).
  const pruner<granularity::filter, criterion::l2, selection::exact> ex{};
  auto reg = per_layer_masks(ex, params, table);
  CHECK(reg.at("b").count_pruned() == 2 * 36);
  CHECK(reg.at("b") == pruner<granularity::filter, criterion::l2, selection::exact>{{}, {}, selection::exact(2)}.compute(params[1].view));
  CHECK(reg.at("a") == pruner<granularity::filter, criterion::l2, selection::exact>{{}, {}, selection::exact(0.6)}.compute(params[0].view));
  // Element granularity: a count of weights.
  auto fg = per_layer_masks(pruner<granularity::element, criterion::l1, selection::exact>{}, params, {{"a", 7}});
  CHECK(fg.at("a").count_pruned() == 7);
  // threshold: count c becomes the ratio c / groups, which gives back exactly c (plus ties).
  for (std::size_t c : {0u, 1u, 5u, 40u, 119u, 120u}) {
    CAPTURE(c);
    auto th = per_layer_masks(pruner<granularity::element, criterion::l1, selection::threshold>{}, params, {{"a", c}});
    const auto want = pruner<granularity::element, criterion::l1, selection::threshold>{
        {}, {}, selection::threshold{static_cast<double>(c) / 120.0}}.compute(params[0].view);
    CHECK(th.at("a") == want);
    CHECK(th.at("a").count_pruned() >= c);
    CHECK(selection::threshold{static_cast<double>(c) / 120.0}.count(120) == c);
  }
  // Validation: a count beyond the tensor's groups names the tensor; quantile refuses counts;
  // negative counts are refused where the table is built.
  CHECK_THROWS_WITH_AS(per_layer_masks(ex, params, {{"b", 7}}), doctest::Contains("'b'"), spruce::error);
  CHECK_THROWS_WITH_AS(per_layer_masks(ex, params, {{"b", 7}}), doctest::Contains("only 6"), spruce::error);
  CHECK_THROWS_WITH_AS(
      per_layer_masks(pruner<granularity::element, criterion::l1, selection::threshold>{}, params, {{"a", 121}}),
      doctest::Contains("only 120"), spruce::error);
  CHECK_THROWS_WITH_AS(per_layer_masks(pruner<granularity::filter, criterion::l2, selection::quantile>{}, params, {{"b", 3}}),
                       doctest::Contains("takes a ratio"), spruce::error);
  CHECK_NOTHROW(per_layer_masks(pruner<granularity::filter, criterion::l2, selection::quantile>{}, params, {{"b", 0.5}}));
  CHECK_THROWS_WITH_AS(sparsity_table({{"a", -3}}), doctest::Contains("negative"), spruce::error);
  const auto a0 = a;
  CHECK_THROWS_AS(per_layer_prune(ex, params, {{"a", 0.5}, {"b", 99}}), spruce::error);
  CHECK(a == a0);  // validated before anything was written
}
