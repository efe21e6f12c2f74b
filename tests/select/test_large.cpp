// Selection past 2^31 elements: counts, indices and the exact-k tie-break must not wrap
// at 32 bits. Needs about 11 GB; skipped with a message when the machine has less free.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "spruce/select/kth.hpp"

using namespace spruce;
using namespace spruce::select;

namespace {

std::size_t available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::size_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

}  // namespace

TEST_CASE("selection over 2^31 + 3 elements") {
  const std::size_t n = (std::size_t{1} << 31) + 3;
  if (available_bytes() < (std::size_t{14} << 30)) {
    MESSAGE("skipped: needs about 14 GB of free memory for 2^31 + 3 floats and their mask");
    return;
  }
  constexpr std::size_t levels = 1024;
  // Magnitude of element i is (i % 1024) / 1024 with alternating signs, so every level
  // holds floor(n / 1024) elements plus one for the first n % 1024 levels; the largest
  // magnitude sits at an index past 2^31.
  std::unique_ptr<float[]> w(new float[n]);
  const std::size_t big = (std::size_t{1} << 31) + 1;
  parallel_for(0, n, [&](std::size_t i) {
    const float m = static_cast<float>(i % levels) / levels;
    w[i] = (i & 1) ? -m : m;
  });
  w[big] = -5.0f;
  const std::span<const float> s(w.get(), n);

  auto level_count = [&](std::size_t j) {
    return n / levels + (j < n % levels ? 1 : 0) - (j == big % levels ? 1 : 0);
  };
  const std::size_t k = n / 2 + 12345;
  std::size_t less = 0, j = 0;
  while (less + level_count(j) < k) less += level_count(j++);

  const auto r = kth_smallest<by_magnitude>(s, k);
  CHECK(r.value == static_cast<float>(j) / levels);
  CHECK(r.less == less);
  CHECK(r.equal == level_count(j));
  {
    const auto m = lowest_mask<by_magnitude>(s, k, tie_break::lower_index);
    std::size_t pruned = 0;
    for (std::size_t i = 0; i < n; ++i) pruned += m[i] == 0;
    CHECK(pruned == k);
    // Among the tied level-j elements the lower indices go first.
    const std::size_t need = k - less;
    CHECK(m[j + levels * (need - 1)] == 0);
    CHECK(m[j + levels * need] == 1);
    CHECK(m[big] == 1);
  }
}
