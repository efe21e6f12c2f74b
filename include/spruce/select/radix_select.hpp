#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "spruce/core/parallel.hpp"

namespace spruce::select::detail {

/// Which key a selection found, with how many keys are strictly smaller and how many equal.
template <class Key>
struct key_info {
  Key key;
  std::size_t less;
  std::size_t equal;
};

/// One contiguous part of the sequence a selection runs over: elements [offset, offset + n)
/// of the (never materialised) concatenation, whose keys are src(0) .. src(n - 1), whose
/// mask bytes go to mask[0 .. n) (may be null when no mask is written), and whose name
/// appears in errors. One tensor is one segment; global scope is one per tensor.
template <class Src>
struct segment {
  std::size_t offset = 0;
  std::size_t n = 0;
  Src src{};
  std::uint8_t* mask = nullptr;
  std::string_view name{};
};

/// Reads keys from an array (the candidate buffers of the later radix levels).
template <class Key>
struct array_reader {
  const Key* p = nullptr;
  Key operator()(std::size_t i) const { return p[i]; }
};

template <class Src>
std::size_t total_size(std::span<const segment<Src>> segs) {
  return segs.empty() ? 0 : segs.back().offset + segs.back().n;
}

inline constexpr int radix_bits = 11;  // 2048 bins: 16 KiB of counters per thread, in L1
inline constexpr std::size_t radix_bins = std::size_t{1} << radix_bits;

/// Sets `out` to the histogram of the digit at `shift` over the keys whose bits under
/// `fixed` equal `prefix`, across every segment.
template <class Key, class Src>
void digit_histogram(std::span<const segment<Src>> segs, Key fixed, Key prefix, int shift,
                     std::array<std::size_t, radix_bins>& out) {
  const std::size_t chunks = static_cast<std::size_t>(max_threads());
  std::vector<std::size_t> h(chunks * radix_bins, 0);
  for (const auto& sg : segs) {
    const Src src = sg.src;
    parallel_chunks(sg.n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
      std::size_t* hc = h.data() + c * radix_bins;
      for (std::size_t i = b; i < e; ++i) {
        const Key k = src(i);
        if ((k & fixed) == prefix) ++hc[(k >> shift) & (radix_bins - 1)];
      }
    });
  }
  out.fill(0);
  for (std::size_t c = 0; c < chunks; ++c)
    for (std::size_t d = 0; d < radix_bins; ++d) out[d] += h[c * radix_bins + d];
}

/// Every key whose bits under `fixed` equal `prefix`, in segment and index order.
template <class Key, class Src>
std::vector<Key> collect_matching(std::span<const segment<Src>> segs, Key fixed, Key prefix,
                                  std::size_t expected) {
  const std::size_t chunks = static_cast<std::size_t>(max_threads());
  std::vector<Key> all;
  all.reserve(expected);
  std::vector<std::vector<Key>> part(chunks);
  for (const auto& sg : segs) {
    const Src src = sg.src;
    parallel_chunks(sg.n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
      auto& p = part[c];
      p.clear();
      for (std::size_t i = b; i < e; ++i) {
        const Key k = src(i);
        if ((k & fixed) == prefix) p.push_back(k);
      }
    });
    for (auto& p : part) {
      all.insert(all.end(), p.begin(), p.end());
      p.clear();
    }
  }
  return all;
}

/// MSD radix select: the key of 0-based rank `rank` among all keys of all segments, O(n)
/// for any distribution. Each level histograms one 11-bit digit of the keys that share the
/// prefix found so far; once the surviving bucket is small, its keys are copied out and the
/// remaining levels run on the copy. Requires rank < total size.
template <class Key, class Src>
key_info<Key> radix_select(std::span<const segment<Src>> segs, std::size_t rank) {
  constexpr int key_bits = static_cast<int>(sizeof(Key) * 8);
  const std::size_t n = total_size(segs);
  Key prefix = 0, fixed = 0;
  int done = 0;
  std::size_t less = 0;
  std::vector<Key> cand;
  bool on_cand = false;
  std::array<std::size_t, radix_bins> hist{};
  for (;;) {
    const int db = std::min(radix_bits, key_bits - done);
    const int shift = key_bits - done - db;
    if (on_cand) {
      const segment<array_reader<Key>> cs{0, cand.size(), {cand.data()}};
      digit_histogram<Key>(std::span<const segment<array_reader<Key>>>(&cs, 1), fixed, prefix, shift,
                           hist);
    } else {
      digit_histogram<Key>(segs, fixed, prefix, shift, hist);
    }
    std::size_t b = 0, acc = 0;
    while (acc + hist[b] <= rank) acc += hist[b++];
    less += acc;
    rank -= acc;
    prefix |= static_cast<Key>(static_cast<Key>(b) << shift);
    fixed |= static_cast<Key>(static_cast<Key>((std::size_t{1} << db) - 1) << shift);
    done += db;
    const std::size_t count = hist[b];
    if (done == key_bits) return {prefix, less, count};
    if (on_cand) {
      std::erase_if(cand, [&](Key k) { return (k & fixed) != prefix; });
    } else if (count <= n / 8) {
      cand = collect_matching<Key>(segs, fixed, prefix, count);
      on_cand = true;
    }
  }
}

}  // namespace spruce::select::detail
