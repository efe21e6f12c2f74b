#include "train/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <type_traits>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"

namespace train {
namespace {

using spruce::error;

std::string quoted(const std::filesystem::path& p) {
  return std::string("'").append(p.string()).append("'");
}

// Exact byte / 255 for every byte value: a table keeps the conversion a load per pixel and
// bit-identical to the division.
const std::array<float, 256>& byte_to_unit() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(i) / 255.0f;
    return t;
  }();
  return table;
}

// n * m with overflow reported as an error about `what`.
std::size_t checked_mul(std::size_t a, std::size_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
    throw error(what + " is too large to hold in memory; the header is probably corrupt");
  return a * b;
}

void check_consistent(const dataset& d, const char* who) {
  const std::size_t isz = d.c * d.h * d.w;
  if (d.images.size() != d.n * isz || d.labels.size() != d.n)
    throw error(std::string(who)
                    .append(": the dataset is inconsistent (n=")
                    .append(std::to_string(d.n))
                    .append(", c*h*w=")
                    .append(std::to_string(isz))
                    .append(", ")
                    .append(std::to_string(d.images.size()))
                    .append(" floats, ")
                    .append(std::to_string(d.labels.size()))
                    .append(" labels); keep images.size() == n*c*h*w and labels.size() == n"));
}

// ---------------------------------------------------------------------------------------
// IDX files through zlib's gz* interface, which reads gzip and raw files alike.

struct gz_closer {
  void operator()(gzFile f) const { gzclose(f); }
};
using gz_ptr = std::unique_ptr<std::remove_pointer_t<gzFile>, gz_closer>;

class idx_reader {
 public:
  explicit idx_reader(const std::filesystem::path& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
      throw error(std::string("IDX file ")
                      .append(quoted(path))
                      .append(" does not exist or is not a regular file; "
                              "check the path"));
    file_.reset(gzopen(path.c_str(), "rb"));
    if (!file_)
      throw error(std::string("cannot open IDX file ")
                      .append(quoted(path))
                      .append(": ")
                      .append(std::strerror(errno))
                      .append("; check its permissions"));
    gzbuffer(file_.get(), 1u << 18);
  }

  // Reads exactly `len` bytes or throws, naming what was being read.
  void read_exact(unsigned char* dst, std::size_t len, const char* what) {
    while (len > 0) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(len, 1u << 24));
      const int got = gzread(file_.get(), dst, chunk);
      if (got <= 0) fail_short(what);
      dst += got;
      len -= static_cast<std::size_t>(got);
    }
  }

  // Big-endian 32-bit word of the header.
  std::uint32_t read_u32(const char* what) {
    unsigned char b[4];
    read_exact(b, 4, what);
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
           b[3];
  }

  // After the payload: the file must end here.
  void expect_end() {
    unsigned char extra;
    const int got = gzread(file_.get(), &extra, 1);
    if (got > 0)
      throw error(
          std::string("IDX file ")
              .append(quoted(path_))
              .append(" has bytes after the data its header describes; the file is corrupt or "
                      "not an IDX file (download it again)"));
    // zlib reports a gzip stream cut inside its trailer (CRC, length) only as a soft
    // Z_BUF_ERROR beside a normal end of data, so ask for the stream's state explicitly.
    int code = Z_OK;
    gzerror(file_.get(), &code);
    if (got < 0 || code != Z_OK) fail_short("the end of the file");
  }

  // Size check up front for raw files (exact message, no large read before failing).
  void check_raw_size(std::uint64_t expected) {
    if (!gzdirect(file_.get())) return;
    std::error_code ec;
    const auto actual = std::filesystem::file_size(path_, ec);
    if (ec || actual == expected) return;
    throw error(std::string("IDX file ")
                    .append(quoted(path_))
                    .append(" is ")
                    .append(std::to_string(actual))
                    .append(" bytes but its header describes ")
                    .append(std::to_string(expected))
                    .append(actual < expected ? " (truncated" : " (trailing bytes")
                    .append("); download the file again"));
  }

  const std::filesystem::path& path() const { return path_; }

 private:
  [[noreturn]] void fail_short(const char* what) {
    int code = Z_OK;
    const char* msg = gzerror(file_.get(), &code);
    std::string detail =
        (code != Z_OK && msg && *msg) ? std::string(" (zlib: ").append(msg).append(")") : "";
    throw error(std::string("IDX file ")
                    .append(quoted(path_))
                    .append(" ends early or is corrupt while reading ")
                    .append(what)
                    .append(detail)
                    .append("; the file is truncated or damaged, download it again"));
  }

  std::filesystem::path path_;
  gz_ptr file_;
};

