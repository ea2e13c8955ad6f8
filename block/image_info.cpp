#include "block/image_info.h"

#include "block/backing.h"

namespace keel::block {

ImageInfo image_info(const BlockNode& node) {
  ImageInfo info;
  info.filename = node.filename();
  info.format = std::string(node.format_name());
  info.virtual_size = node.size();
  info.actual_size = node.allocated_size();
  info.format_info = node.format_info();
  if (info.format_info.backing_filename)
    info.full_backing_filename = combine_paths(node.filename(), *info.format_info.backing_filename);
  return info;
}

}  // namespace keel::block
