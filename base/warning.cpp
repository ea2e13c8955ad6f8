#include "base/warning.h"

#include <cerrno>
#include <cstdio>

namespace keel {

const char* program_name() { return program_invocation_short_name; }

void print_warning(const std::string& message) {
  std::fprintf(stderr, "%s: warning: %s\n", program_name(), message.c_str());
}

void print_text(const std::string& text) { std::fputs(text.c_str(), stderr); }

}  // namespace keel
