#pragma once
// Inference of the lab's VGG (conv3x3 pad 1 -> BN -> ReLU, 2x2 pools after every second
// conv, spatial mean, linear) with each conv executed densely (im2col + Eigen GEMM) or
// through a spruce::sparse format picked per layer by spruce::sparse::choose_execution and
// run by spruce::sparse::conv2d. Header-only, spruce + Eigen only: the pipeline's sparse
// inference stage and bench/bench_vgg_latency.cpp both use it, so dense and sparse
// latencies come from the same im2col and the same epilogue.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <spruce/core/error.hpp>
#include <spruce/core/parallel.hpp>
#include <spruce/eigen.hpp>
#include <spruce/prune/mask.hpp>
#include <spruce/sparse/block_sparse.hpp>
#include <spruce/sparse/choose.hpp>
#include <spruce/sparse/conv2d.hpp>
#include <spruce/sparse/csr.hpp>
#include <spruce/sparse/n_m_matrix.hpp>

namespace lab::infer {

/// One conv block: weight [out, in*9] (row-major), BN folded into a per-channel affine map
/// (y = max(conv * scale + shift, 0)), and whether a 2x2 pool follows.
struct conv_block {
  std::size_t out = 0, in = 0;
  std::vector<float> weight;
  std::vector<float> scale, shift;
  bool pool = false;
  std::optional<spruce::mask> keep;  // the pruning mask, when the layer is sparse
  std::string format = "dense";      // what forward runs: "dense" or a sparse format name
  std::function<void(const spruce::tensor_ref<const float>&, const spruce::tensor_ref<float>&)> sparse_conv;
  std::size_t stored_values = 0;     // values the chosen format stores (dense: all)
};

/// Scratch of one forward pass, reused between calls.
struct workspace {
  std::vector<float> a, b, cols, product;
  spruce::sparse::conv2d_workspace<float> conv;
};

/// BN parameters of one block, as a checkpoint stores them.
struct bn_params {
  std::span<const float> gamma, beta, mean, var;
};

class network {
 public:
  /// Adds conv `weight` [out, in, 3, 3] followed by `bn` (eps 1e-5, PyTorch's) and an
  /// optional pool. Throws spruce::error when the widths do not chain.
  void add_conv(std::span<const float> weight, std::size_t out, std::size_t in, const bn_params& bn, bool pool,
                double eps = 1e-5) {
    if (!blocks_.empty() && blocks_.back().out != in)
      throw spruce::error("infer: conv " + std::to_string(blocks_.size()) + " takes " + std::to_string(in) +
                          " channels but the previous conv gives " + std::to_string(blocks_.back().out));
    if (weight.size() != out * in * 9 || bn.gamma.size() != out || bn.beta.size() != out || bn.mean.size() != out ||
        bn.var.size() != out)
      throw spruce::error("infer: conv " + std::to_string(blocks_.size()) + " sizes do not match [" +
                          std::to_string(out) + ", " + std::to_string(in) + ", 3, 3] and its BN");
    conv_block b;
    b.out = out;
    b.in = in;
    b.weight.assign(weight.begin(), weight.end());
    b.scale.resize(out);
    b.shift.resize(out);
    for (std::size_t c = 0; c < out; ++c) {
      const double s = static_cast<double>(bn.gamma[c]) / std::sqrt(static_cast<double>(bn.var[c]) + eps);
      b.scale[c] = static_cast<float>(s);
      b.shift[c] = static_cast<float>(static_cast<double>(bn.beta[c]) - static_cast<double>(bn.mean[c]) * s);
    }
    b.pool = pool;
    b.stored_values = b.weight.size();
    blocks_.push_back(std::move(b));
  }
  void set_classifier(std::span<const float> weight, std::span<const float> bias) {
    if (blocks_.empty() || weight.size() != bias.size() * blocks_.back().out)
      throw spruce::error("infer: classifier of " + std::to_string(weight.size()) + " weights for " +
                          std::to_string(bias.size()) + " classes does not follow the last conv");
    fc_w_.assign(weight.begin(), weight.end());
    fc_b_.assign(bias.begin(), bias.end());
  }
  std::vector<conv_block>& blocks() noexcept { return blocks_; }
  const std::vector<conv_block>& blocks() const noexcept { return blocks_; }
  std::size_t classes() const noexcept { return fc_b_.size(); }

