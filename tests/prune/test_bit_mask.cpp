// Bit-packed keep masks: packing round trips, applying them exactly as byte masks do
// (contiguous, strided, serial and parallel), the registry in bit storage, and bad input.
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "spruce/core/config.hpp"
#include "spruce/prune/bit_mask.hpp"
#include "spruce/prune/masked_parameters.hpp"
#include "spruce/spruce.hpp"

#if SPRUCE_HAS_OPENMP
#include <omp.h>
#endif

using namespace spruce;

namespace {

/// A mask of `shape` made of runs of random length that are all kept, all pruned or
/// random, so that every word kind (all-ones, all-zero, mixed) and run boundaries
/// anywhere inside a word occur.
mask random_mask(std::span<const std::size_t> shape, std::uint32_t seed) {
  std::size_t n = shape.empty() ? 0 : 1;
  for (std::size_t e : shape) n *= e;
  std::mt19937 rng(seed);
  byte_buffer bytes(n);
  for (std::size_t i = 0; i < n;) {
    const std::size_t len = std::min<std::size_t>(n - i, 1 + rng() % 300);
    const unsigned kind = rng() % 3;
    for (std::size_t j = 0; j < len; ++j, ++i)
      bytes[i] = kind == 2 ? static_cast<std::uint8_t>(rng() & 1u) : static_cast<std::uint8_t>(kind);
  }
  return mask(shape, std::move(bytes));
}

template <class T>
std::vector<T> random_values(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<T> g;
  std::vector<T> v(n);
  for (T& x : v) x = g(rng);
  return v;
}

/// Bitwise equality: +0 and -0 differ, as they must (pruned weights become +0).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// Runs `f` once per thread count, restoring the default afterwards; without OpenMP, once.
template <class F>
void for_thread_counts(F&& f) {
#if SPRUCE_HAS_OPENMP
  const int saved = omp_get_max_threads();
  for (int t : {1, 2, 3, 5, 7}) {
    omp_set_num_threads(t);
    CAPTURE(t);
    f();
  }
  omp_set_num_threads(saved);
#else
  f();
#endif
}

}  // namespace

TEST_CASE("pack and unpack round trip, with counts and bit positions") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{64},
                        std::size_t{65}, std::size_t{1000}, std::size_t{100003}}) {
    CAPTURE(n);
    const std::array<std::size_t, 1> shape{n};
    const mask m = random_mask(shape, static_cast<std::uint32_t>(n + 1));
    const bit_mask b(m);
    CHECK(std::ranges::equal(b.shape(), m.shape()));
    CHECK(b.size() == n);
    CHECK(b.words().size() == (n + 63) / 64);
    CHECK(b.count_kept() == m.count_kept());
    CHECK(b.count_pruned() == m.count_pruned());
    CHECK(b.sparsity() == m.sparsity());
    CHECK(b.to_bytes() == m);
    for_thread_counts([&] { REQUIRE(bit_mask(m) == b); REQUIRE(b.to_bytes() == m); });
    for (std::size_t i = 0; i < n; ++i) REQUIRE(b.test(i) == (m.data()[i] == 1));
    for (std::size_t i = 0; i < n; ++i)
      REQUIRE(((b.words()[i / 64] >> (i % 64)) & 1u) == m.data()[i]);  // bit i of word i/64
    if (n % 64 != 0) CHECK((b.words().back() >> (n % 64)) == 0);  // tail bits zero
    CHECK(bit_mask(shape, std::vector<std::uint64_t>(b.words().begin(), b.words().end())) == b);
  }
  // Multi-dimensional shapes survive, and shape is part of equality.
  const std::array<std::size_t, 3> s3{5, 7, 11}, s3t{11, 7, 5};
  const mask m3 = random_mask(s3, 9);
  CHECK(bit_mask(m3).to_bytes() == m3);
  CHECK(bit_mask(m3) != bit_mask(mask(s3t, byte_buffer(m3.bytes().begin(), m3.bytes().end()))));
  // Filled masks.
  const std::array<std::size_t, 2> s{3, 43};
  CHECK(bit_mask(s).count_kept() == 129);
  CHECK(bit_mask(s) == bit_mask(mask(s, 1)));
  CHECK(bit_mask(s, false) == bit_mask(mask(s, 0)));
  CHECK(bit_mask(s, false).sparsity() == 1.0);
  CHECK(bit_mask().empty());
  CHECK(bit_mask().sparsity() == 0.0);
  CHECK(bit_mask(m3).words().size_bytes() * 8 >= m3.size());  // an eighth of the bytes, rounded up to words
}

