// --object as qemu's tools take it, for the objects keel has: TLS credentials
// (tls-creds-x509, tls-creds-psk) and authorization (authz-simple), parsed
// with qemu's property names, checks and wording; any other type is refused
// with one line. keel-nbd uses them as a server (--tls-creds, --tls-authz);
// keel-img and keel-io register the TLS ones for the NBD client (nbds://).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "nbd/tls_credentials.h"

namespace keel::tools {

// authz-simple: the one identity allowed, an x509 Distinguished Name as GnuTLS prints it
// ("O=Example,CN=client.example"; on a command line ",," for each comma) or a PSK username.
struct AuthzObject {
  std::string id;
  std::string identity;
};

struct Objects {
  std::vector<nbd::TlsObject> tls;
  std::vector<AuthzObject> authz;

  // Parses one --object "TYPE,id=ID,..." (or "qom-type=TYPE,...") and checks what qemu checks when it creates
  // the object: the credential files it reads (ca-cert.pem, keys.psk; a psk client's username in keys.psk) and
  // that the id is new. Returns the object when it is TLS credentials, else nullptr.
  const nbd::TlsObject* add(std::string_view text);
  const AuthzObject* find_authz(const std::string& id) const;
};

// For keel-img and keel-io: adds one --object to the tool's objects and its TLS credentials to the NBD client's.
void define_client_object(std::string_view text);

}  // namespace keel::tools
