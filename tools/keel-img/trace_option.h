// The global "-T, --trace [[enable=]PATTERN][,events=FILE][,file=FILE]".
// keel has no trace events, so it accepts the option with the warnings qemu
// gives for events that do not exist, and never writes a trace.
#pragma once

#include <string>

namespace keel::img {

// Raises for a malformed option; "-T help" lists the (no) events and ends the tool.
void apply_trace_option(const std::string& text);

}  // namespace keel::img
