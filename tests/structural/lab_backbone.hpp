#pragma once
// The MIT lab backbone of channel_pruning.json as owned buffers, shared by the structural
// tests (hand-built channel groups; the graph tests compare their derived groups to these).

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "spruce/spruce.hpp"
#include "support/fixtures.hpp"

namespace structural_test {

using namespace spruce;
namespace fx = spruce_test;

/// The fixture's backbone as owned buffers: conv weights and BN vectors, with shapes that
/// shrink as channels are removed (the buffers keep their size; views shrink).
struct backbone {
  struct conv {
    std::vector<std::size_t> shape;
    std::vector<float> w;
  };
  struct bn {
    std::vector<std::size_t> shape;
    std::vector<float> gamma, beta, mean, var;
  };
  std::vector<conv> convs;
  std::vector<bn> bns;

  explicit backbone(const nlohmann::json& layers) {
    for (const auto& l : layers) {
      if (l["kind"] == "conv") convs.push_back({fx::shape(l["shape"]), fx::values(l["weight"])});
      else bns.push_back({fx::shape(l["shape"]), fx::values(l["weight"]), fx::values(l["bias"]),
                          fx::values(l["running_mean"]), fx::values(l["running_var"])});
    }
  }

  /// Channel group i: conv i's outputs, BN i, conv i+1's inputs.
  structural::channel_group<float> group(std::size_t i) {
    auto& a = convs[i];
    auto& b = bns[i];
    auto& n = convs[i + 1];
    return structural::channel_group<float>(
        "group" + std::to_string(i),
        {{"conv", tensor_ref<float>(a.w.data(), a.shape), 0},
         {"bn.weight", tensor_ref<float>(b.gamma.data(), b.shape), 0},
         {"bn.bias", tensor_ref<float>(b.beta.data(), b.shape), 0},
         {"bn.running_mean", tensor_ref<float>(b.mean.data(), b.shape), 0},
         {"bn.running_var", tensor_ref<float>(b.var.data(), b.shape), 0},
         {"next", tensor_ref<float>(n.w.data(), n.shape), 1}});
  }

  /// Records the group's new shapes after a prune.
  void adopt(std::size_t i, const structural::channel_group<float>& g) {
    const auto sh = [](const tensor_ref<float>& v) { return std::vector<std::size_t>(v.shape().begin(), v.shape().end()); };
    convs[i].shape = sh(g.view("conv"));
    bns[i].shape = sh(g.view("bn.weight"));
    convs[i + 1].shape = sh(g.view("next"));
  }

  void sort_group(std::size_t i) {
    auto g = group(i);
    const auto imp = g.importance(criterion::l2{}, "next");
    g.sort_by(imp);
  }
  void prune_group(std::size_t i, double ratio) {
    auto g = group(i);
    g.keep_first(structural::keep_rule{}.keep(ratio, g.channels()));
    adopt(i, g);
  }

  void check(const nlohmann::json& want) const {
    std::size_t c = 0, b = 0;
    for (const auto& l : want) {
      if (l["kind"] == "conv") {
        const auto& cv = convs[c++];
        CHECK(cv.shape == fx::shape(l["shape"]));
        const auto v = fx::values(l["weight"]);
        CHECK(std::equal(v.begin(), v.end(), cv.w.begin()));
      } else {
        const auto& bn = bns[b++];
        CHECK(bn.shape == fx::shape(l["shape"]));
        for (const char* k : {"weight", "bias", "running_mean", "running_var"}) {
          const auto v = fx::values(l[k]);
          const auto& have = std::string(k) == "weight" ? bn.gamma : std::string(k) == "bias" ? bn.beta
                             : std::string(k) == "running_mean" ? bn.mean : bn.var;
          CAPTURE(k);
          CHECK(std::equal(v.begin(), v.end(), have.begin()));
        }
      }
    }
  }
};

inline double ratio_of(const nlohmann::json& r, std::size_t i) { return r.is_array() ? r[i].get<double>() : r.get<double>(); }

}  // namespace structural_test
