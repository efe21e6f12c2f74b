#include <doctest/doctest.h>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xtensor.hpp>

#include <array>
#include <cstddef>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/tensor_ref.hpp"
#include "spruce/xtensor.hpp"

namespace {

// Distinct values in memory order, so that a wrong stride reads a wrong (different) value.
template <class C>
void fill_iota(C& c) {
  std::iota(c.data(), c.data() + c.size(), typename std::decay_t<C>::value_type(0));
}

template <class C>
concept viewable = requires(C&& c) { spruce::make_view(std::forward<C>(c)); };
template <class C>
concept viewable2 = requires(C&& c) { spruce::make_view<2>(std::forward<C>(c)); };
template <class C>
concept refable = requires(C&& c) { spruce::make_ref(std::forward<C>(c)); };

}  // namespace

TEST_CASE("xtensor: row-major xtensor is a row-major view over its own memory") {
  xt::xtensor<float, 3> a = xt::xtensor<float, 3>::from_shape({2, 3, 4});
  fill_iota(a);
  auto v = spruce::make_view(a);
  static_assert(std::is_same_v<decltype(v), spruce::view<float, 3>>);

  CHECK(v.data_handle() == a.data());
  CHECK(v.shape() == std::array<std::size_t, 3>{2, 3, 4});
  CHECK(v.stride(0) == 12);
  CHECK(v.stride(1) == 4);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 4; ++k) CHECK(v(i, j, k) == a(i, j, k));
  CHECK(v(1, 2, 3) == 23.0f);

  v(1, 0, 2) = -5.0f;
  CHECK(a(1, 0, 2) == -5.0f);
  a(0, 2, 1) = 9.5f;
  CHECK(v(0, 2, 1) == 9.5f);

  spruce::tensor_ref<const float> r = v;
  CHECK(r.data() == a.data());
  CHECK(r.is_contiguous());
}

TEST_CASE("xtensor: column-major xtensor is strided with its own strides") {
  xt::xtensor<double, 2, xt::layout_type::column_major> a =
      xt::xtensor<double, 2, xt::layout_type::column_major>::from_shape({3, 4});
  fill_iota(a);
  auto v = spruce::make_view(a);
  static_assert(std::is_same_v<decltype(v), spruce::strided_view<double, 2>>);
  CHECK(v.data_handle() == a.data());
  CHECK(v.stride(0) == 1);
  CHECK(v.stride(1) == 3);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) CHECK(v(i, j) == a(i, j));
  CHECK(v(2, 1) == 5.0);
  v(1, 3) = 42.0;
  CHECK(a(1, 3) == 42.0);
  CHECK_FALSE(v.is_contiguous());

  spruce::tensor_ref<const double> r = v;
  CHECK_FALSE(r.is_contiguous());
}

TEST_CASE("xtensor: zero strides of extent-1 axes keep the contiguity answer right") {
  // xtensor stores stride 0 for axes of extent 1.
  xt::xtensor<float, 3, xt::layout_type::column_major> a =
      xt::xtensor<float, 3, xt::layout_type::column_major>::from_shape({1, 1, 5});
  REQUIRE(a.strides()[0] == 0);
  fill_iota(a);
  auto v = spruce::make_view(a);
  CHECK(v.stride(2) == 1);
  CHECK(v.is_contiguous());  // a column-major 1x1x5 is laid out like a row-major one
  spruce::tensor_ref<const float> r = v;
  CHECK(r.is_contiguous());
  CHECK(v(0, 0, 4) == 4.0f);

  xt::xtensor<float, 2, xt::layout_type::column_major> b =
      xt::xtensor<float, 2, xt::layout_type::column_major>::from_shape({4, 1});
  fill_iota(b);
  auto vb = spruce::make_view(b);
  CHECK(vb.is_contiguous());
  for (std::size_t i = 0; i < 4; ++i) CHECK(vb(i, 0) == b(i, 0));

  xt::xtensor<float, 4> c = xt::xtensor<float, 4>::from_shape({2, 1, 3, 1});
  fill_iota(c);
  REQUIRE(c.strides()[1] == 0);
  auto vc = spruce::make_view(c);  // row-major by type: strides checked, zeros accepted
  static_assert(std::is_same_v<decltype(vc), spruce::view<float, 4>>);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t k = 0; k < 3; ++k) CHECK(vc(i, 0, k, 0) == c(i, 0, k, 0));
}

