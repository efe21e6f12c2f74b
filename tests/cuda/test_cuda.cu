// GPU tests of the CUDA layer (ctest label `cuda`): every device result is compared with
// the CPU path bit for bit (masks, counts, tie order, compressed arrays). Exits 77 with
// "SKIP: no CUDA device" when the runtime reports no device (any error counts as none),
// which ctest reports as skipped. SPRUCE_CUDA_LARGE=1 adds a selection past 2^31 elements.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "spruce/cuda.hpp"

namespace {

int failures = 0, checks = 0;

#define EXPECT(...)                                                                    \
  do {                                                                                 \
    ++checks;                                                                          \
    if (!(__VA_ARGS__)) {                                                                   \
      ++failures;                                                                      \
      std::fprintf(stderr, "FAIL %s:%d: %s [%s]\n", __FILE__, __LINE__, #__VA_ARGS__, ctx.c_str()); \
    }                                                                                  \
  } while (0)

std::string ctx;

template <class T>
std::vector<T> make_input(const std::string& kind, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(0.0, 0.02);
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (kind == "normal") v[i] = static_cast<T>(nd(g));
    else if (kind == "zeros80") v[i] = (g() % 5) ? T(0) : static_cast<T>(nd(g));
    else if (kind == "equal") v[i] = T(0.5);
    else if (kind == "signed_zero_inf") {
      const int c = static_cast<int>(g() % 6);
      v[i] = c == 0 ? T(0) : c == 1 ? -T(0) : c == 2 ? std::numeric_limits<T>::infinity()
           : c == 3 ? -std::numeric_limits<T>::infinity() : static_cast<T>(static_cast<int>(g() % 7) - 3);
    } else v[i] = static_cast<T>(static_cast<int>(g() % 5));  // few distinct values: many ties
  }
  return v;
}

template <class T>
struct on_device {
  spruce::cuda::device_buffer<T> buf;
  std::vector<std::size_t> shape;
  on_device(const std::vector<T>& h, std::vector<std::size_t> s) : buf(h.size()), shape(std::move(s)) {
    spruce::cuda::copy(spruce::tensor_ref<const T>(h.data(), shape), view());
    spruce::cuda::check(cudaStreamSynchronize(nullptr), "test upload");
  }
  spruce::tensor_ref<T, spruce::cuda_space> view() const { return buf.view(shape); }
  std::vector<T> download() const {
    std::vector<T> h(buf.size());
    spruce::cuda::copy(spruce::tensor_ref<const T, spruce::cuda_space>(view()), spruce::tensor_ref<T>(h.data(), shape));
    spruce::cuda::check(cudaStreamSynchronize(nullptr), "test download");
    return h;
  }
};

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const spruce::error& e) {
    return e.what();
  }
  return "";
}

template <class T>
void test_magnitude() {
  const std::vector<std::vector<std::size_t>> shapes = {{1}, {7}, {64, 33}, {1000, 1001}, {3, 5, 4, 9}, {(1u << 20) + 3}};
  for (const char* kind : {"normal", "zeros80", "equal", "signed_zero_inf", "ties"})
    for (const auto& shape : shapes) {
      const std::size_t n = spruce::shape_size(shape);
      const auto h = make_input<T>(kind, n, n * 31 + 7);
      on_device<T> d(h, shape);
      const spruce::tensor_ref<const T> hv(h.data(), shape);
      for (double ratio : {0.0, 0.3, 0.5, 0.8, 1.0}) {
        ctx = std::string(kind) + " n=" + std::to_string(n) + " ratio=" + std::to_string(ratio);
        const auto ht = spruce::magnitude_mask(hv, spruce::selection::threshold{ratio});
        const auto dt = spruce::magnitude_mask(d.view(), spruce::selection::threshold{ratio}).to_host();
        EXPECT(ht == dt);
        const auto he = spruce::magnitude_mask(hv, spruce::selection::exact{ratio});
        const auto de = spruce::magnitude_mask(d.view(), spruce::selection::exact{ratio}).to_host();
        EXPECT(he == de);
        const auto k = std::max<std::size_t>(1, static_cast<std::size_t>(ratio * static_cast<double>(n)));
        const auto hk = spruce::select::kth_smallest(std::span<const T>(h), std::min(k, n));
        const auto dk = spruce::cuda::kth_smallest(d.view(), std::min(k, n));
        EXPECT(std::memcmp(&hk.value, &dk.value, sizeof(T)) == 0 && hk.less == dk.less && hk.equal == dk.equal);
      }
      // In-place pruning and counting.
      ctx = std::string(kind) + " prune n=" + std::to_string(n);
      std::vector<T> hw = h;
      const auto hm = spruce::magnitude_prune(spruce::tensor_ref<T>(hw.data(), shape), spruce::selection::exact{0.5});
      const auto dm = spruce::magnitude_prune(d.view(), spruce::selection::exact{0.5});
      EXPECT(hm == dm.to_host());
      const auto dw = d.download();
      EXPECT(std::memcmp(hw.data(), dw.data(), n * sizeof(T)) == 0);
      EXPECT(spruce::count_nonzero(d.view()) == spruce::count_nonzero(spruce::tensor_ref<const T>(hw.data(), shape)));
      EXPECT(spruce::sparsity(d.view()) == spruce::sparsity(spruce::tensor_ref<const T>(hw.data(), shape)));
    }
}

