// Pruning schedules against the TF-MOT / AGP / geometric references (schedules.json), hand
// values, deliberately broken schedules the fixture check must reject, one conformance
// suite for every policy (spruce's and a user's), and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <type_traits>

#include "spruce/schedule/schedule.hpp"
#include "support/fixtures.hpp"

namespace sch = spruce::schedule;
namespace fx = spruce_test;

namespace {

constexpr double tol = 1e-12;
constexpr std::int64_t int64_min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();

/// The fixture's step-indexed kinds (polynomial, constant) build a TF-MOT schedule from the
/// case's knobs.
sch::polynomial make_polynomial(const nlohmann::json& c) {
  return sch::polynomial(c["initial_sparsity"].get<double>(), c["final_sparsity"].get<double>(),
                         c["begin_step"].get<std::int64_t>(), c["end_step"].get<std::int64_t>(),
                         c["power"].get<double>(), c["frequency"].get<std::int64_t>());
}

sch::constant make_constant(const nlohmann::json& c) {
  return sch::constant(c["target_sparsity"].get<double>(), c["begin_step"].get<std::int64_t>(),
                       c["end_step"].get<std::int64_t>(), c["frequency"].get<std::int64_t>());
}

/// Steps of a step-indexed case where `s` disagrees with the reference (sparsity beyond
/// 1e-12 or should_prune different); `checked` counts the steps looked at.
template <class S>
std::size_t step_mismatches(const nlohmann::json& c, const S& s, std::size_t& checked) {
  std::size_t bad = 0;
  for (const auto& st : c["steps"]) {
    const auto step = st["step"].get<std::int64_t>();
    const bool ok = std::abs(s.sparsity_at(step) - st["sparsity"].get<double>()) <= tol &&
                    s.should_prune(step) == st["should_prune"].get<bool>();
    bad += ok ? 0 : 1;
    ++checked;
  }
  return bad;
}

// ---- broken schedules: each one is a plausible bug; the fixture check must catch it.

/// Frequency counted from step 0 instead of from begin_step.
template <class B>
struct absolute_modulo {
  B p;
  bool should_prune(std::int64_t step) const {
    return step >= p.begin_step && (p.end_step == -1 || step <= p.end_step) &&
           step % p.frequency == 0;
  }
  double sparsity_at(std::int64_t step) const { return p.sparsity_at(step); }
};

/// The window's end treated as exclusive.
template <class B>
struct exclusive_end {
  B p;
  bool should_prune(std::int64_t step) const {
    return p.should_prune(step) && step != p.end_step;
  }
  double sparsity_at(std::int64_t step) const { return p.sparsity_at(step); }
};

/// The power ignored (a straight line).
struct linear_ramp {
  sch::polynomial p;
  bool should_prune(std::int64_t step) const { return p.should_prune(step); }
  double sparsity_at(std::int64_t step) const {
    auto q = p;
    q.power = 1.0;
    return q.sparsity_at(step);
  }
};

/// p not clipped below: before begin_step the ramp runs backwards.
struct unclipped {
  sch::polynomial p;
  bool should_prune(std::int64_t step) const { return p.should_prune(step); }
  double sparsity_at(std::int64_t step) const {
    const double t = static_cast<double>(step - p.begin_step) /
                     static_cast<double>(p.end_step - p.begin_step);
    const double q = t > 1.0 ? 1.0 : t;
    return (p.initial_sparsity - p.final_sparsity) * std::pow(1.0 - q, p.power) + p.final_sparsity;
  }
};

// ---- a user-defined schedule, written outside spruce.

/// Staircase: every `period` steps add `increment` to the sparsity, up to `cap`, pruning at
/// each stair. It plugs into spruce through the concept alone.
struct staircase {
  double increment = 0.1;
  double cap = 0.8;
  std::int64_t period = 10;

  bool should_prune(std::int64_t step) const { return step > 0 && step % period == 0; }
  double sparsity_at(std::int64_t step) const {
    if (step <= 0) return 0.0;
    const double s = increment * static_cast<double>(step / period);
    return s < cap ? s : cap;
  }
};

}  // namespace

