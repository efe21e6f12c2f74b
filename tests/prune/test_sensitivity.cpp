// Sensitivity scan: every (tensor, sparsity) measured with exactly that tensor pruned, the
// weights restored bit for bit (also when a callback throws), validation before any call,
// and the CSV written atomically and read back exactly.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "spruce/io/sensitivity_csv.hpp"
#include "spruce/prune/sensitivity.hpp"
#include "spruce/spruce.hpp"

using namespace spruce;
namespace fs = std::filesystem;

namespace {

/// Three parameters: a conv weight [8, 3, 3, 3], its bias [8] and a linear weight seen
/// transposed through a strided window of a larger buffer ([200, 200], strides {1, 210};
/// columns 200..209 of the buffer are outside the view and must never change). Large
/// enough that gather / restore take the OpenMP path. Each weight tensor holds one -0.0.
struct model {
  std::vector<float> conv = std::vector<float>(8 * 27);
  std::vector<float> bias = std::vector<float>(8);
  std::vector<float> storage = std::vector<float>(200 * 210);
  std::vector<named_tensor<float>> params;

  explicit model(unsigned seed = 7, std::vector<std::string> names = {"conv.weight", "conv.bias", "fc.weight"}) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g;
    for (auto* v : {&conv, &bias, &storage})
      for (float& x : *v) x = g(rng);
    conv[5] = -0.0f;
    storage[7 * 210 + 3] = -0.0f;
    const std::vector<std::size_t> cs{8, 3, 3, 3}, bs{8}, fcs{200, 200}, fstr{1, 210};
    params = {{names[0], tensor_ref<float>(conv.data(), cs)},
              {names[1], tensor_ref<float>(bias.data(), bs)},
              {names[2], tensor_ref<float>(storage.data(), fcs, fstr)}};
  }
  model(const model&) = delete;
  model& operator=(const model&) = delete;

  std::vector<std::vector<float>> buffers() const { return {conv, bias, storage}; }
};

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool unchanged(const model& m, const std::vector<std::vector<float>>& before) {
  const auto now = m.buffers();
  for (std::size_t i = 0; i < now.size(); ++i)
    if (!bitwise_equal(now[i], before[i])) return false;
  return true;
}

/// Logical (row-major) values of a view, walked with offset_of, independently of gather.
std::vector<float> logical(const tensor_ref<float>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = v.data()[v.offset_of(i)];
  return out;
}

std::size_t zeros(const std::vector<float>& v) {
  std::size_t z = 0;
  for (float x : v) z += x == 0.0f;
  return z;
}

/// A position-sensitive function of every weight: what the "accuracy" is in these tests.
double metric_of(const std::vector<named_tensor<float>>& params) {
  double s = 0.0;
  for (const auto& p : params) {
    const auto v = logical(p.view);
    for (std::size_t i = 0; i < v.size(); ++i) s += std::abs(double(v[i])) * double(i % 7 + 1);
  }
  return s;
}

/// The evaluation callback's state: every call's logical weights and returned metric.
struct recorder {
  const std::vector<named_tensor<float>>* params;
  std::vector<std::vector<std::vector<float>>> states;
  std::vector<double> metrics;
  int throw_at = -1;

  double operator()() {
    const int call = static_cast<int>(states.size());
    std::vector<std::vector<float>> s;
    for (const auto& p : *params) s.push_back(logical(p.view));
    states.push_back(std::move(s));
    if (call == throw_at) throw std::runtime_error("evaluation failed");
    metrics.push_back(metric_of(*params));
    return metrics.back();
  }
};

using oracle_fn = std::function<mask(const tensor_ref<const float>&, double, const std::string&)>;

