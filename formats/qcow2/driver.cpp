// The qcow2 format driver's entry in the block layer's registry: probing, opening, creation.
#include "base/endian.h"
#include "block/format.h"
#include "formats/qcow2/create.h"
#include "formats/qcow2/header.h"
#include "formats/qcow2/qcow2_node.h"

namespace keel::qcow2 {

namespace {

int probe(std::span<const std::byte> head) {
  if (head.size() >= 8 && load_be<uint32_t>(head.data()) == kMagic && load_be<uint32_t>(head.data() + 4) >= 2)
    return 100;
  return 0;
}

Task<std::unique_ptr<block::BlockNode>> open(std::unique_ptr<block::BlockNode> file,
                                             const block::OpenOptions& options) {
  co_return co_await Qcow2Node::open(std::move(file), options);
}

const block::FormatDriver kDriver{"qcow2", probe, open, create_image, create_options};
const block::FormatRegistration kRegistration(kDriver);

}  // namespace

}  // namespace keel::qcow2
