#include "train/layers.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

// The layers split the batch across threads themselves; Eigen's own GEMM threading would
// only add a fork and a barrier to the small products they leave on one thread (it would
// nest as a single thread inside the layers' regions anyway). Every Eigen product of this
// library is instantiated in this file.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <spruce/core/error.hpp>
#include <spruce/core/parallel.hpp>
#include <spruce/metrics/macs.hpp>
#include <spruce/sparse/conv2d.hpp>

#ifdef _OPENMP
#include <omp.h>
// An OpenMP pragma, or nothing when the library is built without OpenMP (no unknown-pragma
// warning, the loops run on the calling thread).
#define SPRUCE_TRAIN_OMP(...) _Pragma(#__VA_ARGS__)
#else
#define SPRUCE_TRAIN_OMP(...)
#endif

namespace train {
namespace {

// Row-major matrix views with a run-time row stride (always the column count). The stride
// type only makes these Map types this file's own: a plain Map<const Matrix> product is
// also instantiated by code built without EIGEN_DONT_PARALLELIZE (spruce::eigen_gemm in
// the lab's inference engine), and when the linker kept that copy the layers' GEMMs,
// called from the helper pool's threads, opened an OpenMP team each whose members
// spin-waited on one another (the ResNet stage of prune_lab ran at a fraction of its speed).
template <class M>
struct row_major_map : Eigen::Map<M, Eigen::Unaligned, Eigen::OuterStride<>> {
  using base = Eigen::Map<M, Eigen::Unaligned, Eigen::OuterStride<>>;
  using pointer = std::conditional_t<std::is_const_v<M>, const typename M::Scalar*, typename M::Scalar*>;
  row_major_map(pointer data, Eigen::Index rows, Eigen::Index cols)
      : base(data, rows, cols, Eigen::OuterStride<>(cols)) {}
  using base::operator=;
};
template <class T>
using matrix_map = row_major_map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <class T>
using const_matrix_map = row_major_map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <class T>
using array_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using const_array_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// One image of an NCHW tensor as its [C, H*W] matrix (a 1x1 convolution's im2col matrix).
template <class T>
const_matrix_map<T> image_matrix(const tensor<T>& t, std::size_t img) {
  return const_matrix_map<T>(t.data() + img * t.sample(), static_cast<Eigen::Index>(t.c()),
                             static_cast<Eigen::Index>(t.plane()));
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}


// Below this many elements (or multiply-adds) a pass is cheaper than waking a second thread,
// and on a busy machine a parallel region can wait a whole time slice for its last thread.
constexpr std::size_t parallel_threshold = 1 << 15;

// A GEMM narrower than this many output columns runs well below the machine's speed, so
// small feature maps are batched until a chunk's im2col matrix is at least this wide.
constexpr std::size_t target_columns = 384;

// Runs f(scratch, chunk) for every chunk of a conv plan, the chunks in `p.parts` contiguous
// runs on spruce's helper pool (core/parallel.hpp): each run owns one scratch, and a helper
// that another process preempts holds up one run, not a whole OpenMP team at its end
// barrier.
template <class Plan, class Scratch, class F>
void over_chunk_runs(const Plan& p, std::vector<Scratch>& scratch, F&& f) {
  spruce::parallel_for(std::size_t{0}, p.parts, [&](std::size_t part) {
    const std::size_t from = part * p.chunks / p.parts, to = (part + 1) * p.chunks / p.parts;
    for (std::size_t chunk = from; chunk < to; ++chunk) f(scratch[part], chunk);
  }, 2);
}

std::string layer_error(const char* layer, const std::string& what) {
  return std::string(layer).append(": ").append(what);
}

void require_batch(const char* layer, std::size_t n) {
  if (n == 0)
    throw spruce::error(layer_error(layer, "the batch is empty; pass at least one sample"));
}

void require_channels(const char* layer, std::size_t got, std::size_t want) {
  if (got != want)
    throw spruce::error(layer_error(
        layer, std::string("the input has ")
                   .append(std::to_string(got))
                   .append(" channels but the layer was built for ")
                   .append(std::to_string(want))
                   .append("; pass an NCHW tensor with that many channels")));
}

// The same-convolution geometry the VGG uses; spruce's im2col unfolds the input.
spruce::sparse::conv2d_params conv_params(std::size_t k, std::size_t s, std::size_t pad) {
  return {k, k, s, s, pad, pad, 1, 1};
}

template <class T>
void im2col(const T* x, std::size_t g, std::size_t c, std::size_t h, std::size_t w, std::size_t k,
            std::size_t s, std::size_t pad, T* cols) {
  const std::array<std::size_t, 4> shape{g, c, h, w};
  spruce::sparse::im2col(spruce::tensor_ref<const T>(x, shape), conv_params(k, s, pad), cols);
}

// The adjoint of im2col: adds every column entry back onto the input position it was read
// from, overwriting dx (images [0, g)). The columns of entries that read padding are
// clobbered (same convolutions zero them to add each kernel offset as one run).
template <class T>
void col2im(T* cols, std::size_t g, std::size_t c, std::size_t h, std::size_t w, std::size_t k,
            std::size_t s, std::size_t pad, std::size_t ho, std::size_t wo, T* dx) {
  const std::size_t p = ho * wo, row_len = g * p;
  if (s == 1 && wo == w && ho == h && 2 * pad + 1 == k) {
    // The centre offset reads every position unshifted: it assigns, the others add.
    for (std::size_t img = 0; img < g; ++img)
      for (std::size_t ci = 0; ci < c; ++ci) {
        T* plane = dx + (img * c + ci) * p;
        const T* centre = cols + ((ci * k + pad) * k + pad) * row_len + img * p;
        std::copy(centre, centre + p, plane);
        for (std::size_t ki = 0; ki < k; ++ki)
          for (std::size_t kj = 0; kj < k; ++kj) {
            if (ki == pad && kj == pad) continue;
            T* row = cols + ((ci * k + ki) * k + kj) * row_len + img * p;
            const auto [lo, hi] = spruce::sparse::valid_outputs(w, wo, kj, s, pad);
            for (std::size_t oy = 0; oy < ho; ++oy) {
              for (std::size_t ox = 0; ox < lo; ++ox) row[oy * wo + ox] = T(0);
              for (std::size_t ox = hi; ox < wo; ++ox) row[oy * wo + ox] = T(0);
            }
            const auto shift =
                (static_cast<std::ptrdiff_t>(ki) - static_cast<std::ptrdiff_t>(pad)) *
                    static_cast<std::ptrdiff_t>(w) +
                static_cast<std::ptrdiff_t>(kj) - static_cast<std::ptrdiff_t>(pad);
            const auto total = static_cast<std::ptrdiff_t>(p);
            const std::ptrdiff_t begin = std::max<std::ptrdiff_t>(0, -shift);
            const std::ptrdiff_t end = std::min<std::ptrdiff_t>(total, total - shift);
            if (begin < end)
              array_map<T>(plane + begin + shift, end - begin) +=
                  const_array_map<T>(row + begin, end - begin);
          }
      }
    return;
  }
  std::fill(dx, dx + g * c * h * w, T(0));
  for (std::size_t img = 0; img < g; ++img)
    for (std::size_t ci = 0; ci < c; ++ci) {
      T* plane = dx + (img * c + ci) * h * w;
      for (std::size_t ki = 0; ki < k; ++ki)
        for (std::size_t kj = 0; kj < k; ++kj) {
          const T* row = cols + ((ci * k + ki) * k + kj) * row_len + img * p;
          const auto [lo, hi] = spruce::sparse::valid_outputs(w, wo, kj, s, pad);
          for (std::size_t oy = 0; oy < ho; ++oy) {
            const std::size_t iy = oy * s + ki;
            if (iy < pad || iy - pad >= h || lo == hi) continue;
            T* out = plane + (iy - pad) * w + (lo * s + kj - pad);
            const T* in = row + oy * wo;
            for (std::size_t ox = lo; ox < hi; ++ox) out[(ox - lo) * s] += in[ox];
          }
        }
    }
}

}  // namespace

// ---- conv2d --------------------------------------------------------------------------

template <class T>
conv2d<T>::conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
                  std::size_t stride, std::size_t padding, bool bias)
    : in_(in_channels), out_(out_channels), k_(kernel), stride_(stride), pad_(padding) {
  if (in_ == 0 || out_ == 0 || k_ == 0 || stride_ == 0)
    throw spruce::error(layer_error(
        "conv2d", std::string("in_channels ")
                      .append(std::to_string(in_))
                      .append(", out_channels ")
                      .append(std::to_string(out_))
                      .append(", kernel ")
                      .append(std::to_string(k_))
                      .append(", stride ")
                      .append(std::to_string(stride_))
                      .append(": each must be at least 1")));
  weight_.assign(out_ * in_ * k_ * k_, T(0));
  weight_grad_.assign(weight_.size(), T(0));
  if (bias) {
    bias_.assign(out_, T(0));
    bias_grad_.assign(out_, T(0));
  }
}

