// The pruning lab end to end: from the trained dense VGG (examples/checkpoints) through a
// sensitivity scan, fine-grained pruning with a table derived from the scan, channel
// pruning (naive and sorted), network slimming, gradual AGP pruning, 2:4 pruning and
// sparse inference, to the table a practitioner decides from (accuracy, size, MACs,
// latency) with the lab's plots. Every stage can run alone (--stages) and starts from the
// dense checkpoint; everything goes into one new run folder (--out).
//
// Exit codes: 0 success, 1 failure, 2 bad arguments or input, 77 data set not installed.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <spruce/io/csv.hpp>
#include <spruce/io/sensitivity_csv.hpp>
#include <spruce/spruce.hpp>

#include "lab/lab.hpp"
#include "lab/resnet_stage.hpp"
#include "lab/table.hpp"
#include "train/checkpoint.hpp"

namespace {

using namespace lab;

constexpr int exit_usage = 2;
constexpr int exit_skip = 77;

const std::vector<std::string> all_stages = {"dense", "sensitivity", "fine-grained", "channel",
                                             "slimming", "gradual", "2:4", "sparse", "slimming-resnet"};

struct config {
  fs::path data = train::default_fashion_mnist_dir();
  fs::path checkpoint = fs::path(SPRUCE_SOURCE_DIR) / "examples" / "checkpoints" / "vgg_fmnist_w0125.safetensors";
  std::optional<fs::path> out;
  std::set<std::string> stages{all_stages.begin(), all_stages.end()};
  std::optional<fs::path> table;
  double budget = 0.005;        // accuracy drop per layer allowed by the derived table
  double size_target = 0.25;    // nonzero size / dense size
  std::size_t epochs = 2;       // fine-tuning epochs of fine-grained, channel, 2:4
  std::size_t slim_epochs = 1;  // sparsity training epochs per lambda
  std::size_t slim_tune_epochs = 3;  // fine-tuning epochs of each slimmed (small, fast) network
  double slim_layer_keep = 0.25;     // slimming's per-layer minimum, a fraction of each layer
  std::size_t channel_epochs = 4;    // fine-tuning epochs of the channel-pruned (half-MACs) network
  std::size_t gradual_epochs = 4;
  lab::resnet_stage_options resnet;  // slimming-resnet: its own defaults, and the --resnet-* flags
  std::size_t resnet_epochs = 0, resnet_tune_epochs = 0;  // given epoch counts; 0: the stage's (--smoke: 1)
  double lr = 0.01;
  std::size_t train_images = 0, test_images = 0, held_out = 1000;
  int latency_repeats = 20;
  int choose_repeats = 3;
  std::size_t log_every = 100;
  bool smoke = false;
};

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: prune_lab [options]\n"
               "  --stages LIST       comma-separated, from: dense, sensitivity, fine-grained, channel,\n"
               "                      slimming, gradual, 2:4, sparse, slimming-resnet, or all (default:\n"
               "                      all but slimming-resnet, which --long and --smoke add: the\n"
               "                      10-minute budget); results always\n"
               "  --out DIR           run folder to create (default prune_lab_<date>-<time>; an\n"
               "                      existing folder is never overwritten)\n"
               "  --checkpoint PATH   dense checkpoint (default the committed\n"
               "                      examples/checkpoints/vgg_fmnist_w0125.safetensors)\n"
               "  --data DIR          Fashion-MNIST directory (default %s)\n"
               "  --table FILE        fine-grained sparsities ('name sparsity' lines) instead of the\n"
               "                      table derived from the scan\n"
               "  --budget X          accuracy drop each layer may cost in the derived table (0.005)\n"
               "  --size-target X     nonzero size bound as a fraction of dense (0.25)\n"
               "  --epochs N          fine-tuning epochs of fine-grained and 2:4 (2)\n"
               "  --channel-epochs N  fine-tuning epochs of the channel-pruned network (4)\n"
               "  --slim-epochs N     sparsity-training epochs per lambda (1)\n"
               "  --slim-tune-epochs N  fine-tuning epochs of each slimmed network (3)\n"
               "  --slim-layer-keep F  slimming keeps at least this fraction of every layer (0.25; 0:\n"
               "                      only the 2-channel minimum)\n"
               "  --gradual-epochs N  epochs of gradual pruning, the last without pruning (4)\n"
               "  --resnet-epochs N   slimming-resnet: sparsity-training epochs (4)\n"
               "  --resnet-tune-epochs N  slimming-resnet: fine-tuning epochs of each pruned network (12)\n"
               "  --resnet-percents L slimming-resnet: fractions of the prunable channels to cut (0.5,0.9)\n"
               "  --resnet-streams S  slimming-resnet: prune (default: the residual streams are groups\n"
               "                      like any other) or freeze (only the stem and the inner channels)\n"
               "  --resnet-lr X       slimming-resnet: sparsity-training peak learning rate (0.05)\n"
               "  --resnet-tune-lr X  slimming-resnet: fine-tuning peak learning rate (0.02)\n"
               "  --resnet-lambda X   slimming-resnet: the L1 subgradient's weight on BN scales (2e-3;\n"
               "                      the lab's 1e-4 is for 160 epochs)\n"
               "  --resnet-floor N,F  slimming-resnet: every group keeps at least N channels and the\n"
               "                      fraction F of its width (16,0.4)\n"
               "  --lr X              fine-tuning peak learning rate, cosine to 0 (0.01)\n"
               "  --long              the longer, better run: 3x every epoch count\n"
               "  --train-images N    first N training images (default all 60000)\n"
               "  --test-images N     first N test images (default all 10000)\n"
               "  --held-out N        test images the sensitivity scan measures on (1000)\n"
               "  --smoke             every stage on a few hundred images, one short epoch (tests)\n",
               train::default_fashion_mnist_dir().string().c_str());
}