template <class T>
void test_strided_and_apply() {
  ctx = "strided";
  const std::vector<std::size_t> full = {40, 30};
  const auto h = make_input<T>("ties", 1200, 5);
  on_device<T> d(h, full);
  const std::size_t shape[2] = {30, 40}, strides[2] = {1, 30};  // the transpose
  const spruce::tensor_ref<const T> ht(h.data(), shape, strides);
  const auto dt = spruce::cuda::make_device_view(static_cast<const T*>(d.buf.data()), shape, strides);
  EXPECT(spruce::magnitude_mask(ht, spruce::selection::exact{0.4}) == spruce::magnitude_mask(dt, spruce::selection::exact{0.4}).to_host());
  EXPECT(spruce::count_nonzero(ht) == spruce::count_nonzero(dt));
  const spruce::mask hm = spruce::magnitude_mask(ht, spruce::selection::threshold{0.6});
  std::vector<T> hw = h;
  spruce::apply_mask(spruce::tensor_ref<T>(hw.data(), shape, strides), hm);
  spruce::apply_mask(spruce::cuda::make_device_view(d.buf.data(), shape, strides), spruce::cuda::device_mask::from_host(hm));
  const auto dw = d.download();
  EXPECT(std::memcmp(hw.data(), dw.data(), hw.size() * sizeof(T)) == 0);
}

template <class T>
void test_n_m() {
  const std::vector<std::vector<std::size_t>> shapes = {{8, 16}, {5, 13}, {3, 6, 3, 3}, {2, 7, 2, 5}, {64, 1024}, {9}};
  for (const auto& shape : shapes)
    for (const char* kind : {"normal", "zeros80", "equal", "signed_zero_inf", "ties"}) {
      const std::size_t n = spruce::shape_size(shape);
      const auto h = make_input<T>(kind, n, n + 3);
      on_device<T> d(h, shape);
      const spruce::tensor_ref<const T> hv(h.data(), shape);
      ctx = std::string(kind) + " N:M n=" + std::to_string(n);
      EXPECT(spruce::n_m_mask<2, 4>(hv) == spruce::n_m_mask<2, 4>(d.view()).to_host());
      EXPECT(spruce::n_m_mask<1, 4>(hv) == spruce::n_m_mask<1, 4>(d.view()).to_host());
      EXPECT(spruce::n_m_mask<3, 8>(hv) == spruce::n_m_mask<3, 8>(d.view()).to_host());
      EXPECT(spruce::n_m_mask<5, 40>(hv) == spruce::n_m_mask<5, 40>(d.view()).to_host());
      for (auto [pn, pm] : {std::pair<std::size_t, std::size_t>{2, 4}, {1, 2}, {2, 8}, {3, 7}, {17, 33}}) {
        const spruce::granularity::n_m_pattern p{pn, pm};
        EXPECT(spruce::n_m_mask(hv, p) == spruce::n_m_mask(d.view(), p).to_host());
      }
      std::vector<T> hw = h;
      const auto hm = spruce::n_m_prune<2, 4>(spruce::tensor_ref<T>(hw.data(), shape));
      const auto dm = spruce::n_m_prune<2, 4>(d.view());
      EXPECT(hm == dm.to_host());
      const auto dw = d.download();
      EXPECT(std::memcmp(hw.data(), dw.data(), n * sizeof(T)) == 0);
    }
}

template <class T>
void test_errors() {
  ctx = "errors";
  std::vector<T> h = make_input<T>("normal", 100, 1);
  h[37] = std::numeric_limits<T>::quiet_NaN();
  h[80] = std::numeric_limits<T>::quiet_NaN();
  const std::vector<std::size_t> shape = {10, 10};
  on_device<T> d(h, shape);
  const spruce::tensor_ref<const T> hv(h.data(), shape);
  const std::string he = error_of([&] { (void)spruce::magnitude_mask(hv, spruce::selection::exact{0.5}, "fc.weight"); });
  const std::string de = error_of([&] { (void)spruce::magnitude_mask(d.view(), spruce::selection::exact{0.5}, "fc.weight"); });
  EXPECT(!he.empty() && he == de);
  const std::string hn = error_of([&] { (void)spruce::n_m_mask<2, 4>(hv, {}, "fc.weight"); });
  const std::string dn = error_of([&] { (void)spruce::n_m_mask<2, 4>(d.view(), {}, "fc.weight"); });
  EXPECT(!hn.empty() && hn == dn);
  // Nothing written on error.
  const auto before = d.download();
  EXPECT(!error_of([&] { (void)spruce::magnitude_prune(d.view(), spruce::selection::exact{0.5}, "fc.weight"); }).empty());
  const auto after = d.download();
  EXPECT(std::memcmp(before.data(), after.data(), before.size() * sizeof(T)) == 0);
  // A mask of another shape; a host pointer as a device view; a null device pointer.
  spruce::cuda::device_mask other(std::vector<std::size_t>{5, 20}, {});
  EXPECT(error_of([&] { spruce::apply_mask(d.view(), other, "fc.weight"); }).find("fc.weight") != std::string::npos);
  const auto host_as_device = spruce::tensor_ref<const T, spruce::cuda_space>(h.data(), shape);
  EXPECT(error_of([&] { (void)spruce::count_nonzero(host_as_device); }).find("host memory") != std::string::npos);
  spruce::cuda::view<const T, 1> null_view(nullptr, spruce::extents<1>(4));
  EXPECT(!error_of([&] { (void)spruce::cuda::count_nonzero(null_view, "w"); }).empty());
}

