#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/elementwise.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/prune/mask.hpp"

namespace spruce {

namespace detail {

inline constexpr std::size_t word_bits = 64;

constexpr std::size_t word_count(std::size_t n) noexcept { return n / word_bits + (n % word_bits != 0); }

/// The word whose low `len` bits (1 to 64) are set: what "all kept" looks like, the tail
/// word included, because bits past the mask's size are always zero.
constexpr std::uint64_t low_bits(std::size_t len) noexcept {
  return len >= word_bits ? ~std::uint64_t{0} : (std::uint64_t{1} << len) - 1;
}

/// Bits 8g to 8g+7 of `w` as eight bytes, 1 where set: the bit is copied into every byte,
/// byte k keeps only bit k, and adding 0x7f carries a set bit into each byte's top bit
/// without crossing into the next byte. Endian-neutral: byte k is (result >> 8k) & 0xff.
constexpr std::uint64_t spread_byte(std::uint64_t w, unsigned g) noexcept {
  const std::uint64_t x = (((w >> (8 * g)) & 0xffu) * 0x0101010101010101u) & 0x8040201008040201u;
  return ((x + 0x7f7f7f7f7f7f7f7fu) >> 7) & 0x0101010101010101u;
}

/// A word as 64 bytes (0 or 1) in `out`. Byte-wide work vectorises where a shift and test
/// per bit does not, which makes applying a mixed word as fast as applying a byte mask.
inline void expand_word(std::uint64_t w, std::uint8_t* out) noexcept {
  for (unsigned g = 0; g < 8; ++g) {
    const std::uint64_t x = spread_byte(w, g);
    for (unsigned k = 0; k < 8; ++k) out[8 * g + k] = static_cast<std::uint8_t>(x >> (8 * k));
  }
}

/// Eight mask bytes (each 0 or 1) as eight bits, byte k to bit k: the multiply moves byte
/// k's bit to bit 56 + k, every partial product at a distinct position so nothing carries.
inline std::uint64_t gather_byte(const std::uint8_t* in) noexcept {
  std::uint64_t x = 0;
  for (unsigned k = 0; k < 8; ++k) x |= std::uint64_t{in[k]} << (8 * k);
  return (x * 0x0102040810204080u) >> 56;
}

/// Below this many words a pass over a bit mask stays on the calling thread; the same
/// element count as parallel_threshold.
inline constexpr std::size_t parallel_words = parallel_threshold / word_bits;

}  // namespace detail

/// A keep mask packed one bit per weight: bit i % 64 of word i / 64 is flat row-major
/// element i (1 = keep), and bits past the last element are zero, so equal masks have
/// equal words. It is the byte `mask` at an eighth of the memory, for registries that hold
/// masks for every layer of a large model across a whole fine-tuning run. Applying it
/// skips all-kept words and fills all-pruned ones; a mixed word is first expanded to bytes
/// in registers, which keeps it close to a byte mask's speed (within a few tens of percent
/// on finely mixed masks, faster on blocky ones) at the cost of that extra step.
class bit_mask {
 public:
  using word_type = std::uint64_t;

  bit_mask() = default;

  /// A mask of `shape` that keeps everything (`keep` true) or prunes everything.
  explicit bit_mask(std::span<const std::size_t> shape, bool keep = true) : bit_mask(shape, sized{}) {
    if (keep && size_ != 0) {
      std::fill(words_.begin(), words_.end(), ~word_type{0});
      words_.back() = detail::low_bits(size_ - (words_.size() - 1) * detail::word_bits);
    }
  }

  /// Adopts packed `words` (from words() of a mask of the same shape, e.g. read back from
  /// a file). Throws spruce::error when the word count disagrees with the shape or a bit
  /// past the last element is set, since either means the words belong to another mask.
  bit_mask(std::span<const std::size_t> shape, std::vector<word_type> words) : bit_mask(shape, sized{}) {
    if (words.size() != words_.size())
      throw error("bit mask words: " + std::to_string(words.size()) + " given for shape " +
                  shape_string(shape) + ", which needs " + std::to_string(words_.size()) +
                  " (one 64-bit word per 64 elements, rounded up)");
    if (!words.empty() && (words.back() & ~detail::low_bits(size_ - (words.size() - 1) * detail::word_bits)))
      throw error("bit mask for shape " + shape_string(shape) + " has bits set past element " +
                  std::to_string(size_) + "; the unused tail bits of the last word must be zero");
    words_ = std::move(words);
  }

  /// Packs a byte mask; bit_mask(m).to_bytes() == m.
  explicit bit_mask(const mask& m) : bit_mask(m.shape(), sized{}) {
    const std::uint8_t* src = m.data();
    word_type* dst = words_.data();
    const std::size_t n = size_;
    parallel_chunks(words_.size(), [=](std::size_t, std::size_t, std::size_t b, std::size_t e) {
      for (std::size_t k = b; k < e; ++k) {
        const std::size_t base = k * detail::word_bits, len = std::min(detail::word_bits, n - base);
        word_type w = 0;
        if (len == detail::word_bits) {
          for (unsigned g = 0; g < 8; ++g) w |= detail::gather_byte(src + base + 8 * g) << (8 * g);
        } else {
          for (std::size_t j = 0; j < len; ++j) w |= word_type{src[base + j]} << j;
        }
        dst[k] = w;
      }
    }, detail::parallel_words);
  }

