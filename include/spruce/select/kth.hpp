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
#include <string_view>
#include <vector>

#include "spruce/core/byte_buffer.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/shape.hpp"
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

template <class O>
struct key_reader {
  const typename O::value_type* p = nullptr;
  typename O::key_type operator()(std::size_t i) const { return O::key(p[i]); }
};

[[noreturn]] inline void throw_nan(std::string_view name, std::size_t index) {
  throw error((name.empty() ? std::string("score") : "score of " + std::string(name)) +
              " at flat index " + std::to_string(index) +
              " is NaN; NaN has no order, so nothing was selected or changed. Replace or "
              "drop NaN values (e.g. check for a diverged training step) before pruning");
}

/// Throws for the first NaN key (by segment, then index), if any.
template <class O, class Src>
void validate_scores(std::span<const segment<Src>> segs) {
  for (const auto& sg : segs) {
    const Src src = sg.src;
    const std::size_t chunks = static_cast<std::size_t>(max_threads());
    std::vector<std::size_t> part(chunks, 0);
    parallel_chunks(sg.n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
      std::size_t cnt = 0;
      for (std::size_t i = b; i < e; ++i) cnt += !valid_key<O>(src(i));
      part[c] = cnt;
    });
    std::size_t bad = 0;
    for (std::size_t v : part) bad += v;
    if (bad)
      for (std::size_t i = 0; i < sg.n; ++i)
        if (!valid_key<O>(src(i))) throw_nan(sg.name, i);
  }
}

/// Writes mask = 1 for keys above the selected one and 0 below, for every segment. With
/// `lower_index` and a tie straddling the cut, the first `count - less` equal keys (by
/// segment, then index) are selected; blocks are counted first so the write pass can run
/// in parallel and still honour that order.
template <class Key, class Src>
void write_mask(std::span<const segment<Src>> segs, const key_info<Key>& info, std::size_t count,
                tie_break ties) {
  const Key t = info.key;
  if (ties == tie_break::all_equal || info.less + info.equal == count) {
    for (const auto& sg : segs) {
      const Src src = sg.src;
      std::uint8_t* __restrict m = sg.mask;
      parallel_chunks(sg.n, [&](std::size_t, std::size_t, std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) m[i] = src(i) > t;
      });
    }
    return;
  }
  const std::size_t need = count - info.less;  // equal keys to select, 0 < need < equal
  constexpr std::size_t block = std::size_t{1} << 14;
  struct span_block {
    std::size_t seg, b, e;
  };
  std::vector<span_block> blocks;
  for (std::size_t s = 0; s < segs.size(); ++s)
    for (std::size_t b = 0; b < segs[s].n; b += block) blocks.push_back({s, b, std::min(segs[s].n, b + block)});
  std::vector<std::size_t> eq(blocks.size() + 1, 0);
  parallel_for(0, blocks.size(), [&](std::size_t bi) {
    const auto& bl = blocks[bi];
    const Src src = segs[bl.seg].src;
    std::size_t c = 0;
    for (std::size_t i = bl.b; i < bl.e; ++i) c += src(i) == t;
    eq[bi + 1] = c;
  }, 2);
  for (std::size_t bi = 0; bi < blocks.size(); ++bi) eq[bi + 1] += eq[bi];
  parallel_for(0, blocks.size(), [&](std::size_t bi) {
    const auto& bl = blocks[bi];
    const Src src = segs[bl.seg].src;
    std::uint8_t* m = segs[bl.seg].mask;
    std::size_t seen = eq[bi];
    for (std::size_t i = bl.b; i < bl.e; ++i) {
      const Key k = src(i);
      if (k == t) {
        m[i] = seen >= need;
        ++seen;
      } else {
        m[i] = k > t;
      }
    }
  }, 2);
}

template <class Key>
struct candidate {
  std::size_t index;  // within its segment
  std::size_t seg;
  Key key;
};

/// One chunk's results. Chunks next to each other in the array run on different threads at
/// the same time: a cache line each, so that their writes do not contend.
template <class Key>
struct alignas(64) chunk_state {
  std::size_t lt = 0, gt = 0, bad = 0;
  bool overflow = false;
  std::unique_ptr<candidate<Key>[]> cand;  // uninitialised storage, `used` entries valid
  std::size_t used = 0;
};

