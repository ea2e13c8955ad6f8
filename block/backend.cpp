#include "block/backend.h"

#include <algorithm>
#include <limits>

#include "base/async/run_on.h"
#include "base/error.h"
#include "base/zero_bytes.h"

namespace keel::block {

// Counts one request for drain(); the last to end wakes the drainers.
class BlockBackend::InFlight {
 public:
  explicit InFlight(BlockBackend& b) : backend_(b) { backend_.in_flight_++; }
  ~InFlight() {
    if (--backend_.in_flight_ == 0) backend_.idle_.notify_all();
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  BlockBackend& backend_;
};

BlockBackend::BlockBackend(std::unique_ptr<BlockNode> root, BackendOptions options)
    : root_(std::move(root)), size_(root_->size()), options_(options), limits_(root_->limits()) {
  limits_.max_transfer = std::max(limits_.max_transfer, limits_.request_alignment);
  limits_.max_transfer -= limits_.max_transfer % limits_.request_alignment;
  if (!writable()) limits_.can_zero = limits_.can_fast_zero = limits_.can_trim = limits_.can_fua = false;
}

BlockBackend::~BlockBackend() {
  if (in_flight_ != 0) {
    std::fprintf(stderr, "keel: internal error: a BlockBackend was destroyed with %zu requests in flight\n",
                 in_flight_);
    std::abort();
  }
}

void BlockBackend::check_range(uint64_t offset, uint64_t length) const {
  const uint64_t size = root_->size();
  if (offset > size || length > size - offset)
    raise(EIO, "Request of {} bytes at offset {} is outside the image ({} bytes)", length, offset, size);
}

void BlockBackend::check_alignment(uint64_t offset, uint64_t length) const {
  const uint32_t a = limits_.request_alignment;
  if (offset % a != 0 || length % a != 0)
    raise(EINVAL, "Request of {} bytes at offset {} is not aligned to {} bytes", length, offset, a);
}

void BlockBackend::check_writable() const {
  if (!writable()) raise(EPERM, "Image '{}' is read-only", root_->filename());
}

Task<RangeLock::Guard> BlockBackend::take_turn(uint64_t offset, uint64_t length, RangeLock::Mode mode) {
  if (!options_.ordered) co_return RangeLock::Guard{};
  // A zero-length request still follows writes at its offset.
  co_return co_await order_.lock(offset, offset + std::max<uint64_t>(length, 1), mode);
}

Task<void> BlockBackend::read(uint64_t offset, std::span<std::byte> buffer) {
  return run_on(root_->loop(), do_read(offset, buffer));
}

Task<void> BlockBackend::write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags) {
  return run_on(root_->loop(), do_write(offset, data, flags));
}

Task<void> BlockBackend::write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags, WriteFlags write_flags) {
  return run_on(root_->loop(), do_write_zeroes(offset, length, flags, write_flags));
}

Task<void> BlockBackend::discard(uint64_t offset, uint64_t length) {
  return run_on(root_->loop(), do_discard(offset, length));
}

Task<void> BlockBackend::flush() { return run_on(root_->loop(), do_flush()); }

Task<BlockStatus> BlockBackend::block_status(uint64_t offset, uint64_t length) {
  return run_on(root_->loop(), do_block_status(offset, length));
}

Task<void> BlockBackend::write_compressed(uint64_t offset, std::span<const std::byte> data) {
  return run_on(root_->loop(), do_write_compressed(offset, data));
}

Task<void> BlockBackend::truncate(uint64_t size, Preallocation prealloc) {
  return run_on(root_->loop(), do_truncate(size, prealloc));
}

Task<DirtyBitmap::Run> BlockBackend::query_bitmap(DirtyBitmap& bitmap, uint64_t offset, uint64_t length) {
  return run_on(root_->loop(), do_query_bitmap(bitmap, offset, length));
}

Task<void> BlockBackend::do_read(uint64_t offset, std::span<std::byte> buffer) {
  InFlight counted(*this);
  check_range(offset, buffer.size());
  check_alignment(offset, buffer.size());
  auto turn = co_await take_turn(offset, buffer.size(), RangeLock::Mode::Shared);
  for (size_t done = 0; done < buffer.size();) {
    const size_t piece = std::min<size_t>(buffer.size() - done, limits_.max_transfer);
    co_await root_->read(offset + done, buffer.subspan(done, piece));
    done += piece;
  }
}

