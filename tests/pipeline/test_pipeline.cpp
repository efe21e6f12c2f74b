// The pruning lab pipeline (examples/02_prune_lab): the automatic sparsity table, the bad
// input a run must refuse before doing any work, and (`--smoke-run DIR`) a whole smoke run
// whose folder is then checked: every output exists, the CSV has the documented columns,
// every checkpoint reloads into the training library, sparse inference agreed.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <spruce/core/error.hpp>

#include "lab/lab.hpp"
#include "lab/table.hpp"
#include "train/checkpoint.hpp"
#include "train/model.hpp"

namespace fs = std::filesystem;

namespace {

const std::string checkpoint = std::string(SPRUCE_SOURCE_DIR) + "/examples/checkpoints/vgg_fmnist_w0125.safetensors";

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct result {
  int code;
  std::string output;
};

result run_lab(const std::string& args) {
  const fs::path log = fs::temp_directory_path() / ("prune_lab_test_" + std::to_string(::getpid()) + ".log");
  const std::string cmd = std::string("'") + PRUNE_LAB + "' " + args + " >'" + log.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(log)};
  fs::remove(log);
  return r;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("prune_lab_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  return d;
}

// A synthetic scan: layer i loses (i + 1) * k * s^2 accuracy at sparsity s.
spruce::sensitivity_table synthetic_scan(std::size_t layers, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.01, 0.5);
  spruce::sensitivity_table t;
  t.baseline = 0.93;
  for (std::size_t i = 0; i < layers; ++i) {
    const double k = u(rng);
    const std::size_t size = 1000 * (i + 1);
    for (double s : {0.4, 0.5, 0.6, 0.7, 0.8, 0.9}) {
      double drop = k * s * s * s;
      if (i == 1 && s == 0.6) drop += 0.05;  // a non-monotone curve
      t.rows.push_back({"layer" + std::to_string(i), s, t.baseline - drop, 0, size, s});
    }
  }
  return t;
}

}  // namespace

TEST_CASE("derive_table meets the size bound and is monotone in the budget") {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const auto scan = synthetic_scan(6, seed);
    const std::size_t weights = 21000, dense = weights + 500;
    std::map<std::string, double> prev;
    for (double budget = 0; budget <= 0.3; budget += 0.0025) {
      const lab::derived_table d = lab::derive_table(scan, dense, budget, 0.25);
      // The bound, recomputed from the table itself.
      std::size_t pruned = 0;
      for (const auto& [name, a] : d.table) {
        const std::size_t size = 1000 * (static_cast<std::size_t>(name.back() - '0') + 1);
        pruned += static_cast<std::size_t>(std::floor(static_cast<double>(a) * static_cast<double>(size)));
        CHECK(static_cast<double>(a) <= 0.9);
        CHECK(static_cast<double>(a) >= 0.0);
      }
      CHECK(dense - pruned <= dense / 4);
      CHECK(d.budget >= budget);
      for (const auto& [name, a] : d.table) {
        CHECK_MESSAGE(static_cast<double>(a) >= prev[name], "seed ", seed, " budget ", budget, " layer ", name);
        prev[name] = static_cast<double>(a);
      }
    }
  }
}

TEST_CASE("derive_table: a wide budget is used as given, errors") {
  const auto scan = synthetic_scan(4, 3);
  const lab::derived_table d = lab::derive_table(scan, 10000 + 100, 1.0, 0.25);
  CHECK_FALSE(d.widened);
  for (const auto& [name, a] : d.table) CHECK(static_cast<double>(a) == doctest::Approx(0.9));
  CHECK_THROWS_AS(lab::derive_table(scan, 10100, 0.01, 0.05), spruce::error);  // 0.9 cannot reach 5%
  CHECK_THROWS_AS(lab::derive_table(scan, 10100, -1, 0.25), spruce::error);
  CHECK_THROWS_AS(lab::derive_table(scan, 10100, 0.01, 0), spruce::error);
  CHECK_THROWS_AS(lab::derive_table(spruce::sensitivity_table{}, 10100, 0.01, 0.25), spruce::error);
  CHECK_THROWS_AS(lab::derive_table(scan, 100, 0.01, 0.25), spruce::error);  // scan larger than the model
}

