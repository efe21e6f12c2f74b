#include "lab/lab.hpp"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <spruce/core/error.hpp>
#include <spruce/io/atomic_file.hpp>

#include "lab/table.hpp"
#include "train/checkpoint.hpp"

namespace lab {

std::string clock_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char text[32];
  std::snprintf(text, sizeof text, "%ld:%02ld", s / 60, s % 60);
  return text;
}

std::string fmt(const char* f, double x) {
  char text[64];
  std::snprintf(text, sizeof text, f, x);
  return text;
}

namespace {

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::vector<spruce::named_tensor<float>> all_tensors(train::vgg& m) {
  auto t = m.parameters();
  for (auto& b : m.buffers()) t.push_back(b);
  return t;
}

dense_checkpoint open_checkpoint(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw spruce::error("the dense checkpoint '" + path.string() +
                        "' does not exist; pass --checkpoint PATH (the committed one is "
                        "examples/checkpoints/vgg_fmnist_w0125.safetensors)");
  dense_checkpoint c;
  c.path = path;
  c.metadata = train::read_safetensors_metadata(path);
  const auto get = [&](const char* k) -> std::optional<std::string> {
    const auto it = c.metadata.find(k);
    return it == c.metadata.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  if (auto w = get("width")) c.config.width = std::stod(*w);
  if (auto ch = get("in_channels")) c.config.in_channels = std::stoul(*ch);
  const auto m = get("normalise_mean"), s = get("normalise_std");
  if (!m || !s)
    throw spruce::error("checkpoint '" + path.string() +
                        "' has no normalise_mean / normalise_std metadata; pass a checkpoint written by train_dense");
  c.stats.mean = split_floats(*m);
  c.stats.stddev = split_floats(*s);
  // Validates every name and shape now (load_safetensors lists all offenders), so a wrong
  // file fails before the first stage.
  train::vgg probe(c.config);
  load_into(path, all_tensors(probe));
  return c;
}

void load_into(const fs::path& path, std::vector<spruce::named_tensor<float>> tensors) {
  try {
    train::load_safetensors(path, tensors);
  } catch (const spruce::error& e) {
    throw spruce::error("checkpoint '" + path.string() + "' does not fit the lab VGG: " + e.what());
  }
}

data_sets load_data(const fs::path& dir, const train::channel_stats& stats, std::size_t train_limit,
                    std::size_t test_limit, std::size_t held_out) {
  data_sets d;
  d.train = train::load_fashion_mnist(dir, train::split::train);
  d.test = train::load_fashion_mnist(dir, train::split::test);
  if (train_limit) d.train = train::take_first(d.train, train_limit);
  if (test_limit) d.test = train::take_first(d.test, test_limit);
  train::normalise(d.train, stats);
  train::normalise(d.test, stats);
  d.held_out = train::take_first(d.test, held_out ? held_out : d.test.n);
  return d;
}

model_stats stats_of(const std::vector<spruce::named_tensor<float>>& params, std::size_t h, std::size_t w, bool n_m) {
  model_stats s;
  std::size_t conv = 0;
  for (const auto& t : params) {
    const auto& v = t.view;
    const std::size_t n = v.size();
    std::size_t nz = 0;
    for (std::size_t i = 0; i < n; ++i) nz += v.data()[i] != 0.0f;
    s.params += n;
    s.nonzero += nz;
    if (v.rank() == 4) {
      s.channels.push_back(v.extent(0));
      const std::uint64_t pos = static_cast<std::uint64_t>(h) * w;
      s.macs += n * pos;
      s.effective_macs += nz * pos;
      if (train::vgg_pool_after(conv)) h /= 2, w /= 2;
      ++conv;
    } else if (v.rank() == 2) {
      s.macs += n;
      s.effective_macs += nz;
    }
    if (v.rank() >= 2) {
      const double rows = static_cast<double>(v.extent(0));
      const double dense = 4.0 * static_cast<double>(n);
      const double csr = 8.0 * static_cast<double>(nz) + 4.0 * (rows + 1);
      const double nm = v.rank() == 4 && n_m && v.extent(1) >= 4 ? 4.0 * n / 2.0 + n / 2.0 * 0.25 : dense;
      s.stored_bytes += std::min({dense, csr, nm});
    } else {
      s.stored_bytes += 4.0 * static_cast<double>(n);
    }
  }
  return s;
}

infer::network inference_network(const std::vector<spruce::named_tensor<float>>& tensors) {
  std::map<std::string, const spruce::named_tensor<float>*> by;
  for (const auto& t : tensors) by[t.name] = &t;
  const auto get = [&](const std::string& n) -> const spruce::tensor_ref<float>& {
    const auto it = by.find(n);
    if (it == by.end()) throw spruce::error("inference network: no tensor '" + n + "'");
    return it->second->view;
  };
  const auto span_of = [](const spruce::tensor_ref<float>& v) { return std::span<const float>(v.data(), v.size()); };
  infer::network net;
  for (std::size_t i = 0; by.count("backbone.conv" + std::to_string(i) + ".weight"); ++i) {
    const std::string c = "backbone.conv" + std::to_string(i), b = "backbone.bn" + std::to_string(i);
    const auto& w = get(c + ".weight");
    net.add_conv(span_of(w), w.extent(0), w.extent(1),
                 {span_of(get(b + ".weight")), span_of(get(b + ".bias")), span_of(get(b + ".running_mean")),
                  span_of(get(b + ".running_var"))},
                 train::vgg_pool_after(i));
  }
  net.set_classifier(span_of(get("classifier.weight")), span_of(get("classifier.bias")));
  return net;
}

double median_latency_ms(const infer::network& net, const train::dataset& data, std::size_t batch, int repeats) {
  batch = std::min(batch, data.n);
  const std::span<const float> images(data.images.data(), batch * data.image_size());
  infer::workspace ws;
  std::vector<float> logits;
  net.forward(images, batch, data.h, data.w, logits, ws);
  std::vector<double> t;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto s = clock_type::now();
    net.forward(images, batch, data.h, data.w, logits, ws);
    t.push_back(seconds_since(s) * 1e3);
  }
  std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
  return t[t.size() / 2];
}

double infer_accuracy(const infer::network& net, const train::dataset& data, std::vector<float>* logits_out) {
  infer::workspace ws;
  std::vector<float> logits;
  std::size_t correct = 0;
  const std::size_t k = net.classes(), per = data.image_size();
  if (logits_out) logits_out->clear();
  for (std::size_t at = 0; at < data.n; at += 250) {
    const std::size_t n = std::min<std::size_t>(250, data.n - at);
    net.forward(std::span<const float>(data.images.data() + at * per, n * per), n, data.h, data.w, logits, ws);
    for (std::size_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * k;
      const auto best = static_cast<std::int32_t>(std::max_element(row, row + k) - row);
      correct += best == data.labels[at + i];
    }
    if (logits_out) logits_out->insert(logits_out->end(), logits.begin(), logits.end());
  }
  return static_cast<double>(correct) / static_cast<double>(data.n);
}

void write_text(const fs::path& path, const std::string& content) {
  spruce::io::write_file_atomically(path, content, path.filename().string());
}

bool plot(const fs::path& dir, const std::string& name, const std::string& script_body, const std::string& data) {
  const fs::path dat = dir / "plots" / (name + ".dat");
  const fs::path png = dir / "plots" / (name + ".png");
  const fs::path tmp = dir / "plots" / (name + ".png.tmp");
  const fs::path gp = dir / "plots" / (name + ".gp");
  fs::create_directories(dir / "plots");
  write_text(dat, data);
  std::string script = "set terminal pngcairo size 900,560 noenhanced font ',10'\nset output '" + tmp.string() +
                       "'\nset key outside right\nset grid\n";
  std::string body = script_body;
  for (std::size_t at; (at = body.find("$DATA")) != std::string::npos;) body.replace(at, 5, "'" + dat.string() + "'");
  script += body + "\nunset output\n";
  write_text(gp, script);
  static int have = -1;
  if (have < 0) have = std::system("command -v gnuplot >/dev/null 2>&1") == 0;
  if (!have) {
    static bool said = false;
    if (!said) std::fprintf(stderr, "plots: gnuplot is not installed (scripts/setup.sh --demo); skipping PNGs\n");
    said = true;
    return false;
  }
  const std::string cmd = "gnuplot '" + gp.string() + "' 2>'" + (dir / "plots" / (name + ".log")).string() + "'";
  if (std::system(cmd.c_str()) != 0) {
    // pngcairo may be missing in a minimal gnuplot; fall back to the plain png terminal.
    std::string alt = script;
    alt.replace(alt.find("pngcairo"), 8, "png");
    write_text(gp, alt);
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "plots: gnuplot failed on %s (see %s.log)\n", gp.string().c_str(), name.c_str());
      return false;
    }
  }
  std::error_code ec;
  fs::rename(tmp, png, ec);
  fs::remove(dir / "plots" / (name + ".log"), ec);
  return !ec;
}