config parse(int argc, char** argv) {
  config c;
  bool long_run = false, stages_given = false;
  std::optional<std::size_t> epochs, channel, slim, slim_tune, gradual;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error(std::string(flag).append(" needs a value"));
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (flag == "--stages") {
      stages_given = true;
      c.stages.clear();
      std::stringstream in(value());
      for (std::string s; std::getline(in, s, ',');) {
        if (s == "all") {
          c.stages.insert(all_stages.begin(), all_stages.end());
          continue;
        }
        if (s == "results") continue;
        if (std::find(all_stages.begin(), all_stages.end(), s) == all_stages.end()) {
          std::string list;
          for (const auto& k : all_stages) list.append(list.empty() ? "" : ", ").append(k);
          throw usage_error("unknown stage '" + s + "'; the stages are " + list + " (or all)");
        }
        c.stages.insert(s);
      }
      if (c.stages.empty()) throw usage_error("--stages names no stage");
    } else if (flag == "--out") {
      c.out = value();
    } else if (flag == "--checkpoint") {
      c.checkpoint = value();
    } else if (flag == "--data") {
      c.data = value();
    } else if (flag == "--table") {
      c.table = value();
    } else if (flag == "--budget") {
      c.budget = parse_number(flag, value());
      if (c.budget < 0) throw usage_error("--budget must be >= 0");
    } else if (flag == "--size-target") {
      c.size_target = parse_number(flag, value());
      if (!(c.size_target > 0 && c.size_target <= 1)) throw usage_error("--size-target must be in (0, 1]");
    } else if (flag == "--epochs") {
      epochs = parse_count(flag, value());
    } else if (flag == "--slim-epochs") {
      slim = parse_count(flag, value());
    } else if (flag == "--channel-epochs") {
      channel = parse_count(flag, value());
    } else if (flag == "--slim-layer-keep") {
      c.slim_layer_keep = parse_number(flag, value());
      if (!(c.slim_layer_keep >= 0 && c.slim_layer_keep < 1)) throw usage_error("--slim-layer-keep must be in [0, 1)");
    } else if (flag == "--slim-tune-epochs") {
      slim_tune = parse_count(flag, value());
    } else if (flag == "--gradual-epochs") {
      gradual = parse_count(flag, value());
    } else if (flag == "--resnet-epochs") {
      c.resnet_epochs = parse_count(flag, value());
      if (c.resnet_epochs == 0) throw usage_error("--resnet-epochs must be at least 1");
    } else if (flag == "--resnet-percents") {
      std::vector<double> percents;
      for (float v : split_floats(value())) {
        if (!(v > 0 && v < 1)) throw usage_error("--resnet-percents takes fractions in (0, 1), e.g. 0.5,0.9");
        percents.push_back(v);
      }
      c.resnet.percents = percents;
    } else if (flag == "--resnet-streams") {
      const std::string v = value();
      if (v != "prune" && v != "freeze") throw usage_error("--resnet-streams takes prune or freeze, not '" + v + "'");
      c.resnet.freeze_streams = v == "freeze";
    } else if (flag == "--resnet-lr" || flag == "--resnet-tune-lr") {
      const double v = parse_number(flag, value());
      if (!(v > 0)) throw usage_error(std::string(flag) + " must be > 0");
      (flag == "--resnet-lr" ? c.resnet.lr : c.resnet.tune_lr) = v;
    } else if (flag == "--resnet-lambda") {
      c.resnet.lambda = parse_number(flag, value());
      if (!(c.resnet.lambda >= 0)) throw usage_error("--resnet-lambda must be >= 0 (1e-4 is the lab's)");
    } else if (flag == "--resnet-floor") {
      const std::string v = value();
      const auto comma = v.find(',');
      if (comma == std::string::npos) throw usage_error("--resnet-floor takes N,F (channels, fraction), e.g. 16,0.4");
      const std::size_t n = parse_count(flag, v.substr(0, comma));
      const double f = parse_number(flag, v.substr(comma + 1));
      if (n == 0 || !(f >= 0 && f < 1))
        throw usage_error("--resnet-floor takes N >= 1 channels and a fraction F in [0, 1), e.g. 16,0.4");
      c.resnet.min_keep = n;
      c.resnet.layer_keep = f;
    } else if (flag == "--resnet-tune-epochs") {
      c.resnet_tune_epochs = parse_count(flag, value());
      if (c.resnet_tune_epochs == 0) throw usage_error("--resnet-tune-epochs must be at least 1");
    } else if (flag == "--lr") {
      c.lr = parse_number(flag, value());
      if (!(c.lr > 0)) throw usage_error("--lr must be > 0");
    } else if (flag == "--long") {
      long_run = true;
    } else if (flag == "--train-images") {
      c.train_images = parse_count(flag, value());
    } else if (flag == "--test-images") {
      c.test_images = parse_count(flag, value());
    } else if (flag == "--held-out") {
      c.held_out = parse_count(flag, value());
    } else if (flag == "--smoke") {
      c.smoke = true;
    } else {
      throw usage_error(std::string("unknown option '").append(flag).append("'"));
    }
  }
  if (c.smoke) {
    c.epochs = c.channel_epochs = c.slim_epochs = c.slim_tune_epochs = 1;
    c.gradual_epochs = 2;
#if defined(__SANITIZE_ADDRESS__)
    // Several times slower under the sanitizers: half the images again.
    if (!c.train_images) c.train_images = 128;
    if (!c.test_images) c.test_images = 64;
    c.held_out = std::min<std::size_t>(c.held_out, 32);
#endif
    if (!c.train_images) c.train_images = 256;
    if (!c.test_images) c.test_images = 128;
    c.held_out = std::min<std::size_t>(c.held_out, 64);
    c.latency_repeats = 2;
    c.choose_repeats = 1;
    c.log_every = 1;
  }
  // The default run fits the lab's 10 minutes on 2 cores with the VGG stages; the ResNet's
  // slimming (about 20 more minutes: 4 sparsity epochs of the dense ResNet, then 12 of
  // fine-tuning per pruned network) joins the longer run and the smoke test.
  if (!stages_given && !long_run && !c.smoke) c.stages.erase("slimming-resnet");
  if (long_run)
    c.epochs *= 3, c.channel_epochs *= 3, c.slim_epochs *= 3, c.slim_tune_epochs *= 3, c.gradual_epochs *= 3;
  if (epochs) c.epochs = *epochs;
  if (channel) c.channel_epochs = *channel;
  if (slim) c.slim_epochs = *slim;
  if (slim_tune) c.slim_tune_epochs = *slim_tune;
  if (gradual) c.gradual_epochs = *gradual;
  if (c.epochs == 0 || c.channel_epochs == 0 || c.slim_epochs == 0 || c.slim_tune_epochs == 0 ||
      c.gradual_epochs < 2)
    throw usage_error("--epochs, --channel-epochs, --slim-epochs and --slim-tune-epochs must be >= 1, "
                      "--gradual-epochs >= 2");
  return c;
}

