#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <ranges>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/prune/bit_mask.hpp"
#include "spruce/prune/mask.hpp"

namespace spruce {

namespace detail {

/// How a registry applies each storage; the one place the two mask types differ.
template <class T>
void apply_stored(const tensor_ref<T>& target, const mask& m) {
  apply_keep(target, m.data());
}
template <class T>
void apply_stored(const tensor_ref<T>& target, const bit_mask& m) {
  apply_keep_bits(target, m.words().data());
}
inline mask to_byte_mask(const mask& m) { return m; }
inline mask to_byte_mask(const bit_mask& m) { return m.to_bytes(); }

}  // namespace detail

/// How a registry stores and applies masks of type M that live outside host memory; the
/// primary template says "none". The CUDA layer specialises it for cuda::device_mask
/// (`defined`, `space`, `apply(view, m)`, `to_bytes(m)`), so masked_parameters<T,
/// cuda::device_mask> registers device tensors with masks in device memory.
template <class M>
struct mask_storage_backend {
  static constexpr bool defined = false;
};

namespace detail {

template <class M>
struct storage_space {
  using type = host_space;
};
template <class M>
  requires mask_storage_backend<M>::defined
struct storage_space<M> {
  using type = typename mask_storage_backend<M>::space;
};

template <class T, class Space, class M>
void apply_stored(const tensor_ref<T, Space>& target, const M& m) {
  mask_storage_backend<M>::apply(target, m);
}
template <class M>
mask to_byte_mask(const M& m) {
  return mask_storage_backend<M>::to_bytes(m);
}

}  // namespace detail

/// What a masked_parameters registry may store: `spruce::mask` (one byte per weight, the
/// default: applies at memory speed with a plain select) or `spruce::bit_mask` (one bit per
/// weight, 8x less memory, for registries that hold a large model's masks through a long
/// fine-tuning run; faster where masks are blocky, since all-kept 64-element words are
/// skipped, somewhat slower on finely mixed ones). Results are bit-identical. The storage
/// is a compile-time choice, so an entry holds exactly one mask, never a tagged pair.
template <class M>
concept mask_storage = std::same_as<M, mask> || std::same_as<M, bit_mask> || mask_storage_backend<M>::defined;

/// The masked-parameter registry: each entry pairs a named parameter with its keep mask.
/// Masks are computed once; `apply()` re-applies them after every optimizer step (an
/// update moves pruned weights off zero), `apply_to_gradients` zeroes the gradients of
/// pruned weights before the step, and `make_permanent()` applies them a last time and
/// forgets them. The registry views the parameters; it never owns or copies them.
/// `Mask` chooses the storage (see mask_storage); `with_storage<bit_mask>()` converts a
/// registry, `keep_mask(name)` gives a byte copy from either.
template <class T, mask_storage Mask = mask>
class masked_parameters {
 public:
  using mask_type = Mask;
  /// The memory space of the registered tensors (the host, or the mask storage's space).
  using memory_space = typename detail::storage_space<Mask>::type;

  /// One registered parameter and its mask.
  struct entry {
    std::string name;
    tensor_ref<T, memory_space> view;
    Mask keep;
  };

  masked_parameters() = default;

  /// The same registry with the masks in another storage (e.g. to pack the masks
  /// fine_grained_prune returns: `reg.with_storage<spruce::bit_mask>()`).
  template <mask_storage Other>
  masked_parameters<T, Other> with_storage() const {
    masked_parameters<T, Other> out;
    for (const auto& e : entries_) out.add(e.name, e.view, e.keep);
    return out;
  }

  /// Registers `view` under `name` with mask `m` (a byte or a packed mask; converted to
  /// the registry's storage). Throws spruce::error for a duplicate name or a mask of
  /// another shape; the registry is unchanged then.
  template <mask_storage Given>
  void add(std::string name, const tensor_ref<T, memory_space>& view, Given m) {
    check_new(name, view, m.shape());
    if constexpr (std::same_as<Given, Mask>)
      entries_.push_back(entry{std::move(name), view, std::move(m)});
    else if constexpr (std::same_as<Mask, bit_mask>)
      entries_.push_back(entry{std::move(name), view, bit_mask(m)});
    else
      entries_.push_back(entry{std::move(name), view, m.to_bytes()});
  }

  /// Zeroes every pruned weight of every registered parameter.
  void apply() const {
    for (const auto& e : entries_) detail::apply_stored(e.view, e.keep);
  }

  /// Zeroes the gradients of pruned weights. Every gradient named here must belong to a
  /// registered parameter and have its shape; all are checked before any is written.
  /// `grads` is any contiguous range of named tensors (a std::vector, a span, an array).
  template <std::ranges::contiguous_range R>
    requires std::same_as<std::ranges::range_value_t<R>, named_tensor<T, memory_space>>
  void apply_to_gradients(const R& grads) const {
    std::vector<const entry*> match;
    match.reserve(std::ranges::size(grads));
    for (const auto& g : grads) {
      const entry* e = find_entry(g.name);
      if (e == nullptr)
        throw error("gradient for " + detail::tensor_label(g.name) +
                    " has no registered mask; register the parameter or drop the gradient");
      detail::check_same_shape<T, std::uint8_t>(g.view, e->view.shape(), "mask", "gradient " + g.name);
      match.push_back(e);
    }
    std::size_t i = 0;
    for (const auto& g : grads) detail::apply_stored(g.view, match[i++]->keep);
  }

  /// Applies the masks a last time and drops them: the zeros stay in the weights, and the
  /// registry is empty afterwards.
  void make_permanent() {
    apply();
    entries_.clear();
  }

  /// Whether `name` is registered.
  bool contains(std::string_view name) const { return find_entry(name) != nullptr; }

  /// The mask of `name`, or nullptr when it is not registered.
  const Mask* find(std::string_view name) const {
    const entry* e = find_entry(name);
    return e ? &e->keep : nullptr;
  }

  /// The mask of `name`; throws spruce::error when it is not registered.
  const Mask& at(std::string_view name) const { return checked_entry(name).keep; }

  /// A byte copy of the mask of `name` whatever the storage (unpacked from bits); throws
  /// spruce::error when it is not registered.
  spruce::mask keep_mask(std::string_view name) const { return detail::to_byte_mask(checked_entry(name).keep); }

  std::span<const entry> entries() const noexcept { return entries_; }
  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }

 private:
  void check_new(const std::string& name, const tensor_ref<T, memory_space>& view,
                 std::span<const std::size_t> shape) const {
    if (find_entry(name) != nullptr)
      throw error(detail::tensor_label(name) + " is already registered; each parameter may "
                  "have one mask (remove it first or use another name)");
    detail::check_same_shape<T, std::uint8_t>(view, shape, "mask", name);
  }

  const entry& checked_entry(std::string_view name) const {
    const entry* e = find_entry(name);
    if (e == nullptr)
      throw error(detail::tensor_label(std::string(name)) + " has no mask in this registry; register it with add() (or use find() to test for it)");
    return *e;
  }

  const entry* find_entry(std::string_view name) const {
    const auto it = std::find_if(entries_.begin(), entries_.end(),
                                 [&](const entry& e) { return e.name == name; });
    return it == entries_.end() ? nullptr : &*it;
  }

  std::vector<entry> entries_;
};

}  // namespace spruce