  /// Gives conv i its pruning mask (the weight's own zeros when none is passed) so that
  /// choose() may run it sparse.
  void set_mask(std::size_t i, const spruce::mask& keep) {
    conv_block& b = blocks_.at(i);
    if (keep.size() != b.weight.size())
      throw spruce::error("infer: mask of " + std::to_string(keep.size()) + " entries for conv " + std::to_string(i) +
                          " of " + std::to_string(b.weight.size()) + " weights; pass the weight's own mask");
    const std::array<std::size_t, 2> shape{b.out, b.in * 9};  // the weight as the GEMM sees it
    b.keep = spruce::mask::adopt(shape, spruce::byte_buffer(keep.bytes().begin(), keep.bytes().end()));
  }

  /// For every conv with a mask, times dense against spruce's sparse candidates on the
  /// product the layer does for a batch of `batch` images of h x w
  /// (spruce::sparse::choose_execution) and keeps the winner. Returns one choice per conv
  /// (dense layers without a mask get format "dense" and no timings).
  std::vector<spruce::sparse::execution_choice> choose(std::size_t batch, std::size_t h, std::size_t w,
                                                       int repeats = 3, double min_speedup = 1.05) {
    std::vector<spruce::sparse::execution_choice> out;
    for (auto& b : blocks_) {
      spruce::sparse::execution_choice c;
      c.format = "dense";
      if (b.keep) {
        const std::array<std::size_t, 2> shape{b.out, b.in * 9};
        const spruce::tensor_ref<const float> wv(b.weight.data(), shape);
        spruce::sparse::choose_options opt;
        opt.repeats = repeats;
        opt.min_speedup = min_speedup;
        c = spruce::sparse::choose_execution(wv, *b.keep, batch * h * w, spruce::eigen_gemm{}, opt);
        use_format(b, c.format);
      }
      if (pool_of(b)) h /= 2, w /= 2;
      out.push_back(std::move(c));
    }
    return out;
  }

  /// Runs conv `b` in the named format ("dense", "csr", "n:m 2:4", "bsr RxC").
  static void use_format(conv_block& b, const std::string& format) {
    b.format = format;
    b.sparse_conv = nullptr;
    b.stored_values = b.weight.size();
    if (format == "dense") return;
    if (!b.keep) throw spruce::error("infer: format '" + format + "' needs the layer's mask");
    const std::array<std::size_t, 2> shape{b.out, b.in * 9};
    const spruce::tensor_ref<const float> wv(b.weight.data(), shape);
    spruce::sparse::conv2d_params p;
    p.pad_h = p.pad_w = 1;
    auto bind = [&](auto matrix) {
      auto a = std::make_shared<const decltype(matrix)>(std::move(matrix));
      b.stored_values = a->stored_values();
      b.sparse_conv = [a, p](const spruce::tensor_ref<const float>& in, const spruce::tensor_ref<float>& out) {
        spruce::sparse::conv2d(*a, in, out, p);
      };
    };
    if (format == "csr") {
      bind(spruce::sparse::csr_matrix<float>::from_dense(wv, *b.keep));
    } else if (format == "n:m 2:4") {
      bind(spruce::sparse::n_m_matrix<float>::from_dense(wv, *b.keep, 2, 4));
    } else if (format.rfind("bsr ", 0) == 0) {
      const std::size_t x = format.find('x');
      const std::size_t br = std::stoul(format.substr(4, x - 4)), bc = std::stoul(format.substr(x + 1));
      bind(spruce::sparse::block_sparse_matrix<float>::from_dense(wv, *b.keep, br, bc));
    } else {
      throw spruce::error("infer: unknown format '" + format + "'");
    }
  }

