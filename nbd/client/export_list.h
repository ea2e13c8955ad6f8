// What an NBD server offers: its exports with their sizes, flags, block sizes
// and metadata contexts, asked in the handshake's option phase (LIST, INFO,
// LIST_META_CONTEXT) without entering transmission; `keel-nbd -L` prints it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nbd/client/nbd_address.h"
#include "nbd/tls_credentials.h"

namespace keel::nbd::client {

struct ListedExport {
  std::string name;
  std::string description;
  uint64_t size = 0;
  uint16_t transmission_flags = 0;  // rebuilt from what libnbd reports (NBD_FLAG_SEND_RESIZE is not among it)
  // 0 when the server sent no block sizes.
  uint32_t min_block = 0;
  uint32_t preferred_block = 0;
  uint32_t max_block = 0;
  std::vector<std::string> meta_contexts;
};

// Connects to `server` (its export name is not used), over TLS with `tls` when given (`tls_hostname`: see
// connect_handle()), and lists every export; raises with qemu's wording ("Failed to connect to 'PATH': reason")
// when the server cannot be reached.
std::vector<ListedExport> list_exports(const NbdAddress& server, const TlsCredentials* tls = nullptr,
                                       const std::string& tls_hostname = "");

}  // namespace keel::nbd::client
