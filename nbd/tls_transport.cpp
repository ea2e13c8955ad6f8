#include "nbd/tls_transport.h"

#include <openssl/err.h>

#include <algorithm>
#include <string>

#include "base/error.h"
#include "nbd/tls_context.h"

namespace keel::nbd {

namespace {

constexpr size_t kReadChunk = 16 * 1024 + 512;  // one TLS record and its overhead
constexpr size_t kWriteChunk = 256 * 1024;       // bounds the records queued before they are sent

}  // namespace

TlsTransport::TlsTransport(std::unique_ptr<Transport> lower, SSL* session) noexcept
    : lower_(std::move(lower)),
      ssl_(session),
      network_in_(SSL_get_rbio(session)),
      network_out_(SSL_get_wbio(session)) {}

TlsTransport::~TlsTransport() { SSL_free(ssl_); }

Task<void> TlsTransport::flush() {
  auto guard = co_await write_lock_.lock();
  char* data = nullptr;
  const long size = BIO_get_mem_data(network_out_, &data);
  if (size <= 0) co_return;
  // Taken out of the BIO before the write suspends, so records queued meanwhile go in a later flush.
  std::vector<std::byte> records(reinterpret_cast<std::byte*>(data), reinterpret_cast<std::byte*>(data) + size);
  (void)BIO_reset(network_out_);
  const iovec piece{records.data(), records.size()};
  co_await lower_->write_all(std::span(&piece, 1));
}

Task<bool> TlsTransport::receive() {
  input_.resize(kReadChunk);
  const size_t n = co_await lower_->read_some(input_);
  if (n == 0) co_return false;
  BIO_write(network_in_, input_.data(), static_cast<int>(n));
  co_return true;
}

Task<void> TlsTransport::handshake(std::span<const std::byte> received) {
  if (!received.empty()) BIO_write(network_in_, received.data(), static_cast<int>(received.size()));
  for (;;) {
    ERR_clear_error();
    const int ret = SSL_do_handshake(ssl_);
    const int error = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, ret);
    if (error == SSL_ERROR_NONE) {
      co_await flush();
      co_return;
    }
    if (error != SSL_ERROR_WANT_READ) {
      const std::string reason = openssl_error_text();
      co_await flush();  // the alert tells the client why
      raise(EPROTO, "TLS handshake failed: {}", reason);
    }
    co_await flush();
    if (!co_await receive()) raise(ECONNRESET, "client disconnected during the TLS handshake");
  }
}

Task<size_t> TlsTransport::read_some(std::span<std::byte> buffer) {
  for (;;) {
    ERR_clear_error();
    size_t n = 0;
    const int ret = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
    const int error = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, ret);
    const bool failed = error != SSL_ERROR_NONE && error != SSL_ERROR_ZERO_RETURN && error != SSL_ERROR_WANT_READ;
    // Taken before the flush suspends: another coroutine's OpenSSL call could clear the error queue meanwhile.
    const std::string reason = failed ? openssl_error_text() : "";
    if (BIO_ctrl_pending(network_out_) > 0) co_await flush();
    switch (error) {
      case SSL_ERROR_NONE:
        co_return n;
      case SSL_ERROR_ZERO_RETURN:  // close_notify
        co_return 0;
      case SSL_ERROR_WANT_READ:
        if (!co_await receive()) co_return 0;
        break;
      default:
        raise(EPROTO, "TLS error: {}", reason);
    }
  }
}

Task<void> TlsTransport::write_all(std::span<const iovec> pieces) {
  // Pieces (a reply's header and its data) are gathered so that small ones share a record.
  std::vector<std::byte> plain;
  auto seal = [&] {
    ERR_clear_error();
    size_t written = 0;
    // Memory BIOs grow as needed, so a write never waits for the peer.
    if (!plain.empty() && SSL_write_ex(ssl_, plain.data(), plain.size(), &written) != 1)
      raise(EPROTO, "TLS write failed: {}", openssl_error_text());
    plain.clear();
  };
  for (const iovec& piece : pieces) {
    const auto* data = static_cast<const std::byte*>(piece.iov_base);
    for (size_t done = 0; done < piece.iov_len;) {
      const size_t length = std::min(kWriteChunk - plain.size(), piece.iov_len - done);
      plain.insert(plain.end(), data + done, data + done + length);
      done += length;
      if (plain.size() == kWriteChunk) {
        seal();
        co_await flush();
      }
    }
  }
  seal();
  co_await flush();
}

}  // namespace keel::nbd
