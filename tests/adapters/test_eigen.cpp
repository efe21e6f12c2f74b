#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/tensor_ref.hpp"
#include "spruce/eigen.hpp"
#include "spruce/eigen_tensor.hpp"

namespace {

using row_matrix_f = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Distinct values in memory order, so that a wrong stride reads a wrong (different) value.
template <class X>
void fill_iota(X& x, float start = 1.0f) {
  std::iota(x.data(), x.data() + x.size(), static_cast<typename X::Scalar>(start));
}

// Every element of the view equals Eigen's own element (i, j).
template <class V, class X>
void check_same_2d(const V& v, const X& x) {
  REQUIRE(v.extent(0) == static_cast<std::size_t>(x.rows()));
  REQUIRE(v.extent(1) == static_cast<std::size_t>(x.cols()));
  for (Eigen::Index i = 0; i < x.rows(); ++i)
    for (Eigen::Index j = 0; j < x.cols(); ++j) CHECK(v(i, j) == x(i, j));
}

template <class V, class X>
void check_same_1d(const V& v, const X& x) {
  REQUIRE(v.extent(0) == static_cast<std::size_t>(x.size()));
  for (Eigen::Index i = 0; i < x.size(); ++i) CHECK(v(i) == x(i));
}

// Whether make_view accepts an argument of this value category and type.
template <class X>
concept viewable = requires(X&& x) { spruce::make_view(std::forward<X>(x)); };

}  // namespace

TEST_CASE("eigen: column-major matrix is a strided view over its own memory") {
  Eigen::MatrixXf m(3, 4);
  fill_iota(m);
  auto v = spruce::make_view(m);
  static_assert(std::is_same_v<decltype(v), spruce::strided_view<float, 2>>);

  CHECK(v.data_handle() == m.data());
  CHECK(v.extent(0) == 3);
  CHECK(v.extent(1) == 4);
  CHECK(v.stride(0) == 1);
  CHECK(v.stride(1) == 3);
  CHECK_FALSE(v.is_contiguous());
  check_same_2d(v, m);
  CHECK(v(2, 1) == 6.0f);  // memory order: column 1 starts at offset 3

  v(1, 2) = 42.0f;
  CHECK(m(1, 2) == 42.0f);
  m(2, 3) = -7.0f;
  CHECK(v(2, 3) == -7.0f);

  spruce::tensor_ref<const float> r = v;
  CHECK(r.data() == m.data());
  CHECK(r.rank() == 2);
  CHECK(r.stride(0) == 1);
  CHECK(r.stride(1) == 3);
  CHECK_FALSE(r.is_contiguous());
}

TEST_CASE("eigen: row-major matrix is a row-major view") {
  row_matrix_f m(3, 4);
  fill_iota(m);
  auto v = spruce::make_view(m);
  static_assert(std::is_same_v<decltype(v), spruce::view<float, 2>>);

  CHECK(v.data_handle() == m.data());
  CHECK(v.stride(0) == 4);
  CHECK(v.stride(1) == 1);
  check_same_2d(v, m);
  CHECK(v(2, 1) == 10.0f);

  v(0, 3) = 5.5f;
  CHECK(m(0, 3) == 5.5f);
  m(1, 1) = -1.0f;
  CHECK(v(1, 1) == -1.0f);

  spruce::tensor_ref<const float> r = v;
  CHECK(r.is_contiguous());
  CHECK(r.size() == 12);
}