void check_magic(idx_reader& r, std::uint32_t magic, std::uint32_t expected, const char* kind) {
  if (magic == expected) return;
  std::string hint;
  if (magic == 0x00000801u || magic == 0x00000803u)
    hint = "; it looks like the other kind of IDX file (are the image and label paths swapped?)";
  char got[16], want[16];
  std::snprintf(got, sizeof got, "0x%08x", static_cast<unsigned>(magic));
  std::snprintf(want, sizeof want, "0x%08x", static_cast<unsigned>(expected));
  throw error(std::string("IDX ")
                  .append(kind)
                  .append(" file ")
                  .append(quoted(r.path()))
                  .append(" has magic ")
                  .append(got)
                  .append(", expected ")
                  .append(want)
                  .append(hint.empty() ? "; it is not an IDX file of this kind" : hint));
}

}  // namespace

std::filesystem::path default_fashion_mnist_dir() {
  if (const char* env = std::getenv("SPRUCE_FASHION_MNIST_DIR"); env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

dataset read_idx(const std::filesystem::path& images, const std::filesystem::path& labels,
                 std::size_t num_classes) {
  if (num_classes == 0 || num_classes > 256)
    throw error(std::string("read_idx: num_classes ")
                    .append(std::to_string(num_classes))
                    .append(" is outside [1, 256]; IDX labels are bytes"));

  // Labels first: small, and a bad pair fails before 47 MB of pixels are read.
  idx_reader lr(labels);
  check_magic(lr, lr.read_u32("the label header"), 0x00000801u, "label");
  const std::size_t n_labels = lr.read_u32("the label count");
  lr.check_raw_size(8 + std::uint64_t{n_labels});

  idx_reader ir(images);
  check_magic(ir, ir.read_u32("the image header"), 0x00000803u, "image");
  const std::size_t n = ir.read_u32("the image count");
  const std::size_t rows = ir.read_u32("the row count");
  const std::size_t cols = ir.read_u32("the column count");
  if (n == 0 || rows == 0 || cols == 0)
    throw error(std::string("IDX image file ")
                    .append(quoted(images))
                    .append(" declares an empty shape ")
                    .append(std::to_string(n))
                    .append(" x ")
                    .append(std::to_string(rows))
                    .append(" x ")
                    .append(std::to_string(cols))
                    .append("; the file is corrupt"));
  if (n != n_labels)
    throw error(
        std::string("IDX image file ")
            .append(quoted(images))
            .append(" holds ")
            .append(std::to_string(n))
            .append(" images but label file ")
            .append(quoted(labels))
            .append(" holds ")
            .append(std::to_string(n_labels))
            .append(" labels; pass the matching pair (train-* with train-*, t10k-* with t10k-*)"));
  const std::size_t image_bytes = checked_mul(rows, cols, "the IDX image size");
  const std::size_t total = checked_mul(n, image_bytes, "the IDX image data");
  ir.check_raw_size(16 + std::uint64_t{total});

  dataset d;
  d.n = n;
  d.c = 1;
  d.h = rows;
  d.w = cols;

  // Payloads are read in chunks into storage that grows with the data actually read, so a
  // header that lies about its size fails on the short read instead of on a huge allocation.
  constexpr std::size_t chunk = std::size_t{1} << 20;
  std::vector<unsigned char> raw(std::min(chunk, std::max(n, total)));
  d.labels.reserve(std::min(n, chunk));
  for (std::size_t done = 0; done < n;) {
    const std::size_t len = std::min(chunk, n - done);
    lr.read_exact(raw.data(), len, "the labels");
    for (std::size_t i = 0; i < len; ++i) {
      if (raw[i] >= num_classes)
        throw error(
            std::string("IDX label file ")
                .append(quoted(labels))
                .append(": label ")
                .append(std::to_string(raw[i]))
                .append(" of image ")
                .append(std::to_string(done + i))
                .append(" is not below ")
                .append(std::to_string(num_classes))
                .append(" classes; the file is corrupt or has more classes (pass num_classes)"));
      d.labels.push_back(raw[i]);
    }
    done += len;
  }
  lr.expect_end();

  const auto& unit = byte_to_unit();
  d.images.reserve(std::min(total, std::size_t{1} << 26));
  for (std::size_t done = 0; done < total;) {
    const std::size_t len = std::min(chunk, total - done);
    ir.read_exact(raw.data(), len, "the pixels");
    const std::size_t base = d.images.size();
    d.images.resize(base + len);
    float* dst = d.images.data() + base;
    for (std::size_t i = 0; i < len; ++i) dst[i] = unit[raw[i]];
    done += len;
  }
  ir.expect_end();
  return d;
}

dataset read_idx(const std::filesystem::path& images, const std::filesystem::path& labels) {
  return read_idx(images, labels, 10);
}

dataset load_fashion_mnist(const std::filesystem::path& dir, split s) {
  const std::string prefix = s == split::train ? "train" : "t10k";
  auto find = [&](const std::string& stem) {
    const std::filesystem::path gz = dir / (stem + ".gz");
    const std::filesystem::path plain = dir / stem;
    std::error_code ec;
    if (std::filesystem::is_regular_file(gz, ec)) return gz;
    if (std::filesystem::is_regular_file(plain, ec)) return plain;
    throw error(
        std::string("Fashion-MNIST file ")
            .append(quoted(gz))
            .append(" (or ")
            .append(quoted(plain))
            .append(") was not found. Install the Debian package dataset-fashion-mnist "
                    "(sudo apt-get install dataset-fashion-mnist, or scripts/setup.sh --demo), "
                    "or set SPRUCE_FASHION_MNIST_DIR to a directory holding the four "
                    "*-idx?-ubyte[.gz] files"));
  };
  const auto images = find(prefix + "-images-idx3-ubyte");
  const auto labels = find(prefix + "-labels-idx1-ubyte");
  return read_idx(images, labels, 10);
}

dataset read_cifar10(const std::vector<std::filesystem::path>& batch_files) {
  constexpr std::size_t pixels = 3 * 32 * 32;
  constexpr std::size_t record = 1 + pixels;
  if (batch_files.empty())
    throw error(
        "read_cifar10: no batch files given; pass data_batch_1.bin ... data_batch_5.bin or "
        "test_batch.bin");

  // Validate every file's size before reading any, so a bad last file costs nothing.
  std::vector<std::size_t> records;
  std::size_t n = 0;
  for (const auto& p : batch_files) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec))
      throw error(std::string("CIFAR-10 batch ")
                      .append(quoted(p))
                      .append(" does not exist or is not a regular file; check the path"));
    const auto size = std::filesystem::file_size(p, ec);
    if (ec)
      throw error(std::string("cannot read the size of CIFAR-10 batch ")
                      .append(quoted(p))
                      .append(": ")
                      .append(ec.message()));
    if (size == 0 || size % record != 0)
      throw error(
          std::string("CIFAR-10 batch ")
              .append(quoted(p))
              .append(" is ")
              .append(std::to_string(size))
              .append(" bytes, not a non-zero multiple of the 3073-byte record; it is truncated or "
                      "not the binary version (use cifar-10-binary.tar.gz)"));
    records.push_back(static_cast<std::size_t>(size / record));
    n += records.back();
  }

  dataset d;
  d.n = n;
  d.c = 3;
  d.h = 32;
  d.w = 32;
  d.images.resize(checked_mul(n, pixels, "the CIFAR-10 data"));
  d.labels.resize(n);
  const auto& unit = byte_to_unit();
  std::vector<unsigned char> buf;
  std::size_t at = 0;
  for (std::size_t f = 0; f < batch_files.size(); ++f) {
    std::ifstream in(batch_files[f], std::ios::binary);
    buf.resize(records[f] * record);
    if (!in ||
        !in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size())))
      throw error(std::string("cannot read CIFAR-10 batch ")
                      .append(quoted(batch_files[f]))
                      .append(" (it changed or is unreadable); check the file"));
    for (std::size_t r = 0; r < records[f]; ++r, ++at) {
      const unsigned char* rec = buf.data() + r * record;
      if (rec[0] >= 10)
        throw error(std::string("CIFAR-10 batch ")
                        .append(quoted(batch_files[f]))
                        .append(": record ")
                        .append(std::to_string(r))
                        .append(" has label ")
                        .append(std::to_string(rec[0]))
                        .append(", not below 10; this is not a CIFAR-10 binary batch (CIFAR-100 "
                                "has 2 label bytes)"));
      d.labels[at] = rec[0];
      float* dst = d.images.data() + at * pixels;
      for (std::size_t i = 0; i < pixels; ++i) dst[i] = unit[rec[1 + i]];
    }
  }
  return d;
}

