// Where an NBD export is, read from an image name the way qemu reads it:
// URIs (nbd://HOST[:PORT]/EXPORT, nbd+tcp://..., nbd+unix:///EXPORT?socket=PATH)
// and the legacy syntax (nbd:HOST:PORT[:exportname=X], nbd:unix:PATH[:exportname=X]).
// The nbds schemes (nbds://, nbds+tcp://, nbds+unix://) require TLS; qemu 7.2
// knows none of them, keel reads them as libnbd does, with one more query
// parameter: tls-creds=ID, the --object whose credentials to use.
#pragma once

#include <optional>
#include <string>

namespace keel::nbd::client {

struct NbdAddress {
  bool is_unix = false;
  std::string host;    // TCP
  std::string port;    // TCP; 10809 unless given
  std::string socket;  // Unix
  std::string export_name;
  bool tls = false;                      // an nbds scheme
  std::optional<std::string> tls_creds;  // ?tls-creds=ID

  // The name qemu reports for the image: "nbd+unix:///x?socket=s", "nbd://host:10809/x"
  // (no '/' when the export name is empty); "nbds" for TLS, without the tls-creds query.
  std::string canonical_name() const;
};

// Parses `name`; raises EINVAL with qemu's messages ("No valid URL specified",
// "NBD server address missing", "error parsing address 'x'").
NbdAddress parse_nbd_address(const std::string& name);

}  // namespace keel::nbd::client
