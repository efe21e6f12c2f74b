// Trains the lab's VGG (or, with `--model resnet`, the training library's bottleneck
// ResNet) on Fashion-MNIST from scratch on the CPU and saves a safetensors checkpoint
// (parameters, BN statistics, and the normalisation the model expects), the dense starting
// point that the pruning examples load. `--eval-only --checkpoint PATH` reports a saved
// model's test accuracy instead (the model is read from the checkpoint).
//
// Exit codes: 0 success, 1 failure (or accuracy below --min-accuracy), 2 bad arguments,
// 77 data set not installed (ctest's SKIP_RETURN_CODE).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <spruce/core/error.hpp>

#include "train/checkpoint.hpp"
#include "train/cli.hpp"
#include "train/data.hpp"
#include "train/layers.hpp"
#include "train/lr_schedule.hpp"
#include "train/model.hpp"
#include "train/optim.hpp"
#include "train/resnet.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;
using train::evaluate;
using train::evaluation;
using train::parse_count;
using train::parse_number;
using train::split_floats;
using train::usage_error;

constexpr int exit_usage = 2;
constexpr int exit_skip = 77;

struct options {
  fs::path data = train::default_fashion_mnist_dir();
  std::string model = "vgg";
  std::optional<double> width;        // default 0.125 (vgg), 1.5 (resnet: the committed checkpoint's)
  std::vector<std::size_t> blocks{1, 1, 1};  // resnet: bottleneck blocks per stage
  std::size_t epochs = 20;
  std::size_t batch = 128;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::string schedule = "onecycle";
  std::uint64_t seed = 1;
  std::optional<fs::path> out;
  std::size_t limit_train = 0, limit_test = 0;  // 0: the whole split
  std::size_t log_every = 50;
  bool eval_only = false;
  std::optional<fs::path> checkpoint;
  std::optional<double> min_accuracy;
  std::optional<fs::path> init;  // start from these weights instead of a fresh initialisation
};

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: train_dense [options]\n"
               "  --data DIR          Fashion-MNIST directory (default %s)\n"
               "  --model M           vgg (default) or resnet (bottleneck ResNet, train/resnet.hpp)\n"
               "  --width W           width multiplier (default 0.125 for vgg, 1.5 for resnet)\n"
               "  --blocks A,B,C      resnet: bottleneck blocks per stage (default 1,1,1)\n"
               "  --epochs N          training epochs (default 20, about 15 minutes on 2 cores)\n"
               "  --batch N           batch size (default 128)\n"
               "  --lr X              peak learning rate (default 0.1)\n"
               "  --momentum X        SGD momentum, Nesterov (default 0.9)\n"
               "  --weight-decay X    (default 5e-4)\n"
               "  --schedule S        onecycle | cosine (5%% linear warm-up, then cosine)\n"
               "  --seed N            initialisation and shuffling seed (default 1)\n"
               "  --out PATH          checkpoint to write (default vgg_fmnist_w<width>.safetensors\n"
               "                      in the current directory; the committed checkpoint in\n"
               "                      examples/checkpoints/ is replaced only when named here)\n"
               "  --limit-train N     use the first N training images (smoke tests)\n"
               "  --limit-test N      use the first N test images\n"
               "  --log-every N       progress line every N batches (default 50)\n"
               "  --eval-only         evaluate --checkpoint PATH on the test set and exit\n"
               "  --checkpoint PATH   checkpoint to evaluate\n"
               "  --init PATH         start training from this checkpoint's weights (a second\n"
               "                      schedule after a first run; same model and width)\n"
               "  --min-accuracy X    with --eval-only: exit 1 when the accuracy is below X\n",
               train::default_fashion_mnist_dir().string().c_str());
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error(std::string(flag).append(" needs a value"));
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (flag == "--data") {
      o.data = value();
    } else if (flag == "--model") {
      o.model = value();
      if (o.model != "vgg" && o.model != "resnet")
        throw usage_error(std::string("--model is vgg or resnet, got '").append(o.model).append("'"));
    } else if (flag == "--blocks") {
      o.blocks.clear();
      std::stringstream in(value());
      for (std::string item; std::getline(in, item, ',');) o.blocks.push_back(parse_count(flag, item));
      if (o.blocks.size() != 3 || std::find(o.blocks.begin(), o.blocks.end(), 0u) != o.blocks.end())
        throw usage_error("--blocks takes three counts >= 1, one per stage (e.g. 1,1,1)");
    } else if (flag == "--width") {
      o.width = parse_number(flag, value());
    } else if (flag == "--epochs") {
      o.epochs = parse_count(flag, value());
    } else if (flag == "--batch") {
      o.batch = parse_count(flag, value());
    } else if (flag == "--lr") {
      o.lr = parse_number(flag, value());
    } else if (flag == "--momentum") {
      o.momentum = parse_number(flag, value());
    } else if (flag == "--weight-decay") {
      o.weight_decay = parse_number(flag, value());
    } else if (flag == "--schedule") {
      o.schedule = value();
      if (o.schedule != "onecycle" && o.schedule != "cosine")
        throw usage_error(std::string("--schedule is onecycle or cosine, got '").append(o.schedule).append("'"));
    } else if (flag == "--seed") {
      o.seed = parse_count(flag, value());
    } else if (flag == "--out") {
      o.out = value();
    } else if (flag == "--limit-train") {
      o.limit_train = parse_count(flag, value());
    } else if (flag == "--limit-test") {
      o.limit_test = parse_count(flag, value());
    } else if (flag == "--log-every") {
      o.log_every = std::max<std::size_t>(1, parse_count(flag, value()));
    } else if (flag == "--eval-only") {
      o.eval_only = true;
    } else if (flag == "--init") {
      o.init = value();
    } else if (flag == "--checkpoint") {
      o.checkpoint = value();
    } else if (flag == "--min-accuracy") {
      o.min_accuracy = parse_number(flag, value());
    } else {
      throw usage_error(std::string("unknown option '").append(flag).append("'"));
    }
  }
  if (o.eval_only && !o.checkpoint) throw usage_error("--eval-only needs --checkpoint PATH");
  if (!o.eval_only && o.epochs == 0) throw usage_error("--epochs must be at least 1");
  if (o.batch == 0) throw usage_error("--batch must be at least 1");
  if (o.min_accuracy && !o.eval_only) throw usage_error("--min-accuracy goes with --eval-only");
  if (!o.width) o.width = o.model == "resnet" ? 1.5 : 0.125;
  if (!(*o.width > 0)) throw usage_error("--width must be > 0");
  return o;
}