channel_stats compute_channel_stats(const dataset& data) {
  check_consistent(data, "compute_channel_stats");
  const std::size_t plane = data.h * data.w;
  if (data.n == 0 || plane == 0 || data.c == 0)
    throw error("compute_channel_stats: the dataset is empty; load data first");
  const double count = static_cast<double>(data.n) * static_cast<double>(plane);
  channel_stats s;
  s.mean.resize(data.c);
  s.stddev.resize(data.c);
  for (std::size_t ch = 0; ch < data.c; ++ch) {
    double sum = 0;
    for (std::size_t i = 0; i < data.n; ++i) {
      const float* p = data.images.data() + (i * data.c + ch) * plane;
      double row = 0;  // per-plane partial keeps the running sum's magnitude small
      for (std::size_t k = 0; k < plane; ++k) row += p[k];
      sum += row;
    }
    const double mean = sum / count;
    double sq = 0;
    for (std::size_t i = 0; i < data.n; ++i) {
      const float* p = data.images.data() + (i * data.c + ch) * plane;
      double row = 0;
      for (std::size_t k = 0; k < plane; ++k) {
        const double dlt = p[k] - mean;
        row += dlt * dlt;
      }
      sq += row;
    }
    s.mean[ch] = static_cast<float>(mean);
    s.stddev[ch] = static_cast<float>(std::sqrt(sq / count));
  }
  return s;
}

