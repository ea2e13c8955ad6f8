// Explicit-endianness loads and stores, and a bounds-checked reader for
// untrusted bytes. Every on-disk or on-wire structure is decoded through these,
// so no parser does raw pointer arithmetic over input it has not measured.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "base/error.h"

namespace keel {

template <std::unsigned_integral T>
constexpr T byteswap(T v) noexcept {
  if constexpr (sizeof(T) == 1) return v;
  else if constexpr (sizeof(T) == 2) return __builtin_bswap16(v);
  else if constexpr (sizeof(T) == 4) return __builtin_bswap32(v);
  else return __builtin_bswap64(v);
}

template <std::unsigned_integral T>
T load_be(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return byteswap(v);
}

template <std::unsigned_integral T>
void store_be(std::byte* p, T v) noexcept {
  v = byteswap(v);
  std::memcpy(p, &v, sizeof v);
}

template <std::unsigned_integral T>
T load_le(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <std::unsigned_integral T>
void store_le(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

// Reads fixed-width fields out of a byte span; any access past the end raises
// an Error naming `what` instead of reading out of bounds.
class BigEndianReader {
 public:
  BigEndianReader(std::span<const std::byte> data, std::string_view what) : data_(data), what_(what) {}

  template <std::unsigned_integral T>
  T get(size_t offset) const {
    check(offset, sizeof(T));
    return load_be<T>(data_.data() + offset);
  }

  std::string get_string(size_t offset, size_t length) const {
    check(offset, length);
    return std::string(reinterpret_cast<const char*>(data_.data() + offset), length);
  }

  std::span<const std::byte> get_bytes(size_t offset, size_t length) const {
    check(offset, length);
    return data_.subspan(offset, length);
  }

  size_t size() const noexcept { return data_.size(); }

 private:
  void check(size_t offset, size_t length) const {
    if (offset > data_.size() || length > data_.size() - offset)
      raise(EINVAL, "{} is truncated (needs {} bytes at offset {}, has {})", what_, length, offset, data_.size());
  }

  std::span<const std::byte> data_;
  std::string_view what_;
};

}  // namespace keel
