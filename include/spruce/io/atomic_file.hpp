#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "spruce/core/error.hpp"

// Files are flushed through POSIX descriptors where the headers exist, so a renamed file
// is on disk, not only in the page cache; elsewhere the writer falls back to std::ofstream.
// This header is opt-in (the umbrella spruce/spruce.hpp does not include it), so these
// system headers reach only the translation units that write files.
#if __has_include(<fcntl.h>) && __has_include(<unistd.h>)
#include <fcntl.h>
#include <unistd.h>
#define SPRUCE_HAS_POSIX_FILES 1
#else
#include <fstream>
#include <random>
#define SPRUCE_HAS_POSIX_FILES 0
#endif

namespace spruce::io {

namespace detail {

/// A name for the temporary sibling of `path` that no other writer (thread or process)
/// picks: the process id (or a random number) and a per-process counter.
inline std::filesystem::path temporary_sibling(const std::filesystem::path& path) {
  static std::atomic<unsigned long long> counter{0};
#if SPRUCE_HAS_POSIX_FILES
  const unsigned long long id = static_cast<unsigned long long>(::getpid());
#else
  static const unsigned long long id = std::random_device{}();
#endif
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(id) + "." + std::to_string(counter.fetch_add(1));
  return tmp;
}

#if SPRUCE_HAS_POSIX_FILES
/// Writes all of `content` to `fd`, retrying short writes and EINTR. Returns 0 or the errno
/// of the failure (EIO for a device that stops taking bytes without saying why).
inline int write_all(int fd, std::string_view content) {
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ::ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // no progress and no error: a full device that does not say so
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return 0;
}

/// Writes all `size` bytes at `data` to `fd` at offset `at` (pwrite: the file position is
/// not used), retrying short writes and EINTR. Returns 0 or the errno of the failure.
inline int pwrite_all(int fd, const void* data, std::size_t size, off_t at) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ::ssize_t n = ::pwrite(fd, p, size, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    p += n;
    size -= static_cast<std::size_t>(n);
    at += static_cast<off_t>(n);
  }
  return 0;
}
#endif

/// Writes the concatenation of `parts` to a new file `tmp` and flushes it to the device.
/// Returns an empty string on success, else why it failed (the partial file may remain;
/// the caller removes it).
inline std::string write_new_file(const std::filesystem::path& tmp, std::span<const std::string_view> parts) {
#if SPRUCE_HAS_POSIX_FILES
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) return std::generic_category().message(errno);
  for (const std::string_view content : parts) {
    if (const int e = write_all(fd, content); e != 0) {
      ::close(fd);
      return std::generic_category().message(e);
    }
  }
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    return std::generic_category().message(e);
  }
  if (::close(fd) != 0) return std::generic_category().message(errno);
  return {};
#else
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) return "cannot create the file";
  for (const std::string_view content : parts) out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.flush();
  if (!out) return "write failed";
  out.close();
  if (!out) return "close failed";
  return {};
#endif
}

/// Makes a finished rename durable: fsyncs the directory that holds `path`. Failing here
/// leaves a complete file, so it is not an error.
inline void sync_parent(const std::filesystem::path& path) {
#if SPRUCE_HAS_POSIX_FILES
  const std::filesystem::path parent = path.parent_path();
  const int dfd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
#else
  (void)path;
#endif
}

}  // namespace detail

/// Replaces `path` with the concatenation of `parts` atomically: the bytes go to a
/// temporary sibling (`path.tmp.<pid>.<n>`), are flushed to the device (fsync where POSIX
/// is available), the sibling is renamed over `path` and the directory is synced, so a
/// reader or a crash sees the old file or the complete new one, never a half-written one.
/// The parts are written in order and never copied (a header and each tensor's bytes, say).
/// Throws spruce::error naming `what` and `path` when the directory is missing or not
/// writable or the rename fails; the temporary is removed then and an existing `path` is
/// left as it was.
inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::string_view> parts,
                                  std::string_view what = "the file") {
  const std::filesystem::path tmp = detail::temporary_sibling(path);
  std::string why = detail::write_new_file(tmp, parts);
  if (why.empty()) {
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (!ec) {
      detail::sync_parent(path);
      return;
    }
    why = "cannot rename " + tmp.string() + " over it: " + ec.message();
  }
  std::error_code ignored;
  std::filesystem::remove(tmp, ignored);
  throw error("cannot write " + std::string(what) + " to '" + path.string() + "' (" + why +
              "); pass a path in an existing, writable directory");
}

/// write_file_atomically for one buffer.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view content,
                                  std::string_view what = "the file") {
  write_file_atomically(path, std::span<const std::string_view>(&content, 1), what);
}

}  // namespace spruce::io
