// Fine-grained magnitude pruning against the agreed PyTorch references, the registry
// workflow (the lab's FineGrainedPruner), and bad input.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <random>
#include <string>
#include <vector>

#include "spruce/spruce.hpp"
#include "support/fixtures.hpp"

using namespace spruce;
namespace fx = spruce_test;

namespace {

std::string case_label(const nlohmann::json& c, std::size_t i) {
  return "case " + std::to_string(i) + " shape " + c["shape"].dump();
}

}  // namespace

TEST_CASE("threshold rule matches the lab's fine_grained_prune on every fixture case") {
  const auto j = fx::load_fixture("fine_grained_threshold.json");
  REQUIRE(j["cases"].size() == 144);
  std::size_t i = 0;
  for (const auto& c : j["cases"]) {
    CAPTURE(case_label(c, i));
    CAPTURE(c["sparsity"].get<double>());
    auto w = fx::values(c["values"]);
    const auto original = w;
    const auto shape = fx::shape(c["shape"]);
    const tensor_ref<float> ref(w.data(), shape);
    const auto want = fx::mask_bytes(c["mask"]);

    const mask m = magnitude_mask(tensor_ref<const float>(ref), selection::threshold{c["sparsity"].get<double>()});
    REQUIRE(std::ranges::equal(m.bytes(), want));
    CHECK(w == original);  // computing a mask writes nothing

    magnitude_prune(ref, selection::threshold{c["sparsity"].get<double>()});
    for (std::size_t k = 0; k < w.size(); ++k) REQUIRE(w[k] == (want[k] ? original[k] : 0.0f));
    ++i;
  }
}

TEST_CASE("exact rule matches torch.nn.utils.prune.l1_unstructured on every fixture case") {
  const auto j = fx::load_fixture("torch_l1_unstructured.json");
  REQUIRE(j["cases"].size() == 40);
  std::size_t i = 0;
  for (const auto& c : j["cases"]) {
    CAPTURE(case_label(c, i));
    const auto w = fx::values(c["values"]);
    const auto shape = fx::shape(c["shape"]);
    const tensor_ref<const float> ref(w.data(), shape);
    const selection::exact sel = c["amount_is_count"].get<bool>()
                                     ? selection::exact(c["amount"].get<long>())
                                     : selection::exact(c["amount"].get<double>());
    const mask m = magnitude_mask(ref, sel);
    REQUIRE(std::ranges::equal(m.bytes(), fx::mask_bytes(c["mask"])));
    CHECK(std::ranges::equal(m.shape(), shape));
    ++i;
  }
}

TEST_CASE("strided views select exactly what their contiguous copies select") {
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  for (std::size_t rows : {std::size_t{3}, std::size_t{257}, std::size_t{700}}) {
    const std::size_t cols = 311;
    std::vector<float> buf(rows * cols);
    for (float& x : buf) x = std::round(g(rng) * 8.0f) / 8.0f;  // plenty of ties
    // Transposed view [cols, rows] of the row-major [rows, cols] buffer, and its copy.
    const auto t = make_strided_view(buf.data(), std::array<std::size_t, 2>{cols, rows},
                                     std::array<std::size_t, 2>{1, cols});
    std::vector<float> copy(rows * cols);
    for (std::size_t a = 0; a < cols; ++a)
      for (std::size_t b = 0; b < rows; ++b) copy[a * rows + b] = t(a, b);
    const auto cv = make_view(copy, cols, rows);
    for (double s : {0.1, 0.5, 0.77}) {
      CHECK(magnitude_mask(t, selection::threshold{s}) == magnitude_mask(cv, selection::threshold{s}));
      CHECK(magnitude_mask(t, selection::exact(s)) == magnitude_mask(cv, selection::exact(s)));
    }
    // Pruning the strided view zeroes exactly the masked elements in the original buffer.
    const auto before = buf;
    const mask m = magnitude_prune(t, selection::exact(0.5));
    for (std::size_t a = 0; a < cols; ++a)
      for (std::size_t b = 0; b < rows; ++b)
        REQUIRE(buf[b * cols + a] == (m.data()[a * rows + b] ? before[b * cols + a] : 0.0f));
  }
}

