#pragma once
// Loads the agreed PyTorch reference fixtures (../shared/fixtures, see its README).

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace spruce_test {

inline std::string fixture_dir() {
  if (const char* env = std::getenv("SPRUCE_FIXTURES")) return env;
  return SPRUCE_FIXTURE_DIR;
}

/// Parses fixture `file` (e.g. "fine_grained_threshold.json"); a missing file is a test
/// failure with the path in the message, never a silent skip.
inline nlohmann::json load_fixture(const std::string& file) {
  const std::string path = fixture_dir() + "/" + file;
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("fixture " + path +
                             " not found; check out ../shared beside the repository or set "
                             "SPRUCE_FIXTURES");
  return nlohmann::json::parse(in);
}

/// Numbers are exact float32 values written as decimals: parse as double, cast to float.
template <class T = float>
std::vector<T> values(const nlohmann::json& a) {
  std::vector<T> v;
  v.reserve(a.size());
  for (const auto& x : a) v.push_back(static_cast<T>(x.get<double>()));
  return v;
}

inline std::vector<std::uint8_t> mask_bytes(const nlohmann::json& a) {
  std::vector<std::uint8_t> v;
  v.reserve(a.size());
  for (const auto& x : a) v.push_back(static_cast<std::uint8_t>(x.get<int>()));
  return v;
}

inline std::vector<std::size_t> shape(const nlohmann::json& a) {
  return a.get<std::vector<std::size_t>>();
}

}  // namespace spruce_test
