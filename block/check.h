// What a consistency check (`keel-img check`) finds and repairs, in the terms
// of qemu's ImageCheck. Formats that can be checked implement
// BlockNode::check(); the tools render the result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::block {

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

}  // namespace keel::block