Task<void> BlockBackend::do_write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags) {
  InFlight counted(*this);
  check_writable();
  check_range(offset, data.size());
  check_alignment(offset, data.size());
  auto turn = co_await take_turn(offset, data.size(), RangeLock::Mode::Exclusive);
  if (options_.detect_zeroes != DetectZeroes::Off && !data.empty() && is_zero(data.data(), data.size())) {
    co_await root_->write_zeroes(offset, data.size(), {.may_unmap = options_.detect_zeroes == DetectZeroes::Unmap});
    if (flags.fua) co_await root_->flush();
    co_return;
  }
  const bool node_fua = flags.fua && root_->limits().can_fua;
  for (size_t done = 0; done < data.size();) {
    const size_t piece = std::min<size_t>(data.size() - done, limits_.max_transfer);
    co_await root_->write(offset + done, data.subspan(done, piece), {.fua = node_fua});
    done += piece;
  }
  if (flags.fua && !node_fua) co_await root_->flush();
}

Task<void> BlockBackend::do_write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags, WriteFlags write_flags) {
  InFlight counted(*this);
  check_writable();
  check_range(offset, length);
  check_alignment(offset, length);
  auto turn = co_await take_turn(offset, length, RangeLock::Mode::Exclusive);
  co_await root_->write_zeroes(offset, length, flags);
  if (write_flags.fua) co_await root_->flush();
}

Task<void> BlockBackend::do_discard(uint64_t offset, uint64_t length) {
  InFlight counted(*this);
  check_writable();
  check_range(offset, length);
  check_alignment(offset, length);
  auto turn = co_await take_turn(offset, length, RangeLock::Mode::Exclusive);
  if (options_.discard) co_await root_->discard(offset, length);
}

Task<void> BlockBackend::do_flush() {
  InFlight counted(*this);
  co_await root_->flush();
}

Task<BlockStatus> BlockBackend::do_block_status(uint64_t offset, uint64_t length) {
  InFlight counted(*this);
  check_range(offset, length);
  auto turn = co_await take_turn(offset, length, RangeLock::Mode::Shared);
  co_return co_await root_->block_status(offset, length);
}

Task<DirtyBitmap::Run> BlockBackend::do_query_bitmap(DirtyBitmap& bitmap, uint64_t offset, uint64_t length) {
  InFlight counted(*this);
  check_range(offset, length);
  co_return co_await bitmap.query(offset, length);
}

Task<void> BlockBackend::do_write_compressed(uint64_t offset, std::span<const std::byte> data) {
  InFlight counted(*this);
  check_writable();
  check_range(offset, data.size());
  auto turn = co_await take_turn(offset, data.size(), RangeLock::Mode::Exclusive);
  const uint64_t cluster = root_->cluster_size();
  if (!root_->supports_compressed_writes() || cluster == 0) {
    co_await root_->write_compressed(offset, data);  // raises the driver's ENOTSUP
    co_return;
  }
  if (offset % cluster != 0 || (data.size() % cluster != 0 && offset + data.size() != root_->size()))
    raise(EINVAL, "Compressed writes must start on a cluster boundary and cover whole clusters");
  for (size_t done = 0; done < data.size(); done += cluster)
    co_await root_->write_compressed(offset + done,
                                     data.subspan(done, std::min<size_t>(cluster, data.size() - done)));
}

Task<void> BlockBackend::do_truncate(uint64_t size, Preallocation prealloc) {
  InFlight counted(*this);
  check_writable();
  co_await root_->truncate(size, prealloc);
  size_.store(root_->size(), std::memory_order_relaxed);
}

Task<void> BlockBackend::drain() { return run_on(root_->loop(), wait_idle()); }

Task<void> BlockBackend::wait_idle() {
  while (in_flight_ != 0) co_await idle_.wait();
}

Task<void> BlockBackend::close() { return run_on(root_->loop(), close_root()); }

Task<void> BlockBackend::close_root() {
  co_await wait_idle();
  co_await root_->close();
}

void check_image_size(uint64_t size) {
  constexpr uint64_t kMaxLength =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) & ~((uint64_t{1} << 30) - 1);
  if (size > kMaxLength) raise(EINVAL, "offset({}) exceeds maximum({})", size, kMaxLength);
}

}  // namespace keel::block
