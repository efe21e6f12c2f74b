#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/prune/mask.hpp"

namespace spruce {

/// The masked-parameter registry: each entry pairs a named parameter with its keep mask.
/// Masks are computed once; `apply()` re-applies them after every optimizer step (an
/// update moves pruned weights off zero), `apply_to_gradients` zeroes the gradients of
/// pruned weights before the step, and `make_permanent()` applies them a last time and
/// forgets them. The registry views the parameters; it never owns or copies them.
template <class T>
class masked_parameters {
 public:
  struct entry {
    std::string name;
    tensor_ref<T> view;
    spruce::mask keep;
  };

  /// Registers `view` under `name` with mask `m`. Throws spruce::error for a duplicate
  /// name or a mask of another shape; the registry is unchanged then.
  void add(std::string name, const tensor_ref<T>& view, spruce::mask m) {
    if (find_entry(name) != nullptr)
      throw error(detail::tensor_label(name) + " is already registered; each parameter may "
                  "have one mask (remove it first or use another name)");
    detail::check_same_shape<T, std::uint8_t>(view, m.shape(), "mask", name);
    entries_.push_back({std::move(name), view, std::move(m)});
  }

  /// Zeroes every pruned weight of every registered parameter.
  void apply() const {
    for (const auto& e : entries_) detail::apply_keep(e.view, e.keep.data());
  }

  /// Zeroes the gradients of pruned weights. Every gradient named here must belong to a
  /// registered parameter and have its shape; all are checked before any is written.
  void apply_to_gradients(std::span<const named_tensor<T>> grads) const {
    std::vector<const entry*> match;
    match.reserve(grads.size());
    for (const auto& g : grads) {
      const entry* e = find_entry(g.name);
      if (e == nullptr)
        throw error("gradient for " + detail::tensor_label(g.name) +
                    " has no registered mask; register the parameter or drop the gradient");
      detail::check_same_shape<T, std::uint8_t>(g.view, e->keep.shape(), "mask", "gradient " + g.name);
      match.push_back(e);
    }
    for (std::size_t i = 0; i < grads.size(); ++i) detail::apply_keep(grads[i].view, match[i]->keep.data());
  }

  /// Applies the masks a last time and drops them: the zeros stay in the weights, and the
  /// registry is empty afterwards.
  void make_permanent() {
    apply();
    entries_.clear();
  }

  /// The mask of `name`, or nullptr when it is not registered.
  const spruce::mask* find(std::string_view name) const {
    const entry* e = find_entry(name);
    return e ? &e->keep : nullptr;
  }

  /// The mask of `name`; throws spruce::error when it is not registered.
  const spruce::mask& at(std::string_view name) const {
    const entry* e = find_entry(name);
    if (e == nullptr)
      throw error(detail::tensor_label(std::string(name)) + " has no mask in this registry");
    return e->keep;
  }

  std::span<const entry> entries() const noexcept { return entries_; }
  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }

 private:
  const entry* find_entry(std::string_view name) const {
    const auto it = std::find_if(entries_.begin(), entries_.end(),
                                 [&](const entry& e) { return e.name == name; });
    return it == entries_.end() ? nullptr : &*it;
  }

  std::vector<entry> entries_;
};

}  // namespace spruce
