// qcow2 consistency check and repair, with qemu-img check's semantics: count
// every reference to every cluster (header, tables, data, snapshots,
// bitmaps), compare with the stored refcounts and the COPIED flags, and with
// -r fix leaks or rebuild the refcount structures.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/async/task.h"

namespace keel::qcow2 {

class Qcow2Node;

enum class CheckFix { None, Leaks, All };

struct CheckResult {
  uint64_t corruptions = 0;
  uint64_t leaks = 0;
  uint64_t check_errors = 0;
  uint64_t corruptions_fixed = 0;
  uint64_t leaks_fixed = 0;
  uint64_t image_end_offset = 0;
  uint64_t total_clusters = 0;
  uint64_t allocated_clusters = 0;
  uint64_t fragmented_clusters = 0;
  uint64_t compressed_clusters = 0;
  // Per-problem lines as qemu prints them on stderr ("ERROR cluster 5 refcount=0 reference=1").
  std::vector<std::string> messages;
  // Non-zero (an errno) when the check could not complete, e.g. a rebuild
  // was needed but only leaks were to be repaired.
  int failure = 0;
};

Task<CheckResult> check_image(Qcow2Node& node, CheckFix fix);

}  // namespace keel::qcow2
