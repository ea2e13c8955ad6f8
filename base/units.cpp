#include "base/units.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace keel {

namespace {

unsigned suffix_shift(char c) {
  switch (std::tolower(static_cast<unsigned char>(c))) {
    case 'b':
      return 0;
    case 'k':
      return 10;
    case 'm':
      return 20;
    case 'g':
      return 30;
    case 't':
      return 40;
    case 'p':
      return 50;
    case 'e':
      return 60;
    default:
      return 64;  // not a suffix
  }
}

// Digits of `base` from `pos` into `value`; false once the value passes 2^64.
bool scan_digits(std::string_view text, size_t& pos, unsigned base, uint64_t& value, bool& any) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  bool fits = true;
  for (; pos < text.size() && std::isxdigit(static_cast<unsigned char>(text[pos])); pos++) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text[pos])));
    const unsigned digit = std::isdigit(static_cast<unsigned char>(c)) ? static_cast<unsigned>(c - '0')
                                                                       : 10u + static_cast<unsigned>(c - 'a');
    if (digit >= base) break;
    any = true;
    if (value > (max - digit) / base)
      fits = false;
    else
      value = value * base + digit;
  }
  return fits;
}

}  // namespace

SizeScan scan_size(std::string_view text) {
  SizeScan result;
  size_t pos = 0;
  while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) pos++;
  if (pos < text.size() && text[pos] == '+') pos++;
  const bool hex = pos + 1 < text.size() && text[pos] == '0' && (text[pos + 1] == 'x' || text[pos + 1] == 'X');
  if (hex) pos += 2;
  uint64_t whole = 0;
  bool any_digit = false;
  bool fits = scan_digits(text, pos, hex ? 16 : 10, whole, any_digit);
  if (!any_digit) return result;
  // A fraction (decimal only) counts in the unit the suffix names, rounded to
  // the nearest byte; one so long that it reads as 1.0 counts as nothing.
  double fraction = 0;
  if (!hex && pos < text.size() && text[pos] == '.') {
    const size_t start = pos++;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) pos++;
    fraction = std::strtod(std::string(text.substr(start, pos - start)).insert(0, "0").c_str(), nullptr);
    if (fraction >= 1.0) fraction = 0;
  }
  unsigned shift = 0;
  if (pos < text.size() && suffix_shift(text[pos]) < 64) {
    shift = suffix_shift(text[pos++]);
    result.hex_with_suffix = hex;
  }
  if (pos != text.size() || (shift == 0 && fraction != 0)) return result;
  const uint64_t extra = static_cast<uint64_t>(std::llround(fraction * static_cast<double>(uint64_t{1} << shift)));
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  if (!fits || (shift && whole > (max >> shift)) || (whole << shift) > max - extra) {
    result.out_of_range = true;
    return result;
  }
  result.value = (whole << shift) + extra;
  return result;
}

std::optional<uint64_t> parse_size(std::string_view text) { return scan_size(text).value; }

std::string format_size(uint64_t bytes) {
  static constexpr const char* suffixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  // Switch to the next unit once the integer part would reach 1000, as qemu does.
  int exponent = 0;
  std::frexp(static_cast<double>(bytes) / (1000.0 / 1024.0), &exponent);
  int index = exponent > 0 ? (exponent - 1) / 10 : 0;
  if (index > 6) index = 6;
  double divisor = static_cast<double>(uint64_t{1} << (index * 10));
  return fmt::format("{} {}B", fmt::format("{:.3g}", static_cast<double>(bytes) / divisor), suffixes[index]);
}

}  // namespace keel
