#include "block/format.h"

#include <algorithm>

#include "base/error.h"
#include "block/image_name.h"
#include "block/image_options.h"
#include "block/protocol.h"

namespace keel::block {

namespace {

std::vector<const FormatDriver*>& registry() {
  static std::vector<const FormatDriver*> drivers;
  return drivers;
}

// The driver options.format names (nullptr: probe); raises for an unknown name.
const FormatDriver* named_format(const OpenOptions& options) {
  if (!options.format) return nullptr;
  const FormatDriver* driver = find_format(*options.format);
  if (!driver) raise(EINVAL, "Unknown driver '{}'", *options.format);
  return driver;
}

// Stacks the format node on `file`, probing its first bytes when no driver is given.
Task<std::unique_ptr<BlockNode>> open_format(const FormatDriver* driver, std::unique_ptr<BlockNode> file,
                                             const OpenOptions& options) {
  if (!driver) {
    std::vector<std::byte> head(std::min<uint64_t>(file->size(), 4096));
    co_await file->read(0, head);
    int best = -1;
    for (const FormatDriver* f : all_formats()) {
      int score = f->probe(head);
      if (score > best) {
        best = score;
        driver = f;
      }
    }
  }
  co_return co_await driver->open(std::move(file), options);
}

}  // namespace

FormatRegistration::FormatRegistration(const FormatDriver& driver) {
  auto& drivers = registry();
  auto at = std::lower_bound(drivers.begin(), drivers.end(), &driver,
                             [](const FormatDriver* a, const FormatDriver* b) { return a->name < b->name; });
  drivers.insert(at, &driver);
}

std::vector<const FormatDriver*> all_formats() { return registry(); }

const FormatDriver* find_format(std::string_view name) {
  for (const FormatDriver* f : all_formats())
    if (f->name == name) return f;
  return nullptr;
}

std::unique_ptr<BlockNode> open_file(const std::string& filename, const OpenOptions& options) {
  if (filename.empty()) raise(EINVAL, "The 'file' block driver requires a file name");
  FileOptions file_options{.writable = options.writable, .force_share = options.force_share, .cache = options.cache};
  return FileNode::open(filename, file_options);
}

Task<std::unique_ptr<BlockNode>> open_image(const std::string& name, const OpenOptions& options) {
  if (!is_json_name(name)) {
    if (const ProtocolDriver* protocol = protocol_driver_for(name))
      co_return co_await open_image_over(*protocol, name, options);
    co_return co_await open_image_path(local_path(name), options);
  }
  ImageOptions image;
  image.open = options;
  apply_json_name(name, image);
  co_return co_await open_image(image);
}

Task<std::unique_ptr<BlockNode>> open_image_over(const ProtocolDriver& protocol, const std::string& name,
                                                 const OpenOptions& options) {
  const FormatDriver* driver = named_format(options);
  co_return co_await open_format(driver, protocol.open(name, options), options);
}

Task<std::unique_ptr<BlockNode>> open_image_path(const std::string& filename, const OpenOptions& options) {
  const FormatDriver* driver = named_format(options);
  co_return co_await open_format(driver, open_file(filename, options), options);
}

}  // namespace keel::block
