#pragma once

#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "spruce/core/error.hpp"
#include "spruce/io/atomic_file.hpp"

#if !SPRUCE_HAS_POSIX_FILES
#error "spruce/io/atomic_writer.hpp needs POSIX files (<fcntl.h>, <unistd.h>)"
#endif

namespace spruce::io {

/// write_file_atomically for output produced piece by piece (a pruned checkpoint written
/// tensor by tensor, never held whole): the bytes go to a temporary sibling of `path`
/// (`path.tmp.<pid>.<n>`, created at construction, so a missing or read-only directory
/// fails before any work is done); `commit()` fsyncs it, renames it over `path` and syncs
/// the directory. A writer destroyed without commit() (an error on the way) removes the
/// temporary, so an existing `path` is never partly overwritten and a failed run leaves
/// nothing behind. Several writers committed one after another give each file the same
/// guarantee (a sharded checkpoint's shards and index). Errors throw spruce::error naming
/// `what` and `path`, with the system's reason and a fix.
class atomic_writer {
 public:
  explicit atomic_writer(const std::filesystem::path& path, std::string_view what = "the file")
      : path_(path), tmp_(detail::temporary_sibling(path)), what_(what) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0) fail(std::generic_category().message(errno));
  }
  atomic_writer(const atomic_writer&) = delete;
  atomic_writer& operator=(const atomic_writer&) = delete;
  atomic_writer(atomic_writer&& o) noexcept
      : path_(std::move(o.path_)), tmp_(std::move(o.tmp_)), what_(std::move(o.what_)),
        fd_(std::exchange(o.fd_, -1)), written_(o.written_), flushed_(o.flushed_) {}
  atomic_writer& operator=(atomic_writer&&) = delete;
  ~atomic_writer() { abandon(); }

  /// Appends `bytes` to the temporary file.
  void write(std::string_view bytes) {
    if (fd_ < 0) throw error("atomic_writer for '" + path_.string() + "': write after commit or failure");
    if (const int e = detail::write_all(fd_, bytes); e != 0) {
      abandon();
      fail(std::generic_category().message(e));
    }
    written_ += bytes.size();
    start_writeback();
  }
  void write(std::span<const std::byte> bytes) {
    write(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }

  /// Bytes written so far.
  std::size_t written() const noexcept { return written_; }
  const std::filesystem::path& path() const noexcept { return path_; }

  /// Flushes the temporary to the device and renames it over `path`.
  void commit() {
    if (fd_ < 0) throw error("atomic_writer for '" + path_.string() + "': commit after commit or failure");
    if (::fsync(fd_) != 0) {
      const int e = errno;
      abandon();
      fail(std::generic_category().message(e));
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {
      const int e = errno;
      remove_tmp();
      fail(std::generic_category().message(e));
    }
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) {
      remove_tmp();
      fail("cannot rename " + tmp_.string() + " over it: " + ec.message());
    }
    detail::sync_parent(path_);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw error("cannot write " + what_ + " to '" + path_.string() + "' (" + why +
                "); pass a path in an existing, writable directory");
  }
  // Every 32 MiB, asks the kernel to start writing what came since the last time back to
  // the device (Linux's sync_file_range, asynchronous: it neither waits nor makes anything
  // durable), so the disk works while the producer computes and commit()'s fsync finds
  // little left to write. Advisory: an error here is left for fsync to report.
  void start_writeback() noexcept {
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    constexpr std::size_t step = std::size_t{32} << 20;
    if (written_ - flushed_ < step) return;
    (void)::sync_file_range(fd_, static_cast<off_t>(flushed_), static_cast<off_t>(written_ - flushed_),
                            SYNC_FILE_RANGE_WRITE);
    flushed_ = written_;
#endif
  }
  void remove_tmp() noexcept {
    std::error_code ignored;
    std::filesystem::remove(tmp_, ignored);
  }
  void abandon() noexcept {
    if (fd_ < 0) return;
    ::close(std::exchange(fd_, -1));
    remove_tmp();
  }

  std::filesystem::path path_, tmp_;
  std::string what_;
  int fd_ = -1;
  std::size_t written_ = 0;
  std::size_t flushed_ = 0;  // bytes whose writeback has been started
};

}  // namespace spruce::io
