#pragma once
// The pipeline's shared machinery: data, checkpoints, the fine-tuning loop with progress
// lines, evaluation, size / MAC accounting, latency, and the run folder's files (every one
// written to a temporary name and renamed). Templates take any model with train::vgg's interface.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <spruce/core/tensor_ref.hpp>
#include <spruce/prune/mask.hpp>

#include "lab/infer.hpp"
#include "train/cli.hpp"
#include "train/data.hpp"
#include "train/layers.hpp"
#include "train/lr_schedule.hpp"
#include "train/model.hpp"
#include "train/optim.hpp"

namespace lab {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using train::evaluate;
using train::evaluation;
using train::parse_count;
using train::parse_number;
using train::split_floats;
using train::usage_error;

inline double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}
std::string clock_text(double seconds);

/// The data the stages share: the training split, the test split and the fixed held-out
/// subset the sensitivity scan measures on (the first `scan_images` of the test split),
/// normalised with the statistics the checkpoint was trained with.
struct data_sets {
  train::dataset train, test, held_out;
};

/// The dense checkpoint: its tensors (train::vgg's names), metadata, and the model config.
struct dense_checkpoint {
  fs::path path;
  std::map<std::string, std::string> metadata;
  train::vgg_config config;
  train::channel_stats stats;
};

/// Reads the checkpoint's metadata and checks it against a fresh train::vgg of the width
/// it names: a missing file, or one whose tensors do not match (missing, extra or
/// mis-shaped names, listed) throws spruce::error before any stage starts.
dense_checkpoint open_checkpoint(const fs::path& path);
/// A train::vgg loaded from the checkpoint (parameters and BN statistics).
void load_into(const fs::path& path, std::vector<spruce::named_tensor<float>> tensors);
std::vector<spruce::named_tensor<float>> all_tensors(train::vgg& m);

data_sets load_data(const fs::path& dir, const train::channel_stats& stats, std::size_t train_limit,
                    std::size_t test_limit, std::size_t held_out);

/// How a stage fine-tunes: SGD with Nesterov momentum, cosine decay from `lr` to 0 over
/// all steps, the dense training's augmentation.
struct tune_options {
  std::size_t epochs = 1;
  std::size_t batch = 128;
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::size_t log_every = 100;
  std::uint64_t seed = 7;
};

/// Called between backward and the optimiser step (the L1 subgradient of slimming), after
/// each optimiser step (mask re-application, schedules; the step count since the start),
/// and after each epoch with the epoch's number (1-based).
struct tune_hooks {
  std::function<void()> before_step;
  std::function<void(std::size_t step)> after_step;
  std::function<void(std::size_t epoch)> after_epoch;
};

/// The training loop: prints a progress line `[stage] epoch e/E batch b/B loss acc img/s
/// ETA` every log_every batches (to stderr) and returns the mean training images/s.
template <class Model>
double fine_tune(const std::string& stage, Model& model, const train::dataset& data, const tune_options& o,
                 const tune_hooks& hooks = {}) {
  train::sgd_options so;
  so.lr = o.lr;
  so.momentum = o.momentum;
  so.nesterov = o.momentum > 0;
  so.weight_decay = o.weight_decay;
  train::sgd opt(model.parameters(), model.gradients(), so);
  if (hooks.after_step) opt.add_hook(hooks.after_step);
  const bool drop_last = data.n >= 2 * o.batch;
  train::batch_loader loader(data, std::min(o.batch, data.n), true, o.seed, train::augment{2, true}, drop_last);
  const std::size_t per_epoch = loader.batches_per_epoch(), total = per_epoch * o.epochs;
  const train::lr_schedule lr = train::lr::cosine(o.lr, 0.0, std::max<std::size_t>(1, total));
  train::batch b;
  train::tensor<float> dlogits;
  train::softmax_cross_entropy<float> ce;
  model.train();
  std::size_t step = 0, images = 0;
  const auto start = clock_type::now();
  for (std::size_t e = 0; e < o.epochs; ++e) {
    loader.start_epoch(e);
    std::size_t bi = 0, wseen = 0, wcorrect = 0;
    double wloss = 0;
    auto wstart = clock_type::now();
    while (loader.next(b)) {
      opt.set_lr(lr(step));
      const double loss = ce.forward(model.forward(b.images, b.n, data.h, data.w), b.labels);
      ce.backward(dlogits);
      model.backward(dlogits);
      if (hooks.before_step) hooks.before_step();
      opt.step();
      ++step;
      ++bi;
      images += b.n;
      wseen += b.n;
      wcorrect += ce.correct();
      wloss += loss * static_cast<double>(b.n);
      if (bi % o.log_every == 0 || bi == per_epoch) {
        const double rate = static_cast<double>(images) / std::max(1e-9, seconds_since(start));
        const double left = static_cast<double>((total - step) * o.batch) / rate;
        std::fprintf(stderr, "[%s] epoch %zu/%zu  batch %zu/%zu  loss %.4f  acc %.2f%%  %.0f img/s  ETA %s\n",
                     stage.c_str(), e + 1, o.epochs, bi, per_epoch, wloss / static_cast<double>(wseen),
                     100.0 * static_cast<double>(wcorrect) / static_cast<double>(wseen),
                     static_cast<double>(wseen) / std::max(1e-9, seconds_since(wstart)), clock_text(left).c_str());
        wseen = wcorrect = 0;
        wloss = 0;
        wstart = clock_type::now();
      }
    }
    if (hooks.after_epoch) hooks.after_epoch(e + 1);
    model.train();
  }
  return static_cast<double>(images) / std::max(1e-9, seconds_since(start));
}

