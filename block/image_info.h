// ImageInfo: what `info` reports about an open image, as qemu-img's JSON
// (same keys, values and order) and as its human-readable text.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "block/node.h"

namespace keel::block {

nlohmann::ordered_json image_info(const BlockNode& node);
std::string format_image_info_human(const nlohmann::ordered_json& info);
// The "Format specific information:" block that ends the human text (and
// qemu-io's `info`); empty for formats without one.
std::string format_specific_info_human(const nlohmann::ordered_json& info);

// qemu's JSON layout: four-space indentation, ": " separators.
std::string format_json_pretty(const nlohmann::ordered_json& value);

}  // namespace keel::block