template <class T>
typename conv2d<T>::plan conv2d<T>::make_plan(const tensor<T>& x, const char* pass) const {
  require_batch(pass, x.n());
  require_channels(pass, x.c(), in_);
  plan p{};
  p.ho = spruce::conv2d_output_extent(x.h(), k_, stride_, pad_);
  p.wo = spruce::conv2d_output_extent(x.w(), k_, stride_, pad_);
  const std::size_t n = x.n(), positions = p.ho * p.wo;
  const std::size_t work = n * positions * in_ * k_ * k_ * out_;  // multiply-adds
  const std::size_t threads =
      work < 8 * parallel_threshold ? 1 : static_cast<std::size_t>(max_threads());
  // Enough images per chunk for a wide GEMM, and at least four chunks per thread: the
  // threads take chunks as they go (dynamic schedule), so a thread that the OS preempts on a
  // busy machine holds up at most one chunk, not half the batch.
  std::size_t per_chunk = std::max<std::size_t>(1, (target_columns + positions - 1) / positions);
  std::size_t chunks = (n + per_chunk - 1) / per_chunk;
  if (threads > 1) chunks = std::min(n, std::max(chunks, 4 * threads));
  per_chunk = (n + chunks - 1) / chunks;
  p.per_chunk = per_chunk;
  p.chunks = (n + per_chunk - 1) / per_chunk;
  p.threads = std::min(threads, p.chunks);
  p.parts = p.threads > 1 ? std::min(p.chunks, 4 * p.threads) : 1;
  return p;
}

