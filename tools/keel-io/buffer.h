// The data of qemu-io's requests: buffers filled with a -P pattern byte or
// with a -s source file, and the check of what a read returned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "block/file/file_node.h"

namespace keel::io {

// What a write holds without -P, and a read buffer before the read, as in qemu-io.
constexpr std::byte kDefaultWritePattern{0xcd};
constexpr std::byte kReadFill{0xab};

// -P's argument as qemu-io reads it (strtol with base 0, then 0..255).
std::optional<std::byte> parse_pattern(std::string_view text);
std::string invalid_pattern_message(std::string_view text);

// A request buffer aligned for O_DIRECT, or with -m (misalign) deliberately
// 16 bytes past an aligned address.
class IoBuffer {
 public:
  IoBuffer(size_t size, std::byte fill, bool misalign);
  std::span<std::byte> span() noexcept { return storage_.span(offset_, size_); }
  std::span<const std::byte> span() const noexcept { return {storage_.data() + offset_, size_}; }
  size_t size() const noexcept { return size_; }

 private:
  block::AlignedBuffer storage_;
  size_t offset_;
  size_t size_;
};

// Fills `buffer` with the contents of `path`, repeated as often as needed.
// Returns the message qemu-io prints (perror style) when that fails.
std::optional<std::string> fill_from_file(std::span<std::byte> buffer, const std::string& path);

// True when every byte of `data` is `pattern`.
bool all_bytes_are(std::span<const std::byte> data, std::byte pattern);

}  // namespace keel::io