TEST_CASE("read_table_file: names and ratios are checked") {
  const fs::path dir = fresh_dir("tables");
  fs::create_directories(dir);
  const std::vector<std::string> known = {"a.weight", "b.weight"};
  const auto write = [&](const std::string& text) {
    std::ofstream(dir / "t.txt") << text;
    return (dir / "t.txt").string();
  };
  const auto t = lab::read_table_file(write("# comment\na.weight 0.5\n\nb.weight,0.25  # tail\n"), known);
  CHECK(t.size() == 2);
  CHECK(static_cast<double>(t.at("b.weight")) == 0.25);
  CHECK_THROWS_WITH_AS(lab::read_table_file(write("c.weight 0.5\n"), known), doctest::Contains("unknown layer 'c.weight'"),
                       spruce::error);
  CHECK_THROWS_WITH_AS(lab::read_table_file(write("a.weight 1.5\n"), known), doctest::Contains("not a number in [0, 1]"),
                       spruce::error);
  CHECK_THROWS_AS(lab::read_table_file(write("a.weight -0.1\n"), known), spruce::error);
  CHECK_THROWS_AS(lab::read_table_file(write("a.weight x\n"), known), spruce::error);
  CHECK_THROWS_AS(lab::read_table_file(write("a.weight 0.1\na.weight 0.2\n"), known), spruce::error);
  CHECK_THROWS_AS(lab::read_table_file((dir / "missing.txt").string(), known), spruce::error);
  fs::remove_all(dir);
}

TEST_CASE("bad input is refused before any work") {
  const fs::path out = fresh_dir("bad");
  SUBCASE("unknown stage lists the valid ones") {
    const auto r = run_lab("--stages dense,prune --out '" + out.string() + "'");
    CHECK(r.code == 2);
    CHECK(r.output.find("unknown stage 'prune'") != std::string::npos);
    CHECK(r.output.find("fine-grained") != std::string::npos);
  }
  SUBCASE("missing checkpoint") {
    const auto r = run_lab("--checkpoint /nonexistent/x.safetensors --out '" + out.string() + "'");
    CHECK(r.code == 1);
    CHECK(r.output.find("does not exist") != std::string::npos);
  }
  SUBCASE("incompatible checkpoint lists the mis-shaped names") {
    fs::create_directories(out.parent_path());
    const fs::path bad = fresh_dir("bad_ck.safetensors");
    train::vgg m(train::vgg_config{0.25});
    auto t = m.parameters();
    t.pop_back();  // classifier.bias missing
    train::save_safetensors(bad, t, {{"normalise_mean", "0.286"}, {"normalise_std", "0.353"}});
    const auto r = run_lab("--checkpoint '" + bad.string() + "' --out '" + out.string() + "'");
    CHECK(r.code == 1);
    CHECK(r.output.find("backbone.conv0.weight") != std::string::npos);
    CHECK(r.output.find("classifier.bias") != std::string::npos);
    fs::remove(bad);
  }
  SUBCASE("table naming an unknown layer, or a ratio outside [0, 1]") {
    const fs::path table = fresh_dir("table.txt");
    std::ofstream(table) << "backbone.conv1.weight 0.5\nbackbone.conv9.weight 0.5\n";
    auto r = run_lab("--table '" + table.string() + "' --out '" + out.string() + "'");
    CHECK(r.code == 1);
    CHECK(r.output.find("unknown layer 'backbone.conv9.weight'") != std::string::npos);
    std::ofstream(table) << "backbone.conv1.weight 1.5\n";
    r = run_lab("--table '" + table.string() + "' --out '" + out.string() + "'");
    CHECK(r.code == 1);
    CHECK(r.output.find("not a number in [0, 1]") != std::string::npos);
    fs::remove(table);
  }
  SUBCASE("an existing run folder is never overwritten") {
    fs::create_directories(out);
    const auto r = run_lab("--out '" + out.string() + "'");
    CHECK(r.code == 2);
    CHECK(r.output.find("exists") != std::string::npos);
  }
  SUBCASE("bad option") {
    CHECK(run_lab("--epochs x").code == 2);
    CHECK(run_lab("--frobnicate").code == 2);
    const auto r = run_lab("--resnet-streams keep");
    CHECK(r.code == 2);
    CHECK(r.output.find("prune or freeze") != std::string::npos);
    for (const char* bad : {"--resnet-floor 16", "--resnet-floor 0,0.25", "--resnet-floor 16,1", "--resnet-lambda -1",
                            "--resnet-lr 0", "--resnet-tune-lr -0.1"}) {
      CAPTURE(bad);
      const auto b = run_lab(bad);
      CHECK(b.code == 2);
      CHECK(b.output.find(std::string(bad).substr(0, std::string(bad).find(' '))) != std::string::npos);
    }
  }
  CHECK((!fs::exists(out) || fs::is_empty(out)));  // nothing was written
  fs::remove_all(out);
}

