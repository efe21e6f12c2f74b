// choose_execution: the decision follows the measured times (controlled here with dense
// stand-ins that are made slow or instant), and bad input is refused.
#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "spruce/eigen.hpp"
#include "spruce/sparse/choose.hpp"
#include "user_format.hpp"

using namespace spruce;

namespace {

struct fixture {
  std::vector<float> w;
  std::vector<std::uint8_t> keep;
  std::array<std::size_t, 2> shape{24, 40};
  fixture() : w(24 * 40), keep(24 * 40) {
    std::mt19937 rng(4);
    std::normal_distribution<float> g;
    for (std::size_t i = 0; i < w.size(); ++i) {
      w[i] = g(rng);
      keep[i] = g(rng) > 0.85f;  // about 80% pruned, no structure
    }
  }
  tensor_ref<const float> view() const { return {w.data(), shape}; }
  spruce::mask m() const { return spruce::mask(shape, byte_buffer(keep.begin(), keep.end())); }
};

}  // namespace

TEST_CASE("choose_execution picks what measured fastest") {
  const fixture f;
  const auto slow_dense = [](const tensor_ref<const float>&, const tensor_ref<const float>&, const tensor_ref<float>&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  const auto instant_dense = [](const tensor_ref<const float>&, const tensor_ref<const float>&, const tensor_ref<float>&) {};
  const auto slow = sparse::choose_execution(f.view(), f.m(), 16, slow_dense);
  CHECK(slow.format == "csr");
  CHECK(slow.use_sparse());
  CHECK(slow.speedup() > 1.0);
  REQUIRE(slow.timings.size() == 2);
  CHECK(slow.timings[0].first == "dense");
  CHECK(slow.timings[0].second >= 0.02);
  const auto fast = sparse::choose_execution(f.view(), f.m(), 16, instant_dense);
  CHECK(fast.format == "dense");
  CHECK_FALSE(fast.use_sparse());
  // Hysteresis: sparse must beat dense by min_speedup to be chosen.
  sparse::choose_options picky;
  picky.min_speedup = 1e9;
  CHECK(sparse::choose_execution(f.view(), f.m(), 16, slow_dense, picky).format == "dense");
}

TEST_CASE("choose_execution with Eigen's GEMM as the dense path runs every candidate") {
  const fixture f;
  auto cands = sparse::default_candidates(f.view(), f.m());
  int calls = 0;
  cands.push_back({"mine", [&](const tensor_ref<const float>&, const tensor_ref<float>&) { ++calls; }});
  const auto choice = sparse::choose_execution(f.view(), f.m(), 64, eigen_gemm{}, cands);
  CHECK(calls == 2);  // warm-up + one timed run
  CHECK(choice.timings.size() == 3);
  CHECK(choice.format == "mine");  // doing nothing is fastest
}

TEST_CASE("choose_execution refuses bad input") {
  const fixture f;
  const auto dense = [](const tensor_ref<const float>&, const tensor_ref<const float>&, const tensor_ref<float>&) {};
  const std::array<std::size_t, 2> s25{2, 5};
  const spruce::mask other(s25);
  CHECK_THROWS_WITH_AS(sparse::choose_execution(f.view(), other, 8, dense), doctest::Contains("weight's own mask"), spruce::error);
  CHECK_THROWS_WITH_AS(sparse::choose_execution(f.view(), f.m(), 0, dense), doctest::Contains("columns is 0"), spruce::error);
  std::vector<float> flat(8);
  const std::array<std::size_t, 1> s1{8};
  CHECK_THROWS_AS(sparse::choose_execution(tensor_ref<const float>(flat.data(), s1), spruce::mask(s1), 4, dense),
                  spruce::error);
}

TEST_CASE("default candidates follow the mask's structure and all compute the same product") {
  const std::array<std::size_t, 2> shape{16, 32};
  std::vector<float> w(16 * 32);
  std::mt19937 rng(8);
  std::normal_distribution<float> g;
  for (auto& x : w) x = g(rng);
  const auto names = [&](const byte_buffer& bytes) {
    const spruce::mask keep(shape, bytes);
    const tensor_ref<const float> wv(w.data(), shape);
    auto cands = sparse::default_candidates(wv, keep);
    // Every candidate multiplies the pruned weight.
    std::vector<float> pruned(w.size()), b(32 * 5), want(16 * 5), got(16 * 5);
    for (std::size_t i = 0; i < w.size(); ++i) pruned[i] = bytes[i] ? w[i] : 0.0f;
    for (auto& x : b) x = g(rng);
    const std::array<std::size_t, 2> sb{32, 5}, sc{16, 5};
    eigen_gemm{}(tensor_ref<const float>(pruned.data(), shape), tensor_ref<const float>(b.data(), sb), tensor_ref<float>(want.data(), sc));
    std::vector<std::string> out;
    for (auto& c : cands) {
      c.run(tensor_ref<const float>(b.data(), sb), tensor_ref<float>(got.data(), sc));
      for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= 1e-4f * std::max(1.0f, std::abs(want[i])));
      out.push_back(c.name);
    }
    return out;
  };
  byte_buffer two_four(w.size()), blocks(w.size()), scattered(w.size());
  for (std::size_t i = 0; i < 16; ++i)
    for (std::size_t j = 0; j < 32; ++j) {
      two_four[i * 32 + j] = (j % 4 == i % 4) || (j % 4 == (i + 1) % 4);
      blocks[i * 32 + j] = ((i / 4) + (j / 4)) % 3 == 0;  // whole 4 x 4 blocks
      scattered[i * 32 + j] = g(rng) > 0.0f;  // half kept at random: some group of 4 keeps 3
    }
  using v = std::vector<std::string>;
  CHECK(names(two_four) == v{"csr", "n:m 2:4"});
  CHECK(names(blocks) == v{"csr", "bsr 1x4", "bsr 4x1", "bsr 4x4"});
  CHECK(names(scattered) == v{"csr"});
}

TEST_CASE("a user's sparse format competes in choose_execution") {
  const fixture f;
  // make_candidate builds any sparse_format; its product is checked against CSR's.
  auto cands = sparse::default_candidates(f.view(), f.m());
  cands.push_back(sparse::make_candidate<user::coo_matrix<float>>("coo", f.view(), f.m()));
  REQUIRE(cands.size() == 2);
  std::vector<float> b(40 * 7), want(24 * 7), got(24 * 7, std::nanf(""));
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  for (auto& x : b) x = g(rng);
  const std::array<std::size_t, 2> sb{40, 7}, sc{24, 7};
  cands[0].run(tensor_ref<const float>(b.data(), sb), tensor_ref<float>(want.data(), sc));
  cands[1].run(tensor_ref<const float>(b.data(), sb), tensor_ref<float>(got.data(), sc));
  for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - want[i]) <= 1e-5f * std::max(1.0f, std::abs(want[i])));
  const auto slow_dense = [](const tensor_ref<const float>&, const tensor_ref<const float>&, const tensor_ref<float>&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  };
  const auto choice = sparse::choose_execution_with<user::coo_matrix<float>>("coo", f.view(), f.m(), 16, slow_dense);
  REQUIRE(choice.timings.size() == 3);
  CHECK(choice.timings[2].first == "coo");
  CHECK(choice.use_sparse());
  // Any host view goes in: a compile-time tensor_view of the weight.
  const auto view = make_view(static_cast<const float*>(f.w.data()), 24, 40);
  CHECK(sparse::choose_execution(view, f.m(), 16, slow_dense).use_sparse());
}