/// Picks a key interval [lo, hi] that very probably holds the key of rank `rank`, from a
/// sample of contiguous runs. Only speed depends on it: the caller verifies the bracket
/// with exact counts and falls back to radix select.
template <class O, class Src>
void sample_bracket(std::span<const segment<Src>> segs, std::size_t rank, typename O::key_type& lo,
                    typename O::key_type& hi, double& fraction) {
  using Key = typename O::key_type;
  const std::size_t n = total_size(segs);
  // About 4 n^(2/3) samples, at most 64 K: the candidates inside the bracket shrink as
  // n / sqrt(samples) while the two nth_element calls on the sample grow linearly, and the
  // sum of the two is smallest near n^(2/3).
  constexpr std::size_t run = 32;
  const double target = 4.0 * std::cbrt(static_cast<double>(n)) * std::cbrt(static_cast<double>(n));
  const std::size_t runs =
      std::clamp<std::size_t>(static_cast<std::size_t>(target) / run, 16, std::min<std::size_t>(2048, n / (run * 4)));
  std::vector<Key> s;
  s.reserve(runs * run);
  // Stratified: one run at a pseudo-random offset inside each of `runs` equal strata of the
  // concatenation, so a periodic tensor (per-channel scales, repeated kernels) cannot alias
  // with the sample spacing. The offsets come from a fixed hash: results are repeatable.
  const std::size_t stratum = n / runs;
  std::size_t seg = 0;
  for (std::size_t j = 0; j < runs; ++j) {
    const std::uint64_t h = spruce::detail::splitmix64(0, j);
    const std::size_t start = j * stratum + static_cast<std::size_t>(h % (stratum - run + 1));
    while (segs[seg].offset + segs[seg].n <= start) ++seg;
    const std::size_t local = start - segs[seg].offset;
    const std::size_t end = std::min(segs[seg].n, local + run);
    for (std::size_t i = local; i < end; ++i) {
      const Key k = segs[seg].src(i);
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
inline std::size_t collect_flagged(const Src src, const std::size_t seg, const std::size_t i0,
                                   const std::size_t len, const std::uint8_t* flags,
                                   candidate<Key>* __restrict out) {
  std::size_t c = 0;
  for (std::size_t w = 0; w < len; w += 8) {
    std::uint64_t word;
    std::memcpy(&word, flags + w, 8);
    while (word) {
      const std::size_t j = w + static_cast<std::size_t>(std::countr_zero(word)) / 8;
      out[c++] = {i0 + j, seg, src(i0 + j)};
      word &= word - 1;  // each flag byte is 0 or 1: this clears exactly that flag
    }
  }
  return c;
}

/// Selects the `count` lowest keys (1 <= count <= total size) over all segments and, when
/// the segments carry mask pointers, writes their keep masks. Large inputs take one fused
/// pass: a sampled bracket [lo, hi] around the target rank is verified by exact counts
/// while the mask is written for every key outside it and the few keys inside it are set
/// aside with their positions; the answer is then found among those few. Heavy ties or an
/// unlucky sample fall back to radix select plus a mask pass. NaN scores are reported
/// (naming the segment and index) before anything is returned.
template <class O, class Src>
key_info<typename O::key_type> select_lowest(std::span<const segment<Src>> segs, std::size_t count,
                                             tie_break ties) {
  using Key = typename O::key_type;
  const std::size_t n = total_size(segs);
  const std::size_t rank = count - 1;
  const bool write = !segs.empty() && segs.front().mask != nullptr;
  if (n < bracket_min_size) {
    validate_scores<O>(segs);
    const auto info = radix_select<Key>(segs, rank);
    if (write) write_mask<Key>(segs, info, count, ties);
    return info;
  }

  Key lo, hi;
  double fraction;
  sample_bracket<O>(segs, rank, lo, hi, fraction);
  const bool collect = lo != hi;
  const std::size_t chunks = static_cast<std::size_t>(max_threads());
  const double expected = fraction * static_cast<double>(n);
  const double cap_total = std::min(static_cast<double>(n), 2.0 * expected + 4096.0);
  std::vector<chunk_state<Key>> st(segs.size() * chunks);
  constexpr std::size_t blk = 64;

  for (std::size_t si = 0; si < segs.size(); ++si) {
    const segment<Src>& sg = segs[si];
    const Src src = sg.src;
    std::uint8_t* const mask = sg.mask;
    parallel_chunks(sg.n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
      chunk_state<Key>& s = st[si * chunks + c];
      const std::size_t cap = std::min(
          static_cast<std::size_t>(cap_total * static_cast<double>(e - b) / static_cast<double>(n)) + 1024,
          e - b);
      if (collect) s.cand.reset(new candidate<Key>[cap + blk]);
      candidate<Key>* const cand = s.cand.get();
      alignas(64) std::uint8_t flags[blk] = {};
      bracket_counts tot{};
      std::size_t used = 0;  // locals until the end: the candidate stores could alias s's fields
      bool overflow = false;
      for (std::size_t i0 = b; i0 < e; i0 += blk) {
        const std::size_t i1 = std::min(e, i0 + blk);
        if (i1 - i0 < blk) std::fill(flags, flags + blk, std::uint8_t{0});
        const bracket_counts bc = mask ? scan_block<O, true>(src, i0, i1, lo, hi, mask, flags)
                                       : scan_block<O, false>(src, i0, i1, lo, hi, mask, flags);
        tot.lt += bc.lt;
        tot.gt += bc.gt;
        tot.bad += bc.bad;
        if (bc.lt + bc.gt == i1 - i0 || !collect || overflow) continue;
        // used <= cap here, so the cap + blk buffer has room for a whole block.
        used += collect_flagged<Key>(src, si, i0, blk, flags, cand + used);
        overflow = used > cap;
      }
      s.used = used;
      s.overflow = overflow;
      s.lt = tot.lt;
      s.gt = tot.gt;
      s.bad = tot.bad;
    });
  }

  std::size_t lt = 0, gt = 0, bad = 0;
  bool overflow = false;
  for (const auto& s : st) {
    lt += s.lt;
    gt += s.gt;
    bad += s.bad;
    overflow = overflow || s.overflow;
  }
  if (bad) validate_scores<O>(segs);  // throws, naming the first NaN

  const std::size_t inside = n - lt - gt;
  const bool hit = lt <= rank && rank < lt + inside;
  if (hit && !collect) {  // every key in the bracket equals lo
    const key_info<Key> info{lo, lt, inside};
    if (write && ties == tie_break::lower_index && lt + inside != count)
      write_mask<Key>(segs, info, count, ties);
    return info;
  }
  if (hit && !overflow) {
    // The candidates stay in their chunks' arrays, which in st's order are in index order:
    // no merged copy (the bracket of a coarse dtype, BF16 say, holds millions of them).
    std::vector<Key> keys;
    keys.reserve(inside);
    for (auto& s : st) {
      for (std::size_t i = 0; i < s.used; ++i) keys.push_back(s.cand[i].key);
      if (!write) s.cand.reset();
    }
    const segment<array_reader<Key>> ks{0, keys.size(), {keys.data()}};
    const auto sub = radix_select<Key>(std::span<const segment<array_reader<Key>>>(&ks, 1), rank - lt);
    const key_info<Key> info{sub.key, lt + sub.less, sub.equal};
    if (write) {
      const Key t = info.key;
      std::size_t need = count - info.less;  // equal keys still to select, in order
      for (const auto& s : st)
        for (std::size_t i = 0; i < s.used; ++i) {
          const candidate<Key>& c = s.cand[i];
          std::uint8_t& m = segs[c.seg].mask[c.index];
          if (c.key == t && ties == tie_break::lower_index) {
            m = need == 0;
            if (need) --need;
          } else {
            m = c.key > t;
          }
        }
    }
    return info;
  }
  const auto info = radix_select<Key>(segs, rank);
  if (write) write_mask<Key>(segs, info, count, ties);
  return info;
}

template <class R>
using range_value = std::remove_cv_t<std::ranges::range_value_t<R>>;

}  // namespace detail

/// The k-th smallest over several score arrays as if concatenated (global scope), without
/// building the concatenation. `names` (one per part, or empty) label errors.
template <template <class> class Order = by_value, score_type T>
kth_result<T> kth_smallest(std::span<const std::span<const T>> parts, std::size_t k,
                           std::span<const std::string> names = {}) {
  using O = Order<T>;
  std::vector<detail::segment<detail::key_reader<O>>> segs;
  std::size_t n = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    segs.push_back({n, parts[i].size(), {parts[i].data()}, nullptr, i < names.size() ? std::string_view(names[i]) : std::string_view()});
    n += parts[i].size();
  }
  if (k == 0 || k > n)
    throw error("kth_smallest: k = " + std::to_string(k) + " is outside [1, " + std::to_string(n) +
                "]" + (names.size() == 1 && !names[0].empty() ? " for " + names[0] : "") +
                "; pass a 1-based rank no larger than the number of scores");
  const auto info = detail::select_lowest<O>(std::span<const detail::segment<detail::key_reader<O>>>(segs), k,
                                             tie_break::all_equal);
  return {O::value(info.key), info.less, info.equal};
}

