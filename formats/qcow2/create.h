// Formatting new qcow2 images from qemu-img's creation options.
#pragma once

#include "block/format.h"

namespace keel::qcow2 {

const std::vector<block::OptionSpec>& create_options();
Task<void> create_image(const block::CreateRequest& request);

}  // namespace keel::qcow2
