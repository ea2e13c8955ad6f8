// qemu-io's -v dump: 16 bytes a line, the offset in eight hex digits, the
// bytes in hex, then the alphanumeric ones as text and the rest as dots.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace keel::io {

std::string hex_dump(std::span<const std::byte> data, uint64_t offset);

}  // namespace keel::io
