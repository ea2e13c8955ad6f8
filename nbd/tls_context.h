// TlsContext: the server's TLS credentials as qemu's tls-creds objects
// describe them, loaded into an OpenSSL context that makes one SSL session
// per connection. x509: DIR/ca-cert.pem, DIR/server-cert.pem and
// DIR/server-key.pem, with client certificates required and checked against
// the CA unless verify-peer is off. psk: DIR/keys.psk, lines "username:hexkey";
// the client's PSK identity is the user name, over TLS 1.3 (external PSK) or
// TLS 1.2 PSK cipher suites, whichever the client (GnuTLS in libnbd and qemu)
// offers. With an authorized identity (qemu's --tls-authz with authz-simple)
// only that client completes the handshake: the x509 certificate's subject
// Distinguished Name as GnuTLS prints it for qemu (RFC 4514 escaping, in the
// certificate's order: "O=Example,CN=client.example"), or the PSK username.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nbd/tls_credentials.h"

namespace keel::nbd {

class TlsContext {
 public:
  // Reads the files; raises with qemu's wording when one is missing or unusable.
  explicit TlsContext(const TlsCredentials& credentials, std::optional<std::string> authorized_identity = {});
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new server session on memory BIOs (SSL_get_rbio: from the peer, SSL_get_wbio: to it); the caller owns it.
  SSL* new_session() const;

 private:
  void load_x509(const TlsCredentials& credentials);
  void load_psk(const std::string& dir);
  static unsigned int find_psk(SSL* ssl, const char* identity, unsigned char* psk, unsigned int max) noexcept;
  static int check_certificate(int preverified, X509_STORE_CTX* store) noexcept;

  SSL_CTX* ctx_ = nullptr;
  std::map<std::string, std::vector<uint8_t>, std::less<>> psk_keys_;  // std::less<>: lookups never allocate
  std::optional<std::string> authorized_identity_;
};

// The message of OpenSSL's most recent error (and clears the queue), for error reports.
std::string openssl_error_text();

}  // namespace keel::nbd
