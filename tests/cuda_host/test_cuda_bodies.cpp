// Host tests of the CUDA layer's logic (no GPU, no nvcc): the SPRUCE_HD bodies that the
// kernels run (cuda/detail/bodies.hpp) are called here for every index, laid out as the
// kernels lay them out (the selection's plan steps over a host histogram, the tie tiles and
// their scans, one N:M group per "thread", CSR rows), and the results are compared with
// the CPU path byte for byte.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "spruce/cuda/detail/bodies.hpp"
#include "spruce/spruce.hpp"

namespace cd = spruce::cuda::detail;

namespace {

template <class T>
std::vector<T> input(const std::string& kind, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(0.0, 0.02);
  std::vector<T> v(n);
  const T inf = std::numeric_limits<T>::infinity();
  for (std::size_t i = 0; i < n; ++i) {
    if (kind == "normal") v[i] = static_cast<T>(nd(g));
    else if (kind == "zeros80") v[i] = (g() % 5) ? T(0) : static_cast<T>(nd(g));
    else if (kind == "equal") v[i] = T(-0.25);
    else if (kind == "zero_inf") {
      const int c = static_cast<int>(g() % 6);
      v[i] = c == 0 ? T(0) : c == 1 ? -T(0) : c == 2 ? inf : c == 3 ? -inf : static_cast<T>(static_cast<int>(g() % 7) - 3);
    } else {
      v[i] = static_cast<T>(static_cast<int>(g() % 5) - 2);  // heavy ties
    }
  }
  return v;
}

const char* const kinds[] = {"normal", "zeros80", "equal", "zero_inf", "ties"};
const std::size_t sizes[] = {1, 2, 7, 100, 4095, 4096, 4097, 70000};

/// Byte equality of two arrays of n elements; no memcmp over an empty (null) buffer.
template <class T>
bool same_bytes(const T* a, const T* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
}

/// The device selection's orchestration with a host histogram: radix_levels passes of
/// (histogram over matching keys of every part, plan_step), exactly as cuda/select.hpp
/// enqueues them (one histogram pass per part and level into one histogram).
template <class O>
cd::radix_plan<typename O::key_type> host_select(std::span<const std::span<const typename O::value_type>> parts, std::size_t count) {
  using Key = typename O::key_type;
  cd::radix_plan<Key> plan{};
  plan.rank = count - 1;
  std::vector<unsigned long long> hist(cd::radix_bins);
  for (int level = 0; level < cd::radix_levels<Key>(); ++level) {
    std::fill(hist.begin(), hist.end(), 0ull);
    for (const auto& x : parts)
      for (const auto v : x) {
        const Key k = O::key(v);
        if (spruce::select::valid_key<O>(k) && cd::plan_matches(plan, k)) ++hist[cd::plan_bin(plan, k)];
      }
    cd::plan_step(plan, hist.data());
  }
  CHECK(plan.done == cd::key_bits<Key>());
  return plan;
}

template <class O>
cd::radix_plan<typename O::key_type> host_select(std::span<const typename O::value_type> x, std::size_t count) {
  return host_select<O>(std::span<const std::span<const typename O::value_type>>(&x, 1), count);
}

/// The device mask pass over several parts: tiles of tie_tile = 256 x 16 elements per part,
/// numbered across parts by tile_offsets, a count per tile, one exclusive scan over all
/// tiles, a scan over the "threads" of a tile, then keep_of.
template <class O>
std::vector<spruce::byte_buffer> host_masks(std::span<const std::span<const typename O::value_type>> parts,
                                            const cd::radix_plan<typename O::key_type>& p, std::size_t count,
                                            spruce::select::tie_break ties) {
  using Key = typename O::key_type;
  std::vector<spruce::byte_buffer> out(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) out[i].resize(parts[i].size());
  const bool split = ties == spruce::select::tie_break::lower_index && p.less + p.equal != count;
  const Key t = p.prefix;
  if (!split) {
    for (std::size_t i = 0; i < parts.size(); ++i)
      for (std::size_t j = 0; j < parts[i].size(); ++j) out[i][j] = cd::keep_of(O::key(parts[i][j]), t, false, 0, 0);
    return out;
  }
  constexpr std::size_t threads = 256, items = 16, tile = threads * items;
  static_assert(tile == cd::tie_tile_size);
  std::vector<std::size_t> sizes;
  for (const auto& x : parts) sizes.push_back(x.size());
  const auto off = cd::tile_offsets(sizes, tile);
  std::vector<unsigned long long> eq(off.back(), 0), before(off.back(), 0);
  for (std::size_t i = 0; i < parts.size(); ++i)
    for (std::size_t j = 0; j < parts[i].size(); ++j) eq[off[i] + j / tile] += O::key(parts[i][j]) == t;
  for (std::size_t b = 1; b < eq.size(); ++b) before[b] = before[b - 1] + eq[b - 1];
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::size_t n = parts[i].size();
    for (std::size_t b = 0; b < off[i + 1] - off[i]; ++b) {
      unsigned long long thread_before = 0;
      for (std::size_t th = 0; th < threads; ++th) {
        unsigned long long seen = before[off[i] + b] + thread_before;
        for (std::size_t j = 0; j < items; ++j) {
          const std::size_t x = b * tile + th * items + j;
          if (x >= n) break;
          const Key k = O::key(parts[i][x]);
          out[i][x] = cd::keep_of(k, t, true, seen, count - p.less);
          seen += k == t;
          thread_before += k == t;
        }
      }
    }
  }
  return out;
}

