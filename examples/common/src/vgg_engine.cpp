// The float VGG's fast path. The layer classes (layers.cpp) compute each layer on NCHW
// tensors through im2col + GEMM, which spends half of a training step moving data: the
// unfolded columns, transposes between the GEMM's layout and NCHW, and one pass over memory
// per layer and direction. Here every activation is channels-last (NHWC) on a grid with a
// one-pixel zero border, so a 3x3 convolution is nine shifted products read straight from
// the activation (no im2col): output position q of an image is
//   y[q][co] = sum over taps t and channels ci of x[q + off_t][ci] * w_t[ci][co]
// with off_t the tap's offset on the bordered grid. The products run in register tiles of
// R positions x up to 64 channels (GCC vector extensions: 512-bit vectors where the build
// has AVX-512, two 256-bit halves otherwise). Channel counts are stored rounded up to a
// multiple of 8 (the extra channels are zero) so that every tile is whole vectors.
//
// The batch is processed image by image inside each pass, so that an image's activations
// stay in cache from the convolution to the statistics or to the next layer: in training,
// BN + ReLU + pool of block i, the conv of block i+1 and its per-image statistics run in one
// loop over the images; in evaluation the whole network does. Backward likewise fuses BN's
// input gradient, the weight gradient, the input gradient and the next block's ReLU/pool
// routing and BN sums. Every reduction is summed in a fixed order (per image, or per fixed
// group of images), so results do not depend on the thread count or on scheduling.
//
// The semantics are those of the layer classes (PyTorch's): batch statistics with the biased
// variance, running variance unbiased, ReLU and max pool passing NaN, the first maximum of a
// 2x2 window in row-major order winning. tests/train/test_model.cpp checks this path against
// the double model, which runs the gradient-checked layer classes.

#include "vgg_engine.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <spruce/core/error.hpp>
#include <spruce/core/parallel.hpp>

#ifdef _OPENMP
#include <omp.h>
#define SPRUCE_TRAIN_OMP(...) _Pragma(#__VA_ARGS__)
#else
#define SPRUCE_TRAIN_OMP(...)
#endif

