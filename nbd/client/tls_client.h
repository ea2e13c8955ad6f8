// TLS for keel's NBD client. The credentials are the tls-creds objects a tool
// was given (--object ...,endpoint=client, as qemu's tools take them),
// registered here once parsed: an nbds:// name picks one with its
// ?tls-creds=ID query, or uses the only one there is. libnbd does the TLS
// (GnuTLS), reading the same directory layout as qemu: DIR/ca-cert.pem,
// DIR/client-cert.pem and DIR/client-key.pem for x509, DIR/keys.psk for psk.
//
// libnbd 1.14 checks the server's certificate only against the host name of
// a TCP connection it made itself (it has no call to set a TLS host name), so
// x509 over TCP connects through libnbd, and x509 over a Unix socket with
// verify-peer on is refused as qemu refuses it without tls-hostname ("No
// hostname for certificate validation"): it could not be verified.
#pragma once

#include <optional>
#include <string>

#include "nbd/client/nbd_address.h"
#include "nbd/tls_credentials.h"

struct nbd_handle;

namespace keel::nbd::client {

// Makes `object` known to nbds:// names (the tool has checked its id is new).
void register_tls_object(const TlsObject& object);

// The client credentials for `address` (which must be TLS): its tls-creds=ID, or the only registered object
// with a client endpoint. Raises when there is none, several, or the one named is a server's.
const TlsCredentials& tls_credentials_for(const NbdAddress& address);

// Connects `handle` to `server` (and runs the handshake libnbd does at connect), with TLS required when `tls` is
// given. `hostname` is the name to check an x509 server certificate against (empty: the TCP host). Returns
// libnbd's result (-1 with nbd_get_error() set on failure); raises for what cannot be attempted.
int connect_handle(nbd_handle* handle, const NbdAddress& server, const TlsCredentials* tls,
                   const std::string& hostname = "");

}  // namespace keel::nbd::client
