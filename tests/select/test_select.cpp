// Selection core: k-th smallest and keep masks against a naive sort-based reference, on
// random and adversarial inputs (ties, signed zeros, infinities, NaN, empty, 1 element).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "spruce/select/kth.hpp"

using namespace spruce;
using namespace spruce::select;

namespace {

template <class T>
T score_of(T x, bool magnitude) {
  return magnitude ? std::abs(x) : x;
}

template <class T>
kth_result<T> naive_kth(const std::vector<T>& v, std::size_t k, bool magnitude) {
  std::vector<T> s;
  for (T x : v) s.push_back(score_of(x, magnitude));
  std::sort(s.begin(), s.end());
  const T t = s[k - 1];
  std::size_t less = 0, equal = 0;
  for (T x : s) {
    less += x < t;
    equal += x == t;
  }
  return {t, less, equal};
}

template <class T>
byte_buffer naive_mask(const std::vector<T>& v, std::size_t count, tie_break ties,
                                     bool magnitude) {
  const std::size_t n = v.size();
  byte_buffer m(n, 1);
  if (count == 0) return m;
  if (ties == tie_break::all_equal) {
    const T t = naive_kth(v, count, magnitude).value;
    for (std::size_t i = 0; i < n; ++i) m[i] = score_of(v[i], magnitude) > t;
    return m;
  }
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    return score_of(v[a], magnitude) < score_of(v[b], magnitude);
  });
  for (std::size_t j = 0; j < count; ++j) m[idx[j]] = 0;
  return m;
}

enum class dist { gaussian, few_values, signed_zeros, infinities, all_equal, sorted, mostly_zero };
const dist all_dists[] = {dist::gaussian,  dist::few_values, dist::signed_zeros, dist::infinities,
                          dist::all_equal, dist::sorted,     dist::mostly_zero};

template <class T>
std::vector<T> make_data(std::size_t n, dist d, std::mt19937_64& rng) {
  std::normal_distribution<double> g(0.0, 1.0);
  std::uniform_int_distribution<int> pick(0, 4);
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (d) {
      case dist::gaussian: v[i] = static_cast<T>(g(rng)); break;
      case dist::few_values: {
        const T vals[] = {T(0), T(-0.5), T(0.5), T(-1), T(1)};
        v[i] = vals[pick(rng)];
        break;
      }
      case dist::signed_zeros: v[i] = pick(rng) < 2 ? T(-0.0) : (pick(rng) < 3 ? T(0) : T(g(rng))); break;
      case dist::infinities: v[i] = pick(rng) == 0 ? -inf : (pick(rng) == 1 ? inf : T(g(rng))); break;
      case dist::all_equal: v[i] = T(0.25); break;
      case dist::sorted: v[i] = static_cast<T>(static_cast<double>(i) - static_cast<double>(n) / 3); break;
      case dist::mostly_zero: v[i] = pick(rng) == 0 ? T(g(rng)) : T(0); break;
    }
  }
  return v;
}

std::vector<std::size_t> counts_for(std::size_t n, std::mt19937_64& rng) {
  std::vector<std::size_t> c{0, n / 2, n};
  if (n > 1) c.insert(c.end(), {std::size_t{1}, n - 1});
  if (n > 0) c.push_back(std::uniform_int_distribution<std::size_t>(1, n)(rng));
  return c;
}

const std::size_t sizes[] = {0, 1, 2, 3, 7, 100, 1000, 4097, 65535, 65536, 70001, 100000};

