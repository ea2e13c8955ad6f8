// Connection: one NBD client, from the greeting to the last reply. The
// handshake runs the sans-IO Negotiation under a deadline; the transmission
// phase reads requests in order and runs each as its own coroutine, so slow
// requests do not hold up others and replies go out as they are ready (each
// reply written whole under a send lock). What one client can make the server
// hold is bounded: requests in flight, and payload and read bytes buffered; a
// client that stops reading its replies stops being read from.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/async/socket.h"
#include "base/async/sync.h"
#include "base/async/task.h"
#include "base/buffer_pool.h"
#include "nbd/export.h"
#include "nbd/negotiation.h"
#include "nbd/stream_reader.h"
#include "nbd/tls_context.h"
#include "nbd/transport.h"
#include "nbd/wire.h"

namespace keel::nbd {

struct ConnectionLimits {
  std::chrono::milliseconds handshake_limit{10000};  // 0: none (qemu-nbd --handshake-limit)
  size_t max_requests_in_flight = 64;
  uint64_t max_buffered_bytes = 2 * uint64_t{kMaxRequestBytes};
};

struct ServerConfig {
  std::vector<Export*> exports;
  NegotiationOptions negotiation;
  // Set with negotiation.tls_configured: STARTTLS runs a session of this context.
  std::shared_ptr<const TlsContext> tls;
  ConnectionLimits limits;
};

class Connection {
 public:
  // Enough for nbdcopy's window (64 requests of 256 KiB) to reuse its buffers.
  static constexpr size_t kKeptBufferBytes = 16u << 20;

  Connection(Socket socket, const ServerConfig& config);
  ~Connection();
  // Serves the client until it disconnects or breaks the protocol; never throws.
  Task<void> serve();
  // Ends the connection (server shutdown): pending reads end, requests in flight finish. Safe from any
  // thread: it only shuts the socket down, which ends every wait on it, TLS or not.
  void shutdown() noexcept;
  // Why the connection ended, for the server's log; empty after a clean disconnect.
  const std::string& end_reason() const noexcept { return end_reason_; }

 private:
  Task<bool> negotiate();
  Task<void> start_tls(Negotiation& negotiation);
  Task<void> transmission();
  // A request as read: its payload, the error it is refused with (0: valid), and the bytes of credit it holds.
  struct Incoming {
    Request request{};
    BufferPool::Buffer payload;
    uint32_t error = 0;
    uint64_t credit = 0;
  };
  Task<bool> receive_request(Incoming& incoming);
  uint32_t validate(const Request& request) const;
  Task<void> wait_for_credit(uint64_t bytes);
  void return_credit(uint64_t bytes);
  Task<void> handle(Incoming incoming);
  Task<void> execute(const Request& request, std::span<const std::byte> payload);
  Task<void> execute_read(const Request& request);
  Task<void> execute_block_status(const Request& request);

  // Replies. Each sends one whole reply (all its chunks) under the send lock.
  Task<void> send(std::span<const iovec> pieces);
  Task<void> send_bytes(const Bytes& bytes);
  Task<void> reply_ok(const Request& request);
  Task<void> reply_error(const Request& request, uint32_t error, std::string_view message);

  Socket socket_;
  const ServerConfig& config_;
  std::unique_ptr<Transport> transport_;
  StreamReader reader_;
  Export* export_ = nullptr;
  NegotiationResult negotiated_;
  bool structured_ = false;
  HeaderMode mode_ = HeaderMode::Compact;
  uint32_t allocation_id_ = 0;  // context ids SET_META_CONTEXT gave; 0: not selected
  uint32_t depth_id_ = 0;

  CoMutex send_lock_;
  // Write payloads and read data; what it keeps between requests is bounded by kKeptBufferBytes.
  BufferPool buffers_{kKeptBufferBytes};
  TaskGroup requests_;
  size_t in_flight_ = 0;
  uint64_t buffered_ = 0;
  WaitQueue credit_;
  bool broken_ = false;  // a reply could not be sent: stop reading
  std::string end_reason_;
};

}  // namespace keel::nbd
