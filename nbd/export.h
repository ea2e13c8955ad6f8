// Export: a BlockBackend offered under a name, and what NBD clients are told
// about it (size, transmission flags, block sizes, meta contexts), derived
// from the backend's limits as qemu-nbd derives them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block/backend.h"
#include "block/dirty_bitmap.h"
#include "nbd/negotiation.h"

namespace keel::nbd {

inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr std::string_view kAllocationDepth = "qemu:allocation-depth";
// Followed by a bitmap's name: its dirty bits (NBD_STATE_DIRTY) as a meta context.
inline constexpr std::string_view kDirtyBitmapPrefix = "qemu:dirty-bitmap:";

// The largest request payload (and read) the server accepts, as qemu's NBD_MAX_BUFFER_SIZE.
inline constexpr uint32_t kMaxRequestBytes = 32u << 20;

struct ExportSettings {
  std::string name;
  std::string description;
  bool allocation_depth = false;  // offer qemu:allocation-depth (qemu-nbd -A)
  // Several connections may use the export at once and see each other's writes (multi-conn).
  bool multi_conn = false;
  // Offered as qemu:dirty-bitmap:NAME contexts, in this order (qemu-nbd -B, last given first).
  std::vector<std::shared_ptr<block::DirtyBitmap>> bitmaps;
};

class Export {
 public:
  Export(block::BlockBackend& backend, ExportSettings settings) : backend_(backend), settings_(std::move(settings)) {}

  block::BlockBackend& backend() const noexcept { return backend_; }
  const ExportSettings& settings() const noexcept { return settings_; }
  // What the negotiation offers for this export.
  ExportDescription description() const;
  // The bitmap a "qemu:dirty-bitmap:NAME" context names, or nullptr.
  block::DirtyBitmap* bitmap_for_context(std::string_view context) const;

 private:
  block::BlockBackend& backend_;
  ExportSettings settings_;
};

}  // namespace keel::nbd
