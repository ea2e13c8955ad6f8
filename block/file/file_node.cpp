#include "block/file/file_node.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/async/thread_pool.h"
#include "base/error.h"
#include "base/units.h"
#include "block/file/image_lock.h"

namespace keel::block {

AlignedBuffer::AlignedBuffer(size_t size, size_t alignment) : size_(size) {
  data_ = static_cast<std::byte*>(std::aligned_alloc(alignment, align_up(std::max<size_t>(size, 1), alignment)));
  if (!data_) throw std::bad_alloc();
  std::memset(data_, 0, size);
}
AlignedBuffer::~AlignedBuffer() { std::free(data_); }
AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(o.size_) {}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  return *this;
}

namespace {

constexpr uint32_t kDirectAlignment = 4096;
constexpr size_t kZeroChunk = 1 << 20;

uint64_t fd_size(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) raise_errno(errno, "fstat");
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) raise_errno(errno, "BLKGETSIZE64");
    return bytes;
  }
  return static_cast<uint64_t>(st.st_size);
}

// Small writes through the page cache are done in place with pwrite: on filesystems without non-blocking
// buffered writes (ext4) io_uring hands every one to a kernel worker, which costs several times the copy
// (4 KiB random writes over NBD: about 45k IOPS that way, 80-95k in place; docs/PERFORMANCE.md). A write that
// has to wait for writeback holds the loop for that time, as it would hold any thread.
constexpr size_t kInlineWriteBytes = 16 * 1024;

// Runs a positional syscall either through io_uring or on the thread pool.
template <typename UringPrep, typename Syscall>
Task<int64_t> submit(EventLoop& loop, UringPrep prep, Syscall call) {
  if (loop.backend() == IoBackend::IoUring) co_return co_await loop.uring(prep);
  co_return co_await loop.pool().run([call]() -> int64_t {
    int64_t r = call();
    return r < 0 ? -errno : r;
  });
}

}  // namespace

FileNode::FileNode(std::string path, int fd, const FileOptions& options)
    : BlockNode(std::move(path), options.writable),
      fd_(fd),
      buffered_fd_(fd),
      size_(fd_size(fd)),
      cache_(options.cache),
      direct_alignment_(options.cache.direct ? kDirectAlignment : 1) {
  struct stat st;
  fstat(fd, &st);
  is_regular_ = S_ISREG(st.st_mode);
  if (options.cache.direct) {
    buffered_fd_ = ::open(filename_.c_str(), (options.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (buffered_fd_ < 0) raise(errno, "Could not open '{}': {}", filename_, errno_text(errno));
  }
}

FileNode::~FileNode() {
  if (buffered_fd_ != fd_) ::close(buffered_fd_);
  unlock_image(fd_);
  ::close(fd_);
}

std::unique_ptr<FileNode> FileNode::open(const std::string& path, const FileOptions& options) {
  int flags = (options.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  if (options.cache.direct) flags |= O_DIRECT;
  int fd = ::open(path.c_str(), flags);
  FileOptions effective = options;
  if (fd < 0 && options.cache.direct && errno == EINVAL) {
    if (!options.cache.buffered_fallback)
      raise(EINVAL, "Could not open '{}': filesystem does not support O_DIRECT", path);
    effective.cache.direct = false;
    fd = ::open(path.c_str(), flags & ~O_DIRECT);
  }
  if (fd < 0) raise(errno, "Could not open '{}': {}", path, errno_text(errno));
  try {
    LockRequest req = lock_request(options.writable, options.force_share);
    lock_image(fd, path, req.perm, req.shared);
  } catch (const Error& e) {
    ::close(fd);
    throw;
  }
  return std::unique_ptr<FileNode>(new FileNode(path, fd, effective));
}

void FileNode::create(const std::string& path, uint64_t size, Preallocation prealloc) {
  if (prealloc == Preallocation::Metadata) raise(EINVAL, "Unsupported preallocation mode 'metadata'");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) raise(errno, "Could not create '{}': {}", path, errno_text(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // Take the writer's locks so that an image in use is not truncated under its owner.
  LockRequest req = lock_request(true, false);
  lock_image(fd, path, req.perm, req.shared);
  struct stat st;
  fstat(fd, &st);
  if (S_ISREG(st.st_mode)) {
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, static_cast<off_t>(size)) < 0)
      raise(errno, "Could not resize file: {}", errno_text(errno));
  }
  if (prealloc == Preallocation::Falloc && size > 0) {
    int err = posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (err) raise(err, "Could not preallocate data for the new file: {}", errno_text(err));
  } else if (prealloc == Preallocation::Full) {
    std::vector<char> zeros(kZeroChunk);
    for (uint64_t done = 0; done < size;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), size - done));
      ssize_t w = pwrite(fd, zeros.data(), n, static_cast<off_t>(done));
      if (w <= 0) raise(errno, "Could not write zeros for preallocation: {}", errno_text(errno));
      done += static_cast<uint64_t>(w);
    }
    if (fsync(fd) < 0) raise(errno, "Could not flush file: {}", errno_text(errno));
  }
}

