#pragma once
// Host-boundary error handling of the CUDA layer: CUDA status codes become spruce::error
// (device code never throws; the host functions check what the runtime returns).

#if !defined(__CUDACC__)
#error "spruce/cuda/*.hpp are CUDA headers: include <spruce/cuda.hpp> from a file compiled by nvcc"
#endif

#include <cuda_runtime.h>

#include <string>

#include "spruce/core/error.hpp"

namespace spruce::cuda {

/// Throws spruce::error when `status` is not cudaSuccess; `what` says which call failed
/// and for which tensor, so the message tells the user where to look.
inline void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess)
    throw error("CUDA error in " + what + ": " + cudaGetErrorName(status) + " (" +
                cudaGetErrorString(status) + ")");
}

/// Number of CUDA devices this process can use. Any error of the runtime (no driver, no
/// device, a container without the device nodes) counts as zero devices, so callers can
/// skip instead of fail; the sticky error state is cleared.
inline int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace spruce::cuda