static_assert(sch::schedule_policy<staircase>);
static_assert(sch::schedule_policy<absolute_modulo<sch::polynomial>>);
static_assert(!sch::schedule_policy<int>);
/// Missing sparsity_at, or returning the wrong type, is not a schedule.
struct half_schedule {
  bool should_prune(std::int64_t) const { return true; }
};
struct float_schedule {
  bool should_prune(std::int64_t) const { return true; }
  float sparsity_at(std::int64_t) const { return 0.5f; }
};
static_assert(!sch::schedule_policy<half_schedule>);
static_assert(!sch::schedule_policy<float_schedule>);

// A valid schedule can be built, and queried where the arithmetic allows it, at compile time.
constexpr sch::constant compile_time_constant(0.5, 10, 40, 10);
static_assert(compile_time_constant.should_prune(30) && !compile_time_constant.should_prune(35));
static_assert(compile_time_constant.sparsity_at(0) == 0.5);
constexpr sch::polynomial compile_time_agp = sch::agp(0.0, 0.9, 0, 100, 10);
static_assert(compile_time_agp.power == 3.0 && compile_time_agp.should_prune(100));

TEST_CASE("schedules match schedules.json at every step of every case") {
  const auto j = fx::load_fixture("schedules.json");
  std::map<std::string, std::size_t> cases;
  std::size_t checked = 0, expected = 0;
  std::size_t i = 0;
  for (const auto& c : j["cases"]) {
    const auto kind = c["kind"].get<std::string>();
    CAPTURE(i);
    CAPTURE(kind);
    ++cases[kind];
    if (kind == "polynomial" || kind == "constant") {
      expected += c["steps"].size();
      if (kind == "polynomial") {
        const auto s = make_polynomial(c);
        for (const auto& st : c["steps"]) {
          const auto step = st["step"].get<std::int64_t>();
          CAPTURE(step);
          CHECK(std::abs(s.sparsity_at(step) - st["sparsity"].get<double>()) <= tol);
          CHECK(s.should_prune(step) == st["should_prune"].get<bool>());
        }
        CHECK(step_mismatches(c, s, checked) == 0);
      } else {
        const auto s = make_constant(c);
        for (const auto& st : c["steps"]) {
          const auto step = st["step"].get<std::int64_t>();
          CAPTURE(step);
          CHECK(std::abs(s.sparsity_at(step) - st["sparsity"].get<double>()) <= tol);
          CHECK(s.should_prune(step) == st["should_prune"].get<bool>());
        }
        CHECK(step_mismatches(c, s, checked) == 0);
      }
    } else if (kind == "iterative_geometric" || kind == "agp") {
      // Iteration-indexed: entry k-1 is the target after iteration k = 1..n.
      const auto n = c["iterations"].get<std::int64_t>();
      const auto want = c["sparsity_after_iteration"];
      REQUIRE(want.size() == static_cast<std::size_t>(n));
      const auto check = [&](const auto& s) {
        for (std::int64_t k = 1; k <= n; ++k) {
          CAPTURE(k);
          CHECK(std::abs(s.sparsity_at(k) - want[static_cast<std::size_t>(k - 1)].get<double>()) <= tol);
          CHECK(s.should_prune(k));
          ++checked;
        }
        CHECK_FALSE(s.should_prune(n + 1));
        CHECK(s.sparsity_at(n + 1) == c["final_sparsity"].get<double>());
      };
      expected += static_cast<std::size_t>(n);
      if (kind == "agp") {
        check(sch::agp(c["initial_sparsity"].get<double>(), c["final_sparsity"].get<double>(), 0, n, 1));
      } else {
        const sch::iterative_geometric s(c["final_sparsity"].get<double>(), n);
        check(s);
        CHECK_FALSE(s.should_prune(0));  // iteration 0 is the dense network
        CHECK(s.sparsity_at(0) == 0.0);
      }
    } else {
      FAIL("unknown schedule kind '" << kind << "' in schedules.json");
    }
    ++i;
  }
  CHECK(cases["polynomial"] == 4);
  CHECK(cases["constant"] == 2);
  CHECK(cases["iterative_geometric"] == 2);
  CHECK(cases["agp"] == 2);
  CHECK(checked == expected);  // every step of every case was compared
  CHECK(checked == 614);       // and the fixture is the one this test was written against
}

