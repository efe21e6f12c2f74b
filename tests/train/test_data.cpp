// Data readers and the batch loader of the example training library (train/data.hpp): IDX
// (raw and gzip) and CIFAR-10 files generated here, corrupt and truncated variants of them,
// the real Fashion-MNIST files when installed, normalisation and the loader's guarantees.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "train/data.hpp"

#include "io_support.hpp"

namespace fs = std::filesystem;

namespace {

using test_support::contains;
using test_support::error_of;

// One fresh directory per test, named after this file.
struct temp_dir : test_support::temp_dir {
  temp_dir() : test_support::temp_dir("data") {}
};

using bytes = std::vector<unsigned char>;

void put_be32(bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
}

bytes idx_images(std::uint32_t n, std::uint32_t rows, std::uint32_t cols,
                 std::uint32_t magic = 0x803) {
  bytes b;
  put_be32(b, magic);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  for (std::uint32_t i = 0; i < n * rows * cols; ++i)
    b.push_back(static_cast<unsigned char>((i * 37 + 11) % 256));
  return b;
}

bytes idx_labels(std::uint32_t n, std::uint32_t magic = 0x801) {
  bytes b;
  put_be32(b, magic);
  put_be32(b, n);
  for (std::uint32_t i = 0; i < n; ++i) b.push_back(static_cast<unsigned char>((i * 3) % 10));
  return b;
}

void write_raw(const fs::path& p, const bytes& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(out.good());
}

void write_gz(const fs::path& p, const bytes& b) {
  gzFile f = gzopen(p.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

// A data set whose image i holds distinct values identifying (i, pixel): lets the loader
// tests recover which image and which shift produced an output.
train::dataset indexed_dataset(std::size_t n, std::size_t c, std::size_t h, std::size_t w) {
  train::dataset d;
  d.n = n;
  d.c = c;
  d.h = h;
  d.w = w;
  d.images.resize(n * c * h * w);
  for (std::size_t i = 0; i < d.images.size(); ++i) d.images[i] = static_cast<float>(i + 1);
  for (std::size_t i = 0; i < n; ++i) d.labels.push_back(static_cast<std::int32_t>(i % 10));
  return d;
}

// Which image of `d` (made by indexed_dataset) the unaugmented output `img` is.
std::size_t image_index(const train::dataset& d, const float* img) {
  return static_cast<std::size_t>(img[0] - 1) / d.image_size();
}

}  // namespace

TEST_CASE("read_idx: raw and gzip files round-trip bytes to byte / 255") {
  temp_dir dir;
  const bytes img = idx_images(5, 4, 3), lab = idx_labels(5);
  write_raw(dir / "img", img);
  write_raw(dir / "lab", lab);
  write_gz(dir / "img.gz", img);
  write_gz(dir / "lab.gz", lab);
  for (const auto& [ip, lp] :
       {std::pair{dir / "img", dir / "lab"}, std::pair{dir / "img.gz", dir / "lab.gz"},
        std::pair{dir / "img.gz", dir / "lab"}}) {
    const train::dataset d = train::read_idx(ip, lp);
    CHECK(d.size() == 5);
    CHECK(d.c == 1);
    CHECK(d.h == 4);
    CHECK(d.w == 3);
    CHECK(d.image_size() == 12);
    REQUIRE(d.images.size() == 60);
    REQUIRE(d.labels.size() == 5);
    for (std::size_t i = 0; i < 60; ++i)
      CHECK(d.images[i] == static_cast<float>(img[16 + i]) / 255.0f);
    for (std::size_t i = 0; i < 5; ++i) CHECK(d.labels[i] == lab[8 + i]);
  }
}

TEST_CASE("read_idx: truncated, padded, mismatched and mislabelled files are errors") {
  temp_dir dir;
  const bytes img = idx_images(6, 5, 4), lab = idx_labels(6);
  write_raw(dir / "img", img);
  write_raw(dir / "lab", lab);
  write_gz(dir / "img.gz", img);
  write_gz(dir / "lab.gz", lab);

  SUBCASE("truncated image file, raw and gzip") {
    const bytes cut(img.begin(), img.end() - 7);
    write_raw(dir / "cut", cut);
    write_gz(dir / "cut.gz", cut);
    CHECK(contains(error_of([&] { train::read_idx(dir / "cut", dir / "lab"); }), "truncated"));
    CHECK(contains(error_of([&] { train::read_idx(dir / "cut.gz", dir / "lab"); }), "ends early"));
    const bytes header_only(img.begin(), img.begin() + 10);  // cut inside the header
    write_raw(dir / "short", header_only);
    CHECK(contains(error_of([&] { train::read_idx(dir / "short", dir / "lab"); }), "ends early"));
  }
  SUBCASE("truncated label file, raw and gzip") {
    const bytes cut(lab.begin(), lab.end() - 1);
    write_raw(dir / "cut", cut);
    write_gz(dir / "cut.gz", cut);
    CHECK(contains(error_of([&] { train::read_idx(dir / "img", dir / "cut"); }), "truncated"));
    CHECK(contains(error_of([&] { train::read_idx(dir / "img", dir / "cut.gz"); }), "ends early"));
  }
  SUBCASE("trailing bytes, raw and gzip") {
    bytes longer = img;
    longer.push_back(0);
    write_raw(dir / "long", longer);
    write_gz(dir / "long.gz", longer);
    CHECK(contains(error_of([&] { train::read_idx(dir / "long", dir / "lab"); }), "trailing"));
    CHECK(
        contains(error_of([&] { train::read_idx(dir / "long.gz", dir / "lab"); }), "bytes after"));
    bytes lab_longer = lab;
    lab_longer.push_back(1);
    write_gz(dir / "lablong.gz", lab_longer);
    CHECK(contains(error_of([&] { train::read_idx(dir / "img", dir / "lablong.gz"); }),
                   "bytes after"));
  }
  SUBCASE("truncated and corrupted gzip streams") {
    const bytes gz = test_support::read_file<bytes::value_type>(dir / "img.gz");
    for (const std::size_t keep : {gz.size() / 2, gz.size() - 4, gz.size() - 1, std::size_t{5}}) {
      write_raw(dir / "half.gz", bytes(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(keep)));
      CAPTURE(keep);
      CHECK_THROWS_AS(train::read_idx(dir / "half.gz", dir / "lab"), spruce::error);
    }
    bytes flipped = gz;
    flipped[flipped.size() - 6] ^= 0xFF;  // inside the CRC-32 trailer
    write_raw(dir / "crc.gz", flipped);
    CHECK_THROWS_AS(train::read_idx(dir / "crc.gz", dir / "lab"), spruce::error);
  }
  SUBCASE("wrong magic, including swapped files") {
    write_raw(dir / "bad", idx_images(6, 5, 4, 0x0803 + 0x100));
    CHECK(contains(error_of([&] { train::read_idx(dir / "bad", dir / "lab"); }), "magic"));
    CHECK(contains(error_of([&] { train::read_idx(dir / "lab", dir / "img"); }), "swapped"));
    write_raw(dir / "badlab", idx_labels(6, 0x0901));
    CHECK(contains(error_of([&] { train::read_idx(dir / "img", dir / "badlab"); }), "magic"));
  }
  SUBCASE("count mismatch") {
    write_raw(dir / "lab7", idx_labels(7));
    const std::string msg = error_of([&] { train::read_idx(dir / "img", dir / "lab7"); });
    CHECK(contains(msg, "6 images"));
    CHECK(contains(msg, "7 labels"));
  }
  SUBCASE("empty shape and absurd header sizes") {
    write_raw(dir / "zero", idx_images(6, 0, 4));
    CHECK_THROWS_AS(train::read_idx(dir / "zero", dir / "lab"), spruce::error);
    // A header claiming 2^32-1 images of 65535 x 65535 must fail on the size, not allocate.
    bytes huge;
    put_be32(huge, 0x803);
    put_be32(huge, 0xFFFFFFFFu);
    put_be32(huge, 0xFFFFu);
    put_be32(huge, 0xFFFFu);
    huge.resize(huge.size() + 100, 1);
    bytes huge_lab;
    put_be32(huge_lab, 0x801);
    put_be32(huge_lab, 0xFFFFFFFFu);
    write_gz(dir / "huge.gz", huge);
    write_raw(dir / "huge", huge);
    write_raw(dir / "hugelab", huge_lab);
    CHECK_THROWS_AS(train::read_idx(dir / "huge.gz", dir / "lab"),
                    spruce::error);  // count mismatch first
    CHECK_THROWS_AS(train::read_idx(dir / "huge", dir / "hugelab"),
                    spruce::error);  // raw label size check
  }
  SUBCASE("labels must be below the class count") {
    bytes eleven = lab;
    eleven[8 + 3] = 10;
    write_raw(dir / "lab10", eleven);
    const std::string msg = error_of([&] { train::read_idx(dir / "img", dir / "lab10"); });
    CHECK(contains(msg, "label 10"));
    CHECK(contains(msg, "image 3"));
    const train::dataset d = train::read_idx(dir / "img", dir / "lab10", 11);
    CHECK(d.labels[3] == 10);
    CHECK_THROWS_AS(train::read_idx(dir / "img", dir / "lab", 0), spruce::error);
  }
  SUBCASE("missing file") {
    CHECK(contains(error_of([&] { train::read_idx(dir / "nope", dir / "lab"); }), "nope"));
    CHECK_THROWS_AS(train::read_idx(dir.path, dir / "lab"), spruce::error);  // a directory
  }
}

TEST_CASE("load_fashion_mnist: file names, uncompressed fallback, missing data message") {
  temp_dir dir;
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_images(4, 28, 28));
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_labels(4));
  write_raw(dir / "t10k-images-idx3-ubyte", idx_images(2, 28, 28));
  write_raw(dir / "t10k-labels-idx1-ubyte", idx_labels(2));
  CHECK(train::load_fashion_mnist(dir.path, train::split::train).size() == 4);
  CHECK(train::load_fashion_mnist(dir.path, train::split::test).size() == 2);

