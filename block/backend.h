// BlockBackend: the one object a front end holds (keel-io, an NBD export, a
// guest disk, a job), as qemu's BlockBackend. It owns the root node of a graph
// and is where every request is checked once, before any driver sees it:
//   - range (EIO outside the image, as qemu) and alignment (EINVAL);
//   - read-only (EPERM for any write);
//   - pieces no longer than the root's max transfer;
//   - FUA done as write + flush where the root cannot do it itself;
//   - with detect-zeroes, writes of zeros turned into write_zeroes;
//   - requests in flight counted, so drain() can wait for them all;
//   - where the front end asks, overlapping requests ordered by arrival
//     (block/range_lock): a read after a write to the same bytes sees it.
// Requests may come from any thread's event loop: each runs on the root's
// home loop (BlockNode::loop(), base/async/run_on.h), where the backend's own
// state lives too, and its caller continues on its own loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "base/async/sync.h"
#include "base/async/task.h"
#include "block/dirty_bitmap.h"
#include "block/limits.h"
#include "block/range_lock.h"
#include "block/node.h"

namespace keel::block {

// qemu's detect-zeroes: a write of nothing but zeros becomes a write of zeroes (that may unmap).
enum class DetectZeroes { Off, On, Unmap };

struct BackendOptions {
  bool read_only = false;  // refuse writes even if the node is writable (qemu-nbd -r)
  bool discard = true;     // false: discard requests succeed and do nothing (qemu's discard=ignore)
  // Overlapping requests run in arrival order when either writes (keel-io's aio semantics). NBD leaves
  // that to the client, so exports do not ask for it.
  bool ordered = false;
  DetectZeroes detect_zeroes = DetectZeroes::Off;
};

class BlockBackend {
 public:
  BlockBackend(std::unique_ptr<BlockNode> root, BackendOptions options = {});
  ~BlockBackend();
  BlockBackend(const BlockBackend&) = delete;
  BlockBackend& operator=(const BlockBackend&) = delete;

  BlockNode& root() const noexcept { return *root_; }
  // The root's size as of the last truncate: readable from any thread (an NBD connection checks requests
  // against it on its own loop).
  uint64_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  bool writable() const noexcept { return !options_.read_only && root_->writable(); }
  // The root's limits, with writes off when the backend is read-only.
  const Limits& limits() const noexcept { return limits_; }

  Task<void> read(uint64_t offset, std::span<std::byte> buffer);
  Task<void> write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags = {});
  Task<void> write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags = {}, WriteFlags write_flags = {});
  Task<void> discard(uint64_t offset, uint64_t length);
  Task<void> flush();
  Task<BlockStatus> block_status(uint64_t offset, uint64_t length);
  // Whole clusters, compressed (the last may end at the end of the image).
  Task<void> write_compressed(uint64_t offset, std::span<const std::byte> data);
  Task<void> truncate(uint64_t size, Preallocation prealloc);

  // `bitmap`'s run from `offset` (a bitmap of the root, from BlockNode::dirty_bitmap()).
  Task<DirtyBitmap::Run> query_bitmap(DirtyBitmap& bitmap, uint64_t offset, uint64_t length);

  // Read on the home loop only.
  size_t in_flight() const noexcept { return in_flight_; }
  // Waits until no request is in flight.
  Task<void> drain();
  // Drains, then writes back the root's metadata; the backend stays usable.
  Task<void> close();

 private:
  class InFlight;
  void check_range(uint64_t offset, uint64_t length) const;
  void check_alignment(uint64_t offset, uint64_t length) const;
  void check_writable() const;
  // The requests themselves, on the home loop.
  Task<void> do_read(uint64_t offset, std::span<std::byte> buffer);
  Task<void> do_write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags);
  Task<void> do_write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags, WriteFlags write_flags);
  Task<void> do_discard(uint64_t offset, uint64_t length);
  Task<void> do_flush();
  Task<BlockStatus> do_block_status(uint64_t offset, uint64_t length);
  Task<void> do_write_compressed(uint64_t offset, std::span<const std::byte> data);
  Task<void> do_truncate(uint64_t size, Preallocation prealloc);
  Task<DirtyBitmap::Run> do_query_bitmap(DirtyBitmap& bitmap, uint64_t offset, uint64_t length);
  Task<void> wait_idle();
  Task<void> close_root();

  // With BackendOptions::ordered, waits for earlier overlapping requests and holds the range; else holds nothing.
  Task<RangeLock::Guard> take_turn(uint64_t offset, uint64_t length, RangeLock::Mode mode);

  std::unique_ptr<BlockNode> root_;
  std::atomic<uint64_t> size_;
  BackendOptions options_;
  Limits limits_;
  size_t in_flight_ = 0;
  WaitQueue idle_;
  RangeLock order_;
};

// Raises EINVAL for a size past the largest qemu allows an image (2^63 - 1 GiB).
void check_image_size(uint64_t size);

}  // namespace keel::block
