// What every keel command-line tool shares: the one place errors are
// printed ("keel-img: message", one line per line of the message), the exit
// status for errors, and the cache mode option with qemu's wording.
// Command lines are scanned by tools/common/option_scanner.h.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "block/types.h"

namespace keel::tools {

// Runs `body`, printing any keel::Error as qemu does; returns the exit status.
int run_tool(const std::string& tool_name, const std::function<int()>& body);

// Prints "tool: message" to stderr (continuation lines are not prefixed).
void print_error(const std::string& message);

// Raises "Invalid cache option: x" (`what` names the option in the message).
block::CacheMode parse_cache_mode(const std::string& name, std::string_view what = "cache");

// Thrown to end a tool with a given status after its output is complete.
struct ExitStatus {
  int code;
};

}  // namespace keel::tools
