// keel::Error: the one error type that travels from where a problem is found
// to the single place in each tool that prints it. It carries an errno-style
// code (so protocol front ends can map it) and a message that gains context
// ("Could not open 'x': ...") as it propagates.
#pragma once

#include <cerrno>
#include <exception>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace keel {

class Error : public std::exception {
 public:
  Error(int code, std::string message) : code_(code), message_(std::move(message)) {}

  int code() const noexcept { return code_; }
  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& message() const noexcept { return message_; }

  // Returns the same error with "prefix: " in front of the message.
  Error with_context(std::string_view prefix) const;

 private:
  int code_;
  std::string message_;
};

template <typename... Args>
[[noreturn]] void raise(int code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

// strerror() text for an errno value, in the words qemu uses ("No such file or directory").
std::string errno_text(int code);

// Raises Error(errno) with "what: strerror" when a syscall returned < 0.
[[noreturn]] void raise_errno(int code, std::string_view what);

}  // namespace keel