/// Size and cost of a model as its tensors stand: parameters, nonzeros, MACs of one
/// h x w image densely and counting only nonzero weights, and the bytes of the stored
/// format (each weight matrix as CSR with 32-bit indices or dense, whichever is smaller;
/// `n_m_layers` are stored in the 2:4 compressed format: half the values and 2-bit
/// positions).
struct model_stats {
  std::size_t params = 0, nonzero = 0;
  std::uint64_t macs = 0, effective_macs = 0;
  double stored_bytes = 0;
  std::vector<std::size_t> channels;
};
model_stats stats_of(const std::vector<spruce::named_tensor<float>>& params, std::size_t h, std::size_t w,
                     bool n_m = false);

/// An inference network (lab::infer) with the weights of `tensors` (train::vgg names).
infer::network inference_network(const std::vector<spruce::named_tensor<float>>& tensors);

/// Median forward latency (ms) of `net` over `repeats` runs at each batch size, after a
/// warm-up, on images taken from `data`.
double median_latency_ms(const infer::network& net, const train::dataset& data, std::size_t batch, int repeats);

/// Test accuracy of an inference network; `logits_out` (optional) receives every logit.
double infer_accuracy(const infer::network& net, const train::dataset& data, std::vector<float>* logits_out = nullptr);
/// Every logit of a training-library model on `data`, in order.
template <class Model>
std::vector<float> all_logits(Model& model, const train::dataset& data) {
  model.eval();
  train::batch_loader loader(data, 500, false, 0);
  loader.start_epoch(0);
  train::batch b;
  std::vector<float> out;
  while (loader.next(b)) {
    const auto& l = model.forward(b.images, b.n, data.h, data.w);
    out.insert(out.end(), l.values().begin(), l.values().end());
  }
  model.train();
  return out;
}

// ---- the run folder ------------------------------------------------------------------

/// Writes `content` to `path` through a temporary sibling and a rename.
void write_text(const fs::path& path, const std::string& content);
/// Runs gnuplot on `script` (which must `set output` to the path in `png_tmp`) and renames
/// the PNG into place. Returns false (and says why on stderr) when gnuplot is missing or
/// fails: plots are optional, the tables are not.
bool plot(const fs::path& dir, const std::string& name, const std::string& script_body, const std::string& data);
/// Saves a model's tensors as safetensors (train::save_safetensors, atomic) with metadata.
void save_model(const fs::path& path, const std::vector<spruce::named_tensor<float>>& tensors,
                std::map<std::string, std::string> metadata);
/// Histogram lines "center count" of `values` over [lo, hi] in `bins` bins.
std::string histogram(const std::vector<float>& values, double lo, double hi, std::size_t bins);

std::string fmt(const char* f, double x);

}  // namespace lab