void normalise(dataset& data, const channel_stats& stats) {
  check_consistent(data, "normalise");
  if (stats.mean.size() != data.c || stats.stddev.size() != data.c)
    throw error(std::string("normalise: the stats have ")
                    .append(std::to_string(stats.mean.size()))
                    .append(" means and ")
                    .append(std::to_string(stats.stddev.size()))
                    .append(" stddevs for a dataset of ")
                    .append(std::to_string(data.c))
                    .append(" channels; compute them from a dataset with the same channels"));
  for (std::size_t ch = 0; ch < data.c; ++ch)
    if (!(stats.stddev[ch] > 0) || !std::isfinite(stats.stddev[ch]) ||
        !std::isfinite(stats.mean[ch]))
      throw error(
          std::string("normalise: channel ")
              .append(std::to_string(ch))
              .append(" has mean ")
              .append(std::to_string(stats.mean[ch]))
              .append(" and stddev ")
              .append(std::to_string(stats.stddev[ch]))
              .append("; the stddev must be a positive finite number (a constant channel cannot be "
                      "standardised: use stddev 1 for it)"));
  const std::size_t plane = data.h * data.w;
  for (std::size_t i = 0; i < data.n; ++i)
    for (std::size_t ch = 0; ch < data.c; ++ch) {
      float* p = data.images.data() + (i * data.c + ch) * plane;
      const float m = stats.mean[ch], sd = stats.stddev[ch];
      for (std::size_t k = 0; k < plane; ++k) p[k] = (p[k] - m) / sd;
    }
}

// ---------------------------------------------------------------------------------------
// Batch loader. The random streams are our own (splitmix64 and a rejection-sampled bounded
// draw) rather than <random>'s distributions, whose output differs between standard
// libraries: a seed must give the same epochs everywhere.

namespace {

using spruce::detail::mix64;

class splitmix {
 public:
  explicit splitmix(std::uint64_t state) : s_(state) {}
  std::uint64_t operator()() { return mix64(s_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in [0, bound), bound > 0, without modulo bias.
  std::uint64_t below(std::uint64_t bound) {
    const std::uint64_t reject_under = (0 - bound) % bound;  // 2^64 mod bound
    for (;;) {
      const std::uint64_t r = (*this)();
      if (r >= reject_under) return r % bound;
    }
  }

 private:
  std::uint64_t s_;
};

// Independent stream keys: one per (seed, epoch) for the order, one per (seed, epoch,
// index) for an image's augmentation.
std::uint64_t stream_key(std::uint64_t seed, std::uint64_t epoch, std::uint64_t index,
                         std::uint64_t tag) {
  return mix64(mix64(mix64(seed ^ tag) + epoch) + index);
}

}  // namespace

batch_loader::batch_loader(const dataset& data, std::size_t batch_size, bool shuffle,
                           std::uint64_t seed, augment aug, bool drop_last)
    : data_(&data),
      batch_size_(batch_size),
      shuffle_(shuffle),
      seed_(seed),
      aug_(aug),
      drop_last_(drop_last) {
  check_consistent(data, "batch_loader");
  if (batch_size == 0) throw error("batch_loader: batch size 0; use a batch size of at least 1");
  if (data.n == 0)
    throw error("batch_loader: the dataset is empty; load data before making a loader");
  if (batches_per_epoch() == 0)
    throw error(
        std::string("batch_loader: batch size ")
            .append(std::to_string(batch_size))
            .append(" with drop_last exceeds the ")
            .append(std::to_string(data.n))
            .append(
                " images, so an epoch would have no batch; lower the batch size or keep the last "
                "partial batch"));
  if (aug.pad > (std::size_t{1} << 16))
    throw error(
        std::string("batch_loader: augmentation pad ")
            .append(std::to_string(aug.pad))
            .append(" is absurdly large; use a pad of a few pixels (4 is usual for 32x32)"));
  order_.resize(data.n);
  start_epoch(0);
}

std::size_t batch_loader::batches_per_epoch() const {
  return drop_last_ ? data_->n / batch_size_ : (data_->n + batch_size_ - 1) / batch_size_;
}

void batch_loader::start_epoch(std::size_t epoch) {
  epoch_ = epoch;
  pos_ = 0;
  for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  if (!shuffle_) return;
  splitmix rng(stream_key(seed_, epoch, 0, 0x53485546464c45ULL));  // Fisher-Yates
  for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng.below(i)]);
}