int FileNode::fd_for(uint64_t offset, size_t length, const void* buffer) const {
  const uint64_t a = direct_alignment_;
  const bool aligned = offset % a == 0 && length % a == 0 && reinterpret_cast<uintptr_t>(buffer) % a == 0;
  return aligned ? fd_ : buffered_fd_;
}

Task<void> FileNode::transfer_all(Direction direction, int fd, uint64_t offset, std::byte* data, size_t length) {
  const bool reading = direction == Direction::Read;
  size_t done = 0;
  while (done < length) {
    std::byte* p = data + done;
    const size_t n = length - done;
    const off_t pos = static_cast<off_t>(offset + done);
    if (!reading && n <= kInlineWriteBytes && direct_alignment_ == 1) {
      // A failure falls through to the request below, which reports it.
      const ssize_t w = ::pwrite(fd, p, n, pos);
      if (w > 0) {
        done += static_cast<size_t>(w);
        continue;
      }
    }
    const int64_t r = co_await submit(loop(),
        [=](io_uring_sqe* sqe) {
          if (reading)
            io_uring_prep_read(sqe, fd, p, static_cast<unsigned>(n), pos);
          else
            io_uring_prep_write(sqe, fd, p, static_cast<unsigned>(n), pos);
        },
        [=] { return static_cast<int64_t>(reading ? ::pread(fd, p, n, pos) : ::pwrite(fd, p, n, pos)); });
    if (r == -EINTR || r == -EAGAIN) continue;
    if (r < 0)
      raise(static_cast<int>(-r), "Could not {} {} bytes at offset {} of '{}': {}", reading ? "read" : "write", n, pos,
            filename_, errno_text(static_cast<int>(-r)));
    if (r == 0) {
      if (!reading) raise(EIO, "Could not write to '{}' at offset {}: no progress", filename_, pos);
      // Past the end of the file reads as zeros, as for any sparse region.
      std::memset(p, 0, n);
      break;
    }
    done += static_cast<size_t>(r);
  }
  if (!reading && offset + length > size_) size_ = offset + length;
}

Task<void> FileNode::read(uint64_t offset, std::span<std::byte> buffer) {
  co_await transfer_all(Direction::Read, fd_for(offset, buffer.size(), buffer.data()), offset, buffer.data(),
                        buffer.size());
}

Task<void> FileNode::write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags) {
  // The kernel only reads from the buffer of a write.
  co_await transfer_all(Direction::Write, fd_for(offset, data.size(), data.data()), offset,
                        const_cast<std::byte*>(data.data()), data.size());
  if (flags.fua || cache_.writethrough) co_await flush();
}

Task<int> FileNode::fallocate(int mode, uint64_t offset, uint64_t length) {
  int64_t r = co_await submit(loop(),
      [=, this](io_uring_sqe* sqe) {
        io_uring_prep_fallocate(sqe, fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(length));
      },
      [=, this] {
        return static_cast<int64_t>(::fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(length)));
      });
  co_return static_cast<int>(r);
}

Task<void> FileNode::write_zero_buffers(uint64_t offset, uint64_t length) {
  AlignedBuffer zeros(static_cast<size_t>(std::min<uint64_t>(length, kZeroChunk)),
                      std::max<uint32_t>(direct_alignment_, 8));
  while (length > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(length, zeros.size()));
    co_await write(offset, std::span<const std::byte>(zeros.data(), n));
    offset += n;
    length -= n;
  }
}

