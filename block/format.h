// The registry of format drivers, and opening an image by name: probe the
// format (or take -f), open the file node under it, and stack the format node
// on top. Drivers register themselves (formats/*/driver.cpp, as qemu's
// block_init does), so the block core names no format.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "block/file/file_node.h"
#include "block/node.h"
#include "block/options.h"

namespace keel::block {

struct OpenOptions {
  std::optional<std::string> format;  // nullopt: probe
  bool writable = false;
  bool force_share = false;
  CacheMode cache;
  // Opened by `check -r`: images marked corrupt or dirty open as they are, for repair.
  bool for_repair = false;
  // qemu's BDRV_O_NO_BACKING (`info`): the backing file is named, not opened;
  // what it would provide reads as zeros.
  bool no_backing = false;
  // The images above this one in the backing chain being opened, as
  // (device, inode), so that a loop is refused instead of followed.
  std::vector<std::pair<uint64_t, uint64_t>> overlays;
};

struct CreateRequest {
  std::string filename;
  uint64_t size = 0;
  OptionValues options;
};

struct FormatDriver {
  std::string_view name;
  // 0..100: confidence that an image starting with `head` is of this format.
  int (*probe)(std::span<const std::byte> head);
  Task<std::unique_ptr<BlockNode>> (*open)(std::unique_ptr<BlockNode> file, const OpenOptions& options);
  Task<void> (*create)(const CreateRequest& request);
  // Options in the order qemu prints them in "Formatting ..."; "size" included.
  const std::vector<OptionSpec>& (*create_options)();
};

// A static FormatRegistration in a driver's file adds the driver before main() runs.
struct FormatRegistration {
  explicit FormatRegistration(const FormatDriver& driver);
};

const FormatDriver* find_format(std::string_view name);
// Every registered driver, by name.
std::vector<const FormatDriver*> all_formats();

// Opens the image `name` names (a path, "file:path", "json:{...}"; see
// block/image_name.h), probing its format unless options.format or the name's
// "driver" names it. Errors are the block layer's ("Could not open 'x': No such file
// or directory" from the file node, "Image is not in qcow2 format", ...);
// qemu-img puts its own "Could not open 'x': " before them, qemu-io its
// "can't open device x: ".
Task<std::unique_ptr<BlockNode>> open_image(const std::string& name, const OpenOptions& options);

struct ProtocolDriver;
// Opens `name` through its protocol driver (block/protocol.h) and the format on top, probed unless named.
Task<std::unique_ptr<BlockNode>> open_image_over(const ProtocolDriver& protocol, const std::string& name,
                                                 const OpenOptions& options);

// Opens the local file `filename` as an image: no prefix in it is a protocol.
Task<std::unique_ptr<BlockNode>> open_image_path(const std::string& filename, const OpenOptions& options);

// Opens just the file node (protocol layer) for `filename`.
std::unique_ptr<BlockNode> open_file(const std::string& filename, const OpenOptions& options);

}  // namespace keel::block
