#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <atomic>
#include <thread>
#include <vector>

#include "spruce/spruce.hpp"

using namespace spruce;

TEST_CASE("round_half_even matches Python's round") {
  CHECK(round_half_even(2.5) == 2.0);
  CHECK(round_half_even(3.5) == 4.0);
  CHECK(round_half_even(0.5) == 0.0);
  CHECK(round_half_even(1.5) == 2.0);
  CHECK(round_half_even(2.4999999) == 2.0);
  CHECK(round_half_even(2.5000001) == 3.0);
  CHECK(round_half_even(-2.5) == -2.0);
  CHECK(round_half_even(-3.5) == -4.0);
  CHECK(round_half_even(7.0) == 7.0);
  // 0.3 * 7 is 2.0999999999999996 in double, as in Python.
  CHECK(count_from_ratio(0.3, 7) == 2);
  CHECK(count_from_ratio(0.5, 5) == 2);   // 2.5 -> 2
  CHECK(count_from_ratio(0.7, 5) == 4);   // 3.5 -> 4
  CHECK(count_from_ratio(1.5, 5) == 5);   // clamps
  CHECK(count_from_ratio(-0.2, 5) == 0);  // clamps
  CHECK(kept_from_ratio(0.3, 64) == 45);  // 44.8 -> 45
  CHECK_THROWS_AS(count_from_ratio(std::nan(""), 5), spruce::error);
}

TEST_CASE("tensor_view indexes row-major and strided memory") {
  std::vector<float> buf(24);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i);
  auto v = make_view(buf, 2, 3, 4);
  static_assert(decltype(v)::rank() == 3);
  CHECK(v.size() == 24);
  CHECK(v.extent(1) == 3);
  CHECK(v.stride(0) == 12);
  CHECK(v(1, 2, 3) == 23.0f);
  CHECK(v.is_contiguous());

  // Transposed 2-D view of a 3 x 8 row-major block: element (j, i) = buf[i * 8 + j].
  auto t = make_strided_view(buf.data(), std::array<std::size_t, 2>{8, 3},
                             std::array<std::size_t, 2>{1, 8});
  CHECK(t(5, 2) == 21.0f);
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.is_exhaustive());

  view<const float, 3> cv = v;  // non-const converts to const
  CHECK(cv(0, 1, 0) == 4.0f);
  strided_view<float, 3> sv = v;  // row-major converts to strided
  CHECK(sv.is_contiguous());
  CHECK(sv(1, 0, 1) == 13.0f);

  tensor_ref<const float> r = t;
  CHECK(r.rank() == 2);
  CHECK(r.size() == 24);
  CHECK(r.offset_of(5 * 3 + 2) == 2 * 8 + 5);
  CHECK_FALSE(r.is_contiguous());
}

TEST_CASE("make_view validates its input") {
  float* null = nullptr;
  CHECK_THROWS_WITH_AS(make_view(null, 3, 4), doctest::Contains("null data pointer"),
                       spruce::error);
  CHECK_NOTHROW(make_view(null, 0, 4));  // an empty view may have no storage
  std::vector<float> buf(12);
  CHECK_THROWS_WITH_AS(make_view(buf, 5, 3), doctest::Contains("15 elements"), spruce::error);
  auto s = make_view(std::span<float>(buf), 3, 4);
  CHECK(s.extent(0) == 3);
  const std::vector<float>& cbuf = buf;
  auto c = make_view(cbuf);
  static_assert(std::is_same_v<decltype(c)::element_type, const float>);
  CHECK(c.size() == 12);
}

TEST_CASE("parallel_chunks covers the range in order") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{100000}}) {
    std::vector<int> hit(n, 0);
    std::vector<std::size_t> begins(static_cast<std::size_t>(max_threads()) + 1, 0);
    parallel_chunks(n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
      begins[c] = b;
      for (std::size_t i = b; i < e; ++i) hit[i] += 1;
    });
    for (std::size_t i = 0; i < n; ++i) REQUIRE(hit[i] == 1);
  }
}

