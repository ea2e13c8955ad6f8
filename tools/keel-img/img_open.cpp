#include <fmt/format.h>

#include "base/error.h"
#include "tools/keel-img/commands.h"

namespace keel::img {

Task<std::unique_ptr<block::BlockNode>> img_open(const std::string& filename, const block::OpenOptions& options) {
  try {
    co_return co_await block::open_image(filename, options);
  } catch (const Error& e) {
    throw e.with_context(fmt::format("Could not open '{}'", filename));
  }
}

}  // namespace keel::img