template <class T>
void conv2d<T>::reserve(const plan& p) {
  if (scratch_.size() < p.parts) scratch_.resize(p.parts);
  if (pointwise()) return;  // multiplies the tensors in place: no scratch
  const std::size_t cols = in_ * k_ * k_ * p.per_chunk * p.ho * p.wo;
  const std::size_t outs = out_ * p.per_chunk * p.ho * p.wo;
  for (std::size_t t = 0; t < p.parts; ++t) {
    auto& s = scratch_[t];
    if (s.cols.size() < cols) s.cols.resize(cols);
    if (s.tmp.size() < outs) s.tmp.resize(outs);
  }
}

template <class T>
void conv2d<T>::forward(const tensor<T>& x, tensor<T>& y) {
  const plan p = make_plan(x, "conv2d forward");
  reserve(p);
  const std::size_t n = x.n(), positions = p.ho * p.wo, rows = in_ * k_ * k_;
  y.resize(n, out_, p.ho, p.wo);
  const const_matrix_map<T> wm(weight_.data(), static_cast<Eigen::Index>(out_),
                               static_cast<Eigen::Index>(rows));
  over_chunk_runs(p, scratch_, [&](auto& s, std::size_t chunk) {
    const std::size_t first = chunk * p.per_chunk, g = std::min(p.per_chunk, n - first);
    const std::size_t width = g * positions;
    if (pointwise()) {  // each image's [in, positions] is its own im2col matrix
      for (std::size_t img = first; img < first + g; ++img)
        matrix_map<T>(y.data() + img * y.sample(), static_cast<Eigen::Index>(out_),
                      static_cast<Eigen::Index>(positions))
            .noalias() = wm * image_matrix(x, img);
      add_bias(y, first, g);
      return;
    }
    im2col(x.data() + first * x.sample(), g, in_, x.h(), x.w(), k_, stride_, pad_, s.cols.data());
    const const_matrix_map<T> cm(s.cols.data(), static_cast<Eigen::Index>(rows),
                                 static_cast<Eigen::Index>(width));
    T* out = y.data() + first * out_ * positions;
    if (g == 1) {
      matrix_map<T>(out, static_cast<Eigen::Index>(out_), static_cast<Eigen::Index>(width))
          .noalias() = wm * cm;
    } else {
      // [out, g*positions] -> g images of [out, positions]
      matrix_map<T>(s.tmp.data(), static_cast<Eigen::Index>(out_), static_cast<Eigen::Index>(width))
          .noalias() = wm * cm;
      for (std::size_t co = 0; co < out_; ++co)
        for (std::size_t img = 0; img < g; ++img)
          std::copy_n(s.tmp.data() + co * width + img * positions, positions,
                      out + (img * out_ + co) * positions);
    }
    add_bias(y, first, g);
  });
}

template <class T>
void conv2d<T>::add_bias(tensor<T>& y, std::size_t first, std::size_t g) const {
  if (bias_.empty()) return;
  const std::size_t positions = y.plane();
  for (std::size_t img = first; img < first + g; ++img)
    for (std::size_t co = 0; co < out_; ++co) {
      T* plane = y.data() + (img * out_ + co) * positions;
      const T b = bias_[co];
      for (std::size_t i = 0; i < positions; ++i) plane[i] += b;
    }
}

