// The main demo for now: builds the MIT lab's VGG parameter set (conv3x3-BN-ReLU backbone,
// linear classifier, Kaiming-normal init with a fixed seed), prunes it with the lab's
// per-layer sparsity table under the threshold rule, and prints what it did: per-layer
// sparsity and time, then the model's parameters, size and sparsity before and after.
// Later issues turn it into the full VGG pipeline on Fashion-MNIST.
//
//   prune_tensor [--width W] [--uniform S] [--exact]
//     --width W    channel width multiplier of the VGG (default 1: 9.2 M parameters)
//     --uniform S  prune every conv weight to sparsity S instead of the lab's table
//     --exact      use torch's exact-count rule instead of the lab's threshold rule
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <spruce/spruce.hpp>

namespace {

struct options {
  double width = 1.0;
  double uniform = -1.0;
  bool exact = false;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "prune_tensor: %s\nusage: prune_tensor [--width W] [--uniform S] [--exact]\n", why);
  std::exit(2);
}

double number_arg(int& i, int argc, char** argv) {
  if (i + 1 >= argc) usage((std::string(argv[i]) + " needs a number").c_str());
  char* end = nullptr;
  const double v = std::strtod(argv[++i], &end);
  if (end == argv[i] || *end != '\0') usage((std::string("not a number: ") + argv[i]).c_str());
  return v;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--width") o.width = number_arg(i, argc, argv);
    else if (a == "--uniform") o.uniform = number_arg(i, argc, argv);
    else if (a == "--exact") o.exact = true;
    else usage(("unknown argument " + a).c_str());
  }
  if (!(o.width > 0.0 && o.width <= 4.0)) usage("--width must be in (0, 4]");
  return o;
}

struct parameter {
  std::string name;
  std::vector<std::size_t> shape;
  std::vector<float> data;
};

// The lab's VGG: cfg (64, 128, M, 256, 256, M, 512, 512, M, 512, 512, M), 3 input channels.
std::vector<parameter> make_vgg(double width, std::mt19937& rng) {
  const int cfg[] = {64, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
  std::vector<parameter> p;
  std::size_t in = 3;
  int conv = 0;
  for (int c : cfg) {
    if (c == 0) continue;
    const auto out = static_cast<std::size_t>(c * width);
    const std::string base = "backbone.conv" + std::to_string(conv);
    std::normal_distribution<float> kaiming(0.0f, std::sqrt(2.0f / static_cast<float>(in * 9)));
    parameter w{base + ".weight", {out, in, 3, 3}, std::vector<float>(out * in * 9)};
    for (float& x : w.data) x = kaiming(rng);
    p.push_back(std::move(w));
    p.push_back({"backbone.bn" + std::to_string(conv) + ".weight", {out}, std::vector<float>(out, 1.0f)});
    p.push_back({"backbone.bn" + std::to_string(conv) + ".bias", {out}, std::vector<float>(out, 0.0f)});
    in = out;
    ++conv;
  }
  std::normal_distribution<float> g(0.0f, std::sqrt(1.0f / static_cast<float>(in)));
  parameter fc{"classifier.weight", {10, in}, std::vector<float>(10 * in)};
  for (float& x : fc.data) x = g(rng);
  p.push_back(std::move(fc));
  p.push_back({"classifier.bias", {10}, std::vector<float>(10, 0.0f)});
  return p;
}

template <class Rule>
spruce::masked_parameters<float> prune(const std::vector<spruce::named_tensor<float>>& views,
                                        const spruce::sparsity_table& table) {
  return spruce::fine_grained_prune<Rule>(views, table);
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);
  std::mt19937 rng(2026);
  std::vector<parameter> params = make_vgg(opt.width, rng);

  std::vector<spruce::named_tensor<float>> views;
  for (auto& p : params) views.push_back({p.name, spruce::tensor_ref<float>(p.data.data(), p.shape)});

  // The lab's final sparsity table (conv0 and the classifier stay dense).
  spruce::sparsity_table table{{"backbone.conv1.weight", 0.6},  {"backbone.conv2.weight", 0.5},
                               {"backbone.conv3.weight", 0.5},  {"backbone.conv4.weight", 0.5},
                               {"backbone.conv5.weight", 0.6},  {"backbone.conv6.weight", 0.6},
                               {"backbone.conv7.weight", 0.75}};
  if (opt.uniform >= 0.0)
    for (auto& [name, s] : table) s = opt.uniform;

  const auto dense_params = spruce::num_parameters(views);
  const auto dense_bits = spruce::model_size_bits(views, 32);
  std::printf("VGG (width %.3g): %zu tensors, %llu parameters, %.2f MiB dense\n", opt.width,
              views.size(), static_cast<unsigned long long>(dense_params),
              static_cast<double>(dense_bits) / 8.0 / 1024.0 / 1024.0);
  std::printf("rule: %s\n\n", opt.exact ? "exact (torch.nn.utils.prune, ties by lower index)"
                                        : "threshold (MIT lab: prune |w| <= k-th smallest)");

  const auto t0 = std::chrono::steady_clock::now();
  auto reg = opt.exact ? prune<spruce::selection::exact>(views, table)
                       : prune<spruce::selection::threshold>(views, table);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  std::printf("%-24s %-20s %8s %10s %10s\n", "tensor", "shape", "target", "pruned", "sparsity");
  for (const auto& e : reg.entries()) {
    const double target = table.find(e.name)->second;
    std::printf("%-24s %-20s %8.3f %10zu %10.4f\n", e.name.c_str(),
                spruce::shape_string(e.view.shape()).c_str(), target, e.keep.count_pruned(),
                spruce::sparsity(e.view));
  }
  const auto nz_params = spruce::num_parameters(views, true);
  const auto nz_bits = spruce::model_size_bits(views, 32, true);
  std::printf("\nmasks for %zu tensors computed and applied in %.2f ms\n", reg.size(), ms);
  std::printf("parameters: %llu -> %llu nonzero (model sparsity %.4f)\n",
              static_cast<unsigned long long>(dense_params), static_cast<unsigned long long>(nz_params),
              spruce::model_sparsity(views));
  std::printf("size: %.2f MiB dense -> %.2f MiB of nonzero weights (%.2fx smaller)\n",
              static_cast<double>(dense_bits) / 8.0 / 1024.0 / 1024.0,
              static_cast<double>(nz_bits) / 8.0 / 1024.0 / 1024.0,
              static_cast<double>(dense_bits) / static_cast<double>(nz_bits));

  // A fine-tuning step moves pruned weights off zero; the registry puts them back.
  for (auto& p : params)
    for (float& x : p.data) x += 1e-3f;
  reg.apply();
  bool restored = true;
  for (const auto& e : reg.entries()) restored = restored && spruce::count_nonzero(e.view) == e.keep.count_kept();
  std::printf("after a simulated optimizer step, apply() zeroed the pruned weights again: %s\n",
              restored ? "yes" : "NO");
  reg.make_permanent();
  return restored ? 0 : 1;
}
