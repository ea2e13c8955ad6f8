#include "nbd/tls_credentials.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"

namespace keel::nbd {

// qemu checks each file is readable before handing it to the TLS library, with this wording.
std::string tls_credentials_file(const std::string& dir, const char* name) {
  const std::string path = dir + "/" + name;
  if (access(path.c_str(), R_OK) != 0)
    raise(errno, "Unable to access credentials {}: {}", path, std::strerror(errno));
  return path;
}

}  // namespace keel::nbd