template <class T>
void conv2d<T>::backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>* dx) {
  const plan p = make_plan(x, "conv2d backward");
  const std::size_t n = x.n(), positions = p.ho * p.wo, rows = in_ * k_ * k_;
  if (dy.shape() != std::array<std::size_t, 4>{n, out_, p.ho, p.wo})
    throw spruce::error(layer_error(
        "conv2d backward", std::string("the output gradient has shape ")
                               .append(shape_text(dy.shape()))
                               .append(" but the forward output was ")
                               .append(shape_text({n, out_, p.ho, p.wo}))
                               .append("; pass the gradient of this layer's output")));
  reserve(p);
  for (std::size_t t = 0; t < p.parts; ++t) {
    auto& s = scratch_[t];
    if (dx != nullptr && s.dcols.size() < s.cols.size()) s.dcols.resize(s.cols.size());
  }
  // Each chunk's weight and bias gradient goes to its own slot, summed in chunk order after
  // the loop: the result does not depend on which thread took which chunk.
  const std::size_t slot = weight_.size() + out_;
  if (chunk_grads_.size() < p.chunks * slot) chunk_grads_.resize(p.chunks * slot);
  if (dx != nullptr) dx->resize(n, in_, x.h(), x.w());
  const const_matrix_map<T> wm(weight_.data(), static_cast<Eigen::Index>(out_),
                               static_cast<Eigen::Index>(rows));
  over_chunk_runs(p, scratch_, [&](auto& s, std::size_t chunk) {
    const std::size_t first = chunk * p.per_chunk, g = std::min(p.per_chunk, n - first);
    const std::size_t width = g * positions;
    T* dw = chunk_grads_.data() + chunk * slot;
    if (pointwise()) {  // per image, in image order: no im2col, no layout copies, no col2im
      matrix_map<T> dwm(dw, static_cast<Eigen::Index>(out_), static_cast<Eigen::Index>(rows));
      for (std::size_t img = first; img < first + g; ++img) {
        const auto gm = image_matrix(dy, img);
        if (img == first)
          dwm.noalias() = gm * image_matrix(x, img).transpose();
        else
          dwm.noalias() += gm * image_matrix(x, img).transpose();
        if (dx != nullptr)
          matrix_map<T>(dx->data() + img * dx->sample(), static_cast<Eigen::Index>(in_),
                        static_cast<Eigen::Index>(positions))
              .noalias() = wm.transpose() * gm;
      }
      if (!bias_.empty())
        for (std::size_t co = 0; co < out_; ++co) {
          T total = 0;
          for (std::size_t img = first; img < first + g; ++img)
            total += const_array_map<T>(dy.data() + (img * out_ + co) * positions,
                                        static_cast<Eigen::Index>(positions)).sum();
          dw[weight_.size() + co] = total;
        }
      return;
    }
    const T* grad = dy.data() + first * out_ * positions;
    if (g > 1) {  // g images of [out, positions] -> [out, g*positions], the forward's layout
      for (std::size_t co = 0; co < out_; ++co)
        for (std::size_t img = 0; img < g; ++img)
          std::copy_n(grad + (img * out_ + co) * positions, positions,
                      s.tmp.data() + co * width + img * positions);
      grad = s.tmp.data();
    }
    const const_matrix_map<T> gm(grad, static_cast<Eigen::Index>(out_),
                                 static_cast<Eigen::Index>(width));
    im2col(x.data() + first * x.sample(), g, in_, x.h(), x.w(), k_, stride_, pad_, s.cols.data());
    const const_matrix_map<T> cm(s.cols.data(), static_cast<Eigen::Index>(rows),
                                 static_cast<Eigen::Index>(width));
    matrix_map<T>(dw, static_cast<Eigen::Index>(out_), static_cast<Eigen::Index>(rows)).noalias() =
        gm * cm.transpose();
    if (!bias_.empty())
      for (std::size_t co = 0; co < out_; ++co)
        dw[weight_.size() + co] =
            const_array_map<T>(grad + co * width, static_cast<Eigen::Index>(width)).sum();
    if (dx != nullptr) {
      matrix_map<T>(s.dcols.data(), static_cast<Eigen::Index>(rows),
                    static_cast<Eigen::Index>(width))
          .noalias() = wm.transpose() * gm;
      T* out = dx->data() + first * x.sample();
      col2im(s.dcols.data(), g, in_, x.h(), x.w(), k_, stride_, pad_, p.ho, p.wo, out);
    }
  });
  const auto sum_slots = [&](std::size_t offset, std::span<T> into) {
    const_array_map<T> first(chunk_grads_.data() + offset, static_cast<Eigen::Index>(into.size()));
    array_map<T> total(into.data(), static_cast<Eigen::Index>(into.size()));
    total = first;
    for (std::size_t c = 1; c < p.chunks; ++c)
      total += const_array_map<T>(chunk_grads_.data() + c * slot + offset,
                                  static_cast<Eigen::Index>(into.size()));
  };
  sum_slots(0, weight_grad_);
  if (!bias_.empty()) sum_slots(weight_.size(), bias_grad_);
}

// ---- batchnorm2d ----------------------------------------------------------------------

namespace {

// The kernels below are plain loops that the compiler vectorises (Eigen 3.4 evaluates
// `select` one coefficient at a time, with a branch each); `omp simd` lets it reorder the
// float sums, which it would not do on its own.

// y = x * scale + shift, then max(y, 0) when `Relu` (NaN stays NaN).
template <bool Relu, class T>
void affine(const T* x, T* y, std::size_t len, T scale, T shift) {
SPRUCE_TRAIN_OMP(omp simd)
  for (std::size_t i = 0; i < len; ++i) {
    const T v = x[i] * scale + shift;
    y[i] = Relu && v < T(0) ? T(0) : v;
  }
}

// The gradient reaching the normalisation: dy, or with the fused ReLU dy where the forward
// output x * scale + shift was positive.
template <bool Relu, class T>
inline T masked(T x, T dy, T scale, T shift) {
  if constexpr (Relu) return x * scale + shift > T(0) ? dy : T(0);
  return dy;
}

// Adds sum(g) and sum(g * (x - mean)) over a run to the totals.
template <bool Relu, class T>
void gradient_sums(const T* x, const T* dy, std::size_t len, T mean, T scale, T shift,
                   double& sum_g, double& sum_gx) {
  T sg = 0, sgx = 0;
SPRUCE_TRAIN_OMP(omp simd reduction(+ : sg, sgx))
  for (std::size_t i = 0; i < len; ++i) {
    const T g = masked<Relu>(x[i], dy[i], scale, shift);
    sg += g;
    sgx += g * (x[i] - mean);
  }
  sum_g += static_cast<double>(sg);
  sum_gx += static_cast<double>(sgx);
}

// dx = a * g + b * x + d (dx may be dy).
template <bool Relu, class T>
void gradient_apply(const T* x, const T* dy, T* dx, std::size_t len, T scale, T shift, T a, T b,
                    T d) {
  for (std::size_t i = 0; i < len; ++i)
    dx[i] = masked<Relu>(x[i], dy[i], scale, shift) * a + x[i] * b + d;
}

}  // namespace