namespace {

int check_run(const fs::path& dir) {
  int failures = 0;
  const auto fail = [&](const std::string& what) {
    std::fprintf(stderr, "smoke run check: %s\n", what.c_str());
    ++failures;
  };
  for (const char* f : {"results.csv", "summary.md", "report.html", "sensitivity.csv", "fine_grained_table.txt"})
    if (!fs::is_regular_file(dir / f) || fs::file_size(dir / f) == 0) fail(std::string("missing ") + f);
  const std::string csv = read(dir / "results.csv");
  const std::string header =
      "stage,variant,accuracy_before_ft,accuracy_after_ft,params,nonzero_params,size_nonzero_mib,size_stored_mib,"
      "macs_dense,macs_effective,latency_b1_ms,latency_b64_ms,speedup_b1,speedup_b64,checkpoint\n";
  if (csv.rfind(header, 0) != 0) fail("results.csv does not start with the documented header");
  std::size_t lines = 0;
  for (char c : csv) lines += c == '\n';
  // 11 VGG rows, then slimming-resnet's dense, 50% and 90% rows (its checkpoints: resnet/).
  if (lines != 1 + 14) fail("results.csv has " + std::to_string(lines - 1) + " rows, expected 14");
  std::istringstream rows(csv);
  std::string line;
  std::getline(rows, line);
  while (std::getline(rows, line)) {
    std::size_t commas = 0;
    bool quoted = false;
    for (char c : line) {
      if (c == '"') quoted = !quoted;
      commas += c == ',' && !quoted;
    }
    if (commas != 14) fail("row with " + std::to_string(commas + 1) + " fields: " + line);
  }
  const std::string summary = read(dir / "summary.md");
  if (summary.find("identical accuracy") == std::string::npos || summary.find("ACCURACY DIFFERS") != std::string::npos ||
      summary.find("ABOVE") != std::string::npos)
    fail("sparse inference did not agree with the dense forward");
  for (const char* given : {"lambda 0.0002", "per-group minimum 8 channels and 30%", "cosine from lr 0.04", "cosine from lr 0.03"})
    if (summary.find(given) == std::string::npos) fail(std::string("summary.md lacks '") + given + "' (a --resnet-* flag not applied)");
  std::size_t checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    ++checkpoints;
    try {
      const auto meta = train::read_safetensors_metadata(e.path());
      const auto stored = train::read_safetensors(e.path());  // any safetensors reader
      std::vector<std::size_t> channels;
      std::stringstream ch(meta.at("channels"));
      for (std::string c; std::getline(ch, c, ',');) channels.push_back(std::stoul(c));
      train::vgg m(train::vgg_config{0, 1, 10, channels});
      lab::load_into(e.path(), lab::all_tensors(m));  // the training library's names and shapes
      if (stored.size() != lab::all_tensors(m).size()) fail(e.path().string() + ": tensor count");
      if (channels == train::vgg_channels(0.125)) {
        train::vgg v;
        lab::load_into(e.path(), lab::all_tensors(v));
      }
    } catch (const std::exception& x) {
      fail(e.path().string() + " does not reload: " + x.what());
    }
  }
  if (checkpoints != 11) fail(std::to_string(checkpoints) + " checkpoints, expected 11");
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0)
    for (const char* p : {"dense_histograms", "sensitivity", "fine_grained_histograms", "slimming_gamma", "gradual"})
      if (!fs::is_regular_file(dir / "plots" / (std::string(p) + ".png"))) fail(std::string("missing plot ") + p);
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().string().find(".tmp") != std::string::npos) fail("temporary file left: " + e.path().string());
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--smoke-run") {
    const fs::path dir = argv[2];
    fs::remove_all(dir);
    // slimming-resnet's knobs away from their defaults, so check_run sees them arrive.
    const result r = run_lab("--smoke --resnet-lambda 2e-4 --resnet-floor 8,0.3 --resnet-lr 0.04 --resnet-tune-lr 0.03 --out '" +
                             dir.string() + "'");
    std::fputs(r.output.c_str(), stdout);
    if (r.code == 77) return 77;
    if (r.code != 0) {
      std::fprintf(stderr, "prune_lab --smoke exited with %d\n", r.code);
      return 1;
    }
    const int failures = check_run(dir);
    if (failures == 0) std::printf("smoke run check: every output present and consistent\n");
    return failures == 0 ? 0 : 1;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
