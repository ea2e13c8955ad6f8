#include "tools/keel-io/buffer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "base/error.h"

namespace keel::io {

namespace {
constexpr size_t kMisalignment = 16;
}

std::optional<std::byte> parse_pattern(std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const long value = std::strtol(s.c_str(), &end, 0);
  if (value < 0 || value > UCHAR_MAX || *end != '\0') return std::nullopt;
  return static_cast<std::byte>(value);
}

std::string invalid_pattern_message(std::string_view text) { return fmt::format("{} is not a valid pattern byte", text); }

IoBuffer::IoBuffer(size_t size, std::byte fill, bool misalign)
    : storage_(size + (misalign ? kMisalignment : 0)), offset_(misalign ? kMisalignment : 0), size_(size) {
  std::fill(storage_.data(), storage_.data() + storage_.size(), fill);
}

std::optional<std::string> fill_from_file(std::span<std::byte> buffer, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fmt::format("{}: {}", path, errno_text(errno));
  size_t filled = 0;
  int error = 0;
  while (filled < buffer.size()) {
    const ssize_t n = ::read(fd, buffer.data() + filled, buffer.size() - filled);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = errno;
    if (n <= 0) break;
    filled += static_cast<size_t>(n);
  }
  ::close(fd);
  if (error) return fmt::format("{}: {}", path, errno_text(error));
  // As in qemu-io, nothing read is an error even for a zero-length request.
  if (filled == 0) return fmt::format("{}: file is empty", path);
  for (size_t at = filled; at < buffer.size(); at += filled)
    std::memcpy(buffer.data() + at, buffer.data(), std::min(filled, buffer.size() - at));
  return std::nullopt;
}

bool all_bytes_are(std::span<const std::byte> data, std::byte pattern) {
  return std::all_of(data.begin(), data.end(), [pattern](std::byte b) { return b == pattern; });
}

}  // namespace keel::io
