// "-o help" for create and convert, as qemu-img prints it.
#pragma once

#include "block/format.h"

namespace keel::img {

// Without a file name only the format's own options are listed, with qemu's
// note that the protocol level may add some; with one, both levels together.
void print_option_help(const block::FormatDriver& driver, bool with_filename);

}  // namespace keel::img
