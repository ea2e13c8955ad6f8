// The open flags qemu-io's command line and its `open` command share:
// -r -s -C -n -k -U, -t CACHE, -d DISCARD, -i AIO and -o OPTIONS.
#pragma once

#include <string>

#include "tools/keel-io/session.h"

namespace keel::io {

// The settings before any flag: read-write, cache=writethrough and
// discard=unmap, as qemu-io opens images.
OpenSettings default_open_settings();

enum class FlagResult { Applied, NotAnOpenFlag, Invalid };

// Applies one open flag to `settings`. Invalid values print qemu-io's message.
FlagResult apply_open_flag(OpenSettings& settings, int flag, const std::string& argument);

}  // namespace keel::io
