#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace spruce {

/// "[2, 3, 4]": how shapes appear in spruce's messages.
inline std::string shape_string(std::span<const std::size_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace spruce
