// qemu-img info's output for an ImageInfo: qemu's JSON (same keys, values and
// order) and its human-readable text; keel-io's `info` prints the format-specific block.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "block/image_info.h"

namespace keel::tools {

nlohmann::ordered_json image_info_json(const block::ImageInfo& info);
std::string image_info_human(const block::ImageInfo& info);
// The "Format specific information:" block that ends the human text; empty for formats without one.
std::string format_specific_info_human(const block::ImageInfo& info);

}  // namespace keel::tools
