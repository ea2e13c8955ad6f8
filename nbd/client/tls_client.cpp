#include "nbd/client/tls_client.h"

#include <libnbd.h>
#include <unistd.h>

#include <vector>

#include "base/async/socket.h"
#include "base/error.h"

namespace keel::nbd::client {

namespace {

// The objects of the running tool, defined while its command line is read (before any image opens).
std::vector<TlsObject>& registered() {
  static std::vector<TlsObject> objects;
  return objects;
}

[[noreturn]] void raise_setup_error() {
  raise(nbd_get_errno() ? nbd_get_errno() : EINVAL, "Could not set up TLS for the NBD client: {}", nbd_get_error());
}

void configure_tls(nbd_handle* handle, const TlsCredentials& tls) {
  if (nbd_supports_tls(handle) != 1) raise(ENOTSUP, "libnbd was built without TLS support");
  if (nbd_set_tls(handle, LIBNBD_TLS_REQUIRE) < 0) raise_setup_error();
  if (tls.kind == TlsCredentials::Kind::Psk) {
    if (nbd_set_tls_psk_file(handle, (tls.dir + "/keys.psk").c_str()) < 0 ||
        nbd_set_tls_username(handle, tls.username.c_str()) < 0)
      raise_setup_error();
    return;
  }
  if (nbd_set_tls_certificates(handle, tls.dir.c_str()) < 0 || nbd_set_tls_verify_peer(handle, tls.verify_peer) < 0)
    raise_setup_error();
}

// A TCP connection libnbd makes fails with these before any NBD byte: worded as keel's own connect_tcp().
bool is_connect_error(int code) {
  return code == ECONNREFUSED || code == ETIMEDOUT || code == EHOSTUNREACH || code == ENETUNREACH ||
         code == EADDRNOTAVAIL;
}

}  // namespace

void register_tls_object(const TlsObject& object) { registered().push_back(object); }

const TlsCredentials& tls_credentials_for(const NbdAddress& address) {
  if (address.tls_creds) {
    for (const TlsObject& o : registered()) {
      if (o.id != *address.tls_creds) continue;
      if (o.server_endpoint) raise(EINVAL, "Expected TLS credentials for a client endpoint");
      return o.credentials;
    }
    raise(ENOENT, "No TLS credentials with id '{}'", *address.tls_creds);
  }
  const TlsObject* only = nullptr;
  for (const TlsObject& o : registered()) {
    if (o.server_endpoint) continue;
    if (only)
      raise(EINVAL, "Several TLS credentials ('{}', '{}', ...): name one with ?tls-creds=ID", only->id, o.id);
    only = &o;
  }
  if (!only)
    raise(EINVAL, "An nbds name needs TLS credentials: give --object tls-creds-x509,...,endpoint=client "
                  "(or tls-creds-psk)");
  return only->credentials;
}

int connect_handle(nbd_handle* handle, const NbdAddress& server, const TlsCredentials* tls,
                   const std::string& hostname) {
  if (tls) configure_tls(handle, *tls);
  const bool x509_verified = tls && tls->kind == TlsCredentials::Kind::X509 && tls->verify_peer;
  if (x509_verified && server.is_unix && hostname.empty()) raise(EINVAL, "No hostname for certificate validation");
  if (x509_verified && server.is_unix)
    raise(ENOTSUP, "Checking a server certificate over a Unix socket is not supported by keel (libnbd takes no TLS "
                   "host name): use verify-peer=off");
  if (x509_verified && !hostname.empty() && hostname != server.host)
    raise(ENOTSUP, "A TLS host name other than the server's ('{}' for '{}') is not supported by keel: libnbd checks "
                   "certificates against the host it connects to", hostname, server.host);
  if (x509_verified) {
    const int connected = nbd_connect_tcp(handle, server.host.c_str(), server.port.c_str());
    if (connected < 0 && is_connect_error(nbd_get_errno()))
      raise(nbd_get_errno(), "Failed to connect to '{}:{}': {}", server.host, server.port,
            errno_text(nbd_get_errno()));
    return connected;
  }
  Socket socket = server.is_unix ? connect_unix(server.socket) : connect_tcp(server.host, server.port);
  // libnbd takes the descriptor over (and closes it); the Socket closes its own.
  const int fd = ::dup(socket.fd());
  if (fd < 0) raise_errno(errno, "dup");
  return nbd_connect_socket(handle, fd);
}

}  // namespace keel::nbd::client
