#pragma once
// The activation container of the training library: a rank-4 NCHW array that owns its storage.

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace train {

/// An owning NCHW array (row-major, w fastest). Layers write their outputs into tensors the
/// caller keeps from batch to batch: `resize` to the same or a smaller size never
/// allocates, so a training loop allocates only in its first step. A matrix (a linear
/// layer's input or output) is a tensor with h = w = 1.
template <class T>
class tensor {
 public:
  tensor() = default;

  /// A zero-filled n x c x h x w tensor.
  tensor(std::size_t n, std::size_t c, std::size_t h = 1, std::size_t w = 1) { resize(n, c, h, w); }

  /// Sets the shape, keeping the capacity; the values are unspecified afterwards (new
  /// elements are zero, kept ones hold whatever was there), so callers overwrite them.
  void resize(std::size_t n, std::size_t c, std::size_t h = 1, std::size_t w = 1) {
    shape_ = {n, c, h, w};
    values_.resize(n * c * h * w);
  }

  std::size_t n() const noexcept { return shape_[0]; }
  std::size_t c() const noexcept { return shape_[1]; }
  std::size_t h() const noexcept { return shape_[2]; }
  std::size_t w() const noexcept { return shape_[3]; }
  /// Elements of one h x w plane (one channel of one sample).
  std::size_t plane() const noexcept { return shape_[2] * shape_[3]; }
  /// Elements of one sample (c x h x w): a linear layer's feature count.
  std::size_t sample() const noexcept { return shape_[1] * shape_[2] * shape_[3]; }
  std::size_t size() const noexcept { return values_.size(); }
  const std::array<std::size_t, 4>& shape() const noexcept { return shape_; }

  T* data() noexcept { return values_.data(); }
  const T* data() const noexcept { return values_.data(); }
  std::span<T> values() noexcept { return values_; }
  std::span<const T> values() const noexcept { return values_; }
  T& operator[](std::size_t i) noexcept { return values_[i]; }
  const T& operator[](std::size_t i) const noexcept { return values_[i]; }

  /// Element (n, c, y, x); unchecked, for tests and slow paths.
  T& at(std::size_t n, std::size_t c, std::size_t y, std::size_t x) noexcept {
    return values_[((n * shape_[1] + c) * shape_[2] + y) * shape_[3] + x];
  }
  const T& at(std::size_t n, std::size_t c, std::size_t y, std::size_t x) const noexcept {
    return values_[((n * shape_[1] + c) * shape_[2] + y) * shape_[3] + x];
  }

 private:
  std::array<std::size_t, 4> shape_{};
  std::vector<T> values_;
};

/// "[n, c, h, w]", for error messages.
inline std::string shape_text(const std::array<std::size_t, 4>& s) {
  std::string out("[");
  for (std::size_t i = 0; i < 4; ++i) out.append(i ? ", " : "").append(std::to_string(s[i]));
  return out.append("]");
}

}  // namespace train
