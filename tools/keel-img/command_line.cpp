#include "tools/keel-img/command_line.h"

#include "base/error.h"
#include "block/image_options.h"
#include "block/options.h"
#include "tools/common/objects.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/commands.h"

namespace keel::img {

void usage_error(std::string_view message) {
  raise(EINVAL, "{}\nTry 'keel-img --help' for more information", message);
}

void bad_option(const tools::ScannedOption& option) {
  if (option.id == ':') usage_error(fmt::format("missing argument for option '{}'", option.argument));
  usage_error(fmt::format("unrecognized option '{}'", option.argument));
}

tools::OptionScanner command_scanner(int argc, char** argv, std::string_view shorts,
                                     std::vector<tools::LongOption> longs) {
  return tools::OptionScanner(argv[0], std::vector<std::string>(argv + 1, argv + argc), shorts, std::move(longs),
                              tools::OptionErrors::Return);
}

void add_option_list(std::string& list, const std::string& text) {
  block::check_option_list(text);
  list += (list.empty() ? "" : ",") + text;
}

bool json_output(const std::optional<std::string>& output) {
  if (!output || *output == "human") return false;
  if (*output == "json") return true;
  raise(EINVAL, "--output must be used with human or json as argument.");
}

bool ImageCommandOptions::take(const tools::ScannedOption& option) {
  switch (option.id) {
    case 'h': print_usage(); throw tools::ExitStatus{0};
    case 'f': format = option.argument; return true;
    case 'U': force_share = true; return true;
    case kOptionOutput: output = option.argument; return true;
    case kOptionObject: tools::define_client_object(option.argument); return true;
    case kOptionImageOpts: image_opts = true; return true;
    default: return false;
  }
}

std::string ImageCommandOptions::one_image(const tools::OptionScanner& scanner) const {
  if (scanner.operands().size() != 1) usage_error("Expecting one image file name");
  json_output(output);
  if (image_opts && !format.empty()) raise(EINVAL, "--image-opts and --format are mutually exclusive");
  return scanner.operands()[0];
}

void not_supported(std::string_view option) { raise(ENOTSUP, "{} is not supported by keel-img yet", option); }

Task<std::unique_ptr<block::BlockNode>> img_open(const std::string& filename, const block::OpenOptions& options) {
  try {
    co_return co_await block::open_image(filename, options);
  } catch (const Error& e) {
    throw e.with_context(fmt::format("Could not open '{}'", filename));
  }
}

Task<std::unique_ptr<block::BlockNode>> img_open(const std::string& name, const block::OpenOptions& options,
                                                 bool image_opts) {
  if (!image_opts) co_return co_await img_open(name, options);
  block::ImageOptions image;
  image.open = options;
  // A first item without '=' is the implied key "file" (a node name, which keel has not).
  const std::string first = name.substr(0, name.find(','));
  const std::string list = first.find('=') == std::string::npos ? "file=" + name : name;
  try {
    block::apply_image_options(list, image);
    co_return co_await block::open_image(image);
  } catch (const Error& e) {
    throw e.with_context(fmt::format("Could not open '{}'", name));
  }
}

}  // namespace keel::img
