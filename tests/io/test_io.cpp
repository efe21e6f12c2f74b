// The opt-in I/O layer: CSV fields and numbers, the atomic fsync-and-rename write, and the
// streaming atomic_writer in both of its buffering modes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "spruce/io/atomic_file.hpp"
#include "spruce/io/atomic_writer.hpp"
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

TEST_CASE("atomic_writer: direct and page-cache writes give the same bytes for any length and any split") {
  using spruce::io::atomic_writer;
  temp_dir dir;
  constexpr std::size_t block = atomic_writer::staging_bytes;
  std::mt19937_64 rng(7);
  // Lengths around the O_DIRECT alignment and the staging buffers' size (the last block is
  // padded and the file cut back; a stream that ends exactly on a block has nothing to pad).
  // The last length goes round the ring of staging buffers once more (each buffer reused).
  constexpr std::size_t ring = atomic_writer::staging_count * block;
  const std::size_t lengths[] = {0, 1, 4095, 4096, 4097, block - 1, block, block + 1, 2 * block, 3 * block + 12345,
                                 ring + block + 777};
  for (const std::size_t n : lengths) {
    std::string bytes(n, '\0');
    for (std::size_t i = 0; i < n; i += 8) {
      const std::uint64_t r = rng();
      std::memcpy(bytes.data() + i, &r, std::min<std::size_t>(8, n - i));
    }
    if (n > 0) bytes[n - 1] = '\0';  // a zero last byte: the cut must keep it, not only the nonzero ones
    // Page cache, direct, and direct with every other piece filled in place
    // (staging_space() + advance()).
    for (const int variant : {0, 1, 2}) {
      const auto mode = variant == 0 ? atomic_writer::buffering::page_cache : atomic_writer::buffering::direct;
      CAPTURE(n);
      CAPTURE(variant);
      const fs::path file = dir.path / "out.bin";
      atomic_writer w(file, "the test file", 0, mode);
      if (mode == atomic_writer::buffering::page_cache) CHECK((!w.direct() && w.staging_space().empty()));
      // Pieces of random length, from 1 byte to 3 MiB, so writes straddle the staging blocks.
      for (std::size_t at = 0, k = 0; at < n; ++k) {
        std::size_t piece = std::min<std::size_t>(n - at, 1 + rng() % (std::size_t{3} << 20));
        if (variant == 2 && k % 2 == 1) {
          const std::span<std::byte> space = w.staging_space();
          REQUIRE_FALSE(space.empty());
          REQUIRE(space.size() <= block);
          piece = std::min(piece, space.size());
          std::memcpy(space.data(), bytes.data() + at, piece);
          w.advance(piece);
        } else {
          w.write(std::string_view(bytes).substr(at, piece));
        }
        at += piece;
      }
      CHECK(w.written() == n);
      w.commit();
      CHECK(read(file) == bytes);
      CHECK(dir.entries() == std::vector<std::string>{"out.bin"});
    }
  }
  // automatic: direct from the size hint on, page cache below it.
  {
    atomic_writer small(dir.path / "small.bin", "the test file", atomic_writer::direct_min_bytes - 1);
    CHECK_FALSE(small.direct());
  }
  CHECK(dir.entries() == std::vector<std::string>{"out.bin"});
}

TEST_CASE("atomic_writer: advance() past the staging space, or on a writer that does not stage, throws and writes nothing") {
  using spruce::io::atomic_writer;
  temp_dir dir;
  const fs::path file = dir.path / "out.bin";
  atomic_writer p(file, "the test file", 0, atomic_writer::buffering::page_cache);
  CHECK(p.staging_space().empty());
  CHECK_THROWS_AS(p.advance(1), spruce::error);
  CHECK(p.written() == 0);

  atomic_writer w(dir.path / "direct.bin", "the test file", 0, atomic_writer::buffering::direct);
  w.write(std::string_view("abc"));
  const std::span<std::byte> space = w.staging_space();
  CHECK(space.size() == atomic_writer::staging_bytes - 3);
  CHECK_THROWS_WITH_AS(w.advance(space.size() + 1), doctest::Contains("past its staging_space()"), spruce::error);
  CHECK(w.written() == 3);
  std::memcpy(space.data(), "de", 2);
  w.advance(2);
  CHECK(w.staging_space().size() == atomic_writer::staging_bytes - 5);
  w.commit();
  CHECK(read(dir.path / "direct.bin") == "abcde");
  CHECK(w.staging_space().empty());
  CHECK_THROWS_AS(w.advance(0), spruce::error);
}

TEST_CASE("atomic_writer: a direct writer destroyed or moved mid-stream leaves the old file and no temporary") {
  using spruce::io::atomic_writer;
  temp_dir dir;
  const fs::path file = dir.path / "model.bin";
  spruce::io::write_file_atomically(file, "old\n");
  const std::string big(2 * atomic_writer::staging_bytes + 100, 'x');  // two blocks in flight at the end
  {
    atomic_writer w(file, "the model", big.size(), atomic_writer::buffering::direct);
    w.write(big);
    CHECK(dir.entries().size() == 2);  // the temporary exists while it is written
  }  // destroyed without commit
  CHECK(dir.entries() == std::vector<std::string>{"model.bin"});
  CHECK(read(file) == "old\n");

  atomic_writer a(file, "the model", big.size(), atomic_writer::buffering::direct);
  a.write(std::string_view(big).substr(0, atomic_writer::staging_bytes + 7));
  atomic_writer b(std::move(a));
  CHECK_THROWS_AS(a.write(std::string_view("x")), spruce::error);  // the moved-from writer refuses
  b.write(std::string_view(big).substr(atomic_writer::staging_bytes + 7));
  b.commit();
  CHECK(read(file) == big);
  CHECK_THROWS_AS(b.write(std::string_view("x")), spruce::error);  // after commit
  CHECK(dir.entries() == std::vector<std::string>{"model.bin"});
}