TEST_CASE("eigen: fixed-size matrices and arrays") {
  Eigen::Matrix3d a;
  fill_iota(a);
  auto va = spruce::make_view(a);
  static_assert(std::is_same_v<decltype(va), spruce::strided_view<double, 2>>);
  CHECK(va.data_handle() == a.data());
  CHECK(va.stride(1) == 3);
  check_same_2d(va, a);

  Eigen::Matrix<double, 2, 3, Eigen::RowMajor> b;
  fill_iota(b);
  auto vb = spruce::make_view(b);
  static_assert(std::is_same_v<decltype(vb), spruce::view<double, 2>>);
  check_same_2d(vb, b);

  Eigen::ArrayXXf c(2, 5);
  fill_iota(c);
  auto vc = spruce::make_view(c);
  static_assert(std::is_same_v<decltype(vc), spruce::strided_view<float, 2>>);
  CHECK(vc.data_handle() == c.data());
  CHECK(vc.stride(0) == 1);
  CHECK(vc.stride(1) == 2);
  check_same_2d(vc, c);
  vc(1, 4) = 100.0f;
  CHECK(c(1, 4) == 100.0f);

  Eigen::Array<int, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> d(4, 2);
  fill_iota(d);
  auto vd = spruce::make_view(d);
  static_assert(std::is_same_v<decltype(vd), spruce::view<int, 2>>);
  check_same_2d(vd, d);
}

TEST_CASE("eigen: const objects give views of const elements") {
  Eigen::MatrixXf m(2, 3);
  fill_iota(m);
  const Eigen::MatrixXf& cm = m;
  auto v = spruce::make_view(cm);
  static_assert(std::is_same_v<decltype(v), spruce::strided_view<const float, 2>>);
  CHECK(v.data_handle() == m.data());
  check_same_2d(v, m);

  const row_matrix_f rm = row_matrix_f::Constant(2, 2, 3.0f);
  auto vr = spruce::make_view(rm);
  static_assert(std::is_same_v<decltype(vr), spruce::view<const float, 2>>);
  CHECK(vr(1, 1) == 3.0f);

  // A const Map hands out const pointers in Eigen too; the view follows.
  std::vector<float> buf(6, 1.0f);
  const Eigen::Map<Eigen::MatrixXf> cmap(buf.data(), 2, 3);
  static_assert(std::is_same_v<decltype(spruce::make_view(cmap)),
                               spruce::strided_view<const float, 2>>);
}

TEST_CASE("eigen: compile-time vectors are rank-1 views") {
  Eigen::VectorXf x(5);
  fill_iota(x);
  auto vx = spruce::make_view(x);
  static_assert(std::is_same_v<decltype(vx), spruce::view<float, 1>>);
  CHECK(vx.data_handle() == x.data());
  check_same_1d(vx, x);
  vx(4) = 0.5f;
  CHECK(x(4) == 0.5f);

  Eigen::RowVectorXd y(3);
  fill_iota(y);
  auto vy = spruce::make_view(y);
  static_assert(std::is_same_v<decltype(vy), spruce::view<double, 1>>);
  check_same_1d(vy, y);

  // A column of a column-major matrix is packed; a row is not.
  Eigen::MatrixXf m(3, 4);
  fill_iota(m);
  auto col = spruce::make_view(m.col(2));
  static_assert(std::is_same_v<decltype(col), spruce::view<float, 1>>);
  CHECK(col.data_handle() == &m(0, 2));
  check_same_1d(col, m.col(2));

  auto row = spruce::make_view(m.row(1));
  static_assert(std::is_same_v<decltype(row), spruce::strided_view<float, 1>>);
  CHECK(row.data_handle() == &m(1, 0));
  CHECK(row.stride(0) == 3);
  check_same_1d(row, m.row(1));
  row(3) = -3.0f;
  CHECK(m(1, 3) == -3.0f);
}