bool data_missing(const fs::path& dir) {
  std::error_code ec;
  for (const char* stem : {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"})
    if (!fs::is_regular_file(dir / (std::string(stem) + ".gz"), ec) && !fs::is_regular_file(dir / stem, ec))
      return true;
  return false;
}

// ---- the results table -----------------------------------------------------------------

struct row {
  std::string stage, variant;
  std::optional<double> acc_before;
  double acc_after = 0;
  model_stats stats;
  double lat1 = NAN, lat64 = NAN;
  std::string checkpoint, note;
};

struct owned_model {
  std::unique_ptr<train::vgg> model;
  spruce::masked_parameters<float> masks;
  std::string name;
};

struct run_state {
  config cfg;
  dense_checkpoint ck;
  data_sets d;
  fs::path out;
  std::vector<row> rows;
  double dense_acc = NAN, dense_lat1 = NAN, dense_lat64 = NAN;
  std::vector<std::pair<std::string, std::string>> plots;  // (title, png path relative to out)
  std::vector<std::string> notes;
  std::optional<spruce::sensitivity_table> scan;
  std::optional<owned_model> fine, gradual;
  std::optional<spruce::sparsity_table> table_from_file;
};

std::unique_ptr<train::vgg> load_dense(run_state& r) {
  auto m = std::make_unique<train::vgg>(r.ck.config);
  load_into(r.ck.path, all_tensors(*m));
  return m;
}

std::vector<spruce::named_tensor<float>> prunable(std::vector<spruce::named_tensor<float>> params, bool skip_first) {
  std::vector<spruce::named_tensor<float>> out;
  for (auto& p : params)
    if (p.view.rank() >= 2 && !(skip_first && p.name == "backbone.conv0.weight")) out.push_back(p);
  return out;
}

const char* csv_header =
    "stage,variant,accuracy_before_ft,accuracy_after_ft,params,nonzero_params,size_nonzero_mib,size_stored_mib,"
    "macs_dense,macs_effective,latency_b1_ms,latency_b64_ms,speedup_b1,speedup_b64,checkpoint\n";

std::string num(double x) { return std::isfinite(x) ? spruce::io::csv_number(x) : std::string(); }
std::string pct(std::optional<double> x) { return x ? fmt("%.2f%%", 100 * *x) : std::string("-"); }
std::string ms(double x) { return std::isfinite(x) ? fmt("%.3f", x) : std::string("-"); }
std::string speed(double dense, double x) { return std::isfinite(x) && std::isfinite(dense) ? fmt("%.2fx", dense / x) : "-"; }
double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

// The committed dense ResNet that slimming-resnet starts from.
fs::path resnet_checkpoint() {
  return fs::path(SPRUCE_SOURCE_DIR) / "examples" / "checkpoints" / "resnet_fmnist_w15_b111.safetensors";
}

void write_results(run_state& r) {
  std::string csv = csv_header;
  for (const auto& w : r.rows) {
    const auto& s = w.stats;
    csv += spruce::io::csv_field(w.stage) + "," + spruce::io::csv_field(w.variant) + "," +
           (w.acc_before ? num(*w.acc_before) : "") + "," + num(w.acc_after) + "," + std::to_string(s.params) + "," +
           std::to_string(s.nonzero) + "," + num(mib(4.0 * static_cast<double>(s.nonzero))) + "," +
           num(mib(s.stored_bytes)) + "," + std::to_string(s.macs) + "," + std::to_string(s.effective_macs) + "," +
           num(w.lat1) + "," + num(w.lat64) + "," + num(r.dense_lat1 / w.lat1) + "," + num(r.dense_lat64 / w.lat64) +
           "," + spruce::io::csv_field(w.checkpoint) + "\n";
  }
  write_text(r.out / "results.csv", csv);

  std::string md = "| stage | variant | acc before FT | acc after FT | params | nonzero | size (MiB, nonzero / stored) | "
                   "MACs (M, dense / effective) | latency b1 (ms) | latency b64 (ms) | speed-up b1 / b64 |\n"
                   "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& w : r.rows) {
    const auto& s = w.stats;
    md += "| " + w.stage + " | " + w.variant + " | " + pct(w.acc_before) + " | " + pct(w.acc_after) + " | " +
          std::to_string(s.params) + " | " + std::to_string(s.nonzero) + " | " +
          fmt("%.4f", mib(4.0 * static_cast<double>(s.nonzero))) + " / " + fmt("%.4f", mib(s.stored_bytes)) + " | " +
          fmt("%.2f", static_cast<double>(s.macs) / 1e6) + " / " + fmt("%.2f", static_cast<double>(s.effective_macs) / 1e6) +
          " | " + ms(w.lat1) + " | " + ms(w.lat64) + " | " + speed(r.dense_lat1, w.lat1) + " / " +
          speed(r.dense_lat64, w.lat64) + " |\n";
  }
  std::string notes;
  for (const auto& n : r.notes) notes += "- " + n + "\n";
  for (const auto& w : r.rows)
    if (!w.note.empty()) notes += "- " + w.stage + (w.variant.empty() ? "" : " (" + w.variant + ")") + ": " + w.note + "\n";
  const std::string resnet = r.cfg.stages.count("slimming-resnet") ? "; slimming-resnet's: `" + resnet_checkpoint().string() + "`" : "";
  const std::string summary = "# Pruning lab results\n\nDense checkpoint of the VGG stages: `" + r.ck.path.string() + "`" + resnet + "; " +
                              std::to_string(r.d.train.n) + " training and " + std::to_string(r.d.test.n) +
                              " test images.\n\n" + md + "\n" + notes;
  write_text(r.out / "summary.md", summary);

  std::string html =
      "<!doctype html><html><head><meta charset='utf-8'><title>spruce pruning lab</title><style>"
      "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
      "padding:3px 8px;text-align:right}td:first-child,td:nth-child(2){text-align:left}img{max-width:900px;"
      "display:block;margin:1em 0}</style></head><body><h1>Pruning lab results</h1><table><tr>";
  for (const char* h : {"stage", "variant", "acc before FT", "acc after FT", "params", "nonzero", "size MiB (nonzero)",
                        "size MiB (stored)", "MACs M (dense)", "MACs M (effective)", "latency b1 ms", "latency b64 ms",
                        "speed-up b1", "speed-up b64"})
    html += std::string("<th>") + h + "</th>";
  html += "</tr>";
  for (const auto& w : r.rows) {
    const auto& s = w.stats;
    html += "<tr><td>" + w.stage + "</td><td>" + w.variant + "</td><td>" + pct(w.acc_before) + "</td><td>" +
            pct(w.acc_after) + "</td><td>" + std::to_string(s.params) + "</td><td>" + std::to_string(s.nonzero) +
            "</td><td>" + fmt("%.4f", mib(4.0 * static_cast<double>(s.nonzero))) + "</td><td>" +
            fmt("%.4f", mib(s.stored_bytes)) + "</td><td>" + fmt("%.2f", static_cast<double>(s.macs) / 1e6) +
            "</td><td>" + fmt("%.2f", static_cast<double>(s.effective_macs) / 1e6) + "</td><td>" + ms(w.lat1) +
            "</td><td>" + ms(w.lat64) + "</td><td>" + speed(r.dense_lat1, w.lat1) + "</td><td>" +
            speed(r.dense_lat64, w.lat64) + "</td></tr>";
  }
  html += "</table><ul>";
  for (const auto& n : r.notes) html += "<li>" + n + "</li>";
  for (const auto& w : r.rows)
    if (!w.note.empty()) html += "<li>" + w.stage + " " + w.variant + ": " + w.note + "</li>";
  html += "</ul>";
  for (const auto& [title, png] : r.plots) html += "<h2>" + title + "</h2><img src='" + png + "' alt='" + title + "'>";
  html += "</body></html>\n";
  write_text(r.out / "report.html", html);
}

void add_plot(run_state& r, const std::string& title, const std::string& name, const std::string& script,
              const std::string& data) {
  if (plot(r.out, name, script, data)) r.plots.emplace_back(title, "plots/" + name + ".png");
}

/// One histogram block per weight tensor (rank >= 2), plotted as a grid like the lab's.
void weight_histograms(run_state& r, const std::string& name, const std::string& title,
                       const std::vector<spruce::named_tensor<float>>& params, bool skip_zeros) {
  std::string data, script = "set multiplot layout 3,3 title '" + title + "'\nunset key\nset style fill solid 0.6\n";
  int block = 0;
  for (const auto& p : params) {
    if (p.view.rank() < 2) continue;
    std::vector<float> v;
    float lim = 0;
    for (std::size_t i = 0; i < p.view.size(); ++i) {
      const float x = p.view.data()[i];
      if (skip_zeros && x == 0.0f) continue;
      v.push_back(x);
      lim = std::max(lim, std::fabs(x));
    }
    lim = std::max(lim, 1e-6f);
    data += "# " + p.name + "\n" + histogram(v, -lim, lim, 40) + "\n\n";
    script += "set title '" + p.name + "'\nplot $DATA index " + std::to_string(block++) + " using 1:2 with boxes\n";
  }
  script += "unset multiplot";
  add_plot(r, title, name, script, data);
}

row make_row(run_state& r, const std::string& stage, const std::string& variant,
             std::vector<spruce::named_tensor<float>> tensors, std::vector<spruce::named_tensor<float>> params,
             bool n_m, bool measure_latency) {
  row w;
  w.stage = stage;
  w.variant = variant;
  w.stats = stats_of(params, r.d.test.h, r.d.test.w, n_m);
  if (measure_latency) {
    const infer::network net = inference_network(tensors);
    w.lat1 = median_latency_ms(net, r.d.test, 1, r.cfg.latency_repeats);
    w.lat64 = median_latency_ms(net, r.d.test, 64, std::max(2, r.cfg.latency_repeats / 4));
  }
  return w;
}

void finish_row(run_state& r, row w) {
  std::printf("%-13s %-22s before %-8s after %6.2f%%  nonzero %7zu / %7zu  MACs %6.2f M  b1 %s ms  b64 %s ms\n",
              w.stage.c_str(), w.variant.c_str(), pct(w.acc_before).c_str(), 100 * w.acc_after, w.stats.nonzero,
              w.stats.params, static_cast<double>(w.stats.effective_macs) / 1e6, ms(w.lat1).c_str(),
              ms(w.lat64).c_str());
  std::fflush(stdout);
  r.rows.push_back(std::move(w));
  write_results(r);
}

tune_options tune(const run_state& r, std::size_t epochs) {
  tune_options o;
  o.epochs = epochs;
  o.lr = r.cfg.lr;
  o.log_every = r.cfg.log_every;
  return o;
}

std::map<std::string, std::string> meta(const run_state& r, const std::string& stage, double acc) {
  return {{"stage", stage},
          {"test_accuracy", fmt("%.4f", acc)},
          {"source_checkpoint", r.ck.path.string()},
          {"in_channels", std::to_string(r.ck.config.in_channels)},
          {"width", r.ck.metadata.count("width") ? r.ck.metadata.at("width") : "0.125"},
          {"normalise_mean", r.ck.metadata.at("normalise_mean")},
          {"normalise_std", r.ck.metadata.at("normalise_std")}};
}

// ---- stages --------------------------------------------------------------------------------

void stage_dense(run_state& r) {
  auto m = load_dense(r);
  const evaluation e = evaluate(*m, r.d.test);
  r.dense_acc = e.accuracy;
  row w = make_row(r, "dense", "", all_tensors(*m), m->parameters(), false, true);
  r.dense_lat1 = w.lat1;
  r.dense_lat64 = w.lat64;
  w.acc_after = e.accuracy;
  w.checkpoint = r.ck.path.string();
  w.note = "evaluation " + fmt("%.0f", e.images_per_second) + " images/s (training library, batch 500)";
  weight_histograms(r, "dense_histograms", "dense weight histograms", m->parameters(), false);
  finish_row(r, std::move(w));
}

void ensure_dense_reference(run_state& r) {
  if (std::isfinite(r.dense_acc)) return;
  auto m = load_dense(r);
  r.dense_acc = evaluate(*m, r.d.test).accuracy;
  const infer::network net = inference_network(all_tensors(*m));
  r.dense_lat1 = median_latency_ms(net, r.d.test, 1, r.cfg.latency_repeats);
  r.dense_lat64 = median_latency_ms(net, r.d.test, 64, std::max(2, r.cfg.latency_repeats / 4));
}

void stage_sensitivity(run_state& r) {
  auto m = load_dense(r);
  const std::vector<double> sparsities =
      r.cfg.smoke ? std::vector<double>{0.5, 0.9} : std::vector<double>{0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
  const auto params = m->parameters();
  std::size_t done = 0;
  const std::size_t total = 1 + prunable(params, false).size() * sparsities.size();
  const auto start = clock_type::now();
  auto eval = [&] {
    const double acc = evaluate(*m, r.d.held_out).accuracy;
    ++done;
    if (done % sparsities.size() == 1 || done == total)
      std::fprintf(stderr, "[sensitivity] %zu/%zu evaluations  acc %.2f%%  ETA %s\n", done, total, 100 * acc,
                   clock_text(seconds_since(start) / static_cast<double>(done) * static_cast<double>(total - done)).c_str());
    return acc;
  };
  spruce::sensitivity_options opt;
  opt.min_rank = 2;
  spruce::sensitivity_table t = spruce::sensitivity_scan(params, sparsities, eval, opt);
  spruce::io::write_csv(t, r.out / "sensitivity.csv");
  std::string data, script = "set title 'sensitivity scan: each layer pruned alone (held-out " +
                             std::to_string(r.d.held_out.n) + " images)'\nset xlabel 'sparsity'\nset ylabel "
                             "'accuracy'\nplot ";
  std::string cur;
  int block = -1;
  for (const auto& row_ : t.rows) {
    if (row_.tensor != cur) {
      cur = row_.tensor;
      ++block;
      data += (block ? "\n\n# " : "# ") + cur + "\n" + fmt("0 %.6f", t.baseline) + "\n";
      script += std::string(block ? ", " : "") + "$DATA index " + std::to_string(block) +
                " using 1:2 with linespoints title '" + cur + "'";
    }
    data += fmt("%.3f", row_.sparsity) + " " + fmt("%.6f", row_.metric) + "\n";
  }
  add_plot(r, "sensitivity scan", "sensitivity", script, data);
  r.notes.push_back("sensitivity scan: baseline " + fmt("%.2f%%", 100 * t.baseline) + " on " +
                    std::to_string(r.d.held_out.n) + " held-out test images; sensitivity.csv");
  r.scan = std::move(t);
  write_results(r);
}

void stage_fine_grained(run_state& r) {
  ensure_dense_reference(r);
  auto m = load_dense(r);
  spruce::sparsity_table table;
  std::string how;
  if (r.table_from_file) {
    table = *r.table_from_file;
    how = "table read from " + r.cfg.table->string();
  } else {
    if (!r.scan) stage_sensitivity(r);
    const derived_table d = derive_table(*r.scan, m->num_parameters(), r.cfg.budget, r.cfg.size_target);
    table = d.table;
    how = "table derived from the scan: budget " + fmt("%.4f", r.cfg.budget) +
          (d.widened ? " widened to " + fmt("%.4f", d.budget) + " to meet the size target" : std::string()) +
          ", at most " + std::to_string(d.nonzero) + " of " + std::to_string(d.dense) + " parameters nonzero";
  }
  std::string text = "# fine-grained sparsity table (" + how + ")\n";
  for (const auto& [name, a] : table) text += name + " " + fmt("%.4f", static_cast<double>(a)) + "\n";
  write_text(r.out / "fine_grained_table.txt", text);
  auto params = m->parameters();
  auto masks = spruce::fine_grained_prune(params, table);  // the lab's rule: threshold on |w|
  const double before = evaluate(*m, r.d.test).accuracy;
  tune_hooks h;
  h.after_step = [&](std::size_t) { masks.apply(); };
  fine_tune("fine-grained", *m, r.d.train, tune(r, r.cfg.epochs), h);
  const double after = evaluate(*m, r.d.test).accuracy;
  row w = make_row(r, "fine-grained", "lab table", all_tensors(*m), m->parameters(), false, true);
  w.acc_before = before;
  w.acc_after = after;
  w.checkpoint = "fine_grained.safetensors";
  w.note = how + "; nonzero size " + fmt("%.1f%%", 100.0 * static_cast<double>(w.stats.nonzero) /
                                                      static_cast<double>(w.stats.params)) +
           " of dense; latency here is the dense engine (see sparse rows)";
  save_model(r.out / w.checkpoint, all_tensors(*m), meta(r, "fine-grained", after));
  weight_histograms(r, "fine_grained_histograms", "fine-grained: nonzero weights after fine-tuning", m->parameters(),
                    true);
  finish_row(r, std::move(w));
  r.fine = owned_model{std::move(m), std::move(masks), "fine-grained"};
}

/// The backbone of a loaded model: every conv with its BN, then the classifier.
spruce::structural::sequential_backbone<float> backbone_of(std::vector<spruce::named_tensor<float>>& t) {
  std::map<std::string, spruce::tensor_ref<float>> by;
  for (auto& x : t) by.emplace(x.name, x.view);
  spruce::structural::sequential_backbone<float> b;
  for (std::size_t i = 0; by.count("backbone.conv" + std::to_string(i) + ".weight"); ++i) {
    const std::string c = "backbone.conv" + std::to_string(i), n = "backbone.bn" + std::to_string(i);
    b.add_conv(c, by.at(c + ".weight"));
    b.add_bn({by.at(n + ".weight"), by.at(n + ".bias"), by.at(n + ".running_mean"), by.at(n + ".running_var")});
  }
  b.set_classifier("classifier", by.at("classifier.weight"));
  return b;
}

/// A physically smaller network holding the backbone's (compacted) tensors.
std::unique_ptr<train::vgg> shrink(const spruce::structural::sequential_backbone<float>& b,
                                 std::span<const float> classifier_bias, std::size_t in_channels) {
  std::vector<std::size_t> ch;
  for (const auto& c : b.convs()) ch.push_back(c.weight.extent(0));
  auto f = std::make_unique<train::vgg>(train::vgg_config{0, in_channels, classifier_bias.size(), ch});
  std::map<std::string, spruce::tensor_ref<float>> dst;
  for (auto& x : all_tensors(*f)) dst.emplace(x.name, x.view);
  const auto copy = [&](const std::string& name, const spruce::tensor_ref<float>& src) {
    const auto& d = dst.at(name);
    if (d.size() != src.size()) throw spruce::error("shrink: size mismatch for " + name);
    std::copy(src.data(), src.data() + src.size(), d.data());
  };
  for (std::size_t i = 0; i < b.convs().size(); ++i) {
    const auto& c = b.convs()[i];
    const std::string n = "backbone.bn" + std::to_string(i);
    copy(c.name + ".weight", c.weight);
    copy(n + ".weight", c.bn->gamma);
    copy(n + ".bias", c.bn->beta);
    copy(n + ".running_mean", c.bn->mean);
    copy(n + ".running_var", c.bn->var);
  }
  copy("classifier.weight", b.classifier());
  std::copy(classifier_bias.begin(), classifier_bias.end(), dst.at("classifier.bias").data());
  return f;
}

std::string join_counts(const std::vector<std::size_t>& v) {
  std::string out;
  for (std::size_t c : v) {
    if (!out.empty()) out.push_back(' ');
    out.append(std::to_string(c));
  }
  return out;
}

std::span<const float> bias_of(std::vector<spruce::named_tensor<float>>& t) {
  for (auto& x : t)
    if (x.name == "classifier.bias") return {x.view.data(), x.view.size()};
  throw spruce::error("no classifier.bias");
}

void stage_channel(run_state& r) {
  ensure_dense_reference(r);
  const std::vector<double> ratios(7, 0.3);  // every conv but the last
  const std::size_t in = r.ck.config.in_channels;
  // Naive: the first 70% of each layer's channels.
  auto naive_src = load_dense(r);
  auto nt = all_tensors(*naive_src);
  auto nb = backbone_of(nt);
  nb.prune(ratios);
  auto naive = shrink(nb, bias_of(nt), in);
  const double naive_acc = evaluate(*naive, r.d.test).accuracy;
  row nw = make_row(r, "channel 30%", "naive (first k)", all_tensors(*naive), naive->parameters(), false, false);
  nw.acc_before = naive_acc;
  nw.acc_after = naive_acc;
  nw.checkpoint = "channel_naive.safetensors";
  nw.note = "not fine-tuned (the lab's comparison point)";
  save_model(r.out / nw.checkpoint, all_tensors(*naive), meta(r, "channel-naive", naive_acc));
  finish_row(r, std::move(nw));
  // Sorted: channels ordered by the L2 norm of the next layer's input slices, then pruned.
  auto src = load_dense(r);
  auto st = all_tensors(*src);
  auto sb = backbone_of(st);
  sb.sort_channels();
  sb.prune(ratios);
  auto sorted = shrink(sb, bias_of(st), in);
  const double before = evaluate(*sorted, r.d.test).accuracy;
  fine_tune("channel", *sorted, r.d.train, tune(r, r.cfg.channel_epochs));
  const double after = evaluate(*sorted, r.d.test).accuracy;
  row w = make_row(r, "channel 30%", "sorted", all_tensors(*sorted), sorted->parameters(), false, true);
  w.acc_before = before;
  w.acc_after = after;
  w.checkpoint = "channel_sorted.safetensors";
  const std::string ch = join_counts(sorted->channels());
  w.note = "channels " + ch + (before > naive_acc ? "; sorted above naive before fine-tuning"
                                                  : "; sorted NOT above naive before fine-tuning");
  save_model(r.out / w.checkpoint, all_tensors(*sorted), meta(r, "channel-sorted", after));
  finish_row(r, std::move(w));
}

void stage_slimming(run_state& r) {
  ensure_dense_reference(r);
  const std::vector<double> lambdas = {0, 1e-5, 1e-4};
  std::string data, script = "set title 'BN scale |gamma| after sparsity training'\nset xlabel '|gamma|'\nset "
                             "ylabel 'channels'\nplot ";
  fs::path chosen;
  for (std::size_t li = 0; li < lambdas.size(); ++li) {
    const double lambda = lambdas[li];
    auto m = load_dense(r);
    auto params = m->parameters();
    auto grads = m->gradients();
    std::vector<std::size_t> bn;
    for (std::size_t i = 0; i < params.size(); ++i)
      if (params[i].name.find(".bn") != std::string::npos && params[i].name.ends_with(".weight")) bn.push_back(i);
    tune_hooks h;
    h.before_step = [&] {
      if (lambda > 0)
        for (std::size_t i : bn)
          spruce::structural::add_l1_subgradient(grads[i].view, params[i].view, static_cast<float>(lambda),
                                                 params[i].name);
    };
    const std::string label = "slimming lambda " + fmt("%g", lambda);
    fine_tune(label, *m, r.d.train, tune(r, r.cfg.slim_epochs), h);
    std::vector<float> g;
    float hi = 0;
    for (std::size_t i : bn)
      for (std::size_t k = 0; k < params[i].view.size(); ++k) {
        g.push_back(std::fabs(params[i].view.data()[k]));
        hi = std::max(hi, g.back());
      }
    data += std::string(li ? "\n\n" : "") + "# lambda " + fmt("%g", lambda) + "\n" + histogram(g, 0, std::max(hi, 1e-3f), 40);
    script += std::string(li ? ", " : "") + "$DATA index " + std::to_string(li) + " using 1:2 with steps title 'lambda " +
              fmt("%g", lambda) + "'";
    const fs::path path = r.out / ("slimming_sparsity_lambda" + fmt("%g", lambda) + ".safetensors");
    save_model(path, all_tensors(*m), meta(r, label, evaluate(*m, r.d.test).accuracy));
    chosen = path;
  }
  add_plot(r, "network slimming: gamma distributions", "slimming_gamma", script, data);
  for (double percent : {0.5, 0.7}) {
    train::vgg src(r.ck.config);
    auto t = all_tensors(src);
    load_into(chosen, t);
    auto params = src.parameters();
    std::vector<spruce::named_tensor<float>> gammas;
    for (auto& p : params)
      if (p.name.find(".bn") != std::string::npos && p.name.ends_with(".weight")) gammas.push_back(p);
    // The per-layer minimum: 2 channels, and a fraction of every layer (a cap on its pruned
    // fraction): scales that were not trained sparse put the late layers' gammas lowest, and
    // a bare global threshold would hollow them out.
    const std::size_t min_keep = 2;
    spruce::sparsity_limits limits;
    limits.min_kept = min_keep;
    limits.max = 1.0 - r.cfg.slim_layer_keep;
    const auto res = spruce::structural::slimming_masks(gammas, percent, limits);
    auto b = backbone_of(t);
    std::vector<double> ratios;
    for (std::size_t i = 0; i < b.groups(); ++i) {
      auto g = b.group(i);
      std::vector<float> score(gammas[i].view.size());
      for (std::size_t k = 0; k < score.size(); ++k) score[k] = std::fabs(gammas[i].view.data()[k]);
      g.sort_by(score);  // a permutation: shapes stay, so the backbone's views stay valid
      const std::size_t kept = res[i].count_kept();
      ratios.push_back(1.0 - static_cast<double>(kept) / static_cast<double>(score.size()));
    }
    b.prune(ratios);
    auto slim = shrink(b, bias_of(t), r.ck.config.in_channels);
    const double before = evaluate(*slim, r.d.test).accuracy;
    const std::string label = "slimming " + fmt("%.0f%%", 100 * percent);
    fine_tune(label, *slim, r.d.train, tune(r, r.cfg.slim_tune_epochs));
    const double after = evaluate(*slim, r.d.test).accuracy;
    row w = make_row(r, label, "lambda 1e-4 global gamma", all_tensors(*slim), slim->parameters(), false, true);
    w.acc_before = before;
    w.acc_after = after;
    w.checkpoint = "slimming_" + fmt("%.0f", 100 * percent) + ".safetensors";
    const std::string ch = join_counts(slim->channels());
    w.note = "threshold |gamma| " + fmt("%.4g", static_cast<double>(res.threshold)) + ", per-layer minimum " +
             std::to_string(min_keep) + " and " + fmt("%g", 100 * r.cfg.slim_layer_keep) + "% of each layer, channels " + ch;
    save_model(r.out / w.checkpoint, all_tensors(*slim), meta(r, label, after));
    finish_row(r, std::move(w));
  }
}

void stage_gradual(run_state& r) {
  ensure_dense_reference(r);
  std::string data, script = "set title 'gradual AGP pruning to 90%: test accuracy per epoch'\nset xlabel "
                             "'epoch'\nset ylabel 'accuracy'\nset y2label 'sparsity'\nset y2tics\nplot ";
  int block = 0;
  for (const auto where : {spruce::scope::per_tensor, spruce::scope::global}) {
    const std::string name = where == spruce::scope::per_tensor ? "per tensor" : "global";
    auto m = load_dense(r);
    auto targets = prunable(m->parameters(), true);
    const std::size_t per_epoch = std::max<std::size_t>(1, r.d.train.n / 128);
    const auto end = static_cast<std::int64_t>((r.cfg.gradual_epochs - 1) * per_epoch);
    const auto freq = std::max<std::int64_t>(1, static_cast<std::int64_t>(per_epoch / 4));
    const auto sched = spruce::schedule::agp(0.0, 0.9, 0, std::max<std::int64_t>(1, end), freq);
    const spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::threshold> p{};
    spruce::masked_parameters<float> masks;
    tune_hooks h;
    h.after_step = [&](std::size_t step) {
      if (auto reg = spruce::prune_at_step(sched, static_cast<std::int64_t>(step), p, targets, where))
        masks = std::move(*reg);
      masks.apply();
    };
    std::string curve = "# " + name + "\n" + fmt("0 %.6f 0", r.dense_acc) + "\n";
    h.after_epoch = [&](std::size_t e) {
      std::size_t z = 0, n = 0;
      for (const auto& t : targets) {
        n += t.view.size();
        for (std::size_t i = 0; i < t.view.size(); ++i) z += t.view.data()[i] == 0.0f;
      }
      const double acc = evaluate(*m, r.d.test).accuracy;
      std::fprintf(stderr, "[gradual %s] epoch %zu: test accuracy %.2f%%, sparsity %.1f%%\n", name.c_str(), e,
                   100 * acc, 100.0 * static_cast<double>(z) / static_cast<double>(n));
      curve += std::to_string(e) + " " + fmt("%.6f", acc) + " " + fmt("%.6f", static_cast<double>(z) / static_cast<double>(n)) + "\n";
    };
    fine_tune("gradual " + name, *m, r.d.train, tune(r, r.cfg.gradual_epochs), h);
    const double after = evaluate(*m, r.d.test).accuracy;
    data += std::string(block ? "\n\n" : "") + curve;
    script += std::string(block ? ", " : "") + "$DATA index " + std::to_string(block) + " using 1:2 with linespoints title '" +
              name + " accuracy', $DATA index " + std::to_string(block) + " using 1:3 axes x1y2 with lines dt 2 title '" +
              name + " sparsity'";
    ++block;
    row w = make_row(r, "gradual 90%", "AGP " + name, all_tensors(*m), m->parameters(), false, true);
    w.acc_after = after;
    w.checkpoint = "gradual_" + std::string(where == spruce::scope::per_tensor ? "per_tensor" : "global") + ".safetensors";
    w.note = "every conv but the first and the classifier pruned; latency here is the dense engine";
    save_model(r.out / w.checkpoint, all_tensors(*m), meta(r, "gradual " + name, after));
    finish_row(r, std::move(w));
    if (where == spruce::scope::per_tensor) r.gradual = owned_model{std::move(m), std::move(masks), "gradual per tensor"};
  }
  add_plot(r, "gradual pruning", "gradual", script, data);
}

void stage_2_4(run_state& r) {
  ensure_dense_reference(r);
  auto m = load_dense(r);
  spruce::masked_parameters<float> masks;
  for (auto& p : prunable(m->parameters(), true))
    if (p.view.rank() == 4) masks.add(p.name, p.view, spruce::n_m_prune(p.view, spruce::granularity::n_m<2, 4>{}, p.name));
  const double before = evaluate(*m, r.d.test).accuracy;
  tune_hooks h;
  h.after_step = [&](std::size_t) { masks.apply(); };
  fine_tune("2:4", *m, r.d.train, tune(r, r.cfg.epochs), h);
  const double after = evaluate(*m, r.d.test).accuracy;
  // The pattern, checked on the final weights themselves (not on the masks).
  std::size_t checked = 0;
  for (const auto& e : masks.entries()) {
    const auto shape = e.view.shape();
    spruce::byte_buffer bytes(e.view.size(), 0);
    for (std::size_t i = 0; i < e.view.size(); ++i) bytes.data()[i] = e.view.data()[i] != 0.0f;
    const spruce::mask nonzero(shape, std::move(bytes));
    spruce::check_n_m(nonzero, spruce::granularity::n_m<2, 4>{}, e.name);
    ++checked;
  }
  row w = make_row(r, "2:4", "every conv but the first", all_tensors(*m), m->parameters(), true, true);
  w.acc_before = before;
  w.acc_after = after;
  w.checkpoint = "n_m_2_4.safetensors";
  w.note = "2:4 along the input axis verified on the final weights of " + std::to_string(checked) +
           " convs; latency here is the dense engine";
  save_model(r.out / w.checkpoint, all_tensors(*m), meta(r, "2:4", after));
  finish_row(r, std::move(w));
}

void sparse_row(run_state& r, owned_model& om) {
  auto tensors = all_tensors(*om.model);
  infer::network net = inference_network(tensors);
  for (std::size_t i = 0; i < net.blocks().size(); ++i) {
    const std::string name = "backbone.conv" + std::to_string(i) + ".weight";
    if (om.masks.contains(name)) net.set_mask(i, om.masks.keep_mask(name));
  }
  const auto h = r.d.test.h, wd = r.d.test.w;
  const auto formats = [&](const std::vector<spruce::sparse::execution_choice>& cs) {
    std::string s;
    for (std::size_t i = 0; i < cs.size(); ++i) s += (i ? ", " : "") + cs[i].format;
    return s;
  };
  const auto c1 = net.choose(1, h, wd, r.cfg.choose_repeats);
  const double lat1 = median_latency_ms(net, r.d.test, 1, r.cfg.latency_repeats);
  const auto c64 = net.choose(64, h, wd, r.cfg.choose_repeats);
  const double lat64 = median_latency_ms(net, r.d.test, 64, std::max(2, r.cfg.latency_repeats / 4));
  std::vector<float> sparse_logits;
  const double sparse_acc = infer_accuracy(net, r.d.test, &sparse_logits);
  const std::vector<float> dense_logits = all_logits(*om.model, r.d.test);
  const double dense_acc = evaluate(*om.model, r.d.test).accuracy;
  double max_diff = 0, max_mag = 0;
  for (std::size_t i = 0; i < dense_logits.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(dense_logits[i] - sparse_logits[i])));
    max_mag = std::max(max_mag, static_cast<double>(std::fabs(dense_logits[i])));
  }
  const double tol = 1e-4 * std::max(1.0, max_mag);
  row w = make_row(r, "sparse inference", om.name, tensors, om.model->parameters(), false, false);
  w.acc_before = dense_acc;
  w.acc_after = sparse_acc;
  w.lat1 = lat1;
  w.lat64 = lat64;
  w.note = "acc before = the training library's dense forward, after = spruce::sparse; max |logit difference| " +
           fmt("%.3g", max_diff) + (max_diff <= tol ? " (within " : " (ABOVE ") + fmt("%.3g", tol) + ")" +
           (sparse_acc == dense_acc ? ", identical accuracy" : ", ACCURACY DIFFERS") + "; formats b1: " + formats(c1) +
           "; b64: " + formats(c64);
  const bool ok = max_diff <= tol && sparse_acc == dense_acc;
  finish_row(r, std::move(w));
  if (!ok) throw spruce::error("sparse inference of " + om.name + " disagrees with the dense forward (see summary.md)");
}

