#pragma once
// Selection over keys that a functor computes on the fly (a tensor's bytes in a dtype the
// score types do not cover, a score recomputed from the weight): where the cut falls,
// without a score buffer and without a mask.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "spruce/core/config.hpp"
#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/select/key.hpp"
#include "spruce/select/kth.hpp"

namespace spruce::select {

/// Where a selection of the `count` lowest keys cuts a sequence: every key below `key` is
/// selected, and of the keys equal to it those at an index below `tie_end`. This is all a
/// keep mask says, in three numbers, so a program that streams a tensor (a pruner writing a
/// file chunk by chunk) can decide each element as it goes instead of holding a byte per
/// element. `selects_none` is the count-0 cut, which keeps everything.
template <class Key>
struct key_cut {
  Key key{};
  std::size_t tie_end = 0;
  bool selects_none = true;

  /// True when the element at index `i` with key `k` is kept (not among the selected).
  SPRUCE_HD constexpr bool keeps(Key k, std::size_t i) const noexcept {
    return selects_none || k > key || (k == key && i >= tie_end);
  }
};

/// A functor that gives the key of element i of a sequence under order O: called from
/// several threads at once and two or three times per element, so it must be pure and
/// cheap (a load and a few bit operations).
template <class R, class O>
concept key_function = key_order<O> && std::copy_constructible<R> && requires(const R& r, std::size_t i) {
  { r(i) } -> std::same_as<typename O::key_type>;
};

/// The cut that lowest_mask<Order> would make: for keys(i) == O::key(score_i),
/// `lowest_cut<O>(n, keys, count, ties).keeps(keys(i), i)` equals
/// `lowest_mask<Order>(scores, count, ties)[i]` for every i: the same k-th key, the same
/// ties (`all_equal` selects every key equal to it, `lower_index` the lower indices first),
/// count 0 selecting nothing. It runs the same histogram / bracket passes over the keys,
/// on every core (core/parallel.hpp's pool), and stores nothing per element. Throws
/// spruce::error naming `name` for count > n or for a key outside [O::min_key, O::max_key]
/// (a NaN score; its index is named), before anything is returned.
template <key_order O, key_function<O> R>
key_cut<typename O::key_type> lowest_cut(std::size_t n, const R& keys, std::size_t count, tie_break ties,
                                         const std::string& name = {}) {
  using Key = typename O::key_type;
  if (count > n)
    throw error("cannot select " + std::to_string(count) + " of the " + std::to_string(n) + " elements of " +
                (name.empty() ? std::string("the scores") : name) + "; pass a count no larger than the element count");
  using seg = detail::segment<R>;
  const seg one{0, n, keys, nullptr, std::string_view(name)};
  const std::span<const seg> segs(&one, 1);
  if (count == 0) {
    detail::validate_scores<O>(segs);
    return {};
  }
  const detail::key_info<Key> info = detail::select_lowest<O>(segs, count, ties);
  key_cut<Key> cut{info.key, std::numeric_limits<std::size_t>::max(), false};
  if (ties == tie_break::all_equal || info.less + info.equal == count) return cut;
  // lower_index with the tie straddling the cut: the first `need` equal keys are selected;
  // find where the need-th one is (chunk counts in index order, then one chunk's scan).
  const std::size_t need = count - info.less;
  const std::size_t chunks = static_cast<std::size_t>(max_threads());
  std::vector<std::size_t> eq(chunks, 0), first(chunks, 0), last(chunks, 0);
  parallel_chunks(n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t e) {
    std::size_t k = 0;
    for (std::size_t i = b; i < e; ++i) k += keys(i) == info.key;
    eq[c] = k;
    first[c] = b;
    last[c] = e;
  });
  std::size_t seen = 0;
  for (std::size_t c = 0; c < chunks; ++c) {
    if (seen + eq[c] < need) {
      seen += eq[c];
      continue;
    }
    for (std::size_t i = first[c]; i < last[c]; ++i)
      if (keys(i) == info.key && ++seen == need) {
        cut.tie_end = i + 1;
        return cut;
      }
  }
  return cut;  // not reached: info.equal > need equal keys exist
}

}  // namespace spruce::select
