// Size parsing and printing with qemu's conventions, so that command lines and
// human output carry over from qemu-img unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel {

// Parses "512", "64k", "1.5G", "10M" (1024-based suffixes B K M G T P E, case
// insensitive; a bare number is bytes). Returns nullopt on malformed input or
// overflow past INT64_MAX.
std::optional<uint64_t> parse_size(std::string_view text);

// "1 GiB", "196 KiB", "0 B", "10.2 MiB": qemu's size_to_str().
std::string format_size(uint64_t bytes);

constexpr bool is_power_of_two(uint64_t v) noexcept { return v && !(v & (v - 1)); }
constexpr uint64_t align_down(uint64_t v, uint64_t a) noexcept { return v / a * a; }
constexpr uint64_t align_up(uint64_t v, uint64_t a) noexcept { return (v + a - 1) / a * a; }
constexpr uint64_t div_round_up(uint64_t v, uint64_t d) noexcept { return (v + d - 1) / d; }

}  // namespace keel