  temp_dir empty;
  const std::string msg =
      error_of([&] { train::load_fashion_mnist(empty.path, train::split::train); });
  CHECK(contains(msg, "dataset-fashion-mnist"));
  CHECK(contains(msg, "sudo apt-get install dataset-fashion-mnist"));
  CHECK(contains(msg, "scripts/setup.sh --demo"));
  CHECK(contains(msg, "SPRUCE_FASHION_MNIST_DIR"));
  CHECK(contains(msg, (empty.path / "train-images-idx3-ubyte.gz").string()));
  CHECK(contains(
      error_of([&] { train::load_fashion_mnist(empty.path / "absent", train::split::test); }),
      (empty.path / "absent" / "t10k-images-idx3-ubyte.gz").string()));
}

TEST_CASE("default_fashion_mnist_dir honours SPRUCE_FASHION_MNIST_DIR") {
  const char* old = std::getenv("SPRUCE_FASHION_MNIST_DIR");
  const std::string saved = old ? old : "";
  ::setenv("SPRUCE_FASHION_MNIST_DIR", "/tmp/some/where", 1);
  CHECK(train::default_fashion_mnist_dir() == fs::path("/tmp/some/where"));
  ::setenv("SPRUCE_FASHION_MNIST_DIR", "", 1);
  CHECK(train::default_fashion_mnist_dir() == fs::path("/usr/share/datasets/fashion-mnist"));
  ::unsetenv("SPRUCE_FASHION_MNIST_DIR");
  CHECK(train::default_fashion_mnist_dir() == fs::path("/usr/share/datasets/fashion-mnist"));
  if (old) ::setenv("SPRUCE_FASHION_MNIST_DIR", saved.c_str(), 1);
}

