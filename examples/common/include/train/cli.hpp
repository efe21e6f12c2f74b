#pragma once
// Small pieces the example programs share: command-line number parsing with clear
// messages, a comma-separated float list (normalisation metadata), and the test-set
// evaluation loop. Header-only so that each program compiles them with its own flags.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "train/data.hpp"
#include "train/layers.hpp"

namespace train {

/// A bad command line: the programs print the message and their usage, and exit 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// `text` as a finite number; throws usage_error naming `flag` otherwise.
inline double parse_number(std::string_view flag, const std::string& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !std::isfinite(v))
    throw usage_error(std::string(flag).append(" expects a number, got '").append(text).append("'"));
  return v;
}

/// `text` as a whole number >= 0; throws usage_error naming `flag` otherwise.
inline std::size_t parse_count(std::string_view flag, const std::string& text) {
  const double v = parse_number(flag, text);
  if (v < 0 || v != std::floor(v))
    throw usage_error(std::string(flag).append(" expects a whole number >= 0, got '").append(text).append("'"));
  return static_cast<std::size_t>(v);
}

/// "0.28,0.35" -> {0.28f, 0.35f} (the checkpoints' normalisation metadata).
inline std::vector<float> split_floats(const std::string& text) {
  std::vector<float> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stof(item));
  return out;
}

/// Test-set loss, accuracy and evaluation speed.
struct evaluation {
  double loss = 0, accuracy = 0, images_per_second = 0;
};

/// Evaluates `model` (anything with eval()/train()/forward(images, n, h, w)) on `data` in
/// batches of 500, in order, and puts it back in training mode.
template <class Model>
evaluation evaluate(Model& model, const dataset& data) {
  model.eval();
  batch_loader loader(data, 500, false, 0);
  loader.start_epoch(0);
  batch b;
  softmax_cross_entropy<float> ce;
  double loss = 0;
  std::size_t correct = 0;
  const auto start = std::chrono::steady_clock::now();
  while (loader.next(b)) {
    loss += ce.forward(model.forward(b.images, b.n, data.h, data.w), b.labels) * static_cast<double>(b.n);
    correct += ce.correct();
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  model.train();
  const double n = static_cast<double>(data.n);
  return {loss / n, static_cast<double>(correct) / n, n / std::max(1e-9, elapsed)};
}

}  // namespace train
