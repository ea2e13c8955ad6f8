// Every keel-io command, defined in the file of its group, and the table
// that finds them by name.
#pragma once

#include <span>
#include <string_view>

#include "tools/keel-io/command.h"

namespace keel::io {

// cmd_rw.cpp
extern const Command kRead, kReadv, kWrite, kWritev;
// cmd_aio.cpp
extern const Command kAioRead, kAioWrite, kAioFlush;
// cmd_status.cpp
extern const Command kAlloc, kMap, kLength, kInfo;
// cmd_image.cpp
extern const Command kDiscard, kFlush, kTruncate;
// cmd_session.cpp
extern const Command kOpen, kClose, kReopen, kHelp, kQuit, kSleep;

// Sorted by name, as qemu-io lists them.
std::span<const Command* const> all_commands();
// By name or one-letter alias; nullptr if there is none.
const Command* find_command(std::string_view name);

// Runs one command line (words separated by spaces); false when it failed.
bool run_command_line(Session& session, std::string_view line);

}  // namespace keel::io
