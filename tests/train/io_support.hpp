// Shared by the training library's I/O tests: temporary directories, whole-file reads and
// the message of an expected spruce::error.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "spruce/core/error.hpp"

namespace test_support {

/// A fresh directory under the system temp dir for one test, removed with everything in
/// it (permissions restored first, so a test that made it read-only still cleans up).
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() / std::string("spruce_test_")
                                                        .append(tag)
                                                        .append("_")
                                                        .append(std::to_string(::getpid()))
                                                        .append("_")
                                                        .append(std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

/// The whole file as bytes of type Byte (char or unsigned char).
template <class Byte>
std::vector<Byte> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  const std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return std::vector<Byte>(raw.begin(), raw.end());
}

/// The message of the spruce::error `f` throws (fails the test when it throws nothing).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const spruce::error& e) {
    return e.what();
  }
  FAIL("expected a spruce::error");
  return {};
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace test_support
