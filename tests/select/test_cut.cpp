// select::lowest_cut (selection over keys a functor computes) against lowest_mask, the
// library's keep mask of the same scores, and a naive sort-based reference: random and
// adversarial inputs (ties, +-0, +-inf, subnormals, NaN, empty, 1 element), both orders,
// both tie rules, counts 0, 1, n, and sizes on both sides of the bracket path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "spruce/select/cut.hpp"

using namespace spruce;
using namespace spruce::select;

namespace {

// Reads the key of scores[i] under O (what a program reading a file's bytes would do).
template <class O>
struct keys_of {
  const typename O::value_type* p;
  typename O::key_type operator()(std::size_t i) const { return O::key(p[i]); }
};

// Naive reference: stable sort of the indices by score (magnitude or value); the first
// `count` are selected, and with all_equal every score equal to the count-th too.
template <class T>
std::vector<std::uint8_t> naive_keep(const std::vector<T>& v, std::size_t count, bool magnitude, tie_break ties) {
  auto s = [&](std::size_t i) { return magnitude ? std::abs(v[i]) : v[i]; };
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return s(a) < s(b); });
  std::vector<std::uint8_t> keep(v.size(), 1);
  for (std::size_t j = 0; j < count; ++j) keep[idx[j]] = 0;
  if (ties == tie_break::all_equal && count > 0) {
    const T t = s(idx[count - 1]);
    for (std::size_t i = 0; i < v.size(); ++i)
      if (s(i) == t) keep[i] = 0;
  }
  return keep;
}

template <template <class> class Order, class T>
void check_cut(const std::vector<T>& v, std::size_t count, tie_break ties) {
  using O = Order<T>;
  CAPTURE(v.size());
  CAPTURE(count);
  CAPTURE(static_cast<int>(ties));
  const auto cut = lowest_cut<O>(v.size(), keys_of<O>{v.data()}, count, ties, "w");
  const byte_buffer lib = lowest_mask<Order>(v, count, ties, "w");
  const auto ref = naive_keep(v, count, std::is_same_v<O, by_magnitude<T>>, ties);
  std::size_t vs_lib = 0, vs_ref = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const bool k = cut.keeps(O::key(v[i]), i);
    vs_lib += k != (lib[i] != 0);
    vs_ref += k != (ref[i] != 0);
  }
  CHECK(vs_lib == 0);
  CHECK(vs_ref == 0);
}

template <class T>
void check_all(const std::vector<T>& v) {
  const std::size_t n = v.size();
  std::vector<std::size_t> counts = {0, n};
  if (n) counts.insert(counts.end(), {std::size_t{1}, n / 2, n / 3, n - 1, (n * 7) / 10});
  for (const std::size_t c : counts)
    for (const tie_break t : {tie_break::all_equal, tie_break::lower_index}) {
      check_cut<by_magnitude>(v, c, t);
      check_cut<by_value>(v, c, t);
    }
}

}  // namespace

TEST_CASE("lowest_cut: the keep mask of lowest_mask and of a sort, on adversarial inputs") {
  const float inf = std::numeric_limits<float>::infinity();
  const float sub = std::numeric_limits<float>::denorm_min();
  check_all(std::vector<float>{});
  check_all(std::vector<float>{-0.0f});
  check_all(std::vector<float>{3.0f});
  check_all(std::vector<float>{0.0f, -0.0f, 0.0f, -0.0f, 1.0f});  // +-0 tie
  check_all(std::vector<float>{inf, -inf, 1.0f, -1.0f, sub, -sub, 2 * sub, 0.0f, -0.0f, 1e-38f, inf});
  check_all(std::vector<double>{2.0, -2.0, 2.0, 0.5, -0.5, 0.0, -0.0, std::numeric_limits<double>::infinity(), 5e-324});
  std::mt19937 rng(17);
  for (const std::size_t n : {std::size_t{257}, std::size_t{70000}, std::size_t{140001}}) {  // radix and bracket paths
    std::vector<float> heavy(n), spread(n);
    const float vals[] = {0.5f, -0.5f, 0.25f, 0.0f, -0.0f, -2.0f, sub, inf};
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (std::size_t i = 0; i < n; ++i) heavy[i] = vals[rng() % 8], spread[i] = g(rng);
    check_all(heavy);
    check_all(spread);
  }
}

TEST_CASE("lowest_cut: NaN keys and a count past the end are refused, naming the sequence") {
  std::vector<float> v(100000, 1.0f);
  v[76543] = std::nanf("");
  auto msg = [&](std::size_t count) {
    try {
      (void)lowest_cut<by_magnitude<float>>(v.size(), keys_of<by_magnitude<float>>{v.data()}, count,
                                            tie_break::all_equal, "tensor 'w'");
    } catch (const spruce::error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  for (const std::size_t c : {std::size_t{0}, std::size_t{1}, std::size_t{50000}}) {
    const std::string m = msg(c);
    CHECK(m.find("tensor 'w'") != std::string::npos);
    CHECK(m.find("76543") != std::string::npos);
    CHECK(m.find("NaN") != std::string::npos);
  }
  v[76543] = 1.0f;
  CHECK(msg(100001).find("cannot select 100001") != std::string::npos);
  CHECK(msg(100000) == "(no error)");
}