TEST_CASE("eigen: maps over foreign buffers, with and without strides") {
  std::vector<float> buf(40);
  std::iota(buf.begin(), buf.end(), 0.0f);

  SUBCASE("default-stride column-major map") {
    Eigen::Map<Eigen::MatrixXf> m(buf.data(), 3, 4);
    auto v = spruce::make_view(m);
    static_assert(std::is_same_v<decltype(v), spruce::strided_view<float, 2>>);
    CHECK(v.data_handle() == buf.data());
    CHECK(v.stride(1) == 3);
    check_same_2d(v, m);
    v(2, 3) = 99.0f;
    CHECK(buf[11] == 99.0f);
  }
  SUBCASE("default-stride row-major map is a row-major view") {
    Eigen::Map<row_matrix_f> m(buf.data(), 3, 4);
    auto v = spruce::make_view(m);
    static_assert(std::is_same_v<decltype(v), spruce::view<float, 2>>);
    check_same_2d(v, m);
    CHECK(v(2, 3) == 11.0f);
  }
  SUBCASE("column-major map with an outer stride") {
    Eigen::Map<Eigen::MatrixXf, 0, Eigen::OuterStride<>> m(buf.data(), 3, 4,
                                                           Eigen::OuterStride<>(5));
    auto v = spruce::make_view(m);
    CHECK(v.stride(0) == 1);
    CHECK(v.stride(1) == 5);
    check_same_2d(v, m);
    CHECK(v(2, 3) == 17.0f);
    spruce::tensor_ref<const float> r = v;
    CHECK_FALSE(r.is_contiguous());
  }
  SUBCASE("row-major map with inner and outer strides") {
    using stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    Eigen::Map<row_matrix_f, 0, stride> m(buf.data() + 1, 3, 2, stride(8, 2));
    auto v = spruce::make_view(m);
    static_assert(std::is_same_v<decltype(v), spruce::strided_view<float, 2>>);
    CHECK(v.data_handle() == buf.data() + 1);
    CHECK(v.stride(0) == 8);
    CHECK(v.stride(1) == 2);
    check_same_2d(v, m);
    CHECK(v(2, 1) == 19.0f);
  }
  SUBCASE("row-major map whose outer stride happens to be packed is contiguous at run time") {
    Eigen::Map<row_matrix_f, 0, Eigen::OuterStride<>> m(buf.data(), 3, 4, Eigen::OuterStride<>(4));
    spruce::tensor_ref<const float> r = spruce::make_view(m);
    CHECK(r.is_contiguous());
  }
  SUBCASE("vector map with an inner stride") {
    Eigen::Map<Eigen::VectorXf, 0, Eigen::InnerStride<>> m(buf.data(), 4, Eigen::InnerStride<>(3));
    auto v = spruce::make_view(m);
    static_assert(std::is_same_v<decltype(v), spruce::strided_view<float, 1>>);
    CHECK(v.stride(0) == 3);
    check_same_1d(v, m);
    CHECK(v(3) == 9.0f);
  }
  SUBCASE("map of const data") {
    const std::vector<float>& cbuf = buf;
    Eigen::Map<const Eigen::MatrixXf> m(cbuf.data(), 4, 2);
    auto v = spruce::make_view(m);
    static_assert(std::is_same_v<decltype(v), spruce::strided_view<const float, 2>>);
    check_same_2d(v, m);
  }
  SUBCASE("a temporary map binds: it only points into the buffer") {
    auto v = spruce::make_view(Eigen::Map<row_matrix_f>(buf.data(), 5, 8));
    CHECK(v.data_handle() == buf.data());
    CHECK(v(4, 7) == 39.0f);
  }
  SUBCASE("negative strides are rejected") {
    using stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    Eigen::Map<Eigen::MatrixXf, 0, stride> m(buf.data() + 30, 3, 3, stride(-10, 1));
    CHECK(m(0, 2) == 10.0f);  // Eigen itself accepts the map
    CHECK_THROWS_AS(spruce::make_view(m), spruce::error);
  }
}

