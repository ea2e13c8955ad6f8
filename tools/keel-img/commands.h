// keel-img's subcommands; each parses its own arguments (argv[0] is the
// subcommand's name) and returns the exit status.
#pragma once

#include <memory>
#include <string>

#include "base/async/task.h"
#include "block/format.h"

namespace keel::img {

// Opens an image for a command; errors read "Could not open 'x': reason", as
// qemu-img's img_open() puts them.
Task<std::unique_ptr<block::BlockNode>> img_open(const std::string& filename, const block::OpenOptions& options);

int cmd_create(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_check(int argc, char** argv);

}  // namespace keel::img
