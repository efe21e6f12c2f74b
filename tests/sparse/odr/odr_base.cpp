// The ODR test (issue 10, item 6): this unit is built with the default flags, odr_wide.cpp
// with -mavx2 -mfma, and both instantiate spruce::sparse::spmm<float>. The products'
// bodies depend on the vector width, so without the SPRUCE_SIMD_ABI inline namespace the
// two units would define one inline function two ways and the linker would keep one of
// them for both (an ODR violation that links silently). Each unit must keep its own:
// its width as linked equals its width as compiled, the two spmm<float> are different
// functions, and both compute the right product.
#define ODR_UNIT odr_base
#include <cstdio>

#include "odr_unit.hpp"

namespace odr_wide {
odr_report report();
double product_error();
}  // namespace odr_wide

int main() {
  const odr_report base = odr_base::report(), wide = odr_wide::report();
  std::printf("base unit: compiled for %zu-byte vectors, linked %zu; wide unit: compiled %zu, linked %zu\n",
              base.compiled_bytes, base.linked_bytes, wide.compiled_bytes, wide.linked_bytes);
  int failures = 0;
  const auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::printf("FAILED: %s\n", what);
      ++failures;
    }
  };
  expect(wide.compiled_bytes != base.compiled_bytes,
         "the two units were compiled for the same vector width; the -m flags did not take effect");
  expect(base.linked_bytes == base.compiled_bytes, "the base unit runs the other unit's instantiation");
  expect(wide.linked_bytes == wide.compiled_bytes, "the wide unit runs the other unit's instantiation");
  expect(base.spmm_address != wide.spmm_address, "spmm<float> of both units is one function (merged by the linker)");
  expect(odr_base::product_error() <= 1e-5, "the base unit's spmm<float> is wrong");
#if defined(__x86_64__) || defined(_M_X64)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    expect(odr_wide::product_error() <= 1e-5, "the wide unit's spmm<float> is wrong");
  else
    std::printf("this CPU has no AVX2 + FMA: the wide unit's product is not run\n");
#endif
  return failures == 0 ? 0 : 1;
}
