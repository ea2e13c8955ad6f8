#include <algorithm>
#include <cstdio>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "base/units.h"
#include "block/backing.h"
#include "block/format.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/commands.h"

namespace keel::img {

namespace {

void print_option_help(const block::FormatDriver& driver) {
  auto specs = driver.create_options();
  std::sort(specs.begin(), specs.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::printf("Supported %s options:\n", std::string(driver.name).c_str());
  for (const auto& s : specs) {
    const char* type = s.type == block::OptionType::Size ? "size" : s.type == block::OptionType::Bool ? "bool (on/off)" : s.type == block::OptionType::Number ? "num" : "str";
    std::string left = fmt::format("{}=<{}>", s.name, type);
    std::printf("  %-22s - %s\n", left.c_str(), s.help.c_str());
  }
}

}  // namespace

int cmd_create(int argc, char** argv) {
  CLI::App app;
  app.name("create");
  tools::configure_app(app, "Create a new disk image FILENAME of SIZE bytes (suffixes k, M, G, T, P, E).");
  std::string format = "raw";
  std::vector<std::string> option_texts;
  bool quiet = false, unsafe = false;
  std::string filename, size_text, backing_file, backing_format;
  app.add_option("-f,--format", format, "Image format (default: raw)");
  app.add_option("-o,--options", option_texts, "Format options key=value[,...]; '-o help' lists them")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("-b", backing_file, "Backing file (an overlay's base image)");
  app.add_option("-F", backing_format, "Format of the backing file");
  app.add_flag("-u", unsafe, "Do not open the backing file (its size is then needed)");
  app.add_flag("-q,--quiet", quiet, "Do not print the 'Formatting' line");
  app.add_option("filename", filename, "Image to create")->required();
  app.add_option("size", size_text, "Virtual size");
  tools::parse_args(app, argc, argv);

  const block::FormatDriver* driver = block::find_format(format);
  if (!driver) raise(EINVAL, "{}: Unknown file format '{}'", filename, format);
  block::CreateRequest request;
  request.filename = filename;
  for (const auto& text : option_texts) {
    if (text == "help" || text == "?") {
      print_option_help(*driver);
      return 0;
    }
    request.options.parse(text);
  }
  if (!size_text.empty()) {
    auto size = parse_size(size_text);
    if (!size) {
      tools::print_error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
      tools::print_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
      return 1;
    }
    request.options.set("size", std::to_string(*size));
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
        const uint64_t backing_size = loop.run(block::check_backing_for_create(filename, *backing, backing_fmt));
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
