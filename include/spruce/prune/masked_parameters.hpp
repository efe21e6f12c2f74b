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
#include "spruce/prune/bit_mask.hpp"
#include "spruce/prune/mask.hpp"

namespace spruce {

/// How a masked_parameters registry stores its masks. `bytes` (the default) keeps one byte
/// per weight and applies at memory speed with a plain select; `bits` keeps one bit per
/// weight, 8x less memory, for registries that hold a large model's masks through a long
/// fine-tuning run. Bits apply faster where masks are blocky (all-kept 64-element words
/// are skipped) and somewhat slower on finely mixed ones (each word is expanded first);
/// at()/find() hand out a byte mask only in byte storage. Results are bit-identical.
enum class mask_storage { bytes, bits };

/// The masked-parameter registry: each entry pairs a named parameter with its keep mask.
/// Masks are computed once; `apply()` re-applies them after every optimizer step (an
/// update moves pruned weights off zero), `apply_to_gradients` zeroes the gradients of
/// pruned weights before the step, and `make_permanent()` applies them a last time and
/// forgets them. The registry views the parameters; it never owns or copies them. The
/// storage (mask_storage) is chosen at construction and may be changed with set_storage;
/// at()/find() give the byte masks of a byte registry, at_bits()/find_bits() the packed
/// masks of a bit registry, and keep_mask() a byte copy from either.
template <class T>
class masked_parameters {
 public:
  /// One registered parameter. Exactly one of `keep` (byte storage) and `bits` (bit
  /// storage) holds the mask; the other is empty.
  struct entry {
    std::string name;
    tensor_ref<T> view;
    spruce::mask keep;
    spruce::bit_mask bits;
  };

  /// A registry that stores masks as `storage` (bytes by default); see mask_storage.
  masked_parameters() = default;
  explicit masked_parameters(mask_storage storage) : storage_(storage) {}

  mask_storage storage() const noexcept { return storage_; }

  /// Converts every stored mask to `storage` (e.g. to pack the masks fine_grained_prune
  /// returns). On an exception the registry is unchanged.
  void set_storage(mask_storage storage) {
    if (storage == storage_) return;
    std::vector<entry> converted;
    converted.reserve(entries_.size());
    for (const auto& e : entries_)
      converted.push_back(storage_ == mask_storage::bits ? make_entry(storage, e.name, e.view, e.bits)
                                                         : make_entry(storage, e.name, e.view, e.keep));
    entries_ = std::move(converted);
    storage_ = storage;
  }

  /// Registers `view` under `name` with mask `m`, packed when the registry stores bits.
  /// Throws spruce::error for a duplicate name or a mask of another shape; the registry is
  /// unchanged then.
  void add(std::string name, const tensor_ref<T>& view, spruce::mask m) {
    check_new(name, view, m.shape());
    entries_.push_back(make_entry(storage_, std::move(name), view, std::move(m)));
  }

  /// Registers `view` under `name` with packed mask `m`, unpacked when the registry stores
  /// bytes. Same checks as the byte overload.
  void add(std::string name, const tensor_ref<T>& view, spruce::bit_mask m) {
    check_new(name, view, m.shape());
    entries_.push_back(make_entry(storage_, std::move(name), view, std::move(m)));
  }

  /// Zeroes every pruned weight of every registered parameter.
  void apply() const {
    for (const auto& e : entries_) apply_one(e, e.view);
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
      detail::check_same_shape<T, std::uint8_t>(g.view, e->view.shape(), "mask", "gradient " + g.name);
      match.push_back(e);
    }
    for (std::size_t i = 0; i < grads.size(); ++i) apply_one(*match[i], grads[i].view);
  }

  /// Applies the masks a last time and drops them: the zeros stay in the weights, and the
  /// registry is empty afterwards.
  void make_permanent() {
    apply();
    entries_.clear();
  }

  /// Whether `name` is registered, in either storage.
  bool contains(std::string_view name) const { return find_entry(name) != nullptr; }

  /// The byte mask of `name`, or nullptr when it is not registered. Throws spruce::error
  /// in a bit registry, where no byte mask exists (nullptr would read as "not registered").
  const spruce::mask* find(std::string_view name) const {
    require(mask_storage::bytes, "find", "find_bits");
    const entry* e = find_entry(name);
    return e ? &e->keep : nullptr;
  }

  /// The byte mask of `name`; throws spruce::error when it is not registered or the
  /// registry stores bits.
  const spruce::mask& at(std::string_view name) const {
    require(mask_storage::bytes, "at", "at_bits");
    return checked_entry(name).keep;
  }

  /// The packed mask of `name`, or nullptr when it is not registered; bit registries only.
  const spruce::bit_mask* find_bits(std::string_view name) const {
    require(mask_storage::bits, "find_bits", "find");
    const entry* e = find_entry(name);
    return e ? &e->bits : nullptr;
  }

  /// The packed mask of `name`; throws spruce::error when it is not registered or the
  /// registry stores bytes.
  const spruce::bit_mask& at_bits(std::string_view name) const {
    require(mask_storage::bits, "at_bits", "at");
    return checked_entry(name).bits;
  }

  /// A byte copy of the mask of `name` whatever the storage (unpacked from a bit
  /// registry); throws spruce::error when it is not registered.
  spruce::mask keep_mask(std::string_view name) const {
    const entry& e = checked_entry(name);
    return storage_ == mask_storage::bits ? e.bits.to_bytes() : e.keep;
  }

  std::span<const entry> entries() const noexcept { return entries_; }
  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }

 private:
  static entry make_entry(mask_storage storage, std::string name, const tensor_ref<T>& view,
                          spruce::mask m) {
    if (storage == mask_storage::bits) return entry{std::move(name), view, {}, spruce::bit_mask(m)};
    return entry{std::move(name), view, std::move(m), {}};
  }
  static entry make_entry(mask_storage storage, std::string name, const tensor_ref<T>& view,
                          spruce::bit_mask m) {
    if (storage == mask_storage::bytes) return entry{std::move(name), view, m.to_bytes(), {}};
    return entry{std::move(name), view, {}, std::move(m)};
  }

  void apply_one(const entry& e, const tensor_ref<T>& target) const {
    if (storage_ == mask_storage::bits) detail::apply_keep_bits(target, e.bits.words().data());
    else detail::apply_keep(target, e.keep.data());
  }

  void check_new(const std::string& name, const tensor_ref<T>& view,
                 std::span<const std::size_t> shape) const {
    if (find_entry(name) != nullptr)
      throw error(detail::tensor_label(name) + " is already registered; each parameter may "
                  "have one mask (remove it first or use another name)");
    detail::check_same_shape<T, std::uint8_t>(view, shape, "mask", name);
  }

  void require(mask_storage s, const char* fn, const char* other) const {
    if (storage_ != s)
      throw error(std::string("masked_parameters::") + fn + " needs a registry that stores " +
                  (s == mask_storage::bytes ? "bytes" : "bits") + ", but this one stores " +
                  (s == mask_storage::bytes ? "bits" : "bytes") + "; use " + other +
                  "(name), or keep_mask(name) for a byte copy in either storage");
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

  mask_storage storage_ = mask_storage::bytes;
  std::vector<entry> entries_;
};

}  // namespace spruce