TEST_CASE("the fixture check rejects plausible bugs") {
  const auto j = fx::load_fixture("schedules.json");
  std::size_t modulo = 0, end = 0, linear = 0, clip = 0, checked = 0;
  for (const auto& c : j["cases"]) {
    if (c["kind"] == "constant") {
      const auto k = make_constant(c);
      modulo += step_mismatches(c, absolute_modulo<sch::constant>{k}, checked);
      end += step_mismatches(c, exclusive_end<sch::constant>{k}, checked);
    }
    if (c["kind"] != "polynomial") continue;
    const auto p = make_polynomial(c);
    modulo += step_mismatches(c, absolute_modulo<sch::polynomial>{p}, checked);
    end += step_mismatches(c, exclusive_end<sch::polynomial>{p}, checked);
    linear += step_mismatches(c, linear_ramp{p}, checked);
    clip += step_mismatches(c, unclipped{p}, checked);
  }
  CHECK(modulo > 0);
  CHECK(end > 0);
  CHECK(linear > 0);
  CHECK(clip > 0);
}

TEST_CASE("hand-computed values") {
  SUBCASE("polynomial") {
    const sch::polynomial cubic(0.0, 0.9, 0, 100, 3.0, 10);
    CHECK(std::abs(cubic.sparsity_at(50) - 0.7875) <= tol);       // 0.9 - 0.9 * 0.5^3
    CHECK(std::abs(cubic.sparsity_at(25) - 0.5203125) <= tol);    // 0.9 - 0.9 * 0.75^3
    const sch::polynomial line(0.2, 0.6, 10, 20, 1.0, 3);
    CHECK(std::abs(line.sparsity_at(15) - 0.4) <= tol);
    CHECK(line.sparsity_at(0) == 0.2);                             // before: initial
    CHECK(line.sparsity_at(20) == 0.6);                            // at and after end: final
    CHECK(line.sparsity_at(1000) == 0.6);
    CHECK(line.should_prune(10));
    CHECK(line.should_prune(13));
    CHECK(line.should_prune(19));
    CHECK_FALSE(line.should_prune(20));  // (20 - 10) % 3 != 0
    CHECK_FALSE(line.should_prune(22));  // past the window
    CHECK_FALSE(line.should_prune(7));   // before it, though 7 % 3 == 1 = 10 % 3
    const sch::polynomial square(0.0, 1.0, 0, 4, 2.0, 1);
    CHECK(std::abs(square.sparsity_at(1) - 0.4375) <= tol);       // 1 - 0.75^2
    const sch::polynomial fractional(0.0, 1.0, 0, 4, 0.5, 1);
    CHECK(std::abs(fractional.sparsity_at(3) - 0.5) <= tol);      // 1 - 0.25^0.5
    // A decreasing ramp is allowed, as in TF-MOT.
    const sch::polynomial down(0.8, 0.2, 0, 10, 1.0, 1);
    CHECK(std::abs(down.sparsity_at(5) - 0.5) <= tol);
    // Extreme steps neither overflow nor leave [initial, final].
    CHECK(line.sparsity_at(int64_min) == 0.2);
    CHECK(line.sparsity_at(int64_max) == 0.6);
    CHECK_FALSE(line.should_prune(int64_min));
    CHECK_FALSE(line.should_prune(int64_max));
  }
  SUBCASE("agp is the cubic polynomial") {
    const auto a = sch::agp(0.1, 0.7, 5, 25, 5);
    CHECK(a.power == 3.0);
    CHECK(a.frequency == 5);
    const sch::polynomial p(0.1, 0.7, 5, 25, 3.0, 5);
    for (std::int64_t s = 0; s < 40; ++s) {
      CHECK(a.sparsity_at(s) == p.sparsity_at(s));
      CHECK(a.should_prune(s) == p.should_prune(s));
    }
    CHECK(std::abs(a.sparsity_at(15) - 0.625) <= tol);  // 0.7 - 0.6 * 0.5^3
    CHECK(sch::agp(0.0, 0.5, 0, 10).frequency == 100);  // TF-MOT's default
  }
  SUBCASE("constant") {
    const sch::constant c(0.3, 5, 20, 5);
    for (std::int64_t s : {5, 10, 15, 20}) CHECK(c.should_prune(s));
    for (std::int64_t s : {0, 4, 6, 19, 21, 25}) CHECK_FALSE(c.should_prune(s));
    for (std::int64_t s : {int64_min, std::int64_t{0}, std::int64_t{12}, int64_max})
      CHECK(c.sparsity_at(s) == 0.3);
    const sch::constant open(0.5, 0, -1, 1);  // open-ended: every step, forever
    CHECK(open.should_prune(int64_max));
    CHECK(sch::constant(0.5, 3).end_step == -1);
    CHECK(sch::constant(0.5, 3).frequency == 100);
    const sch::constant single(0.5, 7, 7, 3);  // end == begin is a one-step window
    CHECK(single.should_prune(7));
    CHECK_FALSE(single.should_prune(10));
  }
  SUBCASE("one_shot") {
    const sch::one_shot o(0.6, 7);
    CHECK(o.should_prune(7));
    for (std::int64_t s : {int64_min, std::int64_t{0}, std::int64_t{6}, std::int64_t{8}, int64_max})
      CHECK_FALSE(o.should_prune(s));
    CHECK(o.sparsity_at(0) == 0.6);
    CHECK(o.sparsity_at(100) == 0.6);
    CHECK(sch::one_shot(0.25).should_prune(0));
  }
  SUBCASE("iterative_geometric") {
    const sch::iterative_geometric g(0.75, 2);
    CHECK(std::abs(g.sparsity_at(1) - 0.5) <= tol);  // 1 - 0.25^(1/2)
    CHECK(g.sparsity_at(2) == 0.75);
    CHECK(g.sparsity_at(0) == 0.0);
    CHECK(g.sparsity_at(-3) == 0.0);
    CHECK(g.sparsity_at(int64_min) == 0.0);
    CHECK(g.sparsity_at(int64_max) == 0.75);
    CHECK_FALSE(g.should_prune(0));
    CHECK(g.should_prune(1));
    CHECK(g.should_prune(2));
    CHECK_FALSE(g.should_prune(3));
    // Each round keeps the same fraction of the survivors: (1 - s_f)^(1/n).
    const sch::iterative_geometric h(0.9, 7);
    const double keep = std::pow(0.1, 1.0 / 7.0);
    for (std::int64_t k = 1; k <= 7; ++k)
      CHECK(std::abs((1.0 - h.sparsity_at(k)) / (1.0 - h.sparsity_at(k - 1)) - keep) <= 1e-12);
    // s_f = 1 prunes everything in the first round; s_f = 0 never prunes a weight.
    CHECK(sch::iterative_geometric(1.0, 3).sparsity_at(1) == 1.0);
    CHECK(sch::iterative_geometric(0.0, 3).sparsity_at(2) == 0.0);
  }
}

