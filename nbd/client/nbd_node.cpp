#include "nbd/client/nbd_node.h"

#include <libnbd.h>

#include <algorithm>
#include <vector>

#include "base/async/sync.h"
#include "base/error.h"
#include "base/units.h"
#include "nbd/client/tls_client.h"

namespace keel::nbd::client {

namespace {

constexpr const char* kBaseAllocation = "base:allocation";
// Without the server's block size limits a client should not send more than this in one command (NBD proto.md).
constexpr uint32_t kDefaultMaxPayload = 32u << 20;
// Zero, trim and block status lengths are 32-bit on the wire; keep each command well inside that.
constexpr uint64_t kMaxUnpayloadedLength = 1u << 30;

struct HandleCloser {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using OwnedHandle = std::unique_ptr<nbd_handle, HandleCloser>;

// libnbd 1.14 passes the text of a server's option error only to its debug
// log; qemu prints it ("server reported: ..."), so the log is read for it.
constexpr std::string_view kServerErrorLine = "handshake: server error message: ";

int on_debug(void* server_error, const char*, const char* message) noexcept {
  const std::string_view line(message);
  if (line.starts_with(kServerErrorLine)) {
    try {
      static_cast<std::string*>(server_error)->assign(line.substr(kServerErrorLine.size()));
    } catch (...) {  // out of memory: the message is only an explanation
    }
  }
  return 0;
}

// The handshake failed: qemu's words where it has them, libnbd's otherwise.
[[noreturn]] void raise_handshake_error(const std::string& server_error) {
  const int code = nbd_get_errno();
  // libnbd reports the server's NBD_REP_ERR_UNKNOWN to NBD_OPT_GO as ENOENT.
  if (code == ENOENT) {
    if (server_error.empty()) raise(ENOENT, "Requested export not available");
    raise(ENOENT, "Requested export not available\nserver reported: {}", server_error);
  }
  raise(code ? code : EIO, "Failed to negotiate with the NBD server: {}", nbd_get_error());
}

// The server's block size constraint of `kind` (LIBNBD_SIZE_*), or `fallback` when it sent none.
uint32_t block_size(nbd_handle* h, int kind, uint32_t fallback) {
  const int64_t size = nbd_get_block_size(h, kind);
  return size > 0 ? static_cast<uint32_t>(size) : fallback;
}

// What a base:allocation extent callback found for the first extent.
struct FirstExtent {
  uint64_t length = 0;
  uint32_t flags = 0;
  bool seen = false;
};

int on_extent(void* data, const char* context, uint64_t, uint32_t* entries, size_t count, int*) noexcept {
  auto* first = static_cast<FirstExtent*>(data);
  if (std::string_view(context) != kBaseAllocation || count < 2 || first->seen) return 0;
  first->length = entries[0];
  first->flags = entries[1];
  first->seen = true;
  return 0;
}

}  // namespace

std::unique_ptr<NbdNode> NbdNode::open(const std::string& name, const block::OpenOptions& options) {
  const NbdAddress address = parse_nbd_address(name);
  const TlsCredentials* tls = address.tls ? &tls_credentials_for(address) : nullptr;
  OwnedHandle handle(nbd_create());
  std::string server_error;
  if (!handle) raise(ENOMEM, "Could not create an NBD client: {}", nbd_get_error());
  if (nbd_set_export_name(handle.get(), address.export_name.c_str()) < 0 ||
      nbd_set_request_structured_replies(handle.get(), true) < 0 ||
      nbd_add_meta_context(handle.get(), kBaseAllocation) < 0 ||
      nbd_set_debug_callback(handle.get(), {.callback = on_debug, .user_data = &server_error}) < 0 ||
      nbd_set_debug(handle.get(), true) < 0)
    raise(nbd_get_errno(), "Could not set up the NBD client: {}", nbd_get_error());
  const int connected = connect_handle(handle.get(), address, tls);
  // Debug messages cost formatting on every request: only the handshake's are wanted.
  nbd_set_debug(handle.get(), false);
  nbd_clear_debug_callback(handle.get());
  if (connected < 0) raise_handshake_error(server_error);
  const bool read_only = nbd_is_read_only(handle.get()) > 0;
  // qemu's words for a read-only export opened for writing.
  if (options.writable && read_only) raise(EACCES, "Could not open image: {}", errno_text(EACCES));
  return std::unique_ptr<NbdNode>(
      new NbdNode(address.canonical_name(), options.writable, handle.release(), options.cache));
}

NbdNode::NbdNode(std::string name, bool writable, nbd_handle* h, const block::CacheMode& cache)
    : BlockNode(std::move(name), writable), handle_(h, loop()), cache_(cache) {
  const int64_t size = nbd_get_size(h);
  size_ = size > 0 ? static_cast<uint64_t>(size) : 0;
  limits_.request_alignment = block_size(h, LIBNBD_SIZE_MINIMUM, 1);
  limits_.max_transfer =
      align_down(std::min(block_size(h, LIBNBD_SIZE_MAXIMUM, kDefaultMaxPayload), kDefaultMaxPayload),
                 limits_.request_alignment);
  limits_.can_zero = nbd_can_zero(h) > 0;
  limits_.can_fast_zero = nbd_can_fast_zero(h) > 0;
  limits_.can_trim = nbd_can_trim(h) > 0;
  limits_.can_fua = nbd_can_fua(h) > 0;
  limits_.can_multi_conn = nbd_can_multi_conn(h) > 0;
  limits_.is_rotational = nbd_is_rotational(h) > 0;
  can_flush_ = nbd_can_flush(h) > 0;
  has_allocation_context_ = nbd_can_meta_context(h, kBaseAllocation) > 0;
}

Task<void> NbdNode::command(std::string_view what, uint64_t offset, uint64_t length,
                            std::function<int64_t(AsyncHandle::Command&)> issue) {
  const int error = co_await handle_.run(std::move(issue));
  if (error) raise(error, "Failed to {} {} bytes at offset {} of '{}': {}", what, length, offset, filename_,
                   errno_text(error));
}

Task<void> NbdNode::in_pieces(uint64_t offset, uint64_t length, uint64_t piece,
                              const std::function<Task<void>(uint64_t, uint64_t)>& run) {
  if (length == 0) co_return;  // libnbd refuses empty commands; there is nothing to send
  if (length <= piece) {
    co_await run(offset, length);
    co_return;
  }
  TaskGroup group;
  for (uint64_t done = 0; done < length; done += piece) group.spawn(run(offset + done, std::min(piece, length - done)));
  co_await group.join();
}

Task<void> NbdNode::read(uint64_t offset, std::span<std::byte> buffer) {
  co_await in_pieces(offset, buffer.size(), limits_.max_transfer, [&](uint64_t at, uint64_t n) {
    std::byte* data = buffer.data() + (at - offset);
    return command("read", at, n, [this, data, at, n](AsyncHandle::Command& c) {
      return nbd_aio_pread(handle_.get(), data, n, at, {.callback = AsyncHandle::on_complete, .user_data = &c}, 0);
    });
  });
}

Task<void> NbdNode::write_piece(uint64_t offset, std::span<const std::byte> data, bool fua) {
  const uint32_t flags = fua ? LIBNBD_CMD_FLAG_FUA : 0;
  co_await command("write", offset, data.size(), [this, data, offset, flags](AsyncHandle::Command& c) {
    return nbd_aio_pwrite(handle_.get(), data.data(), data.size(), offset,
                          {.callback = AsyncHandle::on_complete, .user_data = &c}, flags);
  });
}

Task<void> NbdNode::write(uint64_t offset, std::span<const std::byte> data, block::WriteFlags flags) {
  const bool durable = flags.fua || cache_.writethrough;
  const bool fua = durable && limits_.can_fua;
  co_await in_pieces(offset, data.size(), limits_.max_transfer, [&](uint64_t at, uint64_t n) {
    return write_piece(at, data.subspan(at - offset, n), fua);
  });
  if (durable && !fua) co_await flush();
}

Task<void> NbdNode::write_zero_buffers(uint64_t offset, uint64_t length) {
  const std::vector<std::byte> zeros(std::min<uint64_t>(length, limits_.max_transfer));
  for (uint64_t done = 0; done < length; done += zeros.size()) {
    const uint64_t n = std::min<uint64_t>(zeros.size(), length - done);
    co_await write_piece(offset + done, std::span(zeros).first(n), false);
  }
}

Task<void> NbdNode::write_zeroes(uint64_t offset, uint64_t length, block::ZeroFlags flags) {
  if (!limits_.can_zero || (flags.no_fallback && !limits_.can_fast_zero)) {
    if (flags.no_fallback) raise(ENOTSUP, "The NBD server of '{}' cannot zero without writing", filename_);
    co_await write_zero_buffers(offset, length);
    co_return;
  }
  uint32_t command_flags = flags.may_unmap ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
  if (flags.no_fallback) command_flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
  if (cache_.writethrough && limits_.can_fua) command_flags |= LIBNBD_CMD_FLAG_FUA;
  const uint64_t piece = align_down(kMaxUnpayloadedLength, limits_.request_alignment);
  co_await in_pieces(offset, length, piece, [&](uint64_t at, uint64_t n) {
    return command("zero", at, n, [this, at, n, command_flags](AsyncHandle::Command& c) {
      return nbd_aio_zero(handle_.get(), n, at, {.callback = AsyncHandle::on_complete, .user_data = &c},
                          command_flags);
    });
  });
  if (cache_.writethrough && !limits_.can_fua) co_await flush();
}

Task<void> NbdNode::discard(uint64_t offset, uint64_t length) {
  // Discard is advisory: a server that cannot trim keeps the data.
  if (!limits_.can_trim) co_return;
  const uint64_t piece = align_down(kMaxUnpayloadedLength, limits_.request_alignment);
  co_await in_pieces(offset, length, piece, [&](uint64_t at, uint64_t n) {
    return command("discard", at, n, [this, at, n](AsyncHandle::Command& c) {
      return nbd_aio_trim(handle_.get(), n, at, {.callback = AsyncHandle::on_complete, .user_data = &c}, 0);
    });
  });
}

Task<void> NbdNode::flush() {
  if (!can_flush_ || cache_.no_flush) co_return;
  co_await command("flush", 0, size_, [this](AsyncHandle::Command& c) {
    return nbd_aio_flush(handle_.get(), {.callback = AsyncHandle::on_complete, .user_data = &c}, 0);
  });
}

Task<block::BlockStatus> NbdNode::block_status(uint64_t offset, uint64_t length) {
  // As qemu's client reports: the node decides everything, at its own offsets.
  block::BlockStatus status{.length = length, .data = true, .allocated = true, .allocated_in_chain = true,
                            .host_offset = offset};
  if (!has_allocation_context_ || length == 0) co_return status;
  const uint64_t asked = std::min(length, align_down(kMaxUnpayloadedLength, limits_.request_alignment));
  FirstExtent first;
  co_await command("get block status of", offset, asked, [this, &first, offset, asked](AsyncHandle::Command& c) {
    return nbd_aio_block_status(handle_.get(), asked, offset, {.callback = on_extent, .user_data = &first},
                                {.callback = AsyncHandle::on_complete, .user_data = &c}, LIBNBD_CMD_FLAG_REQ_ONE);
  });
  if (!first.seen || first.length == 0)
    raise(EIO, "The NBD server sent no block status for offset {} of '{}'", offset, filename_);
  status.length = std::min(first.length, asked);
  status.data = !(first.flags & LIBNBD_STATE_HOLE);
  status.zero = first.flags & LIBNBD_STATE_ZERO;
  co_return status;
}

Task<void> NbdNode::truncate(uint64_t, block::Preallocation) {
  raise(ENOTSUP, "Cannot resize the NBD export '{}'", filename_);
  co_return;
}

}  // namespace keel::nbd::client
