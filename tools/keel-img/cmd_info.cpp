#include <cstdio>
#include <optional>
#include <set>

#include "base/async/event_loop.h"
#include "base/error.h"
#include "block/format.h"
#include "block/image_info.h"
#include "tools/common/image_info_output.h"
#include "tools/common/json_output.h"
#include "tools/common/tool_main.h"
#include "tools/keel-img/command_line.h"
#include "tools/keel-img/commands.h"

namespace keel::img {

int cmd_info(int argc, char** argv) {
  ImageCommandOptions common;
  bool backing_chain = false;
  auto scanner = command_scanner(argc, argv, "f:hU",
                                 {{"help", false, 'h'}, {"format", true, 'f'}, {"output", true, kOptionOutput},
                                  {"backing-chain", false, kOptionBackingChain}, {"object", true, kOptionObject},
                                  {"image-opts", false, kOptionImageOpts}, {"force-share", false, 'U'}});
  while (auto o = scanner.next()) {
    if (common.take(*o)) continue;
    if (o->id != kOptionBackingChain) bad_option(*o);
    backing_chain = true;
  }
  const std::string filename = common.one_image(scanner);
  bool image_opts = common.image_opts;

  EventLoop loop;
  block::OpenOptions options;
  if (!common.format.empty()) options.format = common.format;
  options.force_share = common.force_share;
  // As qemu-img, each image is opened on its own: the chain is followed by name, not opened as a whole.
  options.no_backing = true;
  std::vector<block::ImageInfo> infos;
  std::set<std::string> seen;
  // The first name is opened even when empty, for the open's own error.
  for (std::string name = filename; infos.empty() || !name.empty(); image_opts = false) {
    if (!seen.insert(name).second) raise(ELOOP, "Backing file '{}' creates an infinite loop.", name);
    block::ImageInfo info = block::image_info(*loop.run(img_open(name, options, image_opts)));
    name = backing_chain ? info.full_backing_filename.value_or("") : "";
    // Without a recorded backing format, qemu-img keeps the format it was given (probing if none).
    if (info.format_info.backing_filename && info.format_info.backing_format)
      options.format = *info.format_info.backing_format;
    infos.push_back(std::move(info));
  }
  if (common.json()) {
    nlohmann::ordered_json chain = nlohmann::ordered_json::array();
    for (const auto& info : infos) chain.push_back(tools::image_info_json(info));
    std::printf("%s\n", tools::format_json_pretty(backing_chain ? chain : chain[0]).c_str());
  } else {
    for (size_t i = 0; i < infos.size(); i++)
      std::printf("%s%s", i ? "\n" : "", tools::image_info_human(infos[i]).c_str());
  }
  return 0;
}

}  // namespace keel::img
