// keel-nbd's --object: qemu's TLS credential objects (tls-creds-x509,
// tls-creds-psk) parsed with qemu's property names, checks and wording; other
// object types are refused.
#pragma once

#include <string>
#include <string_view>

#include "nbd/tls_context.h"

namespace keel::nbdtool {

struct TlsObject {
  std::string id;
  nbd::TlsCredentials credentials;
  bool server_endpoint = false;  // qemu's default endpoint is client, which a server cannot use
};

// Parses "TYPE,id=ID,dir=DIR[,endpoint=server][,verify-peer=on|off]".
TlsObject parse_tls_object(std::string_view text);

}  // namespace keel::nbdtool
