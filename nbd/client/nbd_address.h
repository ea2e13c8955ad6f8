// Where an NBD export is, read from an image name the way qemu reads it:
// URIs (nbd://HOST[:PORT]/EXPORT, nbd+tcp://..., nbd+unix:///EXPORT?socket=PATH)
// and the legacy syntax (nbd:HOST:PORT[:exportname=X], nbd:unix:PATH[:exportname=X]).
#pragma once

#include <string>

namespace keel::nbd::client {

struct NbdAddress {
  bool is_unix = false;
  std::string host;    // TCP
  std::string port;    // TCP; 10809 unless given
  std::string socket;  // Unix
  std::string export_name;

  // The name qemu reports for the image: "nbd+unix:///x?socket=s", "nbd://host:10809/x"
  // (no '/' when the export name is empty).
  std::string canonical_name() const;
};

// Parses `name`; raises EINVAL with qemu's messages ("No valid URL specified",
// "NBD server address missing", "error parsing address 'x'") and ENOTSUP for
// TLS (nbds://), which keel's client does not do yet.
NbdAddress parse_nbd_address(const std::string& name);

}  // namespace keel::nbd::client
