// StreamReader: whole NBD messages from a Transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/async/task.h"
#include "nbd/transport.h"

namespace keel::nbd {

// Reads whole messages from a transport through a small buffer, so that the
// many short headers of a busy connection cost one system call per batch.
class StreamReader {
 public:
  explicit StreamReader(Transport& transport) : transport_(&transport) {}
  void set_transport(Transport& transport) noexcept { transport_ = &transport; }
  // Bytes that arrived before the reader took over (the negotiation's leftover) come first.
  void prepend(std::span<const std::byte> bytes);
  // Fills `out`; false when the stream ended cleanly before its first byte,
  // ECONNRESET when it ended part-way.
  Task<bool> read_exact(std::span<std::byte> out);
  // Reads and drops `length` bytes (a payload the server will not use) without buffering them.
  Task<void> skip(uint64_t length);
  size_t buffered() const noexcept { return end_ - begin_; }
  // Takes what is buffered (e.g. the first bytes of a TLS handshake after STARTTLS).
  std::vector<std::byte> take_buffered();

 private:
  Transport* transport_;
  // Allocated at the first read, so connections still in their handshake (which reads by itself) cost little.
  static constexpr size_t kBufferSize = 64 * 1024;
  std::vector<std::byte> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace keel::nbd
