#include <cstdio>
#include <set>

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
  // As qemu-img, each image is opened on its own: the chain is followed by name, not opened as a whole.
  options.no_backing = true;
  nlohmann::ordered_json infos = nlohmann::ordered_json::array();
  std::set<std::string> seen;
  for (std::string name = filename; !name.empty();) {
    if (!seen.insert(name).second) raise(ELOOP, "Backing file '{}' creates an infinite loop.", name);
    auto info = block::image_info(*loop.run(img_open(name, options)));
    name = backing_chain ? info.value("full-backing-filename", "") : "";
    // Without a recorded backing format, qemu-img keeps the format it was given (probing if none).
    if (info.contains("backing-filename-format")) options.format = info["backing-filename-format"].get<std::string>();
    infos.push_back(std::move(info));
  }
  if (output == "json") {
    std::printf("%s\n", block::format_json_pretty(backing_chain ? infos : infos[0]).c_str());
  } else {
    for (size_t i = 0; i < infos.size(); i++) std::printf("%s%s", i ? "\n" : "", block::format_image_info_human(infos[i]).c_str());
  }
  return 0;
}

}  // namespace keel::img