TEST_CASE("the installed Fashion-MNIST: counts, classes, pixel range") {
  const fs::path dir = train::default_fashion_mnist_dir();
  if (!fs::exists(dir / "train-images-idx3-ubyte.gz") &&
      !fs::exists(dir / "train-images-idx3-ubyte")) {
    MESSAGE("Fashion-MNIST not found in "
            << dir.string() << "; skipped (sudo apt-get install dataset-fashion-mnist to run it)");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const train::dataset tr = train::load_fashion_mnist(dir, train::split::train);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("loaded the Fashion-MNIST train split (60000 images) in " << secs << " s");
  const train::dataset te = train::load_fashion_mnist(dir, train::split::test);
  for (const auto* d : {&tr, &te}) {
    CHECK(d->c == 1);
    CHECK(d->h == 28);
    CHECK(d->w == 28);
    REQUIRE(d->images.size() == d->n * 784);
    const auto [lo, hi] = std::minmax_element(d->images.begin(), d->images.end());
    CHECK(*lo == 0.0f);
    CHECK(*hi == 1.0f);
    std::array<std::size_t, 10> hist{};
    for (const auto l : d->labels) {
      REQUIRE(l >= 0);
      REQUIRE(l < 10);
      ++hist[static_cast<std::size_t>(l)];
    }
    for (const auto count : hist) CHECK(count == d->n / 10);
  }
  CHECK(tr.size() == 60000);
  CHECK(te.size() == 10000);
  const train::channel_stats s = train::compute_channel_stats(tr);
  CHECK(s.mean[0] == doctest::Approx(0.2860).epsilon(0.001));  // the published statistics
  CHECK(s.stddev[0] == doctest::Approx(0.3530).epsilon(0.001));
}

TEST_CASE("read_cifar10: records, planes, concatenation and errors") {
  temp_dir dir;
  auto make = [](std::size_t records, unsigned char first_label) {
    bytes b;
    for (std::size_t r = 0; r < records; ++r) {
      b.push_back(static_cast<unsigned char>((first_label + r) % 10));
      for (std::size_t plane = 0; plane < 3; ++plane)  // R, G, B planes, each 32 x 32
        for (std::size_t i = 0; i < 1024; ++i)
          b.push_back(static_cast<unsigned char>((r * 50 + plane * 80 + i) % 256));
    }
    return b;
  };
  const bytes a = make(3, 7), b = make(2, 1);
  write_raw(dir / "a.bin", a);
  write_raw(dir / "b.bin", b);

  const train::dataset d = train::read_cifar10({dir / "a.bin"});
  CHECK(d.size() == 3);
  CHECK(d.c == 3);
  CHECK(d.h == 32);
  CHECK(d.w == 32);
  CHECK(d.labels == std::vector<std::int32_t>{7, 8, 9});
  REQUIRE(d.images.size() == 3 * 3072);
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t i = 0; i < 3072; ++i)
      REQUIRE(d.images[r * 3072 + i] == static_cast<float>(a[r * 3073 + 1 + i]) / 255.0f);
  // Channel 1 (green) of record 0, pixel (0, 5): plane 1 of the record.
  CHECK(d.images[1 * 1024 + 5] == static_cast<float>((80 + 5) % 256) / 255.0f);

  const train::dataset both = train::read_cifar10({dir / "a.bin", dir / "b.bin"});
  CHECK(both.size() == 5);
  CHECK(both.labels == std::vector<std::int32_t>{7, 8, 9, 1, 2});
  CHECK(std::equal(both.images.begin(), both.images.begin() + 3 * 3072, d.images.begin()));

  bytes cut(a.begin(), a.end() - 1);
  write_raw(dir / "cut.bin", cut);
  CHECK(contains(error_of([&] {
                   train::read_cifar10({dir / "a.bin", dir / "cut.bin"});
                 }),
                 "multiple of the 3073"));
  write_raw(dir / "empty.bin", {});
  CHECK_THROWS_AS(train::read_cifar10({dir / "empty.bin"}), spruce::error);
  bytes bad = a;
  bad[3073] = 10;  // record 1's label
  write_raw(dir / "bad.bin", bad);
  const std::string msg = error_of([&] { train::read_cifar10({dir / "bad.bin"}); });
  CHECK(contains(msg, "record 1"));
  CHECK(contains(msg, "label 10"));
  CHECK_THROWS_AS(train::read_cifar10({}), spruce::error);
  CHECK_THROWS_AS(train::read_cifar10({dir / "missing.bin"}), spruce::error);
}