bool batch_loader::next(batch& out) {
  const dataset& d = *data_;
  const std::size_t end = drop_last_ ? batches_per_epoch() * batch_size_ : d.n;
  if (pos_ >= end) return false;
  const std::size_t count = std::min(batch_size_, end - pos_);
  const std::size_t isz = d.image_size();
  const std::size_t plane = d.h * d.w;
  out.n = count;
  out.images.resize(count * isz);
  out.labels.resize(count);
  const bool augmenting = aug_.pad > 0 || aug_.flip;
  for (std::size_t b = 0; b < count; ++b) {
    const std::size_t idx = order_[pos_ + b];
    out.labels[b] = d.labels[idx];
    const float* src = d.images.data() + idx * isz;
    float* dst = out.images.data() + b * isz;
    if (!augmenting) {
      std::memcpy(dst, src, isz * sizeof(float));
      continue;
    }
    splitmix rng(stream_key(seed_, epoch_, idx, 0x4155474d454e54ULL));
    const std::size_t span = 2 * aug_.pad + 1;
    // Window origin in padded coordinates, shifted back into the image's: [-pad, pad].
    const auto dy =
        static_cast<std::ptrdiff_t>(rng.below(span)) - static_cast<std::ptrdiff_t>(aug_.pad);
    const auto dx =
        static_cast<std::ptrdiff_t>(rng.below(span)) - static_cast<std::ptrdiff_t>(aug_.pad);
    const bool flip = aug_.flip && (rng() >> 63) != 0;
    const auto H = static_cast<std::ptrdiff_t>(d.h), W = static_cast<std::ptrdiff_t>(d.w);
    // Output columns whose source column x + dx lies inside the image: [x0, x1).
    const std::ptrdiff_t x0 = std::clamp<std::ptrdiff_t>(-dx, 0, W);
    const std::ptrdiff_t x1 = std::clamp<std::ptrdiff_t>(W - dx, x0, W);
    for (std::size_t ch = 0; ch < d.c; ++ch) {
      const float* sp = src + ch * plane;
      float* dp = dst + ch * plane;
      for (std::ptrdiff_t y = 0; y < H; ++y) {
        float* row = dp + y * W;
        const std::ptrdiff_t sy = y + dy;
        if (sy < 0 || sy >= H || x0 == x1) {
          std::fill(row, row + W, 0.0f);
          continue;
        }
        const float* srow = sp + sy * W;
        if (!flip) {
          std::fill(row, row + x0, 0.0f);
          std::memcpy(row + x0, srow + x0 + dx, static_cast<std::size_t>(x1 - x0) * sizeof(float));
          std::fill(row + x1, row + W, 0.0f);
        } else {
          // Mirror of the cropped row, out[W-1-x] = cropped[x]: the padding lands at the
          // other ends, [0, W-x1) and [W-x0, W).
          std::fill(row, row + (W - x1), 0.0f);
          for (std::ptrdiff_t x = x0; x < x1; ++x) row[W - 1 - x] = srow[x + dx];
          std::fill(row + (W - x0), row + W, 0.0f);
        }
      }
    }
  }
  pos_ += count;
  return true;
}

dataset take_first(const dataset& data, std::size_t n) {
  check_consistent(data, "take_first");
  const std::size_t k = std::min(n, data.n);
  dataset out;
  out.n = k;
  out.c = data.c;
  out.h = data.h;
  out.w = data.w;
  out.images.assign(data.images.begin(),
                    data.images.begin() + static_cast<std::ptrdiff_t>(k * data.image_size()));
  out.labels.assign(data.labels.begin(), data.labels.begin() + static_cast<std::ptrdiff_t>(k));
  return out;
}

}  // namespace train
