// Spelling out NBD messages byte by byte for the tests: the expected bytes are
// written from the layouts in doc/proto.md, independently of nbd/wire.cpp, so
// a test compares the code against the spec rather than against itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace keel::nbd::test {

class Wire {
 public:
  Wire& u8(uint8_t v) {
    bytes_.push_back(std::byte{v});
    return *this;
  }
  Wire& u16(uint16_t v) { return be(v, 2); }
  Wire& u32(uint32_t v) { return be(v, 4); }
  Wire& u64(uint64_t v) { return be(v, 8); }
  Wire& str(std::string_view s) {
    for (char c : s) u8(static_cast<uint8_t>(c));
    return *this;
  }
  Wire& zeroes(size_t n) {
    bytes_.insert(bytes_.end(), n, std::byte{0});
    return *this;
  }
  Wire& bytes(const std::vector<std::byte>& b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }

  const std::vector<std::byte>& get() const { return bytes_; }
  operator const std::vector<std::byte>&() const { return bytes_; }  // NOLINT: lets a Wire stand for its bytes

 private:
  Wire& be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) u8(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<std::byte> bytes_;
};

}  // namespace keel::nbd::test