template <class T>
void check_against_reference(bool magnitude) {
  std::mt19937_64 rng(42);
  for (std::size_t n : sizes) {
    for (dist d : all_dists) {
      const auto v = make_data<T>(n, d, rng);
      for (std::size_t count : counts_for(n, rng)) {
        CAPTURE(n);
        CAPTURE(static_cast<int>(d));
        CAPTURE(count);
        CAPTURE(magnitude);
        if (count >= 1) {
          const auto got = magnitude ? kth_smallest<by_magnitude>(v, count) : kth_smallest(v, count);
          const auto want = naive_kth(v, count, magnitude);
          REQUIRE(got.value == want.value);
          REQUIRE(got.less == want.less);
          REQUIRE(got.equal == want.equal);
        }
        for (tie_break ties : {tie_break::all_equal, tie_break::lower_index}) {
          const auto m = magnitude ? lowest_mask<by_magnitude>(v, count, ties)
                                   : lowest_mask(v, count, ties);
          const auto want = naive_mask(v, count, ties, magnitude);
          REQUIRE(m == want);
        }
      }
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("selection matches the sort-based reference", T, float, double) {
  check_against_reference<T>(false);
  check_against_reference<T>(true);
}

TEST_CASE("exact selection breaks ties by lower index and prunes exactly count") {
  std::vector<float> v(200000, 1.0f);
  v[5] = 0.5f;
  auto m = lowest_mask(v, 100, tie_break::lower_index);
  CHECK(m[5] == 0);
  for (std::size_t i = 0; i < 99; ++i) CHECK(m[i < 5 ? i : i + 1] == 0);
  CHECK(m[100] == 1);
  CHECK(std::count(m.begin(), m.end(), 0) == 100);
  // The threshold rule prunes every tied weight.
  m = lowest_mask(v, 100, tie_break::all_equal);
  CHECK(std::count(m.begin(), m.end(), 0) == 200000);
}

TEST_CASE("signed zeros tie and infinities are ordered values") {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v{-0.0f, 0.0f, inf, -inf, 1.0f};
  auto r = kth_smallest(v, 2);
  CHECK(r.value == 0.0f);
  CHECK(r.less == 1);
  CHECK(r.equal == 2);
  CHECK(kth_smallest(v, 5).value == inf);
  CHECK(kth_smallest(v, 1).value == -inf);
  CHECK(kth_smallest<by_magnitude>(v, 4).value == inf);
  CHECK(kth_smallest<by_magnitude>(v, 4).equal == 2);
}

TEST_CASE("NaN scores are an error naming the index") {
  for (std::size_t n : {std::size_t{10}, std::size_t{200000}}) {
    std::vector<double> v(n, 1.0);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<double>(i % 97);
    const std::size_t at = n - 3;
    v[at] = -std::numeric_limits<double>::quiet_NaN();
    const std::string where = "flat index " + std::to_string(at);
    CHECK_THROWS_WITH_AS(lowest_mask(v, n / 2, tie_break::all_equal, "tensor 'fc.weight'"),
                         doctest::Contains(where.c_str()), spruce::error);
    CHECK_THROWS_WITH_AS(lowest_mask<by_magnitude>(v, 0, tie_break::lower_index),
                         doctest::Contains("NaN"), spruce::error);
    CHECK_THROWS_AS(kth_smallest(v, 1), spruce::error);
  }
}

TEST_CASE("bad counts and sizes are errors") {
  std::vector<float> v{1, 2, 3};
  CHECK_THROWS_WITH_AS(kth_smallest(v, 0), doctest::Contains("outside [1, 3]"), spruce::error);
  CHECK_THROWS_WITH_AS(kth_smallest(v, 4), doctest::Contains("outside [1, 3]"), spruce::error);
  CHECK_THROWS_WITH_AS(lowest_mask(v, 4, tie_break::lower_index),
                       doctest::Contains("cannot select 4"), spruce::error);
  std::vector<float> empty;
  CHECK(lowest_mask(empty, 0, tie_break::all_equal).empty());
}

TEST_CASE("a heavy tie straddling the sampled bracket falls back to radix select") {
  // Half zeros, half distinct values: the bracket around the median spans the whole block
  // of zeros, overflows the candidate buffer, and radix select must take over.
  const std::size_t n = 100000;
  std::vector<float> v(n, 0.0f);
  for (std::size_t i = 0; i < n; i += 2) v[i] = 1.0f + static_cast<float>(i) * 1e-5f;
  for (std::size_t count : {n / 2 - 1, n / 2, n / 2 + 1, n / 2 + 7}) {
    CAPTURE(count);
    const auto k = kth_smallest(v, count);
    const auto want = naive_kth(v, count, false);
    CHECK(k.value == want.value);
    CHECK(k.less == want.less);
    CHECK(k.equal == want.equal);
    for (tie_break ties : {tie_break::all_equal, tie_break::lower_index})
      CHECK(lowest_mask(v, count, ties) == naive_mask(v, count, ties, false));
  }
}