TEST_CASE("double weights and the exact rule prune exactly count, ties by lower index") {
  std::vector<double> w(100001, 0.5);
  w[7] = -0.0;
  w[9] = 0.0;
  const mask m = magnitude_prune(make_view(w), selection::exact(5));
  CHECK(m.count_pruned() == 5);
  CHECK(m.data()[7] == 0);
  CHECK(m.data()[9] == 0);
  CHECK(m.data()[0] == 0);
  CHECK(m.data()[1] == 0);
  CHECK(m.data()[2] == 0);
  CHECK(m.data()[3] == 1);
  CHECK(w[0] == 0.0);
  CHECK(w[3] == 0.5);
}

TEST_CASE("bad input is an error that names the problem and changes nothing") {
  std::vector<float> w{0.5f, -1.0f, 2.0f, 0.25f, -3.0f, 1.5f};
  const auto original = w;
  const auto v = make_view(w, 2, 3);

  SUBCASE("NaN sparsity") {
    CHECK_THROWS_WITH_AS(magnitude_prune(v, selection::threshold{std::nan("")}, "fc.weight"),
                         doctest::Contains("NaN"), spruce::error);
  }
  SUBCASE("exact count larger than the tensor") {
    CHECK_THROWS_WITH_AS(magnitude_prune(v, selection::exact(7), "fc.weight"),
                         doctest::Contains("only 6"), spruce::error);
    CHECK_THROWS_AS(magnitude_prune(v, selection::exact(1.5), "fc.weight"), spruce::error);
    CHECK_THROWS_AS(selection::exact(-1), spruce::error);
  }
  SUBCASE("NaN weight names the tensor and the index") {
    w[4] = std::numeric_limits<float>::quiet_NaN();
    auto w2 = w;
    CHECK_THROWS_WITH_AS(magnitude_prune(make_view(w2, 2, 3), selection::threshold{0.5}, "fc.weight"),
                         doctest::Contains("'fc.weight' at flat index 4"), spruce::error);
    for (std::size_t i = 0; i < w.size(); ++i)
      if (i != 4) CHECK(w2[i] == original[i]);
    w = original;
  }
  SUBCASE("mask of another shape") {
    const std::array<std::size_t, 2> other{3, 2};
    const mask m(other);
    CHECK_THROWS_WITH_AS(apply_mask(v, m, "fc.weight"), doctest::Contains("does not match"),
                         spruce::error);
    const std::array<std::size_t, 1> flat{6};
    CHECK_THROWS_AS(apply_mask(v, mask(flat), "fc.weight"), spruce::error);
  }
  SUBCASE("null pointer with a non-zero size") {
    const std::array<std::size_t, 2> shape{2, 3};
    CHECK_THROWS_WITH_AS(tensor_ref<float>(nullptr, shape), doctest::Contains("null data pointer"),
                         spruce::error);
  }
  SUBCASE("a ratio outside [0, 1] clamps under the threshold rule") {
    CHECK(magnitude_mask(v, selection::threshold{-0.5}).count_pruned() == 0);
    CHECK(magnitude_mask(v, selection::threshold{1.5}).count_pruned() == 6);
  }
  CHECK(w == original);
}

TEST_CASE("an empty tensor is a no-op") {
  std::vector<float> none;
  const std::array<std::size_t, 2> shape{0, 5};
  const tensor_ref<float> v(none.data(), shape);
  const mask m = magnitude_prune(v, selection::threshold{0.5});
  CHECK(m.empty());
  CHECK(magnitude_prune(v, selection::exact(0)).empty());
  CHECK(magnitude_prune(v, selection::exact(1.0)).empty());
}

