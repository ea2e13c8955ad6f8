// DirtyBitmap: a named record of which parts of a node were written since some
// point (qemu's persistent dirty bitmaps), as front ends export it (NBD's
// qemu:dirty-bitmap:NAME context). A format that stores bitmaps hands them out
// through BlockNode::dirty_bitmap(); this interface names no format.
#pragma once

#include <cstdint>
#include <string>

#include "base/async/task.h"

namespace keel::block {

class DirtyBitmap {
 public:
  virtual ~DirtyBitmap() = default;

  virtual const std::string& name() const = 0;
  // Bytes one bit covers (a power of two, at least 512).
  virtual uint64_t granularity() const = 0;
  // The bitmap was not stored cleanly (its in-use flag is set): its bits cannot be trusted, and they are not
  // loaded; query() must not be called.
  virtual bool inconsistent() const = 0;

  // The run of equally dirty (or clean) bytes from `offset`, at most `length` (> 0) long, inside the node.
  struct Run {
    uint64_t length;
    bool dirty;
  };
  virtual Task<Run> query(uint64_t offset, uint64_t length) = 0;
};

}  // namespace keel::block
