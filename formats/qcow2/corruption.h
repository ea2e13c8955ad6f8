// Raised when qcow2 metadata is found inconsistent. Every request path catches
// it and signals the corruption before passing it on, as qemu does: a writable
// image gets its corrupt bit and serves no more requests until it is repaired.
#pragma once

#include "base/error.h"

namespace keel::qcow2 {

struct Corruption : Error {
  explicit Corruption(std::string message) : Error(EIO, std::move(message)) {}
};

// C's "%#x", which qemu's messages use: "0" for zero, "0x1f" otherwise.
inline std::string c_hex(uint64_t value) { return value ? fmt::format("{:#x}", value) : "0"; }

template <typename... Args>
[[noreturn]] void raise_corruption(fmt::format_string<Args...> format, Args&&... args) {
  throw Corruption(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace keel::qcow2