TEST_CASE("parallel_chunks: chunks are contiguous and ordered, nested and concurrent calls stay correct") {
  const std::size_t n = 1'000'003;
  std::vector<std::size_t> begins(static_cast<std::size_t>(max_threads()) + 1, 0), ends = begins;
  std::size_t count = 0;
  parallel_chunks(n, [&](std::size_t c, std::size_t nc, std::size_t b, std::size_t e) {
    begins[c] = b;
    ends[c] = e;
    if (c == 0) count = nc;
  });
  REQUIRE(count >= 1);
  REQUIRE(count <= static_cast<std::size_t>(max_threads()));
  CHECK(begins[0] == 0);
  CHECK(ends[count - 1] == n);
  for (std::size_t c = 1; c < count; ++c) CHECK(begins[c] == ends[c - 1]);

  // A kernel called from inside a chunk runs on that thread (no deadlock, full coverage).
  std::vector<std::atomic<int>> inner(64);
  parallel_for(0, 64, [&](std::size_t i) {
    std::vector<int> local(50'000, 0);
    parallel_for(0, local.size(), [&](std::size_t j) { local[j] = 1; });
    int sum = 0;
    for (int v : local) sum += v;
    inner[i] = sum;
  }, 2);
  for (auto& v : inner) CHECK(v == 50'000);

  // Several user threads calling at once: one gets the helpers, the others run alone.
  std::vector<std::thread> users;
  std::vector<long long> sums(4, 0);
  for (std::size_t u = 0; u < sums.size(); ++u)
    users.emplace_back([&, u] {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<long long> part(static_cast<std::size_t>(max_threads()), 0);
        parallel_chunks(200'000, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
          long long s = 0;
          for (std::size_t i = b; i < e; ++i) s += static_cast<long long>(i);
          part[c] = s;
        });
        long long s = 0;
        for (long long v : part) s += v;
        sums[u] += s;
      }
    });
  for (auto& t : users) t.join();
  for (long long s : sums) CHECK(s == 20LL * (200'000LL * 199'999LL / 2));
}

TEST_CASE("tensor_ref from a pointer and a run-time shape") {
  std::vector<double> buf(24);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<double>(i);
  const std::vector<std::size_t> shape{2, 3, 4};
  const tensor_ref<double> r(buf.data(), shape);
  CHECK(r.rank() == 3);
  CHECK(r.size() == 24);
  CHECK(r.stride(0) == 12);
  CHECK(r.stride(2) == 1);
  CHECK(r.is_contiguous());
  const std::vector<std::size_t> t_shape{4, 6}, t_strides{1, 4};
  const tensor_ref<const double> t(buf.data(), t_shape, t_strides);
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.offset_of(1 * 6 + 5) == 1 + 5 * 4);

  const std::vector<std::size_t> none, nine(9, 1), two{2, 2};
  CHECK_THROWS_WITH_AS(tensor_ref<double>(buf.data(), none), doctest::Contains("rank 0"), spruce::error);
  CHECK_THROWS_WITH_AS(tensor_ref<double>(buf.data(), nine), doctest::Contains("rank 9"), spruce::error);
  CHECK_THROWS_WITH_AS(tensor_ref<double>(buf.data(), two, shape), doctest::Contains("3 strides"),
                       spruce::error);
  // An empty view is contiguous whatever its strides: nothing can be misplaced.
  const std::vector<std::size_t> e_shape{3, 0}, e_strides{5, 7};
  CHECK(tensor_ref<double>(nullptr, e_shape, e_strides).is_contiguous());
  CHECK(make_strided_view(buf.data(), std::array<std::size_t, 2>{3, 0},
                          std::array<std::size_t, 2>{5, 7})
            .is_contiguous());
}

TEST_CASE("for_each_run walks strided views in row-major order from any start") {
  std::vector<int> buf(7 * 5 * 3);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<int>(i);
  // Axes permuted (2, 0, 1) of a [7, 5, 3] block: shape [3, 7, 5], strides [1, 15, 3].
  const std::vector<std::size_t> shape{3, 7, 5}, strides{1, 15, 3};
  const tensor_ref<const int> v(buf.data(), shape, strides);
  std::vector<int> want;
  for (std::size_t a = 0; a < 3; ++a)
    for (std::size_t b = 0; b < 7; ++b)
      for (std::size_t c = 0; c < 5; ++c) want.push_back(buf[a + 15 * b + 3 * c]);
  for (std::size_t begin : {std::size_t{0}, std::size_t{4}, std::size_t{33}}) {
    std::vector<int> got;
    detail::for_each_run(v, begin, want.size(),
                         [&](std::size_t flat, const int* p, std::size_t s, std::size_t len) {
                           CHECK(flat == begin + got.size());
                           for (std::size_t i = 0; i < len; ++i) got.push_back(p[i * s]);
                         });
    CHECK(std::equal(got.begin(), got.end(), want.begin() + static_cast<std::ptrdiff_t>(begin)));
  }
  std::vector<int> gathered(want.size());
  detail::gather(v, gathered.data());
  CHECK(gathered == want);
}

TEST_CASE("byte_buffer constructs, resizes and assigns like a vector") {
  byte_buffer b(5, 1);
  CHECK(b.size() == 5);
  CHECK(b[4] == 1);
  b.resize(8);
  b.assign(8, 0);
  CHECK(b[7] == 0);
}