TEST_CASE("eigen: blocks, transposes and refs") {
  Eigen::MatrixXf m(4, 5);
  fill_iota(m);

  SUBCASE("block of a column-major matrix") {
    auto v = spruce::make_view(m.block(1, 1, 2, 3));
    static_assert(std::is_same_v<decltype(v), spruce::strided_view<float, 2>>);
    CHECK(v.data_handle() == &m(1, 1));
    CHECK(v.extent(0) == 2);
    CHECK(v.extent(1) == 3);
    CHECK(v.stride(0) == 1);
    CHECK(v.stride(1) == 4);
    check_same_2d(v, m.block(1, 1, 2, 3));
    v(1, 2) = 77.0f;
    CHECK(m(2, 3) == 77.0f);
  }
  SUBCASE("row blocks of a row-major matrix") {
    row_matrix_f rm(4, 5);
    fill_iota(rm);
    auto inner = spruce::make_view(rm.block(1, 1, 2, 3));
    CHECK(inner.stride(0) == 5);
    CHECK(inner.stride(1) == 1);
    CHECK_FALSE(inner.is_contiguous());
    check_same_2d(inner, rm.block(1, 1, 2, 3));

    auto rows = spruce::make_view(rm.middleRows(1, 2));
    CHECK(rows.data_handle() == &rm(1, 0));
    CHECK(rows.is_contiguous());
    check_same_2d(rows, rm.middleRows(1, 2));
  }
  SUBCASE("transpose keeps Eigen's indexing") {
    auto v = spruce::make_view(m.transpose());
    CHECK(v.extent(0) == 5);
    CHECK(v.extent(1) == 4);
    CHECK(v.data_handle() == m.data());
    for (Eigen::Index i = 0; i < 5; ++i)
      for (Eigen::Index j = 0; j < 4; ++j) CHECK(v(i, j) == m(j, i));
    // The transpose of a column-major matrix is row-major in memory.
    CHECK(v.is_contiguous());
  }
  SUBCASE("refs") {
    Eigen::Ref<Eigen::MatrixXf> r = m.block(0, 1, 4, 2);
    auto v = spruce::make_view(r);
    CHECK(v.data_handle() == &m(0, 1));
    check_same_2d(v, r);
    v(3, 1) = 12.5f;
    CHECK(m(3, 2) == 12.5f);

    Eigen::Ref<const Eigen::MatrixXf> cr = m;
    auto cv = spruce::make_view(cr);
    static_assert(std::is_same_v<decltype(cv), spruce::strided_view<const float, 2>>);
    CHECK(cv.data_handle() == m.data());
    check_same_2d(cv, m);
  }
}

TEST_CASE("eigen: column-major tensors are strided {1, d0, d0*d1, ...}") {
  Eigen::Tensor<float, 3> t(2, 3, 4);
  std::iota(t.data(), t.data() + t.size(), 0.0f);
  auto v = spruce::make_view(t);
  static_assert(std::is_same_v<decltype(v), spruce::strided_view<float, 3>>);
  CHECK(v.data_handle() == t.data());
  CHECK(v.shape() == std::array<std::size_t, 3>{2, 3, 4});
  CHECK(v.stride(0) == 1);
  CHECK(v.stride(1) == 2);
  CHECK(v.stride(2) == 6);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) CHECK(v(i, j, k) == t(i, j, k));
  CHECK(v(1, 2, 3) == 23.0f);
  v(1, 0, 2) = -4.0f;
  CHECK(t(1, 0, 2) == -4.0f);
  t(0, 2, 1) = 8.5f;
  CHECK(v(0, 2, 1) == 8.5f);

  spruce::tensor_ref<const float> r = v;
  CHECK(r.rank() == 3);
  CHECK_FALSE(r.is_contiguous());
}

TEST_CASE("eigen: row-major 4-D tensors are row-major views") {
  Eigen::Tensor<double, 4, Eigen::RowMajor> t(3, 2, 2, 5);
  std::iota(t.data(), t.data() + t.size(), 0.0);
  auto v = spruce::make_view(t);
  static_assert(std::is_same_v<decltype(v), spruce::view<double, 4>>);
  CHECK(v.data_handle() == t.data());
  CHECK(v.shape() == std::array<std::size_t, 4>{3, 2, 2, 5});
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 2; ++c)
        for (int d = 0; d < 5; ++d) CHECK(v(a, b, c, d) == t(a, b, c, d));
  v(2, 1, 0, 4) = 0.25;
  CHECK(t(2, 1, 0, 4) == 0.25);

  spruce::tensor_ref<const double> r = v;
  CHECK(r.is_contiguous());
  CHECK(r.size() == 60);
}