TEST_CASE("compute_channel_stats and normalise") {
  train::dataset d;
  d.n = 200;
  d.c = 3;
  d.h = 5;
  d.w = 7;
  d.images.resize(d.n * d.image_size());
  d.labels.assign(d.n, 0);
  std::uint32_t state = 12345;
  for (std::size_t i = 0; i < d.n; ++i)
    for (std::size_t ch = 0; ch < 3; ++ch)
      for (std::size_t k = 0; k < 35; ++k) {
        state = state * 1664525u + 1013904223u;
        const float u = static_cast<float>(state >> 8) / 16777216.0f;
        d.images[(i * 3 + ch) * 35 + k] =
            0.1f + 0.3f * static_cast<float>(ch) + u * (0.05f + 0.2f * static_cast<float>(ch));
      }
  const train::channel_stats s = train::compute_channel_stats(d);
  REQUIRE(s.mean.size() == 3);
  for (std::size_t ch = 0; ch < 3; ++ch) {
    // Uniform on [a, a + w]: mean a + w/2, std w / sqrt(12).
    const double width = 0.05 + 0.2 * static_cast<double>(ch);
    CHECK(s.mean[ch] ==
          doctest::Approx(0.1 + 0.3 * static_cast<double>(ch) + width / 2).epsilon(0.01));
    CHECK(s.stddev[ch] == doctest::Approx(width / std::sqrt(12.0)).epsilon(0.03));
  }
  train::normalise(d, s);
  const train::channel_stats after = train::compute_channel_stats(d);
  for (std::size_t ch = 0; ch < 3; ++ch) {
    CHECK(std::abs(after.mean[ch]) < 1e-5);
    CHECK(after.stddev[ch] == doctest::Approx(1.0).epsilon(1e-5));
  }

  // Exact small case: values 0 and 1 in equal numbers: mean 0.5, population std 0.5.
  train::dataset two;
  two.n = 2;
  two.c = 1;
  two.h = 1;
  two.w = 2;
  two.images = {0, 1, 1, 0};
  two.labels = {0, 1};
  const auto st = train::compute_channel_stats(two);
  CHECK(st.mean[0] == 0.5f);
  CHECK(st.stddev[0] == 0.5f);

  const std::vector<float> before = d.images;
  CHECK_THROWS_AS(train::normalise(d, {{0, 0}, {1, 1}}), spruce::error);
  CHECK_THROWS_AS(train::normalise(d, {{0, 0, 0}, {1, 0, 1}}), spruce::error);
  CHECK_THROWS_AS(train::normalise(d, {{0, 0, 0}, {1, NAN, 1}}), spruce::error);
  CHECK(d.images == before);
  CHECK_THROWS_AS(train::compute_channel_stats(train::dataset{}), spruce::error);
  train::dataset broken = d;
  broken.images.pop_back();
  CHECK_THROWS_AS(train::compute_channel_stats(broken), spruce::error);
  CHECK_THROWS_AS(train::normalise(broken, s), spruce::error);
}