namespace train {
namespace detail {
namespace {

using v16 = float __attribute__((vector_size(64)));
using v8 = float __attribute__((vector_size(32)));

template <class V>
inline V load(const float* p) noexcept {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
inline void store(float* p, V v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

#ifdef __AVX512F__
constexpr bool wide_registers = true;  // 32 vector registers of 16 floats
#else
constexpr bool wide_registers = false;  // 16 registers of 8 floats: v16 takes two
#endif

// Tile rows for NV vectors of V: as many accumulators as leave room for the B vectors.
template <int NV, class V>
constexpr int tile_rows() {
  if constexpr (wide_registers) {
    if constexpr (NV == 4) return 6;
    if constexpr (NV == 3) return 8;
    if constexpr (NV == 2) return 12;
    return 24;
  } else {
    constexpr int regs = NV * static_cast<int>(sizeof(V) / 32);
    return regs >= 4 ? 2 : regs >= 2 ? 5 : 12;
  }
}

// C[pos[r]] (NV*W columns) = sum over 9 taps and K inputs of A[pos[r] + toff[t] + k] *
// B[t][k][:]. Offsets in floats; ldb, ldc in floats.
template <int R, int NV, class V>
void conv_tile(const float* A, std::ptrdiff_t lda, const int* pos, const std::ptrdiff_t* toff,
               int K, const float* B, std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc) {
  constexpr int W = static_cast<int>(sizeof(V) / sizeof(float));
  V acc[R][NV];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  const float* pa[R];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) pa[r] = A + pos[r] * lda;
  for (int t = 0; t < 9; ++t) {
    const float* bt = B + static_cast<std::ptrdiff_t>(t) * K * ldb;
    const std::ptrdiff_t o = toff[t];
    for (int k = 0; k < K; ++k) {
      V b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) b[v] = load<V>(bt + k * ldb + v * W);
#pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        const float a = pa[r][o + k];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] += b[v] * a;
      }
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) store(C + pos[r] * ldc + v * W, acc[r][v]);
}

// out[r][:] += sum over positions i of X[pos[i] * lda + roff[r]] * G[pos[i] * ldg + :].
template <int R, int NV, class V>
void wgrad_tile(const float* X, std::ptrdiff_t lda, const std::ptrdiff_t* roff, const float* G,
                std::ptrdiff_t ldg, const int* pos, int npos, float* out, std::ptrdiff_t ldo) {
  constexpr int W = static_cast<int>(sizeof(V) / sizeof(float));
  V acc[R][NV];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  std::ptrdiff_t ro[R];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) ro[r] = roff[r];
  for (int i = 0; i < npos; ++i) {
    const float* x = X + pos[i] * lda;
    const float* g = G + pos[i] * ldg;
    V b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = load<V>(g + v * W);
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      const float a = x[ro[r]];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += b[v] * a;
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* o = out + r * ldo + v * W;
      store(o, load<V>(o) + acc[r][v]);
    }
}

// Runs a tile function over `rows` rows in tiles of the main size, then the remainder in
// tiles of 16, 8, 4, 2, 1 (each no larger than the main size).
template <int NV, class V, class F>
void over_rows(int rows, F&& f) {
  constexpr int R = tile_rows<NV, V>();
  int r = 0;
  for (; r + R <= rows; r += R) f.template operator()<R>(r);
  const auto tail = [&]<int S>() {
    if constexpr (S < R)
      for (; r + S <= rows; r += S) f.template operator()<S>(r);
  };
  tail.template operator()<16>();
  tail.template operator()<8>();
  tail.template operator()<4>();
  tail.template operator()<2>();
  tail.template operator()<1>();
}

// Splits `cols` (a multiple of 8) into column blocks of up to 64 and calls
// g.template operator()<NV, V>(first column) for each.
template <class G>
void over_cols(int cols, G&& g) {
  int j = 0;
  for (; j + 64 <= cols; j += 64) g.template operator()<4, v16>(j);
  const int rest = (cols - j) / 16;
  if (rest == 3) g.template operator()<3, v16>(j);
  if (rest == 2) g.template operator()<2, v16>(j);
  if (rest == 1) g.template operator()<1, v16>(j);
  j += rest * 16;
  if (j < cols) g.template operator()<1, v8>(j);
}

// C (positions pos, ldc columns) = conv of A (lda channels per position, K of them read).
void conv_image(const float* A, std::ptrdiff_t lda, int K, const std::ptrdiff_t* toff,
                const float* B, int cols, float* C, const int* pos, int rows) {
  over_cols(cols, [&]<int NV, class V>(int j) {
    over_rows<NV, V>(rows, [&]<int R>(int r) {
      conv_tile<R, NV, V>(A, lda, pos + r, toff, K, B + j, cols, C + j, cols);
    });
  });
}

// out [rows = 9*K][cols] += X^T G over the positions, rows (t, ci) at roff.
void wgrad_image(const float* X, std::ptrdiff_t lda, const std::vector<std::ptrdiff_t>& roff,
                 const float* G, int cols, const int* pos, int np, float* out) {
  const int rows = static_cast<int>(roff.size());
  over_cols(cols, [&]<int NV, class V>(int j) {
    over_rows<NV, V>(rows, [&]<int R>(int r) {
      wgrad_tile<R, NV, V>(X, lda, roff.data() + r, G + j, cols, pos, np,
                           out + static_cast<std::ptrdiff_t>(r) * cols + j, cols);
    });
  });
}

constexpr std::size_t round8(std::size_t c) { return (c + 7) / 8 * 8; }

// Eight channels at a time (every stored channel count is a multiple of 8).
using i8 = int __attribute__((vector_size(32)));
using u8x8 = unsigned char __attribute__((vector_size(8)));

inline v8 relu8(v8 v) { return v < v8{} ? v8{} : v; }  // NaN < 0 is false: NaN passes
// Later wins when larger or NaN (the layer classes' max_pool2d rule).
inline i8 later_wins8(v8 earlier, v8 later) { return (later > earlier) | (later != later); }

}  // namespace

// A bordered NHWC grid of one block's spatial size.
struct grid {
  std::size_t h = 0, w = 0;   // interior
  std::size_t hp = 0, wp = 0;  // with the border
  std::size_t size() const { return hp * wp; }
  std::vector<int> interior;  // bordered positions of the interior, row-major
  std::array<std::ptrdiff_t, 9> taps{};  // position offsets of the 3x3 taps
  void set(std::size_t hh, std::size_t ww) {
    h = hh;
    w = ww;
    hp = h + 2;
    wp = w + 2;
    interior.clear();
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x) interior.push_back(static_cast<int>((y + 1) * wp + x + 1));
    for (int t = 0; t < 9; ++t)
      taps[static_cast<std::size_t>(t)] =
          static_cast<std::ptrdiff_t>(t / 3 - 1) * static_cast<std::ptrdiff_t>(wp) + (t % 3 - 1);
  }
};