TEST_CASE("fine_grained_prune: masks computed once, re-applied after each step, made permanent") {
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  std::vector<float> conv(16 * 3 * 3 * 3), fc(10 * 16), bias(10);
  for (auto* v : {&conv, &fc, &bias})
    for (float& x : *v) x = g(rng);
  const std::vector<named_tensor<float>> params{
      {"conv0.weight", make_view(conv, 16, 3, 3, 3)},
      {"fc.weight", make_view(fc, 10, 16)},
      {"fc.bias", make_view(bias)}};
  const auto bias_before = bias;

  auto reg = fine_grained_prune(params, {{"conv0.weight", 0.75}, {"fc.weight", 0.5}});
  REQUIRE(reg.size() == 2);
  CHECK(reg.at("conv0.weight").count_pruned() == 324);  // round(0.75 * 432)
  CHECK(reg.at("fc.weight").count_pruned() == 80);
  CHECK(reg.find("fc.bias") == nullptr);
  CHECK(count_nonzero(make_view(conv)) == 108);
  CHECK(bias == bias_before);

  // An optimizer step moves every weight; apply() puts the pruned ones back to zero.
  const mask conv_mask = reg.at("conv0.weight");
  for (float& x : conv) x += 0.125f;
  for (float& x : fc) x -= 0.25f;
  reg.apply();
  for (std::size_t i = 0; i < conv.size(); ++i)
    REQUIRE((conv[i] == 0.0f) == (conv_mask.data()[i] == 0));
  CHECK(count_nonzero(make_view(fc)) == 80);

  // Gradients of pruned weights are zeroed too.
  std::vector<float> gconv(conv.size(), 1.0f);
  const std::vector<named_tensor<float>> grads{{"conv0.weight", make_view(gconv, 16, 3, 3, 3)}};
  reg.apply_to_gradients(grads);
  CHECK(count_nonzero(make_view(gconv)) == 108);
  std::vector<float> gbias(bias.size(), 1.0f);
  const std::vector<named_tensor<float>> bad{{"fc.bias", make_view(gbias)}};
  CHECK_THROWS_WITH_AS(reg.apply_to_gradients(bad), doctest::Contains("no registered mask"), spruce::error);

  reg.make_permanent();
  CHECK(reg.empty());
  CHECK(count_nonzero(make_view(conv)) == 108);
}

TEST_CASE("fine_grained_prune validates the whole table before touching any tensor") {
  std::vector<float> a{1, 2, 3, 4}, b{5, 6, 7, 8};
  const auto a0 = a, b0 = b;
  const std::vector<named_tensor<float>> params{{"a", make_view(a)}, {"b", make_view(b)}};
  CHECK_THROWS_WITH_AS(fine_grained_prune(params, {{"a", 0.5}, {"c", 0.5}}),
                       doctest::Contains("'c', which is not among the parameters"), spruce::error);
  CHECK_THROWS_WITH_AS(fine_grained_prune(params, {{"a", 0.5}, {"b", std::nan("")}}),
                       doctest::Contains("NaN"), spruce::error);
  b[3] = std::numeric_limits<float>::quiet_NaN();
  auto b1 = b;
  CHECK_THROWS_WITH_AS(fine_grained_prune(params, {{"a", 0.5}, {"b", 0.5}}),
                       doctest::Contains("'b' at flat index 3"), spruce::error);
  CHECK(a == a0);  // 'a' was validated first but not written
  b[3] = b0[3];
  CHECK(b == b0);
  const std::vector<named_tensor<float>> dup{{"a", make_view(a)}, {"a", make_view(b)}};
  CHECK_THROWS_WITH_AS(fine_grained_prune(dup, {{"a", 0.5}}), doctest::Contains("unique"), spruce::error);
  auto reg = fine_grained_prune<selection::exact>(params, {{"a", 0.5}});
  CHECK(a == std::vector<float>{0, 0, 3, 4});
  (void)b1;
}

// ---- selection-rule conformance: every rule, spruce's and a user's, through one set of
// invariants (the policy issue extends this to granularities and criteria).

namespace {

/// A user-defined rule written outside spruce: keep the `keep` largest magnitudes, i.e.
/// prune n - keep (clamped), ties by lower index. It plugs in with no change to spruce.
struct keep_top {
  std::size_t keep = 0;
  static constexpr select::tie_break ties = select::tie_break::lower_index;
  std::size_t count(std::size_t n, const std::string&) const { return n > keep ? n - keep : 0; }
};

template <class S>
S make_rule(double sparsity, std::size_t n) {
  if constexpr (std::is_same_v<S, keep_top>)
    return keep_top{n - static_cast<std::size_t>(std::llround(sparsity * static_cast<double>(n)))};
  else
    return S{sparsity};
}

}  // namespace

static_assert(selection::rule<selection::threshold>);
static_assert(selection::rule<selection::exact>);
static_assert(selection::rule<keep_top>);
static_assert(std::is_trivially_copyable_v<selection::threshold>);
static_assert(std::is_trivially_copyable_v<selection::exact>);

