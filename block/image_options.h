// Images named by qemu's option strings, as `--image-opts` and qemu-io's
// `open -o` take them: "driver=qcow2,file.filename=PATH,cache.direct=on".
// Keys are applied over the open options a tool's flags already chose, and
// contradictions are reported with qemu's messages.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/async/task.h"
#include "block/format.h"

namespace keel::block {

struct ImageOptions {
  std::string filename;  // file.filename, or the path named beside the options
  // `filename` is the image name a command line gave (keel-io's operand), not file.filename:
  // a registered protocol's name ("nbd://...") opens through that protocol's driver.
  bool filename_is_name = false;
  OpenOptions open;
  bool read_only_option = false;  // read-only=on
  std::optional<std::string> aio;  // aio / file.aio: threads, native, io_uring
  // Keys no layer of keel takes; the opened format is named when refusing them.
  std::vector<std::string> format_options;
  // The first value or key found wrong; as in qemu, reported when opening.
  std::optional<std::string> problem;
};

// Applies "key=value,..." (",," is a literal comma; later keys win) to
// `options`. Raises EINVAL only for text that is not an option list.
void apply_image_options(std::string_view text, ImageOptions& options);

// Opens the image `options` describe, probing the format unless a driver is
// named. Raises with qemu's messages ("Unknown driver 'x'", "Block format
// 'qcow2' does not support the option 'x'", ...).
// A probed raw image comes wrapped in guard_probed_raw().
Task<std::unique_ptr<BlockNode>> open_image(const ImageOptions& options);

// True when `node` was opened from `options` by probing and found raw, the
// case qemu warns about.
bool is_probed_raw(const ImageOptions& options, const BlockNode& node);

}  // namespace keel::block
