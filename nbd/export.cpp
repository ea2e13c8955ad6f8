#include "nbd/export.h"

namespace keel::nbd {

ExportDescription Export::description() const {
  namespace tf = transmission_flag;
  const block::Limits& limits = backend_.limits();
  // Flush, FUA and cache are offered even read-only (they do no harm), as qemu-nbd does; DF is withdrawn by
  // the negotiation when the client takes no structured replies.
  uint16_t flags = tf::kHasFlags | tf::kSendFlush | tf::kSendFua | tf::kSendCache | tf::kSendDf;
  if (!backend_.writable())
    flags |= tf::kReadOnly;
  else
    flags |= tf::kSendTrim | tf::kSendWriteZeroes | tf::kSendFastZero;
  if (settings_.multi_conn && limits.can_multi_conn) flags |= tf::kCanMultiConn;
  if (limits.is_rotational) flags |= tf::kRotational;
  ExportDescription d;
  d.name = settings_.name;
  d.description = settings_.description;
  d.size = backend_.size();
  d.transmission_flags = flags;
  d.min_block = limits.request_alignment;
  d.preferred_block = std::max<uint32_t>(4096, limits.request_alignment);
  d.max_block = kMaxRequestBytes;
  d.meta_contexts.emplace_back(kBaseAllocation);
  if (settings_.allocation_depth) d.meta_contexts.emplace_back(kAllocationDepth);
  for (const auto& b : settings_.bitmaps) d.meta_contexts.push_back(std::string(kDirtyBitmapPrefix) + b->name());
  return d;
}

block::DirtyBitmap* Export::bitmap_for_context(std::string_view context) const {
  if (!context.starts_with(kDirtyBitmapPrefix)) return nullptr;
  context.remove_prefix(kDirtyBitmapPrefix.size());
  for (const auto& b : settings_.bitmaps)
    if (b->name() == context) return b.get();
  return nullptr;
}

}  // namespace keel::nbd
