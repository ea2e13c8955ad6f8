// Size parsing and printing with qemu's conventions, so that command lines and
// human output carry over from qemu-img unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel {

// What qemu_strtosz() makes of a size: "512", "0x200", " +64k", "1.5G", "1."
// (1024-based suffixes B K M G T P E, case insensitive; a bare number is
// bytes; a fraction needs a suffix other than B; hex takes no fraction).
struct SizeScan {
  std::optional<uint64_t> value;  // nullopt: malformed or out of range
  bool out_of_range = false;      // well formed, but 2^64 or more
  bool hex_with_suffix = false;   // "0x1k": accepted, and qemu warns it is deprecated
};
SizeScan scan_size(std::string_view text);

// scan_size(text).value.
std::optional<uint64_t> parse_size(std::string_view text);

// "1 GiB", "196 KiB", "0 B", "10.2 MiB": qemu's size_to_str().
std::string format_size(uint64_t bytes);

constexpr bool is_power_of_two(uint64_t v) noexcept { return v && !(v & (v - 1)); }
constexpr uint64_t align_down(uint64_t v, uint64_t a) noexcept { return v / a * a; }
constexpr uint64_t align_up(uint64_t v, uint64_t a) noexcept { return (v + a - 1) / a * a; }
constexpr uint64_t div_round_up(uint64_t v, uint64_t d) noexcept { return (v + d - 1) / d; }

}  // namespace keel
