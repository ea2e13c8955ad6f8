// The transmission phase of a Connection: each command run against the
// export's BlockBackend, and its reply in the negotiated form (simple,
// structured, or extended headers).
#include <algorithm>
#include <optional>
#include <string>

#include "base/endian.h"
#include "base/error.h"
#include "nbd/connection.h"

namespace keel::nbd {

namespace {

namespace cf = command_flag;

bool is(const Request& r, Command c) { return r.type == static_cast<uint16_t>(c); }

iovec piece(const void* data, size_t length) { return iovec{const_cast<void*>(data), length}; }

struct Failure {
  uint32_t error;  // the NBD error value
  std::string message;
};

// Runs the engine's part of a request: nullopt when it succeeds, else what to reply. Failures to send a reply
// are not caught here; they end the connection.
template <typename Op>
Task<std::optional<Failure>> failure_of(Op op) {
  try {
    co_await op();
  } catch (const Error& e) {
    co_return Failure{nbd_error_from_errno(e.code() ? e.code() : EIO), e.message()};
  }
  co_return std::nullopt;
}

}  // namespace

Task<void> Connection::send(std::span<const iovec> pieces) {
  auto guard = co_await send_lock_.lock();
  co_await transport_->write_all(pieces);
}

Task<void> Connection::send_bytes(const Bytes& bytes) {
  const iovec one = piece(bytes.data(), bytes.size());
  co_await send(std::span(&one, 1));
}

// Success without data: a simple reply, or in extended mode a NONE chunk (simple replies do not exist there).
Task<void> Connection::reply_ok(const Request& r) {
  Bytes out;
  if (mode_ == HeaderMode::Extended)
    append_reply_chunk(out, mode_, reply_flag::kDone, ChunkType::None, r.cookie, r.offset, {});
  else
    append_simple_reply(out, 0, r.cookie);
  co_await send_bytes(out);
}

// As qemu: with structured replies every error is an ERROR chunk carrying the message.
Task<void> Connection::reply_error(const Request& r, uint32_t error, std::string_view message) {
  Bytes out;
  if (structured_) {
    Bytes payload;
    append_error_payload(payload, error, message);
    append_reply_chunk(out, mode_, reply_flag::kDone, ChunkType::Error, r.cookie, r.offset, payload);
  } else {
    append_simple_reply(out, error, r.cookie);
  }
  co_await send_bytes(out);
}

Task<void> Connection::execute(const Request& r, std::span<const std::byte> payload) {
  block::BlockBackend& backend = export_->backend();
  const bool fua = r.flags & cf::kFua;
  if (is(r, Command::Read)) {
    co_await execute_read(r);
    co_return;
  }
  if (is(r, Command::BlockStatus)) {
    co_await execute_block_status(r);
    co_return;
  }
  const auto failure = co_await failure_of([&]() -> Task<void> {
    switch (static_cast<Command>(r.type)) {
      case Command::Write:
        co_await backend.write(r.offset, payload, {.fua = fua});
        break;
      case Command::WriteZeroes:
        co_await backend.write_zeroes(
            r.offset, r.length, {.may_unmap = !(r.flags & cf::kNoHole), .no_fallback = bool(r.flags & cf::kFastZero)},
            {.fua = fua});
        break;
      case Command::Trim:
        co_await backend.discard(r.offset, r.length);
        if (fua) co_await backend.flush();
        break;
      case Command::Flush:
        co_await backend.flush();
        break;
      case Command::Cache:
        // A hint: keel keeps no cache the client could fill ahead of time.
        break;
      default:
        break;
    }
  });
  if (failure)
    co_await reply_error(r, failure->error, failure->message);
  else
    co_await reply_ok(r);
}

Task<void> Connection::execute_read(const Request& r) {
  block::BlockBackend& backend = export_->backend();
  BufferPool::Buffer data = buffers_.take(r.length);
  // Where the range reads as zeros, a structured reply sends holes instead of data (unless DF).
  struct Extent {
    uint64_t begin, length;
    bool zero;
  };
  std::vector<Extent> extents;
  const auto failure = co_await failure_of([&]() -> Task<void> {
    if (structured_ && !(r.flags & cf::kDf)) {
      for (uint64_t pos = 0; pos < r.length;) {
        const block::BlockStatus st = co_await backend.block_status(r.offset + pos, r.length - pos);
        const uint64_t length = std::clamp<uint64_t>(st.length, 1, r.length - pos);
        if (!extents.empty() && extents.back().zero == st.zero)
          extents.back().length += length;
        else
          extents.push_back({pos, length, st.zero});
        pos += length;
      }
    } else {
      extents.push_back({0, r.length, false});
    }
    if (std::any_of(extents.begin(), extents.end(), [](const Extent& e) { return !e.zero; }))
      co_await backend.read(r.offset, data.span());
  });
  if (failure) {
    co_await reply_error(r, failure->error, failure->message);
    co_return;
  }
  Bytes headers;
  if (!structured_) {
    append_simple_reply(headers, 0, r.cookie);
    const iovec pieces[] = {piece(headers.data(), headers.size()), piece(data.data(), data.size())};
    co_await send(pieces);
    co_return;
  }
  if (r.length == 0) extents.clear();
  // Every header first (the vector must not move once iovecs point into it), then the pieces in order.
  std::vector<size_t> header_ends;
  for (size_t i = 0; i < extents.size(); i++) {
    const Extent& e = extents[i];
    const uint16_t flags = i + 1 == extents.size() ? reply_flag::kDone : 0;
    Bytes payload;
    if (e.zero) {
      append_offset_hole_payload(payload, r.offset + e.begin, static_cast<uint32_t>(e.length));
      append_reply_chunk(headers, mode_, flags, ChunkType::OffsetHole, r.cookie, r.offset, payload);
    } else {
      append_offset_data_payload(payload, r.offset + e.begin);
      const size_t start = headers.size();
      append_reply_chunk(headers, mode_, flags, ChunkType::OffsetData, r.cookie, r.offset, payload);
      // The chunk's length covers the data that follows its offset field.
      const size_t length_field = mode_ == HeaderMode::Extended ? 24 : 16;
      const uint64_t chunk_length = payload.size() + e.length;
      if (mode_ == HeaderMode::Extended)
        store_be<uint64_t>(headers.data() + start + length_field, chunk_length);
      else
        store_be<uint32_t>(headers.data() + start + length_field, static_cast<uint32_t>(chunk_length));
    }
    header_ends.push_back(headers.size());
  }
  if (extents.empty()) append_reply_chunk(headers, mode_, reply_flag::kDone, ChunkType::None, r.cookie, r.offset, {});
  std::vector<iovec> pieces;
  size_t header_begin = 0;
  for (size_t i = 0; i < extents.size(); i++) {
    pieces.push_back(piece(headers.data() + header_begin, header_ends[i] - header_begin));
    if (!extents[i].zero) pieces.push_back(piece(data.data() + extents[i].begin, extents[i].length));
    header_begin = header_ends[i];
  }
  if (header_begin < headers.size())
    pieces.push_back(piece(headers.data() + header_begin, headers.size() - header_begin));
  co_await send(pieces);
}

Task<void> Connection::execute_block_status(const Request& r) {
  block::BlockBackend& backend = export_->backend();
  const bool one = r.flags & cf::kReqOne;
  const uint64_t end = r.offset + std::min<uint64_t>(r.length, backend.size() - r.offset);
  // A bound on one reply's descriptors, so a fragmented image cannot make a reply of unbounded size.
  constexpr size_t kMaxExtents = 1 << 16;
  using Extents = std::vector<BlockStatusExtDescriptor>;
  Extents allocation, depth;
  auto add = [](Extents& list, uint64_t length, uint32_t status) {
    if (!list.empty() && list.back().status == status)
      list.back().length += length;
    else
      list.push_back({length, status});
  };
  // The selected dirty bitmap contexts, each answered from its bitmap alone.
  std::vector<std::pair<uint32_t, block::DirtyBitmap*>> bitmaps;
  for (const auto& [id, name] : negotiated_.meta_contexts)
    if (block::DirtyBitmap* b = export_->bitmap_for_context(name)) bitmaps.emplace_back(id, b);
  std::vector<Extents> dirty(bitmaps.size());
  const auto failure = co_await failure_of([&]() -> Task<void> {
    for (uint64_t pos = r.offset; (allocation_id_ || depth_id_) && pos < end;) {
      const block::BlockStatus st = co_await backend.block_status(pos, end - pos);
      const uint64_t length = std::clamp<uint64_t>(st.length, 1, end - pos);
      add(allocation, length, (st.data ? 0 : state_flag::kHole) | (st.zero ? state_flag::kZero : 0));
      add(depth, length, st.allocated_in_chain ? st.depth + 1 : 0);
      pos += length;
      // With REQ_ONE each context still gets its whole first extent, as far as its own status stays the same.
      const bool firsts_known = (!allocation_id_ || allocation.size() > 1) && (!depth_id_ || depth.size() > 1);
      if ((one && firsts_known) || allocation.size() >= kMaxExtents || depth.size() >= kMaxExtents) break;
    }
    for (size_t i = 0; i < bitmaps.size(); i++) {
      for (uint64_t pos = r.offset; pos < end;) {
        const block::DirtyBitmap::Run run = co_await backend.query_bitmap(*bitmaps[i].second, pos, end - pos);
        const uint64_t length = std::clamp<uint64_t>(run.length, 1, end - pos);
        add(dirty[i], length, run.dirty ? state_flag::kDirty : 0);
        pos += length;
        // A run is already the whole extent of its state.
        if (one || dirty[i].size() >= kMaxExtents) break;
      }
    }
  });
  if (failure) {
    co_await reply_error(r, failure->error, failure->message);
    co_return;
  }
  if (one) {
    allocation.resize(std::min<size_t>(allocation.size(), 1));
    depth.resize(std::min<size_t>(depth.size(), 1));
  }
  std::vector<std::pair<uint32_t, Extents*>> contexts;
  if (allocation_id_) contexts.push_back({allocation_id_, &allocation});
  if (depth_id_) contexts.push_back({depth_id_, &depth});
  for (size_t i = 0; i < bitmaps.size(); i++) contexts.push_back({bitmaps[i].first, &dirty[i]});
  Bytes out;
  for (size_t i = 0; i < contexts.size(); i++) {
    const uint16_t flags = i + 1 == contexts.size() ? reply_flag::kDone : 0;
    Bytes payload;
    if (mode_ == HeaderMode::Extended) {
      append_block_status_ext_payload(payload, contexts[i].first, *contexts[i].second);
      append_reply_chunk(out, mode_, flags, ChunkType::BlockStatusExt, r.cookie, r.offset, payload);
    } else {
      std::vector<BlockStatusDescriptor> compact;
      for (const auto& d : *contexts[i].second) compact.push_back({static_cast<uint32_t>(d.length), d.status});
      append_block_status_payload(payload, contexts[i].first, compact);
      append_reply_chunk(out, mode_, flags, ChunkType::BlockStatus, r.cookie, r.offset, payload);
    }
  }
  co_await send_bytes(out);
}

}  // namespace keel::nbd