// ---- conformance: every schedule, spruce's and the user's, through one set of checks.

namespace {

template <class S>
S sample_schedule() {
  if constexpr (std::is_same_v<S, sch::one_shot>) return sch::one_shot(0.5, 20);
  else if constexpr (std::is_same_v<S, sch::constant>) return sch::constant(0.6, 10, 200, 7);
  else if constexpr (std::is_same_v<S, sch::polynomial>) return sch::polynomial(0.1, 0.9, 10, 110, 3.0, 5);
  else if constexpr (std::is_same_v<S, sch::iterative_geometric>) return sch::iterative_geometric(0.9, 10);
  else return S{};
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("schedule conformance", S, schedule_conformance) {
  static_assert(sch::schedule_policy<S>);
  static_assert(std::is_trivially_copyable_v<S>);
  const S s = sample_schedule<S>();
  const S copy = s;
  std::size_t prunes = 0;
  double last = -1.0;
  for (std::int64_t step = -5; step <= 300; ++step) {
    CAPTURE(step);
    const double v = s.sparsity_at(step);
    // A fraction of weights, the same on every call and for every copy.
    CHECK(v >= 0.0);
    CHECK(v <= 1.0);
    CHECK(v == s.sparsity_at(step));
    CHECK(v == copy.sparsity_at(step));
    CHECK(s.should_prune(step) == copy.should_prune(step));
    if (s.should_prune(step)) {
      ++prunes;
      CHECK(step >= 0);  // no schedule prunes before training starts
      CHECK(v >= last);  // every sample ramps up (or holds), so prune targets never drop
      last = v;
    }
  }
  CHECK(prunes > 0);
  for (std::int64_t step : {int64_min, int64_max}) {
    const double v = s.sparsity_at(step);
    CHECK(v >= 0.0);
    CHECK(v <= 1.0);
  }
}
TEST_CASE_TEMPLATE_INVOKE(schedule_conformance, sch::one_shot, sch::constant, sch::polynomial,
                          sch::iterative_geometric, staircase);

TEST_CASE("bad knobs are errors that name the knob and say how to fix it") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  using doctest::Contains;
  SUBCASE("window") {
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 20, 10), Contains("end_step 10 is before begin_step 20"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::constant(0.5, 20, 10), Contains("end_step 10 is before begin_step 20"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::constant(0.5, 20, 10), Contains("or -1 to prune until training ends"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::agp(0.0, 0.9, 5, 1), Contains("end_step 1 is before begin_step 5"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 0, -1), Contains("end_step -1 (open-ended)"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 10, 10), Contains("ramp has no length"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::constant(0.5, 0, -2), Contains("end_step -2 is negative"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::constant(0.5, -1), Contains("begin_step -1 is negative"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, -5, 10), Contains("begin_step -5 is negative"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::one_shot(0.5, -1), Contains("prune_step -1 is negative"), spruce::error);
  }
  SUBCASE("frequency") {
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 0, 10, 3.0, 0), Contains("frequency 0 is not positive"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::constant(0.5, 0, -1, -3), Contains("frequency -3 is not positive"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::agp(0.0, 0.9, 0, 10, 0), Contains("frequency"), spruce::error);
  }
  SUBCASE("sparsities") {
    CHECK_THROWS_WITH_AS(sch::polynomial(nan, 0.9, 0, 10), Contains("initial_sparsity NaN is not in [0, 1]"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 1.5, 0, 10), Contains("final_sparsity 1.5 is not in [0, 1]"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(-0.1, 0.5, 0, 10), Contains("initial_sparsity -0.1"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::constant(1.01, 0), Contains("target_sparsity 1.01"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::constant(-nan, 0), Contains("target_sparsity NaN"), spruce::error);
    CHECK_THROWS_WITH_AS((void)sch::one_shot(inf), Contains("target_sparsity inf"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::iterative_geometric(nan, 3), Contains("final_sparsity NaN"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::agp(0.0, 2.0, 0, 10), Contains("final_sparsity 2"), spruce::error);
  }
  SUBCASE("power and iterations") {
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 0, 10, 0.0), Contains("power 0 is not a finite number > 0"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 0, 10, -1.0), Contains("power -1"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 0, 10, nan), Contains("power NaN"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::polynomial(0.0, 0.9, 0, 10, inf), Contains("power inf"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::iterative_geometric(0.9, 0), Contains("iterations 0 is not positive"), spruce::error);
    CHECK_THROWS_WITH_AS(sch::iterative_geometric(0.9, -2), Contains("iterations -2 is not positive"), spruce::error);
  }
  SUBCASE("every message says how to fix it and which schedule it came from") {
    const std::function<void()> bad[] = {
        [] { (void)sch::polynomial(0.0, 0.9, 20, 10); },
        [] { (void)sch::polynomial(0.0, 0.9, 0, 10, 0.0); },
        [] { (void)sch::constant(0.5, 0, -1, 0); },
        [] { (void)sch::one_shot(2.0); },
        [] { (void)sch::iterative_geometric(0.9, 0); },
    };
    for (const auto& f : bad) {
      CHECK_THROWS_WITH_AS(f(), Contains("; pass "), spruce::error);
      CHECK_THROWS_WITH_AS(f(), Contains(" schedule: "), spruce::error);
    }
  }
  SUBCASE("edges are valid") {
    CHECK_NOTHROW((void)sch::polynomial(0.0, 1.0, 0, 1, 1e-9, 1));
    CHECK_NOTHROW((void)sch::constant(0.0, 0, 0, 1));
    CHECK_NOTHROW((void)sch::constant(1.0, 0, -1, 1));
    CHECK_NOTHROW((void)sch::one_shot(1.0, 0));
    CHECK_NOTHROW((void)sch::iterative_geometric(1.0, 1));
  }
  SUBCASE("validate() re-checks knobs assigned after construction") {
    auto p = sch::polynomial(0.0, 0.9, 0, 10);
    CHECK_NOTHROW(p.validate());
    p.power = 0.0;
    CHECK_THROWS_WITH_AS(p.validate(), Contains("power 0"), spruce::error);
    auto c = sch::constant(0.5, 0);
    c.end_step = -7;
    CHECK_THROWS_WITH_AS(c.validate(), Contains("end_step -7"), spruce::error);
    auto g = sch::iterative_geometric(0.5, 2);
    g.final_sparsity = 3.0;
    CHECK_THROWS_WITH_AS(g.validate(), Contains("final_sparsity 3"), spruce::error);
  }
}
