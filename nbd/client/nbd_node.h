// NbdNode: the protocol driver for NBD exports, a client of the remote server
// through libnbd. The connection and handshake happen at open (synchronously);
// requests then go out through libnbd's asynchronous API on the event loop,
// as many at a time as the callers issue. Block status comes from the
// base:allocation context; the node itself is the whole graph below the format
// as keel sees it, so everything reads as allocated at depth 0 (what qemu's
// client reports as well).
#pragma once

#include <memory>
#include <string>

#include "block/format.h"
#include "block/node.h"
#include "nbd/client/async_handle.h"
#include "nbd/client/nbd_address.h"

namespace keel::nbd::client {

class NbdNode final : public block::BlockNode {
 public:
  // Connects to the export `name` names; raises with qemu's messages ("Failed to connect to 'x': reason",
  // "Requested export not available").
  static std::unique_ptr<NbdNode> open(const std::string& name, const block::OpenOptions& options);

  std::string_view format_name() const override { return "nbd"; }
  uint64_t size() const override { return size_; }
  block::Limits limits() const override { return limits_; }
  // qemu's nbd driver has no bdrv_get_info: nothing, not even a dirty flag.
  block::FormatInfo format_info() const override { return {.dirty = std::nullopt}; }

  Task<void> read(uint64_t offset, std::span<std::byte> buffer) override;
  Task<void> write(uint64_t offset, std::span<const std::byte> data, block::WriteFlags flags = {}) override;
  Task<void> write_zeroes(uint64_t offset, uint64_t length, block::ZeroFlags flags = {}) override;
  Task<void> discard(uint64_t offset, uint64_t length) override;
  Task<void> flush() override;
  Task<block::BlockStatus> block_status(uint64_t offset, uint64_t length) override;
  Task<void> truncate(uint64_t size, block::Preallocation prealloc) override;

 private:
  NbdNode(std::string name, bool writable, nbd_handle* handle, const block::CacheMode& cache);

  // One command, `what` and its range naming it in the error ("Failed to read 4096 bytes at offset 0 from 'x'").
  Task<void> command(std::string_view what, uint64_t offset, uint64_t length,
                     std::function<int64_t(AsyncHandle::Command&)> issue);
  // Splits [offset, offset + length) into pieces of at most `piece` bytes, run concurrently.
  Task<void> in_pieces(uint64_t offset, uint64_t length, uint64_t piece,
                       const std::function<Task<void>(uint64_t offset, uint64_t length)>& run);
  Task<void> write_piece(uint64_t offset, std::span<const std::byte> data, bool fua);
  Task<void> write_zero_buffers(uint64_t offset, uint64_t length);

  AsyncHandle handle_;
  uint64_t size_;
  block::Limits limits_;
  block::CacheMode cache_;
  bool can_flush_;
  bool has_allocation_context_;
};

}  // namespace keel::nbd::client
