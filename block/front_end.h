// What a front end (an I/O exerciser, an export, a guest device) does in
// front of a node, as qemu's BlockBackend does: requests outside the image
// fail with EIO before reaching the driver, and compressed writes of several
// clusters are split into the one-cluster writes drivers take.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/async/task.h"
#include "block/backend.h"
#include "block/node.h"

namespace keel::block {

// Checks the range, then writes `data` compressed cluster by cluster. As in
// qemu, it must start on a cluster boundary and cover whole clusters, or end
// at the end of the image (EINVAL otherwise); nothing is written then.
Task<void> write_compressed(BlockNode& node, uint64_t offset, std::span<const std::byte> data);

}  // namespace keel::block
