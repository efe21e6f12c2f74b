#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <numeric>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/parallel.hpp"
#include "spruce/core/rounding.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/criterion/criterion.hpp"
#include "spruce/granularity/group_layout.hpp"
#include "spruce/prune/group_scores.hpp"

namespace spruce::structural {

/// One slice set that must lose the same channels: a named tensor and the axis its
/// channels run along. `factor` > 1 says each channel spans that many consecutive
/// positions on the axis — a conv output flattened into a linear layer's inputs
/// (channel c owns inputs [c*h*w, (c+1)*h*w)). A member may own only part of its axis, the
/// way one input of a concatenation owns part of the next layer's input channels: its
/// channels start `offset` positions into the axis and there are `count` of them (0 = the
/// rest of the axis); removing them shrinks the whole axis and leaves the positions around
/// them in place. Members must be contiguous row-major.
template <class T>
struct member {
  std::string name;
  tensor_ref<T> view;
  std::size_t axis = 0;
  std::size_t factor = 1;
  std::size_t offset = 0;
  std::size_t count = 0;
};

/// A pruned copy of one member: its name, new shape and packed row-major values.
template <class T>
struct owned_member {
  std::string name;
  std::vector<std::size_t> shape;
  std::vector<T> data;
};

/// How many channels of `channels` to keep when pruning `ratio` of them: the lab's
/// round_half_even(c * (1 - ratio)), optionally rounded up to a multiple (8, 16, ... for
/// hardware) and raised to a minimum; never more than `channels`.
struct keep_rule {
  std::size_t multiple = 1;
  std::size_t minimum = 0;

  std::size_t keep(double ratio, std::size_t channels, const std::string& name = {}) const {
    if (multiple == 0)
      throw error("keep_rule: multiple 0 for " + spruce::detail::tensor_label(name) + "; pass 1 for no rounding");
    std::size_t k = kept_from_ratio(ratio, channels, "prune ratio of " + spruce::detail::tensor_label(name));
    if (k % multiple) k += multiple - k % multiple;
    return std::min(channels, std::max(k, minimum));
  }
};

/// Every tensor slice coupled to one set of channels: a conv's output axis, the BN after
/// it (gamma, beta, running mean and variance), the next conv's input axis, a linear
/// layer's input axis, biases. Sorting permutes every member; pruning compacts every
/// member in place (a smaller row-major view of the same buffer). Each operation checks
/// everything first and changes nothing when a check fails. A frozen group (a residual
/// output other branches add to) refuses to be pruned or permuted.
template <class T>
class channel_group {
 public:
  channel_group(std::string name, std::vector<member<T>> members, bool frozen = false)
      : name_(std::move(name)), members_(std::move(members)), frozen_(frozen) {
    if (members_.empty()) throw error("channel group '" + name_ + "' has no members; add the coupled tensors");
    for (const auto& m : members_) {
      const std::string who = "member '" + m.name + "' of channel group '" + name_ + "'";
      if (m.axis >= m.view.rank())
        throw error(who + ": axis " + std::to_string(m.axis) + " is out of range for shape " +
                    shape_string(m.view.shape()) + "; pass the axis the channels run along");
      const std::size_t len = m.view.extent(m.axis);
      if (m.offset > len || m.offset + m.count * m.factor > len)
        throw error(who + ": " + std::to_string(m.count) + " channels of " + std::to_string(m.factor) +
                    " positions from offset " + std::to_string(m.offset) + " do not fit axis " +
                    std::to_string(m.axis) + " of shape " + shape_string(m.view.shape()) +
                    "; pass the offset and count of this member's part of the axis");
      if (m.factor == 0 || (m.count == 0 && (len - m.offset) % m.factor))
        throw error(who + ": axis length " + std::to_string(len - m.offset) + " is not a multiple of the factor " +
                    std::to_string(m.factor) + "; pass the spatial size of the flattened conv output");
      if (!m.view.is_contiguous())
        throw error(who + " is not contiguous row-major; structural pruning moves memory and needs packed tensors");
    }
    for (std::size_t a = 0; a < members_.size(); ++a)
      for (std::size_t b = a + 1; b < members_.size(); ++b) {
        const T* pa = members_[a].view.data();
        const T* pb = members_[b].view.data();
        if (pa < pb + members_[b].view.size() && pb < pa + members_[a].view.size())
          throw error("channel group '" + name_ + "': members '" + members_[a].name + "' and '" + members_[b].name +
                      "' share memory; pruning would move it twice — pass each tensor once");
      }
    channels_ = channels_of(members_[0]);
    for (const auto& m : members_)
      if (channels_of(m) != channels_)
        throw error("channel group '" + name_ + "': member '" + m.name + "' has " +
                    std::to_string(channels_of(m)) + " channels along axis " +
                    std::to_string(m.axis) + " but '" + members_[0].name + "' has " + std::to_string(channels_) +
                    "; every member must carry the same channels");
  }

