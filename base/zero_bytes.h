// Whether a buffer holds nothing but zero bytes (convert's sparse detection, detect-zeroes).
#pragma once

#include <cstddef>
#include <cstring>

namespace keel {

inline bool is_zero(const std::byte* p, size_t n) {
  // The buffer is zero iff its first 16 bytes are and it equals itself shifted
  // by 16; glibc's vectorised memcmp does the scanning.
  static constexpr std::byte kZeros[16] = {};
  if (n <= 16) return std::memcmp(p, kZeros, n) == 0;
  return std::memcmp(p, kZeros, 16) == 0 && std::memcmp(p, p + 16, n - 16) == 0;
}

}  // namespace keel
