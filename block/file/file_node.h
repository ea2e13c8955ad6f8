// FileNode: the protocol driver for local files and block devices. Requests go
// through the loop's io_uring ring, or the thread pool when io_uring is not
// available. With O_DIRECT (cache=none), requests that are not block aligned
// go through a second, buffered descriptor of the same file (Linux keeps the
// two coherent), so format drivers above may issue any offset and length.
#pragma once

#include <memory>
#include <string>

#include "block/node.h"

namespace keel::block {

struct FileOptions {
  bool writable = false;
  bool force_share = false;
  CacheMode cache;
};

class FileNode final : public BlockNode {
 public:
  // Opens and locks `path`; raises with "Could not open 'path': reason".
  static std::unique_ptr<FileNode> open(const std::string& path, const FileOptions& options);
  // Creates (or truncates) `path` with `size` bytes, preallocated as asked.
  static void create(const std::string& path, uint64_t size, Preallocation prealloc);
  ~FileNode() override;

  std::string_view format_name() const override { return "file"; }
  uint64_t size() const override { return size_; }

  Task<void> read(uint64_t offset, std::span<std::byte> buffer) override;
  Task<void> write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags = {}) override;
  Task<void> write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags = {}) override;
  Task<void> discard(uint64_t offset, uint64_t length) override;
  Task<void> flush() override;
  Task<BlockStatus> block_status(uint64_t offset, uint64_t length) override;
  Task<void> truncate(uint64_t size, Preallocation prealloc) override;
  Limits limits() const override;
  std::optional<uint64_t> allocated_size() const override;

  int fd() const noexcept { return fd_; }

 private:
  FileNode(std::string path, int fd, const FileOptions& options);

  // Transfers the whole buffer through `fd`, retrying short transfers; a read
  // past the end of the file fills the rest with zeros.
  enum class Direction { Read, Write };
  Task<void> transfer_all(Direction direction, int fd, uint64_t offset, std::byte* data, size_t length);
  // The descriptor for a transfer: the O_DIRECT one only when it is aligned for it.
  int fd_for(uint64_t offset, size_t length, const void* buffer) const;
  Task<int> fallocate(int mode, uint64_t offset, uint64_t length);
  Task<void> write_zero_buffers(uint64_t offset, uint64_t length);
  // Only discard, zeroing and truncate turn data into holes: they forget the cached extent once done.
  void forget_data_extent() noexcept { data_begin_ = data_end_ = 0; }

  int fd_;
  int buffered_fd_;  // == fd_ without O_DIRECT
  uint64_t size_;
  CacheMode cache_;
  bool is_regular_;
  uint32_t direct_alignment_;  // 1 without O_DIRECT
  // The last data extent lseek found, [data_begin_, data_end_), as qemu's block-status cache: a sequential
  // reader asks about the same extent for every request (two lseeks each, an extent-tree walk on ext4).
  uint64_t data_begin_ = 0;
  uint64_t data_end_ = 0;
};

// A buffer aligned for O_DIRECT, zero-initialised.
struct AlignedBuffer {
  explicit AlignedBuffer(size_t size, size_t alignment = 4096);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  std::span<std::byte> span() noexcept { return {data_, size_}; }
  std::span<std::byte> span(size_t offset, size_t length) noexcept { return {data_ + offset, length}; }

 private:
  std::byte* data_;
  size_t size_;
};

}  // namespace keel::block
