#include "base/error.h"

#include <cstring>

namespace keel {

Error Error::with_context(std::string_view prefix) const {
  return Error(code_, fmt::format("{}: {}", prefix, message_));
}

std::string errno_text(int code) {
  char buf[256];
  return std::string(strerror_r(code, buf, sizeof buf));
}

void raise_errno(int code, std::string_view what) {
  throw Error(code, fmt::format("{}: {}", what, errno_text(code)));
}

}  // namespace keel