  const std::string& name() const noexcept { return name_; }
  std::size_t channels() const noexcept { return channels_; }
  bool frozen() const noexcept { return frozen_; }
  std::span<const member<T>> members() const noexcept { return members_; }

  /// The view of member `name` (its shape shrinks after pruning).
  const tensor_ref<T>& view(std::string_view name) const { return find(name).view; }

  /// One importance score per channel from member `which` under criterion `c`: the
  /// channel's slice of that member (every axis but the member's reduced, factor
  /// positions included). The lab uses the L2 norm of the next conv's input slices.
  template <criterion::elementwise_criterion C>
  std::vector<std::remove_const_t<T>> importance(const C& c, std::string_view which) const {
    using V = std::remove_const_t<T>;
    const member<T>& m = find(which);
    tensor_ref<const V> v(m.view);
    if (m.offset != 0 || m.count != 0) {  // this member's part of the axis, as a strided view
      std::vector<std::size_t> shape(m.view.shape().begin(), m.view.shape().end());
      shape[m.axis] = channels_ * m.factor;
      v = tensor_ref<const V>(m.view.data() + m.offset * m.view.stride(m.axis), shape, m.view.strides());
    }
    granularity::group_layout l;
    l.rank = v.rank();
    for (std::size_t r = 0; r < l.rank; ++r) {
      l.extent[r] = v.extent(r);
      l.tile[r] = r == m.axis ? m.factor : std::max<std::size_t>(1, v.extent(r));
    }
    return group_scores(c, criterion::inputs<V>{v}, l, m.name);
  }

  /// Reorders every member so that new channel j is old channel order[j]. Throws, changing
  /// nothing, when `order` is not a permutation of the channels or the group is frozen.
  void permute(std::span<const std::size_t> order) {
    check_mutable("permute");
    check_indices(order, "permutation");
    if (order.size() != channels_)
      throw error("permutation of channel group '" + name_ + "' has " + std::to_string(order.size()) +
                  " entries for " + std::to_string(channels_) + " channels; pass each channel once");
    for (auto& m : members_) {
      const span_geometry geo = geometry(m);
      std::vector<std::remove_const_t<T>> copy(m.view.data(), m.view.data() + m.view.size());
      T* dst = m.view.data();
      const std::size_t channels = channels_;
      // Rows scatter from the private copy, so they are independent: split them.
      parallel_for(0, geo.outer * channels, [&](std::size_t r) {
        const std::size_t o = r / channels, j = r % channels;
        std::memcpy(dst + geo.at(o, j), copy.data() + geo.at(o, order[j]), geo.block * sizeof(T));
      }, total_work{m.view.size()});
    }
  }

