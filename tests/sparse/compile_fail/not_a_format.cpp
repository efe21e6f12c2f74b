// Must NOT compile: `looks_sparse` has a shape and an element type but no spmm, to_dense,
// validate, stored_values or from_dense, so it does not model spruce::sparse::sparse_format
// and sparse::conv2d refuses it; the compiler's message must name the concept. With
// SPRUCE_COMPILE_FAIL_CONTROL defined the same call is made with CSR and must compile (so
// the failure is the concept's, not a typo's).
#include <array>
#include <vector>

#include "spruce/sparse/conv2d.hpp"
#include "spruce/sparse/csr.hpp"

struct looks_sparse {
  using value_type = float;
  using options_type = spruce::sparse::no_options;
  std::size_t rows() const { return 4; }
  std::size_t cols() const { return 9; }
};

int main() {
  std::vector<float> in(9, 1.0f), out(4, 0.0f), w(36, 1.0f);
  const std::array<std::size_t, 4> si{1, 1, 3, 3}, so{1, 4, 1, 1};
  const std::array<std::size_t, 2> sw{4, 9};
#if defined(SPRUCE_COMPILE_FAIL_CONTROL)
  const auto weight = spruce::sparse::csr_matrix<float>::from_dense(spruce::tensor_ref<const float>(w.data(), sw));
#else
  const looks_sparse weight;
  (void)sw;
#endif
  spruce::sparse::conv2d(weight, spruce::tensor_ref<const float>(in.data(), si), spruce::tensor_ref<float>(out.data(), so),
                         spruce::sparse::conv2d_params{});
  return 0;
}
