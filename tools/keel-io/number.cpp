#include "tools/keel-io/number.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

namespace keel::io {

namespace {

using u128 = unsigned __int128;

int suffix_shift(char c) {
  switch (std::toupper(static_cast<unsigned char>(c))) {
    case 'B': return 0;
    case 'K': return 10;
    case 'M': return 20;
    case 'G': return 30;
    case 'T': return 40;
    case 'P': return 50;
    case 'E': return 60;
    default: return -1;
  }
}

int digit_value(char c, int base) {
  int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
          : std::isxdigit(static_cast<unsigned char>(c)) ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                                                          : 99;
  return v < base ? v : -1;
}

// strtoull()'s reading of an unsigned number: leading space, a sign, for base
// 16 an optional "0x". Sets `pos` after the digits (to 0 if there were none).
struct Integral {
  uint64_t value = 0;
  bool negative = false;
  bool overflow = false;
  size_t end = 0;
};

Integral read_integral(std::string_view s, int base) {
  Integral r;
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) i++;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) r.negative = s[i++] == '-';
  if (base == 16 && i + 1 < s.size() && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X') && i + 2 < s.size() &&
      digit_value(s[i + 2], 16) >= 0)
    i += 2;
  const size_t first = i;
  for (; i < s.size() && digit_value(s[i], base) >= 0; i++) {
    const u128 next = static_cast<u128>(r.value) * static_cast<unsigned>(base) + static_cast<unsigned>(digit_value(s[i], base));
    if (next > std::numeric_limits<uint64_t>::max()) r.overflow = true;
    r.value = static_cast<uint64_t>(next);
  }
  r.end = i == first ? 0 : i;
  return r;
}

// The value, or an error, and where parsing stopped; qemu_strtosz() decides
// EINVAL for trailing characters only after the rest.
struct Scan {
  uint64_t value = 0;
  int error = 0;
  size_t end = 0;
  bool hex_with_suffix = false;
};

Scan scan(std::string_view s) {
  Scan r;
  const Integral whole = read_integral(s, 10);
  if (whole.end == 0) return {.error = EINVAL};
  r.end = whole.end;
  if (whole.overflow) return {.error = ERANGE, .end = r.end};
  if (s.substr(0, whole.end).find('-') != std::string_view::npos) return {.error = EINVAL};
  uint64_t value = whole.value;
  uint64_t fraction = 0;  // 0.64 fixed point
  bool hex = false;
  if (value == 0 && r.end < s.size() && (s[r.end] == 'x' || s[r.end] == 'X')) {
    const Integral h = read_integral(s, 16);
    r.end = h.end;
    if (h.overflow) return {.error = ERANGE, .end = r.end};
    if (r.end < s.size() && s[r.end] == '.') return {.error = EINVAL};
    value = h.value;
    hex = true;
  } else if (r.end < s.size() && s[r.end] == '.') {
    // strtod() over the fraction: "1.k" has none, an exponent is refused.
    const std::string text(s.substr(r.end));
    char* stop = nullptr;
    errno = 0;
    const double f = std::strtod(text.c_str(), &stop);
    const size_t used = static_cast<size_t>(stop - text.c_str());
    if (used == 0 || errno == ERANGE) {
      r.end++;
    } else if (text.substr(0, used).find_first_of("eE") != std::string::npos) {
      return {.error = EINVAL};
    } else {
      r.end += used;
      // A fraction that rounds to 1.0 does not fit 0.64 fixed point; qemu's conversion yields 0 there.
      fraction = f < 1.0 ? static_cast<uint64_t>(f * 0x1p64) : 0;
    }
  }
  int shift = r.end < s.size() ? suffix_shift(s[r.end]) : -1;
  if (shift >= 0) {
    r.end++;
    r.hex_with_suffix = hex;
  } else {
    shift = 0;
  }
  if (shift == 0) {
    if (fraction != 0) return {.error = EINVAL};
    r.value = value;
    return r;
  }
  const u128 scaled_fraction = static_cast<u128>(fraction) << shift;  // 64.64 x 2^shift
  u128 total = (static_cast<u128>(value) << shift) + (scaled_fraction >> 64);
  total += static_cast<uint64_t>(scaled_fraction) >> 63;  // halves round up
  if (total > std::numeric_limits<uint64_t>::max()) return {.error = ERANGE, .end = r.end};
  r.value = static_cast<uint64_t>(total);
  return r;
}

}  // namespace

ParsedNumber parse_number(std::string_view text) {
  const Scan s = scan(text);
  // Anything left after the number makes it malformed, whatever else was wrong.
  if (s.end < text.size()) return {.error = EINVAL};
  if (s.error) return {.error = s.error};
  if (s.value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return {.error = ERANGE};
  return {.value = static_cast<int64_t>(s.value), .hex_with_suffix = s.hex_with_suffix};
}

std::string number_error_message(int error, std::string_view text) {
  if (error == EINVAL) return fmt::format("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {}", text);
  if (error == ERANGE) return fmt::format("Parsing error: argument too large -- {}", text);
  return fmt::format("Parsing error: {}", text);
}

}  // namespace keel::io