TEST_CASE_TEMPLATE_DEFINE("selection rule conformance", S, selection_rule_conformance) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  for (std::size_t n : {std::size_t{1}, std::size_t{37}, std::size_t{4096}, std::size_t{70000}}) {
    for (bool ties : {false, true}) {
      std::vector<float> w(n);
      for (float& x : w) x = ties ? std::round(g(rng) * 4.0f) / 4.0f : g(rng);
      const auto v = make_view(w);
      std::size_t last_pruned = 0;
      for (double s : {0.0, 0.3, 0.5, 0.9, 1.0}) {
        CAPTURE(n);
        CAPTURE(ties);
        CAPTURE(s);
        const S rule = make_rule<S>(s, n);
        const std::size_t count = rule.count(n, "w");
        const mask m = magnitude_mask(v, rule, "w");
        // Shape and count: exactly count pruned, or with the threshold rule every tie too.
        REQUIRE(m.size() == n);
        if (S::ties == select::tie_break::lower_index) CHECK(m.count_pruned() == count);
        else CHECK(m.count_pruned() >= count);
        // Every kept magnitude is at least every pruned one.
        float max_pruned = -1.0f, min_kept = std::numeric_limits<float>::infinity();
        for (std::size_t i = 0; i < n; ++i) {
          if (m.data()[i]) min_kept = std::min(min_kept, std::abs(w[i]));
          else max_pruned = std::max(max_pruned, std::abs(w[i]));
        }
        CHECK(max_pruned <= min_kept);
        // Monotone in sparsity.
        CHECK(m.count_pruned() >= last_pruned);
        last_pruned = m.count_pruned();
        // Idempotent: pruning the pruned tensor again with the same rule changes nothing.
        auto copy = w;
        magnitude_prune(make_view(copy), rule, "w");
        const auto once = copy;
        magnitude_prune(make_view(copy), rule, "w");
        CHECK(copy == once);
      }
    }
  }
}
TEST_CASE_TEMPLATE_INVOKE(selection_rule_conformance, selection::threshold, selection::exact, keep_top);

TEST_CASE("a gradient of another shape is an error and nothing is written") {
  std::vector<float> w{1, 2, 3, 4, 5, 6}, g1(6, 1.0f), g2(6, 1.0f);
  const std::vector<named_tensor<float>> params{{"w", make_view(w, 2, 3)}};
  auto reg = fine_grained_prune(params, {{"w", 0.5}});
  const std::vector<named_tensor<float>> grads{{"w", make_view(g1, 2, 3)}, {"w", make_view(g2, 3, 2)}};
  CHECK_THROWS_WITH_AS(reg.apply_to_gradients(grads), doctest::Contains("does not match"), spruce::error);
  CHECK(g1 == std::vector<float>(6, 1.0f));  // validated all before writing any
}

TEST_CASE("fine_grained_prune takes a vector, a span or an array, and counts or ratios") {
  std::mt19937 rng(77);
  std::normal_distribution<float> g;
  std::vector<float> a0(10 * 12), b0(5 * 3 * 3 * 3);
  for (float& x : a0) x = g(rng);
  for (float& x : b0) x = g(rng);
  auto a = a0, b = b0;
  const std::vector<std::size_t> sa{10, 12}, sb{5, 3, 3, 3};
  const std::vector<named_tensor<float>> vec{{"a", tensor_ref<float>(a.data(), sa)}, {"b", tensor_ref<float>(b.data(), sb)}};
  const std::array<named_tensor<float>, 2> arr{vec[0], vec[1]};
  const sparsity_table table{{"a", 0.5}, {"b", 30}};  // b: a count of weights
  const mask want_a = magnitude_mask(tensor_ref<const float>(a0.data(), sa), selection::threshold{0.5});
  const mask want_b = magnitude_mask(tensor_ref<const float>(b0.data(), sb), selection::threshold{30.0 / 135.0});
  CHECK(want_b.count_pruned() == 30);
  auto check = [&](const auto& params) {
    a = a0, b = b0;
    auto reg = fine_grained_prune(params, table);
    CHECK(reg.at("a") == want_a);
    CHECK(reg.at("b") == want_b);
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(b[i] == (want_b.bytes()[i] ? b0[i] : 0.0f));
  };
  check(vec);
  check(arr);
  check(std::span<const named_tensor<float>>(vec));
  a = a0, b = b0;
  auto ex = fine_grained_prune<selection::exact>(vec, {{"b", 31}});
  CHECK(ex.at("b").count_pruned() == 31);
  a = a0, b = b0;
  CHECK_THROWS_WITH_AS(fine_grained_prune<selection::exact>(vec, {{"b", 136}}), doctest::Contains("'b'"),
                       spruce::error);
  CHECK(b == b0);
}
