#pragma once

#include <algorithm>
#include <bit>
#include <cstring>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <ranges>
#include <span>
#include <string>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/select/key.hpp"
#include "spruce/select/radix_select.hpp"

namespace spruce::select {

/// The k-th smallest score, the number of scores strictly smaller and the number equal to
/// it. `less < k <= less + equal` always holds.
template <class T>
struct kth_result {
  T value;
  std::size_t less;
  std::size_t equal;
};

/// How scores equal to the selected one are treated.
///  - `all_equal`: every score equal to the count-th smallest is selected too (the MIT
///    lab's threshold rule; ties can select more than `count`).
///  - `lower_index`: exactly `count` scores are selected; among equal scores the lower flat
///    index goes first (torch leaves the order unspecified; spruce fixes it).
enum class tie_break { all_equal, lower_index };

namespace detail {

/// Below this size the sample-and-bracket pass does not pay for itself.
inline constexpr std::size_t bracket_min_size = std::size_t{1} << 16;

template <class O, class Src>
std::size_t first_invalid(std::size_t n, const Src& src) {
  std::size_t bad = 0;
  const std::size_t chunks = static_cast<std::size_t>(max_threads());
  std::vector<std::size_t> part(chunks, 0);
  parallel_chunks(n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
    std::size_t cnt = 0;
    for (std::size_t i = b; i < e; ++i) cnt += !valid_key<O>(src(i));
    part[c] = cnt;
  });
  for (std::size_t v : part) bad += v;
  if (bad == 0) return n;
  for (std::size_t i = 0; i < n; ++i)
    if (!valid_key<O>(src(i))) return i;
  return n;
}

[[noreturn]] inline void throw_nan(const std::string& name, std::size_t index) {
  throw error((name.empty() ? std::string("score") : "score of " + name) + " at flat index " +
              std::to_string(index) +
              " is NaN; NaN has no order, so nothing was selected or changed. Replace or "
              "drop NaN values (e.g. check for a diverged training step) before pruning");
}

template <class O, class Src>
void validate_scores(std::size_t n, const Src& src, const std::string& name) {
  if (const std::size_t i = first_invalid<O>(n, src); i != n) throw_nan(name, i);
}

/// Writes mask[i] = 0 for the selected (lowest) keys and 1 for the rest, given the
/// selected key's info. With `lower_index` and a tie that straddles the cut, the first
/// `count - less` equal keys (by index) are selected; blocks are counted first so that the
/// write pass can run in parallel and still honour index order.
template <class Key, class Src>
void write_mask(std::size_t n, const Src& src, const key_info<Key>& info, std::size_t count,
                tie_break ties, std::uint8_t* mask) {
  const Key t = info.key;
  if (ties == tie_break::all_equal || info.less + info.equal == count) {
    parallel_chunks(n, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) mask[i] = src(i) > t;
    });
    return;
  }
  const std::size_t need = count - info.less;  // equal keys to select, 0 < need < equal
  const std::size_t block = std::size_t{1} << 14;
  const std::size_t blocks = (n + block - 1) / block;
  std::vector<std::size_t> eq(blocks + 1, 0);
  parallel_for(0, blocks, [&](std::size_t bi) {
    const std::size_t b = bi * block, e = std::min(n, b + block);
    std::size_t c = 0;
    for (std::size_t i = b; i < e; ++i) c += src(i) == t;
    eq[bi + 1] = c;
  }, 2);
  for (std::size_t bi = 0; bi < blocks; ++bi) eq[bi + 1] += eq[bi];
  parallel_for(0, blocks, [&](std::size_t bi) {
    const std::size_t b = bi * block, e = std::min(n, b + block);
    std::size_t seen = eq[bi];
    for (std::size_t i = b; i < e; ++i) {
      const Key k = src(i);
      if (k == t) {
        mask[i] = seen >= need;
        ++seen;
      } else {
        mask[i] = k > t;
      }
    }
  }, 2);
}

template <class Key>
struct candidate {
  std::size_t index;
  Key key;
};

