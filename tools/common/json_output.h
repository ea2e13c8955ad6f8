// JSON as qemu's tools print it: four-space indentation, ": " separators, and
// everything outside printable ASCII escaped with upper-case hex digits.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace keel::tools {

std::string format_json_pretty(const nlohmann::ordered_json& value);

}  // namespace keel::tools