struct engine_layer_state {
  std::size_t cin = 0, kin = 0;    // real input channels, stored input channels (lda)
  std::size_t cout = 0, cp = 0;    // real and stored output channels
  bool pool = false;
  grid g;                          // this block's grid (input and conv output)
  std::vector<int> allpos;         // interior positions of every image of the batch
  std::vector<float> y;            // conv output [n][g][cp]
  std::vector<float> dy;           // BN input gradient [n][g][cp], zero border
  std::vector<std::uint8_t> arg;   // pool winners [n][ho*wo][cp]
  std::vector<float> bf, bb;       // packed weights: forward [9][kin][cp], input grad [9][cp][kin]
  std::vector<std::ptrdiff_t> toff_f, toff_b, roff;  // tap offsets (floats), wgrad rows
  std::vector<float> mean, invstd, scale, shift;      // [cp], what the last forward used
  std::vector<float> img_a, img_b;                    // per-image stats [n][cp]
  std::vector<float> wpart;                           // weight-grad partials [groups][9*kin][cp]
  std::vector<float> coef_a, coef_b, coef_d;          // BN backward coefficients [cp]
};

class vgg_engine {
 public:
  std::size_t n = 0, c = 0, h = 0, w = 0;  // shape the buffers are laid out for
  bool trained = false, ready = false;
  std::vector<engine_layer_state> L;
  // x[i]: input of block i (bordered, zero border); x[L.size()] the last block's output.
  // dz[i]: gradient of block i's output, on the grid of x[i + 1].
  std::vector<std::vector<float>> x, dz;
  grid out_grid;
  std::size_t groups = 1;
};

namespace {

void layout(vgg_engine& e, std::span<const engine_block> blocks, std::size_t n, std::size_t c,
            std::size_t h, std::size_t w) {
  const bool same = e.n == n && e.c == c && e.h == h && e.w == w && e.L.size() == blocks.size();
  bool match = same;
  if (same)
    for (std::size_t i = 0; i < blocks.size(); ++i)
      match = match && e.L[i].cout == blocks[i].conv->out_channels() &&
              e.L[i].cin == blocks[i].conv->in_channels() && e.L[i].pool == blocks[i].pool;
  if (match) return;
  e.n = n;
  e.c = c;
  e.h = h;
  e.w = w;
  e.ready = false;
  e.groups = std::min<std::size_t>(n, 16);
  e.L.assign(blocks.size(), {});
  e.x.assign(blocks.size() + 1, {});
  e.dz.assign(blocks.size(), {});
  std::size_t hh = h, ww = w, kin = c;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    auto& s = e.L[i];
    s.cin = blocks[i].conv->in_channels();
    s.kin = kin;
    s.cout = blocks[i].conv->out_channels();
    s.cp = round8(s.cout);
    s.pool = blocks[i].pool;
    s.g.set(hh, ww);
    const std::size_t sz = s.g.size();
    s.allpos.clear();
    for (std::size_t m = 0; m < n; ++m)
      for (int q : s.g.interior) s.allpos.push_back(static_cast<int>(m * sz) + q);
    e.x[i].assign(n * sz * s.kin, 0.f);
    s.y.assign(n * sz * s.cp, 0.f);
    s.dy.assign(n * sz * s.cp, 0.f);
    s.toff_f.resize(9);
    s.toff_b.resize(9);
    for (std::size_t t = 0; t < 9; ++t) {
      s.toff_f[t] = s.g.taps[t] * static_cast<std::ptrdiff_t>(s.kin);
      s.toff_b[t] = -s.g.taps[t] * static_cast<std::ptrdiff_t>(s.cp);
    }
    s.roff.resize(9 * s.kin);
    for (std::size_t t = 0; t < 9; ++t)
      for (std::size_t ci = 0; ci < s.kin; ++ci)
        s.roff[t * s.kin + ci] = s.g.taps[t] * static_cast<std::ptrdiff_t>(s.kin) +
                                 static_cast<std::ptrdiff_t>(ci);
    s.bf.assign(9 * s.kin * s.cp, 0.f);
    s.bb.assign(9 * s.cp * s.kin, 0.f);
    for (auto* v : {&s.mean, &s.invstd, &s.scale, &s.shift, &s.coef_a, &s.coef_b, &s.coef_d})
      v->assign(s.cp, 0.f);
    s.img_a.assign(n * s.cp, 0.f);
    s.img_b.assign(n * s.cp, 0.f);
    s.wpart.assign(e.groups * 9 * s.kin * s.cp, 0.f);
    if (s.pool) {
      hh /= 2;
      ww /= 2;
      s.arg.assign(n * hh * ww * s.cp, 0);
    }
    kin = s.cp;
  }
  e.out_grid.set(hh, ww);
  e.x[blocks.size()].assign(n * e.out_grid.size() * kin, 0.f);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const grid& next = i + 1 < blocks.size() ? e.L[i + 1].g : e.out_grid;
    e.dz[i].assign(n * next.size() * e.L[i].cp, 0.f);
  }
}