/// Checks a finished scan against its recorder: the baseline saw the dense model, and the
/// call of row r saw exactly row r's tensor pruned by the oracle's mask, every other tensor
/// bit for bit original; the row's counts and metric agree.
void check_scan(const sensitivity_table& t, const recorder& rec,
                const std::vector<named_tensor<float>>& params,
                const std::vector<std::vector<float>>& original_logical,
                const std::vector<std::size_t>& targets, const std::vector<double>& sparsities,
                const oracle_fn& oracle) {
  REQUIRE(t.rows.size() == targets.size() * sparsities.size());
  REQUIRE(rec.states.size() == t.rows.size() + 1);
  for (std::size_t p = 0; p < params.size(); ++p) CHECK(bitwise_equal(rec.states[0][p], original_logical[p]));
  CHECK(t.baseline == rec.metrics[0]);
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    const std::size_t target = targets[r / sparsities.size()];
    const double s = sparsities[r % sparsities.size()];
    const auto& row = t.rows[r];
    CAPTURE(r);
    CAPTURE(row.tensor);
    CAPTURE(s);
    CHECK(row.tensor == params[target].name);
    CHECK(row.sparsity == s);
    const auto& orig = original_logical[target];
    const mask m = oracle(tensor_ref<const float>(orig.data(), params[target].view.shape()), s,
                          params[target].name);
    std::vector<float> want = orig;
    for (std::size_t i = 0; i < want.size(); ++i)
      if (!m.data()[i]) want[i] = 0.0f;
    for (std::size_t p = 0; p < params.size(); ++p) {
      CAPTURE(p);
      CHECK(bitwise_equal(rec.states[r + 1][p], p == target ? want : original_logical[p]));
    }
    CHECK(zeros(rec.states[r + 1][target]) == zeros(want));
    CHECK(row.pruned == m.count_pruned());
    CHECK(row.size == orig.size());
    CHECK(row.actual_sparsity == double(m.count_pruned()) / double(orig.size()));
    CHECK(row.metric == rec.metrics[r + 1]);
  }
}

std::vector<std::vector<float>> logical_all(const std::vector<named_tensor<float>>& params) {
  std::vector<std::vector<float>> out;
  for (const auto& p : params) out.push_back(logical(p.view));
  return out;
}

/// A fresh directory under the system temp directory, removed with everything in it.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("spruce_test_sensitivity_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> e;
    for (const auto& d : fs::directory_iterator(path)) e.push_back(d.path().filename().string());
    std::sort(e.begin(), e.end());
    return e;
  }
};

/// RFC 4180 reader for one line (no embedded line breaks in these tests).
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> f(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') f.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else f.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      f.emplace_back();
    } else {
      f.back() += c;
    }
  }
  return f;
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

bool same_double(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

const std::vector<double> lab_sparsities{0.0, 0.3, 0.5, 0.9};

}  // namespace

TEST_CASE("the lab's scan prunes one tensor at a time and restores it bit for bit") {
  model m;
  const auto before = m.buffers();
  const auto orig = logical_all(m.params);
  const double dense = metric_of(m.params);
  recorder rec{&m.params, {}, {}};
  const sensitivity_table t = sensitivity_scan(m.params, lab_sparsities, [&rec] { return rec(); });

  CHECK(t.baseline == dense);
  check_scan(t, rec, m.params, orig, {0, 1, 2}, lab_sparsities,
             [](const tensor_ref<const float>& w, double s, const std::string& n) {
               return magnitude_mask(w, selection::threshold{s}, n);
             });
  // The threshold rule with untied scores prunes round_half_even(s * n) weights.
  for (const auto& row : t.rows) CHECK(row.pruned == count_from_ratio(row.sparsity, row.size));
  // What evaluate() saw: the scanned tensor with exactly `pruned` zeros (its -0.0 has the
  // smallest magnitude, so any nonzero count takes it), the others with their own one.
  const std::size_t dense_zeros[] = {1, 0, 1};
  for (std::size_t r = 0; r < t.rows.size(); ++r)
    for (std::size_t p = 0; p < 3; ++p) {
      CAPTURE(r);
      CAPTURE(p);
      const bool scanned = p == r / lab_sparsities.size();
      const std::size_t want = scanned && t.rows[r].pruned ? t.rows[r].pruned : dense_zeros[p];
      CHECK(zeros(rec.states[r + 1][p]) == want);
    }
  CHECK(t.rows[1].pruned == 65);    // conv 0.3 * 216 = 64.8
  CHECK(t.rows[5].pruned == 2);     // bias 0.3 * 8 = 2.4
  CHECK(t.rows[11].pruned == 36000);
  CHECK(t.rows[0].metric == dense);  // sparsity 0 prunes nothing

  CHECK(unchanged(m, before));
  CHECK(std::signbit(m.conv[5]));
  CHECK(std::signbit(m.storage[7 * 210 + 3]));
}

