#include "lab/resnet_stage.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <spruce/core/error.hpp>
#include <spruce/structural/slimming.hpp>

#include "train/checkpoint.hpp"

namespace lab {
namespace {

namespace st = spruce::structural;

std::vector<spruce::named_tensor<float>> tensors_of(train::resnet& m) {
  auto all = m.parameters();
  for (auto& b : m.buffers()) all.push_back(b);
  return all;
}

// The dense checkpoint as a network: its cfg read from the stored shapes.
train::resnet load_resnet(const fs::path& path) {
  std::map<std::string, std::vector<std::size_t>> shapes;
  for (const auto& t : train::read_safetensors(path)) shapes[t.name] = {t.shape.begin(), t.shape.end()};
  train::resnet m(train::resnet_cfg_from_shapes(shapes));
  train::load_safetensors(path, tensors_of(m));
  return m;
}

// Median eval-mode forward time (ms) of `batch` test images.
double latency_ms(train::resnet& m, const train::dataset& d, std::size_t batch, int repeats) {
  batch = std::min(batch, d.n);
  const std::span<const float> images(d.images.data(), batch * d.c * d.h * d.w);
  m.eval();
  m.forward(images, batch, d.h, d.w);  // warm-up: buffers sized
  std::vector<double> t;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    const auto start = clock_type::now();
    m.forward(images, batch, d.h, d.w);
    t.push_back(1e3 * seconds_since(start));
  }
  m.train();
  std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
  return t[t.size() / 2];
}

model_stats stats_of_resnet(train::resnet& m, std::size_t h, std::size_t w) {
  model_stats s;
  for (const auto& p : m.parameters()) {
    s.params += p.view.size();
    for (std::size_t i = 0; i < p.view.size(); ++i) s.nonzero += p.view.data()[i] != 0.0f;
    if (p.view.rank() == 4) s.channels.push_back(p.view.extent(0));
  }
  s.macs = s.effective_macs = m.macs(h, w);  // physically smaller: every weight is used
  s.stored_bytes = 4.0 * static_cast<double>(s.params);
  return s;
}

// Every BN scale of a prunable group, as the graph derives them (member role bn_weight).
std::vector<std::string> bn_scales(const st::graph<float>& g) {
  std::vector<std::string> out;
  for (std::size_t i : g.prunable())
    for (const auto& m : g.groups()[i].members)
      if (m.role == st::member_role::bn_weight) out.push_back(m.name);
  return out;
}

std::vector<float> abs_gammas(const st::graph<float>& g) {
  std::vector<float> out;
  for (const auto& name : bn_scales(g)) {
    const auto v = g.view(name);
    for (std::size_t k = 0; k < v.size(); ++k) out.push_back(std::fabs(v.data()[k]));
  }
  return out;
}

std::vector<float> logits(train::resnet& m, const train::dataset& d) { return all_logits(m, d); }

}  // namespace

st::graph<float> resnet_graph(train::resnet& m, std::size_t h, std::size_t w, bool freeze_streams) {
  std::map<std::string, spruce::tensor_ref<float>> t;
  for (auto& x : tensors_of(m)) t.emplace(x.name, x.view);
  const auto at = [&](const std::string& name) { return t.at(name); };
  const spruce::tensor_ref<float> none;
  st::graph<float> g;
  const auto bn = [&](const std::string& name, const std::string& from) {
    g.batch_norm(name, from, at(name + ".weight"), at(name + ".bias"), at(name + ".running_mean"),
                 at(name + ".running_var"));
  };
  const train::resnet_cfg& c = m.cfg();
  g.input("x", c.in_channels, h, w);
  g.conv("conv1", "x", at("conv1.weight"), none, st::conv_options{{1, 1}, {1, 1}, {1, 1}});
  bn("bn1", "conv1");
  g.pass("relu", "bn1");
  g.pool("maxpool", "relu", 2);
  std::string x = "maxpool";
  for (std::size_t s = 0; s < c.stages.size(); ++s)
    for (std::size_t b = 0; b < c.stages[s].blocks.size(); ++b) {
      const std::string p = "stage" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      const std::size_t stride = b == 0 ? c.stages[s].stride : 1;
      g.conv(p + "conv1", x, at(p + "conv1.weight"), none);
      bn(p + "bn1", p + "conv1");
      g.pass(p + "relu1", p + "bn1");
      g.conv(p + "conv2", p + "relu1", at(p + "conv2.weight"), none,
             st::conv_options{{stride, stride}, {1, 1}, {1, 1}});
      bn(p + "bn2", p + "conv2");
      g.pass(p + "relu2", p + "bn2");
      g.conv(p + "conv3", p + "relu2", at(p + "conv3.weight"), none);
      bn(p + "bn3", p + "conv3");
      std::string shortcut = x;
      if (b == 0) {
        g.conv(p + "downsample.0", x, at(p + "downsample.0.weight"), none,
               st::conv_options{{stride, stride}, {0, 0}, {1, 1}});
        bn(p + "downsample.1", p + "downsample.0");
        shortcut = p + "downsample.1";
      }
      g.add(p + "add", {p + "bn3", shortcut});
      if (freeze_streams) g.freeze(p + "add");
      g.pass(p + "relu", p + "add");
      x = p + "relu";
    }
  g.global_pool("avgpool", x);
  g.linear("fc", "avgpool", at("fc.weight"), at("fc.bias"), 1);
  return g;
}