template <class T>
void test_csr() {
  for (const char* kind : {"normal", "zeros80", "equal"}) {
    ctx = std::string("csr ") + kind;
    const std::vector<std::size_t> shape = {257, 300};
    const auto h = make_input<T>(kind, 257 * 300, 9);
    on_device<T> d(h, shape);
    const spruce::tensor_ref<const T> hv(h.data(), shape);
    const spruce::mask hm = spruce::magnitude_mask(hv, spruce::selection::exact{0.8});
    const auto hc = spruce::sparse::csr_matrix<T>::from_dense(hv, hm);
    const auto dm = spruce::cuda::device_mask::from_host(hm);
    const auto dc = spruce::cuda::csr_from_dense(d.view(), dm);
    const auto back = dc.to_host();
    EXPECT(back.row_ptr() == hc.row_ptr() && back.col_idx() == hc.col_idx() && back.values() == hc.values());
    // cuSPARSE product against the CPU product (summation order differs: a tolerance).
    const std::size_t nb = 64;
    const auto bh = make_input<T>("normal", 300 * nb, 11);
    on_device<T> b(bh, {300, nb});
    on_device<T> c(std::vector<T>(257 * nb, T(0)), {257, nb});
    spruce::cuda::csr_product<T> prod(dc);
    prod(b.view(), c.view());
    std::vector<T> ch(257 * nb, T(0));
    spmm(hc, spruce::tensor_ref<const T>(bh.data(), std::vector<std::size_t>{300, nb}),
         spruce::tensor_ref<T>(ch.data(), std::vector<std::size_t>{257, nb}), T(1), T(0));
    const auto cd = c.download();
    double worst = 0;
    for (std::size_t i = 0; i < ch.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(ch[i]) - cd[i]));
    EXPECT(worst < 1e-5);
  }
}