// Images [first, last) of the batch for group `g` of `groups`.
std::pair<std::size_t, std::size_t> group_range(std::size_t g, std::size_t groups, std::size_t n) {
  return {g * n / groups, (g + 1) * n / groups};
}

// Pack the forward weights [9][kin][cp] from OIHW.
void pack_forward(engine_layer_state& s, conv2d<float>& conv) {
  const float* wt = conv.weight().data();
  for (std::size_t co = 0; co < s.cout; ++co)
    for (std::size_t ci = 0; ci < s.cin; ++ci)
      for (std::size_t t = 0; t < 9; ++t)
        s.bf[(t * s.kin + ci) * s.cp + co] = wt[(co * s.cin + ci) * 9 + t];
}

void pack_backward(engine_layer_state& s, conv2d<float>& conv) {
  const float* wt = conv.weight().data();
  for (std::size_t co = 0; co < s.cout; ++co)
    for (std::size_t ci = 0; ci < s.cin; ++ci)
      for (std::size_t t = 0; t < 9; ++t)
        s.bb[(t * s.cp + co) * s.kin + ci] = wt[(co * s.cin + ci) * 9 + t];
}

// Conv of image m of block i, then (in training) its per-image mean and M2 per channel.
void conv_forward_group(vgg_engine& e, std::size_t i, std::size_t first, std::size_t last,
                        bool stats) {
  auto& s = e.L[i];
  const std::size_t sz = s.g.size(), cp = s.cp, p = s.g.interior.size();
  conv_image(e.x[i].data(), static_cast<std::ptrdiff_t>(s.kin), static_cast<int>(s.kin),
             s.toff_f.data(), s.bf.data(), static_cast<int>(cp), s.y.data(),
             s.allpos.data() + first * p, static_cast<int>((last - first) * p));
  if (!stats) return;
  for (std::size_t m = first; m < last; ++m) {
  float* y = s.y.data() + m * sz * cp;
  float* mean = s.img_a.data() + m * cp;
  float* m2 = s.img_b.data() + m * cp;
  std::fill(mean, mean + cp, 0.f);
  std::fill(m2, m2 + cp, 0.f);
  for (int q : s.g.interior) {
    const float* row = y + static_cast<std::size_t>(q) * cp;
SPRUCE_TRAIN_OMP(omp simd)
    for (std::size_t ch = 0; ch < cp; ++ch) mean[ch] += row[ch];
  }
  const float inv = 1.f / static_cast<float>(s.g.interior.size());
  for (std::size_t ch = 0; ch < cp; ++ch) mean[ch] *= inv;
  for (int q : s.g.interior) {
    const float* row = y + static_cast<std::size_t>(q) * cp;
SPRUCE_TRAIN_OMP(omp simd)
    for (std::size_t ch = 0; ch < cp; ++ch) {
      const float d = row[ch] - mean[ch];
      m2[ch] += d * d;
    }
  }
  }
}

