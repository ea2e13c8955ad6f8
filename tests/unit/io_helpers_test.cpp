// keel-io's pure helpers: numbers as qemu_strtosz() reads them, -P patterns,
// the -v dump, report formatting and getopt-style option scanning.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>

#include "tools/keel-io/buffer.h"
#include "tools/keel-io/hexdump.h"
#include "tools/keel-io/number.h"
#include "tools/common/option_scanner.h"
#include "tools/keel-io/report.h"

using namespace keel::io;
using keel::tools::LongOption;
using keel::tools::OptionScanner;

namespace {

int64_t value(const char* text) {
  const ParsedNumber n = parse_number(text);
  EXPECT_EQ(n.error, 0) << text;
  return n.value;
}
int error(const char* text) { return parse_number(text).error; }

}  // namespace

TEST(IoNumber, SuffixesFractionsAndHex) {
  EXPECT_EQ(value("4096"), 4096);
  EXPECT_EQ(value("4k"), 4096);
  EXPECT_EQ(value("4K"), 4096);
  EXPECT_EQ(value("1b"), 1);
  EXPECT_EQ(value("1.5M"), 1572864);
  EXPECT_EQ(value("1.k"), 1024);
  EXPECT_EQ(value("5."), 5);
  EXPECT_EQ(value("+5"), 5);
  EXPECT_EQ(value(" \t5"), 5);
  EXPECT_EQ(value("010"), 10);
  EXPECT_EQ(value("0x10"), 16);
  EXPECT_EQ(value("0X1b"), 27);
  EXPECT_EQ(value("1.5e"), 1536LL << 50);
  EXPECT_EQ(value("9223372036854775807"), INT64_MAX);
  EXPECT_TRUE(parse_number("0x10k").hex_with_suffix);
  EXPECT_EQ(value("0x10k"), 16384);
}

TEST(IoNumber, FractionsRoundHalfUp) {
  EXPECT_EQ(value("0.00048828125k"), 1);  // 0.5 bytes
  EXPECT_EQ(value("0.00146484375k"), 2);  // 1.5 bytes
  EXPECT_EQ(value("0.0001k"), 0);
}

TEST(IoNumber, MalformedAndTooLarge) {
  for (const char* bad : {"", "x", "1s", "1w", "1.5", "0.5b", "-0", "-0x10", "0x", "0xk", "0x1.5", "1e3", "1.5e3k", "1.k5", "1kb",
                          "00x10", ".5k", "99999999999999999999k", "99999Ex"})
    EXPECT_EQ(error(bad), EINVAL) << bad;
  for (const char* big : {"8E", "16E", "15.9999E", "99999E", "9223372036854775808", "18446744073709551616", "0xffffffffffffffffff",
                          "-99999999999999999999"})
    EXPECT_EQ(error(big), ERANGE) << big;
  EXPECT_EQ(number_error_message(EINVAL, "x"), "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- x");
  EXPECT_EQ(number_error_message(ERANGE, "8E"), "Parsing error: argument too large -- 8E");
}

TEST(IoPattern, ByteWithStrtolRules) {
  EXPECT_EQ(parse_pattern("0xab"), std::byte{0xab});
  EXPECT_EQ(parse_pattern("255"), std::byte{255});
  EXPECT_EQ(parse_pattern("010"), std::byte{8});  // octal, as strtol reads it
  EXPECT_EQ(parse_pattern("-0"), std::byte{0});
  for (const char* bad : {"256", "-1", "0x", "1x", "q", "0x100"}) EXPECT_FALSE(parse_pattern(bad)) << bad;
  EXPECT_EQ(invalid_pattern_message("q"), "q is not a valid pattern byte");
}

TEST(IoBuffer, MisalignedBufferIsSixteenPastAlignment) {
  IoBuffer aligned(100, std::byte{7}, false), misaligned(100, std::byte{7}, true);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned.span().data()) % 4096, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(misaligned.span().data()) % 4096, 16u);
  EXPECT_TRUE(all_bytes_are(misaligned.span(), std::byte{7}));
  misaligned.span()[99] = std::byte{8};
  EXPECT_FALSE(all_bytes_are(misaligned.span(), std::byte{7}));
}