template <class T>
void test_formats() {
  namespace gr = spruce::granularity;
  for (const char* kind : {"normal", "zeros80", "equal", "signed_zero_inf"})
    for (const auto& shape : std::vector<std::vector<std::size_t>>{{256, 320}, {37, 53}, {1, 1}, {64, 13}}) {
      const std::size_t rows = shape[0], cols = shape[1], nb = 48;
      const auto h = make_input<T>(kind, rows * cols, rows + cols);
      on_device<T> d(h, shape);
      const spruce::tensor_ref<const T> hv(h.data(), shape);
      const auto bh = make_input<T>("normal", cols * nb, 12);
      on_device<T> b(bh, {cols, nb});
      // Block-sparse: arrays bit for bit; the cuSPARSE product to rounding (whole blocks).
      const spruce::mask hm = spruce::magnitude_mask(hv, spruce::selection::exact{0.9});
      const auto dm = spruce::cuda::device_mask::from_host(hm);
      for (const auto& [br, bc] : std::vector<std::pair<std::size_t, std::size_t>>{{4, 4}, {2, 8}, {3, 5}, {1, 1}}) {
        ctx = std::string("block-sparse ") + kind + " " + spruce::shape_string(shape) + " " + std::to_string(br) + "x" + std::to_string(bc);
        const auto hb = spruce::sparse::block_sparse_matrix<T>::from_dense(hv, hm, br, bc);
        const auto db = spruce::cuda::block_sparse_from_dense(d.view(), dm, br, bc);
        const auto back = db.to_host();
        EXPECT(back.row_ptr() == hb.row_ptr() && back.col_idx() == hb.col_idx());
        EXPECT(back.values().size() == hb.values().size() &&
               (hb.values().empty() || std::memcmp(back.values().data(), hb.values().data(), hb.values().size() * sizeof(T)) == 0));
        if (rows % br == 0 && cols % bc == 0 && br > 1 && br == bc && std::string(kind) == "normal") {
          on_device<T> c(std::vector<T>(rows * nb, T(0)), {rows, nb});
          // cuSPARSE's refusal (a shape or layout its BSR SpMM does not take) is reported
          // as a failure with its message, and the other tests still run.
          const std::string err = error_of([&] {
            spruce::cuda::bsr_product<T> prod(db);
            prod(b.view(), c.view());
            prod(b.view(), c.view());  // the cached plan again
          });
          EXPECT(err.empty());
          if (!err.empty()) std::fprintf(stderr, "bsr_product: %s\n", err.c_str());
          std::vector<T> ch(rows * nb, T(0));
          spmm(hb, spruce::tensor_ref<const T>(bh.data(), std::vector<std::size_t>{cols, nb}),
               spruce::tensor_ref<T>(ch.data(), std::vector<std::size_t>{rows, nb}), T(1), T(0));
          const auto cd = c.download();
          double worst = 0;
          for (std::size_t i = 0; i < ch.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(ch[i]) - cd[i]));
          EXPECT(worst < 1e-4);
        }
      }
      // N:M: arrays bit for bit, and the exact product bit for bit (K within one CPU slice).
      for (const auto& [n, m] : std::vector<std::pair<std::size_t, std::size_t>>{{2, 4}, {1, 4}, {3, 8}, {5, 16}}) {
        ctx = std::string("N:M ") + kind + " " + spruce::shape_string(shape) + " " + std::to_string(n) + ":" + std::to_string(m);
        const spruce::granularity::n_m_pattern p{n, m};
        const spruce::mask hk = spruce::n_m_mask(hv, p);
        const auto dk = spruce::n_m_mask(d.view(), p);
        const auto hn = spruce::sparse::n_m_matrix<T>::from_dense(hv, hk, n, m);
        const auto dn = spruce::cuda::n_m_from_dense(d.view(), dk, n, m);
        const auto back = dn.to_host();
        EXPECT(back.positions() == hn.positions());
        EXPECT(hn.values().empty() || std::memcmp(back.values().data(), hn.values().data(), hn.values().size() * sizeof(T)) == 0);
        if (cols <= 64) {
          for (const T beta : {T(0), T(0.5)}) {
            const auto c0 = make_input<T>("normal", rows * nb, 13);
            on_device<T> c(c0, {rows, nb});
            std::vector<T> ch = c0;
            spruce::cuda::spmm(dn, b.view(), c.view(), T(1.5), beta);
            spmm(hn, spruce::tensor_ref<const T>(bh.data(), std::vector<std::size_t>{cols, nb}),
                 spruce::tensor_ref<T>(ch.data(), std::vector<std::size_t>{rows, nb}), T(1.5), beta);
            const auto cd = c.download();
            EXPECT(std::memcmp(cd.data(), ch.data(), ch.size() * sizeof(T)) == 0);
          }
        }
      }
      // A mask without the pattern: the CPU's refusal, word for word.
      if (cols >= 4) {
        ctx = std::string("N:M refusal ") + kind;
        const std::string he = error_of([&] { (void)spruce::sparse::n_m_matrix<T>::from_dense(hv, hm, 1, 4); });
        const std::string de = error_of([&] { (void)spruce::cuda::n_m_from_dense(d.view(), dm, 1, 4); });
        EXPECT(he == de);
      }
    }
  // Bad input at the host boundary: another shape, a null device pointer.
  ctx = "format errors";
  on_device<T> d(make_input<T>("normal", 64, 1), {8, 8});
  spruce::cuda::device_mask other(std::vector<std::size_t>{4, 16}, {});
  EXPECT(error_of([&] { (void)spruce::cuda::block_sparse_from_dense(d.view(), other, 4, 4, "fc.weight"); }).find("fc.weight") != std::string::npos);
  EXPECT(error_of([&] { (void)spruce::cuda::n_m_from_dense(d.view(), other, 2, 4, "fc.weight"); }).find("fc.weight") != std::string::npos);
  spruce::cuda::view<const T, 2> null_view(nullptr, spruce::extents<2>(8, 8));
  const auto dm = spruce::cuda::device_mask::from_host(spruce::magnitude_mask(spruce::tensor_ref<const T>(d.download().data(), std::vector<std::size_t>{8, 8}), spruce::selection::exact{0.5}));
  EXPECT(error_of([&] { (void)spruce::cuda::block_sparse_from_dense(null_view, dm, 4, 4, "fc.weight"); }).find("null pointer") != std::string::npos);
}

template <class T, class P>
void check_pruner(const P& pr, const std::vector<std::size_t>& shape, const char* kind, const char* what) {
  const std::size_t n = spruce::shape_size(shape);
  const auto h = make_input<T>(kind, n, n * 13 + 1);
  on_device<T> d(h, shape);
  ctx = std::string("pruner ") + what + " " + kind + " n=" + std::to_string(n);
  const spruce::tensor_ref<const T> hv(h.data(), shape);
  const std::string herr = error_of([&] { (void)pr.compute(hv, "w"); });
  if (!herr.empty()) {  // a pattern that does not fit the shape: the same refusal
    EXPECT(herr == error_of([&] { (void)pr.compute(d.view(), "w"); }));
    return;
  }
  EXPECT(pr.compute(hv) == pr.compute(d.view()).to_host());
  std::vector<T> hw = h;
  const auto hm = pr.prune(spruce::tensor_ref<T>(hw.data(), shape));
  const auto dm = pr.prune(d.view());
  EXPECT(hm == dm.to_host());
  const auto dw = d.download();
  EXPECT(std::memcmp(hw.data(), dw.data(), n * sizeof(T)) == 0);
}