// "0.125" -> "w0125", "1" -> "w1": the width as it appears in checkpoint names.
std::string width_tag(double width) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", width);
  std::string tag("w");
  for (const char* c = text; *c; ++c)
    if (*c != '.') tag.push_back(*c);
  return tag;
}

// The default output goes to the current directory, never into the source tree: the
// committed checkpoint (examples/checkpoints/) is written only when --out names it.
fs::path default_checkpoint(const options& o) {
  std::string name = o.model + "_fmnist_" + width_tag(*o.width);
  if (o.model == "resnet") {
    name += "_b";
    for (std::size_t b : o.blocks) name += std::to_string(b);
  }
  return fs::path(name + ".safetensors");
}

std::string join(const std::vector<float>& v) {
  std::string out;
  char text[32];
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::snprintf(text, sizeof text, "%.9g", static_cast<double>(v[i]));
    out.append(i ? "," : "").append(text);
  }
  return out;
}

std::string clock_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char text[32];
  std::snprintf(text, sizeof text, "%ld:%02ld", s / 60, s % 60);
  return text;
}

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// True when the split's files are absent (not when they are present but unreadable).
bool data_missing(const fs::path& dir) {
  std::error_code ec;
  for (const char* stem : {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"})
    if (!fs::is_regular_file(dir / (std::string(stem) + ".gz"), ec) &&
        !fs::is_regular_file(dir / stem, ec))
      return true;
  return false;
}

int eval_only(const options& o) {
  const fs::path& path = *o.checkpoint;
  const auto meta = train::read_safetensors_metadata(path);
  const auto get = [&](const char* key) -> std::optional<std::string> {
    const auto it = meta.find(key);
    if (it == meta.end()) return std::nullopt;
    return it->second;
  };
  train::dataset test = train::load_fashion_mnist(o.data, train::split::test);
  if (o.limit_test) test = train::take_first(test, o.limit_test);
  train::channel_stats stats;
  if (auto m = get("normalise_mean"), s = get("normalise_std"); m && s) {
    stats.mean = split_floats(*m);
    stats.stddev = split_floats(*s);
  } else {  // an older checkpoint: the training split's statistics, as training used
    stats = train::compute_channel_stats(train::load_fashion_mnist(o.data, train::split::train));
  }
  train::normalise(test, stats);

  evaluation e;
  std::string what;
  if (get("model") == std::optional<std::string>("resnet")) {
    // The network is whatever the file's shapes describe (dense or pruned).
    std::map<std::string, std::vector<std::size_t>> shapes;
    for (const auto& t : train::read_safetensors(path)) shapes[t.name] = {t.shape.begin(), t.shape.end()};
    train::resnet model(train::resnet_cfg_from_shapes(shapes));
    auto tensors = model.parameters();
    for (auto& b : model.buffers()) tensors.push_back(b);
    train::load_safetensors(path, tensors);
    e = evaluate(model, test);
    what = "resnet " + train::describe(model.cfg());
  } else {
    train::vgg_config cfg;
    if (auto w = get("width")) cfg.width = std::stod(*w);
    if (auto c = get("in_channels")) cfg.in_channels = std::stoul(*c);
    train::vgg model(cfg);
    auto tensors = model.parameters();
    for (auto& b : model.buffers()) tensors.push_back(b);
    train::load_safetensors(path, tensors);
    e = evaluate(model, test);
    char text[64];
    std::snprintf(text, sizeof text, "width %g", cfg.width);
    what = text;
  }
  std::printf("%s: %s, test accuracy %.4f (%zu images), loss %.4f, %.0f images/s\n", path.string().c_str(),
              what.c_str(), e.accuracy, test.n, e.loss, e.images_per_second);
  if (o.min_accuracy && e.accuracy < *o.min_accuracy) {
    std::fprintf(stderr, "train_dense: test accuracy %.4f is below the required %.4f\n",
                 e.accuracy, *o.min_accuracy);
    return 1;
  }
  return 0;
}

// The training loop of either model: `describe` is the first log line's model part,
// `model_meta` the checkpoint's model-specific metadata.
template <class Model>
int train_loop(const options& o, Model& model, train::dataset& data, train::dataset& test,
               const train::channel_stats& stats, const std::string& describe,
               std::map<std::string, std::string> model_meta) {
  if (o.init) {
    auto tensors = model.parameters();
    for (auto& b : model.buffers()) tensors.push_back(b);
    train::load_safetensors(*o.init, tensors);
    model_meta.emplace("init", o.init->string());
  }
  train::sgd_options sgd_opt;
  sgd_opt.lr = o.lr;
  sgd_opt.momentum = o.momentum;
  sgd_opt.weight_decay = o.weight_decay;
  sgd_opt.nesterov = o.momentum > 0;
  train::sgd optimizer(model.parameters(), model.gradients(), sgd_opt);

  const bool drop_last = data.n >= 2 * o.batch;  // keep BN away from a tiny last batch
  train::batch_loader loader(data, o.batch, true, o.seed, train::augment{2, true}, drop_last);
  const std::size_t per_epoch = loader.batches_per_epoch(), total = per_epoch * o.epochs;
  const train::lr_schedule schedule =
      o.schedule == "onecycle" && total >= 8
          ? train::lr::one_cycle(o.lr, total)
          : train::lr::warmup_cosine(o.lr, total / 20, total);
  const fs::path out = o.out ? *o.out : default_checkpoint(o);

  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  std::printf("%s, %zu parameters, %.2f M MACs per image; %zu train / %zu test images of %zux%zux%zu; "
              "%zu epochs of %zu batches of %zu; %d threads\n",
              describe.c_str(), model.num_parameters(), static_cast<double>(model.macs(data.h, data.w)) / 1e6, data.n,
              test.n, data.c, data.h, data.w, o.epochs, per_epoch, o.batch, threads);
  std::fflush(stdout);

  train::batch b;
  train::tensor<float> dlogits;
  train::softmax_cross_entropy<float> ce;
  const auto run_start = clock_type::now();
  double train_seconds = 0, eval_seconds = 0;
  std::size_t images_done = 0, step = 0;
  evaluation last;
  for (std::size_t epoch = 0; epoch < o.epochs; ++epoch) {
    loader.start_epoch(epoch);
    const auto epoch_start = clock_type::now();
    double loss_sum = 0;
    std::size_t correct = 0, seen = 0, batch_index = 0;
    // Since the last progress line, so that the printed speed is current.
    double window_loss = 0;
    std::size_t window_correct = 0, window_seen = 0;
    auto window_start = epoch_start;
    while (loader.next(b)) {
      optimizer.set_lr(schedule(step));
      const double loss = ce.forward(model.forward(b.images, b.n, data.h, data.w), b.labels);
      ce.backward(dlogits);
      model.backward(dlogits);
      optimizer.step();
      ++step;
      ++batch_index;
      loss_sum += loss * static_cast<double>(b.n);
      window_loss += loss * static_cast<double>(b.n);
      correct += ce.correct();
      window_correct += ce.correct();
      seen += b.n;
      window_seen += b.n;
      if (batch_index % o.log_every == 0 || batch_index == per_epoch) {
        const double window = seconds_since(window_start);
        const double elapsed = train_seconds + seconds_since(epoch_start);
        const double rate = static_cast<double>(images_done + seen) / elapsed;
        const double remaining_images =
            static_cast<double>(total - step) * static_cast<double>(o.batch);
        const double eval_estimate =
            epoch == 0 ? 0 : eval_seconds / static_cast<double>(epoch) *
                                 static_cast<double>(o.epochs - epoch);
        std::fprintf(stderr,
                     "epoch %zu/%zu  batch %zu/%zu  loss %.4f  acc %.2f%%  lr %.4f  %.0f img/s  "
                     "ETA %s\n",
                     epoch + 1, o.epochs, batch_index, per_epoch,
                     window_loss / static_cast<double>(window_seen),
                     100.0 * static_cast<double>(window_correct) / static_cast<double>(window_seen),
                     optimizer.lr(), static_cast<double>(window_seen) / window,
                     clock_text(remaining_images / rate + eval_estimate).c_str());
        window_loss = 0;
        window_correct = 0;
        window_seen = 0;
        window_start = clock_type::now();
      }
    }
    const double epoch_seconds = seconds_since(epoch_start);
    train_seconds += epoch_seconds;
    images_done += seen;
    const auto eval_start = clock_type::now();
    last = evaluate(model, test);
    eval_seconds += seconds_since(eval_start);
    std::printf("epoch %zu/%zu: train loss %.4f acc %.4f (%.1f s, %.0f img/s) | test loss %.4f "
                "acc %.4f (%.0f img/s)\n",
                epoch + 1, o.epochs, loss_sum / static_cast<double>(seen),
                static_cast<double>(correct) / static_cast<double>(seen), epoch_seconds,
                static_cast<double>(seen) / epoch_seconds, last.loss, last.accuracy,
                last.images_per_second);
    std::fflush(stdout);
  }

  auto tensors = model.parameters();
  for (auto& buf : model.buffers()) tensors.push_back(buf);
  char acc_text[32];
  std::snprintf(acc_text, sizeof acc_text, "%.4f", last.accuracy);
  char width_text[32];
  std::snprintf(width_text, sizeof width_text, "%.17g", *o.width);
  std::map<std::string, std::string> metadata = {
      {"model", o.model},
      {"dataset", "fashion-mnist"},
      {"width", width_text},
      {"in_channels", std::to_string(data.c)},
      {"num_classes", "10"},
      {"epochs", std::to_string(o.epochs)},
      {"train_images", std::to_string(data.n)},
      {"test_images", std::to_string(test.n)},
      {"test_accuracy", acc_text},
      {"seed", std::to_string(o.seed)},
      {"normalise_mean", join(stats.mean)},
      {"normalise_std", join(stats.stddev)},
      {"batch", std::to_string(o.batch)},
      {"lr", std::to_string(o.lr)},
      {"schedule", o.schedule}};
  metadata.merge(model_meta);
  train::save_safetensors(out, tensors, metadata);
  std::printf("saved %s (test accuracy %.4f) after %s (train %.0f s, eval %.0f s)\n",
              out.string().c_str(), last.accuracy, clock_text(seconds_since(run_start)).c_str(),
              train_seconds, eval_seconds);
  return 0;
}

int train_model(const options& o) {
  train::dataset data = train::load_fashion_mnist(o.data, train::split::train);
  train::dataset test = train::load_fashion_mnist(o.data, train::split::test);
  if (o.limit_train) data = train::take_first(data, o.limit_train);
  if (o.limit_test) test = train::take_first(test, o.limit_test);
  const train::channel_stats stats = train::compute_channel_stats(data);
  train::normalise(data, stats);
  train::normalise(test, stats);
  char text[64];
  if (o.model == "resnet") {
    train::resnet model(train::resnet_channels(*o.width, o.blocks, data.c, 10), o.seed);
    std::snprintf(text, sizeof text, "ResNet width %g, blocks %zu,%zu,%zu", *o.width, o.blocks[0], o.blocks[1],
                  o.blocks[2]);
    const std::string cfg = train::describe(model.cfg());
    return train_loop(o, model, data, test, stats, std::string(text) + " (" + cfg + ")",
                      {{"blocks", std::to_string(o.blocks[0]) + "," + std::to_string(o.blocks[1]) + "," +
                                      std::to_string(o.blocks[2])},
                       {"cfg", cfg}});
  }
  train::vgg model(train::vgg_config{*o.width, data.c, 10}, o.seed);
  std::snprintf(text, sizeof text, "VGG width %g (channels", *o.width);
  std::string line = text;
  for (std::size_t c : model.channels()) line.append(" ").append(std::to_string(c));
  line.append(")");
  return train_loop(o, model, data, test, stats, line, {});
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    o = parse(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "train_dense: %s\n", e.what());
    usage(stderr);
    return exit_usage;
  }
  try {
    return o.eval_only ? eval_only(o) : train_model(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_dense: %s\n", e.what());
    if (data_missing(o.data)) {
      std::fprintf(stderr, "train_dense: skipping, the data set is not installed\n");
      return exit_skip;
    }
    return 1;
  }
}
