// Throughput of the training library on the lab's VGG: images/s of a training step
// (forward, cross-entropy, backward, SGD with Nesterov momentum and weight decay) and of an
// evaluation forward, at a fixed batch, on synthetic normalised images (the speed does not
// depend on the pixel values). Each figure is the median of --repeats timed runs of --steps
// batches after --warmup untimed batches; the spread (min and max) is printed beside it.
//
//   bench_train [--width 0.125] [--batch 128] [--size 28] [--steps 40] [--repeats 5]
//               [--warmup 5] [--eval-batch 128]
//
// Threads: OMP_NUM_THREADS (the machine's core count by default).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "train/layers.hpp"
#include "train/model.hpp"
#include "train/optim.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  double width = 0.125;
  std::size_t batch = 128, eval_batch = 128, size = 28, steps = 40, repeats = 5, warmup = 5;
};

struct figure {
  double median = 0, lo = 0, hi = 0;
};

figure summarise(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size();
  return {m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]), v.front(), v.back()};
}

double load_average() {
  double l = -1;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_train: %s needs a value\n", argv[i]);
      return 2;
    }
    const double v = std::atof(argv[++i]);
    if (flag == "--width") o.width = v;
    else if (flag == "--batch") o.batch = static_cast<std::size_t>(v);
    else if (flag == "--eval-batch") o.eval_batch = static_cast<std::size_t>(v);
    else if (flag == "--size") o.size = static_cast<std::size_t>(v);
    else if (flag == "--steps") o.steps = static_cast<std::size_t>(v);
    else if (flag == "--repeats") o.repeats = static_cast<std::size_t>(v);
    else if (flag == "--warmup") o.warmup = static_cast<std::size_t>(v);
    else {
      std::fprintf(stderr, "bench_train: unknown flag %s\n", argv[i - 1]);
      return 2;
    }
  }
  if (o.batch < 2 || o.eval_batch < 1 || o.steps < 1 || o.repeats < 1) {
    std::fprintf(stderr, "bench_train: --batch >= 2, --eval-batch, --steps, --repeats >= 1\n");
    return 2;
  }
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const std::size_t hw = o.size * o.size, nb = std::max(o.batch, o.eval_batch);
  std::mt19937 rng(7);
  std::normal_distribution<float> pixel(0.f, 1.f);
  std::vector<float> images(nb * hw);
  for (float& v : images) v = pixel(rng);
  std::vector<std::int32_t> labels(nb);
  for (std::size_t i = 0; i < nb; ++i) labels[i] = static_cast<std::int32_t>(rng() % 10);

  train::vgg model(train::vgg_config{o.width, 1, 10}, 1);
  train::sgd_options so;
  so.lr = 0.01;
  so.momentum = 0.9;
  so.weight_decay = 5e-4;
  so.nesterov = true;
  train::sgd opt(model.parameters(), model.gradients(), so);
  train::softmax_cross_entropy<float> ce;
  train::tensor<float> dlogits;
  const std::span<const float> train_images(images.data(), o.batch * hw);
  const std::span<const std::int32_t> train_labels(labels.data(), o.batch);
  const auto train_step = [&] {
    ce.forward(model.forward(train_images, o.batch, o.size, o.size), train_labels);
    ce.backward(dlogits);
    model.backward(dlogits);
    opt.step();
  };
  const std::span<const float> eval_images(images.data(), o.eval_batch * hw);
  float sink = 0;
  const auto eval_step = [&] {
    sink += model.forward(eval_images, o.eval_batch, o.size, o.size)[0];
  };
  const auto measure = [&](auto&& step, std::size_t batch) {
    for (std::size_t i = 0; i < o.warmup; ++i) step();
    std::vector<double> rates;
    for (std::size_t r = 0; r < o.repeats; ++r) {
      const auto start = clock_type::now();
      for (std::size_t i = 0; i < o.steps; ++i) step();
      const double s = std::chrono::duration<double>(clock_type::now() - start).count();
      rates.push_back(static_cast<double>(o.steps * batch) / s);
    }
    return summarise(rates);
  };
  const double load_before = load_average();
  model.train();
  const figure tr = measure(train_step, o.batch);
  model.eval();
  const figure ev = measure(eval_step, o.eval_batch);
  std::printf(
      "bench_train: width %g, %zux%zu, %d threads, load average %.2f before\n"
      "  train  batch %3zu: %7.0f images/s (min %.0f, max %.0f; %zu x %zu steps)\n"
      "  eval   batch %3zu: %7.0f images/s (min %.0f, max %.0f)\n",
      o.width, o.size, o.size, threads, load_before, o.batch, tr.median, tr.lo, tr.hi, o.repeats,
      o.steps, o.eval_batch, ev.median, ev.lo, ev.hi);
  return sink == 12345.f ? 3 : 0;  // keeps the evaluation forward from being optimised away
}