template <class T>
void test_pruner() {
  namespace gr = spruce::granularity;
  namespace cr = spruce::criterion;
  namespace se = spruce::selection;
  const std::vector<std::vector<std::size_t>> shapes = {{7, 5}, {64, 33}, {16, 8, 3, 3}, {4, 70, 5, 5}, {512, 96}, {300, 160}};
  for (const auto& shape : shapes)
    for (const char* kind : {"normal", "zeros80", "equal", "ties"}) {
      check_pruner<T>(spruce::pruner<gr::filter, cr::l2, se::exact>{{}, {}, se::exact{0.5}}, shape, kind, "filter l2");
      check_pruner<T>(spruce::pruner<gr::channel, cr::l1, se::threshold>{{}, {}, se::threshold{0.3}}, shape, kind, "channel l1");
      check_pruner<T>(spruce::pruner<gr::vector, cr::ln, se::exact>{{}, {std::numeric_limits<double>::infinity()}, se::exact{0.4}}, shape, kind, "vector linf");
      check_pruner<T>(spruce::pruner<gr::block, cr::l2, se::exact>{{4, 4}, {}, se::exact{0.6}}, shape, kind, "block l2");
      check_pruner<T>(spruce::pruner<gr::element, cr::l2, se::exact>{{}, {}, se::exact{0.7}}, shape, kind, "element l2");
      check_pruner<T>(spruce::pruner<gr::element, cr::hessian_diagonal, se::exact>{{}, {}, se::exact{0.7}}, shape, kind, "element obd");
      check_pruner<T>(spruce::pruner<gr::n_m<2, 4>, cr::l1>{}, shape, kind, "2:4 l1");
      check_pruner<T>(spruce::pruner<gr::n_m_pattern, cr::l2>{{3, 8}, {}}, shape, kind, "3:8 l2");
      if (shape.size() == 4) check_pruner<T>(spruce::pruner<gr::kernel, cr::l1, se::exact>{{}, {}, se::exact{0.5}}, shape, kind, "kernel l1");
    }
  // Criteria with a gradient / Hessian: device inputs against the CPU inputs.
  const std::vector<std::size_t> shape = {32, 16, 3, 3};
  const std::size_t n = spruce::shape_size(shape);
  const auto w = make_input<T>("normal", n, 1), g = make_input<T>("normal", n, 2), hs = make_input<T>("zeros80", n, 3);
  on_device<T> dw(w, shape), dg(g, shape), dh(hs, shape);
  spruce::criterion::inputs<T> hin{spruce::tensor_ref<const T>(w.data(), shape), spruce::tensor_ref<const T>(g.data(), shape),
                                   spruce::tensor_ref<const T>(hs.data(), shape)};
  spruce::cuda::device_inputs<T> din{dw.view(), dg.view(), dh.view()};
  ctx = "pruner with gradients";
  const spruce::pruner<gr::filter, cr::taylor, se::exact> taylor{{}, {}, se::exact{0.5}};
  EXPECT(taylor.compute(hin) == spruce::cuda::compute(taylor, din).to_host());
  const spruce::pruner<gr::channel, cr::hessian_diagonal, se::exact> obd{{}, {}, se::exact{0.25}};
  EXPECT(obd.compute(hin) == spruce::cuda::compute(obd, din).to_host());
  const spruce::pruner<gr::kernel, cr::gradient, se::threshold> grad{{}, {}, se::threshold{0.5}};
  EXPECT(grad.compute(hin) == spruce::cuda::compute(grad, din).to_host());
  // Group scores themselves, bit for bit.
  const auto layout = gr::channel{}.layout(shape);
  const auto hsc = spruce::group_scores(cr::taylor{}, hin, layout);
  const auto dsc = spruce::cuda::group_scores(cr::taylor{}, din, layout);
  std::vector<T> back(dsc.size());
  spruce::cuda::copy(spruce::tensor_ref<const T, spruce::cuda_space>(dsc.view(std::vector<std::size_t>{dsc.size()})),
                     spruce::tensor_ref<T>(back.data(), std::vector<std::size_t>{back.size()}));
  spruce::cuda::check(cudaStreamSynchronize(nullptr), "scores download");
  EXPECT(back.size() == hsc.size() && std::memcmp(back.data(), hsc.data(), back.size() * sizeof(T)) == 0);
  // Group criteria: bn_scale (filter), random (every granularity), wanda (per group and
  // per element), scores and masks bit for bit.
  {
    namespace gr2 = spruce::granularity;
    const auto gamma = make_input<T>("signed_zero_inf", shape[0], 9);
    std::vector<T> norms = make_input<T>("normal", shape[1], 10);
    for (auto& x : norms) x = std::abs(x);
    norms[2] = T(0);
    on_device<T> dgamma(gamma, {shape[0]}), dnorms(norms, {shape[1]});
    ctx = "bn_scale on the device";
    spruce::criterion::inputs<T> hb{spruce::tensor_ref<const T>(w.data(), shape)};
    hb.gamma = std::span<const T>(gamma);
    spruce::cuda::device_inputs<T> db{dw.view()};
    db.gamma = dgamma.view();
    const spruce::pruner<gr2::filter, cr::bn_scale, se::exact> bn{{}, {}, se::exact{0.5}};
    EXPECT(bn.compute(hb) == spruce::cuda::compute(bn, db).to_host());
    EXPECT(error_of([&] { (void)bn.compute(spruce::tensor_ref<const T>(w.data(), shape), "bn"); }) == error_of([&] { (void)bn.compute(dw.view(), "bn"); }));
    ctx = "random on the device";
    const spruce::pruner<gr2::channel, cr::random, se::exact> rc{{}, {42}, se::exact{0.3}};
    const spruce::pruner<gr2::element, cr::random, se::threshold> re{{}, {7}, se::threshold{0.6}};
    EXPECT(rc.compute(spruce::tensor_ref<const T>(w.data(), shape)) == rc.compute(dw.view()).to_host());
    EXPECT(re.compute(spruce::tensor_ref<const T>(w.data(), shape)) == re.compute(dw.view()).to_host());
    ctx = "wanda on the device";
    spruce::criterion::inputs<T, spruce::criterion::activation_norms<T>> hw{spruce::tensor_ref<const T>(w.data(), shape)};
    hw.extra.norms = std::span<const T>(norms);
    spruce::cuda::device_inputs<T> dwd{dw.view()};
    dwd.norms = dnorms.view();
    const auto hsw = spruce::group_scores(cr::wanda{}, hw, gr2::kernel{}.layout(shape));
    const auto dsw = spruce::cuda::group_scores(cr::wanda{}, dwd, gr2::kernel{}.layout(shape));
    std::vector<T> bw(dsw.size());
    spruce::cuda::copy(spruce::tensor_ref<const T, spruce::cuda_space>(dsw.view(std::vector<std::size_t>{dsw.size()})),
                       spruce::tensor_ref<T>(bw.data(), std::vector<std::size_t>{bw.size()}));
    spruce::cuda::check(cudaStreamSynchronize(nullptr), "scores download");
    EXPECT(std::memcmp(bw.data(), hsw.data(), bw.size() * sizeof(T)) == 0);
    const spruce::pruner<gr2::element, cr::wanda, se::exact> we{{}, {}, se::exact{0.5}};
    EXPECT(we.compute(hw) == spruce::cuda::compute(we, dwd).to_host());
    std::vector<T> badn = norms;
    badn[3] = std::numeric_limits<T>::quiet_NaN();
    on_device<T> dbadn(badn, {shape[1]});
    hw.extra.norms = std::span<const T>(badn);
    dwd.norms = dbadn.view();
    EXPECT(error_of([&] { (void)we.compute(hw, "fc"); }) == error_of([&] { (void)spruce::cuda::compute(we, dwd, "fc"); }));
  }
  // Errors: a missing gradient and a NaN score give the CPU's messages; nothing written.
  spruce::cuda::device_inputs<T> nograd{dw.view()};
  spruce::criterion::inputs<T> hnograd{spruce::tensor_ref<const T>(w.data(), shape)};
  EXPECT(error_of([&] { (void)taylor.compute(hnograd, "conv.weight"); }) == error_of([&] { (void)spruce::cuda::compute(taylor, nograd, "conv.weight"); }));
  std::vector<T> bad = w;
  bad[50] = std::numeric_limits<T>::quiet_NaN();
  on_device<T> dbad(bad, shape);
  const spruce::pruner<gr::filter, cr::l2, se::exact> l2f{{}, {}, se::exact{0.5}};
  const std::string he = error_of([&] { (void)l2f.prune(spruce::tensor_ref<T>(bad.data(), shape), "conv.weight"); });
  const auto before = dbad.download();
  const std::string de = error_of([&] { (void)l2f.prune(dbad.view(), "conv.weight"); });
  EXPECT(!he.empty() && he == de);
  const auto after = dbad.download();
  EXPECT(std::memcmp(before.data(), after.data(), n * sizeof(T)) == 0);
}

