#pragma once

#include <stdexcept>
#include <string>

namespace spruce {

/// The one exception type spruce throws from its host API. Every message says what was
/// wrong and how to fix it. A function that throws it has changed nothing: inputs are
/// validated before anything is written.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error("spruce: " + what) {}
};

namespace detail {

/// "tensor 'name'" or "tensor" when the name is empty; used to make messages specific.
inline std::string tensor_label(const std::string& name) {
  return name.empty() ? std::string("tensor") : "tensor '" + name + "'";
}

}  // namespace detail
}  // namespace spruce