template <class T>
batchnorm2d<T>::batchnorm2d(std::size_t channels, bool relu, double eps, double momentum)
    : relu_(relu), eps_(eps), momentum_(momentum) {
  if (channels == 0)
    throw spruce::error("batchnorm2d: 0 channels; pass the channel count of its input");
  if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
    throw spruce::error(std::string("batchnorm2d: eps ")
                            .append(std::to_string(eps))
                            .append(", momentum ")
                            .append(std::to_string(momentum))
                            .append("; pass eps > 0 and momentum in [0, 1]"));
  weight_.assign(channels, T(1));
  bias_.assign(channels, T(0));
  weight_grad_.assign(channels, T(0));
  bias_grad_.assign(channels, T(0));
  running_mean_.assign(channels, T(0));
  running_var_.assign(channels, T(1));
  mean_.assign(channels, T(0));
  invstd_.assign(channels, T(1));
  scale_.assign(channels, T(1));
  shift_.assign(channels, T(0));
}

template <class T>
void batchnorm2d<T>::forward(const tensor<T>& x, tensor<T>& y, bool training) {
  require_batch("batchnorm2d forward", x.n());
  require_channels("batchnorm2d forward", x.c(), channels());
  const std::size_t n = x.n(), c = x.c(), hw = x.plane(), count = n * hw;
  if (training && count < 2)
    throw spruce::error(
        "batchnorm2d forward: one value per channel in training mode has no variance; pass a "
        "batch with more than one value per channel or switch to evaluation mode");
  trained_ = training;
  y.resize(n, c, x.h(), x.w());
  const auto plane_of = [&](const T* base, std::size_t img, std::size_t ch) {
    return const_array_map<T>(base + (img * c + ch) * hw, static_cast<Eigen::Index>(hw));
  };
  spruce::parallel_for(std::size_t{0}, c, [&](std::size_t ch) {
    double mean = 0, var = 0;
    if (training) {
      // One pass over memory: each plane's mean and squared deviations while it is in
      // cache, merged into the running totals with Chan et al.'s pairwise update.
      double m2 = 0;
      for (std::size_t img = 0; img < n; ++img) {
        const auto plane = plane_of(x.data(), img, ch);
        const double plane_mean = static_cast<double>(plane.sum()) / static_cast<double>(hw);
        const double plane_m2 = static_cast<double>((plane - static_cast<T>(plane_mean)).square().sum());
        const double seen = static_cast<double>(img * hw), both = seen + static_cast<double>(hw);
        const double delta = plane_mean - mean;
        mean += delta * static_cast<double>(hw) / both;
        m2 += plane_m2 + delta * delta * seen * static_cast<double>(hw) / both;
      }
      var = m2 / static_cast<double>(count);
      const double mom = momentum_;
      running_mean_[ch] = static_cast<T>((1 - mom) * running_mean_[ch] + mom * mean);
      running_var_[ch] = static_cast<T>((1 - mom) * running_var_[ch] +
                                        mom * var * static_cast<double>(count) /
                                            static_cast<double>(count - 1));
    } else {
      mean = running_mean_[ch];
      var = running_var_[ch];
    }
    const double invstd = 1.0 / std::sqrt(var + eps_);
    mean_[ch] = static_cast<T>(mean);
    invstd_[ch] = static_cast<T>(invstd);
    const T scale = static_cast<T>(weight_[ch] * invstd);
    const T shift = static_cast<T>(bias_[ch] - mean * weight_[ch] * invstd);
    scale_[ch] = scale;
    shift_[ch] = shift;
    for (std::size_t img = 0; img < n; ++img) {
      const std::size_t at = (img * c + ch) * hw;
      if (relu_)
        affine<true>(x.data() + at, y.data() + at, hw, scale, shift);
      else
        affine<false>(x.data() + at, y.data() + at, hw, scale, shift);
    }
  }, x.size() >= parallel_threshold ? std::size_t{2} : c + 1);
}