template <class T>
void test_masked_parameters() {
  ctx = "masked_parameters on the device";
  const std::vector<std::size_t> sa = {16, 8, 3, 3}, sb = {33, 70};
  const auto ha = make_input<T>("normal", spruce::shape_size(sa), 21), hb = make_input<T>("ties", spruce::shape_size(sb), 22);
  on_device<T> da(ha, sa), db(hb, sb);
  std::vector<T> wa = ha, wb = hb;
  spruce::masked_parameters<T> host;
  spruce::masked_parameters<T, spruce::cuda::device_mask> dev;
  const spruce::pruner<spruce::granularity::filter, spruce::criterion::l2, spruce::selection::exact> pf{{}, {}, spruce::selection::exact{0.5}};
  host.add("a", spruce::tensor_ref<T>(wa.data(), sa), pf.compute(spruce::tensor_ref<const T>(wa.data(), sa)));
  host.add("b", spruce::tensor_ref<T>(wb.data(), sb), spruce::magnitude_mask(spruce::tensor_ref<const T>(wb.data(), sb), spruce::selection::exact{0.3}));
  dev.add("a", da.view(), pf.compute(da.view()));
  dev.add("b", db.view(), spruce::magnitude_mask(db.view(), spruce::selection::exact{0.3}));
  EXPECT(host.keep_mask("a") == dev.keep_mask("a") && host.keep_mask("b") == dev.keep_mask("b"));
  host.apply();
  dev.apply();
  EXPECT(std::memcmp(wa.data(), da.download().data(), wa.size() * sizeof(T)) == 0);
  EXPECT(std::memcmp(wb.data(), db.download().data(), wb.size() * sizeof(T)) == 0);
  // Gradients on the device: zeroed where pruned; all checked before any is written.
  const auto hg = make_input<T>("normal", wb.size(), 23);
  std::vector<T> gb = hg;
  on_device<T> dg(hg, sb);
  host.apply_to_gradients(std::vector<spruce::named_tensor<T>>{{"b", spruce::tensor_ref<T>(gb.data(), sb)}});
  dev.apply_to_gradients(std::vector<spruce::named_tensor<T, spruce::cuda_space>>{{"b", dg.view()}});
  EXPECT(std::memcmp(gb.data(), dg.download().data(), gb.size() * sizeof(T)) == 0);
  const std::string he = error_of([&] { host.apply_to_gradients(std::vector<spruce::named_tensor<T>>{{"zz", spruce::tensor_ref<T>(gb.data(), sb)}}); });
  const std::string de = error_of([&] { dev.apply_to_gradients(std::vector<spruce::named_tensor<T, spruce::cuda_space>>{{"zz", dg.view()}}); });
  EXPECT(!he.empty() && he == de);
  const std::string hs = error_of([&] { host.add("c", spruce::tensor_ref<T>(wb.data(), sb), host.keep_mask("a")); });
  const std::string ds = error_of([&] { dev.add("c", db.view(), spruce::cuda::device_mask::from_host(host.keep_mask("a"))); });
  EXPECT(!hs.empty() && hs == ds);
  // An optimizer step moves pruned weights; make_permanent zeroes them again and forgets.
  for (auto& x : wa) x += T(1);
  on_device<T> moved(wa, sa);
  spruce::cuda::copy(spruce::tensor_ref<const T, spruce::cuda_space>(moved.view()), da.view());
  host.make_permanent();
  dev.make_permanent();
  EXPECT(dev.empty() && host.empty());
  EXPECT(std::memcmp(wa.data(), da.download().data(), wa.size() * sizeof(T)) == 0);
}