TEST(IoHexDump, SixteenBytesPerLineAlnumAsText) {
  std::vector<std::byte> data;
  for (char c : std::string("Hello, World! 0123456789")) data.push_back(static_cast<std::byte>(c));
  data.push_back(std::byte{0xff});
  EXPECT_EQ(hex_dump(data, 3),
            "00000003:  48 65 6c 6c 6f 2c 20 57 6f 72 6c 64 21 20 30 31  Hello..World..01\n"
            "00000013:  32 33 34 35 36 37 38 39 ff  23456789.\n");
  EXPECT_EQ(hex_dump({}, 0), "");
  EXPECT_EQ(hex_dump(std::span(data).first(1), 0x100000000ull), "100000000:  48  H\n");
}

TEST(IoReport, QemuIoSizesAndTimes) {
  EXPECT_EQ(human_bytes(4096), "4 KiB");
  EXPECT_EQ(human_bytes(1536), "1.500 KiB");
  EXPECT_EQ(human_bytes(512), "512 bytes");
  EXPECT_EQ(human_bytes(0), "0 bytes");
  EXPECT_EQ(human_bytes(0.469471), "0.469471 bytes");
  EXPECT_EQ(human_bytes(5.0005), "5 bytes");  // cut at the first ".000", as qemu-io does
  EXPECT_EQ(human_bytes(9223372036854775807.0), "8 EiB");
  EXPECT_EQ(human_bytes(1048576.0 * 1000), "1000 MiB");
  using namespace std::chrono_literals;
  EXPECT_EQ(elapsed_text(20ms, false), "00.02 sec");
  EXPECT_EQ(elapsed_text(3723s + 450ms, false), "1:02:03.45");
  EXPECT_EQ(elapsed_text(20ms, true), "0:00:00.02");
  EXPECT_EQ(transfer_report({"read", 0, 4096, 4096, 1, 1s}, false),
            "read 4096/4096 bytes at offset 0\n4 KiB, 1 ops; 0:00:01.00 (4 KiB/sec and 1.0000 ops/sec)\n");
  EXPECT_EQ(transfer_report({"wrote", 512, 1024, 1024, 1, 500ms}, true), "1024,1,0:00:00.50,2048.000,2.000\n");
}

TEST(IoOptionScanner, GetoptRules) {
  OptionScanner s("read", {"0", "-qv", "-P5", "4k", "-s", "1", "--", "-x"}, "P:qs:v");
  std::string seen;
  while (auto o = s.next()) seen += std::string(1, static_cast<char>(o->id)) + o->argument + ";";
  EXPECT_EQ(seen, "q;v;P5;s1;");
  EXPECT_EQ(s.operands(), (std::vector<std::string>{"0", "4k", "-x"}));
}

TEST(IoOptionScanner, ErrorsAsGlibcPrintsThem) {
  testing::internal::CaptureStderr();
  OptionScanner unknown("read", {"-X", "0"}, "q");
  EXPECT_EQ(unknown.next()->id, '?');
  OptionScanner missing("read", {"-P"}, "P:");
  EXPECT_EQ(missing.next()->id, '?');
  const std::vector<LongOption> longs = {{"cmd", true, 'c'}, {"cache", true, 't'}, {"help", false, 'h'}};
  OptionScanner ambiguous("keel-io", {"--c=x"}, "", longs);
  EXPECT_EQ(ambiguous.next()->id, '?');
  OptionScanner no_argument("keel-io", {"--help=x"}, "", longs);
  EXPECT_EQ(no_argument.next()->id, '?');
  OptionScanner unrecognized("keel-io", {"--foo"}, "", longs);
  EXPECT_EQ(unrecognized.next()->id, '?');
  OptionScanner needs_argument("keel-io", {"--cm"}, "", longs);
  EXPECT_EQ(needs_argument.next()->id, '?');
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "read: invalid option -- 'X'\n"
            "read: option requires an argument -- 'P'\n"
            "keel-io: option '--c=x' is ambiguous; possibilities: '--cmd' '--cache'\n"
            "keel-io: option '--help' doesn't allow an argument\n"
            "keel-io: unrecognized option '--foo'\n"
            "keel-io: option '--cmd' requires an argument\n");
  OptionScanner abbreviated("keel-io", {"--cm=length", "--cache", "none"}, "", longs);
  EXPECT_EQ(abbreviated.next()->argument, "length");
  EXPECT_EQ(abbreviated.next()->argument, "none");
}
