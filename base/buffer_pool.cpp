#include "base/buffer_pool.h"

#include <algorithm>
#include <new>

namespace keel {

namespace {
constexpr size_t kAlignment = 4096;
// Capacities are rounded up to this, so requests of nearby sizes share buffers.
constexpr size_t kGranule = 64 * 1024;
}  // namespace

void BufferPool::Free::operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{kAlignment}); }

BufferPool::Buffer& BufferPool::Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::exchange(o.pool_, nullptr);
    block_ = std::move(o.block_);
    capacity_ = o.capacity_;
    size_ = o.size_;
  }
  return *this;
}

void BufferPool::Buffer::release() noexcept {
  if (pool_ && block_) pool_->give_back(std::move(block_), capacity_);
  pool_ = nullptr;
  block_.reset();
}

BufferPool::Buffer BufferPool::take(size_t size) {
  // The smallest kept buffer that is large enough.
  auto best = kept_.end();
  for (auto it = kept_.begin(); it != kept_.end(); ++it)
    if (it->capacity >= size && (best == kept_.end() || it->capacity < best->capacity)) best = it;
  if (best != kept_.end()) {
    Buffer b(this, std::move(best->block), best->capacity, size);
    kept_bytes_ -= best->capacity;
    kept_.erase(best);
    return b;
  }
  const size_t capacity = std::max(kGranule, (size + kGranule - 1) / kGranule * kGranule);
  Block block(static_cast<std::byte*>(::operator new[](capacity, std::align_val_t{kAlignment})));
  return Buffer(this, std::move(block), capacity, size);
}

void BufferPool::give_back(Block block, size_t capacity) noexcept {
  if (kept_bytes_ + capacity > max_kept_bytes_) return;  // `block` is freed
  try {
    kept_.push_back({capacity, std::move(block)});
    kept_bytes_ += capacity;
  } catch (const std::bad_alloc&) {
    // Not kept: the temporary that owned `block` has freed it.
  }
}

}  // namespace keel