template <class Key>
struct chunk_state {
  std::size_t lt = 0, gt = 0, bad = 0;
  bool overflow = false;
  std::unique_ptr<candidate<Key>[]> cand;  // uninitialised storage, `used` entries valid
  std::size_t used = 0;
};

/// Picks a key interval [lo, hi] that very probably holds the key of rank `rank`, from an
/// evenly spread sample of contiguous runs (cache-friendly). Only speed depends on it:
/// the caller verifies the bracket with exact counts and falls back to radix select.
template <class O, class Src>
void sample_bracket(std::size_t n, const Src& src, std::size_t rank, typename O::key_type& lo,
                    typename O::key_type& hi, double& fraction) {
  using Key = typename O::key_type;
  // About n / 128 samples, at most 64 K: the bracket narrows as 1 / sqrt(samples) while
  // the two nth_element calls on the sample grow linearly, and this balances the two.
  constexpr std::size_t run = 32;
  const std::size_t runs = std::clamp<std::size_t>(n / (run * 128), 16, 2048);
  std::vector<Key> s;
  s.reserve(runs * run);
  // Stratified: one run at a pseudo-random offset inside each of `runs` equal strata, so
  // a periodic tensor (per-channel scales, repeated kernels) cannot alias with the sample
  // spacing. The offsets come from a fixed hash of the stratum: results are repeatable.
  const std::size_t stratum = n / runs;
  for (std::size_t j = 0; j < runs; ++j) {
    std::uint64_t h = (j + 1) * 0x9E3779B97F4A7C15ull;
    h = (h ^ (h >> 31)) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    const std::size_t start = j * stratum + static_cast<std::size_t>(h % (stratum - run + 1));
    for (std::size_t i = start; i < start + run; ++i) {
      const Key k = src(i);
      if (valid_key<O>(k)) s.push_back(k);
    }
  }
  lo = O::min_key;
  hi = O::max_key;
  fraction = 1.0;
  if (s.size() < 256) return;
  const double m = static_cast<double>(s.size());
  const double p = static_cast<double>(rank) / static_cast<double>(n);
  const double pos = p * m;
  const double d = 4.0 * std::sqrt(m * p * (1.0 - p)) + 8.0;
  const double lo_pos = std::floor(pos - d), hi_pos = std::ceil(pos + d);
  std::size_t lo_i = 0, hi_i = s.size() - 1;
  if (lo_pos >= 0.0) {
    lo_i = static_cast<std::size_t>(lo_pos);
    std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(lo_i), s.end());
    lo = s[lo_i];
  }
  if (hi_pos < m) {
    hi_i = static_cast<std::size_t>(hi_pos);
    std::nth_element(s.begin() + static_cast<std::ptrdiff_t>(lo_i),
                     s.begin() + static_cast<std::ptrdiff_t>(hi_i), s.end());
    hi = s[hi_i];
  }
  fraction = static_cast<double>(hi_i - lo_i + 1) / m;
}

struct bracket_counts {
  std::size_t lt, gt, bad;
};

/// Counts keys below, above and invalid relative to [lo, hi] over one short block, sets
/// flags[j] = 1 for keys inside the bracket, and, when asked, writes mask = key > hi.
/// Everything arrives by value and the outputs are restrict-qualified: byte stores may
/// alias anything, and without this the compiler reloads the bounds after every store and
/// gives up on vectorising.
template <class O, bool WriteMask, class Src>
inline bracket_counts scan_block(const Src src, const std::size_t i0, const std::size_t i1,
                                 const typename O::key_type lo, const typename O::key_type hi,
                                 std::uint8_t* __restrict mask, std::uint8_t* __restrict flags) {
  using Key = typename O::key_type;
  const Key width = static_cast<Key>(hi - lo);
  std::uint32_t lt = 0, gt = 0, bad = 0;
  for (std::size_t i = i0; i < i1; ++i) {
    const Key k = src(i);
    lt += k < lo;
    gt += k > hi;
    bad += !valid_key<O>(k);
    flags[i - i0] = static_cast<Key>(k - lo) <= width;
    if constexpr (WriteMask) mask[i] = k > hi;
  }
  return {lt, gt, bad};
}