template <class O>
spruce::byte_buffer host_mask(std::span<const typename O::value_type> x, const cd::radix_plan<typename O::key_type>& p,
                              std::size_t count, spruce::select::tie_break ties) {
  return std::move(host_masks<O>(std::span<const std::span<const typename O::value_type>>(&x, 1), p, count, ties).front());
}

template <template <class> class Order, class T>
void check_selection(const std::vector<T>& x) {
  using O = Order<T>;
  const std::size_t n = x.size();
  for (double f : {0.0, 0.01, 0.3, 0.5, 0.8, 0.999, 1.0}) {
    const std::size_t count = std::min(n, std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(f * static_cast<double>(n)))));
    const auto plan = host_select<O>(std::span<const T>(x), count);
    const auto ref = spruce::select::kth_smallest<Order>(x, count);
    const T value = O::value(plan.prefix);
    CHECK(std::memcmp(&value, &ref.value, sizeof(T)) == 0);
    CHECK(plan.less == ref.less);
    CHECK(plan.equal == ref.equal);
    for (auto ties : {spruce::select::tie_break::all_equal, spruce::select::tie_break::lower_index}) {
      const auto mine = host_mask<O>(std::span<const T>(x), plan, count, ties);
      const auto cpu = spruce::select::lowest_mask<Order>(x, count, ties);
      CHECK(mine == cpu);
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("device selection orchestration with a host histogram matches the CPU", T, float, double) {
  for (const char* kind : kinds)
    for (std::size_t n : sizes) {
      CAPTURE(kind);
      CAPTURE(n);
      const auto x = input<T>(kind, n, n * 7 + 1);
      check_selection<spruce::select::by_value>(x);
      check_selection<spruce::select::by_magnitude>(x);
    }
}

TEST_CASE("the plan ignores NaN keys, which the kernels report instead") {
  std::vector<float> x = {3, std::numeric_limits<float>::quiet_NaN(), 1, 2};
  using O = spruce::select::by_magnitude<float>;
  CHECK(!spruce::select::valid_key<O>(O::key(x[1])));
  std::vector<float> clean = {3, 1, 2};
  const auto plan = host_select<O>(std::span<const float>(x), 2);
  CHECK(O::value(plan.prefix) == 2.0f);
  CHECK(plan.less == 1);
  CHECK(plan.equal == 1);
}

TEST_CASE_TEMPLATE("apply, count and strided offsets match the CPU element by element", T, float, double) {
  const std::vector<std::size_t> shape = {6, 5, 7};
  const std::size_t n = 210;
  const auto w = input<T>("zero_inf", n, 3);
  // A permuted (strided) view of the same storage: axes (2, 0, 1).
  const std::size_t pshape[3] = {7, 6, 5}, pstride[3] = {1, 35, 7};
  const spruce::tensor_ref<const T> strided(w.data(), pshape, pstride);
  const cd::strided_shape ss = cd::strided_shape_of(strided);
  for (std::size_t i = 0; i < n; ++i) CHECK(cd::offset_of(ss, i) == strided.offset_of(i));
  std::size_t nz = 0;
  for (std::size_t i = 0; i < n; ++i) nz += cd::nonzero_one(w[cd::offset_of(ss, i)]);
  CHECK(nz == spruce::count_nonzero(strided));
  const spruce::mask m = spruce::magnitude_mask(strided, spruce::selection::exact{0.5});
  std::vector<T> cpu = w, dev = w;
  spruce::apply_mask(spruce::tensor_ref<T>(cpu.data(), pshape, pstride), m);
  for (std::size_t i = 0; i < n; ++i) {
    T& x = dev[cd::offset_of(ss, i)];
    x = cd::apply_one(x, m.data()[i]);
  }
  CHECK(std::memcmp(cpu.data(), dev.data(), n * sizeof(T)) == 0);
  (void)shape;
}

TEST_CASE("element scores are the CPU's element-granularity group scores") {
  const auto w = input<float>("normal", 60, 4), g = input<float>("normal", 60, 5), h = input<float>("zeros80", 60, 6);
  const std::vector<std::size_t> shape = {60};
  spruce::criterion::inputs<float> in{spruce::tensor_ref<const float>(w.data(), shape), spruce::tensor_ref<const float>(g.data(), shape),
                                      spruce::tensor_ref<const float>(h.data(), shape)};
  const auto layout = spruce::granularity::element{}.layout(shape);
  const auto run = [&](const auto& c) {
    const auto cpu = spruce::group_scores(c, in, layout);
    for (std::size_t i = 0; i < w.size(); ++i) CHECK(cd::element_score(c, w[i], g[i], h[i]) == cpu[i]);
  };
  run(spruce::criterion::l1{});
  run(spruce::criterion::l2{});
  run(spruce::criterion::ln{3.0});
  run(spruce::criterion::gradient{});
  run(spruce::criterion::taylor{});
  run(spruce::criterion::hessian_diagonal{});
}

namespace {

/// The device N:M pass: one group per "thread", in the kernel's numbering; full groups of a
/// compile-time pattern run the fixed body, the rest the general one.
template <std::size_t N, std::size_t M, class T>
spruce::byte_buffer host_n_m(const std::vector<T>& w, std::span<const std::size_t> shape, std::size_t n, std::size_t m,
                             std::uint32_t& bad) {
  const auto geo = spruce::detail::n_m_geometry_of(shape);
  spruce::byte_buffer k(w.size(), 7);
  bad = 0;
  for (std::size_t g = 0; g < cd::n_m_group_count(geo.outer, geo.axis, geo.inner, m); ++g) {
    const cd::n_m_group_at at = geo.inner == 1 && geo.axis % m == 0 ? cd::n_m_group_at{g * m, m, 1}
                                                                     : cd::n_m_group(g, geo.outer, geo.axis, geo.inner, m);
    if constexpr (M != 0) {
      if (at.len == M) {
        bad += cd::n_m_group_keep_fixed<N, M>(w.data() + at.offset, k.data() + at.offset, at.stride);
        continue;
      }
    }
    bad += cd::n_m_group_keep(w.data() + at.offset, k.data() + at.offset, at.len, at.stride, n);
  }
  return k;
}

}  // namespace

TEST_CASE_TEMPLATE("device N:M bodies give the CPU's N:M masks", T, float, double) {
  const std::vector<std::vector<std::size_t>> shapes = {{8, 16}, {5, 13}, {3, 6, 3, 3}, {2, 7, 2, 5}, {9}, {4, 80}, {2, 41, 3}};
  for (const auto& shape : shapes)
    for (const char* kind : kinds) {
      CAPTURE(kind);
      CAPTURE(spruce::shape_string(shape));
      const auto w = input<T>(kind, spruce::shape_size(shape), spruce::shape_size(shape) + 11);
      const spruce::tensor_ref<const T> v(w.data(), shape);
      std::uint32_t bad = 0;
      CHECK(std::ranges::equal(host_n_m<2, 4>(w, shape, 2, 4, bad), spruce::n_m_mask<2, 4>(v).bytes()));
      CHECK(std::ranges::equal(host_n_m<1, 4>(w, shape, 1, 4, bad), spruce::n_m_mask<1, 4>(v).bytes()));
      CHECK(std::ranges::equal(host_n_m<3, 4>(w, shape, 3, 4, bad), spruce::n_m_mask<3, 4>(v).bytes()));
      CHECK(std::ranges::equal(host_n_m<1, 2>(w, shape, 1, 2, bad), spruce::n_m_mask<1, 2>(v).bytes()));
      CHECK(std::ranges::equal(host_n_m<3, 8>(w, shape, 3, 8, bad), spruce::n_m_mask<3, 8>(v).bytes()));
      CHECK(bad == 0);
      for (auto [pn, pm] : {std::pair<std::size_t, std::size_t>{2, 8}, {3, 7}, {5, 40}, {17, 33}, {0, 3}}) {
        CAPTURE(pm);
        const spruce::granularity::n_m_pattern p{pn, pm};
        CHECK(std::ranges::equal(host_n_m<0, 0>(w, shape, pn, pm, bad), spruce::n_m_mask(v, p).bytes()));
      }
    }
}

TEST_CASE("device N:M bodies count NaN weights") {
  std::vector<float> w(32, 1.0f);
  w[13] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<std::size_t> shape = {4, 8};
  std::uint32_t bad = 0;
  (void)host_n_m<2, 4>(w, shape, 2, 4, bad);
  CHECK(bad == 1);
  (void)host_n_m<0, 0>(w, shape, 3, 7, bad);
  CHECK(bad == 1);
}

TEST_CASE("device CSR bodies write sparse::csr_matrix's arrays") {
  for (const char* kind : kinds) {
    CAPTURE(kind);
    const std::vector<std::size_t> shape = {37, 53};
    const auto w = input<float>(kind, 37 * 53, 21);
    const spruce::tensor_ref<const float> v(w.data(), shape);
    const spruce::mask m = spruce::magnitude_mask(v, spruce::selection::threshold{0.7});
    const auto cpu = spruce::sparse::csr_matrix<float>::from_dense(v, m);
    std::vector<std::int32_t> row_ptr(38, 0);
    for (std::size_t r = 0; r < 37; ++r)
      row_ptr[r + 1] = row_ptr[r] + static_cast<std::int32_t>(cd::csr_row_count(m.data() + r * 53, 53));
    std::vector<std::int32_t> col(static_cast<std::size_t>(row_ptr[37]));
    std::vector<float> val(col.size());
    for (std::size_t r = 0; r < 37; ++r)
      cd::csr_row_write(w.data() + r * 53, m.data() + r * 53, 53, col.data() + row_ptr[r], val.data() + row_ptr[r]);
    CHECK(row_ptr == cpu.row_ptr());
    CHECK(col == cpu.col_idx());
    CHECK(val == cpu.values());
  }
}

namespace {

/// The device group-score pass: one "thread" per group running group_score_of over the
/// plan the device path uploads, and the expansion body per element; compared with
/// spruce::group_scores / expand_groups bit for bit.
template <class C, class T>
void check_group_scores(const C& c, const std::vector<std::size_t>& shape, const spruce::granularity::group_layout& layout,
                        const std::string& kind, std::uint64_t seed) {
  const std::size_t n = spruce::shape_size(shape);
  const auto w = input<T>(kind, n, seed), g = input<T>("normal", n, seed + 1), h = input<T>("zeros80", n, seed + 2);
  spruce::criterion::inputs<T> in{spruce::tensor_ref<const T>(w.data(), shape), spruce::tensor_ref<const T>(g.data(), shape),
                                  spruce::tensor_ref<const T>(h.data(), shape)};
  const auto cpu = spruce::group_scores(c, in, layout);
  const auto pa = cd::make_group_plan(layout, spruce::detail::kernel_threads());
  REQUIRE(pa.plan.groups == cpu.size());
  std::vector<T> dev(cpu.size());
  for (std::size_t k = 0; k < dev.size(); ++k)
    dev[k] = cd::group_score_of<C::needs_grad, C::needs_hessian>(c, w.data(), g.data(), h.data(), pa.plan, pa.q_ptr.data(),
                                                                 pa.q_runs.data(), k);
  CHECK(std::memcmp(dev.data(), cpu.data(), dev.size() * sizeof(T)) == 0);
  // Expansion of a group mask (every other group kept, plus a pseudo-random pattern).
  spruce::byte_buffer gk(cpu.size());
  for (std::size_t k = 0; k < gk.size(); ++k) gk[k] = static_cast<std::uint8_t>((k % 2) ^ (spruce::detail::splitmix64(seed, k) & 1));
  const auto ref = spruce::expand_groups(layout, std::span<const std::uint8_t>(gk.data(), gk.size()));
  bool same = true;
  for (std::size_t i = 0; i < n; ++i) same = same && ref[i] == gk[cd::group_of_element(pa.plan, pa.run_group.data(), i)];
  CHECK(same);
}

template <class T, class C>
void check_all_granularities(const C& c) {
  namespace gr = spruce::granularity;
  const std::vector<std::vector<std::size_t>> shapes = {{1, 1}, {7, 5}, {64, 33}, {16, 8, 3, 3}, {4, 70, 5, 5}, {300, 160}, {2, 9000}, {5, 3, 1, 40}};
  std::uint64_t seed = 1;
  for (const auto& shape : shapes)
    for (const char* kind : {"normal", "zero_inf", "ties"}) {
      CAPTURE(spruce::shape_string(shape));
      CAPTURE(kind);
      check_group_scores<C, T>(c, shape, gr::element{}.layout(shape), kind, ++seed);
      check_group_scores<C, T>(c, shape, gr::filter{}.layout(shape), kind, ++seed);
      check_group_scores<C, T>(c, shape, gr::channel{}.layout(shape), kind, ++seed);
      check_group_scores<C, T>(c, shape, gr::vector{}.layout(shape), kind, ++seed);
      check_group_scores<C, T>(c, shape, gr::vector{0}.layout(shape), kind, ++seed);
      check_group_scores<C, T>(c, shape, gr::block{4, 4}.layout(shape), kind, ++seed);
      check_group_scores<C, T>(c, shape, gr::block{3, 40}.layout(shape), kind, ++seed);
      if (shape.size() == 4) check_group_scores<C, T>(c, shape, gr::kernel{}.layout(shape), kind, ++seed);
    }
  check_group_scores<C, T>(c, {100000}, gr::element{}.layout(std::vector<std::size_t>{100000}), "normal", 99);
  check_group_scores<C, T>(c, {100000}, gr::vector{}.layout(std::vector<std::size_t>{100000}), "normal", 98);
}

}  // namespace

TEST_CASE_TEMPLATE("device group-score bodies give the CPU's group scores bit for bit, every granularity", T, float, double) {
  check_all_granularities<T>(spruce::criterion::l1{});
  check_all_granularities<T>(spruce::criterion::l2{});
  check_all_granularities<T>(spruce::criterion::ln{std::numeric_limits<double>::infinity()});
  check_all_granularities<T>(spruce::criterion::ln{3.0});
  check_all_granularities<T>(spruce::criterion::gradient{});
  check_all_granularities<T>(spruce::criterion::taylor{});
  check_all_granularities<T>(spruce::criterion::hessian_diagonal{});
}

TEST_CASE("the device plan reproduces the CPU's chunking of rows when one unit holds every group") {
  namespace gr = spruce::granularity;
  const std::vector<std::size_t> shape = {512, 96};  // channel groups span all 512 rows: 49152 elements
  const auto layout = gr::channel{}.layout(shape);
  const auto one = cd::make_group_plan(layout, 1), four = cd::make_group_plan(layout, 4);
  CHECK(one.plan.chunks == 1);
  CHECK(four.plan.chunks == 4 * spruce::detail::chunks_per_thread);
  CHECK(cd::make_group_plan(gr::channel{}.layout(std::vector<std::size_t>{3, 96}), 4).plan.chunks == 1);  // below the threshold
  CHECK(cd::make_group_plan(gr::filter{}.layout(shape), 4).plan.chunks == 1);                            // many row units
  // The plan follows the CPU's own thread count, whatever it is in this run.
  check_group_scores<spruce::criterion::l2, float>({}, shape, layout, "normal", 5);
}

namespace {

/// The device global selection over the parts listed in `which` (cuda::detail::select_parts
/// with a host histogram): count 0 keeps everything, else the radix plan over the listed
/// parts and the tiled mask pass.
template <class O>
std::vector<spruce::byte_buffer> host_select_parts(const std::vector<std::span<const typename O::value_type>>& parts,
                                                   std::span<const std::size_t> which, std::size_t count,
                                                   spruce::select::tie_break ties) {
  std::vector<std::span<const typename O::value_type>> sub;
  for (const std::size_t i : which) sub.push_back(parts[i]);
  if (count == 0) {
    std::vector<spruce::byte_buffer> all(sub.size());
    for (std::size_t i = 0; i < sub.size(); ++i) all[i].assign(sub[i].size(), 1);
    return all;
  }
  const auto plan = host_select<O>(std::span<const std::span<const typename O::value_type>>(sub), count);
  return host_masks<O>(std::span<const std::span<const typename O::value_type>>(sub), plan, count, ties);
}

/// cuda::global_masks' orchestration on the host: the parts (weights for a fused
/// magnitude selection, else each tensor's group scores), global_rounds with the host
/// selection, the group expansion; compared with spruce::global_masks byte for byte.
template <class P, class T>
void check_global(const P& p, const std::vector<std::vector<std::size_t>>& shapes, const char* kind, const spruce::sparsity_limits& limits,
                  std::uint64_t seed) {
  using G = std::remove_cvref_t<decltype(p.granularity)>;
  using C = std::remove_cvref_t<decltype(p.criterion)>;
  using S = std::remove_cvref_t<decltype(p.selection)>;
  constexpr bool fused = spruce::granularity::one_weight_per_group_v<G> && spruce::criterion::orders_like_magnitude_v<C>;
  using O = std::conditional_t<fused, spruce::select::by_magnitude<T>, spruce::select::by_value<T>>;
  std::vector<std::vector<T>> w;
  std::vector<spruce::named_tensor<T>> params;
  for (std::size_t i = 0; i < shapes.size(); ++i) w.push_back(input<T>(kind, spruce::shape_size(shapes[i]), seed + i));
  for (std::size_t i = 0; i < shapes.size(); ++i)
    params.push_back({"layer" + std::to_string(i), spruce::tensor_ref<T>(w[i].data(), shapes[i])});
  const std::string cpu_error = [&] {
    try {
      (void)spruce::global_masks(p, params, limits);
    } catch (const spruce::error& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  REQUIRE(cpu_error.empty());
  const auto cpu = spruce::global_masks(p, params, limits);
  std::vector<std::vector<T>> scores(shapes.size());
  std::vector<std::span<const T>> parts;
  std::vector<spruce::granularity::group_layout> layouts;
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    layouts.push_back(p.granularity.layout(shapes[i], params[i].name));
    if constexpr (!fused)
      scores[i] = spruce::group_scores(p.criterion, spruce::criterion::inputs<T>{params[i].view}, layouts[i], params[i].name);
    parts.push_back(fused ? std::span<const T>(w[i]) : std::span<const T>(scores[i]));
    sizes.push_back(parts.back().size());
  }
  std::size_t total = 0;
  for (const std::size_t n : sizes) total += n;
  const std::size_t budget = p.selection.count(total, "the global selection");
  auto keep = cd::global_rounds<spruce::byte_buffer>(
      std::span<const std::size_t>(sizes), budget, limits, S::ties,
      [&](std::span<const std::size_t> which, std::size_t count, spruce::select::tie_break ties) {
        return host_select_parts<O>(parts, which, count, ties);
      },
      [](const spruce::byte_buffer& m) { return static_cast<std::size_t>(std::count(m.begin(), m.end(), 0)); });
  REQUIRE(keep.size() == cpu.size());
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    CAPTURE(i);
    const spruce::byte_buffer dev = fused ? keep[i] : spruce::expand_groups(layouts[i], std::span<const std::uint8_t>(keep[i].data(), keep[i].size()));
    CHECK(dev.size() == cpu[i].size());
    CHECK(std::equal(dev.begin(), dev.end(), cpu[i].data()));
  }
}

}  // namespace

TEST_CASE_TEMPLATE("device global scope orchestration gives the CPU's global masks, limits and ties included", T, float, double) {
  namespace gr = spruce::granularity;
  namespace cr = spruce::criterion;
  namespace se = spruce::selection;
  const std::vector<std::vector<std::vector<std::size_t>>> sets = {
      {{7, 5}}, {{16, 8, 3, 3}, {33, 70}, {1, 1}, {10, 4}}, {{64, 100}, {3, 3}, {40, 130}}, {{50, 100}, {2, 3}, {4097, 1}}};
  const std::vector<spruce::sparsity_limits> limits = {{}, {0.1, 0.9, 0}, {0.0, 0.5, 2}, {0.3, 1.0, 0}};
  std::uint64_t seed = 100;
  for (const auto& shapes : sets)
    for (const char* kind : kinds)
      for (const auto& lim : limits)
        for (double r : {0.0, 0.3, 0.7, 1.0}) {
          CAPTURE(kind);
          CAPTURE(r);
          CAPTURE(lim.min);
          CAPTURE(lim.max);
          CAPTURE(lim.min_kept);
          CAPTURE(shapes.size());
          check_global<spruce::pruner<gr::element, cr::l1, se::exact>, T>({{}, {}, se::exact{r}}, shapes, kind, lim, ++seed);
          check_global<spruce::pruner<gr::element, cr::l1, se::threshold>, T>({{}, {}, se::threshold{r}}, shapes, kind, lim, ++seed);
          check_global<spruce::pruner<gr::filter, cr::l2, se::exact>, T>({{}, {}, se::exact{r}}, shapes, kind, lim, ++seed);
          check_global<spruce::pruner<gr::element, cr::l2, se::exact>, T>({{}, {}, se::exact{r}}, shapes, kind, lim, ++seed);
        }
}

TEST_CASE_TEMPLATE("device block-sparse bodies write sparse::block_sparse_matrix's arrays", T, float, double) {
  const std::vector<std::pair<std::size_t, std::size_t>> blocks = {{4, 4}, {1, 1}, {2, 8}, {3, 5}, {8, 1}};
  for (const char* kind : kinds)
    for (const auto& shape : std::vector<std::vector<std::size_t>>{{37, 53}, {1, 1}, {16, 16}, {9, 200}})
      for (const auto& [br, bc] : blocks) {
        CAPTURE(kind);
        CAPTURE(br);
        CAPTURE(bc);
        CAPTURE(spruce::shape_string(shape));
        const std::size_t rows = shape[0], cols = shape[1];
        const auto w = input<T>(kind, rows * cols, 31 + br * 7 + bc);
        const spruce::tensor_ref<const T> v(w.data(), shape);
        const spruce::mask m = spruce::magnitude_mask(v, spruce::selection::exact{0.9});
        const auto cpu = spruce::sparse::block_sparse_matrix<T>::from_dense(v, m, br, bc);
        // The device passes: a hit flag per block, an exclusive scan (block index of each
        // stored block), row_ptr from the scan at each block row's first block, the writes.
        const std::size_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
        std::vector<unsigned long long> flag(nbr * nbc), at(nbr * nbc + 1, 0);
        for (std::size_t b = 0; b < flag.size(); ++b) flag[b] = cd::block_hit(m.data(), rows, cols, br, bc, b / nbc, b % nbc);
        for (std::size_t b = 0; b < flag.size(); ++b) at[b + 1] = at[b] + flag[b];
        std::vector<std::int32_t> row_ptr(nbr + 1), col(at.back());
        std::vector<T> val(at.back() * br * bc);
        for (std::size_t bi = 0; bi <= nbr; ++bi) row_ptr[bi] = static_cast<std::int32_t>(at[bi * nbc]);
        for (std::size_t b = 0; b < flag.size(); ++b)
          if (flag[b]) {
            col[at[b]] = static_cast<std::int32_t>(b % nbc);
            cd::block_write(w.data(), m.data(), rows, cols, br, bc, b / nbc, b % nbc, val.data() + at[b] * br * bc);
          }
        CHECK(row_ptr == cpu.row_ptr());
        CHECK(col == cpu.col_idx());
        REQUIRE(val.size() == cpu.values().size());
        CHECK(same_bytes(val.data(), cpu.values().data(), val.size()));
      }
}

namespace {

/// The device N:M compression: a kept count per group (any above n is refused), then one
/// "thread" per chunk of `step` groups writing its values and position bytes.
template <class T>
spruce::sparse::n_m_matrix<T> host_n_m_compress(const std::vector<T>& w, const spruce::mask& m, std::size_t rows, std::size_t cols,
                                                std::size_t n, std::size_t mm) {
  const std::size_t bits = spruce::sparse::n_m_matrix<T>::index_bits_for(mm), groups = (cols + mm - 1) / mm;
  const std::size_t rb = (groups * n * bits + 7) / 8, step = spruce::sparse::detail::n_m_step_groups(n, bits);
  std::vector<T> values(rows * groups * n, T(-7));  // poison: every slot must be written
  std::vector<std::uint8_t> pos(rows * rb, 0xA5);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t g0 = 0; g0 < groups; g0 += step)
      cd::n_m_write_groups(w.data() + i * cols, m.data() + i * cols, cols, n, mm, bits, g0, std::min(groups, g0 + step), groups, rb,
                           values.data() + i * groups * n, pos.data() + i * rb);
  return spruce::sparse::n_m_matrix<T>::from_parts(rows, cols, n, mm, std::move(values), std::move(pos));
}

}  // namespace