train::resnet_cfg resnet_cfg_from_plan(const std::vector<st::layer_channels>& kept, const train::resnet_cfg& dense) {
  std::map<std::string, std::size_t> out;
  for (const auto& l : kept) out[l.name] = l.kept.size();
  const auto get = [&](const std::string& name) {
    const auto it = out.find(name);
    if (it == out.end())
      throw spruce::error("resnet cfg from plan: the kept-channel list has no layer '" + name +
                          "'; pass graph::cfg(plan) of resnet_graph()");
    return it->second;
  };
  train::resnet_cfg c = dense;
  c.stem = get("conv1");
  for (std::size_t s = 0; s < c.stages.size(); ++s)
    for (std::size_t b = 0; b < c.stages[s].blocks.size(); ++b) {
      const std::string p = "stage" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      c.stages[s].blocks[b] = {get(p + "conv1"), get(p + "conv2")};
      if (b == 0) c.stages[s].out = get(p + "conv3");
    }
  return c;
}

resnet_stage_result run_slimming_resnet(const resnet_stage_options& o, const data_sets& given, const fs::path& out) {
  resnet_stage_result res;
  const std::string stage = "slimming-resnet";
  const auto meta_in = train::read_safetensors_metadata(o.checkpoint);
  // The data normalised as the ResNet was trained (the pipeline's sets are normalised for the
  // VGG checkpoint), as many images as the pipeline uses.
  if (!meta_in.count("normalise_mean") || !meta_in.count("normalise_std"))
    throw spruce::error("slimming-resnet: " + o.checkpoint.string() +
                        " has no normalise_mean / normalise_std metadata; train it with train_dense --model resnet");
  const train::channel_stats norm{split_floats(meta_in.at("normalise_mean")), split_floats(meta_in.at("normalise_std"))};
  const data_sets d = load_data(o.data_dir, norm, given.train.n, given.test.n, 1);
  const std::size_t h = d.test.h, w = d.test.w;
  const fs::path dir = out / "resnet";
  fs::create_directories(dir);
  const auto meta = [&](const std::string& what, double acc, const train::resnet& m) {
    std::map<std::string, std::string> md = {{"model", "resnet"},
                                             {"stage", what},
                                             {"test_accuracy", fmt("%.4f", acc)},
                                             {"source_checkpoint", o.checkpoint.string()},
                                             {"cfg", train::describe(m.cfg())},
                                             {"in_channels", std::to_string(m.cfg().in_channels)}};
    for (const char* k : {"normalise_mean", "normalise_std", "width", "blocks"})
      if (meta_in.count(k)) md.emplace(k, meta_in.at(k));
    return md;
  };

  // ---- dense ---------------------------------------------------------------------------
  train::resnet dense = load_resnet(o.checkpoint);
  const double dense_acc = evaluate(dense, d.test).accuracy;
  {
    resnet_stage_row r;
    r.stage = stage;
    r.variant = "dense ResNet";
    r.acc_after = dense_acc;
    r.stats = stats_of_resnet(dense, h, w);
    r.lat1 = latency_ms(dense, d.test, 1, o.latency_repeats);
    r.lat64 = latency_ms(dense, d.test, 64, std::max(2, o.latency_repeats / 4));
    r.checkpoint = o.checkpoint.string();
    r.note = "bottleneck ResNet " + train::describe(dense.cfg()) +
             "; latency through the training library's layers (speed-up columns compare with the dense VGG)";
    res.rows.push_back(std::move(r));
  }

  // ---- sparsity training ---------------------------------------------------------------
  train::resnet sparse = dense;
  st::graph<float> sg = resnet_graph(sparse, h, w, o.freeze_streams);
  const std::vector<float> gamma_dense = abs_gammas(sg);
  {
    auto params = sparse.parameters();
    auto grads = sparse.gradients();
    std::vector<std::size_t> scaled;  // indices of the BN scales the graph derived
    const auto names = bn_scales(sg);
    for (std::size_t i = 0; i < params.size(); ++i)
      if (std::find(names.begin(), names.end(), params[i].name) != names.end()) scaled.push_back(i);
    tune_hooks hooks;
    hooks.before_step = [&] {
      for (std::size_t i : scaled)
        st::add_l1_subgradient(grads[i].view, params[i].view, static_cast<float>(o.lambda), params[i].name);
    };
    tune_options t;
    t.epochs = o.epochs;
    t.lr = o.lr;
    t.log_every = o.log_every;
    fine_tune(stage + " sparsity lambda " + fmt("%g", o.lambda), sparse, d.train, t, hooks);
  }
  const double sparse_acc = evaluate(sparse, d.test).accuracy;
  save_model(dir / "resnet_sparsity.safetensors", tensors_of(sparse), meta("sparsity training", sparse_acc, sparse));
  const std::vector<float> gamma_sparse = abs_gammas(sg);
  {
    float hi = 1e-3f;
    for (float v : gamma_dense) hi = std::max(hi, v);
    for (float v : gamma_sparse) hi = std::max(hi, v);
    const std::string data = "# dense\n" + histogram(gamma_dense, 0, hi, 40) + "\n\n# after sparsity training\n" +
                             histogram(gamma_sparse, 0, hi, 40);
    const std::string script = "set title 'ResNet BN scale |gamma| (prunable groups), lambda " + fmt("%g", o.lambda) +
                               "'\nset xlabel '|gamma|'\nset ylabel 'channels'\nplot $DATA index 0 using 1:2 with "
                               "steps title 'dense', $DATA index 1 using 1:2 with steps title 'after sparsity training'";
    if (plot(out, "slimming_resnet_gamma", script, data))
      res.plots.emplace_back("network slimming on the ResNet: gamma distributions", "plots/slimming_resnet_gamma.png");
  }
  std::size_t prunable_channels = 0;
  for (std::size_t i : sg.prunable()) prunable_channels += sg.groups()[i].channels;
  res.notes.push_back(stage + ": " + std::to_string(sg.prunable().size()) + " prunable groups (" +
                      std::to_string(prunable_channels) + " channels) of " + std::to_string(sg.groups().size()) +
                      " derived by spruce::structural::graph; after sparsity training (" + std::to_string(o.epochs) +
                      " epochs, cosine from lr " + fmt("%g", o.lr) + ") " + fmt("%.2f%%", 100 * sparse_acc) + " (dense " +
                      fmt("%.2f%%", 100 * dense_acc) + "); each pruned network fine-tuned " +
                      std::to_string(o.tune_epochs) + " epochs, cosine from lr " + fmt("%g", o.tune_lr));

  // ---- prune, rebuild, check, fine-tune -------------------------------------------------
  std::string failed;
  for (double percent : o.percents) {
    // A residual-stream channel has two BNs (bn3 and the projection's): its score is their
    // mean |gamma|, on one BN's scale like an inner channel's (graph's default).
    spruce::sparsity_limits limits;
    limits.min_kept = o.min_keep;
    limits.max = 1.0 - o.layer_keep;
    const auto sel = sg.slimming_plan(percent, limits, st::score_combine::mean);
    const train::resnet_cfg small_cfg = resnet_cfg_from_plan(sg.cfg(sel.plan), sparse.cfg());
    train::resnet small(small_cfg);
    st::graph<float> small_graph = resnet_graph(small, h, w, o.freeze_streams);
    sg.copy_kept(sel.plan, small_graph);

    // Forward equivalence: the trained network with every removed channel's BN scale and
    // shift zeroed (its BN output is exactly 0) must give the small network's logits.
    train::resnet masked = sparse;
    st::graph<float> mg = resnet_graph(masked, h, w, o.freeze_streams);
    std::size_t removed = 0;
    for (std::size_t gi = 0; gi < mg.groups().size(); ++gi) {
      std::vector<bool> keep(mg.groups()[gi].channels, false);
      for (std::size_t c : sel.plan.keep[gi]) keep[c] = true;
      removed += static_cast<std::size_t>(std::count(keep.begin(), keep.end(), false));
      for (const auto& m : mg.groups()[gi].members)
        if (m.role == st::member_role::bn_weight || m.role == st::member_role::bn_bias) {
          const auto v = mg.view(m.name);
          for (std::size_t c = 0; c < keep.size(); ++c)
            if (!keep[c]) v.data()[m.offset + c] = 0.0f;
        }
    }
    const std::vector<float> want = logits(masked, d.test), got = logits(small, d.test);
    double max_diff = 0, max_mag = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(want[i] - got[i])));
      max_mag = std::max(max_mag, static_cast<double>(std::fabs(want[i])));
    }
    const double tol = 1e-4 * std::max(1.0, max_mag);
    const bool exact = max_diff <= tol;

    const std::string label = stage + " " + fmt("%.0f%%", 100 * percent);
    const double before = evaluate(small, d.test).accuracy;
    tune_options t;
    t.epochs = o.tune_epochs;
    t.lr = o.tune_lr;
    t.log_every = o.log_every;
    fine_tune(label, small, d.train, t);
    const double after = evaluate(small, d.test).accuracy;

    resnet_stage_row r;
    r.stage = stage + " " + fmt("%.0f%%", 100 * percent);
    r.variant = "lambda " + fmt("%g", o.lambda) + " global gamma" + (o.freeze_streams ? ", streams frozen" : "");
    r.acc_before = before;
    r.acc_after = after;
    r.stats = stats_of_resnet(small, h, w);
    r.lat1 = latency_ms(small, d.test, 1, o.latency_repeats);
    r.lat64 = latency_ms(small, d.test, 64, std::max(2, o.latency_repeats / 4));
    r.checkpoint = "resnet/slimming_resnet_" + fmt("%.0f", 100 * percent) + ".safetensors";
    const auto dense_stats = res.rows.front().stats;
    r.note = "threshold on |gamma| (averaged over a coupled group's BNs) " + fmt("%.4g", static_cast<double>(sel.threshold)) + ", per-group minimum " +
             std::to_string(o.min_keep) + " channels and " + fmt("%.0f%%", 100 * o.layer_keep) + ", " + std::to_string(removed) + " of " + std::to_string(prunable_channels) +
             " prunable channels removed; " + train::describe(small_cfg) + "; parameters " +
             fmt("%.2fx", static_cast<double>(dense_stats.params) / static_cast<double>(r.stats.params)) +
             " fewer, MACs " + fmt("%.2fx", static_cast<double>(dense_stats.macs) / static_cast<double>(r.stats.macs)) +
             " fewer; accuracy after fine-tuning " + fmt("%+.2f", 100 * (after - dense_acc)) +
             " pp vs dense; removal vs zeroed BN: max |logit difference| " + fmt("%.3g", max_diff) +
             (exact ? " (within " : " (ABOVE ") + fmt("%.3g", tol) + ")";
    save_model(out / r.checkpoint, tensors_of(small), meta(label, after, small));
    std::fprintf(stderr, "[%s] %s\n", label.c_str(), r.note.c_str());
    if (!exact) failed += (failed.empty() ? "" : ", ") + label;
    res.rows.push_back(std::move(r));
  }
  if (!failed.empty())
    res.failure = "slimming-resnet: removing the channels changed the logits of " + failed +
                  " beyond the float tolerance (see the rows' notes)";
  return res;
}

}  // namespace lab
