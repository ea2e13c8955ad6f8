#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "base/units.h"
#include "block/backing.h"
#include "block/format.h"
#include "block/image_name.h"
#include "tools/common/objects.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/command_line.h"
#include "tools/keel-img/commands.h"
#include "tools/keel-img/option_help.h"

namespace keel::img {

int cmd_create(int argc, char** argv) {
  std::string format = "raw", option_list, backing_file, backing_format;
  bool quiet = false, unsafe = false;
  auto scanner = command_scanner(argc, argv, "F:b:f:ho:qu", {{"help", false, 'h'}, {"object", true, kOptionObject}});
  while (auto o = scanner.next()) {
    switch (o->id) {
      case 'F': backing_format = o->argument; break;
      case 'b': backing_file = o->argument; break;
      case 'f': format = o->argument; break;
      case 'h': print_usage(); return 0;
      case 'o': add_option_list(option_list, o->argument); break;
      case 'q': quiet = true; break;
      case 'u': unsafe = true; break;
      case kOptionObject: tools::define_client_object(o->argument); break;
      default: bad_option(*o);
    }
  }
  const std::vector<std::string>& operands = scanner.operands();
  block::CreateRequest request;
  request.options.parse(option_list);
  if (request.options.help_requested()) {
    const block::FormatDriver* driver = block::find_format(format);
    if (!driver) raise(EINVAL, "Unknown file format '{}'", format);
    print_option_help(*driver, !operands.empty());
    return 0;
  }
  if (operands.empty()) usage_error("Expecting image file name");
  const std::string filename = operands[0];
  std::optional<uint64_t> size_argument;
  if (operands.size() > 1) {
    const SizeScan size = scan_size(operands[1]);
    if (size.hex_with_suffix) tools::print_error(fmt::format("warning: Using a multiplier suffix on hex numbers is deprecated: {}", operands[1]));
    if (size.out_of_range || (size.value && *size.value > static_cast<uint64_t>(INT64_MAX))) {
      tools::print_error(fmt::format("Invalid image size specified. Must be between 0 and {}.", INT64_MAX));
      return 1;
    }
    if (!size.value) {
      tools::print_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
      tools::print_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
      return 1;
    }
    size_argument = size.value;
  }
  if (operands.size() > 2) usage_error(fmt::format("Unexpected argument: {}", operands[2]));

  const block::FormatDriver* driver = block::find_format(format);
  if (!driver) raise(EINVAL, "{}: Unknown file format '{}'", filename, format);
  try {
    request.filename = block::local_path(filename);
    if (size_argument) {
      if (request.options.has("size")) raise(EINVAL, "The image size must be specified only once");
      request.options.set("size", std::to_string(*size_argument));
    }
  } catch (const Error& e) {
    throw e.with_context(filename);
  }
  try {
    auto supports = [&](std::string_view name) {
      const auto& specs = driver->create_options();
      return std::any_of(specs.begin(), specs.end(), [&](const auto& spec) { return spec.name == name; });
    };
    if (!backing_file.empty()) {
      if (!supports("backing_file")) raise(EINVAL, "Backing file not supported for file format '{}'", format);
      request.options.set("backing_file", backing_file);
    }
    if (!backing_format.empty()) {
      if (!supports("backing_fmt")) raise(EINVAL, "Backing file format not supported for file format '{}'", format);
      request.options.set("backing_fmt", backing_format);
    }
    request.options.validate(driver->create_options());
    if (const auto backing = request.options.get("backing_file")) {
      if (*backing == filename) raise(EINVAL, "Error: Trying to create an image with the same filename as the backing file");
      if (backing->empty()) raise(EINVAL, "Expected backing file name, got empty string");
      const auto backing_fmt = request.options.get("backing_fmt");
      if (!unsafe) {
        EventLoop loop;
        const uint64_t backing_size = loop.run(block::check_backing_for_create(request.filename, *backing, backing_fmt));
        if (!request.options.has("size")) request.options.set("size", std::to_string(backing_size));
      } else if (!backing_fmt) {
        raise(EINVAL, "Backing file specified without backing format");
      }
    }
    auto size = request.options.get_size("size");
    if (!size) raise(EINVAL, "Image creation needs a size parameter");
    // Images are made of 512-byte sectors; qemu rounds the size up the same way.
    request.size = align_up(*size, 512);
  } catch (const Error& e) {
    throw e.with_context(filename);
  }

  if (!quiet) {
    std::string line = fmt::format("Formatting '{}', fmt={}", filename, format);
    for (const auto& spec : driver->create_options()) {
      auto value = request.options.get(spec.name);
      if (!value) value = spec.default_value;
      if (value) line += fmt::format(" {}={}", spec.name, block::option_display_value(spec, *value));
    }
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  try {
    EventLoop loop;
    loop.run(driver->create(request));
  } catch (const Error& e) {
    throw e.with_context(filename);
  }
  return 0;
}

}  // namespace keel::img
