#include "block/image_options.h"

#include <algorithm>

#include "base/error.h"
#include "block/options.h"
#include "block/probed_raw_guard.h"
#include "block/protocol.h"

namespace keel::block {

namespace {

// Records the first problem only, as qemu stops at it.
template <typename... Args>
void note_problem(ImageOptions& options, fmt::format_string<Args...> format, Args&&... args) {
  if (!options.problem) options.problem = fmt::format(format, std::forward<Args>(args)...);
}

std::optional<bool> parse_bool(const OptionValues& values, const std::string& key, ImageOptions& options) {
  try {
    return values.get_bool(key);
  } catch (const Error& e) {
    note_problem(options, "{}", e.message());
    return std::nullopt;
  }
}

void apply(const OptionValues& values, const std::string& key, const std::string& value, ImageOptions& options) {
  if (key == "driver") {
    options.open.format = value;
  } else if (key == "file.filename") {
    options.filename = value;
  } else if (key == "file") {
    // A reference to another node: keel has no named nodes.
    note_problem(options, "Cannot find device='{}' nor node-name='{}'", value, value);
  } else if (key == "file.driver") {
    if (value != "file") note_problem(options, "Unknown protocol driver '{}': keel opens local files only", value);
  } else if (key == "cache.direct") {
    if (auto b = parse_bool(values, key, options)) options.open.cache.direct = *b;
  } else if (key == "cache.no-flush") {
    if (auto b = parse_bool(values, key, options)) options.open.cache.no_flush = *b;
  } else if (key == "read-only") {
    if (auto b = parse_bool(values, key, options)) options.read_only_option = *b;
  } else if (key == "force-share") {
    if (auto b = parse_bool(values, key, options)) options.open.force_share = *b;
  } else if (key == "aio" || key == "file.aio") {
    if (value == "threads" || value == "native" || value == "io_uring")
      options.aio = value;
    else
      note_problem(options, "Parameter 'aio' does not accept value '{}'", value);
  } else if (key.starts_with("file.")) {
    note_problem(options, "Block protocol 'file' doesn't support the option '{}'", key.substr(5));
  } else if (std::find(options.format_options.begin(), options.format_options.end(), key) ==
             options.format_options.end()) {
    options.format_options.push_back(key);
  }
}

}  // namespace

void apply_image_options(std::string_view text, ImageOptions& options) {
  OptionValues values;
  values.parse(text);
  for (const auto& [key, value] : values.all()) apply(values, key, value, options);
}

Task<std::unique_ptr<BlockNode>> open_image(const ImageOptions& options) {
  if (options.problem) raise(EINVAL, "{}", *options.problem);
  if (options.filename.empty()) {
    if (options.open.format) raise(EINVAL, "A block device must be specified for \"file\"");
    raise(EINVAL, "Must specify either driver or file");
  }
  if (options.open.format && !find_format(*options.open.format))
    raise(EINVAL, "Unknown driver '{}'", *options.open.format);
  if (options.read_only_option && options.open.writable) raise(EACCES, "Block node is read-only");
  if (options.open.force_share && options.open.writable)
    raise(EINVAL, "force-share=on can only be used with read-only images");
  if (options.aio == "native" && !options.open.cache.direct)
    raise(EINVAL, "aio=native was specified, but it requires cache.direct=on, which was not specified.");
  const ProtocolDriver* protocol = options.filename_is_name ? protocol_driver_for(options.filename) : nullptr;
  // (Not a conditional expression: GCC 12 miscompiles co_await inside one.)
  std::unique_ptr<BlockNode> node;
  if (protocol)
    node = co_await open_image_over(*protocol, options.filename, options.open);
  else
    node = co_await open_image_path(options.filename, options.open);
  if (!options.format_options.empty())
    raise(EINVAL, "Block format '{}' does not support the option '{}'", node->format_name(),
          options.format_options.front());
  if (is_probed_raw(options, *node)) co_return guard_probed_raw(std::move(node));
  co_return node;
}

bool is_probed_raw(const ImageOptions& options, const BlockNode& node) {
  return !options.open.format && node.format_name() == "raw";
}

}  // namespace keel::block
