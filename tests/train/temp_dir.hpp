// A fresh directory under the system temp dir for one test, removed with everything in it
// (permissions restored first, so a test that made it read-only still cleans up).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace test_support {

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

}  // namespace test_support