TEST_CASE_TEMPLATE("device N:M bodies compress into sparse::n_m_matrix's arrays and multiply as its spmm", T, float, double) {
  namespace gr = spruce::granularity;
  const std::vector<std::pair<std::size_t, std::size_t>> patterns = {{2, 4}, {1, 4}, {3, 4}, {1, 2}, {2, 8}, {3, 7}, {5, 16}, {17, 33}, {0, 4}};
  for (const char* kind : kinds)
    for (const auto& shape : std::vector<std::vector<std::size_t>>{{8, 16}, {5, 13}, {1, 1}, {33, 48}, {3, 70}})
      for (const auto& [n, mm] : patterns) {
        CAPTURE(kind);
        CAPTURE(n);
        CAPTURE(mm);
        CAPTURE(spruce::shape_string(shape));
        const std::size_t rows = shape[0], cols = shape[1];
        const auto w = input<T>(kind, rows * cols, 17 * n + mm);
        const spruce::tensor_ref<const T> v(w.data(), shape);
        spruce::mask m = spruce::n_m_mask(v, gr::n_m_pattern{n, mm});
        // Fewer than n kept in some groups (fillers), from a magnitude cut on top.
        const spruce::mask cut = spruce::magnitude_mask(v, spruce::selection::exact{0.3});
        spruce::byte_buffer both(m.size());
        for (std::size_t i = 0; i < both.size(); ++i) both[i] = m.data()[i] & cut.data()[i];
        for (const spruce::mask* keep : {&m}) {
          const auto cpu = spruce::sparse::n_m_matrix<T>::from_dense(v, *keep, n, mm);
          const auto dev = host_n_m_compress(w, *keep, rows, cols, n, mm);
          CHECK(dev.positions() == cpu.positions());
          REQUIRE(dev.values().size() == cpu.values().size());
          CHECK(same_bytes(dev.values().data(), cpu.values().data(), dev.values().size()));
        }
        const spruce::mask fewer = spruce::mask::adopt(shape, std::move(both));
        const auto cpu = spruce::sparse::n_m_matrix<T>::from_dense(v, fewer, n, mm);
        const auto dev = host_n_m_compress(w, fewer, rows, cols, n, mm);
        CHECK(dev.positions() == cpu.positions());
        CHECK(same_bytes(dev.values().data(), cpu.values().data(), dev.values().size()));
        // A group keeping more than n is what the device's count pass refuses; the CPU too.
        if (n + 1 < mm && cols >= mm) {
          spruce::byte_buffer over(m.data(), m.data() + m.size());
          for (std::size_t q = 0; q <= n; ++q) over[q] = 1;
          CHECK(cd::n_m_group_kept(over.data(), cols, mm, 0) > n);
          CHECK_THROWS_AS((void)spruce::sparse::n_m_matrix<T>::from_dense(v, spruce::mask::adopt(shape, std::move(over)), n, mm),
                          spruce::error);
        }
        // The product: one "thread" per output (i, j) against sparse::spmm (K within one
        // CPU slice), beta 0 and beta != 0.
        for (const std::size_t nb : {1, 5, 64}) {
          const auto b = input<T>("normal", cols * nb, nb + 3);
          const auto c0 = input<T>("normal", rows * nb, nb + 4);
          for (const T beta : {T(0), T(0.5)}) {
            std::vector<T> ref = c0, mine = c0;
            spruce::sparse::spmm(cpu, spruce::tensor_ref<const T>(b.data(), std::vector<std::size_t>{cols, nb}),
                                 spruce::tensor_ref<T>(ref.data(), std::vector<std::size_t>{rows, nb}), T(1.5), beta);
            const std::size_t groups = cpu.groups_per_row(), rb = cpu.row_bytes();
            for (std::size_t i = 0; i < rows; ++i)
              for (std::size_t j = 0; j < nb; ++j) {
                const T acc = cd::n_m_dot(cpu.values().data() + i * groups * n, cpu.positions().data() + i * rb, groups, n, mm,
                                          cpu.index_bits(), cols, b.data(), nb, j);
                mine[i * nb + j] = cd::spmm_store_one(acc, T(1.5), beta, mine[i * nb + j]);
              }
            CHECK(same_bytes(mine.data(), ref.data(), ref.size()));
          }
        }
      }
}