  /// Logits [n, classes] of n images [n, c, h, w] (NCHW).
  void forward(std::span<const float> images, std::size_t n, std::size_t h, std::size_t w, std::vector<float>& logits,
               workspace& ws) const {
    if (blocks_.empty() || fc_b_.empty()) throw spruce::error("infer: the network has no layers");
    std::size_t c = blocks_.front().in;
    if (images.size() != n * c * h * w)
      throw spruce::error("infer: " + std::to_string(images.size()) + " values for " + std::to_string(n) + " images of " +
                          std::to_string(c) + " x " + std::to_string(h) + " x " + std::to_string(w));
    ws.a.assign(images.begin(), images.end());
    for (const auto& b : blocks_) {
      const std::size_t hw = h * w;
      ws.b.resize(n * b.out * hw);
      const std::array<std::size_t, 4> si{n, c, h, w}, so{n, b.out, h, w};
      const spruce::tensor_ref<const float> in(ws.a.data(), si);
      const spruce::tensor_ref<float> out(ws.b.data(), so);
      if (b.sparse_conv) {
        b.sparse_conv(in, out);
      } else {
        dense_conv(b, in, out, ws);
      }
      // BN + ReLU in place, then the optional pool into ws.a.
      float* y = ws.b.data();
      spruce::parallel_for(0, n * b.out, [&](std::size_t job) {
        const std::size_t ch = job % b.out;
        const float s = b.scale[ch], t = b.shift[ch];
        float* p = y + job * hw;
        for (std::size_t i = 0; i < hw; ++i) p[i] = std::max(p[i] * s + t, 0.0f);
      }, spruce::total_work{n * b.out * hw});
      if (b.pool) {
        const std::size_t oh = h / 2, ow = w / 2;
        ws.a.resize(n * b.out * oh * ow);
        float* dst = ws.a.data();
        spruce::parallel_for(0, n * b.out, [&](std::size_t job) {
          const float* src = y + job * hw;
          float* d = dst + job * oh * ow;
          for (std::size_t oy = 0; oy < oh; ++oy)
            for (std::size_t ox = 0; ox < ow; ++ox) {
              const float* q = src + 2 * oy * w + 2 * ox;
              d[oy * ow + ox] = std::max(std::max(q[0], q[1]), std::max(q[w], q[w + 1]));
            }
        }, spruce::total_work{n * b.out * hw});
        h = oh;
        w = ow;
      } else {
        ws.a.swap(ws.b);
      }
      c = b.out;
    }
    const std::size_t k = fc_b_.size(), hw = h * w;
    logits.assign(n * k, 0.0f);
    std::vector<float> feat(c);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t ch = 0; ch < c; ++ch) {
        double sum = 0;
        const float* p = ws.a.data() + (i * c + ch) * hw;
        for (std::size_t j = 0; j < hw; ++j) sum += p[j];
        feat[ch] = static_cast<float>(sum / static_cast<double>(hw));
      }
      for (std::size_t o = 0; o < k; ++o) {
        float acc = fc_b_[o];
        const float* wr = fc_w_.data() + o * c;
        for (std::size_t ch = 0; ch < c; ++ch) acc += wr[ch] * feat[ch];
        logits[i * k + o] = acc;
      }
    }
  }

 private:
  static bool pool_of(const conv_block& b) noexcept { return b.pool; }

  static void dense_conv(const conv_block& b, const spruce::tensor_ref<const float>& in,
                         const spruce::tensor_ref<float>& out, workspace& ws) {
    const std::size_t n = in.extent(0), h = in.extent(2), w = in.extent(3), hw = h * w, k = b.in * 9;
    spruce::sparse::conv2d_params p;
    p.pad_h = p.pad_w = 1;
    ws.cols.resize(k * n * hw);
    spruce::sparse::im2col(in, p, ws.cols.data());
    ws.product.resize(b.out * n * hw);
    const std::array<std::size_t, 2> sw{b.out, k}, sb{k, n * hw}, sc{b.out, n * hw};
    spruce::eigen_gemm{}(spruce::tensor_ref<const float>(b.weight.data(), sw),
                         spruce::tensor_ref<const float>(ws.cols.data(), sb),
                         spruce::tensor_ref<float>(ws.product.data(), sc));
    float* o = out.data();
    const float* prod = ws.product.data();
    const std::size_t width = n * hw;
    spruce::parallel_for(0, n * b.out, [&](std::size_t job) {
      const std::size_t img = job / b.out, co = job % b.out;
      std::copy(prod + co * width + img * hw, prod + co * width + (img + 1) * hw, o + job * hw);
    }, spruce::total_work{b.out * width});
  }

  std::vector<conv_block> blocks_;
  std::vector<float> fc_w_, fc_b_;
};

}  // namespace lab::infer