Task<void> FileNode::write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags) {
  if (length == 0) co_return;
  // fallocate() never shrinks the file, so this is safe while other requests extend it.
  int r = -EOPNOTSUPP;
  if (is_regular_ && flags.may_unmap && offset + length <= size_)
    r = co_await fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  if (r < 0) r = co_await fallocate(FALLOC_FL_ZERO_RANGE, offset, length);
  forget_data_extent();
  if (r == 0) {
    size_ = std::max(size_, offset + length);
    co_return;
  }
  if (flags.no_fallback) raise(ENOTSUP, "write zeroes without fallback is not supported on '{}'", filename_);
  co_await write_zero_buffers(offset, length);
}

Task<void> FileNode::discard(uint64_t offset, uint64_t length) {
  if (!is_regular_ || length == 0) co_return;
  // Discard is advisory: a filesystem that cannot punch holes keeps the data.
  co_await fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  forget_data_extent();
}

Task<void> FileNode::flush() {
  if (cache_.no_flush) co_return;
  int64_t r = co_await submit(
      loop(), [this](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC); },
      [this] { return static_cast<int64_t>(::fdatasync(fd_)); });
  if (r < 0) raise(static_cast<int>(-r), "Could not flush '{}': {}", filename_, errno_text(static_cast<int>(-r)));
}

Task<BlockStatus> FileNode::block_status(uint64_t offset, uint64_t length) {
  BlockStatus st;
  st.allocated = st.allocated_in_chain = true;
  uint64_t end = std::min(offset + length, size_);
  if (offset >= end) {
    st.length = length;
    st.zero = true;
    co_return st;
  }
  st.length = end - offset;
  st.data = true;
  st.host_offset = offset;
  if (!is_regular_) co_return st;
  if (offset >= data_begin_ && offset < data_end_) {
    st.length = std::min(end, data_end_) - offset;
    co_return st;
  }
  off_t data = lseek(fd_, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) {
    if (errno == ENXIO) {  // only a hole up to the end of the file
      st.data = false;
      st.zero = true;
      st.host_offset.reset();
    }
    co_return st;
  }
  if (static_cast<uint64_t>(data) > offset) {
    st.data = false;
    st.zero = true;
    st.host_offset.reset();
    st.length = std::min<uint64_t>(static_cast<uint64_t>(data), end) - offset;
    co_return st;
  }
  off_t hole = lseek(fd_, static_cast<off_t>(offset), SEEK_HOLE);
  if (hole > 0) {
    st.length = std::min<uint64_t>(static_cast<uint64_t>(hole), end) - offset;
    data_begin_ = offset;
    data_end_ = std::min<uint64_t>(static_cast<uint64_t>(hole), size_);
  }
  co_return st;
}

Task<void> FileNode::truncate(uint64_t size, Preallocation prealloc) {
  if (!is_regular_) {
    if (size > size_) raise(EINVAL, "Cannot grow device files");
    co_return;
  }
  if (prealloc == Preallocation::Metadata) raise(ENOTSUP, "Unsupported preallocation mode 'metadata'");
  uint64_t old = size_;
  if (::ftruncate(fd_, static_cast<off_t>(size)) < 0) raise(errno, "Failed to resize the file: {}", errno_text(errno));
  size_ = size;
  forget_data_extent();
  if (size > old && prealloc == Preallocation::Falloc) {
    int err = posix_fallocate(fd_, static_cast<off_t>(old), static_cast<off_t>(size - old));
    if (err) raise(err, "Could not preallocate new data: {}", errno_text(err));
  } else if (size > old && prealloc == Preallocation::Full) {
    co_await write_zero_buffers(old, size - old);
  }
}

std::optional<uint64_t> FileNode::allocated_size() const {
  struct stat st;
  if (fstat(fd_, &st) < 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

Limits FileNode::limits() const {
  // Writes with FUA flush (write()); a file's page cache is one for every reader, so connections see each other.
  return {.request_alignment = 1,
          .discard_granularity = is_regular_ ? 4096u : 0u,
          .can_zero = true,
          .can_fast_zero = is_regular_,
          .can_trim = is_regular_,
          .can_fua = true,
          .can_multi_conn = true,
          .zero_init = is_regular_};
}

}  // namespace keel::block