TEST_CASE_TEMPLATE("device group-criterion bodies (bn_scale, random, wanda) give the CPU's scores bit for bit", T, float, double) {
  namespace gr = spruce::granularity;
  namespace cr = spruce::criterion;
  const std::vector<std::vector<std::size_t>> shapes = {{7, 5}, {64, 33}, {16, 8, 3, 3}, {4, 70, 5, 5}, {300, 160}, {2, 9000}, {512, 96}};
  std::uint64_t seed = 7;
  for (const auto& shape : shapes)
    for (const char* kind : {"normal", "zero_inf", "ties", "zeros80"}) {
      CAPTURE(spruce::shape_string(shape));
      CAPTURE(kind);
      const std::size_t n = spruce::shape_size(shape), channels = shape[1], inner = n / (shape[0] * channels);
      const auto w = input<T>(kind, n, ++seed);
      auto norms = input<T>("normal", channels, ++seed);
      for (auto& x : norms) x = std::abs(x);
      if (channels > 2) norms[1] = T(0);
      const auto gamma = input<T>(kind, shape[0], ++seed);
      std::vector<gr::group_layout> layouts = {gr::element{}.layout(shape), gr::filter{}.layout(shape), gr::channel{}.layout(shape),
                                               gr::vector{}.layout(shape), gr::block{4, 4}.layout(shape)};
      if (shape.size() == 4) layouts.push_back(gr::kernel{}.layout(shape));
      for (const auto& layout : layouts) {
        const auto pa = cd::make_group_plan(layout, spruce::detail::kernel_threads());
        // Wanda.
        cr::inputs<T, cr::activation_norms<T>> in{spruce::tensor_ref<const T>(w.data(), shape)};
        in.extra.norms = std::span<const T>(norms);
        const auto cpu = spruce::group_scores(cr::wanda{}, in, layout);
        std::vector<T> dev(cpu.size());
        const bool per_element = dev.size() == n;
        for (std::size_t k = 0; k < dev.size(); ++k)
          dev[k] = per_element ? cd::wanda_element(w.data(), norms.data(), inner, channels, k)
                               : cd::wanda_group_score(w.data(), norms.data(), inner, channels, pa.plan, pa.q_ptr.data(), pa.q_runs.data(), k);
        CHECK(same_bytes(dev.data(), cpu.data(), dev.size()));
        // Random.
        const cr::random rnd{seed};
        const auto rcpu = spruce::group_scores(rnd, cr::inputs<T>{spruce::tensor_ref<const T>(w.data(), shape)}, layout);
        std::vector<T> rdev(rcpu.size());
        for (std::size_t k = 0; k < rdev.size(); ++k) rdev[k] = cd::random_score<T>(rnd.seed, k);
        CHECK(same_bytes(rdev.data(), rcpu.data(), rdev.size()));
      }
      // BN scale with filter groups.
      cr::inputs<T> bin{spruce::tensor_ref<const T>(w.data(), shape)};
      bin.gamma = std::span<const T>(gamma);
      const auto bcpu = spruce::group_scores(cr::bn_scale{}, bin, gr::filter{}.layout(shape));
      std::vector<T> bdev(bcpu.size());
      for (std::size_t k = 0; k < bdev.size(); ++k) bdev[k] = cd::bn_scale_score(gamma[k]);
      CHECK(same_bytes(bdev.data(), bcpu.data(), bdev.size()));
    }
}