  /// Sorts channels by `score`, largest first (ties keep the lower index first), permuting
  /// every member: the lab's channel sorting, after which pruning the first k keeps the
  /// most important channels. Returns the order applied.
  std::vector<std::size_t> sort_by(std::span<const std::remove_const_t<T>> score) {
    if (score.size() != channels_)
      throw error("channel group '" + name_ + "': " + std::to_string(score.size()) + " scores for " +
                  std::to_string(channels_) + " channels; pass one score per channel");
    std::vector<std::size_t> order(channels_);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return score[a] > score[b]; });
    permute(order);
    return order;
  }

  /// Keeps channels `keep` (any order, each once, at least one) in ascending order and
  /// compacts every member in place: its view becomes a smaller row-major view at the start
  /// of the same buffer. Throws, changing nothing, for an empty list, a duplicate or an
  /// out-of-range index, or a frozen group.
  void keep(std::span<const std::size_t> keep) {
    check_mutable("prune");
    if (keep.empty())
      throw error("channel group '" + name_ + "': keeping 0 channels would cut the network; keep at least one "
                  "(use keep_rule::minimum)");
    check_indices(keep, "keep list");
    std::vector<std::size_t> kept(keep.begin(), keep.end());
    std::sort(kept.begin(), kept.end());
    for (auto& m : members_) {
      const span_geometry geo = geometry(m);
      T* p = m.view.data();
      std::size_t to = 0;
      const auto move = [&](std::size_t from, std::size_t n) {
        if (from != to && n) std::memmove(p + to, p + from, n * sizeof(T));  // to <= from: safe forward
        to += n;
      };
      for (std::size_t o = 0; o < geo.outer; ++o) {
        move(o * geo.row, geo.lead);
        for (std::size_t c : kept) move(geo.at(o, c), geo.block);
        move(geo.at(o, channels_), geo.tail);
      }
      std::vector<std::size_t> shape(m.view.shape().begin(), m.view.shape().end());
      shape[m.axis] -= (channels_ - kept.size()) * m.factor;
      m.view = tensor_ref<T>(p, shape);
      if (m.count) m.count = kept.size();
    }
    channels_ = kept.size();
  }

  /// Like keep(), but into new owning storage: returns every member with only channels
  /// `keep` (ascending), leaving the group and its tensors untouched.
  std::vector<owned_member<std::remove_const_t<T>>> keep_copy(std::span<const std::size_t> keep) const {
    if (keep.empty())
      throw error("channel group '" + name_ + "': keeping 0 channels would cut the network; keep at least one");
    check_indices(keep, "keep list");
    std::vector<std::size_t> kept(keep.begin(), keep.end());
    std::sort(kept.begin(), kept.end());
    std::vector<owned_member<std::remove_const_t<T>>> out;
    for (const auto& m : members_) {
      const span_geometry geo = geometry(m);
      owned_member<std::remove_const_t<T>> o{m.name, {m.view.shape().begin(), m.view.shape().end()}, {}};
      o.shape[m.axis] -= (channels_ - kept.size()) * m.factor;
      o.data.resize(geo.outer * (geo.lead + kept.size() * geo.block + geo.tail));
      std::size_t to = 0;
      const auto copy = [&](std::size_t from, std::size_t n) {
        if (n) std::memcpy(o.data.data() + to, m.view.data() + from, n * sizeof(T));
        to += n;
      };
      for (std::size_t r = 0; r < geo.outer; ++r) {
        copy(r * geo.row, geo.lead);
        for (std::size_t c : kept) copy(geo.at(r, c), geo.block);
        copy(geo.at(r, channels_), geo.tail);
      }
      out.push_back(std::move(o));
    }
    return out;
  }

  /// Keeps the first `k` channels (the lab's channel_prune after sorting).
  void keep_first(std::size_t k) {
    if (k > channels_)
      throw error("channel group '" + name_ + "': cannot keep " + std::to_string(k) + " of " +
                  std::to_string(channels_) + " channels; pass k <= " + std::to_string(channels_));
    std::vector<std::size_t> idx(k);
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    keep(idx);
  }

 private:
  const member<T>& find(std::string_view which) const {
    for (const auto& m : members_)
      if (m.name == which) return m;
    std::string names;
    for (const auto& m : members_) names += (names.empty() ? "'" : ", '") + m.name + "'";
    throw error("channel group '" + name_ + "' has no member '" + std::string(which) + "'; its members are " + names);
  }
  static std::size_t channels_of(const member<T>& m) {
    return m.count ? m.count : (m.view.extent(m.axis) - m.offset) / m.factor;
  }
  // Where a member's channels lie: `outer` rows of `row` elements; in each, `lead` elements
  // before the member's part of the axis, one contiguous `block` per channel, `tail` after.
  struct span_geometry {
    std::size_t outer, row, lead, block, tail;
    std::size_t at(std::size_t o, std::size_t c) const noexcept { return o * row + lead + c * block; }
  };
  span_geometry geometry(const member<T>& m) const {
    std::size_t outer = 1, inner = 1;
    for (std::size_t r = 0; r < m.axis; ++r) outer *= m.view.extent(r);
    for (std::size_t r = m.axis + 1; r < m.view.rank(); ++r) inner *= m.view.extent(r);
    const std::size_t row = m.view.extent(m.axis) * inner, lead = m.offset * inner, block = m.factor * inner;
    return {outer, row, lead, block, row - lead - channels_ * block};
  }
  void check_mutable(const char* what) const {
    if (frozen_)
      throw error("channel group '" + name_ + "' is frozen (its channels are shared with a residual add); cannot " +
                  what + " it — prune the joined group instead or leave it");
  }
  void check_indices(std::span<const std::size_t> idx, const char* what) const {
    std::vector<char> seen(channels_, 0);
    for (std::size_t c : idx) {
      if (c >= channels_)
        throw error(std::string(what) + " of channel group '" + name_ + "' has index " + std::to_string(c) +
                    ", out of range for " + std::to_string(channels_) + " channels");
      if (seen[c]++)
        throw error(std::string(what) + " of channel group '" + name_ + "' lists channel " + std::to_string(c) +
                    " twice; list each channel once");
    }
  }

  std::string name_;
  std::vector<member<T>> members_;
  bool frozen_ = false;
  std::size_t channels_ = 0;
};

