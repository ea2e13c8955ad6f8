#include "block/node.h"

#include "base/error.h"

namespace keel::block {

Task<void> BlockNode::write_compressed(uint64_t, std::span<const std::byte>) {
  raise(ENOTSUP, "Compression not supported for format '{}'", format_name());
  co_return;
}

Task<CheckResult> BlockNode::check(CheckFix) {
  raise(ENOTSUP, "This image format does not support checks");
  co_return CheckResult{};
}

Task<void> BlockNode::load_snapshot(const SnapshotRef&) {
  raise(ENOTSUP, "Block format '{}' used by device '' does not support temporarily loading internal snapshots",
        format_name());
  co_return;
}

Task<std::shared_ptr<DirtyBitmap>> BlockNode::dirty_bitmap(const std::string&) { co_return nullptr; }

void BlockNode::attach_backing(std::unique_ptr<BlockNode>) {
  raise(ENOTSUP, "Driver '{}' does not support backing files", format_name());
}

std::optional<uint64_t> BlockNode::allocated_size() const {
  return file_ ? file_->allocated_size() : std::nullopt;
}

}  // namespace keel::block
