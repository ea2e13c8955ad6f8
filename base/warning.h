// Warnings that do not stop an operation, printed as qemu's warn_report()
// prints them: "<program>: warning: <message>" on stderr, at once.
#pragma once

#include <string>

#include <fmt/format.h>

namespace keel {

// The running program's name, as its messages start ("keel-img").
const char* program_name();

void print_warning(const std::string& message);
// Text on stderr as it is, no prefix and no newline added (qemu's error_printf()).
void print_text(const std::string& text);

template <typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  print_warning(fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void note(fmt::format_string<Args...> format, Args&&... args) {
  print_text(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace keel
