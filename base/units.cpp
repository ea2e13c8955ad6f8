#include "base/units.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

namespace keel {

std::optional<uint64_t> parse_size(std::string_view text) {
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '.')) return std::nullopt;
  size_t pos = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) pos++;
  size_t int_end = pos;
  size_t frac_end = pos;
  if (pos < text.size() && text[pos] == '.') {
    pos++;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) pos++;
    frac_end = pos;
  }
  std::string_view suffix = text.substr(pos);
  unsigned shift = 0;
  if (suffix.size() > 1) return std::nullopt;
  if (suffix.size() == 1) {
    switch (std::tolower(static_cast<unsigned char>(suffix[0]))) {
      case 'b': shift = 0; break;
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      case 'p': shift = 50; break;
      case 'e': shift = 60; break;
      default: return std::nullopt;
    }
  }
  const uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t whole = 0;
  for (size_t i = 0; i < int_end; i++) {
    unsigned digit = static_cast<unsigned>(text[i] - '0');
    if (whole > (max - digit) / 10) return std::nullopt;
    whole = whole * 10 + digit;
  }
  if (shift && whole > (max >> shift)) return std::nullopt;
  uint64_t result = whole << shift;
  if (frac_end > int_end + 1) {
    // A fraction is only meaningful with a suffix; "1.5" bytes is malformed.
    if (shift == 0) return std::nullopt;
    double fraction = std::strtod(std::string(text.substr(int_end, frac_end - int_end)).c_str(), nullptr);
    uint64_t extra = static_cast<uint64_t>(fraction * static_cast<double>(uint64_t{1} << shift));
    if (result > max - extra) return std::nullopt;
    result += extra;
  } else if (frac_end == int_end + 1 && int_end == 0) {
    return std::nullopt;
  }
  return result;
}

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