template <class T>
void test_global() {
  namespace gr = spruce::granularity;
  namespace cr = spruce::criterion;
  namespace se = spruce::selection;
  const std::vector<std::vector<std::size_t>> shapes = {{16, 8, 3, 3}, {33, 70}, {1, 1}, {300, 41}, {5000, 3}};
  const std::vector<spruce::sparsity_limits> limits = {{}, {0.1, 0.9, 0}, {0.0, 0.5, 2}};
  for (const char* kind : {"normal", "zeros80", "equal", "signed_zero_inf", "ties"}) {
    std::vector<std::vector<T>> h;
    std::vector<on_device<T>> d;
    d.reserve(shapes.size());
    std::vector<spruce::named_tensor<T>> hp;
    std::vector<spruce::named_tensor<T, spruce::cuda_space>> dp;
    for (std::size_t i = 0; i < shapes.size(); ++i) h.push_back(make_input<T>(kind, spruce::shape_size(shapes[i]), 40 + i));
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      d.emplace_back(h[i], shapes[i]);
      hp.push_back({"layer" + std::to_string(i), spruce::tensor_ref<T>(h[i].data(), shapes[i])});
      dp.push_back({"layer" + std::to_string(i), d.back().view()});
    }
    auto same = [&](const auto& p, const spruce::sparsity_limits& lim) {
      const auto hm = spruce::global_masks(p, hp, lim);
      const auto dm = spruce::global_masks(p, dp, lim);
      bool ok = hm.size() == dm.size();
      for (std::size_t i = 0; ok && i < hm.size(); ++i) ok = hm[i] == dm[i].to_host();
      return ok;
    };
    for (const auto& lim : limits)
      for (double r : {0.0, 0.3, 0.7, 1.0}) {
        ctx = std::string("global ") + kind + " ratio=" + std::to_string(r) + " max=" + std::to_string(lim.max);
        EXPECT(same(spruce::pruner<gr::element, cr::l1, se::exact>{{}, {}, se::exact{r}}, lim));
        EXPECT(same(spruce::pruner<gr::element, cr::l1, se::threshold>{{}, {}, se::threshold{r}}, lim));
        EXPECT(same(spruce::pruner<gr::filter, cr::l2, se::exact>{{}, {}, se::exact{r}}, lim));
        EXPECT(same(spruce::pruner<gr::channel, cr::l1, se::threshold>{{}, {}, se::threshold{r}}, lim));
      }
    ctx = std::string("global 2:4 ") + kind;
    EXPECT(same(spruce::pruner<gr::n_m<2, 4>, cr::l1>{}, {}));
    // Applied: the registry zeroes the same weights.
    ctx = std::string("global_prune ") + kind;
    const spruce::pruner<gr::element, cr::l1, se::exact> pe{{}, {}, se::exact{0.6}};
    auto hr = spruce::global_prune(pe, hp);
    auto dr = spruce::global_prune(pe, dp);
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const auto back = d[i].download();
      EXPECT(std::memcmp(back.data(), h[i].data(), h[i].size() * sizeof(T)) == 0);
      EXPECT(hr.keep_mask(hp[i].name) == dr.keep_mask(dp[i].name));
    }
  }
  // Errors: a NaN in the second tensor, duplicate names, bounded limits with N:M; the
  // CPU's messages, nothing written.
  ctx = "global errors";
  std::vector<T> a = make_input<T>("normal", 64, 1), b = make_input<T>("normal", 90, 2);
  b[17] = std::numeric_limits<T>::quiet_NaN();
  on_device<T> da(a, {8, 8}), db(b, {9, 10});
  const std::vector<spruce::named_tensor<T>> hp = {{"a", spruce::tensor_ref<T>(a.data(), std::vector<std::size_t>{8, 8})},
                                                   {"b", spruce::tensor_ref<T>(b.data(), std::vector<std::size_t>{9, 10})}};
  const std::vector<spruce::named_tensor<T, spruce::cuda_space>> dp = {{"a", da.view()}, {"b", db.view()}};
  const spruce::pruner<gr::element, cr::l1, se::exact> pe{{}, {}, se::exact{0.5}};
  const std::string he = error_of([&] { (void)spruce::global_prune(pe, hp); });
  const auto before = db.download();
  const std::string de = error_of([&] { (void)spruce::global_prune(pe, dp); });
  EXPECT(!he.empty() && he == de && de.find("b") != std::string::npos);
  const auto after = db.download();
  EXPECT(std::memcmp(before.data(), after.data(), before.size() * sizeof(T)) == 0);
  const std::vector<spruce::named_tensor<T, spruce::cuda_space>> dup = {{"a", da.view()}, {"a", db.view()}};
  const std::vector<spruce::named_tensor<T>> hdup = {hp[0], {"a", hp[1].view}};
  EXPECT(error_of([&] { (void)spruce::global_masks(pe, hdup); }) == error_of([&] { (void)spruce::global_masks(pe, dup); }));
  const spruce::pruner<gr::n_m<2, 4>, cr::l1> nm{};
  EXPECT(!error_of([&] { (void)spruce::global_masks(nm, dp, {0.1, 0.9, 0}); }).empty());
}