TEST_CASE("xtensor: const containers give views of const elements") {
  xt::xtensor<int, 2> a = {{1, 2, 3}, {4, 5, 6}};
  const auto& ca = a;
  auto v = spruce::make_view(ca);
  static_assert(std::is_same_v<decltype(v), spruce::view<const int, 2>>);
  CHECK(v.data_handle() == a.data());
  CHECK(v(1, 2) == 6);

  const xt::xarray<int> x = {{1, 2}, {3, 4}};
  auto vx = spruce::make_view<2>(x);
  static_assert(std::is_same_v<decltype(vx), spruce::view<const int, 2>>);
  CHECK(vx(1, 0) == 3);
  auto rx = spruce::make_ref(x);
  static_assert(std::is_same_v<decltype(rx), spruce::tensor_ref<const int>>);
}

TEST_CASE("xtensor: xarray needs its rank spelled, and checks it") {
  xt::xarray<float> a = xt::xarray<float>::from_shape({2, 3, 2, 2});
  fill_iota(a);
  auto v = spruce::make_view<4>(a);
  static_assert(std::is_same_v<decltype(v), spruce::view<float, 4>>);
  CHECK(v.data_handle() == a.data());
  CHECK(v.shape() == std::array<std::size_t, 4>{2, 3, 2, 2});
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t k = 0; k < 2; ++k)
        for (std::size_t l = 0; l < 2; ++l) CHECK(v(i, j, k, l) == a(i, j, k, l));
  v(1, 2, 1, 0) = 77.0f;
  CHECK(a(1, 2, 1, 0) == 77.0f);

  CHECK_THROWS_AS(spruce::make_view<3>(a), spruce::error);
  try {
    (void)spruce::make_view<2>(a);
    FAIL("expected spruce::error");
  } catch (const spruce::error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("dimension 4") != std::string::npos);
    CHECK(msg.find("make_view<4>") != std::string::npos);
    CHECK(msg.find("make_ref") != std::string::npos);
  }

  xt::xarray<double, xt::layout_type::column_major> c =
      xt::xarray<double, xt::layout_type::column_major>::from_shape({3, 2});
  fill_iota(c);
  auto vc = spruce::make_view<2>(c);
  static_assert(std::is_same_v<decltype(vc), spruce::strided_view<double, 2>>);
  CHECK(vc.stride(1) == 3);
  CHECK(vc(2, 1) == c(2, 1));
  CHECK(vc(2, 1) == 5.0);
}

TEST_CASE("xtensor: make_ref gives a run-time-rank ref of any container") {
  xt::xarray<float> a = xt::xarray<float>::from_shape({2, 3, 4});
  fill_iota(a);
  spruce::tensor_ref<float> r = spruce::make_ref(a);
  CHECK(r.data() == a.data());
  CHECK(r.rank() == 3);
  CHECK(r.extent(0) == 2);
  CHECK(r.extent(2) == 4);
  CHECK(r.stride(0) == 12);
  CHECK(r.is_contiguous());
  CHECK(r.data()[r.offset_of(23)] == a(1, 2, 3));

  xt::xarray<float, xt::layout_type::column_major> c =
      xt::xarray<float, xt::layout_type::column_major>::from_shape({2, 3});
  fill_iota(c);
  auto rc = spruce::make_ref(c);
  CHECK(rc.rank() == 2);
  CHECK(rc.stride(0) == 1);
  CHECK(rc.stride(1) == 2);
  CHECK_FALSE(rc.is_contiguous());
  CHECK(rc.data()[rc.offset_of(4)] == c(1, 1));  // flat row-major index 4 is (1, 1)

  xt::xtensor<float, 2> t = xt::xtensor<float, 2>::from_shape({5, 2});
  auto rt = spruce::make_ref(t);
  CHECK(rt.rank() == 2);
  CHECK(rt.data() == t.data());

  xt::xarray<float> one = xt::xarray<float>::from_shape({7});
  CHECK(spruce::make_ref(one).rank() == 1);
  xt::xarray<float> eight = xt::xarray<float>::from_shape({1, 2, 1, 2, 1, 2, 1, 2});
  CHECK(spruce::make_ref(eight).rank() == 8);

  xt::xarray<float> nine = xt::xarray<float>::from_shape({1, 1, 1, 1, 1, 1, 1, 1, 2});
  CHECK_THROWS_AS(spruce::make_ref(nine), spruce::error);
  xt::xarray<float> scalar = xt::xarray<float>::from_shape({});
  CHECK_THROWS_AS(spruce::make_ref(scalar), spruce::error);
  CHECK_THROWS_AS(spruce::make_view<1>(scalar), spruce::error);
}