TEST_CASE("min_rank and a name subset choose the tensors, rows follow parameter order") {
  model m;
  const auto before = m.buffers();
  const auto orig = logical_all(m.params);
  const oracle_fn lab = [](const tensor_ref<const float>& w, double s, const std::string& n) {
    return magnitude_mask(w, selection::threshold{s}, n);
  };
  {
    recorder rec{&m.params, {}, {}};
    const auto t = sensitivity_scan(m.params, lab_sparsities, [&rec] { return rec(); }, {.min_rank = 2});
    check_scan(t, rec, m.params, orig, {0, 2}, lab_sparsities, lab);
  }
  {
    recorder rec{&m.params, {}, {}};
    const std::vector<double> one{0.7};
    const auto t = sensitivity_scan(m.params, one, [&rec] { return rec(); },
                                    {.min_rank = 1, .names = {"fc.weight", "conv.bias"}});
    check_scan(t, rec, m.params, orig, {1, 2}, one, lab);
  }
  CHECK(unchanged(m, before));
}

TEST_CASE("the structured overload prunes whole filters, strided views included") {
  model m;
  const auto before = m.buffers();
  const auto orig = logical_all(m.params);
  recorder rec{&m.params, {}, {}};
  const std::vector<double> sp{0.25, 0.5};
  const auto t = sensitivity_scan<granularity::filter, criterion::l2>(
      m.params, sp, [&rec] { return rec(); }, {.min_rank = 2});
  check_scan(t, rec, m.params, orig, {0, 2}, sp,
             [](const tensor_ref<const float>& w, double s, const std::string& n) {
               return pruner<granularity::filter, criterion::l2, selection::threshold>{{}, {}, {s}}.compute(w, n);
             });
  // conv: 8 filters of 27, fc: 200 rows of 200; round_half_even(s * filters) go.
  CHECK(t.rows[0].pruned == 2 * 27);
  CHECK(t.rows[1].pruned == 4 * 27);
  CHECK(t.rows[2].pruned == 50 * 200);
  CHECK(t.rows[3].pruned == 100 * 200);
  // Each pruned filter is all zero in what evaluate() saw; every other one is untouched.
  const auto& seen = rec.states[4][2];  // fc.weight at 0.5
  std::size_t zero_rows = 0;
  for (std::size_t r = 0; r < 200; ++r) {
    bool all_zero = true, same = true;
    for (std::size_t c = 0; c < 200; ++c) {
      all_zero = all_zero && seen[r * 200 + c] == 0.0f;
      same = same && std::memcmp(&seen[r * 200 + c], &orig[2][r * 200 + c], sizeof(float)) == 0;
    }
    CHECK((all_zero || same));
    zero_rows += all_zero;
  }
  CHECK(zero_rows == 100);
  CHECK(unchanged(m, before));

  // Runtime knobs come from a prototype pruner; exact selection through the type overload.
  recorder rec2{&m.params, {}, {}};
  const pruner_masker<granularity::block, criterion::l1> blocks{{{2, 3}, {}, {}}};
  const auto tb = sensitivity_scan(m.params, sp, blocks, [&rec2] { return rec2(); }, {.min_rank = 2});
  check_scan(tb, rec2, m.params, orig, {0, 2}, sp,
             [](const tensor_ref<const float>& w, double s, const std::string& n) {
               return pruner<granularity::block, criterion::l1, selection::threshold>{{2, 3}, {}, {s}}.compute(w, n);
             });
  recorder rec3{&m.params, {}, {}};
  const auto te = sensitivity_scan<granularity::element, criterion::l1, selection::exact>(
      m.params, sp, [&rec3] { return rec3(); });
  check_scan(te, rec3, m.params, orig, {0, 1, 2}, sp,
             [](const tensor_ref<const float>& w, double s, const std::string& n) {
               return magnitude_mask(w, selection::exact(s), n);
             });
  CHECK(unchanged(m, before));
}

