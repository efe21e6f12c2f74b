#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "spruce/core/error.hpp"

#if !(__has_include(<sys/mman.h>) && __has_include(<fcntl.h>) && __has_include(<unistd.h>))
#error "spruce/io/mapped_file.hpp needs POSIX mmap (<sys/mman.h>)"
#endif
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace spruce::io {

/// A whole file mapped read-only into memory, so that tensors inside it are read as views
/// of the page cache and never copied (a checkpoint of many gigabytes costs no heap). The
/// mapping lives as long as the object (move-only); every view handed out by a reader that
/// owns one stays valid that long. `release(offset, length)` tells the kernel that a range
/// will not be read again (madvise MADV_DONTNEED), so a program that streams tensor by
/// tensor keeps only the tensor it works on resident; the bytes stay in the page cache and
/// reading them again simply maps them back. An empty file maps to an empty span. Opening
/// throws spruce::error naming `what` and the path, with the system's reason and a fix,
/// when the file is missing, not a regular file, unreadable, or cannot be mapped.
class mapped_file {
 public:
  mapped_file() = default;

  explicit mapped_file(const std::filesystem::path& path, std::string_view what = "file") : path_(path) {
    auto fail = [&](const std::string& why, const std::string& fix) {
      throw error("cannot read " + std::string(what) + " '" + path.string() + "': " + why + "; " + fix);
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      fail(std::generic_category().message(e),
           e == ENOENT ? "check the path" : "check the path and its permissions");
    }
    struct ::stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("it is not a regular file", "pass the path of a file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        fail("mmap failed (" + std::generic_category().message(e) + ")",
             "check that the file system supports memory-mapped files and that address space is left");
      }
      data_ = static_cast<const std::byte*>(p);
      (void)::madvise(p, size_, MADV_SEQUENTIAL);
    }
    ::close(fd);  // the mapping keeps the file open
  }

  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept
      : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~mapped_file() { unmap(); }

  const std::filesystem::path& path() const noexcept { return path_; }
  std::size_t size() const noexcept { return size_; }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

  /// Drops the whole pages inside [offset, offset + length) from this process's resident
  /// set (the file is unchanged; a later read faults them back in from the page cache).
  void release(std::size_t offset, std::size_t length) const noexcept {
    if (!data_ || offset >= size_) return;
    length = std::min(length, size_ - offset);
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t b = (offset + page - 1) / page * page;
    const std::size_t e = (offset + length) / page * page;
    if (e > b) (void)::madvise(const_cast<std::byte*>(data_) + b, e - b, MADV_DONTNEED);
  }

 private:
  void unmap() noexcept {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace spruce::io
