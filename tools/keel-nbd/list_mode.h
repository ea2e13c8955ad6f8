// keel-nbd -L: the exports of another NBD server, printed as qemu-nbd -L prints them.
#pragma once

#include "tools/keel-nbd/command_line.h"

namespace keel::nbdtool {

// Returns the exit status (0), or raises with qemu-nbd's wording when the server cannot be reached.
int list_exports(const CommandLine& cl);

}  // namespace keel::nbdtool
