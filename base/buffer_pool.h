// BufferPool: reusable byte buffers for the requests of one connection (one
// loop; not thread-safe). A request's buffer is neither zero-filled nor fresh
// from the kernel: taking a new 256 KiB vector per NBD read costs a memset and,
// once glibc hands the memory back, page faults that zero it again, which is
// as much work as the read itself. Buffers are 4 KiB aligned, so O_DIRECT
// reads and writes use them as they are.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace keel {

class BufferPool {
 public:
  // Keeps at most `max_kept_bytes` of returned buffers for reuse; the rest are freed.
  explicit BufferPool(size_t max_kept_bytes) : max_kept_bytes_(max_kept_bytes) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  struct Free {
    void operator()(std::byte* p) const noexcept;
  };
  using Block = std::unique_ptr<std::byte[], Free>;

  // A buffer of `size()` bytes with unspecified contents; it goes back to its pool when destroyed, so the pool
  // must outlive it.
  class Buffer {
   public:
    Buffer() = default;
    Buffer(Buffer&& o) noexcept
        : pool_(std::exchange(o.pool_, nullptr)), block_(std::move(o.block_)), capacity_(o.capacity_), size_(o.size_) {}
    Buffer& operator=(Buffer&& o) noexcept;
    ~Buffer() { release(); }

    std::span<std::byte> span() const noexcept { return {block_.get(), size_}; }
    std::byte* data() const noexcept { return block_.get(); }
    size_t size() const noexcept { return size_; }

   private:
    friend class BufferPool;
    Buffer(BufferPool* pool, Block block, size_t capacity, size_t size)
        : pool_(pool), block_(std::move(block)), capacity_(capacity), size_(size) {}
    void release() noexcept;

    BufferPool* pool_ = nullptr;
    Block block_;
    size_t capacity_ = 0;
    size_t size_ = 0;
  };

  Buffer take(size_t size);
  size_t kept_bytes() const noexcept { return kept_bytes_; }

 private:
  void give_back(Block block, size_t capacity) noexcept;

  struct Kept {
    size_t capacity;
    Block block;
  };
  std::vector<Kept> kept_;
  size_t kept_bytes_ = 0;
  size_t max_kept_bytes_;
};

}  // namespace keel
