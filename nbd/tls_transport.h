// TlsTransport: a TLS session over another Transport (the socket, after
// STARTTLS). OpenSSL works on memory BIOs only: what it wants to send is
// drained to the lower transport and what arrives is fed to it, so nothing
// blocks and the event loop runs the handshake and the records like any other
// I/O. Reads and writes may run at once (the transmission phase reads requests
// while replies go out); a write lock keeps the records in the order OpenSSL
// made them, as a read can make records too (alerts, TLS 1.3 key updates).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <vector>

#include "base/async/sync.h"
#include "nbd/transport.h"

namespace keel::nbd {

class TlsTransport final : public Transport {
 public:
  // Takes ownership of the lower transport and of `session` (from TlsContext::new_session). Cannot fail, so the
  // connection never loses its transport on the way.
  TlsTransport(std::unique_ptr<Transport> lower, SSL* session) noexcept;
  ~TlsTransport() override;

  // The server side of the handshake; `received` are bytes of it already read from the lower transport.
  // Raises when it fails (the alert, if any, is sent first).
  Task<void> handshake(std::span<const std::byte> received);

  Task<size_t> read_some(std::span<std::byte> buffer) override;
  Task<void> write_all(std::span<const iovec> pieces) override;
  void shutdown() noexcept override { lower_->shutdown(); }

 private:
  // Sends whatever OpenSSL has queued for the peer.
  Task<void> flush();
  // Reads more from the lower transport into OpenSSL; false at its end of stream.
  Task<bool> receive();

  std::unique_ptr<Transport> lower_;
  SSL* ssl_;
  BIO* network_in_;   // bytes from the peer, for OpenSSL to read (owned by ssl_)
  BIO* network_out_;  // records OpenSSL wrote, to send (owned by ssl_)
  CoMutex write_lock_;
  std::vector<std::byte> input_;  // sized at the first read
};

}  // namespace keel::nbd
