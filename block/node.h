// BlockNode: the one driver interface of the block graph. A protocol driver
// (file) talks to storage; a format driver (raw, qcow2) interprets the bytes of
// its `file` child and may read through a `backing` child. Every request is a
// coroutine, so any number may be in flight at once; drivers serialise only
// what needs it (metadata) with their own coroutine locks. A node belongs to
// the event loop it was opened on and is only used there: front ends on other
// loops reach it through a BlockBackend, which runs each request on the node's
// loop (base/async/run_on.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/async/event_loop.h"
#include "base/async/task.h"
#include "block/check.h"
#include "block/dirty_bitmap.h"
#include "block/format_info.h"
#include "block/limits.h"
#include "block/snapshot_ref.h"
#include "block/types.h"

namespace keel::block {

class BlockNode {
 public:
  virtual ~BlockNode() = default;

  // "file", "raw", "qcow2": the name qemu-img prints as "file format".
  virtual std::string_view format_name() const = 0;
  // The path or URI this node was opened from.
  const std::string& filename() const noexcept { return filename_; }
  bool writable() const noexcept { return writable_; }
  // The node's home loop: drivers submit I/O and offload work through it, never through another thread's.
  EventLoop& loop() const noexcept { return loop_; }

  // Guest-visible size in bytes.
  virtual uint64_t size() const = 0;
  virtual Limits limits() const { return {}; }

  virtual Task<void> read(uint64_t offset, std::span<std::byte> buffer) = 0;
  virtual Task<void> write(uint64_t offset, std::span<const std::byte> data, WriteFlags flags = {}) = 0;
  virtual Task<void> write_zeroes(uint64_t offset, uint64_t length, ZeroFlags flags = {}) = 0;
  virtual Task<void> discard(uint64_t offset, uint64_t length) = 0;
  virtual Task<void> flush() = 0;
  // Status of the range starting at `offset`; the answer covers `length` or less.
  virtual Task<BlockStatus> block_status(uint64_t offset, uint64_t length) = 0;
  virtual Task<void> truncate(uint64_t size, Preallocation prealloc) = 0;

  // Writes whole clusters compressed (qcow2 -c). Formats without compression raise ENOTSUP.
  virtual bool supports_compressed_writes() const { return false; }
  virtual uint64_t cluster_size() const { return 0; }
  // The smallest unit the format allocates (a subcluster with extended L2); 0 if none.
  virtual uint64_t allocation_granularity() const { return cluster_size(); }
  virtual Task<void> write_compressed(uint64_t offset, std::span<const std::byte> data);

  // Where the format stores VM state (qemu-io's "vm state offset"): qcow2
  // keeps it after the guest data, from the first L2 table past the end of
  // the disk. 0 for formats without VM state.
  virtual uint64_t vm_state_offset() const { return 0; }

  // Bytes the node occupies on its storage (qemu's "disk size"); nullopt if unknown.
  virtual std::optional<uint64_t> allocated_size() const;

  // What `info` reports beyond size and name (cluster size, backing file, snapshots, format-specific fields).
  virtual FormatInfo format_info() const { return {}; }

  // Consistency check and repair (`keel-img check`); formats without one raise ENOTSUP.
  virtual bool supports_check() const { return false; }
  virtual Task<CheckResult> check(CheckFix fix);

  // Writes back cached metadata and marks the image clean; the node remains usable.
  virtual Task<void> close() { co_return; }

  // Switches a read-only node to the contents of one of its internal snapshots (qemu-nbd -l); the size stays
  // the node's. Raises ENOENT "Can't find snapshot" if none matches; formats without snapshots raise ENOTSUP.
  virtual Task<void> load_snapshot(const SnapshotRef& snapshot);

  // The persistent dirty bitmap `name` stored in this node (not in its children), or nullptr; raises if the
  // stored bitmap is damaged. Writes to the node from then on mark an enabled bitmap dirty.
  virtual Task<std::shared_ptr<DirtyBitmap>> dirty_bitmap(const std::string& name);

  BlockNode* file() const noexcept { return file_.get(); }
  BlockNode* backing() const noexcept { return backing_.get(); }
  // Puts `backing` under this node, as qemu's bdrv_append() does for a
  // temporary snapshot overlay. Formats without backing files raise ENOTSUP.
  virtual void attach_backing(std::unique_ptr<BlockNode> backing);

 protected:
  BlockNode(std::string filename, bool writable)
      : filename_(std::move(filename)), writable_(writable), loop_(EventLoop::current()) {}
  void set_file(std::unique_ptr<BlockNode> file) { file_ = std::move(file); }

  std::string filename_;
  bool writable_;
  EventLoop& loop_;
  std::unique_ptr<BlockNode> file_;
  std::unique_ptr<BlockNode> backing_;
};

}  // namespace keel::block