  /// Unpacks into a byte mask of the same shape, for APIs that take one.
  mask to_bytes() const {
    byte_buffer out(size_);
    std::uint8_t* dst = out.data();
    const word_type* src = words_.data();
    const std::size_t n = size_;
    parallel_chunks(words_.size(), [=](std::size_t, std::size_t, std::size_t b, std::size_t e) {
      for (std::size_t k = b; k < e; ++k) {
        const std::size_t base = k * detail::word_bits, len = std::min(detail::word_bits, n - base);
        if (len == detail::word_bits) {
          detail::expand_word(src[k], dst + base);
        } else {
          std::uint8_t tail[detail::word_bits];
          detail::expand_word(src[k], tail);
          std::copy_n(tail, len, dst + base);
        }
      }
    }, detail::parallel_words);
    return mask(shape(), std::move(out));
  }

  std::span<const std::size_t> shape() const noexcept { return {shape_.data(), rank_}; }
  std::size_t rank() const noexcept { return rank_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// The packed words; words().size_bytes() is the mask's memory footprint.
  std::span<const word_type> words() const noexcept { return words_; }

  /// Whether flat element `i` is kept. Throws spruce::error when i is out of range.
  bool test(std::size_t i) const {
    if (i >= size_)
      throw error("bit mask index " + std::to_string(i) + " is out of range for a mask of " +
                  std::to_string(size_) + " elements");
    return (words_[i / detail::word_bits] >> (i % detail::word_bits)) & 1u;
  }

  std::size_t count_kept() const noexcept {
    std::size_t c = 0;
    for (word_type w : words_) c += static_cast<std::size_t>(std::popcount(w));
    return c;
  }
  std::size_t count_pruned() const noexcept { return size_ - count_kept(); }
  /// Fraction of pruned elements (0 for an empty mask).
  double sparsity() const noexcept {
    return empty() ? 0.0 : static_cast<double>(count_pruned()) / static_cast<double>(size_);
  }

  friend bool operator==(const bit_mask& a, const bit_mask& b) {
    return std::ranges::equal(a.shape(), b.shape()) && a.words_ == b.words_;
  }

 private:
  struct sized {};
  bit_mask(std::span<const std::size_t> shape, sized) : rank_(shape.size()) {
    if (rank_ > max_rank)
      throw error("mask rank " + std::to_string(rank_) + " exceeds " + std::to_string(max_rank) +
                  "; spruce tensors have rank 1 to 8 (reshape the tensor)");
    std::copy(shape.begin(), shape.end(), shape_.begin());
    size_ = shape.empty() ? 0 : 1;
    for (std::size_t e : shape) size_ *= e;
    words_.assign(detail::word_count(size_), 0);
  }

  std::array<std::size_t, max_rank> shape_{};
  std::size_t rank_ = 0;
  std::size_t size_ = 0;
  std::vector<word_type> words_;
};

namespace detail {

/// w = keep bit ? w : +0, `keep` packed as in bit_mask. Shapes are the caller's to check.
/// Threads split the words, so every chunk starts on a 64-element boundary and no word is
/// shared; the contiguous path touches memory only where something is pruned.
template <class T>
void apply_keep_bits(const tensor_ref<T>& w, const std::uint64_t* keep) {
  const std::size_t n = w.size(), words = word_count(n);
  if (w.is_contiguous()) {
    T* p = w.data();
    parallel_chunks(words, [p, keep, n](std::size_t, std::size_t, std::size_t b, std::size_t e) {
      for (std::size_t k = b; k < e; ++k) {
        const std::size_t base = k * word_bits, len = std::min(word_bits, n - base);
        const std::uint64_t bits = keep[k];
        T* q = p + base;
        if (bits == low_bits(len)) continue;
        if (bits == 0) {
          std::fill_n(q, len, T(0));
          continue;
        }
        std::uint8_t keep8[word_bits];
        expand_word(bits, keep8);
        if (len == word_bits) {
          for (std::size_t j = 0; j < word_bits; ++j) q[j] = keep8[j] ? q[j] : T(0);
        } else {
          for (std::size_t j = 0; j < len; ++j) q[j] = keep8[j] ? q[j] : T(0);
        }
      }
    }, parallel_words);
    return;
  }
  parallel_chunks(words, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
    for_each_run(w, b * word_bits, std::min(e * word_bits, n),
                 [&](std::size_t flat, T* q, std::size_t s, std::size_t len) {
      for (std::size_t i = 0; i < len; ++i)
        if (!((keep[(flat + i) / word_bits] >> ((flat + i) % word_bits)) & 1u)) q[i * s] = T(0);
    });
  }, parallel_words);
}

}  // namespace detail

/// Zeroes the elements of `w` whose mask bit is 0 (sets them to +0), exactly as
/// apply_mask with the equivalent byte mask does; `w` may be any host view, strided
/// included. Throws spruce::error, leaving `w` untouched, when the shapes differ.
template <host_view V>
void apply_mask(const V& w, const bit_mask& m, const std::string& name = {}) {
  static_assert(mutable_view<V>, "spruce::apply_mask writes to the tensor: pass a mutable view");
  const auto r = to_ref(w);
  detail::check_same_shape<view_value_t<V>, std::uint64_t>(r, m.shape(), "bit mask", name);
  detail::apply_keep_bits(r, m.words().data());
}

}  // namespace spruce