TEST_CASE_TEMPLATE("applying a bit mask equals applying its byte mask, contiguous", T, float, double) {
  // Sizes straddle the parallel threshold (32768) and are not multiples of 64.
  for (std::size_t n : {std::size_t{1}, std::size_t{100}, std::size_t{4096}, std::size_t{32769},
                        std::size_t{100003}}) {
    CAPTURE(n);
    const std::array<std::size_t, 1> shape{n};
    const mask m = random_mask(shape, static_cast<std::uint32_t>(n));
    const bit_mask b(m);
    const auto w0 = random_values<T>(n, 7);
    for_thread_counts([&] {
      auto with_bytes = w0, with_bits = w0;
      apply_mask(make_view(with_bytes), m);
      apply_mask(make_view(with_bits), b);
      REQUIRE(same_bits(with_bits, with_bytes));
      for (std::size_t i = 0; i < n; ++i) REQUIRE((with_bits[i] == T(0)) == (m.data()[i] == 0));
    });
  }
  // All kept changes nothing; all pruned leaves +0 everywhere (not -0).
  const std::array<std::size_t, 2> shape{130, 257};
  auto w = random_values<T>(130 * 257, 3);
  const auto w0 = w;
  apply_mask(make_view(w, 130, 257), bit_mask(shape));
  CHECK(same_bits(w, w0));
  apply_mask(make_view(w, 130, 257), bit_mask(shape, false));
  CHECK(same_bits(w, std::vector<T>(w.size(), T(0))));
}

TEST_CASE_TEMPLATE("applying a bit mask equals applying its byte mask, strided", T, float, double) {
  // A transposed view [cols, rows] of a row-major [rows, cols] buffer; 181 * 199 = 36019
  // elements, over the parallel threshold, so chunks split rows and words mid-run.
  for (std::size_t rows : {std::size_t{3}, std::size_t{181}}) {
    const std::size_t cols = 199;
    CAPTURE(rows);
    const std::array<std::size_t, 2> shape{cols, rows}, strides{1, cols};
    const mask m = random_mask(shape, static_cast<std::uint32_t>(rows));
    const bit_mask b(m);
    const auto buf0 = random_values<T>(rows * cols, 11);
    for_thread_counts([&] {
      auto with_bytes = buf0, with_bits = buf0;
      apply_mask(make_strided_view(with_bytes.data(), shape, strides), m);
      apply_mask(make_strided_view(with_bits.data(), shape, strides), b);
      REQUIRE(same_bits(with_bits, with_bytes));
      for (std::size_t a = 0; a < cols; ++a)
        for (std::size_t r = 0; r < rows; ++r)
          REQUIRE(with_bits[r * cols + a] == (m.data()[a * rows + r] ? buf0[r * cols + a] : T(0)));
    });
  }
  // Every other element of a buffer, through a run-time-shape ref: the gaps are untouched.
  const std::size_t n = 40000;
  const std::array<std::size_t, 1> shape{n}, stride{2};
  const mask m = random_mask(shape, 5);
  auto buf = random_values<T>(2 * n, 13);
  const auto buf0 = buf;
  apply_mask(tensor_ref<T>(buf.data(), shape, stride), bit_mask(m), "w");
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(buf[2 * i] == (m.data()[i] ? buf0[2 * i] : T(0)));
    REQUIRE(buf[2 * i + 1] == buf0[2 * i + 1]);
  }
}