/// Appends (index, key) for every set flag of a block, visiting eight flags per load: in-
/// bracket keys are rare, so most words are zero and the block costs a handful of loads.
template <class Key, class Src>
inline std::size_t collect_flagged(const Src src, const std::size_t i0, const std::size_t len,
                                   const std::uint8_t* flags, candidate<Key>* __restrict out) {
  std::size_t c = 0;
  for (std::size_t w = 0; w < len; w += 8) {
    std::uint64_t word;
    std::memcpy(&word, flags + w, 8);
    while (word) {
      const std::size_t j = w + static_cast<std::size_t>(std::countr_zero(word)) / 8;
      out[c++] = {i0 + j, src(i0 + j)};
      word &= word - 1;  // each flag byte is 0 or 1: this clears exactly that flag
    }
  }
  return c;
}

/// Selects the `count` lowest keys of src(0..n-1) (1 <= count <= n) and, when `mask` is
/// not null, writes the keep mask. Large inputs take one fused pass: a sampled bracket
/// [lo, hi] around the target rank is verified by exact counts while the mask is written
/// for every key outside it and the few keys inside it are set aside with their indices;
/// the answer is then found among those few. Heavy ties or an unlucky sample fall back to
/// radix select plus a mask pass. NaN scores are reported before anything is returned.
template <class O, class Src>
key_info<typename O::key_type> select_lowest(std::size_t n, const Src& src, std::size_t count,
                                             tie_break ties, std::uint8_t* mask,
                                             const std::string& name) {
  using Key = typename O::key_type;
  const std::size_t rank = count - 1;
  if (n < bracket_min_size) {
    validate_scores<O>(n, src, name);
    const auto info = radix_select<Key>(n, src, rank);
    if (mask) write_mask<Key>(n, src, info, count, ties, mask);
    return info;
  }

  Key lo, hi;
  double fraction;
  sample_bracket<O>(n, src, rank, lo, hi, fraction);
  const bool collect = lo != hi;
  const std::size_t chunks = static_cast<std::size_t>(max_threads());
  const double expected = fraction * static_cast<double>(n);
  const std::size_t cap_total = static_cast<std::size_t>(
      std::min(static_cast<double>(n), 2.0 * expected + 4096.0));
  std::vector<chunk_state<Key>> st(chunks);
  constexpr std::size_t blk = 64;

  parallel_chunks(n, [&](std::size_t c, std::size_t nc, std::size_t b, std::size_t e) {
    chunk_state<Key>& s = st[c];
    const std::size_t cap = std::min(cap_total / nc + 1024, e - b);
    if (collect) s.cand.reset(new candidate<Key>[cap + blk]);
    alignas(64) std::uint8_t flags[blk] = {};
    bracket_counts tot{};
    for (std::size_t i0 = b; i0 < e; i0 += blk) {
      const std::size_t i1 = std::min(e, i0 + blk);
      if (i1 - i0 < blk) std::fill(flags, flags + blk, std::uint8_t{0});
      const bracket_counts bc = mask ? scan_block<O, true>(src, i0, i1, lo, hi, mask, flags)
                                     : scan_block<O, false>(src, i0, i1, lo, hi, mask, flags);
      tot.lt += bc.lt;
      tot.gt += bc.gt;
      tot.bad += bc.bad;
      if (bc.lt + bc.gt == i1 - i0 || !collect || s.overflow) continue;
      // used <= cap here, so the cap + blk buffer has room for a whole block.
      s.used += collect_flagged<Key>(src, i0, blk, flags, s.cand.get() + s.used);
      s.overflow = s.used > cap;
    }
    s.lt = tot.lt;
    s.gt = tot.gt;
    s.bad = tot.bad;
  });

  std::size_t lt = 0, gt = 0, bad = 0;
  bool overflow = false;
  for (const auto& s : st) {
    lt += s.lt;
    gt += s.gt;
    bad += s.bad;
    overflow = overflow || s.overflow;
  }
  if (bad) throw_nan(name, first_invalid<O>(n, src));

  const std::size_t inside = n - lt - gt;
  const bool hit = lt <= rank && rank < lt + inside;
  if (hit && !collect) {  // every key in the bracket equals lo
    const key_info<Key> info{lo, lt, inside};
    if (mask && ties == tie_break::lower_index && lt + inside != count)
      write_mask<Key>(n, src, info, count, ties, mask);
    return info;
  }
  if (hit && !overflow) {
    std::vector<candidate<Key>> cand;
    cand.reserve(inside);
    for (auto& s : st) {
      cand.insert(cand.end(), s.cand.get(), s.cand.get() + s.used);
      s.cand.reset();
    }
    const auto sub = radix_select<Key>(
        cand.size(), [&](std::size_t i) { return cand[i].key; }, rank - lt);
    const key_info<Key> info{sub.key, lt + sub.less, sub.equal};
    if (mask) {
      const Key t = info.key;
      std::size_t need = count - info.less;  // equal keys still to select, in index order
      for (const auto& c : cand) {
        if (c.key == t && ties == tie_break::lower_index) {
          mask[c.index] = need == 0;
          if (need) --need;
        } else {
          mask[c.index] = c.key > t;
        }
      }
    }
    return info;
  }
  const auto info = radix_select<Key>(n, src, rank);
  if (mask) write_mask<Key>(n, src, info, count, ties, mask);
  return info;
}