void stage_sparse(run_state& r) {
  ensure_dense_reference(r);
  if (!r.fine) {  // run alone: the dense model pruned in one shot, without fine-tuning
    auto m = load_dense(r);
    spruce::sparsity_table t;
    for (auto& p : prunable(m->parameters(), false)) t.emplace(p.name, 0.75);
    auto masks = spruce::fine_grained_prune(m->parameters(), t);
    r.fine = owned_model{std::move(m), std::move(masks), "one-shot 75% (no fine-grained stage)"};
  }
  if (!r.gradual) {
    auto m = load_dense(r);
    auto targets = prunable(m->parameters(), true);
    const spruce::pruner<spruce::granularity::element, spruce::criterion::l1, spruce::selection::threshold> p{{}, {}, {0.9}};
    auto masks = spruce::global_prune(p, targets);
    r.gradual = owned_model{std::move(m), std::move(masks), "one-shot global 90% (no gradual stage)"};
  }
  sparse_row(r, *r.fine);
  sparse_row(r, *r.gradual);
}

// Network slimming on the bottleneck ResNet (lab/resnet_stage.cpp), from its own committed
// dense checkpoint; its rows, plot and notes join the table.
void stage_slimming_resnet(run_state& r) {
  // The stage's own recipe (lab/resnet_stage.hpp) with the --resnet-* flags applied; the
  // smoke run shortens the epoch counts that were not given.
  lab::resnet_stage_options o = r.cfg.resnet;
  o.checkpoint = resnet_checkpoint();
  o.data_dir = r.cfg.data;
  if (r.cfg.smoke) o.epochs = o.tune_epochs = 1;
  if (r.cfg.resnet_epochs) o.epochs = r.cfg.resnet_epochs;
  if (r.cfg.resnet_tune_epochs) o.tune_epochs = r.cfg.resnet_tune_epochs;
  o.log_every = r.cfg.log_every;
  o.latency_repeats = r.cfg.latency_repeats;
  auto res = lab::run_slimming_resnet(o, r.d, r.out);
  for (auto& x : res.rows) {
    row w;
    w.stage = x.stage;
    w.variant = x.variant;
    w.acc_before = x.acc_before;
    w.acc_after = x.acc_after;
    w.stats = x.stats;
    w.lat1 = x.lat1;
    w.lat64 = x.lat64;
    w.checkpoint = x.checkpoint;
    w.note = x.note;
    finish_row(r, std::move(w));
  }
  r.plots.insert(r.plots.end(), res.plots.begin(), res.plots.end());
  r.notes.insert(r.notes.end(), res.notes.begin(), res.notes.end());
  if (!res.failure.empty()) throw spruce::error(res.failure);
}