/// The k-th smallest score (1 <= k <= n, like torch.kthvalue) with the counts of smaller
/// and equal scores, in O(n) using every core. `Order` is `by_value` (scores as they are)
/// or `by_magnitude` (|score|, without computing it). Throws spruce::error for k out of
/// range or a NaN score (naming its index); +-inf are ordinary values and -0 == +0.
template <template <class> class Order = by_value, std::ranges::contiguous_range R>
  requires score_type<detail::range_value<R>>
kth_result<detail::range_value<R>> kth_smallest(const R& scores, std::size_t k,
                                                const std::string& name = {}) {
  using T = detail::range_value<R>;
  const std::span<const T> one(std::ranges::data(scores), std::ranges::size(scores));
  return kth_smallest<Order>(std::span<const std::span<const T>>(&one, 1), k,
                             std::span<const std::string>(&name, 1));
}

/// Keep masks (1 = keep, 0 = prune) of the `count` lowest scores over several arrays as if
/// concatenated, one new buffer per array; `ties` decides scores equal to the count-th
/// smallest (with `lower_index`, earlier arrays come first). count == 0 keeps everything.
/// Throws spruce::error for a count larger than the total or a NaN score (naming its array
/// and index); nothing is returned then.
template <template <class> class Order = by_value, score_type T>
std::vector<byte_buffer> lowest_masks(std::span<const std::span<const T>> parts, std::size_t count,
                                      tie_break ties, std::span<const std::string> names = {}) {
  using O = Order<T>;
  std::vector<byte_buffer> masks(parts.size());
  std::vector<detail::segment<detail::key_reader<O>>> segs;
  std::size_t n = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    masks[i].resize(parts[i].size());  // not zeroed: every byte is written below
    segs.push_back({n, parts[i].size(), {parts[i].data()}, masks[i].data(), i < names.size() ? std::string_view(names[i]) : std::string_view()});
    n += parts[i].size();
  }
  if (count > n)
    throw error("cannot select " + std::to_string(count) + " of the " + std::to_string(n) +
                " elements of " + (names.size() == 1 && !names[0].empty() ? names[0] : std::string("the scores")) +
                "; pass a count no larger than the element count");
  const std::span<const detail::segment<detail::key_reader<O>>> view(segs);
  if (count == 0) {
    detail::validate_scores<O>(view);
    for (auto& m : masks) std::fill(m.begin(), m.end(), std::uint8_t{1});
  } else {
    detail::select_lowest<O>(view, count, ties);
  }
  return masks;
}

/// The keep mask of the `count` lowest scores of one array (see lowest_masks).
template <template <class> class Order = by_value, std::ranges::contiguous_range R>
  requires score_type<detail::range_value<R>>
byte_buffer lowest_mask(const R& scores, std::size_t count, tie_break ties,
                        const std::string& name = {}) {
  using T = detail::range_value<R>;
  const std::span<const T> one(std::ranges::data(scores), std::ranges::size(scores));
  auto masks = lowest_masks<Order>(std::span<const std::span<const T>>(&one, 1), count, ties,
                                   std::span<const std::string>(&name, 1));
  return std::move(masks.front());
}

}  // namespace spruce::select