template <class T>
void batchnorm2d<T>::backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>* dx) {
  require_batch("batchnorm2d backward", x.n());
  require_channels("batchnorm2d backward", x.c(), channels());
  if (dy.shape() != x.shape())
    throw spruce::error(std::string("batchnorm2d backward: the output gradient has shape ")
                            .append(shape_text(dy.shape()))
                            .append(" but the input has ")
                            .append(shape_text(x.shape()))
                            .append("; pass the gradient of this layer's output"));
  const std::size_t n = x.n(), c = x.c(), hw = x.plane(), count = n * hw;
  if (dx != nullptr && dx != &dy) dx->resize(n, c, x.h(), x.w());
  spruce::parallel_for(std::size_t{0}, c, [&](std::size_t ch) {
    const T mean = mean_[ch], scale = scale_[ch], shift = shift_[ch];
    const double invstd = invstd_[ch];
    const auto run = [&]<bool Relu>() {
      double sum_dy = 0, sum_dy_xc = 0;  // sum(g), sum(g * (x - mean))
      for (std::size_t img = 0; img < n; ++img) {
        const std::size_t at = (img * c + ch) * hw;
        gradient_sums<Relu>(x.data() + at, dy.data() + at, hw, mean, scale, shift, sum_dy,
                            sum_dy_xc);
      }
      bias_grad_[ch] = static_cast<T>(sum_dy);
      weight_grad_[ch] = static_cast<T>(sum_dy_xc * invstd);
      if (dx == nullptr) return;
      // dx = a*g + b*x + d: in training the batch statistics depend on x as well,
      // dx = gamma*invstd * (g - mean(g) - xhat * mean(g * xhat)).
      const double gamma = weight_[ch];
      double a = gamma * invstd, b = 0, d = 0;
      if (trained_) {
        const double m = static_cast<double>(count);
        b = -gamma * invstd * invstd * invstd * sum_dy_xc / m;
        d = -gamma * invstd * sum_dy / m - b * mean;
      }
      for (std::size_t img = 0; img < n; ++img) {
        const std::size_t at = (img * c + ch) * hw;
        gradient_apply<Relu>(x.data() + at, dy.data() + at, dx->data() + at, hw, scale, shift,
                             static_cast<T>(a), static_cast<T>(b), static_cast<T>(d));
      }
    };
    if (relu_)
      run.template operator()<true>();
    else
      run.template operator()<false>();
  }, x.size() >= parallel_threshold ? std::size_t{2} : c + 1);
}

// ---- relu -----------------------------------------------------------------------------

template <class T>
void relu<T>::forward(const tensor<T>& x, tensor<T>& y) const {
  if (&y != &x) y.resize(x.n(), x.c(), x.h(), x.w());
  const std::size_t size = x.size(), blocks = (size + parallel_threshold - 1) / parallel_threshold;
  const T* in = x.data();
  T* out = y.data();
  // Blocks of parallel_threshold elements (NaN < 0 is false: NaN passes).
  spruce::parallel_for(std::size_t{0}, blocks, [&](std::size_t blk) {
    const std::size_t first = blk * parallel_threshold;
    const auto len = static_cast<Eigen::Index>(std::min(parallel_threshold, size - first));
    affine<true>(in + first, out + first, static_cast<std::size_t>(len), T(1), T(0));
  }, 2);
}

template <class T>
void relu<T>::backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>& dx) const {
  if (dy.shape() != x.shape())
    throw spruce::error(std::string("relu backward: the output gradient has shape ")
                            .append(shape_text(dy.shape()))
                            .append(" but the input has ")
                            .append(shape_text(x.shape()))
                            .append("; pass the gradient of this layer's output"));
  if (&dx != &dy) dx.resize(x.n(), x.c(), x.h(), x.w());
  const std::size_t size = x.size(), blocks = (size + parallel_threshold - 1) / parallel_threshold;
  const T* in = x.data();
  const T* g = dy.data();
  T* out = dx.data();
  // Local pointers and a select the compiler vectorises (through the captured references,
  // with dx possibly &dy, it kept a scalar loop with a branch per value).
  spruce::parallel_for(std::size_t{0}, blocks, [&](std::size_t blk) {
    const std::size_t first = blk * parallel_threshold, len = std::min(parallel_threshold, size - first);
    const T* xs = in + first;
    const T* gs = g + first;
    T* ds = out + first;
SPRUCE_TRAIN_OMP(omp simd)
    for (std::size_t i = 0; i < len; ++i) ds[i] = xs[i] > T(0) ? gs[i] : T(0);
  }, 2);
}

// ---- max_pool2d -----------------------------------------------------------------------

namespace {

// Later wins when larger or NaN: PyTorch's scan of a window in row-major order, written
// pairwise (row 0, row 1, then the two rows) so that it compiles to selects, not branches.
template <class T>
inline bool later_wins(T earlier, T later) {
  return later > earlier || later != later;
}

// Window (a b / c d): its maximum and the winner's position 0..3.
template <class T>
inline T pick(T a, T b, T c, T d, unsigned& at) {
  const bool top_right = later_wins(a, b), bottom_right = later_wins(c, d);
  const T top = top_right ? b : a, bottom = bottom_right ? d : c;
  const bool lower = later_wins(top, bottom);
  at = lower ? 2u + bottom_right : 0u + top_right;
  return lower ? bottom : top;
}

}  // namespace

template <class T>
void max_pool2d<T>::forward(const tensor<T>& x, tensor<T>& y) const {
  require_batch("max_pool2d forward", x.n());
  const std::size_t ho = spruce::pool2d_output_extent(x.h(), 2);
  const std::size_t wo = spruce::pool2d_output_extent(x.w(), 2);
  const std::size_t planes = x.n() * x.c(), w = x.w(), in_plane = x.plane();
  y.resize(x.n(), x.c(), ho, wo);
  const T* in = x.data();
  T* out = y.data();
  spruce::parallel_for(std::size_t{0}, planes, [&](std::size_t pl) {
    for (std::size_t oy = 0; oy < ho; ++oy) {
      const T* r0 = in + pl * in_plane + 2 * oy * w;
      const T* r1 = r0 + w;
      T* o = out + (pl * ho + oy) * wo;
      for (std::size_t ox = 0; ox < wo; ++ox) {
        unsigned at;
        o[ox] = pick(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], at);
      }
    }
  }, x.size() >= parallel_threshold ? std::size_t{2} : planes + 1);
}