TEST_CASE("a bit mask of another shape is an error and nothing is written") {
  std::vector<float> w(6, 1.0f);
  const std::array<std::size_t, 2> s23{2, 3}, s32{3, 2};
  CHECK_THROWS_WITH_AS(apply_mask(make_view(w, 2, 3), bit_mask(s32, false), "fc.weight"),
                       doctest::Contains("does not match tensor 'fc.weight' of shape [2, 3]"), spruce::error);
  CHECK_THROWS_AS(apply_mask(make_view(w), bit_mask(s23, false)), spruce::error);
  CHECK(w == std::vector<float>(6, 1.0f));
  // Words that cannot belong to the shape, and out-of-range bits.
  CHECK_THROWS_WITH_AS(bit_mask(s23, std::vector<std::uint64_t>(2, 0)), doctest::Contains("needs 1"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(bit_mask(s23, std::vector<std::uint64_t>{1u << 6}),
                       doctest::Contains("tail bits"), spruce::error);
  CHECK(bit_mask(s23, std::vector<std::uint64_t>{0x3f}) == bit_mask(s23));
  CHECK_THROWS_WITH_AS((void)bit_mask(s23).test(6), doctest::Contains("out of range"), spruce::error);
}

TEST_CASE("a bit registry re-applies, zeroes gradients and makes permanent exactly as a byte one") {
  std::mt19937 rng(17);
  const std::array<std::size_t, 4> conv_shape{64, 32, 3, 3};  // 18432 elements
  const std::array<std::size_t, 2> fc_shape{300, 211};        // 63300: the parallel path
  const mask conv_mask = random_mask(conv_shape, 1), fc_mask = random_mask(fc_shape, 2);
  const auto conv0 = random_values<float>(64 * 32 * 9, 3), fc0 = random_values<float>(300 * 211, 4);

  auto build = [&]<class M>(M) {
    struct model {
      std::vector<float> conv, fc, gconv, gfc;
      masked_parameters<float, M> reg;
    } m{conv0, fc0, std::vector<float>(conv0.size(), 1.0f), std::vector<float>(fc0.size(), -1.0f), {}};
    m.reg.add("conv0.weight", make_view(m.conv, 64, 32, 3, 3), conv_mask);
    m.reg.add("fc.weight", make_view(m.fc, 300, 211), bit_mask(fc_mask));  // either kind goes in
    return m;
  };
  auto bytes = build(mask{});
  auto bits = build(bit_mask{});
  static_assert(std::is_same_v<decltype(bits.reg)::mask_type, bit_mask>);
  static_assert(std::is_same_v<decltype(bytes.reg)::mask_type, mask>);

  // The stored masks are the ones given, in either storage.
  CHECK(bits.reg.at("conv0.weight") == bit_mask(conv_mask));
  CHECK(bits.reg.keep_mask("fc.weight") == fc_mask);
  CHECK(bytes.reg.keep_mask("fc.weight") == fc_mask);
  CHECK(bytes.reg.at("fc.weight") == fc_mask);
  CHECK(bits.reg.find("fc.bias") == nullptr);
  CHECK(bits.reg.contains("fc.weight"));
  CHECK_FALSE(bits.reg.contains("fc.bias"));
  for (const auto& e : bits.reg.entries())
    CHECK(e.keep.words().size_bytes() * 8 < e.view.size() + 512);  // an eighth, rounded to words

  auto step = [&](auto& m) {
    m.reg.apply();
    // A simulated optimizer step moves every weight, pruned ones included.
    for (float& x : m.conv) x += 0.125f;
    for (float& x : m.fc) x -= 0.25f;
    m.reg.apply();
    const std::vector<named_tensor<float>> grads{{"fc.weight", make_view(m.gfc, 300, 211)},
                                                 {"conv0.weight", make_view(m.gconv, 64, 32, 3, 3)}};
    m.reg.apply_to_gradients(grads);
  };
  step(bytes);
  step(bits);
  CHECK(same_bits(bits.conv, bytes.conv));
  CHECK(same_bits(bits.fc, bytes.fc));
  CHECK(same_bits(bits.gconv, bytes.gconv));
  CHECK(same_bits(bits.gfc, bytes.gfc));
  for (std::size_t i = 0; i < fc0.size(); ++i) {
    REQUIRE((bits.fc[i] == 0.0f) == (fc_mask.data()[i] == 0));
    REQUIRE(bits.gfc[i] == (fc_mask.data()[i] ? -1.0f : 0.0f));
  }
  CHECK(count_nonzero(make_view(bits.gconv)) == conv_mask.count_kept());

  // Converting storage keeps the masks; converting back is lossless.
  const masked_parameters<float, bit_mask> moved = bytes.reg.with_storage<bit_mask>();
  CHECK(moved.at("conv0.weight") == bits.reg.at("conv0.weight"));
  CHECK(moved.with_storage<mask>().at("conv0.weight") == conv_mask);

  auto finish = [&](auto& m) {
    for (float& x : m.fc) x += 1.0f;
    m.reg.make_permanent();
    CHECK(m.reg.empty());
  };
  finish(bytes);
  finish(bits);
  CHECK(same_bits(bits.fc, bytes.fc));
  CHECK(count_nonzero(make_view(bits.fc)) <= fc_mask.count_kept());
}

TEST_CASE("a bit registry reports bad input and changes nothing") {
  std::vector<float> w{1, 2, 3, 4, 5, 6}, g(6, 1.0f);
  const std::array<std::size_t, 2> s23{2, 3}, s32{3, 2};
  masked_parameters<float, bit_mask> reg;
  CHECK_THROWS_WITH_AS(reg.add("w", make_view(w, 2, 3), mask(s32, 0)), doctest::Contains("does not match"),
                       spruce::error);
  CHECK(reg.empty());
  const mask m = random_mask(s23, 3);
  reg.add("w", make_view(w, 2, 3), m);
  CHECK_THROWS_WITH_AS(reg.add("w", make_view(w, 2, 3), bit_mask(m)), doctest::Contains("already registered"),
                       spruce::error);
  CHECK(reg.size() == 1);

  // Unknown names.
  CHECK_THROWS_WITH_AS((void)reg.at("v"), doctest::Contains("'v' has no mask"), spruce::error);
  CHECK(reg.find("v") == nullptr);
  CHECK_THROWS_WITH_AS((void)reg.keep_mask("v"), doctest::Contains("'v' has no mask"), spruce::error);
  const std::vector<named_tensor<float>> unknown{{"v", make_view(g, 2, 3)}};
  CHECK_THROWS_WITH_AS(reg.apply_to_gradients(unknown), doctest::Contains("no registered mask"), spruce::error);

  // The storage is the type's: a bit registry hands out packed masks only.
  static_assert(std::is_same_v<decltype(reg.at("w")), const bit_mask&>);
  CHECK(reg.at("w") == bit_mask(m));

  // A gradient of another shape: all are checked before any is written.
  std::vector<float> g2(6, 1.0f);
  const std::vector<named_tensor<float>> grads{{"w", make_view(g, 2, 3)}, {"w", make_view(g2, 3, 2)}};
  CHECK_THROWS_WITH_AS(reg.apply_to_gradients(grads), doctest::Contains("does not match"), spruce::error);
  CHECK(g == std::vector<float>(6, 1.0f));
  CHECK(w == std::vector<float>{1, 2, 3, 4, 5, 6});
}