TEST_CASE("eigen: 4-D column-major tensor, tensor maps, fixed-size and const tensors") {
  Eigen::Tensor<float, 4> t4(2, 3, 1, 2);
  std::iota(t4.data(), t4.data() + t4.size(), 0.0f);
  auto v4 = spruce::make_view(t4);
  CHECK(v4.stride(3) == 6);
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int d = 0; d < 2; ++d) CHECK(v4(a, b, 0, d) == t4(a, b, 0, d));

  std::vector<float> buf(24);
  std::iota(buf.begin(), buf.end(), 0.0f);
  Eigen::TensorMap<Eigen::Tensor<float, 3>> map(buf.data(), 4, 3, 2);
  auto vm = spruce::make_view(map);
  static_assert(std::is_same_v<decltype(vm), spruce::strided_view<float, 3>>);
  CHECK(vm.data_handle() == buf.data());
  CHECK(vm.stride(2) == 12);
  CHECK(vm(3, 2, 1) == map(3, 2, 1));
  CHECK(vm(3, 2, 1) == 23.0f);
  vm(1, 1, 1) = 100.0f;
  CHECK(buf[1 + 4 + 12] == 100.0f);

  Eigen::TensorMap<Eigen::Tensor<float, 2, Eigen::RowMajor>> rmap(buf.data(), 6, 4);
  auto vr = spruce::make_view(rmap);
  static_assert(std::is_same_v<decltype(vr), spruce::view<float, 2>>);
  CHECK(vr(5, 3) == 23.0f);

  // A temporary map binds: it only points into the buffer.
  CHECK(spruce::make_view(Eigen::TensorMap<Eigen::Tensor<float, 1>>(buf.data(), 24))(23) == 23.0f);

  Eigen::TensorFixedSize<int, Eigen::Sizes<2, 3, 4>> f;
  std::iota(f.data(), f.data() + f.size(), 0);
  auto vf = spruce::make_view(f);
  static_assert(std::is_same_v<decltype(vf), spruce::strided_view<int, 3>>);
  CHECK(vf.shape() == std::array<std::size_t, 3>{2, 3, 4});
  CHECK(vf(1, 2, 3) == f(1, 2, 3));

  const Eigen::Tensor<float, 4>& ct = t4;
  auto vc = spruce::make_view(ct);
  static_assert(std::is_same_v<decltype(vc), spruce::strided_view<const float, 4>>);
  CHECK(vc.data_handle() == t4.data());
  CHECK(vc(1, 2, 0, 1) == t4(1, 2, 0, 1));

  // A const TensorMap hands out a mutable pointer in Eigen; spruce keeps the constness.
  const Eigen::TensorMap<Eigen::Tensor<float, 3>> cmap(buf.data(), 4, 3, 2);
  static_assert(std::is_same_v<decltype(spruce::make_view(cmap)),
                               spruce::strided_view<const float, 3>>);
  Eigen::TensorMap<const Eigen::Tensor<float, 3>> const_data(buf.data(), 4, 3, 2);
  auto vcd = spruce::make_view(const_data);
  static_assert(std::is_same_v<decltype(vcd), spruce::strided_view<const float, 3>>);
  CHECK(vcd(3, 2, 1) == 23.0f);
}

TEST_CASE("eigen: temporaries that own their memory do not bind") {
  static_assert(viewable<Eigen::MatrixXf&>);
  static_assert(viewable<const Eigen::MatrixXf&>);
  static_assert(!viewable<Eigen::MatrixXf>);
  static_assert(!viewable<const Eigen::MatrixXf>);
  static_assert(!viewable<Eigen::ArrayXXd>);
  static_assert(!viewable<Eigen::Ref<Eigen::MatrixXf>>);
  static_assert(!viewable<Eigen::Tensor<float, 3>>);
  static_assert(viewable<Eigen::Tensor<float, 3>&>);
  static_assert(viewable<Eigen::Map<Eigen::MatrixXf>>);
  static_assert(viewable<Eigen::Block<Eigen::MatrixXf>>);
  static_assert(viewable<Eigen::TensorMap<Eigen::Tensor<float, 2>>>);
  // Expressions without storage are not views of anything.
  static_assert(!viewable<decltype(Eigen::MatrixXf() * 2.0f)>);
  CHECK(true);
}