template <class R>
using range_value = std::remove_cv_t<std::ranges::range_value_t<R>>;

}  // namespace detail

/// The k-th smallest score (1 <= k <= n, like torch.kthvalue) with the counts of smaller
/// and equal scores, in O(n) using every core. `Order` is `by_value` (scores as they are)
/// or `by_magnitude` (|score|, without computing it). Throws spruce::error for k out of
/// range or a NaN score (naming its index); +-inf are ordinary values and -0 == +0.
template <template <class> class Order = by_value, std::ranges::contiguous_range R>
  requires score_type<detail::range_value<R>>
kth_result<detail::range_value<R>> kth_smallest(const R& scores, std::size_t k,
                                                const std::string& name = {}) {
  using T = detail::range_value<R>;
  using O = Order<T>;
  const T* p = std::ranges::data(scores);
  const std::size_t n = std::ranges::size(scores);
  if (k == 0 || k > n)
    throw error("kth_smallest: k = " + std::to_string(k) + " is outside [1, " +
                std::to_string(n) + "]" + (name.empty() ? "" : " for " + name) +
                "; pass a 1-based rank no larger than the number of scores");
  const auto info = detail::select_lowest<O>(
      n, [p](std::size_t i) { return O::key(p[i]); }, k, tie_break::all_equal, nullptr, name);
  return {O::value(info.key), info.less, info.equal};
}

/// The keep mask of the `count` lowest scores (1 = keep, 0 = prune) in a new buffer, with
/// `ties` deciding scores equal to the count-th smallest; count == 0 keeps everything.
/// Throws spruce::error for a count larger than the number of scores or a NaN score.
template <template <class> class Order = by_value, std::ranges::contiguous_range R>
  requires score_type<detail::range_value<R>>
byte_buffer lowest_mask(const R& scores, std::size_t count, tie_break ties,
                        const std::string& name = {}) {
  using T = detail::range_value<R>;
  using O = Order<T>;
  const T* p = std::ranges::data(scores);
  const std::size_t n = std::ranges::size(scores);
  if (count > n)
    throw error("cannot select " + std::to_string(count) + " of the " + std::to_string(n) +
                " elements of " + (name.empty() ? std::string("scores") : name) +
                "; pass a count no larger than the element count");
  const auto src = [p](std::size_t i) { return O::key(p[i]); };
  if (count == 0) {
    detail::validate_scores<O>(n, src, name);
    return byte_buffer(n, 1);
  }
  byte_buffer mask(n);  // not zeroed: every byte is written below
  detail::select_lowest<O>(n, src, count, ties, mask.data(), name);
  return mask;
}

}  // namespace spruce::select
