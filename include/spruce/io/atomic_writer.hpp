#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
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
///
/// How the bytes travel (`buffering`): through the page cache (`page_cache`: write(), with
/// the device writeback started every 32 MiB), or straight from nine aligned 4 MiB staging
/// buffers to the device (`direct`: O_DIRECT, where the file system takes it; each full
/// block is written on its own thread while the caller fills the next, and up to eight may
/// be in flight, so the device stays busy through a pause of the caller's of up to 32 MiB
/// of device time: spruce-prune's selection pass over the next tensor). A large file
/// that has to reach the device before its rename anyway gains from `direct`: no page-cache
/// page is allocated and filled per 4 KiB (on a virtual machine that kernel copy into fresh
/// pages alone took 0.4-2.3 s per GB, where the device writes a GB in about 0.8 s), and the
/// final fsync finds nothing left to write; the file is not left in the page cache, so the
/// first read of it afterwards comes from the device. `automatic` (the default) picks
/// `direct` when the caller's `size_hint` is at least `direct_min_bytes` (64 MiB). A file
/// system that refuses O_DIRECT, at the open or at the first write, gets `page_cache`
/// writes of the same staged blocks: the bytes of the file are the same in every mode.
class atomic_writer {
 public:
  enum class buffering { automatic, page_cache, direct };
  static constexpr std::size_t direct_min_bytes = std::size_t{64} << 20;
  static constexpr std::size_t staging_bytes = std::size_t{4} << 20;  // a multiple of direct_align
  static constexpr std::size_t staging_count = 9;                     // buffers of staging_bytes
  static constexpr std::size_t direct_align = 4096;  // offset, length and address alignment of O_DIRECT writes

  explicit atomic_writer(const std::filesystem::path& path, std::string_view what = "the file",
                         std::size_t size_hint = 0, buffering mode = buffering::automatic)
      : path_(path), tmp_(detail::temporary_sibling(path)), what_(what) {
    if (mode == buffering::automatic) mode = size_hint >= direct_min_bytes ? buffering::direct : buffering::page_cache;
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
#if defined(O_DIRECT)
    if (mode == buffering::direct) {
      for (auto& b : stage_) {
        b.reset(static_cast<std::byte*>(std::aligned_alloc(direct_align, staging_bytes)));
        if (!b) throw error("atomic_writer for '" + path_.string() + "': cannot allocate its staging buffers (" +
                            std::to_string(staging_count * (staging_bytes >> 20)) +
                            " MiB); free memory, or construct it with buffering::page_cache");
      }
      fd_ = ::open(tmp_.c_str(), flags | O_DIRECT, 0666);
      direct_ = fd_ >= 0;
      if (fd_ < 0 && errno != EINVAL) fail(std::generic_category().message(errno));  // EINVAL: no O_DIRECT here
    }
#endif
    if (fd_ < 0) fd_ = ::open(tmp_.c_str(), flags, 0666);
    if (fd_ < 0) fail(std::generic_category().message(errno));
  }
  atomic_writer(const atomic_writer&) = delete;
  atomic_writer& operator=(const atomic_writer&) = delete;
  atomic_writer(atomic_writer&& o) noexcept
      : path_(std::move(o.path_)), tmp_(std::move(o.tmp_)), what_(std::move(o.what_)),
        fd_(std::exchange(o.fd_, -1)), written_(o.written_), flushed_(o.flushed_),
        stage_(std::move(o.stage_)), cur_(o.cur_), staged_(o.staged_),
        stage_at_(o.stage_at_), direct_(o.direct_), inflight_(std::move(o.inflight_)) {}
  atomic_writer& operator=(atomic_writer&&) = delete;
  ~atomic_writer() { abandon(); }