TEST_CASE("batch_loader: every image once per epoch, partial last batch, drop_last") {
  const train::dataset d = indexed_dataset(103, 2, 3, 4);
  for (const bool shuffle : {false, true})
    for (const bool drop_last : {false, true}) {
      CAPTURE(shuffle);
      CAPTURE(drop_last);
      train::batch_loader loader(d, 10, shuffle, 42, {}, drop_last);
      CHECK(loader.batches_per_epoch() == (drop_last ? 10u : 11u));
      for (std::size_t epoch = 0; epoch < 3; ++epoch) {
        loader.start_epoch(epoch);
        train::batch b;
        std::vector<std::size_t> seen;
        std::size_t batches = 0;
        while (loader.next(b)) {
          ++batches;
          CHECK(b.n == ((!drop_last && batches == 11) ? 3u : 10u));
          REQUIRE(b.images.size() == b.n * d.image_size());
          REQUIRE(b.labels.size() == b.n);
          for (std::size_t k = 0; k < b.n; ++k) {
            const std::size_t idx = image_index(d, b.images.data() + k * d.image_size());
            REQUIRE(idx < d.n);
            CHECK(
                std::equal(b.images.begin() + static_cast<std::ptrdiff_t>(k * d.image_size()),
                           b.images.begin() + static_cast<std::ptrdiff_t>((k + 1) * d.image_size()),
                           d.images.begin() + static_cast<std::ptrdiff_t>(idx * d.image_size())));
            CHECK(b.labels[k] == d.labels[idx]);
            seen.push_back(idx);
          }
        }
        CHECK(batches == loader.batches_per_epoch());
        CHECK_FALSE(loader.next(b));  // stays at the end
        CHECK(seen.size() == (drop_last ? 100u : 103u));
        CHECK(std::set<std::size_t>(seen.begin(), seen.end()).size() == seen.size());
        if (!shuffle) {
          for (std::size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == i);
        }
      }
    }
}

