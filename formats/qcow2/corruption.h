// Raised when qcow2 metadata is found inconsistent. Write paths catch it and
// set the image's corrupt bit before passing it on, as qemu does, so the
// image is refused for writing until it is repaired.
#pragma once

#include "base/error.h"

namespace keel::qcow2 {

struct Corruption : Error {
  explicit Corruption(std::string message) : Error(EIO, std::move(message)) {}
};

template <typename... Args>
[[noreturn]] void raise_corruption(fmt::format_string<Args...> format, Args&&... args) {
  throw Corruption(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace keel::qcow2
