// The opt-in I/O layer: CSV fields and numbers, the atomic fsync-and-rename write.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "spruce/io/atomic_file.hpp"
#include "spruce/io/csv.hpp"

namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("spruce_io_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(path)) v.push_back(e.path().filename().string());
    std::ranges::sort(v);
    return v;
  }
};

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("csv_field quotes exactly the fields that need it") {
  using spruce::io::csv_field;
  CHECK(csv_field("features.0.weight") == "features.0.weight");
  CHECK(csv_field("") == "");
  CHECK(csv_field("a,b") == "\"a,b\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_field("two\nlines") == "\"two\nlines\"");
  CHECK(csv_field("cr\r") == "\"cr\r\"");
  CHECK(csv_field(" lead") == "\" lead\"");
  CHECK(csv_field("trail ") == "\"trail \"");
  CHECK(csv_field("in side") == "in side");
}

TEST_CASE("csv_number round-trips every double") {
  using spruce::io::csv_number;
  CHECK(csv_number(0.5) == "0.5");
  CHECK(csv_number(0.1 + 0.2) == "0.30000000000000004");
  CHECK(csv_number(std::numeric_limits<double>::infinity()) == "inf");
  CHECK(csv_number(std::numeric_limits<double>::quiet_NaN()) == "nan");
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    const double x = std::uniform_real_distribution<double>(-1e10, 1e10)(rng) / double(i + 1);
    CHECK(std::stod(csv_number(x)) == x);
  }
}

TEST_CASE("write_file_atomically replaces the file whole and fails cleanly") {
  temp_dir dir;
  const fs::path file = dir.path / "out.txt";
  spruce::io::write_file_atomically(file, "first\n");
  CHECK(read(file) == "first\n");
  spruce::io::write_file_atomically(file, std::string(100000, 'x'), "the big file");
  CHECK(read(file) == std::string(100000, 'x'));
  spruce::io::write_file_atomically(file, "");
  CHECK(read(file).empty());
  CHECK(dir.entries() == std::vector<std::string>{"out.txt"});

  const fs::path missing = dir.path / "nope" / "x.txt";
  try {
    spruce::io::write_file_atomically(missing, "x", "the report");
    FAIL("no error");
  } catch (const spruce::error& e) {
    const std::string m = e.what();
    CHECK(m.find("the report") != std::string::npos);
    CHECK(m.find(missing.string()) != std::string::npos);
  }
  const fs::path taken = dir.path / "taken";
  fs::create_directory(taken);
  spruce::io::write_file_atomically(file, "kept\n");
  CHECK_THROWS_AS(spruce::io::write_file_atomically(taken, "x"), spruce::error);
  CHECK(dir.entries() == std::vector<std::string>{"out.txt", "taken"});
  CHECK(read(file) == "kept\n");
}