// BN + ReLU (+ pool) of image m of block i into x[i + 1].
void bn_forward_image(vgg_engine& e, std::size_t i, std::size_t m) {
  auto& s = e.L[i];
  const std::size_t cp = s.cp, sz = s.g.size();
  const float* y = s.y.data() + m * sz * cp;
  const grid& next = i + 1 < e.L.size() ? e.L[i + 1].g : e.out_grid;
  float* out = e.x[i + 1].data() + m * next.size() * cp;
  const float* sc = s.scale.data();
  const float* sh = s.shift.data();
  if (!s.pool) {
    for (int q : s.g.interior) {
      const float* row = y + static_cast<std::size_t>(q) * cp;
      float* o = out + static_cast<std::size_t>(q) * cp;
      for (std::size_t ch = 0; ch < cp; ch += 8)
        store(o + ch, relu8(load<v8>(row + ch) * load<v8>(sc + ch) + load<v8>(sh + ch)));
    }
    return;
  }
  const std::size_t ho = next.h, wo = next.w, wp = s.g.wp;
  std::uint8_t* arg = s.arg.data() + m * ho * wo * cp;
  for (std::size_t oy = 0; oy < ho; ++oy)
    for (std::size_t ox = 0; ox < wo; ++ox) {
      const std::size_t p00 = (2 * oy + 1) * wp + 2 * ox + 1;
      const float* r00 = y + p00 * cp;
      const float* r01 = r00 + cp;
      const float* r10 = y + (p00 + wp) * cp;
      const float* r11 = r10 + cp;
      float* o = out + ((oy + 1) * next.wp + ox + 1) * cp;
      std::uint8_t* at_row = arg + (oy * wo + ox) * cp;
      for (std::size_t ch = 0; ch < cp; ch += 8) {
        const v8 scv = load<v8>(sc + ch), shv = load<v8>(sh + ch);
        const v8 a = relu8(load<v8>(r00 + ch) * scv + shv), b = relu8(load<v8>(r01 + ch) * scv + shv);
        const v8 c = relu8(load<v8>(r10 + ch) * scv + shv), d = relu8(load<v8>(r11 + ch) * scv + shv);
        const i8 tr = later_wins8(a, b), br = later_wins8(c, d);
        const v8 top = tr ? b : a, bottom = br ? d : c;
        const i8 lower = later_wins8(top, bottom);
        store(o + ch, lower ? bottom : top);
        const i8 at = lower ? 2 - br : -tr;  // masks are -1 / 0
        const u8x8 packed = __builtin_convertvector(at, u8x8);
        std::memcpy(at_row + ch, &packed, sizeof packed);
      }
    }
}

// Batch statistics of block i from the per-image ones; BN's scale and shift; running stats.
void finish_stats(vgg_engine& e, std::size_t i, batchnorm2d<float>& bn, bool training) {
  auto& s = e.L[i];
  const std::size_t n = e.n, cp = s.cp, p = s.g.interior.size(), count = n * p;
  for (std::size_t ch = 0; ch < s.cout; ++ch) {
    double mean, var;
    if (training) {
      double sum = 0;
      for (std::size_t m = 0; m < n; ++m) sum += s.img_a[m * cp + ch];
      mean = sum / static_cast<double>(n);
      double m2 = 0, between = 0;
      for (std::size_t m = 0; m < n; ++m) {
        m2 += s.img_b[m * cp + ch];
        const double d = s.img_a[m * cp + ch] - mean;
        between += d * d;
      }
      var = (m2 + between * static_cast<double>(p)) / static_cast<double>(count);
      const double mom = bn.momentum();
      bn.running_mean()[ch] = static_cast<float>((1 - mom) * bn.running_mean()[ch] + mom * mean);
      bn.running_var()[ch] = static_cast<float>(
          (1 - mom) * bn.running_var()[ch] +
          mom * var * static_cast<double>(count) / static_cast<double>(count - 1));
    } else {
      mean = bn.running_mean()[ch];
      var = bn.running_var()[ch];
    }
    const double invstd = 1.0 / std::sqrt(var + bn.eps());
    const double gamma = bn.weight()[ch];
    s.mean[ch] = static_cast<float>(mean);
    s.invstd[ch] = static_cast<float>(invstd);
    s.scale[ch] = static_cast<float>(gamma * invstd);
    s.shift[ch] = static_cast<float>(bn.bias()[ch] - mean * gamma * invstd);
  }
  for (std::size_t ch = s.cout; ch < cp; ++ch) s.mean[ch] = s.invstd[ch] = s.scale[ch] = s.shift[ch] = 0.f;
}