TEST_CASE("batch_loader: order depends only on (seed, epoch)") {
  const train::dataset d = indexed_dataset(50, 1, 2, 2);
  auto order = [&](std::uint64_t seed, std::size_t epoch, std::size_t bs) {
    train::batch_loader l(d, bs, true, seed);
    l.start_epoch(epoch);
    train::batch b;
    std::vector<std::size_t> out;
    while (l.next(b))
      for (std::size_t k = 0; k < b.n; ++k)
        out.push_back(image_index(d, b.images.data() + k * d.image_size()));
    return out;
  };
  const auto e0 = order(7, 0, 8), e1 = order(7, 1, 8);
  CHECK(e0 == order(7, 0, 8));
  CHECK(e0 == order(7, 0, 50));  // batch size does not change the order
  CHECK(e1 == order(7, 1, 3));
  CHECK(e0 != e1);
  CHECK(e0 != order(8, 0, 8));
  std::vector<std::size_t> identity(50);
  for (std::size_t i = 0; i < 50; ++i) identity[i] = i;
  CHECK(e0 != identity);

  // Re-running an epoch on the same loader replays it; the constructor prepares epoch 0.
  train::batch_loader l(d, 8, true, 7);
  train::batch b;
  REQUIRE(l.next(b));
  CHECK(image_index(d, b.images.data()) == e0[0]);
  l.start_epoch(1);
  l.start_epoch(0);
  REQUIRE(l.next(b));
  CHECK(image_index(d, b.images.data()) == e0[0]);
}

TEST_CASE("batch_loader: next() reuses the batch's storage") {
  const train::dataset d = indexed_dataset(25, 3, 4, 4);
  train::batch_loader l(d, 10, true, 1, {2, true});
  train::batch b;
  REQUIRE(l.next(b));
  const float* images = b.images.data();
  const std::int32_t* labels = b.labels.data();
  for (std::size_t epoch = 0; epoch < 3; ++epoch) {
    l.start_epoch(epoch);
    while (l.next(b)) {
      CHECK(b.images.data() == images);
      CHECK(b.labels.data() == labels);
    }
  }
}

