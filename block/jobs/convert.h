// The copy engine behind `keel-img convert`: several workers (qemu's -m) each
// claim the next chunk of the source, ask its block status, read what holds
// data, and write to the target, in order or (with -W) as soon as ready.
// Zeros are detected at the sparse granularity (-S) and never written to a
// target that already reads as zeros.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/async/task.h"
#include "block/node.h"

namespace keel::block {

struct ConvertOptions {
  unsigned parallel = 8;          // requests in flight (-m)
  bool out_of_order = false;      // -W
  uint64_t sparse_size = 4096;    // -S; 0 writes everything, zeros included
  bool compress = false;          // -c
  bool target_is_zero = false;    // the target already reads as zeros
  // Called with the percentage done after each chunk.
  std::function<void(double)> progress;
};

// Copies the concatenation of `sources` to `target` (which must be at least as large).
Task<void> convert(const std::vector<BlockNode*>& sources, BlockNode& target, const ConvertOptions& options);

}  // namespace keel::block
