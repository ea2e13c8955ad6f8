// FormatInfo: what a format driver knows about its image beyond size and
// name, as typed data for `info` (block/image_info.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace keel::block {

// A format's own fields (qemu's ImageInfoSpecific data): a small tree of named
// values, kept in the order qemu prints them. Names are qemu's QAPI names.
struct InfoValue;
using InfoList = std::vector<InfoValue>;
using InfoFields = std::vector<std::pair<std::string, InfoValue>>;
struct InfoValue {
  std::variant<bool, uint64_t, std::string, InfoList, InfoFields> value;
};

struct SnapshotInfo {
  std::string id;
  std::string name;
  uint64_t vm_state_size = 0;
  int64_t date_sec = 0;
  uint32_t date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  std::optional<uint64_t> icount;
};

struct FormatInfo {
  std::optional<uint64_t> cluster_size;
  bool encrypted = false;
  std::optional<std::string> backing_filename;  // as stored in the image
  std::optional<std::string> backing_format;
  std::vector<SnapshotInfo> snapshots;
  std::string specific_type;  // "qcow2"; empty: no format-specific block
  InfoFields specific;
  // nullopt: the node has no such information to give (qemu's bdrv_get_info fails, as for
  // raw over nbd), and qemu prints no dirty-flag.
  std::optional<bool> dirty = false;
};

}  // namespace keel::block
