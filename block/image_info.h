// ImageInfo: what `info` reports about an open image, as typed data. Drivers
// fill a FormatInfo; the tools render it as qemu-img's JSON and text
// (tools/common/image_info_output), so no driver builds output.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "block/format_info.h"
#include "block/node.h"

namespace keel::block {

struct ImageInfo {
  std::string filename;
  std::string format;
  uint64_t virtual_size = 0;
  std::optional<uint64_t> actual_size;
  // The backing file name resolved against the image's directory.
  std::optional<std::string> full_backing_filename;
  FormatInfo format_info;
};

ImageInfo image_info(const BlockNode& node);

}  // namespace keel::block