  /// Appends `bytes` to the temporary file.
  void write(std::string_view bytes) {
    if (fd_ < 0) throw error("atomic_writer for '" + path_.string() + "': write after commit or failure");
    if (!stage_[0]) {
      if (const int e = detail::write_all(fd_, bytes); e != 0) {
        abandon();
        fail(std::generic_category().message(e));
      }
      written_ += bytes.size();
      start_writeback();
      return;
    }
    while (!bytes.empty()) {
      const std::size_t n = std::min(bytes.size(), staging_bytes - staged_);
      std::memcpy(stage_[cur_].get() + staged_, bytes.data(), n);
      staged_ += n;
      written_ += n;
      bytes.remove_prefix(n);
      if (staged_ == staging_bytes) write_stage();
    }
  }
  void write(std::span<const std::byte> bytes) {
    write(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }

  /// Zero-copy appends, for a writer that stages its bytes (a direct one, also after a
  /// fallback to the page cache): the free rest of the current staging block, never empty
  /// and at most staging_bytes. A producer fills a prefix of it in place and hands that
  /// over with advance(n), which is write() of those n bytes without the copy (spruce-prune
  /// writes each pruned tensor's bytes this way, a GB of memcpy less per GB). Empty for a
  /// page-cache writer, whose write() copies straight into the kernel anyway, and after
  /// commit() or a failure: call write() then. A span is valid until the next advance() or
  /// write(), which may hand its block to the device.
  std::span<std::byte> staging_space() noexcept {
    if (fd_ < 0 || !stage_[0]) return {};
    return {stage_[cur_].get() + staged_, staging_bytes - staged_};
  }
  /// Appends the first `n` bytes of the last staging_space() (filled by the caller).
  void advance(std::size_t n) {
    if (fd_ < 0 || !stage_[0] || n > staging_bytes - staged_)
      throw error("atomic_writer for '" + path_.string() + "': advance(" + std::to_string(n) +
                  ") past its staging_space() (" + std::to_string(stage_[0] && fd_ >= 0 ? staging_bytes - staged_ : 0) +
                  " bytes; a bug in the caller)");
    staged_ += n;
    written_ += n;
    if (staged_ == staging_bytes) write_stage();
  }

  /// Bytes written so far.
  std::size_t written() const noexcept { return written_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  /// Whether the bytes go to the device with O_DIRECT (false: through the page cache).
  bool direct() const noexcept { return direct_; }

  /// Flushes the temporary to the device and renames it over `path`.
  void commit() {
    if (fd_ < 0) throw error("atomic_writer for '" + path_.string() + "': commit after commit or failure");
    if (stage_[0]) {
      // The last block, padded with zeros to the alignment, then the file cut to its length.
      const std::size_t padded = (staged_ + direct_align - 1) / direct_align * direct_align;
      std::memset(stage_[cur_].get() + staged_, 0, padded - staged_);
      staged_ = padded;
      if (staged_ > 0) write_stage();
      for (std::size_t b = 0; b < staging_count; ++b) wait_for_block(b);
      if (padded != 0 && ::ftruncate(fd_, static_cast<off_t>(written_)) != 0) {
        const int e = errno;
        abandon();
        fail(std::generic_category().message(e));
      }
    }
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
  struct free_deleter {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };

  [[noreturn]] void fail(const std::string& why) const {
    throw error("cannot write " + what_ + " to '" + path_.string() + "' (" + why +
                "); pass a path in an existing, writable directory");
  }
  struct block_result {
    int error = 0;           // errno of the failed write, or 0
    bool fell_back = false;  // O_DIRECT was refused and turned off for the descriptor
  };
  // Writes `size` bytes (a multiple of direct_align) at offset `at`. A file system that takes
  // O_DIRECT at the open but refuses the write (EINVAL: an alignment it does not support)
  // gets the same block through the page cache, and every later one.
  static block_result write_block(int fd, const std::byte* data, std::size_t size, std::size_t at, bool direct) {
    block_result r{detail::pwrite_all(fd, data, size, static_cast<off_t>(at)), false};
#if defined(O_DIRECT)
    if (r.error == EINVAL && direct) {
      const int fl = ::fcntl(fd, F_GETFL);
      if (fl >= 0 && ::fcntl(fd, F_SETFL, fl & ~O_DIRECT) == 0) {
        r.fell_back = true;
        r.error = detail::pwrite_all(fd, data, size, static_cast<off_t>(at));
      }
    }
#else
    (void)direct;
#endif
    return r;
  }
  // Waits for buffer b's write, if one is in flight; its failure fails the writer (nothing
  // is left behind).
  void wait_for_block(std::size_t b) {
    if (!inflight_[b].valid()) return;
    const block_result r = inflight_[b].get();
    if (r.fell_back) direct_ = false;
    if (r.error != 0) {
      abandon();
      fail(std::generic_category().message(r.error));
    }
  }
  // Hands the staged block (staged_ bytes) to its own thread and moves on to the next
  // buffer, once that buffer's own earlier write has finished.
  void write_stage() {
    inflight_[cur_] = std::async(std::launch::async, write_block, fd_, stage_[cur_].get(), staged_, stage_at_, direct_);
    stage_at_ += staged_;
    staged_ = 0;
    cur_ = (cur_ + 1) % staging_count;
    wait_for_block(cur_);
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
    for (auto& f : inflight_)
      if (f.valid()) f.wait();  // the block's thread uses fd_ and a buffer
    if (fd_ < 0) return;
    ::close(std::exchange(fd_, -1));
    remove_tmp();
  }

  std::filesystem::path path_, tmp_;
  std::string what_;
  int fd_ = -1;
  std::size_t written_ = 0;
  std::size_t flushed_ = 0;  // page_cache: bytes whose writeback has been started
  std::array<std::unique_ptr<std::byte, free_deleter>, staging_count> stage_;  // direct (also after a fallback)
  std::size_t cur_ = 0;                                // the buffer being filled
  std::size_t staged_ = 0;                             // its bytes
  std::size_t stage_at_ = 0;                           // its offset in the file
  bool direct_ = false;                                // O_DIRECT is on for fd_
  std::array<std::future<block_result>, staging_count> inflight_;  // each buffer's write in flight
};

}  // namespace spruce::io
