// What every keel command-line tool shares: the one place errors are
// printed ("keel-img: message", one line per line of the message), the exit
// status for errors, and option parsing helpers with qemu's wording.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "block/types.h"

namespace keel::tools {

// Runs `body`, printing any keel::Error or CLI11 error as qemu does; returns the exit status.
int run_tool(const std::string& tool_name, const std::function<int()>& body);

// Prints "tool: message" to stderr (continuation lines are not prefixed).
void print_error(const std::string& message);

// Raises "Invalid cache option: x" (`what` names the option in the message).
block::CacheMode parse_cache_mode(const std::string& name, std::string_view what = "cache");

// Sets the description and -h/--help of a command.
void configure_app(CLI::App& app, const std::string& description);

// Parses argv for `app`. --help prints the help and ends the tool with
// status 0; a malformed command line ends it with one error line and status 1.
void parse_args(CLI::App& app, int argc, char** argv);

// Thrown to end a tool with a given status after its output is complete.
struct ExitStatus {
  int code;
};

}  // namespace keel::tools