// Backward part 1 for image m of block i: route dz through the pool and the ReLU mask into
// dy (the gradient reaching BN's output), with per-image sums of g and g * (y - mean).
void route_image(vgg_engine& e, std::size_t i, std::size_t m) {
  auto& s = e.L[i];
  const std::size_t cp = s.cp, sz = s.g.size();
  const float* y = s.y.data() + m * sz * cp;
  float* g = s.dy.data() + m * sz * cp;
  const grid& next = i + 1 < e.L.size() ? e.L[i + 1].g : e.out_grid;
  const float* dz = e.dz[i].data() + m * next.size() * cp;
  const float* sc = s.scale.data();
  const float* sh = s.shift.data();
  const float* mu = s.mean.data();
  float* sg = s.img_a.data() + m * cp;
  float* sgx = s.img_b.data() + m * cp;
  std::fill(sg, sg + cp, 0.f);
  std::fill(sgx, sgx + cp, 0.f);
  const std::size_t ho = next.h, wo = next.w;
  const std::uint8_t* arg = s.pool ? s.arg.data() + m * ho * wo * cp : nullptr;
  for (std::size_t yy = 0; yy < s.g.h; ++yy)
    for (std::size_t xx = 0; xx < s.g.w; ++xx) {
      const std::size_t q = (yy + 1) * s.g.wp + xx + 1;
      const float* yr = y + q * cp;
      float* gr = g + q * cp;
      if (s.pool) {
        const std::size_t oy = yy / 2, ox = xx / 2;
        if (oy >= ho || ox >= wo) {  // the row or column the floor dropped
          std::fill(gr, gr + cp, 0.f);
          continue;
        }
        const int k = static_cast<int>((yy & 1) * 2 + (xx & 1));
        const float* dr = dz + ((oy + 1) * next.wp + ox + 1) * cp;
        const std::uint8_t* ar = arg + (oy * wo + ox) * cp;
        for (std::size_t ch = 0; ch < cp; ch += 8) {
          u8x8 packed;
          std::memcpy(&packed, ar + ch, sizeof packed);
          const i8 won = __builtin_convertvector(packed, i8) == k;
          const v8 yv = load<v8>(yr + ch);
          const i8 on = won & (yv * load<v8>(sc + ch) + load<v8>(sh + ch) > v8{});
          const v8 v = on ? load<v8>(dr + ch) : v8{};
          store(gr + ch, v);
          store(sg + ch, load<v8>(sg + ch) + v);
          store(sgx + ch, load<v8>(sgx + ch) + v * (yv - load<v8>(mu + ch)));
        }
      } else {
        const float* dr = dz + q * cp;
        for (std::size_t ch = 0; ch < cp; ch += 8) {
          const v8 yv = load<v8>(yr + ch);
          const v8 v = yv * load<v8>(sc + ch) + load<v8>(sh + ch) > v8{} ? load<v8>(dr + ch) : v8{};
          store(gr + ch, v);
          store(sg + ch, load<v8>(sg + ch) + v);
          store(sgx + ch, load<v8>(sgx + ch) + v * (yv - load<v8>(mu + ch)));
        }
      }
    }
}

// BN's parameter gradients and input-gradient coefficients of block i from per-image sums.
void finish_bn_backward(vgg_engine& e, std::size_t i, batchnorm2d<float>& bn) {
  auto& s = e.L[i];
  const std::size_t n = e.n, cp = s.cp;
  const double m = static_cast<double>(n * s.g.interior.size());
  for (std::size_t ch = 0; ch < s.cout; ++ch) {
    double sum_dy = 0, sum_dy_xc = 0;
    for (std::size_t img = 0; img < n; ++img) {
      sum_dy += s.img_a[img * cp + ch];
      sum_dy_xc += s.img_b[img * cp + ch];
    }
    const double invstd = s.invstd[ch];
    bn.bias_grad()[ch] = static_cast<float>(sum_dy);
    bn.weight_grad()[ch] = static_cast<float>(sum_dy_xc * invstd);
    const double gamma = bn.weight()[ch];
    double a = gamma * invstd, b = 0, d = 0;
    if (e.trained) {
      b = -gamma * invstd * invstd * invstd * sum_dy_xc / m;
      d = -gamma * invstd * sum_dy / m - b * s.mean[ch];
    }
    s.coef_a[ch] = static_cast<float>(a);
    s.coef_b[ch] = static_cast<float>(b);
    s.coef_d[ch] = static_cast<float>(d);
  }
  for (std::size_t ch = s.cout; ch < cp; ++ch) s.coef_a[ch] = s.coef_b[ch] = s.coef_d[ch] = 0.f;
}

