// The schedule base stands alone: one policy header (here polynomial.hpp, which includes
// only schedule/base.hpp) gives the concept and its policy, and a user schedule written
// against the base alone models the concept; the umbrella is not needed.
#include <doctest/doctest.h>

#include <cstdint>

#include "spruce/schedule/polynomial.hpp"

namespace {

// A user schedule: prune every 5 steps to a step-dependent target, capped at 0.9.
struct staircase {
  bool should_prune(std::int64_t step) const { return step % 5 == 0; }
  double sparsity_at(std::int64_t step) const { return step >= 45 ? 0.9 : 0.02 * static_cast<double>(step); }
};

static_assert(spruce::schedule::schedule_policy<staircase>);
static_assert(spruce::schedule::schedule_policy<spruce::schedule::polynomial>);
static_assert(!spruce::schedule::schedule_policy<int>);

}  // namespace

TEST_CASE("a single policy header gives the schedule base and its policy") {
  const auto p = spruce::schedule::agp(0.0, 0.8, 0, 100, 10);
  CHECK(p.should_prune(10));
  CHECK_FALSE(p.should_prune(15));
  CHECK(p.sparsity_at(100) == 0.8);
  CHECK(spruce::schedule::detail::format_knob(0.1) == "0.1");
  CHECK_THROWS_WITH_AS(spruce::schedule::polynomial(0.0, 1.5, 0, 10), doctest::Contains("1.5"), spruce::error);
  CHECK(staircase{}.sparsity_at(50) == 0.9);
}