void test_large() {
  if (!std::getenv("SPRUCE_CUDA_LARGE")) return;
  ctx = "past 2^31";
  const std::size_t n = (std::size_t{1} << 31) + 77;
  std::vector<float> h(n);
  for (std::size_t i = 0; i < n; ++i) h[i] = static_cast<float>(spruce::detail::splitmix64(3, i) % 1000);
  on_device<float> d(h, {n});
  const auto hm = spruce::magnitude_mask(spruce::tensor_ref<const float>(h.data(), std::vector<std::size_t>{n}), spruce::selection::exact{0.5});
  const auto dm = spruce::magnitude_mask(d.view(), spruce::selection::exact{0.5}).to_host();
  EXPECT(hm == dm);
}

}  // namespace

int main() {
  if (spruce::cuda::device_count() == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  try {
    test_magnitude<float>();
    test_magnitude<double>();
    test_strided_and_apply<float>();
    test_n_m<float>();
    test_n_m<double>();
    test_errors<float>();
    test_csr<float>();
    test_formats<float>();  // double: the same code (host-tested for both types); compile time
    test_pruner<float>();
    test_pruner<double>();
    test_masked_parameters<float>();
    test_global<float>();
    test_global<double>();
    test_large();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL: unexpected exception: %s [%s]\n", e.what(), ctx.c_str());
    return 1;
  }
  std::printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
