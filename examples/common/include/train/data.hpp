#pragma once

// Image data sets for the example training loops: Fashion-MNIST (IDX files, raw or gzip),
// CIFAR-10 (binary batches), per-channel normalisation, and a deterministic batch loader
// with the usual pad-crop-flip augmentation. Every reader validates the whole file against
// its header and throws spruce::error on anything it cannot trust.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

namespace train {

/// A labelled image data set held in memory: `images` is NCHW float with values in [0, 1]
/// (the stored byte divided by 255) until `normalise` is applied, `labels` one class index
/// per image. The readers keep `images.size() == n * image_size()` and `labels.size() == n`;
/// code that fills a dataset by hand must do the same (the loader and `normalise` check).
struct dataset {
  std::vector<float> images;
  std::vector<std::int32_t> labels;
  std::size_t n = 0, c = 0, h = 0, w = 0;
  /// Number of images.
  std::size_t size() const { return n; }
  /// Floats per image (c * h * w).
  std::size_t image_size() const { return c * h * w; }
};

/// Which half of a data set to read.
enum class split { train, test };

/// The Fashion-MNIST directory: `$SPRUCE_FASHION_MNIST_DIR` when it is set and not empty,
/// else `/usr/share/datasets/fashion-mnist` (where the Debian package
/// `dataset-fashion-mnist` installs it).
std::filesystem::path default_fashion_mnist_dir();

/// Reads the Fashion-MNIST `split` from `dir`: `train-images-idx3-ubyte.gz` and
/// `train-labels-idx1-ubyte.gz` (or `t10k-*` for the test split); the uncompressed names
/// (without `.gz`) are accepted too. A missing file throws spruce::error naming the path
/// that was looked at and how to install the data (`sudo apt-get install
/// dataset-fashion-mnist`, `scripts/setup.sh --demo`, or `SPRUCE_FASHION_MNIST_DIR`).
dataset load_fashion_mnist(const std::filesystem::path& dir, split s);

/// Reads an IDX image file (magic 0x00000803, dims n x rows x cols, unsigned bytes) and its
/// IDX label file (magic 0x00000801, dim n), each gzip-compressed or raw (detected from the
/// content, not the name). The result has c = 1, h = rows, w = cols. Both files must be
/// exactly as long as their headers say (a truncated file and trailing bytes are both
/// errors), the counts must agree, and every label must be below `num_classes`: MNIST-style
/// label files hold 10 classes, and a label the model has no output for would otherwise
/// only surface as an out-of-range index deep inside the loss.
dataset read_idx(const std::filesystem::path& images, const std::filesystem::path& labels,
                 std::size_t num_classes);

/// `read_idx(images, labels, 10)`: the MNIST / Fashion-MNIST label range.
dataset read_idx(const std::filesystem::path& images, const std::filesystem::path& labels);

/// Reads CIFAR-10 binary batches (`data_batch_1.bin` ... or `test_batch.bin`) in the given
/// order into one data set of 3 x 32 x 32 images. Each record is one label byte (< 10)
/// followed by 3072 pixel bytes: the red plane, then green, then blue, each row-major, so
/// the record is already CHW. Every file's size must be a non-zero multiple of 3073.
dataset read_cifar10(const std::vector<std::filesystem::path>& batch_files);

/// Per-channel mean and population standard deviation of a data set.
struct channel_stats {
  std::vector<float> mean, stddev;
};

/// Mean and population standard deviation of every channel over all images and pixels,
/// accumulated in double (two passes, so the variance does not cancel). Throws
/// spruce::error for an empty or inconsistent data set.
channel_stats compute_channel_stats(const dataset& data);

/// In place `(x - mean[ch]) / stddev[ch]` for every pixel. Throws spruce::error, changing
/// nothing, when the stats do not have one entry per channel or a stddev is not a positive
/// finite number (a constant channel cannot be standardised; drop it or use stddev 1).
void normalise(dataset& data, const channel_stats& stats);

/// Training-time augmentation: zero-pad each side by `pad` pixels then crop a random
/// h x w window (pad 0: no crop), and mirror left-right with probability 0.5 when `flip`.
/// The padding value is 0, which for a normalised data set is the channel mean.
struct augment {
  std::size_t pad = 0;
  bool flip = false;
};

/// One mini-batch: `n` images (NCHW, same c/h/w as the data set) and their labels.
struct batch {
  std::vector<float> images;
  std::vector<std::int32_t> labels;
  std::size_t n = 0;
};

/// Cuts a data set into mini-batches, optionally shuffled and augmented. The order of an
/// epoch depends only on (seed, epoch) and each image's augmentation only on (seed, epoch,
/// image index in the data set), so a run is reproducible whatever the batch size or the
/// number of threads. The loader keeps a pointer to `data`, which must outlive it and not
/// change size. The constructor prepares epoch 0, so `next` can be called at once.
class batch_loader {
 public:
  /// Throws spruce::error for a zero batch size, an inconsistent data set, or a setting that
  /// gives no batch at all (an empty data set, or `drop_last` with fewer images than one
  /// batch).
  batch_loader(const dataset& data, std::size_t batch_size, bool shuffle, std::uint64_t seed,
               augment aug = {}, bool drop_last = false);

  /// Batches one epoch yields: ceil(n / batch_size), or floor with `drop_last`.
  std::size_t batches_per_epoch() const;

  /// Rewinds to the first batch of `epoch`, reshuffling (when enabled) from (seed, epoch).
  void start_epoch(std::size_t epoch);

  /// Fills `out` with the next batch and returns true, or returns false at the end of the
  /// epoch. The last batch may be smaller unless `drop_last`. `out`'s vectors are resized,
  /// never shrunk in capacity, so after the first full batch nothing is allocated.
  bool next(batch& out);

 private:
  const dataset* data_;
  std::size_t batch_size_;
  bool shuffle_;
  std::uint64_t seed_;
  augment aug_;
  bool drop_last_;
  std::size_t epoch_ = 0;
  std::size_t pos_ = 0;  // index into order_ of the next image
  std::vector<std::size_t> order_;
};

/// A copy of the first min(n, data.size()) images and labels (a quick subset for smoke
/// runs; asking for more than there is gives the whole set).
dataset take_first(const dataset& data, std::size_t n);

}  // namespace train
