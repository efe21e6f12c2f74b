// The lab's full-width VGG (channels 64, 128, 256, 256, 512, 512, 512, 512; 3x3 convs,
// BN + ReLU, pools after every second conv) on 32x32x3 input, the lab's CIFAR-10 setting,
// at batch 1 and 16: dense inference against
//   vgg_channel30: every conv but the last with 30% of its channels removed (physically
//                  smaller; the lab measured 1.8x);
//   vgg_fine_lab:  a lab-style fine-grained table (conv0 0.4, conv1..7 0.85/0.8/0.8/0.75/
//                  0.8/0.8/0.85, about 20% of the weights left), each conv executed in the
//                  format spruce::sparse::choose_execution picks for it;
//   vgg_fine90:    90% of every conv's weights pruned, executed the same way.
// The candidate of each family is `spruce`, the baseline `dense` (bench/ratio_table.py).
// Weights are He-normal (fixed seed), pruned by magnitude; the run uses the machine's
// threads (two on the 2-core reference machine; OMP_NUM_THREADS / SPRUCE_NUM_THREADS set
// them). Dense and sparse share one im2col and one BN/ReLU/pool epilogue (lab/infer.hpp),
// so the ratio is the convolutions' own.

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <spruce/prune/magnitude.hpp>
#include <spruce/selection/threshold.hpp>

#include "lab/infer.hpp"

namespace {

constexpr std::size_t lab_channels[8] = {64, 128, 256, 256, 512, 512, 512, 512};

struct weights {
  std::vector<std::vector<float>> conv;  // [out, in, 3, 3] each
  std::vector<std::size_t> channels;
};

weights make_weights(const std::vector<std::size_t>& channels) {
  std::mt19937_64 rng(11);
  weights w;
  w.channels = channels;
  std::size_t in = 3;
  for (std::size_t c : channels) {
    std::normal_distribution<float> he(0.0f, std::sqrt(2.0f / static_cast<float>(in * 9)));
    std::vector<float> v(c * in * 9);
    for (float& x : v) x = he(rng);
    w.conv.push_back(std::move(v));
    in = c;
  }
  return w;
}

/// The network with per-conv sparsities (0: dense, no mask); sparse layers choose their
/// format for `batch` images.
std::unique_ptr<lab::infer::network> build(const weights& w, const std::vector<double>& sparsity, std::size_t batch) {
  auto net = std::make_unique<lab::infer::network>();
  std::size_t in = 3;
  for (std::size_t i = 0; i < w.conv.size(); ++i) {
    const std::size_t out = w.channels[i];
    std::vector<float> v = w.conv[i];
    std::optional<spruce::mask> keep;
    if (sparsity[i] > 0) {
      const std::size_t shape[2] = {out, in * 9};
      const spruce::tensor_ref<float> view(v.data(), std::span<const std::size_t>(shape, 2));
      keep = spruce::magnitude_prune(view, spruce::selection::threshold{sparsity[i]});
    }
    const std::vector<float> ones(out, 1.0f), zeros(out, 0.0f);
    net->add_conv(v, out, in, {ones, zeros, zeros, ones}, i % 2 == 1);
    if (keep) net->set_mask(i, *keep);
    in = out;
  }
  std::mt19937_64 rng(5);
  std::normal_distribution<float> g(0.0f, 0.05f);
  std::vector<float> fc(10 * in), bias(10, 0.0f);
  for (float& x : fc) x = g(rng);
  net->set_classifier(fc, bias);
  net->choose(batch, 32, 32, 5, 1.05);
  return net;
}

void run(benchmark::State& st, const lab::infer::network& net, std::size_t batch) {
  std::mt19937_64 rng(3);
  std::normal_distribution<float> g;
  std::vector<float> images(batch * 3 * 32 * 32);
  for (float& x : images) x = g(rng);
  lab::infer::workspace ws;
  std::vector<float> logits;
  net.forward(images, batch, 32, 32, logits, ws);
  for (auto _ : st) {
    net.forward(images, batch, 32, 32, logits, ws);
    benchmark::DoNotOptimize(logits.data());
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * batch));
  std::string formats;
  for (const auto& b : net.blocks()) {
    if (!formats.empty()) formats += ',';
    formats += b.format;
  }
  st.SetLabel(formats);
}

void register_all() {
  static const weights dense_w = make_weights({std::begin(lab_channels), std::end(lab_channels)});
  std::vector<std::size_t> pruned;
  for (std::size_t i = 0; i < 8; ++i)
    pruned.push_back(i == 7 ? lab_channels[i]
                            : static_cast<std::size_t>(std::nearbyint(0.7 * static_cast<double>(lab_channels[i]))));
  static const weights channel_w = make_weights(pruned);
  const std::vector<double> none(8, 0.0), lab_table = {0.4, 0.85, 0.8, 0.8, 0.75, 0.8, 0.8, 0.85}, ninety(8, 0.9);
  static std::vector<std::unique_ptr<lab::infer::network>> keep_alive;
  for (std::size_t batch : {std::size_t{1}, std::size_t{16}}) {
    std::string size = "b";
    size += std::to_string(batch);
    keep_alive.push_back(build(dense_w, none, batch));
    const lab::infer::network* dense = keep_alive.back().get();
    keep_alive.push_back(build(channel_w, none, batch));
    const lab::infer::network* channel = keep_alive.back().get();
    keep_alive.push_back(build(dense_w, lab_table, batch));
    const lab::infer::network* fine = keep_alive.back().get();
    keep_alive.push_back(build(dense_w, ninety, batch));
    const lab::infer::network* fine90 = keep_alive.back().get();
    const std::map<std::string, const lab::infer::network*> candidates = {
        {"vgg_channel30", channel}, {"vgg_fine_lab", fine}, {"vgg_fine90", fine90}};
    for (const auto& [family, net] : candidates) {
      benchmark::RegisterBenchmark((family + "/dense/" + size).c_str(),
                                   [dense, batch](benchmark::State& st) { run(st, *dense, batch); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
      benchmark::RegisterBenchmark((family + "/spruce/" + size).c_str(),
                                   [net = net, batch](benchmark::State& st) { run(st, *net, batch); })
          ->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
