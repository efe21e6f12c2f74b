#pragma once
// The pipeline's network-slimming stage on the bottleneck ResNet (issue 14): the channels
// that may go, and those that move together across residual additions and projection
// shortcuts, come from spruce::structural::graph — nothing is listed by hand.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <spruce/structural/graph.hpp>

#include "lab/lab.hpp"
#include "train/resnet.hpp"

namespace lab {

/// The residual network as a spruce graph over its own tensors (layer names are the
/// PyTorch module names, so group members are the checkpoint's tensor names): stem conv,
/// BN, ReLU and pool, each block's three convs with their BNs and ReLUs, the projection,
/// the addition and its ReLU, the global pool and the classifier. The views point into
/// `m`, which must outlive the graph; the input is in_channels x h x w. With
/// `freeze_streams`, each stage's residual stream (the channels the additions join: bn3, the
/// projection and their readers) is frozen, so only the stem and the bottlenecks' inner
/// channels may go, as the slimming paper prunes ResNets.
spruce::structural::graph<float> resnet_graph(train::resnet& m, std::size_t h, std::size_t w,
                                              bool freeze_streams = false);

/// The smaller network's cfg from the graph's kept-channel list (graph::cfg(plan)): the
/// stem, each block's conv1 / conv2 and each stage's output keep kept.size() channels.
train::resnet_cfg resnet_cfg_from_plan(const std::vector<spruce::structural::layer_channels>& kept,
                                       const train::resnet_cfg& dense);

/// What the stage needs from the pipeline: the dense ResNet checkpoint, its training
/// knobs and the accounting settings. The defaults are the stage's own (the VGG stages'
/// --epochs / --lr do not apply) and are the recipe measured best on the 2-core machine
/// (README, "Network slimming on a bottleneck ResNet"). The L1 weight is 20x the lab's
/// 1e-4 because the lab trains for sparsity for 160 epochs and this stage for 4: a scale
/// moves by about lr x lambda per step, so 1e-4 over 4 epochs leaves every scale where it
/// was and the threshold cuts live channels. Fine-tuning starts from a lower rate than
/// sparsity training (0.02, as the dense checkpoint's second phase): the pruned network
/// keeps its weights, and a rate of 0.05 retrains it from a worse point. Every group
/// keeps at least 40% of its width, so no stream is cut to a quarter.
struct resnet_stage_options {
  fs::path checkpoint;
  fs::path data_dir;
  std::size_t epochs = 4;        // sparsity training
  std::size_t tune_epochs = 12;  // fine-tuning after each pruning
  double lr = 0.05;              // sparsity training, cosine to 0
  double tune_lr = 0.02;         // fine-tuning, cosine to 0
  double lambda = 2e-3;          // the L1 subgradient on every BN scale (the lab: 1e-4, over 160 epochs)
  std::size_t min_keep = 16;     // channels every group keeps at least (2 stripped the residual streams)
  double layer_keep = 0.4;       // and this fraction of each group (sparsity_limits::max = 1 - it)
  std::vector<double> percents{0.5, 0.9};
  bool freeze_streams = false;   // keep every residual stream whole (resnet_graph)
  std::size_t log_every = 100;
  int latency_repeats = 20;
};

/// One results-table row, in the pipeline's terms (main.cpp copies it into its table).
struct resnet_stage_row {
  std::string stage, variant;
  std::optional<double> acc_before;
  double acc_after = 0;
  model_stats stats;
  double lat1 = 0, lat64 = 0;
  std::string checkpoint, note;
};

/// The rows (dense ResNet, then one per percentage), the plots written (title, path
/// relative to the run folder), notes for the summary, and a failed check's message
/// (empty when every check passed): the caller records the rows, then fails the run.
struct resnet_stage_result {
  std::vector<resnet_stage_row> rows;
  std::vector<std::pair<std::string, std::string>> plots;
  std::vector<std::string> notes;
  std::string failure;
};

/// The stage: the dense ResNet evaluated; sparsity training with lambda * sign(gamma) added
/// to every BN scale's gradient; then for each percentage the global |gamma| threshold over
/// the graph's prunable groups (graph::slimming_plan, a per-group minimum), the smaller
/// network rebuilt from the kept-channel list with the kept weights copied
/// (graph::copy_kept), checked against the trained network with the removed channels'
/// BN scale and shift set to zero (every logit must agree: a removed channel contributed
/// nothing), evaluated, fine-tuned and evaluated again. Checkpoints go to
/// `out / "resnet"`, the gamma histograms to `out / "plots"`. A failed forward-equivalence
/// check is reported in `failure`; bad input (checkpoint, data) throws spruce::error.
resnet_stage_result run_slimming_resnet(const resnet_stage_options& o, const data_sets& d, const fs::path& out);

}  // namespace lab
