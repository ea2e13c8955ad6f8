#include "formats/qcow2/driver.h"

#include "base/endian.h"
#include "formats/qcow2/create.h"
#include "formats/qcow2/header.h"
#include "formats/qcow2/qcow2_node.h"

namespace keel::qcow2 {

namespace {

int probe(std::span<const std::byte> head) {
  if (head.size() >= 8 && load_be<uint32_t>(head.data()) == kMagic && load_be<uint32_t>(head.data() + 4) >= 2) return 100;
  return 0;
}

Task<std::unique_ptr<block::BlockNode>> open(std::unique_ptr<block::BlockNode> file, const block::OpenOptions& options) {
  co_return co_await Qcow2Node::open(std::move(file), options);
}

}  // namespace

const block::FormatDriver& driver() {
  static const block::FormatDriver d{"qcow2", probe, open, create_image, create_options};
  return d;
}

}  // namespace keel::qcow2
