// qemu's snapshot mode (-snapshot, qemu-io -s): the image is opened
// read-only under a temporary qcow2 overlay that takes every write and
// disappears when the image is closed.
#pragma once

#include <memory>

#include "base/async/task.h"
#include "block/image_options.h"

namespace keel::block {

// Opens the image `options` describe read-only and returns a new overlay of
// its size on top of it, writable as options.open asks. The overlay lives
// in $TMPDIR (/var/tmp when that is unset or /tmp, as qemu's
// create_tmp_file() chooses) and is unlinked as soon as it is open, so it
// goes away with the process however that ends.
Task<std::unique_ptr<BlockNode>> open_with_temporary_overlay(const ImageOptions& options);

}  // namespace keel::block
