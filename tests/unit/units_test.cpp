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
  for (const char* bad : {"", "x", "1X", "-1", "1.5", "12kk", "k", ".", "99999999999999999999", "16E", "8E"})
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
  EXPECT_EQ(parse_size("7E"), 7ull << 60);
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
