// qemu's protection of images whose format was probed as raw: a write to
// the first sector that would make the image probe as another format (a
// qcow2 header, say) fails with EPERM, since the next open without an
// explicit format would take guest data for image metadata.
#pragma once

#include <memory>

#include "block/node.h"

namespace keel::block {

// Wraps the raw node `raw` opened by probing; every request but such writes passes through.
std::unique_ptr<BlockNode> guard_probed_raw(std::unique_ptr<BlockNode> raw);

}  // namespace keel::block
