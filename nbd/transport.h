// Transport: the byte stream one NBD connection runs over, a plain socket or
// a TLS session on one. The connection code sees only this, so STARTTLS swaps
// the transport under it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>

#include "base/async/socket.h"
#include "base/async/task.h"

namespace keel::nbd {

class Transport {
 public:
  virtual ~Transport() = default;
  // Up to buffer.size() bytes; 0 at the end of the stream.
  virtual Task<size_t> read_some(std::span<std::byte> buffer) = 0;
  virtual Task<void> write_all(std::span<const iovec> pieces) = 0;
  // Ends the connection; every pending and later operation sees the end of the stream.
  virtual void shutdown() noexcept = 0;
};

class SocketTransport final : public Transport {
 public:
  explicit SocketTransport(Socket& socket) : socket_(socket) {}
  Task<size_t> read_some(std::span<std::byte> buffer) override { co_return co_await socket_.read_some(buffer); }
  Task<void> write_all(std::span<const iovec> pieces) override { co_await socket_.write_all(pieces); }
  void shutdown() noexcept override { socket_.shutdown(); }

 private:
  Socket& socket_;
};

}  // namespace keel::nbd