TEST_CASE("batch_loader: augmentation") {
  const train::dataset d = indexed_dataset(60, 2, 5, 6);
  const std::size_t isz = d.image_size(), H = d.h, W = d.w;
  auto epoch_images = [&](train::augment aug, std::uint64_t seed, std::size_t epoch,
                          std::size_t bs) {
    train::batch_loader l(d, bs, false, seed, aug);
    l.start_epoch(epoch);
    train::batch b;
    std::vector<float> out;
    while (l.next(b)) out.insert(out.end(), b.images.begin(), b.images.end());
    return out;
  };

  SUBCASE("pad 0 without flip is the identity") {
    CHECK(epoch_images({0, false}, 3, 0, 7) == d.images);
  }

  SUBCASE("flip mirrors rows, about half of the time") {
    const auto out = epoch_images({0, true}, 3, 0, 7);
    REQUIRE(out.size() == d.images.size());
    std::size_t flipped = 0;
    for (std::size_t i = 0; i < d.n; ++i) {
      const float* o = out.data() + i * isz;
      const float* s = d.images.data() + i * isz;
      const bool same = std::equal(o, o + isz, s);
      bool mirrored = true;
      for (std::size_t ch = 0; ch < d.c; ++ch)
        for (std::size_t y = 0; y < H; ++y)
          for (std::size_t x = 0; x < W; ++x)
            mirrored = mirrored && o[(ch * H + y) * W + x] == s[(ch * H + y) * W + (W - 1 - x)];
      CHECK((same || mirrored));
      flipped += mirrored ? 1 : 0;
    }
    CHECK(flipped > 15);
    CHECK(flipped < 45);
  }

  SUBCASE("pad + crop keeps the shape and shifts by at most pad, zero-filled") {
    const std::size_t pad = 2;
    for (const bool flip : {false, true}) {
      CAPTURE(flip);
      const auto out = epoch_images({pad, flip}, 11, 0, 9);
      REQUIRE(out.size() == d.images.size());
      std::set<std::pair<long, long>> shifts;
      for (std::size_t i = 0; i < d.n; ++i) {
        const float* o = out.data() + i * isz;
        const float* s = d.images.data() + i * isz;
        bool matched = false;
        for (long dy = -2; dy <= 2 && !matched; ++dy)
          for (long dx = -2; dx <= 2 && !matched; ++dx)
            for (const bool mirror : {false, true}) {
              if (mirror && !flip) continue;
              bool ok = true;
              for (std::size_t ch = 0; ch < d.c && ok; ++ch)
                for (long y = 0; y < static_cast<long>(H) && ok; ++y)
                  for (long x = 0; x < static_cast<long>(W) && ok; ++x) {
                    // out = mirror? flip(crop) : crop, crop(y, x) = src(y + dy, x + dx) or 0
                    const long cx = mirror ? static_cast<long>(W) - 1 - x : x;
                    const long sy = y + dy, sx = cx + dx;
                    const bool inside = sy >= 0 && sy < static_cast<long>(H) && sx >= 0 &&
                                        sx < static_cast<long>(W);
                    const float want = inside ? s[(ch * H + static_cast<std::size_t>(sy)) * W +
                                                  static_cast<std::size_t>(sx)]
                                              : 0.0f;
                    ok = o[(ch * H + static_cast<std::size_t>(y)) * W +
                           static_cast<std::size_t>(x)] == want;
                  }
              if (ok) {
                matched = true;
                shifts.insert({dy, dx});
                break;
              }
            }
        CHECK(matched);
      }
      CHECK(shifts.size() > 8);  // 25 possible shifts over 60 images
    }
  }

  SUBCASE("deterministic per (seed, epoch, image), whatever the batch size") {
    const train::augment aug{3, true};
    const auto a = epoch_images(aug, 5, 2, 7);
    CHECK(a == epoch_images(aug, 5, 2, 60));
    CHECK(a != epoch_images(aug, 5, 3, 7));
    CHECK(a != epoch_images(aug, 6, 2, 7));
    // Shuffled: image i gets the same augmentation as without shuffling.
    train::batch_loader l(d, 13, true, 5, aug);
    l.start_epoch(2);
    train::batch b;
    std::size_t checked = 0;
    std::vector<bool> done(d.n, false);
    train::batch_loader plain(d, 13, true, 5);  // same order, no augmentation
    plain.start_epoch(2);
    train::batch pb;
    while (l.next(b)) {
      REQUIRE(plain.next(pb));
      for (std::size_t k = 0; k < b.n; ++k) {
        const std::size_t idx = image_index(d, pb.images.data() + k * isz);
        CHECK(std::equal(b.images.begin() + static_cast<std::ptrdiff_t>(k * isz),
                         b.images.begin() + static_cast<std::ptrdiff_t>((k + 1) * isz),
                         a.begin() + static_cast<std::ptrdiff_t>(idx * isz)));
        done[idx] = true;
        ++checked;
      }
    }
    CHECK(checked == d.n);
  }
}

TEST_CASE("batch_loader and take_first: argument checks") {
  const train::dataset d = indexed_dataset(5, 1, 2, 2);
  CHECK_THROWS_AS(train::batch_loader(d, 0, false, 0), spruce::error);
  CHECK_THROWS_AS(train::batch_loader(d, 6, false, 0, {}, true), spruce::error);
  CHECK(train::batch_loader(d, 6, false, 0).batches_per_epoch() == 1);
  CHECK_THROWS_AS(train::batch_loader(train::dataset{}, 4, false, 0), spruce::error);
  train::dataset broken = d;
  broken.labels.pop_back();
  CHECK_THROWS_AS(train::batch_loader(broken, 2, false, 0), spruce::error);

  const train::dataset first = train::take_first(d, 3);
  CHECK(first.size() == 3);
  CHECK(first.c == 1);
  CHECK(first.h == 2);
  CHECK(first.w == 2);
  CHECK(first.images == std::vector<float>(d.images.begin(), d.images.begin() + 12));
  CHECK(first.labels == std::vector<std::int32_t>(d.labels.begin(), d.labels.begin() + 3));
  CHECK(train::take_first(d, 100).images == d.images);
  CHECK(train::take_first(d, 0).size() == 0);
  CHECK_THROWS_AS(train::take_first(broken, 2), spruce::error);
}