// Backward part 2 for image m of block i: dy = a*g + b*y + d, the weight gradient into the
// group's partial, and (i > 0) the input gradient into dz[i - 1].
void conv_backward_group(vgg_engine& e, std::size_t i, std::size_t first, std::size_t last,
                         std::size_t group) {
  auto& s = e.L[i];
  const std::size_t cp = s.cp, sz = s.g.size(), p = s.g.interior.size();
  for (std::size_t m = first; m < last; ++m) {
  const float* y = s.y.data() + m * sz * cp;
  float* g = s.dy.data() + m * sz * cp;
  const float* ca = s.coef_a.data();
  const float* cb = s.coef_b.data();
  const float* cd = s.coef_d.data();
  for (int q : s.g.interior) {
    float* gr = g + static_cast<std::size_t>(q) * cp;
    const float* yr = y + static_cast<std::size_t>(q) * cp;
SPRUCE_TRAIN_OMP(omp simd)
    for (std::size_t ch = 0; ch < cp; ++ch) gr[ch] = gr[ch] * ca[ch] + yr[ch] * cb[ch] + cd[ch];
  }
  }
  const int* pos = s.allpos.data() + first * p;
  const int rows = static_cast<int>((last - first) * p);
  wgrad_image(e.x[i].data(), static_cast<std::ptrdiff_t>(s.kin), s.roff, s.dy.data(),
              static_cast<int>(cp), pos, rows, s.wpart.data() + group * 9 * s.kin * cp);
  if (i == 0) return;
  conv_image(s.dy.data(), static_cast<std::ptrdiff_t>(cp), static_cast<int>(cp), s.toff_b.data(),
             s.bb.data(), static_cast<int>(s.kin), e.dz[i - 1].data(), pos, rows);
}

// Runs f(first image, last image, group) for every group of the batch on spruce's helper
// pool (core/parallel.hpp), not an OpenMP team: a team's end barrier waits for a member
// that another process has preempted (a whole scheduler slice, several times per training
// step on a shared machine), the pool's caller only waits for groups a helper has started,
// and blocks while it does. Each group writes its own partial sums, so the result does not
// depend on which thread ran which group.
template <class F>
void for_groups(vgg_engine& e, F&& f) {
  spruce::parallel_for(
      0, e.groups,
      [&](std::size_t gi) {
        const auto [first, last] = group_range(gi, e.groups, e.n);
        f(first, last, gi);
      },
      2);
}

}  // namespace

bool engine_ready(const vgg_engine& e) noexcept { return e.ready; }

void engine_forward(vgg_engine& e, std::span<const engine_block> blocks, const float* images,
                    std::size_t n, std::size_t c, std::size_t h, std::size_t w, bool training,
                    tensor<float>& features) {
  // Validate before touching any state: in training every block needs two values per channel.
  if (training) {
    std::size_t hh = h, ww = w;
    for (const auto& b : blocks) {
      if (n * hh * ww < 2)
        throw spruce::error(
            "batchnorm2d forward: one value per channel in training mode has no variance; pass a "
            "batch with more than one value per channel or switch to evaluation mode");
      if (b.pool) {
        hh /= 2;
        ww /= 2;
      }
    }
  }
  layout(e, blocks, n, c, h, w);
  e.ready = false;
  e.trained = training;
  const std::size_t nb = blocks.size();
  for (std::size_t i = 0; i < nb; ++i) pack_forward(e.L[i], *blocks[i].conv);
  // NCHW images into the bordered NHWC grid of block 0.
  {
    const auto& g0 = e.L[0].g;
    const std::size_t sz = g0.size(), hw = h * w;
    for_groups(e, [&](std::size_t first, std::size_t last, std::size_t) {
      for (std::size_t m = first; m < last; ++m) {
      float* out = e.x[0].data() + m * sz * c;
      const float* in = images + m * c * hw;
      for (std::size_t yy = 0; yy < h; ++yy)
        for (std::size_t xx = 0; xx < w; ++xx) {
          float* o = out + ((yy + 1) * g0.wp + xx + 1) * c;
          for (std::size_t ch = 0; ch < c; ++ch) o[ch] = in[ch * hw + yy * w + xx];
        }
      }
    });
  }
  if (!training) {
    for (std::size_t i = 0; i < nb; ++i) finish_stats(e, i, *blocks[i].bn, false);
    for_groups(e, [&](std::size_t first, std::size_t last, std::size_t) {
      for (std::size_t i = 0; i < nb; ++i) {
        conv_forward_group(e, i, first, last, false);
        for (std::size_t m = first; m < last; ++m) bn_forward_image(e, i, m);
      }
    });
  } else {
    for_groups(e, [&](std::size_t first, std::size_t last, std::size_t) {
      conv_forward_group(e, 0, first, last, true);
    });
    for (std::size_t i = 0; i < nb; ++i) {
      finish_stats(e, i, *blocks[i].bn, true);
      for_groups(e, [&](std::size_t first, std::size_t last, std::size_t) {
        for (std::size_t m = first; m < last; ++m) bn_forward_image(e, i, m);
        if (i + 1 < nb) conv_forward_group(e, i + 1, first, last, true);
      });
    }
  }
  // The mean over H and W of the last block's output.
  const std::size_t cl = e.L.back().cp, creal = e.L.back().cout;
  features.resize(n, creal, 1, 1);
  const float inv = 1.f / static_cast<float>(e.out_grid.interior.size());
  const std::size_t osz = e.out_grid.size();
  for (std::size_t m = 0; m < n; ++m) {
    const float* base = e.x[nb].data() + m * osz * cl;
    float* f = features.data() + m * creal;
    std::fill(f, f + creal, 0.f);
    for (int q : e.out_grid.interior)
      for (std::size_t ch = 0; ch < creal; ++ch) f[ch] += base[static_cast<std::size_t>(q) * cl + ch];
    for (std::size_t ch = 0; ch < creal; ++ch) f[ch] *= inv;
  }
  e.ready = true;
}

