// qemu's TLS credential objects (tls-creds-x509, tls-creds-psk) as the NBD
// server and client use them: what kind, where the files are, and which side
// of a connection they are for.
#pragma once

#include <string>

namespace keel::nbd {

struct TlsCredentials {
  enum class Kind { X509, Psk };
  Kind kind = Kind::X509;
  std::string dir;
  bool verify_peer = true;  // x509 only: qemu's default
  std::string username;     // psk, client endpoint only: the identity sent ("qemu" unless given, as in qemu)
};

// One --object tls-creds-*: its id and endpoint (qemu's default endpoint is client).
struct TlsObject {
  std::string id;
  TlsCredentials credentials;
  bool server_endpoint = false;
};

// DIR/NAME, raising qemu's "Unable to access credentials" error when it cannot be read.
std::string tls_credentials_file(const std::string& dir, const char* name);

}  // namespace keel::nbd