template <class T>
void max_pool2d<T>::backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>& dx) const {
  require_batch("max_pool2d backward", x.n());
  const std::size_t n = x.n(), c = x.c(), h = x.h(), w = x.w();
  const std::size_t ho = h / 2, wo = w / 2;
  if (dy.shape() != std::array<std::size_t, 4>{n, c, ho, wo})
    throw spruce::error(std::string("max_pool2d backward: the output gradient has shape ")
                            .append(shape_text(dy.shape()))
                            .append(" but the input ")
                            .append(shape_text(x.shape()))
                            .append(" pools to ")
                            .append(shape_text({n, c, ho, wo}))
                            .append("; pass the forward input and its output's gradient"));
  dx.resize(n, c, h, w);
  const T* in = x.data();
  const T* g = dy.data();
  T* out = dx.data();
  spruce::parallel_for(std::size_t{0}, n * c, [&](std::size_t pl) {
    const T* plane = in + pl * h * w;
    T* dplane = out + pl * h * w;
    for (std::size_t oy = 0; oy < ho; ++oy) {
      const T* r0 = plane + 2 * oy * w;
      const T* r1 = r0 + w;
      T* d0 = dplane + 2 * oy * w;
      T* d1 = d0 + w;
      const T* go = g + (pl * ho + oy) * wo;
      for (std::size_t ox = 0; ox < wo; ++ox) {
        unsigned at;
        pick(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1], at);
        const T v = go[ox];
        d0[2 * ox] = at == 0 ? v : T(0);
        d0[2 * ox + 1] = at == 1 ? v : T(0);
        d1[2 * ox] = at == 2 ? v : T(0);
        d1[2 * ox + 1] = at == 3 ? v : T(0);
      }
      if (w % 2) d0[w - 1] = d1[w - 1] = T(0);  // the column the floor dropped
    }
    if (h % 2) std::fill(dplane + (h - 1) * w, dplane + h * w, T(0));  // and the row
  }, x.size() >= parallel_threshold ? std::size_t{2} : n * c + 1);
}

// ---- global_avg_pool ------------------------------------------------------------------

template <class T>
void global_avg_pool<T>::forward(const tensor<T>& x, tensor<T>& y) {
  require_batch("global_avg_pool forward", x.n());
  if (x.plane() == 0)
    throw spruce::error(std::string("global_avg_pool forward: the feature map is empty (")
                            .append(shape_text(x.shape()))
                            .append("); pass a map of at least 1 x 1"));
  in_shape_ = x.shape();
  const std::size_t planes = x.n() * x.c(), hw = x.plane();
  y.resize(x.n(), x.c(), 1, 1);
  for (std::size_t pl = 0; pl < planes; ++pl)
    y[pl] = const_array_map<T>(x.data() + pl * hw, static_cast<Eigen::Index>(hw)).mean();
}

template <class T>
void global_avg_pool<T>::backward(const tensor<T>& dy, tensor<T>& dx) const {
  const auto [n, c, h, w] = in_shape_;
  if (dy.shape() != std::array<std::size_t, 4>{n, c, 1, 1})
    throw spruce::error(std::string("global_avg_pool backward: the output gradient has shape ")
                            .append(shape_text(dy.shape()))
                            .append(" but the last forward output was ")
                            .append(shape_text({n, c, 1, 1}))
                            .append("; call forward first and pass its output's gradient"));
  dx.resize(n, c, h, w);
  const std::size_t hw = h * w;
  const T scale = T(1) / static_cast<T>(hw);
  for (std::size_t pl = 0; pl < n * c; ++pl)
    std::fill(dx.data() + pl * hw, dx.data() + (pl + 1) * hw, dy[pl] * scale);
}

// ---- linear ---------------------------------------------------------------------------

template <class T>
linear<T>::linear(std::size_t in_features, std::size_t out_features, bool bias)
    : in_(in_features), out_(out_features) {
  if (in_ == 0 || out_ == 0)
    throw spruce::error(std::string("linear: in_features ")
                            .append(std::to_string(in_))
                            .append(", out_features ")
                            .append(std::to_string(out_))
                            .append("; both must be at least 1"));
  weight_.assign(out_ * in_, T(0));
  weight_grad_.assign(weight_.size(), T(0));
  if (bias) {
    bias_.assign(out_, T(0));
    bias_grad_.assign(out_, T(0));
  }
}

