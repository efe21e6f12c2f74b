// Compiled by tests/cuda/ptxas_check.py with `-Xptxas -v` (never run): explicit
// instantiations of the hot kernels, whose ptxas report must show no stack frame (a stack
// frame means local memory traffic on the memory-bound passes).
#include "spruce/cuda/kernels.hpp"

namespace cd = spruce::cuda::detail;
using mag = spruce::select::by_magnitude<float>;
using src = cd::contiguous_src<float>;

template __global__ void cd::histogram_kernel<mag, src>(src, std::size_t, cd::select_state<std::uint32_t>*, cd::scan_status*);
template __global__ void cd::mask_kernel<mag, src>(src, std::size_t, std::uint32_t, std::uint8_t*);
template __global__ void cd::tie_count_kernel<mag, src>(src, std::size_t, std::uint32_t, unsigned long long*);
template __global__ void cd::tie_mask_kernel<mag, src>(src, std::size_t, std::uint32_t, const unsigned long long*, unsigned long long,
                                                        std::uint8_t*);
template __global__ void cd::apply_kernel<float, true>(float*, cd::strided_shape, std::size_t, const std::uint8_t*);
template __global__ void cd::count_nonzero_kernel<src>(src, std::size_t, unsigned long long*);
template __global__ void cd::n_m_fixed_kernel<2, 4, float>(const float*, std::uint8_t*, std::size_t, std::size_t, std::size_t,
                                                           cd::scan_status*);
template __global__ void cd::n_m_spmm_kernel<float>(const float*, const std::uint8_t*, std::size_t, std::size_t, std::size_t, std::size_t,
                                                    std::size_t, std::size_t, const float*, std::size_t, float*, float, float);
template __global__ void cd::n_m_write_kernel<float>(const float*, const std::uint8_t*, std::size_t, std::size_t, std::size_t, std::size_t,
                                                     std::size_t, std::size_t, std::size_t, float*, std::uint8_t*);
