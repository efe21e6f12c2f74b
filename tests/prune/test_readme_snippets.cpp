// The README's quick-start snippets, compiled and run: if the documented API changes, this
// file stops compiling (or a check fails) before the README misleads anyone.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "spruce/spruce.hpp"

TEST_CASE("README quick start: run-time N:M, scores without a rule, Wanda per row, ranges") {
  using namespace spruce;
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> conv(128 * 64 * 3 * 3), fc(10 * 512), activations(32 * 512);
  for (float& x : conv) x = g(rng);
  for (float& x : fc) x = g(rng);
  for (float& x : activations) x = g(rng);
  const std::size_t tokens = 32;

  mask m24 = n_m_prune(make_view(conv.data(), 128, 64, 3, 3), granularity::n_m_pattern{2, 4}, "conv1.weight");
  CHECK(m24.count_pruned() == conv.size() / 2);

  std::vector<float> s = spruce::scores(granularity::filter{}, criterion::l2{}, make_view(conv.data(), 128, 64, 3, 3));
  CHECK(s.size() == 128);

  criterion::activation_norm_accumulator<float> acc(512);
  acc.add(make_view(activations.data(), tokens, 512));
  criterion::inputs<float, criterion::activation_norms<float>> in{.weight = make_view(fc.data(), 10, 512),
                                                                 .extra = acc.extra()};
  mask w = per_row_mask(criterion::wanda{}, selection::exact(0.5), in, "classifier.weight");
  CHECK(w.count_pruned() == 10 * 256);

  std::vector<named_tensor<float>> params = {{"backbone.conv1.weight", make_view(conv.data(), 128, 64, 3, 3)},
                                             {"classifier.weight", make_view(fc.data(), 10, 512)}};
  auto reg = global_prune(pruner<granularity::element, criterion::l1, selection::exact>{{}, {}, selection::exact(0.8)},
                          params, sparsity_limits{0.0, 0.95});
  CHECK(reg.size() == 2);
  auto sched = schedule::agp(0.0, 0.8, 0, 1000, 100);
  const pruner<granularity::element, criterion::l1, selection::threshold> p{};
  CHECK(prune_at_step(sched, 100, p, params).has_value());
  CHECK_FALSE(prune_at_step(sched, 150, p, params).has_value());
}
