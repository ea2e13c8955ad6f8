#include <gtest/gtest.h>

#include "base/units.h"

using keel::format_size;
using keel::parse_size;

TEST(ParseSize, PlainBytesAndSuffixes) {
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("64k"), 65536u);
  EXPECT_EQ(parse_size("64K"), 65536u);
  EXPECT_EQ(parse_size("1M"), 1048576u);
  EXPECT_EQ(parse_size("1G"), 1073741824u);
  EXPECT_EQ(parse_size("2T"), 2ull << 40);
  EXPECT_EQ(parse_size("1P"), 1ull << 50);
  EXPECT_EQ(parse_size("1E"), 1ull << 60);
  EXPECT_EQ(parse_size("100b"), 100u);
  EXPECT_EQ(parse_size("1.5G"), 1610612736u);
}

TEST(ParseSize, RejectsMalformedAndOverflow) {
  for (const char* bad : {"", "x", "1X", "-1", "1.5", "12kk", "k", ".", ".5k", "99999999999999999999", "16E", "0x",
                          "0x1.8k", "1e3", "16 ", "1.5b", "00x10", "++1"})
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
  EXPECT_EQ(parse_size("7E"), 7ull << 60);
  EXPECT_EQ(parse_size("8E"), 8ull << 60);  // below 2^64: callers that need an int64 check the range
  EXPECT_TRUE(keel::scan_size("16E").out_of_range);
  EXPECT_TRUE(keel::scan_size("18446744073709551616").out_of_range);
  EXPECT_FALSE(keel::scan_size("1kk").out_of_range);
}

TEST(ParseSize, QemuStrtoszForms) {
  EXPECT_EQ(parse_size("0x10"), 16u);
  EXPECT_EQ(parse_size("0X10b"), 267u);  // 'b' is a hex digit here
  EXPECT_EQ(parse_size("010"), 10u);     // leading zeros are decimal
  EXPECT_EQ(parse_size(" \t+16"), 16u);
  EXPECT_EQ(parse_size("1."), 1u);
  EXPECT_EQ(parse_size("1.0"), 1u);
  EXPECT_EQ(parse_size("5.k"), 5120u);
  EXPECT_EQ(parse_size("0.4999k"), 512u);  // rounded to the nearest byte
  EXPECT_EQ(parse_size("0.000488k"), 0u);
  EXPECT_EQ(parse_size("1.99999999999999999k"), 1024u);  // the fraction reads as 1.0 and is dropped
  EXPECT_EQ(parse_size("1e"), 1ull << 60);
  EXPECT_TRUE(keel::scan_size("0x1k").hex_with_suffix);
  EXPECT_EQ(parse_size("0x1k"), 1024u);
}

TEST(FormatSize, MatchesQemuSizeToStr) {
  EXPECT_EQ(format_size(0), "0 B");
  EXPECT_EQ(format_size(512), "512 B");
  EXPECT_EQ(format_size(1000), "0.977 KiB");
  EXPECT_EQ(format_size(4096), "4 KiB");
  EXPECT_EQ(format_size(200704), "196 KiB");
  EXPECT_EQ(format_size(1073741824), "1 GiB");
  EXPECT_EQ(format_size(10485760), "10 MiB");
  EXPECT_EQ(format_size(31916032), "30.4 MiB");
  EXPECT_EQ(format_size(1ull << 60), "1 EiB");
}