void engine_backward(vgg_engine& e, std::span<const engine_block> blocks,
                     const tensor<float>& d_features) {
  const std::size_t nb = blocks.size(), n = e.n;
  // The mean's gradient: every interior position of the last output gets d_features / P.
  {
    const std::size_t cl = e.L.back().cp, creal = e.L.back().cout, osz = e.out_grid.size();
    const float inv = 1.f / static_cast<float>(e.out_grid.interior.size());
    for (std::size_t m = 0; m < n; ++m) {
      float* base = e.dz[nb - 1].data() + m * osz * cl;
      const float* f = d_features.data() + m * creal;
      for (int q : e.out_grid.interior) {
        float* row = base + static_cast<std::size_t>(q) * cl;
        for (std::size_t ch = 0; ch < creal; ++ch) row[ch] = f[ch] * inv;
        for (std::size_t ch = creal; ch < cl; ++ch) row[ch] = 0.f;
      }
    }
  }
  for (std::size_t i = 0; i < nb; ++i) {
    pack_backward(e.L[i], *blocks[i].conv);
    std::fill(e.L[i].wpart.begin(), e.L[i].wpart.end(), 0.f);
  }
  for_groups(e, [&](std::size_t first, std::size_t last, std::size_t) {
    for (std::size_t m = first; m < last; ++m) route_image(e, nb - 1, m);
  });
  for (std::size_t i = nb; i-- > 0;) {
    finish_bn_backward(e, i, *blocks[i].bn);
    for_groups(e, [&](std::size_t first, std::size_t last, std::size_t group) {
      conv_backward_group(e, i, first, last, group);
      if (i > 0)
        for (std::size_t m = first; m < last; ++m) route_image(e, i - 1, m);
    });
  }
  // Weight gradients: the groups' partials in group order, [9][kin][cp] -> OIHW.
  for (std::size_t i = 0; i < nb; ++i) {
    auto& s = e.L[i];
    const std::size_t slot = 9 * s.kin * s.cp;
    for (std::size_t gi = 1; gi < e.groups; ++gi) {
      const float* src = s.wpart.data() + gi * slot;
      float* dst = s.wpart.data();
SPRUCE_TRAIN_OMP(omp simd)
      for (std::size_t j = 0; j < slot; ++j) dst[j] += src[j];
    }
    float* wg = blocks[i].conv->weight_grad().data();
    for (std::size_t co = 0; co < s.cout; ++co)
      for (std::size_t ci = 0; ci < s.cin; ++ci)
        for (std::size_t t = 0; t < 9; ++t)
          wg[(co * s.cin + ci) * 9 + t] = s.wpart[(t * s.kin + ci) * s.cp + co];
  }
}

// ---- the holder -------------------------------------------------------------------------

vgg_engine_ptr::vgg_engine_ptr() : p_(std::make_unique<vgg_engine>()) {}
vgg_engine_ptr::~vgg_engine_ptr() = default;
vgg_engine_ptr::vgg_engine_ptr(const vgg_engine_ptr& other)
    : p_(other.p_ ? std::make_unique<vgg_engine>(*other.p_) : std::make_unique<vgg_engine>()) {}
vgg_engine_ptr::vgg_engine_ptr(vgg_engine_ptr&& other) noexcept = default;
vgg_engine_ptr& vgg_engine_ptr::operator=(const vgg_engine_ptr& other) {
  if (this != &other)
    p_ = other.p_ ? std::make_unique<vgg_engine>(*other.p_) : std::make_unique<vgg_engine>();
  return *this;
}
vgg_engine_ptr& vgg_engine_ptr::operator=(vgg_engine_ptr&& other) noexcept = default;

}  // namespace detail
}  // namespace train