TEST_CASE("a custom mask maker decides the mask, one that prunes in place is undone too") {
  model m;
  const auto before = m.buffers();
  const auto orig = logical_all(m.params);
  // Prunes the first round(s * n) elements in logical order.
  auto leading = [](const named_tensor<float>& t, double s) {
    const std::size_t k = count_from_ratio(s, t.view.size());
    byte_buffer keep(t.view.size(), 1);
    for (std::size_t i = 0; i < k; ++i) keep[i] = 0;
    return mask(t.view.shape(), std::move(keep));
  };
  recorder rec{&m.params, {}, {}};
  const auto t = sensitivity_scan(m.params, lab_sparsities, leading, [&rec] { return rec(); });
  check_scan(t, rec, m.params, orig, {0, 1, 2}, lab_sparsities,
             [&](const tensor_ref<const float>& w, double s, const std::string&) {
               byte_buffer keep(w.size(), 1);
               for (std::size_t i = 0; i < count_from_ratio(s, w.size()); ++i) keep[i] = 0;
               return mask(w.shape(), std::move(keep));
             });
  CHECK(unchanged(m, before));

  // magnitude_prune writes the tensor while making the mask: same table, weights restored.
  recorder a{&m.params, {}, {}}, b{&m.params, {}, {}};
  const auto in_place = sensitivity_scan(
      m.params, lab_sparsities,
      [](const named_tensor<float>& t, double s) { return magnitude_prune(t.view, selection::threshold{s}, t.name); },
      [&a] { return a(); });
  const auto lab = sensitivity_scan(m.params, lab_sparsities, [&b] { return b(); });
  REQUIRE(in_place.rows.size() == lab.rows.size());
  for (std::size_t r = 0; r < lab.rows.size(); ++r) {
    CHECK(in_place.rows[r].metric == lab.rows[r].metric);
    CHECK(in_place.rows[r].pruned == lab.rows[r].pruned);
  }
  CHECK(unchanged(m, before));
}

TEST_CASE("weights are restored when a callback throws, and the exception propagates") {
  model m;
  const auto before = m.buffers();
  for (int at : {0, 1, 3, 6, 12}) {
    CAPTURE(at);
    recorder rec{&m.params, {}, {}, at};
    CHECK_THROWS_WITH_AS(sensitivity_scan(m.params, lab_sparsities, [&rec] { return rec(); }),
                         "evaluation failed", std::runtime_error);
    CHECK(rec.states.size() == std::size_t(at + 1));
    CHECK(unchanged(m, before));
  }
  // A non-std exception and a throwing result conversion take the same path.
  struct boom {};
  CHECK_THROWS_AS(sensitivity_scan(m.params, lab_sparsities,
                                   [n = 0]() mutable -> double { if (n++ == 2) throw boom{}; return 1.0; }),
                  boom);
  CHECK(unchanged(m, before));
  struct bad_metric {
    bool fail;
    operator double() const {
      if (fail) throw boom{};
      return 1.0;
    }
  };
  int calls = 0;
  CHECK_THROWS_AS(sensitivity_scan(m.params, lab_sparsities, [&calls] { return bad_metric{++calls == 3}; }),
                  boom);
  CHECK(calls == 3);
  CHECK(unchanged(m, before));

  // A mask maker that prunes in place and then throws, on the second tensor.
  auto prune_then_throw = [](const named_tensor<float>& t, double s) -> mask {
    mask k = magnitude_prune(t.view, selection::threshold{s}, t.name);
    if (t.name == "fc.weight") throw boom{};
    return k;
  };
  CHECK_THROWS_AS(sensitivity_scan(m.params, lab_sparsities, prune_then_throw, [] { return 0.0; }), boom);
  CHECK(unchanged(m, before));

  // A mask of another shape is an error naming the tensor; nothing stays pruned.
  auto wrong_shape = [](const named_tensor<float>& t, double) {
    if (t.name != "fc.weight") return mask(t.view.shape(), std::uint8_t{0});
    const std::vector<std::size_t> s{200 * 200};
    return mask(s, std::uint8_t{0});
  };
  CHECK_THROWS_WITH_AS(sensitivity_scan(m.params, lab_sparsities, wrong_shape, [] { return 0.0; }),
                       doctest::Contains("mask of shape [40000] for tensor 'fc.weight' of shape [200, 200]"),
                       spruce::error);
  CHECK(unchanged(m, before));
}

