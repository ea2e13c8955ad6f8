// The internal snapshot table: parsed for `info` and for `check`, which must
// count the clusters snapshots hold. (Creating and applying snapshots is
// separate work.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/async/task.h"
#include "block/node.h"
#include "block/snapshot_ref.h"
#include "formats/qcow2/header.h"

namespace keel::qcow2 {

struct Snapshot {
  uint64_t l1_table_offset;
  uint32_t l1_size;
  std::string id;
  std::string name;
  uint32_t date_sec;
  uint32_t date_nsec;
  uint64_t vm_clock_nsec;
  uint64_t vm_state_size;
  std::optional<uint64_t> icount;
  uint32_t extra_size;  // bytes of extra data; version 3 requires at least kSnapshotExtraV3Size
};

// Version 3 entries carry at least vm_state_size_large and disk_size.
constexpr uint32_t kSnapshotExtraV3Size = 16;

struct SnapshotTable {
  std::vector<Snapshot> snapshots;
  uint64_t table_bytes = 0;  // on-disk size of the table, for refcount checks
};

// Reads and validates the table; raises EINVAL naming the bad entry.
Task<SnapshotTable> read_snapshot_table(block::BlockNode& file, const Header& header);

// The snapshot `ref` names, as qemu resolves it: with an id and a name, the first entry matching both; with
// one, the first matching it; a bare ID_OR_NAME is tried as an id, then as a name. nullptr if none matches.
const Snapshot* find_snapshot(const SnapshotTable& table, const block::SnapshotRef& ref);

struct BitmapInfo {
  std::string name;
  uint32_t granularity;
  bool in_use;
  bool auto_flag;  // enabled: writes mark it dirty
  uint8_t type;    // 1, the only one defined: a dirty tracking bitmap
  uint64_t table_offset;
  uint32_t table_size;
};

// Reads the persistent bitmap directory named by the bitmaps extension (entries as stored, not validated).
Task<std::vector<BitmapInfo>> read_bitmap_directory(block::BlockNode& file, const Header& header);

}  // namespace keel::qcow2
