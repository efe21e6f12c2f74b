#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <string>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/core/view.hpp"
#include "spruce/core/tensor_view.hpp"
#include "spruce/metrics/size.hpp"
#include "spruce/metrics/sparsity.hpp"

namespace spruce {

namespace detail::metrics {

// What a tensor set may hold: named parameters, run-time-rank refs or fixed-rank views.
template <class T, class S>
std::uint64_t entry_size(const named_tensor<T, S>& t) noexcept {
  return t.view.size();
}
template <any_view V>
std::uint64_t entry_size(const V& t) noexcept {
  return t.size();
}

/// Any range whose elements are named_tensor, tensor_ref or tensor_view (a model's
/// parameters): a std::vector, std::array, std::span, or a view over any of them.
template <class R>
concept tensor_range =
    std::ranges::input_range<R> && requires(std::ranges::range_reference_t<R> x) {
      { entry_size(x) } -> std::same_as<std::uint64_t>;
      spruce::count_nonzero(x);
    };

struct set_counts {
  std::uint64_t total = 0;
  std::uint64_t nonzero = 0;
};

template <class R>
set_counts count_set(R&& set, bool with_nonzero) {
  set_counts c;
  for (auto&& t : set) {
    if (!add_fits(c.total, entry_size(t), c.total))
      throw overflow_error("the element count of the tensor set");
    // The nonzero count never exceeds the element count, which fits.
    if (with_nonzero) c.nonzero += spruce::count_nonzero(t);
  }
  return c;
}

}  // namespace detail::metrics

/// Number of parameters in a set of tensors (a model's weights and biases), as the MIT
/// lab's `get_num_parameters` counts them: every element, or with `count_nonzero_only`
/// only the elements that are not zero (what is left after pruning; -0.0 is zero, NaN is
/// not). `set` is any range of named_tensor, tensor_ref or tensor_view. Only the nonzero
/// count reads the data, and it throws spruce::error, naming the tensor, for a null data
/// pointer with a non-zero size.
template <class R>
  requires detail::metrics::tensor_range<R>
std::uint64_t num_parameters(R&& set, bool count_nonzero_only = false) {
  const auto c = detail::metrics::count_set(set, count_nonzero_only);
  return count_nonzero_only ? c.nonzero : c.total;
}

/// Storage a set of tensors needs in bits when each kept element takes `data_width_bits`
/// (32 for float32, 8 for int8 after quantisation): `num_parameters(set,
/// count_nonzero_only) * data_width_bits`, the MIT lab's `get_model_size`. Index overhead of
/// a sparse format is not included. Throws spruce::error when `data_width_bits` is 0 (pass
/// the width of one stored element) or the product overflows 64 bits.
template <class R>
  requires detail::metrics::tensor_range<R>
std::uint64_t model_size_bits(R&& set, std::uint64_t data_width_bits = 32,
                              bool count_nonzero_only = false) {
  if (data_width_bits == 0)
    throw error("model_size_bits: data_width_bits is 0; pass the number of bits one stored "
                "element takes (32 for float32, 16 for half, 8 for int8)");
  const std::uint64_t n = num_parameters(set, count_nonzero_only);
  std::uint64_t bits = 0;
  if (!detail::metrics::mul_fits(n, data_width_bits, bits))
    throw detail::metrics::overflow_error("model_size_bits (" + std::to_string(n) +
                                          " parameters * " + std::to_string(data_width_bits) +
                                          " bits)");
  return bits;
}

/// Fraction of all elements of a set of tensors that are exactly zero, as if the tensors
/// were concatenated: `1 - nonzero / total` in double, the MIT lab's `get_model_sparsity`.
/// Large tensors weigh more than small ones, which is what "the model is 80% sparse"
/// means. An empty set, or one whose tensors are all empty, has sparsity 0.
template <class R>
  requires detail::metrics::tensor_range<R>
double model_sparsity(R&& set) {
  const auto c = detail::metrics::count_set(set, true);
  return c.total == 0 ? 0.0
                      : 1.0 - static_cast<double>(c.nonzero) / static_cast<double>(c.total);
}

}  // namespace spruce