TEST_CASE("bad input throws before anything is evaluated or written") {
  model m;
  const auto before = m.buffers();
  int calls = 0;
  auto eval = [&calls] { ++calls; return 1.0; };
  auto expect_error = [&](auto&& scan, const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(scan(), doctest::Contains(what), spruce::error);
    CHECK(calls == 0);
    CHECK(unchanged(m, before));
  };
  const std::vector<double> none, nan{0.5, std::numeric_limits<double>::quiet_NaN()}, neg{-0.1},
      big{0.5, 1.5};
  expect_error([&] { return sensitivity_scan(m.params, none, eval); }, "sparsity list is empty");
  expect_error([&] { return sensitivity_scan(m.params, nan, eval); }, "sparsity #1 is nan, which is not in [0, 1]");
  expect_error([&] { return sensitivity_scan(m.params, neg, eval); }, "sparsity #0 is -0.1");
  expect_error([&] { return sensitivity_scan(m.params, big, eval); }, "sparsity #1 is 1.5");

  std::vector<named_tensor<float>> dup = m.params;
  dup[2].name = "conv.weight";
  expect_error([&] { return sensitivity_scan(dup, lab_sparsities, eval); }, "'conv.weight' appears 2 times");

  expect_error([&] { return sensitivity_scan(m.params, lab_sparsities, eval, {.names = {"fc.wieght"}}); },
               "lists 'fc.wieght', which is not among the parameters");
  expect_error([&] { return sensitivity_scan(m.params, lab_sparsities, eval, {.names = {"fc.weight", "fc.weight"}}); },
               "lists 'fc.weight' twice");
  expect_error([&] { return sensitivity_scan(m.params, lab_sparsities, eval, {.min_rank = 2, .names = {"conv.bias"}}); },
               "'conv.bias' of shape [8], below min_rank = 2");
  expect_error([&] { return sensitivity_scan(m.params, lab_sparsities, eval, {.min_rank = 5}); },
               "none of the 3 parameters has rank >= 5");
  const std::vector<named_tensor<float>> empty;
  expect_error([&] { return sensitivity_scan(empty, lab_sparsities, eval); }, "none of the 0 parameters");
  // The granularity rejects the bias before the baseline is measured.
  expect_error([&] { return sensitivity_scan<granularity::filter, criterion::l2>(m.params, lab_sparsities, eval); },
               "filter granularity needs a tensor of rank >= 2, but tensor 'conv.bias'");
  expect_error([&] {
    return sensitivity_scan(m.params, lab_sparsities, pruner_masker<granularity::block, criterion::l1>{{{0, 2}, {}, {}}},
                            eval, {.min_rank = 2});
  }, "block is empty");
}

