#include "tests/support/create_image.h"

#include "block/format.h"

namespace keel::test {

void create_qcow2(EventLoop& loop, const std::string& path, uint64_t size, const std::string& options) {
  block::CreateRequest request{path, size, {}};
  if (!options.empty()) request.options.parse(options);
  loop.run(block::find_format("qcow2")->create(request));
}

}  // namespace keel::test
