// keel-img's subcommands; each parses its own arguments (argv[0] is the
// subcommand's name) and returns the exit status.
#pragma once

namespace keel::img {

int cmd_create(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_check(int argc, char** argv);

}  // namespace keel::img