TEST_CASE("xtensor: adaptors over foreign buffers") {
  std::vector<double> buf(24);
  std::iota(buf.begin(), buf.end(), 0.0);

  SUBCASE("static-rank adaptor of a pointer") {
    auto a = xt::adapt(buf.data(), buf.size(), xt::no_ownership(),
                       std::array<std::size_t, 3>{2, 3, 4});
    auto v = spruce::make_view(a);
    static_assert(std::is_same_v<decltype(v), spruce::view<double, 3>>);
    CHECK(v.data_handle() == buf.data());
    CHECK(v(1, 2, 3) == 23.0);
    CHECK(v(1, 0, 1) == a(1, 0, 1));
    v(0, 1, 1) = -1.0;
    CHECK(buf[5] == -1.0);
  }
  SUBCASE("dynamic-rank adaptor of a vector") {
    std::vector<std::size_t> shape{4, 6};
    auto a = xt::adapt(buf, shape);
    auto v = spruce::make_view<2>(a);
    CHECK(v.data_handle() == buf.data());
    CHECK(v(3, 5) == 23.0);
    v(2, 0) = 0.5;
    CHECK(buf[12] == 0.5);
    CHECK_THROWS_AS(spruce::make_view<3>(a), spruce::error);
    CHECK(spruce::make_ref(a).rank() == 2);
  }
  SUBCASE("column-major adaptor") {
    auto a = xt::adapt<xt::layout_type::column_major>(buf.data(), buf.size(), xt::no_ownership(),
                                                      std::array<std::size_t, 2>{4, 6});
    auto v = spruce::make_view(a);
    static_assert(std::is_same_v<decltype(v), spruce::strided_view<double, 2>>);
    CHECK(v.stride(0) == 1);
    CHECK(v.stride(1) == 4);
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t j = 0; j < 6; ++j) CHECK(v(i, j) == a(i, j));
    CHECK(v(3, 5) == 23.0);
  }
  SUBCASE("adaptor with explicit strides (a column slice of a row-major buffer)") {
    // Columns 1 and 3 of the 4x6 row-major matrix in buf, via strides {6, 2}.
    auto a = xt::adapt(buf.data() + 1, 8, xt::no_ownership(), std::vector<std::size_t>{4, 2},
                       std::vector<std::ptrdiff_t>{6, 2});
    auto v = spruce::make_view<2>(a);
    CHECK(v.data_handle() == buf.data() + 1);
    CHECK(v.stride(0) == 6);
    CHECK(v.stride(1) == 2);
    CHECK_FALSE(v.is_contiguous());
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t j = 0; j < 2; ++j) CHECK(v(i, j) == a(i, j));
    CHECK(v(3, 1) == 21.0);
  }
  SUBCASE("negative strides are rejected") {
    auto a = xt::adapt(buf.data() + 23, 4, xt::no_ownership(), std::vector<std::size_t>{4},
                       std::vector<std::ptrdiff_t>{-2});
    CHECK_THROWS_AS(spruce::make_view<1>(a), spruce::error);
    CHECK_THROWS_AS(spruce::make_ref(a), spruce::error);
  }
}

TEST_CASE("xtensor: fixed-size containers") {
  xt::xtensor_fixed<float, xt::xshape<2, 3>> f;
  fill_iota(f);
  auto v = spruce::make_view(f);
  static_assert(std::is_same_v<decltype(v), spruce::view<float, 2>>);
  CHECK(v.data_handle() == f.data());
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t j = 0; j < 3; ++j) CHECK(v(i, j) == f(i, j));
}

TEST_CASE("xtensor: temporaries do not bind") {
  static_assert(viewable<xt::xtensor<float, 2>&>);
  static_assert(viewable<const xt::xtensor<float, 2>&>);
  static_assert(!viewable<xt::xtensor<float, 2>>);
  static_assert(!viewable<const xt::xtensor<float, 2>>);
  static_assert(viewable2<xt::xarray<float>&>);
  static_assert(!viewable2<xt::xarray<float>>);
  static_assert(refable<xt::xarray<float>&>);
  static_assert(!refable<xt::xarray<float>>);
  // xarray's rank is not part of its type: it has to be spelled.
  static_assert(!viewable<xt::xarray<float>&>);
  CHECK(true);
}
