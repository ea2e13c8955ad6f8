#include <cstdio>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "block/format.h"
#include "block/image_info.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/commands.h"

namespace keel::img {

int cmd_info(int argc, char** argv) {
  CLI::App app;
  app.name("info");
  tools::configure_app(app, "Show information about the image FILENAME.");
  std::string format, output = "human", filename;
  bool force_share = false, backing_chain = false;
  app.add_option("-f,--format", format, "Image format (probed if not given)");
  app.add_option("--output", output, "Output format: human (default) or json");
  app.add_flag("--backing-chain", backing_chain, "Show every image of the backing chain");
  app.add_flag("-U,--force-share", force_share, "Open the image read-only even if another process uses it");
  app.add_option("filename", filename, "Image to inspect")->required();
  tools::parse_args(app, argc, argv);
  if (output != "human" && output != "json") raise(EINVAL, "--output must be used with human or json as argument.");

  EventLoop loop;
  block::OpenOptions options;
  if (!format.empty()) options.format = format;
  options.force_share = force_share;
  auto node = loop.run(img_open(filename, options));
  auto info = block::image_info(*node);
  if (output == "json") {
    // --backing-chain lists every image; keel opens no backing files yet, so the chain is the image itself.
    const auto value = backing_chain ? nlohmann::ordered_json::array({info}) : info;
    std::printf("%s\n", block::format_json_pretty(value).c_str());
  } else {
    std::fputs(block::format_image_info_human(info).c_str(), stdout);
  }
  return 0;
}

}  // namespace keel::img
