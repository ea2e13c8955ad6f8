// Numbers on qemu-io's command lines: byte counts and offsets with an
// optional binary suffix, read with the rules of qemu's qemu_strtosz(), and
// the messages qemu-io prints when one does not parse.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace keel::io {

struct ParsedNumber {
  int64_t value = 0;
  // 0, EINVAL (malformed, or an unknown suffix) or ERANGE (above INT64_MAX).
  int error = 0;
  // "0x10k": accepted, but qemu warns that suffixes on hex numbers are deprecated.
  bool hex_with_suffix = false;
};

// Decimal ("4096", "+5"), hex ("0x1000"), or a decimal fraction with a
// suffix ("1.5M"); suffixes B K M G T P E in either case. Fractions round
// to the nearest byte, halves up.
ParsedNumber parse_number(std::string_view text);

// "Parsing error: ..." for a number that did not parse (error != 0).
std::string number_error_message(int error, std::string_view text);

}  // namespace keel::io