/// One group from several that must lose the same channels: residual branches that are
/// added together share one selection. All members move together; the joined group is
/// frozen if any part is.
template <class T>
channel_group<T> join(std::string name, std::span<const channel_group<T>> parts) {
  std::vector<member<T>> all;
  bool frozen = false;
  for (const auto& g : parts) {
    if (!parts.empty() && g.channels() != parts.front().channels())
      throw error("join '" + name + "': group '" + g.name() + "' has " + std::to_string(g.channels()) +
                  " channels but '" + parts.front().name() + "' has " + std::to_string(parts.front().channels()) +
                  "; only groups that add together can be joined");
    frozen = frozen || g.frozen();
    for (const auto& m : g.members()) all.push_back({g.name() + "/" + m.name, m.view, m.axis, m.factor, m.offset, m.count});
  }
  return channel_group<T>(std::move(name), std::move(all), frozen);
}

namespace detail {
template <class X>
inline constexpr bool is_channel_group_v = false;
template <class T>
inline constexpr bool is_channel_group_v<channel_group<T>> = true;
}  // namespace detail

/// join over any contiguous range of channel groups (a std::vector, std::array, span, C
/// array) with the element type deduced: `join("stage1", groups)`.
template <std::ranges::contiguous_range R>
  requires std::ranges::sized_range<R> && detail::is_channel_group_v<std::remove_cv_t<std::ranges::range_value_t<R>>>
auto join(std::string name, const R& parts) {
  using G = std::remove_cv_t<std::ranges::range_value_t<R>>;
  return join(std::move(name), std::span<const G>(std::ranges::data(parts), std::ranges::size(parts)));
}

}  // namespace spruce::structural