TEST_CASE("the CSV holds every row exactly, quotes odd names and is written atomically") {
  model m(3, {"conv \"a\",b", " padded ", "fc.weight"});
  const std::vector<double> sp{0.1, 1.0 / 3.0, 1.0};
  int n = 0;
  const auto t = sensitivity_scan(m.params, sp, [&n] { return 0.1 * ++n + 1.0 / 7.0; });
  REQUIRE(t.rows.size() == 9);

  const std::string text = spruce::io::csv(t);
  CHECK(text.rfind("tensor,sparsity,metric,pruned,size,actual_sparsity,baseline\n\"conv \"\"a\"\",b\",0.1,", 0) == 0);
  CHECK(text.find("\n\" padded \",") != std::string::npos);

  temp_dir dir;
  const fs::path file = dir.path / "sensitivity.csv";
  {
    std::ofstream old(file);
    old << "stale content that must be replaced\n";
  }
  spruce::io::write_csv(t, file);
  CHECK(dir.entries() == std::vector<std::string>{"sensitivity.csv"});

  const auto lines = read_lines(file);
  REQUIRE(lines.size() == 1 + t.rows.size());
  CHECK(lines[0] == "tensor,sparsity,metric,pruned,size,actual_sparsity,baseline");
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    CAPTURE(lines[r + 1]);
    const auto f = split_csv(lines[r + 1]);
    REQUIRE(f.size() == 7);
    const auto& row = t.rows[r];
    CHECK(f[0] == row.tensor);
    CHECK(same_double(std::strtod(f[1].c_str(), nullptr), row.sparsity));
    CHECK(same_double(std::strtod(f[2].c_str(), nullptr), row.metric));
    CHECK(std::stoull(f[3]) == row.pruned);
    CHECK(std::stoull(f[4]) == row.size);
    CHECK(same_double(std::strtod(f[5].c_str(), nullptr), row.actual_sparsity));
    CHECK(same_double(std::strtod(f[6].c_str(), nullptr), t.baseline));
  }
  CHECK(t.rows[8].actual_sparsity == 1.0);

  // Rewriting replaces the file whole; still no temporary left beside it.
  sensitivity_table small{2.5, {t.rows[0]}};
  spruce::io::write_csv(small, file);
  CHECK(read_lines(file).size() == 2);
  CHECK(dir.entries() == std::vector<std::string>{"sensitivity.csv"});

  // Failures name the path and leave nothing behind.
  const fs::path missing = dir.path / "no_such_dir" / "s.csv";
  CHECK_THROWS_WITH_AS(spruce::io::write_csv(t, missing), doctest::Contains(missing.string().c_str()), spruce::error);
  const fs::path is_dir = dir.path / "taken";
  fs::create_directory(is_dir);
  CHECK_THROWS_WITH_AS(spruce::io::write_csv(t, is_dir), doctest::Contains(("'" + is_dir.string() + "'").c_str()), spruce::error);
  CHECK(dir.entries() == std::vector<std::string>{"sensitivity.csv", "taken"});
  CHECK(read_lines(file).size() == 2);
}

TEST_CASE("double weights and a contiguous-only model scan the same way") {
  std::vector<double> w(64), v(10);
  std::mt19937 rng(5);
  std::normal_distribution<double> g;
  for (double& x : w) x = g(rng);
  for (double& x : v) x = g(rng);
  const std::vector<std::size_t> ws{8, 8}, vs{10};
  const std::vector<named_tensor<double>> params{{"w", tensor_ref<double>(w.data(), ws)},
                                                 {"v", tensor_ref<double>(v.data(), vs)}};
  const auto w0 = w, v0 = v;
  const std::vector<double> sp{0.5};
  std::vector<std::size_t> zeros_seen;
  const auto t = sensitivity_scan(std::span<const named_tensor<double>>(params), std::span<const double>(sp), [&] {
    std::size_t z = 0;
    for (double x : w) z += x == 0.0;
    for (double x : v) z += x == 0.0;
    zeros_seen.push_back(z);
    return double(z);
  });
  CHECK(zeros_seen == std::vector<std::size_t>{0, 32, 5});
  CHECK(t.baseline == 0.0);
  CHECK(t.rows[0].metric == 32.0);
  CHECK(t.rows[1].metric == 5.0);
  CHECK(std::memcmp(w.data(), w0.data(), w.size() * sizeof(double)) == 0);
  CHECK(std::memcmp(v.data(), v0.data(), v.size() * sizeof(double)) == 0);
}