void save_model(const fs::path& path, const std::vector<spruce::named_tensor<float>>& tensors,
                std::map<std::string, std::string> metadata) {
  metadata.emplace("model", "vgg");
  metadata.emplace("dataset", "fashion-mnist");
  std::string ch;
  for (const auto& t : tensors)
    if (t.view.rank() == 4) ch.append(ch.empty() ? "" : ",").append(std::to_string(t.view.extent(0)));
  metadata["channels"] = ch;
  train::save_safetensors(path, tensors, metadata);
}

std::string histogram(const std::vector<float>& values, double lo, double hi, std::size_t bins) {
  std::vector<std::size_t> count(bins, 0);
  for (float v : values) {
    if (!(v >= lo && v <= hi)) continue;
    auto b = static_cast<std::size_t>((v - lo) / (hi - lo) * static_cast<double>(bins));
    count[std::min(b, bins - 1)]++;
  }
  std::string out;
  for (std::size_t b = 0; b < bins; ++b)
    out += fmt("%.6g", lo + (static_cast<double>(b) + 0.5) * (hi - lo) / static_cast<double>(bins)) + " " +
           std::to_string(count[b]) + "\n";
  return out;
}

spruce::sparsity_table read_table_file(const std::string& path, const std::vector<std::string>& known) {
  std::ifstream in(path);
  if (!in) throw spruce::error("sparsity table '" + path + "' cannot be opened; check the path");
  spruce::sparsity_table t;
  std::string line;
  for (std::size_t no = 1; std::getline(in, line); ++no) {
    if (const auto h = line.find('#'); h != std::string::npos) line.erase(h);
    for (char& c : line)
      if (c == ',' || c == '\t' || c == '=') c = ' ';
    line = trim(line);
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string name, value, rest;
    ls >> name >> value >> rest;
    const std::string where = "sparsity table " + path + ":" + std::to_string(no);
    if (value.empty() || !rest.empty())
      throw spruce::error(where + ": '" + line + "' is not 'name sparsity'");
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (const auto& k : known) list.append(list.empty() ? "" : ", ").append(k);
      throw spruce::error(where + ": unknown layer '" + name + "'; the layers are " + list);
    }
    std::size_t used = 0;
    double s = -1;
    try {
      s = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != value.size() || !(s >= 0 && s <= 1))
      throw spruce::error(where + ": sparsity '" + value + "' for '" + name + "' is not a number in [0, 1]");
    if (!t.emplace(name, s).second) throw spruce::error(where + ": '" + name + "' appears twice");
  }
  return t;
}

}  // namespace lab
