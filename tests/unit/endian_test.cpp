#include <gtest/gtest.h>

#include <array>

#include "base/endian.h"

using namespace keel;

TEST(Endian, BigAndLittleRoundTrip) {
  std::array<std::byte, 8> b{};
  store_be<uint32_t>(b.data(), 0x11223344);
  EXPECT_EQ(b[0], std::byte{0x11});
  EXPECT_EQ(b[3], std::byte{0x44});
  EXPECT_EQ(load_be<uint32_t>(b.data()), 0x11223344u);
  store_le<uint64_t>(b.data(), 0x0102030405060708ull);
  EXPECT_EQ(b[0], std::byte{0x08});
  EXPECT_EQ(load_le<uint64_t>(b.data()), 0x0102030405060708ull);
  store_be<uint16_t>(b.data(), 0xabcd);
  EXPECT_EQ(load_be<uint16_t>(b.data()), 0xabcd);
}

TEST(Endian, ReaderRefusesOutOfBounds) {
  std::array<std::byte, 10> b{};
  BigEndianReader r(b, "test structure");
  EXPECT_NO_THROW(r.get<uint64_t>(2));
  EXPECT_THROW(r.get<uint64_t>(3), Error);
  EXPECT_THROW(r.get<uint8_t>(10), Error);
  EXPECT_THROW(r.get_string(5, SIZE_MAX), Error);
  try {
    r.get<uint32_t>(8);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test structure is truncated"), std::string::npos);
  }
}