std::string now_tag() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &tm);
  return text;
}

int run(const config& c) {
  run_state r;
  r.cfg = c;
  r.ck = open_checkpoint(c.checkpoint);  // bad checkpoints fail here, before any work
  if (c.table) {
    train::vgg probe(r.ck.config);
    std::vector<std::string> known;
    for (auto& p : probe.parameters())
      if (p.view.rank() >= 2) known.push_back(p.name);
    r.table_from_file = read_table_file(c.table->string(), known);
  }
  r.out = c.out ? *c.out : fs::path("prune_lab_" + now_tag());
  std::error_code ec;
  if (fs::exists(r.out, ec))
    throw usage_error("the run folder '" + r.out.string() + "' exists; pass a new --out DIR (runs never overwrite)");
  r.d = load_data(c.data, r.ck.stats, c.train_images, c.test_images, c.held_out);
  fs::create_directories(r.out);
  std::printf("prune_lab: run folder %s; %zu training / %zu test images; stages:", r.out.string().c_str(), r.d.train.n,
              r.d.test.n);
  for (const auto& s : all_stages)
    if (c.stages.count(s)) std::printf(" %s", s.c_str());
  std::printf("\n");
  std::fflush(stdout);
  const auto start = clock_type::now();
  write_results(r);
  for (const auto& s : all_stages) {
    if (!c.stages.count(s)) continue;
    const auto t0 = clock_type::now();
    std::fprintf(stderr, "== stage %s (run time so far %s)\n", s.c_str(), clock_text(seconds_since(start)).c_str());
    if (s == "dense") stage_dense(r);
    else if (s == "sensitivity") stage_sensitivity(r);
    else if (s == "fine-grained") stage_fine_grained(r);
    else if (s == "channel") stage_channel(r);
    else if (s == "slimming") stage_slimming(r);
    else if (s == "gradual") stage_gradual(r);
    else if (s == "2:4") stage_2_4(r);
    else if (s == "sparse") stage_sparse(r);
    else if (s == "slimming-resnet") stage_slimming_resnet(r);
    r.notes.push_back("stage " + s + ": " + clock_text(seconds_since(t0)));
    write_results(r);
  }
  r.notes.push_back("whole run: " + clock_text(seconds_since(start)));
  write_results(r);
  std::printf("\n");
  std::string summary;
  {
    std::FILE* f = std::fopen((r.out / "summary.md").c_str(), "r");
    if (f) {
      char buf[4096];
      std::size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) summary.append(buf, n);
      std::fclose(f);
    }
  }
  std::printf("%s\nprune_lab: done in %s; results in %s (summary.md, results.csv, report.html)\n", summary.c_str(),
              clock_text(seconds_since(start)).c_str(), r.out.string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  config c;
  try {
    c = parse(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "prune_lab: %s\n", e.what());
    usage(stderr);
    return exit_usage;
  }
  try {
    return run(c);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "prune_lab: %s\n", e.what());
    return exit_usage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prune_lab: %s\n", e.what());
    if (data_missing(c.data)) {
      std::fprintf(stderr, "prune_lab: skipping, the data set is not installed\n");
      return exit_skip;
    }
    return 1;
  }
}
