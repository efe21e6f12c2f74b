// Compiled by nvcc (never run): every SPRUCE_HD body the CPU and CUDA backends share is
// called from device code here, so `nvcc -Werror all-warnings` flags anything device code
// cannot call (std::bit_cast, std::array::operator[], std::numeric_limits, host-only
// constexpr functions). The ctest `nvcc_hd_bodies` builds it when nvcc is found.
#include "spruce/core/tensor_view.hpp"
#include "spruce/criterion/gradient.hpp"
#include "spruce/criterion/hessian_diagonal.hpp"
#include "spruce/criterion/l1.hpp"
#include "spruce/criterion/l2.hpp"
#include "spruce/criterion/ln.hpp"
#include "spruce/criterion/taylor.hpp"
#include "spruce/select/key.hpp"

namespace probe {

template <class C, class T>
__device__ T score(const C& c, const T* w, int n) {
  T acc = c.template identity<T>();
  for (int i = 0; i < n; ++i) acc = c.reduce(acc, c.element(w[i], w[i], w[i]));
  return c.finish(acc);
}

template <class T>
__global__ void criteria(const T* w, T* out, int n, double p) {
  out[0] = score(spruce::criterion::l1{}, w, n);
  out[1] = score(spruce::criterion::l2{}, w, n);
  out[2] = score(spruce::criterion::ln{p}, w, n);
  out[3] = score(spruce::criterion::gradient{}, w, n);
  out[4] = score(spruce::criterion::taylor{}, w, n);
  out[5] = score(spruce::criterion::hessian_diagonal{}, w, n);
}

template <class T>
__global__ void keys(const T* x, spruce::select::key_t<T>* k, T* back, bool* ok, int n) {
  using namespace spruce::select;
  for (int i = 0; i < n; ++i) {
    k[i] = by_value<T>::key(x[i]) ^ by_magnitude<T>::key(x[i]);
    back[i] = by_value<T>::value(k[i]) + by_magnitude<T>::value(k[i]);
    ok[i] = valid_key<by_value<T>>(k[i]) && valid_key<by_magnitude<T>>(k[i]);
  }
}

template <class V>
__global__ void views(V v, float* out) {
  out[0] = v(1, 2, 0) + static_cast<float>(v.extent(1) + v.stride(0) + v.size());
  out[1] = v.is_contiguous() && !v.empty() ? 1.0f : 0.0f;
  out[2] = static_cast<float>(v.mapping().required_span_size() + v.is_exhaustive());
}

}  // namespace probe

template __global__ void probe::criteria<float>(const float*, float*, int, double);
template __global__ void probe::criteria<double>(const double*, double*, int, double);
template __global__ void probe::keys<float>(const float*, spruce::select::key_t<float>*, float*, bool*, int);
template __global__ void probe::keys<double>(const double*, spruce::select::key_t<double>*, double*, bool*, int);
template __global__ void probe::views<spruce::view<float, 3>>(spruce::view<float, 3>, float*);
template __global__ void probe::views<spruce::strided_view<float, 3>>(spruce::strided_view<float, 3>, float*);
