#include "tools/keel-io/hexdump.h"

#include <cctype>

#include <fmt/format.h>

namespace keel::io {

std::string hex_dump(std::span<const std::byte> data, uint64_t offset) {
  std::string out;
  for (size_t line = 0; line < data.size(); line += 16) {
    const auto bytes = data.subspan(line, std::min<size_t>(16, data.size() - line));
    out += fmt::format("{:08x}:  ", offset + line);
    for (std::byte b : bytes) out += fmt::format("{:02x} ", static_cast<unsigned>(b));
    out += ' ';
    for (std::byte b : bytes) {
      const auto c = static_cast<unsigned char>(b);
      out += std::isalnum(c) ? static_cast<char>(c) : '.';
    }
    out += '\n';
  }
  return out;
}

}  // namespace keel::io
