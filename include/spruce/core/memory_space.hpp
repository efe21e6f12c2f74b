#pragma once

namespace spruce {

/// Memory-space tags. A view carries one as a template parameter so that algorithms can
/// dispatch to the CPU or the CUDA backend at compile time (a partial specialization per
/// space); the tag never changes how an index maps to an offset.
struct host_space {
  static constexpr const char* name = "host";
};

/// Global memory of the current CUDA device. Views in this space are only dereferenced by
/// device code; the host API reads their shape and pointer, never their elements.
struct cuda_space {
  static constexpr const char* name = "cuda";
};

template <class Space>
inline constexpr bool is_memory_space_v = false;
template <>
inline constexpr bool is_memory_space_v<host_space> = true;
template <>
inline constexpr bool is_memory_space_v<cuda_space> = true;

}  // namespace spruce