template <class T>
void linear<T>::forward(const tensor<T>& x, tensor<T>& y) const {
  require_batch("linear forward", x.n());
  if (x.sample() != in_)
    throw spruce::error(std::string("linear forward: the input ")
                            .append(shape_text(x.shape()))
                            .append(" has ")
                            .append(std::to_string(x.sample()))
                            .append(" features per sample but the layer takes ")
                            .append(std::to_string(in_))
                            .append("; pass [N, in_features] (C*H*W = in_features)"));
  const auto n = static_cast<Eigen::Index>(x.n());
  y.resize(x.n(), out_);
  const const_matrix_map<T> xm(x.data(), n, static_cast<Eigen::Index>(in_));
  const const_matrix_map<T> wm(weight_.data(), static_cast<Eigen::Index>(out_),
                               static_cast<Eigen::Index>(in_));
  matrix_map<T> ym(y.data(), n, static_cast<Eigen::Index>(out_));
  ym.noalias() = xm * wm.transpose();
  if (!bias_.empty())
    ym.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(
        bias_.data(), static_cast<Eigen::Index>(out_));
}

template <class T>
void linear<T>::backward(const tensor<T>& x, const tensor<T>& dy, tensor<T>* dx) {
  require_batch("linear backward", x.n());
  if (x.sample() != in_ || dy.n() != x.n() || dy.sample() != out_)
    throw spruce::error(std::string("linear backward: input ")
                            .append(shape_text(x.shape()))
                            .append(" and output gradient ")
                            .append(shape_text(dy.shape()))
                            .append(" do not fit a layer of ")
                            .append(std::to_string(in_))
                            .append(" -> ")
                            .append(std::to_string(out_))
                            .append(" features; pass the forward input and its output's gradient"));
  const auto n = static_cast<Eigen::Index>(x.n());
  const auto in = static_cast<Eigen::Index>(in_), out = static_cast<Eigen::Index>(out_);
  const const_matrix_map<T> xm(x.data(), n, in);
  const const_matrix_map<T> gm(dy.data(), n, out);
  const const_matrix_map<T> wm(weight_.data(), out, in);
  matrix_map<T>(weight_grad_.data(), out, in).noalias() = gm.transpose() * xm;
  if (!bias_.empty()) {
    // Row by row in sample order: Eigen's vectorised column sums peel by the data's
    // alignment, which would make the last bits depend on where the allocator put dy.
    std::fill(bias_grad_.begin(), bias_grad_.end(), T(0));
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < out; ++j) bias_grad_[static_cast<std::size_t>(j)] += gm(i, j);
  }
  if (dx != nullptr) {
    dx->resize(x.n(), x.c(), x.h(), x.w());
    matrix_map<T>(dx->data(), n, in).noalias() = gm * wm;
  }
}

// ---- softmax_cross_entropy ------------------------------------------------------------

template <class T>
double softmax_cross_entropy<T>::forward(const tensor<T>& logits,
                                         std::span<const std::int32_t> labels) {
  require_batch("softmax_cross_entropy forward", logits.n());
  const std::size_t n = logits.n(), k = logits.sample();
  if (labels.size() != n)
    throw spruce::error(std::string("softmax_cross_entropy forward: ")
                            .append(std::to_string(labels.size()))
                            .append(" labels for a batch of ")
                            .append(std::to_string(n))
                            .append("; pass one label per sample"));
  for (std::size_t i = 0; i < n; ++i)
    if (labels[i] < 0 || static_cast<std::size_t>(labels[i]) >= k)
      throw spruce::error(std::string("softmax_cross_entropy forward: label ")
                              .append(std::to_string(labels[i]))
                              .append(" of sample ")
                              .append(std::to_string(i))
                              .append(" is outside [0, ")
                              .append(std::to_string(k))
                              .append("); pass class indices"));
  prob_.resize(n, k);
  labels_.assign(labels.begin(), labels.end());
  double total = 0;
  correct_ = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const T* row = logits.data() + i * k;
    T* p = prob_.data() + i * k;
    const std::size_t best = static_cast<std::size_t>(std::max_element(row, row + k) - row);
    const double top = row[best];
    double sum = 0;
    for (std::size_t j = 0; j < k; ++j) sum += std::exp(static_cast<double>(row[j]) - top);
    const double lse = top + std::log(sum);
    for (std::size_t j = 0; j < k; ++j) p[j] = static_cast<T>(std::exp(row[j] - lse));
    total += lse - static_cast<double>(row[labels[i]]);
    correct_ += best == static_cast<std::size_t>(labels[i]);
  }
  return total / static_cast<double>(n);
}

template <class T>
void softmax_cross_entropy<T>::backward(tensor<T>& dlogits) const {
  const std::size_t n = prob_.n(), k = prob_.c();
  if (n == 0)
    throw spruce::error("softmax_cross_entropy backward: no forward pass yet; call forward first");
  dlogits.resize(n, k);
  const T inv_n = T(1) / static_cast<T>(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < k; ++j)
      dlogits[i * k + j] =
          (prob_[i * k + j] - (static_cast<std::size_t>(labels_[i]) == j ? T(1) : T(0))) * inv_n;
}

template class conv2d<float>;
template class conv2d<double>;
template class batchnorm2d<float>;
template class batchnorm2d<double>;
template struct relu<float>;
template struct relu<double>;
template struct max_pool2d<float>;
template struct max_pool2d<double>;
template class global_avg_pool<float>;
template class global_avg_pool<double>;
template class linear<float>;
template class linear<double>;
template class softmax_cross_entropy<float>;
template class softmax_cross_entropy<double>;

}  // namespace train
